//! Layer 1 of the engine: its state, one concern per file (the object
//! tables behind the engine lock, the registration gate, which callback a
//! thread is inside of, packets, pending operations, live connections).
//! These never classify: where a rule needs a classification (a
//! completion's reauthorization, an injected packet) the caller above
//! passes it in as a function.

pub mod callout_scope;
pub mod engine_state;
pub mod packets;
pub mod pending;
pub mod reauthorization;
pub mod registration_gate;
