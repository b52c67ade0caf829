//! What a WFP client (wfpctl, netsh, a test) does to the engine, and the
//! engine's classification of traffic. These are the simulated kernel's
//! drivers of the driver: `FwpmFilterAdd0` calling notifyFn ADD, deletion
//! calling DELETE, and classification calling classifyFn at IRQL <= DISPATCH_LEVEL (row J1).

use super::classify_input::ClassifyInput;
use super::classify_out::LentClassifyOut;
use super::classify_scope::ClassifyScope;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::engine::model::layers::{key_of, layer_by_id, layer_by_key};
use crate::engine::model::packet_data::Direction;
use crate::engine::model::records::{FilterAction, FilterRecord, FilterSpec, NewFilter, ProviderContextRecord};
use crate::engine::state::engine_state::{RegisteredCallout, lock, lock_for};
use crate::engine::state::{callout_scope, packets, pending, reauthorization, registration_gate};
use crate::irql;
use crate::sync_points;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The client's session id for transaction waits (never a real handle).
const CLIENT_SESSION: usize = 0;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

fn fresh_key() -> GUID {
    GUID::from_u128(0xC11E_0000_0000_4000_8000_0000_0000_0000 | u128::from(NEXT_KEY.fetch_add(1, Ordering::Relaxed)))
}

/// Adds a sublayer owned by no provider (as a client would for its filters).
pub fn add_sublayer(key: GUID, weight: u16) -> Result<(), NTSTATUS> {
    let mut engine = lock_for(CLIENT_SESSION);
    let k = key_of(&key);
    if engine.sublayers.contains_key(&k) {
        return Err(STATUS_FWP_ALREADY_EXISTS);
    }
    engine.sublayers.insert(k, (weight, None));
    Ok(())
}

/// Adds a provider context of `context_type` with `data`; returns its key.
pub fn add_provider_context_of_type(context_type: i32, data: &[u8]) -> GUID {
    let key = fresh_key();
    let mut engine = lock_for(CLIENT_SESSION);
    engine.next_provider_context_id += 1;
    let id = engine.next_provider_context_id;
    engine.provider_contexts.insert(key_of(&key), ProviderContextRecord { key, id, context_type, data: data.to_vec() });
    key
}

/// Adds a persistent (`FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT`)
/// `FWPM_GENERAL_CONTEXT` provider context carrying `data`.
pub fn add_persistent_provider_context(data: &[u8]) -> GUID {
    let key = add_provider_context(data);
    lock().persistent.insert(key_of(&key));
    key
}

/// Restarts the base filtering engine (a reboot, as far as WFP objects go):
/// what was added persistent (`FWPM_*_FLAG_PERSISTENT`) survives, the rest
/// is gone, and so is a persistent filter whose callout, sublayer or
/// provider context was not persistent ("the callout is persistent across
/// reboots. As a result, it can be referenced by boot-time and other
/// persistent filters", FWPM_CALLOUT0; the model's reading: such a filter
/// is accepted, and lost at the restart). Callouts must be unregistered
/// and sessions closed first (the driver unloaded), or this fails.
pub fn restart_bfe() -> Result<(), &'static str> {
    let mut engine = lock();
    if !engine.registered.is_empty() || !engine.sessions.is_empty() {
        return Err("unload the driver first: callouts registered or sessions open");
    }
    let persistent = engine.persistent.clone();
    engine.providers.retain(|key, _| persistent.contains(key));
    let providers: std::collections::HashSet<u128> = engine.providers.keys().copied().collect();
    let provider_ok = |p: &Option<u128>| p.is_none_or(|p| providers.contains(&p));
    engine.sublayers.retain(|key, (_, provider)| persistent.contains(key) && provider_ok(provider));
    engine.managed.retain(|_, c| c.flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT != 0 && provider_ok(&c.provider));
    engine.provider_contexts.retain(|key, _| persistent.contains(key));
    let managed_ids: std::collections::HashSet<u32> = engine.managed.values().map(|c| c.id).collect();
    let kept: Vec<std::sync::Arc<FilterRecord>> = engine
        .filters
        .values()
        .filter(|f| {
            f.fwpm_flags & fwp::FWPM_FILTER_FLAG_PERSISTENT != 0
                && engine.sublayers.contains_key(&key_of(&f.sublayer_key))
                && (f.action.callout_key().is_none() || managed_ids.contains(&f.callout_id))
                && f.provider_context_key.is_none_or(|k| engine.provider_contexts.contains_key(&key_of(&k)))
        })
        .cloned()
        .collect();
    engine.filters.clear();
    engine.by_layer.clear();
    for record in kept {
        engine.publish(record);
    }
    let callouts: Vec<(u128, u32)> = engine.managed.iter().map(|(&k, c)| (k, c.id)).collect();
    engine.callout_ids.retain(|key, id| callouts.contains(&(*key, *id)));
    drop(engine);
    reauthorization::reset();
    Ok(())
}

/// Adds an `FWPM_GENERAL_CONTEXT` provider context carrying `data`.
pub fn add_provider_context(data: &[u8]) -> GUID {
    add_provider_context_of_type(fwp::FWPM_GENERAL_CONTEXT, data)
}

/// Fixes the IRQL at which notifyFn is called. By default each call is at
/// PASSIVE_LEVEL or DISPATCH_LEVEL, chosen at random ("notifyFn runs at
/// IRQL <= DISPATCH_LEVEL"), so the driver meets both.
pub fn set_notify_irql(irql: u8) {
    lock().notify_irql = Some(irql);
}

/// Drops the next `count` DELETE notifications (WFP has lost them under
/// load): the filter is deleted but the callout is never told.
pub fn lose_delete_notifications(count: u32) {
    lock().lose_delete_notifications = count;
}

/// Stops or starts the base filtering engine service (BFE). While it is
/// stopped `FwpmEngineOpen0` fails with `EPT_NT_NOT_REGISTERED` (no RPC
/// endpoint: what a client gets when the service is down; the DDI pages
/// only say a session needs BFE running), while `FwpsCalloutRegister*`
/// still works (WFP-SEMANTICS §2). Sessions already open are not modelled
/// as broken.
pub fn set_bfe_running(running: bool) {
    lock().bfe_stopped = !running;
}

/// The weight of a sublayer, if it exists.
pub fn sublayer_weight(key: &GUID) -> Option<u16> {
    lock().sublayers.get(&key_of(key)).map(|&(weight, _)| weight)
}

/// `FwpmFilterAdd0`: validates the filter, calls notifyFn ADD if its callout
/// is registered (a failure vetoes the add and is returned), and publishes it.
/// Atomic with respect to callout registration and unregistration: the
/// callout is registered for the whole add or for none of it.
pub fn add_filter(spec: &FilterSpec) -> Result<u64, NTSTATUS> {
    let Some(layer) = layer_by_key(&spec.layer_key) else { return Err(STATUS_FWP_LAYER_NOT_FOUND) };
    let permit_if_unregistered = spec.flags & fwp::FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED != 0;
    if permit_if_unregistered
        && !matches!(spec.action, FilterAction::CalloutTerminating(_) | FilterAction::CalloutUnknown(_))
    {
        return Err(STATUS_FWP_INVALID_PARAMETER);
    }
    let _gate = registration_gate::shared();
    let (record, registered, notify_irql) = {
        let mut engine = lock_for(CLIENT_SESSION);
        let Some(&(sublayer_weight, _)) = engine.sublayers.get(&key_of(&spec.sublayer_key)) else {
            return Err(STATUS_FWP_SUBLAYER_NOT_FOUND);
        };
        let mut callout_id = 0;
        let mut expose_provider_context = false;
        if let Some(callout_key) = spec.action.callout_key() {
            let Some(managed) = engine.managed.get(&key_of(&callout_key)).copied() else {
                return Err(STATUS_FWP_CALLOUT_NOT_FOUND);
            };
            if managed.layer_id != layer.id {
                return Err(STATUS_FWP_INVALID_PARAMETER);
            }
            callout_id = managed.id;
            expose_provider_context = managed.flags & fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT != 0;
        }
        let provider_context = match spec.provider_context {
            Some(key) => match engine.provider_contexts.get(&key_of(&key)) {
                Some(record) => Some(record.clone()),
                None => return Err(STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND),
            },
            None => None,
        };
        engine.next_filter_id += 1;
        let id = engine.next_filter_id;
        let record = FilterRecord::build(NewFilter {
            id,
            key: spec.key.unwrap_or_else(fresh_key),
            layer_id: layer.id,
            sublayer_weight,
            callout_id,
            spec,
            provider_context: provider_context.as_ref(),
            expose_provider_context,
        });
        let registered = if callout_id != 0 { engine.registered_by_id(callout_id) } else { None };
        (record, registered, engine.next_notify_irql())
    };
    sync_points::reached(sync_points::FILTER_ADD_CALLOUT_LOOKED_UP);
    if let Some(callout) = registered {
        let key = record.key;
        let filter = record.fwps.get();
        // SAFETY: the record is not published yet: notifyFn has the only
        // access to the filter, as during a real ADD.
        let status = unsafe { call_notify(&callout, notify_irql, FWPS_CALLOUT_NOTIFY_ADD_FILTER, &key, filter) };
        if status < 0 {
            return Err(status);
        }
    }
    let (id, layer_id) = (record.id, record.layer_id);
    lock_for(CLIENT_SESSION).publish(Arc::new(record));
    reauthorization::policy_changed(layer_id);
    Ok(id)
}

/// `FwpmFilterDeleteById0`: unpublishes the filter (no new classification
/// uses it), then calls notifyFn DELETE (`filterKey` NULL) if its callout
/// is registered. Whether the DELETE waits for classifications already
/// using the filter is undocumented (WFP-SEMANTICS §3, UNCONFIRMED): each
/// delete takes one reading at random (or the one a test fixed with
/// [`set_delete_waits_for_classifies`]), so a callout meets both. Atomic
/// with respect to callout registration and unregistration, like
/// [`add_filter`].
pub fn delete_filter(filter_id: u64) -> Result<(), NTSTATUS> {
    // A transient failure (fault injection): nothing changes, the filter
    // stays and its callout is not told.
    if let Some(status) = crate::faults::call_should_fail("FwpmFilterDeleteById0") {
        return Err(status);
    }
    let _gate = registration_gate::shared();
    let (record, registered, notify_irql, lose, wait) = {
        let mut engine = lock_for(CLIENT_SESSION);
        let Some(record) = engine.unpublish(filter_id) else { return Err(STATUS_FWP_FILTER_NOT_FOUND) };
        let registered = if record.callout_id != 0 { engine.registered_by_id(record.callout_id) } else { None };
        let lose = registered.is_some() && engine.lose_delete_notifications > 0;
        if lose {
            engine.lose_delete_notifications -= 1;
        }
        (record, registered, engine.next_notify_irql(), lose, engine.next_delete_waits())
    };
    sync_points::reached(sync_points::FILTER_DELETE_CALLOUT_LOOKED_UP);
    record.deleted.store(true, Ordering::SeqCst);
    if wait && record.in_flight.load(Ordering::SeqCst) != 0 {
        // Waiting for a classification, as for an engine lock (what
        // `sync_points::wait_blocked_or_finished` tells from finishing).
        let _waiting = sync_points::BlockedWait::begin();
        while record.in_flight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
    if let (Some(callout), false) = (registered, lose) {
        let filter = record.fwps.get();
        // SAFETY: the filter is unpublished; classifications still in
        // flight (when this delete does not wait) only read it, and the
        // record, shared with them, outlives the call.
        unsafe { call_notify(&callout, notify_irql, FWPS_CALLOUT_NOTIFY_DELETE_FILTER, std::ptr::null(), filter) };
    }
    reauthorization::policy_changed(record.layer_id);
    Ok(())
}

/// Fixes whether a filter's DELETE waits for the classifications still
/// using it (`None`: a coin per delete, the default). A test facility:
/// both fixed readings are ones the documentation leaves open.
pub fn set_delete_waits_for_classifies(wait: Option<bool>) {
    lock().delete_waits_for_classifies = wait;
}

/// Fixes the IRQL classifyFn runs at when the engine's caller is at
/// PASSIVE_LEVEL (`None`: PASSIVE or DISPATCH at random per call, the
/// default; row J1). A test facility.
pub fn set_classify_irql(irql: Option<u8>) {
    lock().classify_irql = irql;
}

/// Fixes the IRQL flowDeleteFn runs at (`None`: PASSIVE or DISPATCH at
/// random per call, the default; row J2). A test facility.
pub fn set_flow_delete_irql(irql: Option<u8>) {
    lock().flow_delete_irql = irql;
}

/// Fixes whether unregistering a callout while one of its classifyFn calls
/// runs is refused with `STATUS_DEVICE_BUSY` (`None`: a coin per
/// unregistration, the default; row R7). A test facility.
pub fn set_unregister_busy_while_classifying(busy: Option<bool>) {
    lock().unregister_busy_while_classifying = busy;
}

/// One classifyFn call of a callout, counted while it runs (what
/// `FwpsCalloutUnregisterById0` may refuse to unregister under, row R7).
struct Classifying(u32);

impl Classifying {
    fn begin(callout_id: u32) -> Self {
        *lock().classifying.entry(callout_id).or_insert(0) += 1;
        Self(callout_id)
    }
}

impl Drop for Classifying {
    fn drop(&mut self) {
        if let Some(running) = lock().classifying.get_mut(&self.0) {
            *running = running.saturating_sub(1);
        }
    }
}

/// Calls notifyFn with an arbitrary notify type for a live filter (to test
/// that unknown types are ignored).
pub fn send_notify(filter_id: u64, notify_type: FWPS_CALLOUT_NOTIFY_TYPE) -> Result<NTSTATUS, NTSTATUS> {
    let _gate = registration_gate::shared();
    let (record, callout, irql_level) = {
        let engine = lock();
        let record = engine.filters.get(&filter_id).cloned().ok_or(STATUS_FWP_FILTER_NOT_FOUND)?;
        let callout = engine.registered_by_id(record.callout_id).ok_or(STATUS_FWP_CALLOUT_NOT_FOUND)?;
        (record, callout, engine.next_notify_irql())
    };
    let key = record.key;
    // SAFETY: the record is alive (we hold an Arc); the driver must not
    // write the filter for a type it does not handle.
    Ok(unsafe { call_notify(&callout, irql_level, notify_type, &key, record.fwps.get()) })
}

/// Calls a callout's notifyFn at `irql`, marked as inside notifyFn.
///
/// # Safety
/// `filter` must be valid, and writable by notifyFn for the call; `key` NULL
/// or valid.
unsafe fn call_notify(
    callout: &RegisteredCallout,
    irql: u8,
    notify_type: FWPS_CALLOUT_NOTIFY_TYPE,
    key: *const GUID,
    filter: *mut FWPS_FILTER2,
) -> NTSTATUS {
    // SAFETY: the callout registered this notifyFn; the pointers are valid
    // per this function's contract.
    callout_scope::inside("notifyFn", || irql::at_level(irql, || unsafe { (callout.notify)(notify_type, key, filter) }))
}

/// Ids of every filter in the engine.
pub fn filter_ids() -> Vec<u64> {
    lock().filters.keys().copied().collect()
}

/// The `context` member of a filter's FWPS structure.
pub fn filter_context(filter_id: u64) -> Option<u64> {
    lock().filters.get(&filter_id).map(|r| r.context())
}

/// Whether a callout key is registered.
pub fn is_registered(callout_key: &GUID) -> bool {
    lock().registered.contains_key(&key_of(callout_key))
}

/// The run-time id of a callout key (registered or added).
pub fn callout_id(callout_key: &GUID) -> Option<u32> {
    lock().callout_ids.get(&key_of(callout_key)).copied()
}

/// Whether a management object exists.
pub fn has_managed_callout(callout_key: &GUID) -> bool {
    lock().managed.contains_key(&key_of(callout_key))
}

/// The flags of a management callout, if it exists.
pub fn managed_callout_flags(callout_key: &GUID) -> Option<u32> {
    lock().managed.get(&key_of(callout_key)).map(|c| c.flags)
}

/// Whether a sublayer exists.
pub fn has_sublayer(key: &GUID) -> bool {
    lock().sublayers.contains_key(&key_of(key))
}

fn matches(record: &FilterRecord, input: &ClassifyInput) -> bool {
    record.conditions.iter().all(|&(field, value)| input.field_u32(field) == Some(value))
}

/// One filter's verdict, if it reached one.
struct FilterOutcome {
    action: u32,
    hard: bool,
    absorbed: bool,
    invoked: bool,
    /// A callout run without the write right returned BLOCK: a veto.
    veto: bool,
}

fn run_filter(record: &Arc<FilterRecord>, input: &ClassifyInput, rights: u32) -> Option<FilterOutcome> {
    let terminal = |action, hard| Some(FilterOutcome { action, hard, absorbed: false, invoked: false, veto: false });
    // A static BLOCK always clears the write right; a PERMIT only with
    // FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT.
    let hard_permit = record.fwpm_flags & fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT != 0;
    let callout = match record.action {
        FilterAction::Permit => return terminal(fwp::FWP_ACTION_PERMIT, hard_permit),
        FilterAction::Block => return terminal(fwp::FWP_ACTION_BLOCK, true),
        _ => lock().registered_by_id(record.callout_id),
    };
    let Some(callout) = callout else {
        // Unregistered callout: inspection filters are ignored; the others
        // block unless the filter permits when its callout is absent.
        return match record.action {
            FilterAction::CalloutInspection(_) => None,
            _ if record.fwpm_flags & fwp::FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED != 0 => {
                terminal(fwp::FWP_ACTION_PERMIT, hard_permit)
            }
            _ => terminal(fwp::FWP_ACTION_BLOCK, true),
        };
    };
    // Rundown: a filter being deleted is not used by new classifications.
    record.in_flight.fetch_add(1, Ordering::SeqCst);
    if record.deleted.load(Ordering::SeqCst) {
        record.in_flight.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let mut lent = LentClassifyOut::new(record.id, rights);
    let out_ptr = lent.as_mut_ptr();
    let classify_context = record.id as usize as *const core::ffi::c_void;
    pending::set_filter(input.metadata.completionHandle, record.id);
    // The rule binds the callout that pends (FwpsPendOperation0 remarks);
    // a callout of another sublayer that runs after it answers as usual.
    let pended_before = pending::is_pended(input.metadata.completionHandle);
    // SAFETY: the record is published and protected by in_flight; notifyFn
    // wrote it before publication and nothing writes it now.
    let scope = ClassifyScope::lend(input, unsafe { &*record.fwps.get() });
    let classifying = Classifying::begin(callout.id);
    // At most DISPATCH_LEVEL: PASSIVE or DISPATCH, at random, where the
    // caller is at PASSIVE (row J1); never lowered below the caller's.
    let level = lock().next_classify_irql();
    callout_scope::inside("classifyFn", || {
        irql::at_level(level, || {
            // SAFETY: every pointer is valid for the call (owned by `scope`,
            // `input` and this frame); they are poisoned and freed after it.
            unsafe {
                (callout.classify)(
                    scope.values(),
                    scope.metadata(),
                    input.layer_data,
                    classify_context,
                    scope.filter(),
                    0,
                    out_ptr,
                )
            }
        })
    });
    drop(classifying);
    drop(scope);
    record.in_flight.fetch_sub(1, Ordering::SeqCst);
    let out = lent.finish();
    let hard = out.rights & FWPS_RIGHT_ACTION_WRITE == 0;
    if !pended_before
        && pending::is_pended(input.metadata.completionHandle)
        && !(out.actionType == fwp::FWP_ACTION_BLOCK && hard && out.flags & FWPS_CLASSIFY_OUT_FLAG_ABSORB != 0)
    {
        report(
            ViolationKind::ApiMisuse,
            format!(
                "filter {}: a pended classification must return BLOCK + ABSORB with the write right cleared",
                record.id
            ),
        );
    }
    let absorbed = out.flags & FWPS_CLASSIFY_OUT_FLAG_ABSORB != 0;
    let veto = rights & FWPS_RIGHT_ACTION_WRITE == 0 && out.actionType == fwp::FWP_ACTION_BLOCK;
    let verdict_written = out.actionType == fwp::FWP_ACTION_PERMIT || out.actionType == fwp::FWP_ACTION_BLOCK;
    let flow_layer = matches!(record.layer_id, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4 | FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6);
    if flow_layer && verdict_written {
        // "A filter at this layer should not return Block or Permit" (ALE Layers).
        report(
            ViolationKind::ApiMisuse,
            format!(
                "filter {}: a callout returned {:#x} at ALE_FLOW_ESTABLISHED, where a filter should not return \
                 Block or Permit",
                record.id, out.actionType
            ),
        );
    }
    let action = match (record.action, out.actionType) {
        (FilterAction::CalloutInspection(_), a) => {
            // "Invoke a callout that never returns block or permit" (FWPM_ACTION0).
            if verdict_written && !veto && !flow_layer {
                report(
                    ViolationKind::ApiMisuse,
                    format!("filter {}: an INSPECTION callout returned {a:#x}; it must return CONTINUE", record.id),
                );
            }
            return Some(FilterOutcome { action: 0, hard, absorbed, invoked: true, veto: false });
        }
        (_, a) if a == fwp::FWP_ACTION_PERMIT || a == fwp::FWP_ACTION_BLOCK => a,
        (FilterAction::CalloutUnknown(_), _) => {
            return Some(FilterOutcome { action: 0, hard, absorbed, invoked: true, veto: false });
        }
        // A terminating callout that returns neither is treated as BLOCK.
        _ => fwp::FWP_ACTION_BLOCK,
    };
    Some(FilterOutcome { action, hard, absorbed, invoked: true, veto })
}

/// Whether a lower sublayer's decision replaces the one so far ("Filter
/// Arbitration"): a hard block is final; a hard permit yields only to a
/// callout's veto; BLOCK overrides a soft permit; a soft block yields to
/// a hard permit. (Whether a soft PERMIT overrides a soft BLOCK is not
/// spelled out; "Block overrides Permit" says no, and so does the model.)
fn overrides(so_far: &ClassifyResult, next: &FilterOutcome) -> bool {
    let block = fwp::FWP_ACTION_BLOCK;
    match (so_far.hard, so_far.action == block) {
        (true, true) => false,
        (true, false) => next.veto,
        (false, false) => next.action == block,
        (false, true) => next.action != block && next.hard,
    }
}

/// Classifies a connection through every filter at its layer, with WFP's
/// arbitration: sublayers by weight, the first PERMIT/BLOCK in each wins
/// there; across sublayers as [`overrides`] says. No match permits.
pub fn classify(connection: &Connection) -> ClassifyResult {
    classify_with_flow(connection, 0)
}

/// [`classify`] with a flow handle in the metadata (0 = none). At
/// ALE_AUTH_RECV_ACCEPT the engine passes the first packet as `layerData`.
pub(crate) fn classify_with_flow(connection: &Connection, flow_handle: u64) -> ClassifyResult {
    let packet = layer_data_for(connection);
    let result = classify_input(connection, flow_handle, packet);
    packets::release_incoming(packet);
    result
}

/// The packet the engine passes as `layerData` (engine-owned, released
/// after the classification; NULL for none):
/// - at ALE_AUTH_RECV_ACCEPT always one (WDS inspect asserts it, initial
///   and reauthorization alike): the inbound packet, or, for a
///   reauthorization triggered by an outbound packet (Z8), that packet at
///   its transport header (row Z9);
/// - at ALE_AUTH_CONNECT, a reauthorization for a reason other than
///   CLASSIFY_COMPLETION carries the packet that triggered it, in the
///   metadata's direction, or none: the documentation does not say which,
///   so a coin per reauthorization ([`set_connect_reauthorization_packet`];
///   row Z9); the completion's carries none (D1), and an initial
///   classification its first datagram (UDP) or none (TCP).
fn layer_data_for(connection: &Connection) -> *mut core::ffi::c_void {
    let reauthorization = connection.flags & FWP_CONDITION_FLAG_IS_REAUTHORIZE != 0;
    let direction = if connection.opposite_direction { Direction::Inbound } else { Direction::Outbound };
    match connection.layer_id {
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6 => {
            if reauthorization && connection.opposite_direction {
                packets::triggering_packet(connection, Direction::Outbound)
            } else {
                packets::incoming(connection)
            }
        }
        FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6
            if reauthorization
                && connection.reauthorize_reason & fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION == 0 =>
        {
            if lock().next_connect_reauthorization_packet() {
                packets::triggering_packet(connection, direction)
            } else {
                std::ptr::null_mut()
            }
        }
        _ => packets::first_datagram(connection),
    }
}

/// Fixes whether a reauthorization at ALE_AUTH_CONNECT for a reason other
/// than CLASSIFY_COMPLETION carries the packet that triggered it as
/// `layerData` (`None`: a coin per reauthorization, the default; row Z9).
/// A test facility: both readings are ones the documentation leaves open.
pub fn set_connect_reauthorization_packet(packet: Option<bool>) {
    lock().connect_reauthorization_packet = packet;
}

/// Classifies a packet the engine already holds (a reinjected clone).
pub(crate) fn classify_with_packet(connection: &Connection, packet: *mut core::ffi::c_void) -> ClassifyResult {
    classify_input(connection, 0, packet)
}

fn classify_input(connection: &Connection, flow_handle: u64, packet: *mut core::ffi::c_void) -> ClassifyResult {
    let Some(layer) = layer_by_id(connection.layer_id) else {
        return ClassifyResult::NO_MATCH;
    };
    let handle = pending::begin(connection, layer.pendable);
    if !packet.is_null() {
        pending::set_packet(handle);
    }
    let mut input = ClassifyInput::new(&layer, connection, handle);
    input.set_flow_handle(flow_handle);
    input.layer_data = packet;
    let list: Vec<Arc<FilterRecord>> = lock()
        .by_layer
        .get(&layer.id)
        .map(|filters| filters.values().filter(|record| matches(record, &input)).cloned().collect())
        .unwrap_or_default();
    let mut result = ClassifyResult::NO_MATCH;
    let mut sublayer_done: Option<u128> = None;
    let mut decided = false;
    for record in list.iter() {
        if sublayer_done == Some(key_of(&record.sublayer_key)) {
            continue;
        }
        let rights = if result.hard { 0 } else { FWPS_RIGHT_ACTION_WRITE };
        let Some(outcome) = run_filter(record, &input, rights) else { continue };
        result.callouts_invoked += u32::from(outcome.invoked);
        if outcome.action == 0 {
            continue;
        }
        sublayer_done = Some(key_of(&record.sublayer_key));
        if !decided || overrides(&result, &outcome) {
            result.action = outcome.action;
            result.hard = outcome.hard || outcome.veto;
            result.absorbed = outcome.absorbed;
            result.decided_by = Some(record.id);
            result.vetoed |= decided && outcome.veto;
            decided = true;
        }
    }
    result.pended = pending::end(handle);
    reauthorization::classified(connection, &result);
    result
}

/// Classifies a connection through one filter only (as if the engine had
/// reached it), whatever its conditions: for targeted tests and benchmarks.
pub fn classify_filter(filter_id: u64, connection: &Connection) -> Result<ClassifyResult, NTSTATUS> {
    let record = lock().filters.get(&filter_id).cloned().ok_or(STATUS_FWP_FILTER_NOT_FOUND)?;
    let layer = layer_by_id(record.layer_id).ok_or(STATUS_FWP_LAYER_NOT_FOUND)?;
    let handle = pending::begin(connection, layer.pendable);
    let mut input = ClassifyInput::new(&layer, connection, handle);
    // At recv-accept the engine always passes the packet, as in `classify`.
    let inbound = matches!(record.layer_id, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6);
    input.layer_data = if inbound { packets::incoming(connection) } else { std::ptr::null_mut() };
    let outcome = run_filter(&record, &input, FWPS_RIGHT_ACTION_WRITE);
    packets::release_incoming(input.layer_data);
    let pended = pending::end(handle);
    Ok(match outcome {
        Some(o) => ClassifyResult {
            action: if o.action == 0 { fwp::FWP_ACTION_PERMIT } else { o.action },
            hard: o.hard,
            absorbed: o.absorbed,
            decided_by: Some(filter_id),
            callouts_invoked: u32::from(o.invoked),
            pended,
            vetoed: false,
        },
        None => ClassifyResult { pended, ..ClassifyResult::NO_MATCH },
    })
}
