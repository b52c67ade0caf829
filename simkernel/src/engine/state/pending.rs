//! Pending at the ALE auth layers: `FwpsPendOperation0` and
//! `FwpsCompleteOperation0`, with the rules Windows enforces.
//!
//! Every classification at a pendable layer gets a completion handle that is
//! valid only while classifyFn runs. Pending is refused for a
//! reauthorization (`STATUS_FWP_CANNOT_PEND`). A pended classification must
//! answer BLOCK + ABSORB with the write right cleared. Completing an
//! operation at ALE_AUTH_CONNECT triggers, at once and on the completing
//! thread, a reauthorization classify of the same connection with
//! `FWP_CONDITION_FLAG_IS_REAUTHORIZE`; at ALE_AUTH_RECV_ACCEPT it does not.
//! An operation never completed is reported at unload.

use super::packets;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A classification in progress that may be pended.
struct InProgress {
    connection: Connection,
    reauthorization: bool,
    pended: Option<usize>,
    filter_id: u64,
    /// The classification carries a packet (layerData).
    packet: bool,
}

/// A pended operation awaiting `FwpsCompleteOperation0`.
#[derive(Clone)]
struct Pended {
    connection: Connection,
    filter_id: u64,
    /// It carried a packet (at connect: the first datagram, flushed when
    /// the operation completes).
    packet: bool,
}

/// One completed operation, as a test sees it.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The operation (the completion context the driver got).
    pub operation: usize,
    /// The connection that was pended.
    pub connection: Connection,
    /// The filter whose classify pended it.
    pub filter_id: u64,
    /// At ALE_AUTH_CONNECT: the reauthorization's outcome.
    pub reauthorization: Option<ClassifyResult>,
    /// Whether a net buffer list was passed to the completion.
    pub with_packet: bool,
    /// The callout callback the completing thread was inside of
    /// (`"classifyFn"`, `"notifyFn"`), `None` out of band: a test checks
    /// completions come from a worker, DPC or IOCTL, not from a callback.
    pub inside: Option<&'static str>,
}

#[derive(Default)]
struct PendingState {
    in_progress: HashMap<usize, InProgress>,
    pended: HashMap<usize, Pended>,
    completions: Vec<Completion>,
    /// Completion reauthorizations are queued instead of run at once.
    defer_reauthorizations: bool,
    deferred: Vec<Connection>,
}

static STATE: Mutex<Option<PendingState>> = Mutex::new(None);
static NEXT: AtomicUsize = AtomicUsize::new(0x5000_0000);

fn with<R>(f: impl FnOnce(&mut PendingState) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(PendingState::default))
}

/// Opens the completion handle for a classification (NULL where the layer
/// cannot pend).
pub(crate) fn begin(connection: &Connection, pendable: bool) -> *mut c_void {
    if !pendable {
        return std::ptr::null_mut();
    }
    let handle = NEXT.fetch_add(0x10, Ordering::Relaxed);
    let reauthorization = connection.flags & FWP_CONDITION_FLAG_IS_REAUTHORIZE != 0;
    with(|s| {
        s.in_progress.insert(
            handle,
            InProgress { connection: connection.clone(), reauthorization, pended: None, filter_id: 0, packet: false },
        )
    });
    handle as *mut c_void
}

/// Notes which filter the engine is about to call classify for.
pub(crate) fn set_filter(handle: *mut c_void, filter_id: u64) {
    with(|s| {
        if let Some(p) = s.in_progress.get_mut(&(handle as usize)) {
            p.filter_id = filter_id;
        }
    });
}

/// Notes that the classification behind `handle` carries a packet.
pub(crate) fn set_packet(handle: *mut c_void) {
    with(|s| {
        if let Some(p) = s.in_progress.get_mut(&(handle as usize)) {
            p.packet = true;
        }
    });
}

/// Whether the classification behind `handle` has been pended.
pub(crate) fn is_pended(handle: *mut c_void) -> bool {
    !handle.is_null() && with(|s| s.in_progress.get(&(handle as usize)).is_some_and(|p| p.pended.is_some()))
}

/// Closes the handle; returns the operation id if classify pended.
pub(crate) fn end(handle: *mut c_void) -> Option<usize> {
    if handle.is_null() {
        return None;
    }
    with(|s| s.in_progress.remove(&(handle as usize)).and_then(|p| p.pended))
}

/// `FwpsPendOperation0`.
///
/// # Safety
/// `completion_context` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsPendOperation0(
    completion_handle: *mut c_void,
    completion_context: *mut *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsPendOperation0");
    if completion_context.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    if let Some(status) = crate::faults::call_should_fail("FwpsPendOperation0") {
        return status;
    }
    let result = with(|s| {
        let Some(progress) = s.in_progress.get_mut(&(completion_handle as usize)) else {
            return Err("FwpsPendOperation0 with a completion handle that is not a classification in progress");
        };
        if progress.reauthorization {
            return Ok(None);
        }
        if progress.pended.is_some() {
            return Err("FwpsPendOperation0 twice for one classification");
        }
        let operation = NEXT.fetch_add(0x10, Ordering::Relaxed);
        progress.pended = Some(operation);
        let pended =
            Pended { connection: progress.connection.clone(), filter_id: progress.filter_id, packet: progress.packet };
        s.pended.insert(operation, pended);
        Ok(Some(operation))
    });
    match result {
        Ok(Some(operation)) => {
            // SAFETY: checked non-NULL; writable per the caller.
            unsafe { completion_context.write(operation as *mut c_void) };
            crate::sync_points::reached(crate::sync_points::PEND_OPERATION_PENDED);
            STATUS_SUCCESS
        }
        Ok(None) => STATUS_FWP_CANNOT_PEND,
        Err(message) => {
            report(ViolationKind::ApiMisuse, message);
            STATUS_INVALID_PARAMETER
        }
    }
}

/// The work of `FwpsCompleteOperation0` (its entry point is in
/// `api/completion.rs`): completes a pended operation exactly once; at
/// ALE_AUTH_CONNECT the reauthorization classify (`reauthorize_with`, passed in
/// because classification sits above this table) runs before this returns.
/// The NET_BUFFER_LIST is optional ("describes the packet data for which
/// processing has been suspended"); when given it must be a live clone or
/// list of the callout's, and it stays the callout's. Only at
/// ALE_AUTH_RECV_ACCEPT does the documentation say what it is for (the list
/// to be injected on the receive path); at ALE_AUTH_CONNECT it does not,
/// and Microsoft's inspect sample completes a connect with NULL, so a list
/// there is reported (row Z7): a driver cannot come to depend on either
/// reading of what the engine does with it.
pub(crate) fn complete_operation(
    reauthorize_with: impl FnOnce(&Connection, u32) -> ClassifyResult,
    completion_context: *mut c_void,
    net_buffer_list: *mut c_void,
) {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsCompleteOperation0");
    let operation = completion_context as usize;
    let inside = super::callout_scope::current();
    check_held_clones();
    let Some(pended) = with(|s| s.pended.remove(&operation)) else {
        report(
            ViolationKind::ApiMisuse,
            format!("FwpsCompleteOperation0({operation:#x}): not a pended operation (completed twice?)"),
        );
        return;
    };
    let reauthorize =
        matches!(pended.connection.layer_id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6);
    if !net_buffer_list.is_null() && !packets::is_callouts_packet(net_buffer_list) {
        report(
            ViolationKind::ApiMisuse,
            "FwpsCompleteOperation0 with a packet that is not the callout's own live clone or allocated list",
        );
    }
    // Which list (or NULL) the completion took: at ALE_AUTH_RECV_ACCEPT the
    // one the callout may then inject, and must (row I6).
    packets::completed_with(&pended.connection, net_buffer_list);
    if reauthorize && !net_buffer_list.is_null() {
        report(
            ViolationKind::ApiMisuse,
            "FwpsCompleteOperation0 at ALE_AUTH_CONNECT with a NET_BUFFER_LIST: what the engine does with one \
             there is not documented (Microsoft's inspect sample completes a connect with NULL and sends the \
             datagram after the reauthorization)",
        );
    }
    if reauthorize && pended.packet {
        // "Any pended packet data is flushed from memory when the
        // FwpsPendOperation0 function completes ... The callout could
        // buffer such data and reinject the data on the application's
        // behalf."
        packets::datagram_flushed(&pended.connection);
    }
    let deferred = reauthorize
        && with(|s| {
            if s.defer_reauthorizations {
                s.deferred.push(pended.connection.clone());
            }
            s.defer_reauthorizations
        });
    let reauthorization = (reauthorize && !deferred)
        .then(|| reauthorize_with(&pended.connection, fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION));
    with(|s| {
        s.completions.push(Completion {
            operation,
            connection: pended.connection,
            filter_id: pended.filter_id,
            reauthorization,
            with_packet: !net_buffer_list.is_null(),
            inside,
        })
    });
}

/// Where completion reauthorizations run. The documentation does not say
/// whether the engine reauthorizes a completed connect before
/// `FwpsCompleteOperation0` returns or later from another thread; by
/// default it runs at once on the completing thread, and a test that
/// defers them delivers them itself with `deliver_deferred_reauthorizations`
/// (on any thread, at any time: e.g. after the driver's timer ran).
pub fn defer_completion_reauthorizations(on: bool) {
    with(|s| s.defer_reauthorizations = on);
}

/// Runs the deferred completion reauthorizations with `reauthorize`, in
/// completion order (the public entry point is in `api/completion.rs`).
pub(crate) fn deliver_deferred_reauthorizations_with(
    reauthorize: impl Fn(&Connection, u32) -> ClassifyResult,
) -> Vec<(Connection, ClassifyResult)> {
    let deferred = with(|s| std::mem::take(&mut s.deferred));
    deferred
        .into_iter()
        .map(|connection| {
            let result = reauthorize(&connection, fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION);
            (connection, result)
        })
        .collect()
}

/// Whether an operation pended for `connection` (its layer and 5-tuple)
/// still waits for completion.
pub(crate) fn has_pended(connection: &Connection) -> bool {
    let same = |c: &Connection| {
        c.layer_id == connection.layer_id
            && c.protocol == connection.protocol
            && c.local_address == connection.local_address
            && c.local_port == connection.local_port
            && c.remote_address == connection.remote_address
            && c.remote_port == connection.remote_port
    };
    with(|s| s.pended.values().any(|p| same(&p.connection)))
}

/// Reports every shallow clone held past its limit while a pended
/// operation of its connection waits (each clone once). Runs whenever the
/// clock moves and before each completion; public as
/// `engine::packets::check_held_clones`.
pub fn check_held_clones() {
    packets::check_held_clones_with(has_pended);
}

/// Operations pended and not yet completed.
pub fn pended_count() -> usize {
    with(|s| s.pended.len())
}

/// Takes the completions recorded so far.
pub fn take_completions() -> Vec<Completion> {
    with(|s| std::mem::take(&mut s.completions))
}

pub(crate) fn report_leaks() -> usize {
    let count = pended_count();
    if count > 0 {
        report(ViolationKind::Leak, format!("{count} pended operation(s) never completed"));
    }
    count
}

pub(crate) fn reset() {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(PendingState::default());
}
