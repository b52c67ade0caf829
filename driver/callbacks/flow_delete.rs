//! flowDeleteFn: the engine is done with a flow that carries one of our
//! flow contexts (`connections::flows`).
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;

/// The flowDeleteFn we register. Runs at up to DISPATCH_LEVEL, possibly
/// after the filter was deleted; the context is found by the value the
/// engine hands back, never dereferenced.
pub extern "system" fn flow_delete_fn(_layer_id: u16, _callout_id: u32, flow_context: u64) {
    STATE.flows.deleted(flow_context);
}
