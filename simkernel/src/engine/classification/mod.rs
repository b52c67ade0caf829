//! Layer 2 of the engine: classification (what classifyFn is lent, the
//! classifyOut it writes, the arbitration across filters) and what a WFP
//! client does to the engine (filters added and deleted with their notifyFn
//! calls), over the state below.

pub mod classify_input;
pub mod classify_out;
pub mod classify_scope;
pub mod client;
