//! Flows and flow contexts (`FwpsFlowAssociateContext0`,
//! `FwpsFlowRemoveContext0`, flowDeleteFn), with the rules Windows applies:
//! a non-zero context, a callout with a flowDeleteFn, one context per flow
//! and callout; removal returns `STATUS_PENDING` while a classify for the
//! flow is in progress (flowDeleteFn then runs when it ends); a flow's end
//! calls flowDeleteFn at DISPATCH_LEVEL on whatever thread ends it; and a
//! callout cannot be unregistered while flows carry its contexts.
//!
//! Atomicity: association checks the registration and attaches the
//! context under the engine lock, as unregistration checks for contexts,
//! so neither can run between the other's check and its change. A context
//! detached for deletion counts as associated until its flowDeleteFn has
//! returned, so the callout cannot be unregistered (and its flowDeleteFn
//! become unreachable) between the two.

use crate::engine::classification::client;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::engine::state::engine_state::lock;
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

#[derive(Default)]
struct Flows {
    by_handle: HashMap<u64, Flow>,
    /// Contexts detached from their flow whose flowDeleteFn has not
    /// returned yet, by callout id.
    deleting: HashMap<u32, usize>,
}

impl Flows {
    /// Detaches a context for deletion: it still counts as the callout's
    /// until [`finish_delete`] runs after its flowDeleteFn.
    fn detach(&mut self, callout_id: u32) {
        *self.deleting.entry(callout_id).or_default() += 1;
    }
}

static FLOWS: Mutex<Option<Flows>> = Mutex::new(None);
static NEXT_FLOW: AtomicU64 = AtomicU64::new(0x7700_0000);

fn with_all<R>(f: impl FnOnce(&mut Flows) -> R) -> R {
    let mut guard = FLOWS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Flows::default))
}

fn with<R>(f: impl FnOnce(&mut HashMap<u64, Flow>) -> R) -> R {
    with_all(|flows| f(&mut flows.by_handle))
}

/// The flowDeleteFn of a detached context has returned.
fn finish_delete(callout_id: u32) {
    with_all(|flows| {
        if let Some(count) = flows.deleting.get_mut(&callout_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                flows.deleting.remove(&callout_id);
            }
        }
    });
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
    let deferred: Vec<(u16, u32, u64)> = with_all(|all| {
        let Some(flow) = all.by_handle.get_mut(&handle) else { return Vec::new() };
        flow.classifies = flow.classifies.saturating_sub(1);
        if flow.classifies > 0 {
            return Vec::new();
        }
        let layer_id = flow.layer_id;
        let detached: Vec<(u16, u32, u64)> = std::mem::take(&mut flow.deferred)
            .into_iter()
            .filter_map(|callout| flow.contexts.remove(&callout).map(|ctx| (layer_id, callout, ctx)))
            .collect();
        for &(_, callout, _) in &detached {
            all.detach(callout);
        }
        detached
    });
    for (layer_id, callout_id, context) in deferred {
        call_flow_delete(layer_id, callout_id, context);
    }
}

/// Calls flowDeleteFn for a context detached with [`Flows::detach`].
fn call_flow_delete(layer_id: u16, callout_id: u32, context: u64) {
    crate::sync_points::reached(crate::sync_points::FLOW_CONTEXT_DETACHED);
    let (delete, level) = {
        let engine = lock();
        (engine.registered_by_id(callout_id).and_then(|c| c.flow_delete), engine.next_flow_delete_irql())
    };
    match delete {
        // At IRQL <= DISPATCH_LEVEL: PASSIVE or DISPATCH at random, never
        // below the caller's (row J2).
        Some(delete) => irql::at_level(level, || {
            // SAFETY: the callout registered this flowDeleteFn and the
            // context it associated; it is called once. The callout cannot
            // be unregistered before this returns (the detached context
            // still counts as associated).
            unsafe { delete(layer_id, callout_id, context) }
        }),
        None => {
            report(ViolationKind::ApiMisuse, format!("flow context {context:#x} of unregistered callout {callout_id}"))
        }
    }
    finish_delete(callout_id);
}

/// Classifies a new flow at its FLOW_ESTABLISHED layer (`connection.layer_id`);
/// returns the flow handle and the classification.
pub fn establish_flow(connection: &Connection) -> (u64, ClassifyResult) {
    let handle = new_flow(connection.layer_id);
    classify_started(handle);
    let result = client::classify_with_flow(connection, handle);
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
    let Some(flow) = with_all(|all| {
        let flow = all.by_handle.remove(&handle)?;
        for &callout in flow.contexts.keys() {
            all.detach(callout);
        }
        Some(flow)
    }) else {
        return;
    };
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

/// Flow contexts associated with `callout_id` right now, counting those
/// whose flowDeleteFn is still running.
pub fn contexts_of(callout_id: u32) -> usize {
    with_all(|all| {
        all.by_handle.values().filter(|f| f.contexts.contains_key(&callout_id)).count()
            + all.deleting.get(&callout_id).copied().unwrap_or(0)
    })
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
    // The engine lock is held from the registration check to the attach:
    // unregistration (which checks for contexts under it) is ordered
    // entirely before or after.
    let engine = lock();
    match engine.registered_by_id(callout_id) {
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
    crate::sync_points::reached(crate::sync_points::FLOW_ASSOCIATE_CALLOUT_CHECKED);
    let status = with(|flows| {
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
    });
    drop(engine);
    status
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
    let removal = with_all(|all| {
        let Some(flow) = all.by_handle.get_mut(&flow_id).filter(|f| f.layer_id == layer_id) else {
            return Removal::Absent;
        };
        if !flow.contexts.contains_key(&callout_id) || flow.deferred.contains(&callout_id) {
            return Removal::Absent;
        }
        if flow.classifies > 0 {
            flow.deferred.push(callout_id);
            return Removal::Pending;
        }
        let Some(context) = flow.contexts.remove(&callout_id) else { return Removal::Absent };
        all.detach(callout_id);
        Removal::Now(context)
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
    *FLOWS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Flows::default());
}
