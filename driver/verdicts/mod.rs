//! Layer 4, asynchronous verdicts: classifications pended for the `ask`
//! policy (`pending`, the overlapped-I/O pattern) and the user-mode agents
//! that answer them (`agent`).

pub mod agent;
pub mod pending;
