//! Flows and flow contexts (`FwpsFlowAssociateContext0`,
//! `FwpsFlowRemoveContext0`, flowDeleteFn), with the rules Windows applies:
//! a non-zero context, a callout with a flowDeleteFn, one context per flow
//! and callout; removal returns `STATUS_PENDING` while a classify for the
//! flow is in progress (flowDeleteFn then runs when it ends); a flow's end
//! calls flowDeleteFn at DISPATCH_LEVEL on whatever thread ends it; and a
//! callout cannot be unregistered while flows carry its contexts.

use super::client::ClassifyResult;
use super::{Connection, lock};
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A flow the engine tracks.
#[derive(Default)]
struct Flow {
    layer_id: u16,
    /// Context by callout id.
    contexts: HashMap<u32, u64>,
    /// Classifications of this flow running now.
    classifies: usize,
    /// Removals that returned PENDING: callout ids whose flowDeleteFn runs
    /// when the last classify ends.
    deferred: Vec<u32>,
}

static FLOWS: Mutex<Option<HashMap<u64, Flow>>> = Mutex::new(None);
static NEXT_FLOW: AtomicU64 = AtomicU64::new(0x7700_0000);

fn with<R>(f: impl FnOnce(&mut HashMap<u64, Flow>) -> R) -> R {
    let mut guard = FLOWS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// A flow handle with its metadata bit, for classify at FLOW_ESTABLISHED.
pub(crate) fn new_flow(layer_id: u16) -> u64 {
    let handle = NEXT_FLOW.fetch_add(0x10, Ordering::Relaxed);
    with(|flows| flows.insert(handle, Flow { layer_id, ..Flow::default() }));
    handle
}

/// Marks a classify of `handle` as running (PENDING removals while it does).
pub(crate) fn classify_started(handle: u64) {
    with(|flows| {
        if let Some(flow) = flows.get_mut(&handle) {
            flow.classifies += 1;
        }
    });
}

/// Marks it done; runs flowDeleteFn for removals deferred meanwhile.
pub(crate) fn classify_finished(handle: u64) {
    let deferred = with(|flows| {
        let Some(flow) = flows.get_mut(&handle) else { return Vec::new() };
        flow.classifies = flow.classifies.saturating_sub(1);
        if flow.classifies > 0 {
            return Vec::new();
        }
        let layer_id = flow.layer_id;
        std::mem::take(&mut flow.deferred)
            .into_iter()
            .filter_map(|callout| flow.contexts.remove(&callout).map(|ctx| (layer_id, callout, ctx)))
            .collect()
    });
    for (layer_id, callout_id, context) in deferred {
        call_flow_delete(layer_id, callout_id, context);
    }
}

fn call_flow_delete(layer_id: u16, callout_id: u32, context: u64) {
    let Some(delete) = lock().registered_by_id(callout_id).and_then(|c| c.flow_delete) else {
        report(ViolationKind::ApiMisuse, format!("flow context {context:#x} of unregistered callout {callout_id}"));
        return;
    };
    // SAFETY: the callout registered this flowDeleteFn and the context it
    // associated; it is called once, at DISPATCH_LEVEL as the engine does.
    irql::at_dispatch(|| unsafe { delete(layer_id, callout_id, context) });
}

/// Classifies a new flow at its FLOW_ESTABLISHED layer (`connection.layer_id`);
/// returns the flow handle and the classification.
pub fn establish_flow(connection: &Connection) -> (u64, ClassifyResult) {
    let handle = new_flow(connection.layer_id);
    classify_started(handle);
    let result = super::client::classify_with_flow(connection, handle);
    classify_finished(handle);
    (handle, result)
}

/// Runs `f` while a classify of flow `handle` is in progress (removals
/// meanwhile return PENDING).
pub fn during_flow_classify<R>(handle: u64, f: impl FnOnce() -> R) -> R {
    classify_started(handle);
    let result = f();
    classify_finished(handle);
    result
}

/// The connection ends: flowDeleteFn runs for every context, on this
/// thread, at DISPATCH_LEVEL.
pub fn end_flow(handle: u64) {
    let Some(flow) = with(|flows| flows.remove(&handle)) else { return };
    for (callout_id, context) in flow.contexts {
        call_flow_delete(flow.layer_id, callout_id, context);
    }
}

/// Whether a removal for `handle` is waiting for its classify to end.
pub fn has_deferred_removal(handle: u64) -> bool {
    with(|flows| flows.get(&handle).is_some_and(|f| !f.deferred.is_empty()))
}

/// Live flows.
pub fn flow_count() -> usize {
    with(|flows| flows.len())
}

/// Flow contexts associated with `callout_id` right now.
pub fn contexts_of(callout_id: u32) -> usize {
    with(|flows| flows.values().filter(|f| f.contexts.contains_key(&callout_id)).count())
}

/// `FwpsFlowAssociateContext0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsFlowAssociateContext0(
    flow_id: u64,
    layer_id: u16,
    callout_id: u32,
    flow_context: u64,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsFlowAssociateContext0");
    if let Some(status) = crate::faults::call_should_fail("FwpsFlowAssociateContext0") {
        return status;
    }
    if flow_context == 0 {
        return STATUS_INVALID_PARAMETER;
    }
    match lock().registered_by_id(callout_id) {
        // Unregistered meanwhile (e.g. during unload): refused, not misuse.
        None => return STATUS_FWP_CALLOUT_NOT_FOUND,
        Some(callout) if callout.flow_delete.is_none() => {
            report(
                ViolationKind::ApiMisuse,
                format!("flow context for callout {callout_id}, which has no flowDeleteFn"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        Some(_) => {}
    }
    with(|flows| {
        let Some(flow) = flows.get_mut(&flow_id) else {
            report(ViolationKind::ApiMisuse, format!("FwpsFlowAssociateContext0 on unknown flow {flow_id:#x}"));
            return STATUS_INVALID_PARAMETER;
        };
        if flow.layer_id != layer_id {
            return STATUS_INVALID_PARAMETER;
        }
        if flow.contexts.contains_key(&callout_id) {
            return STATUS_OBJECT_NAME_EXISTS;
        }
        flow.contexts.insert(callout_id, flow_context);
        STATUS_SUCCESS
    })
}

/// `FwpsFlowRemoveContext0`: SUCCESS once flowDeleteFn has run, PENDING if
/// a classify of the flow is in progress (flowDeleteFn runs later),
/// UNSUCCESSFUL if there is no context.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsFlowRemoveContext0(flow_id: u64, layer_id: u16, callout_id: u32) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsFlowRemoveContext0");
    if let Some(status) = crate::faults::call_should_fail("FwpsFlowRemoveContext0") {
        return status;
    }
    enum Removal {
        Now(u64),
        Pending,
        Absent,
    }
    let removal = with(|flows| {
        let Some(flow) = flows.get_mut(&flow_id).filter(|f| f.layer_id == layer_id) else { return Removal::Absent };
        if !flow.contexts.contains_key(&callout_id) || flow.deferred.contains(&callout_id) {
            return Removal::Absent;
        }
        if flow.classifies > 0 {
            flow.deferred.push(callout_id);
            return Removal::Pending;
        }
        flow.contexts.remove(&callout_id).map_or(Removal::Absent, Removal::Now)
    });
    match removal {
        Removal::Now(context) => {
            call_flow_delete(layer_id, callout_id, context);
            STATUS_SUCCESS
        }
        Removal::Pending => STATUS_PENDING,
        Removal::Absent => STATUS_UNSUCCESSFUL,
    }
}

pub(crate) fn report_leaks() -> usize {
    let count = with(|flows| flows.values().map(|f| f.contexts.len()).sum::<usize>());
    if count > 0 {
        report(ViolationKind::Leak, format!("{count} flow context(s) still associated"));
    }
    count
}

pub(crate) fn reset() {
    *FLOWS.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
}
