//! Layer 5, what the filter engine calls: classifyFn (`classify`, `ask`),
//! notifyFn (`notify`), their raw-pointer entry points (`trampolines`),
//! flowDeleteFn (`flow_delete`), their registration
//! (`registration`), adoption of filters that predate it (`adoption`), and
//! the one global they share (`state`): WFP callbacks carry no driver
//! context, so this is the lowest layer that may reach it.

pub mod adoption;
pub mod ask;
pub mod classify;
pub mod flow_delete;
pub mod notify;
pub mod registration;
pub mod state;
pub mod trampolines;
