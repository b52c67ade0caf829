//! Completing pended operations (`FwpsCompleteOperation0`) and delivering
//! deferred completion reauthorizations. A completion at ALE_AUTH_CONNECT
//! reauthorizes the connection, a classification, so these sit above
//! classification; the pending table and its rules are in
//! `state/pending.rs`, which gets the reauthorization as a parameter.
//! Public as `engine::pending::*`.

use super::reauthorize::reauthorize;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::engine::state::pending;
use std::ffi::c_void;

/// `FwpsCompleteOperation0`: completes a pended operation exactly once; at
/// ALE_AUTH_CONNECT the reauthorization classify runs before this returns.
/// The NET_BUFFER_LIST is optional at every ALE layer ("describes the packet
/// data for which processing has been suspended"); when given it must be a
/// live clone, and it stays the callout's.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsCompleteOperation0(completion_context: *mut c_void, net_buffer_list: *mut c_void) {
    pending::complete_operation(reauthorize, completion_context, net_buffer_list);
}

/// Runs the deferred completion reauthorizations, in completion order
/// (`pending::defer_completion_reauthorizations`).
pub fn deliver_deferred_reauthorizations() -> Vec<(Connection, ClassifyResult)> {
    pending::deliver_deferred_reauthorizations_with(reauthorize)
}
