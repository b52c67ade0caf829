//! The kernel-mode management API (`Fwpm*`, from fwpkclnt.sys): sessions,
//! transactions, providers, sublayers, callouts, enumeration, provider
//! contexts and engine memory. All PASSIVE_LEVEL except `FwpmFreeMemory0`.

use crate::engine::classification::client;
use crate::engine::model::layers::{key_of, layer_by_id, layer_by_key};
use crate::engine::model::records::{EngineAllocation, FilterBatch, ProviderContextCopy, SubLayerCopy};
use crate::engine::state::engine_state::{
    Deleted, EngineState, EnumState, ManagedCallout, ObjectKind, Session, Undo, lock, lock_for, transaction_ended,
};
use crate::faults;
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::fwp::{
    FWPM_CALLOUT0, FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER0, FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER0, FWPM_SESSION0,
    FWPM_SUBLAYER0,
};
use fwps_types::*;
use std::ffi::c_void;

fn passive(api: &'static str) -> Result<(), NTSTATUS> {
    if !irql::require_at_most(PASSIVE_LEVEL, api) {
        return Err(STATUS_INVALID_DEVICE_STATE);
    }
    match faults::call_should_fail(api) {
        Some(status) => Err(status),
        None => Ok(()),
    }
}

fn session_of(handle: *mut c_void, api: &str) -> Result<usize, NTSTATUS> {
    let id = handle as usize;
    if lock().sessions.contains_key(&id) {
        Ok(id)
    } else {
        report(ViolationKind::ApiMisuse, format!("{api} with an invalid engine handle {id:#x}"));
        Err(STATUS_INVALID_PARAMETER)
    }
}

macro_rules! check {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}

/// `FwpmEngineOpen0`.
///
/// # Safety
/// `engine_handle` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmEngineOpen0(
    _server: *const u16,
    authn_service: u32,
    _auth_identity: *const c_void,
    _session: *const FWPM_SESSION0,
    engine_handle: *mut *mut c_void,
) -> NTSTATUS {
    check!(passive("FwpmEngineOpen0"));
    if engine_handle.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    if authn_service != RPC_C_AUTHN_WINNT && authn_service != u32::MAX {
        return STATUS_INVALID_PARAMETER;
    }
    let mut engine = lock();
    if engine.bfe_stopped {
        return EPT_NT_NOT_REGISTERED;
    }
    engine.next_handle += 0x10;
    let handle = engine.next_handle;
    engine.sessions.insert(handle, Session::default());
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { engine_handle.write(handle as *mut c_void) };
    STATUS_SUCCESS
}

/// `EPT_NT_NOT_REGISTERED`: no endpoint for the base filtering engine (the
/// service is not running).
pub const EPT_NT_NOT_REGISTERED: NTSTATUS = 0xC002_0036_u32 as i32;

/// `FwpmEngineClose0`: an open transaction is aborted (and reported).
#[unsafe(no_mangle)]
pub extern "system" fn FwpmEngineClose0(engine_handle: *mut c_void) -> NTSTATUS {
    check!(passive("FwpmEngineClose0"));
    let id = check!(session_of(engine_handle, "FwpmEngineClose0"));
    let mut engine = lock();
    if let Some(session) = engine.sessions.remove(&id)
        && let Some(undo) = session.transaction
    {
        report(ViolationKind::ApiMisuse, "FwpmEngineClose0 with a transaction still open");
        undo_all(&mut engine, &undo);
        engine.transaction_owner = None;
        transaction_ended();
    }
    engine.enums.retain(|_, (owner, _)| *owner != id);
    STATUS_SUCCESS
}

pub(crate) fn undo_all(engine: &mut EngineState, undo: &[Undo]) {
    for step in undo.iter().rev() {
        match *step {
            Undo::Added(kind, key) => {
                match kind {
                    ObjectKind::Provider => engine.providers.remove(&key).map(drop),
                    ObjectKind::SubLayer => engine.sublayers.remove(&key).map(drop),
                    ObjectKind::Callout => engine.managed.remove(&key).map(drop),
                };
                engine.persistent.remove(&key);
            }
            Undo::Deleted { key, object, persistent } => {
                match object {
                    Deleted::Provider => {
                        engine.providers.insert(key, ());
                    }
                    Deleted::SubLayer(weight, provider) => {
                        engine.sublayers.insert(key, (weight, provider));
                    }
                    Deleted::Callout(callout) => {
                        engine.managed.insert(key, callout);
                    }
                }
                if persistent {
                    engine.persistent.insert(key);
                }
            }
        }
    }
}

/// `FwpmTransactionBegin0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpmTransactionBegin0(engine_handle: *mut c_void, _flags: u32) -> NTSTATUS {
    check!(passive("FwpmTransactionBegin0"));
    let id = check!(session_of(engine_handle, "FwpmTransactionBegin0"));
    let mut engine = lock_for(id);
    let Some(session) = engine.sessions.get_mut(&id) else { return STATUS_INVALID_PARAMETER };
    if session.transaction.is_some() {
        return STATUS_FWP_TXN_IN_PROGRESS;
    }
    session.transaction = Some(Vec::new());
    engine.transaction_owner = Some(id);
    STATUS_SUCCESS
}

fn end_transaction(engine_handle: *mut c_void, api: &'static str, commit: bool) -> NTSTATUS {
    check!(passive(api));
    let id = check!(session_of(engine_handle, api));
    let mut engine = lock();
    let Some(undo) = engine.sessions.get_mut(&id).and_then(|s| s.transaction.take()) else {
        return STATUS_FWP_NO_TXN_IN_PROGRESS;
    };
    if !commit {
        undo_all(&mut engine, &undo);
    }
    engine.transaction_owner = None;
    drop(engine);
    transaction_ended();
    STATUS_SUCCESS
}

/// `FwpmTransactionCommit0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpmTransactionCommit0(engine_handle: *mut c_void) -> NTSTATUS {
    end_transaction(engine_handle, "FwpmTransactionCommit0", true)
}

/// `FwpmTransactionAbort0`: everything the transaction added or deleted is
/// rolled back.
#[unsafe(no_mangle)]
pub extern "system" fn FwpmTransactionAbort0(engine_handle: *mut c_void) -> NTSTATUS {
    end_transaction(engine_handle, "FwpmTransactionAbort0", false)
}

fn record_undo(engine: &mut EngineState, session: usize, step: Undo) {
    if let Some(Some(undo)) = engine.sessions.get_mut(&session).map(|s| s.transaction.as_mut()) {
        undo.push(step);
    }
}

/// `FwpmProviderAdd0`.
///
/// # Safety
/// `provider` must be NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmProviderAdd0(
    engine_handle: *mut c_void,
    provider: *const FWPM_PROVIDER0,
    _sd: *const c_void,
) -> NTSTATUS {
    check!(passive("FwpmProviderAdd0"));
    let id = check!(session_of(engine_handle, "FwpmProviderAdd0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(provider) = (unsafe { provider.as_ref() }) else { return STATUS_FWP_NULL_POINTER };
    let key = key_of(&provider.providerKey);
    let mut engine = lock_for(id);
    if engine.providers.contains_key(&key) {
        return STATUS_FWP_ALREADY_EXISTS;
    }
    engine.providers.insert(key, ());
    if provider.flags & fwp::FWPM_PROVIDER_FLAG_PERSISTENT != 0 {
        engine.persistent.insert(key);
    }
    record_undo(&mut engine, id, Undo::Added(ObjectKind::Provider, key));
    STATUS_SUCCESS
}

/// `FwpmSubLayerAdd0`.
///
/// # Safety
/// `sublayer` must be NULL or valid (and its `providerKey` NULL or valid).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmSubLayerAdd0(
    engine_handle: *mut c_void,
    sublayer: *const FWPM_SUBLAYER0,
    _sd: *const c_void,
) -> NTSTATUS {
    check!(passive("FwpmSubLayerAdd0"));
    let id = check!(session_of(engine_handle, "FwpmSubLayerAdd0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(sublayer) = (unsafe { sublayer.as_ref() }) else { return STATUS_FWP_NULL_POINTER };
    // SAFETY: NULL or valid, per the caller.
    let provider = unsafe { sublayer.providerKey.as_ref() }.map(key_of);
    let key = key_of(&sublayer.subLayerKey);
    let mut engine = lock_for(id);
    if provider.is_some_and(|p| !engine.providers.contains_key(&p)) {
        return STATUS_FWP_PROVIDER_NOT_FOUND;
    }
    if engine.sublayers.contains_key(&key) {
        return STATUS_FWP_ALREADY_EXISTS;
    }
    engine.sublayers.insert(key, (sublayer.weight, provider));
    if sublayer.flags & fwp::FWPM_SUBLAYER_FLAG_PERSISTENT != 0 {
        engine.persistent.insert(key);
    }
    record_undo(&mut engine, id, Undo::Added(ObjectKind::SubLayer, key));
    STATUS_SUCCESS
}

/// `FwpmCalloutAdd0`: the run-time id equals the registration's.
///
/// # Safety
/// `callout` must be NULL or valid; `id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmCalloutAdd0(
    engine_handle: *mut c_void,
    callout: *const FWPM_CALLOUT0,
    _sd: *const c_void,
    id: *mut u32,
) -> NTSTATUS {
    check!(passive("FwpmCalloutAdd0"));
    let session = check!(session_of(engine_handle, "FwpmCalloutAdd0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(callout) = (unsafe { callout.as_ref() }) else { return STATUS_FWP_NULL_POINTER };
    let Some(layer) = layer_by_key(&callout.applicableLayer) else { return STATUS_FWP_LAYER_NOT_FOUND };
    // SAFETY: NULL or valid, per the caller.
    let provider = unsafe { callout.providerKey.as_ref() }.map(key_of);
    let key = key_of(&callout.calloutKey);
    let mut engine = lock_for(session);
    if provider.is_some_and(|p| !engine.providers.contains_key(&p)) {
        return STATUS_FWP_PROVIDER_NOT_FOUND;
    }
    if engine.managed.contains_key(&key) {
        return STATUS_FWP_ALREADY_EXISTS;
    }
    let callout_id = engine.callout_id_for(key);
    engine.managed.insert(key, ManagedCallout { id: callout_id, layer_id: layer.id, flags: callout.flags, provider });
    record_undo(&mut engine, session, Undo::Added(ObjectKind::Callout, key));
    if !id.is_null() {
        // SAFETY: non-NULL and writable, per the caller.
        unsafe { id.write(callout_id) };
    }
    STATUS_SUCCESS
}

/// A delete by key: refused while something uses the object; inside a
/// transaction, recorded so an abort puts the object back.
///
/// # Safety
/// `key` must be NULL or valid.
unsafe fn delete_by_key(engine_handle: *mut c_void, key: *const GUID, api: &'static str, kind: ObjectKind) -> NTSTATUS {
    check!(passive(api));
    let session = check!(session_of(engine_handle, api));
    // SAFETY: NULL or valid, per the caller.
    let Some(key) = (unsafe { key.as_ref() }).map(key_of) else { return STATUS_FWP_NULL_POINTER };
    let mut engine = lock_for(session);
    let object = match kind {
        ObjectKind::Callout => {
            let Some(managed) = engine.managed.get(&key).copied() else { return STATUS_FWP_CALLOUT_NOT_FOUND };
            if engine.filters.values().any(|f| f.callout_id == managed.id && f.action.callout_key().is_some()) {
                return STATUS_FWP_IN_USE;
            }
            engine.managed.remove(&key);
            Deleted::Callout(managed)
        }
        ObjectKind::SubLayer => {
            let Some(&(weight, provider)) = engine.sublayers.get(&key) else { return STATUS_FWP_SUBLAYER_NOT_FOUND };
            if engine.filters.values().any(|f| key_of(&f.sublayer_key) == key) {
                return STATUS_FWP_IN_USE;
            }
            engine.sublayers.remove(&key);
            Deleted::SubLayer(weight, provider)
        }
        ObjectKind::Provider => {
            if !engine.providers.contains_key(&key) {
                return STATUS_FWP_PROVIDER_NOT_FOUND;
            }
            if engine.sublayers.values().any(|(_, p)| *p == Some(key))
                || engine.managed.values().any(|c| c.provider == Some(key))
            {
                return STATUS_FWP_IN_USE;
            }
            engine.providers.remove(&key);
            Deleted::Provider
        }
    };
    // A deleted object is gone with its flags: one added again with the
    // same key is persistent only if added so.
    let persistent = engine.persistent.remove(&key);
    record_undo(&mut engine, session, Undo::Deleted { key, object, persistent });
    STATUS_SUCCESS
}

/// `FwpmFilterDeleteById0` from a kernel session: as a client's delete
/// (`client::delete_filter`: DELETE to the callout, reauthorization). Not
/// allowed inside the session's own explicit transaction here (the model
/// deletes filters outside transactions).
#[unsafe(no_mangle)]
pub extern "system" fn FwpmFilterDeleteById0(engine_handle: *mut c_void, id: u64) -> NTSTATUS {
    check!(passive("FwpmFilterDeleteById0"));
    let session = check!(session_of(engine_handle, "FwpmFilterDeleteById0"));
    if lock().transaction_owner == Some(session) {
        report(ViolationKind::ApiMisuse, "FwpmFilterDeleteById0 inside the session's transaction: not modelled");
        return STATUS_FWP_TXN_IN_PROGRESS;
    }
    match client::delete_filter(id) {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status,
    }
}

/// `FwpmCalloutDeleteByKey0`: `STATUS_FWP_IN_USE` while filters use it.
///
/// # Safety
/// `key` must be NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmCalloutDeleteByKey0(engine_handle: *mut c_void, key: *const GUID) -> NTSTATUS {
    // SAFETY: forwarded.
    unsafe { delete_by_key(engine_handle, key, "FwpmCalloutDeleteByKey0", ObjectKind::Callout) }
}

/// `FwpmSubLayerDeleteByKey0`.
///
/// # Safety
/// `key` must be NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmSubLayerDeleteByKey0(engine_handle: *mut c_void, key: *const GUID) -> NTSTATUS {
    // SAFETY: forwarded.
    unsafe { delete_by_key(engine_handle, key, "FwpmSubLayerDeleteByKey0", ObjectKind::SubLayer) }
}

/// `FwpmProviderDeleteByKey0`.
///
/// # Safety
/// `key` must be NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmProviderDeleteByKey0(engine_handle: *mut c_void, key: *const GUID) -> NTSTATUS {
    // SAFETY: forwarded.
    unsafe { delete_by_key(engine_handle, key, "FwpmProviderDeleteByKey0", ObjectKind::Provider) }
}

/// `FwpmFilterCreateEnumHandle0`: snapshots the matching filters.
///
/// # Safety
/// `template` NULL or valid; `enum_handle` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmFilterCreateEnumHandle0(
    engine_handle: *mut c_void,
    template: *const FWPM_FILTER_ENUM_TEMPLATE0,
    enum_handle: *mut *mut c_void,
) -> NTSTATUS {
    check!(passive("FwpmFilterCreateEnumHandle0"));
    let session = check!(session_of(engine_handle, "FwpmFilterCreateEnumHandle0"));
    if enum_handle.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    // SAFETY: NULL or valid, per the caller.
    let template = unsafe { template.as_ref() };
    let mut layer_id = None;
    let mut callout = None;
    // "Only filters whose action type contains at least one of the bits in
    // actionMask will be returned"; 0xFFFFFFFF ignores the action type;
    // FWP_ACTION_FLAG_CALLOUT: "calloutKey must not be NULL"
    // (FWPM_FILTER_ENUM_TEMPLATE0). No template returns every filter.
    let mut action_mask = u32::MAX;
    if let Some(t) = template {
        action_mask = t.actionMask;
        let Some(layer) = layer_by_key(&t.layerKey) else { return STATUS_FWP_LAYER_NOT_FOUND };
        layer_id = Some(layer.id);
        // SAFETY: NULL or valid, per the caller.
        callout = unsafe { t.calloutKey.as_ref() }.map(key_of);
        if t.actionMask != u32::MAX && t.actionMask & fwp::FWP_ACTION_FLAG_CALLOUT != 0 && callout.is_none() {
            return STATUS_FWP_INVALID_PARAMETER;
        }
    }
    let mut engine = lock_for(session);
    let remaining = engine
        .filters
        .values()
        .filter(|f| layer_id.is_none_or(|l| f.layer_id == l))
        .filter(|f| callout.is_none_or(|c| f.action.callout_key().is_some_and(|k| key_of(&k) == c)))
        .filter(|f| f.action.action_type() & action_mask != 0)
        .cloned()
        .collect();
    engine.next_handle += 0x10;
    let handle = engine.next_handle;
    engine.enums.insert(handle, (session, EnumState { remaining }));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { enum_handle.write(handle as *mut c_void) };
    STATUS_SUCCESS
}

/// `FwpmFilterEnum0`: up to `requested` filters; fewer means done.
///
/// # Safety
/// `entries` and `returned` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmFilterEnum0(
    engine_handle: *mut c_void,
    enum_handle: *mut c_void,
    requested: u32,
    entries: *mut *mut *mut FWPM_FILTER0,
    returned: *mut u32,
) -> NTSTATUS {
    check!(passive("FwpmFilterEnum0"));
    check!(session_of(engine_handle, "FwpmFilterEnum0"));
    if entries.is_null() || returned.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let mut engine = lock();
    let Some((_, state)) = engine.enums.get_mut(&(enum_handle as usize)) else {
        report(ViolationKind::ApiMisuse, "FwpmFilterEnum0 with an invalid enumeration handle");
        return STATUS_INVALID_PARAMETER;
    };
    let take = (requested as usize).min(state.remaining.len());
    let records: Vec<_> = state.remaining.drain(..take).collect();
    let (pointer, count) = if records.is_empty() {
        (std::ptr::null_mut(), 0)
    } else {
        let mut batch = FilterBatch::new(&records);
        let pointer = batch.pointers.as_mut_ptr();
        engine.allocations.insert(pointer as usize, EngineAllocation::FilterBatch(batch));
        (pointer, records.len() as u32)
    };
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { entries.write(pointer) };
    // SAFETY: as above.
    unsafe { returned.write(count) };
    STATUS_SUCCESS
}

/// `FwpmFilterDestroyEnumHandle0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpmFilterDestroyEnumHandle0(engine_handle: *mut c_void, enum_handle: *mut c_void) -> NTSTATUS {
    check!(passive("FwpmFilterDestroyEnumHandle0"));
    check!(session_of(engine_handle, "FwpmFilterDestroyEnumHandle0"));
    if lock().enums.remove(&(enum_handle as usize)).is_none() {
        report(ViolationKind::ApiMisuse, "FwpmFilterDestroyEnumHandle0 with an invalid handle");
        return STATUS_INVALID_PARAMETER;
    }
    STATUS_SUCCESS
}

/// `FwpmProviderContextGetByKey2`.
///
/// # Safety
/// `key` NULL or valid; `context` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmProviderContextGetByKey2(
    engine_handle: *mut c_void,
    key: *const GUID,
    context: *mut *mut FWPM_PROVIDER_CONTEXT2,
) -> NTSTATUS {
    check!(passive("FwpmProviderContextGetByKey2"));
    check!(session_of(engine_handle, "FwpmProviderContextGetByKey2"));
    // SAFETY: NULL or valid, per the caller.
    let Some(key) = (unsafe { key.as_ref() }).map(key_of) else { return STATUS_FWP_NULL_POINTER };
    if context.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let mut engine = lock();
    let Some(record) = engine.provider_contexts.get(&key).cloned() else {
        return STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND;
    };
    let mut copy = ProviderContextCopy::new(&record);
    let pointer = &mut copy.context as *mut FWPM_PROVIDER_CONTEXT2;
    engine.allocations.insert(pointer as usize, EngineAllocation::ProviderContext(copy));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { context.write(pointer) };
    STATUS_SUCCESS
}

/// `FwpmCalloutGetByKey0`: a copy of the management callout (key, flags,
/// layer), freed with `FwpmFreeMemory0`.
///
/// # Safety
/// `key` NULL or valid; `callout` writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmCalloutGetByKey0(
    engine_handle: *mut c_void,
    key: *const GUID,
    callout: *mut *mut FWPM_CALLOUT0,
) -> NTSTATUS {
    check!(passive("FwpmCalloutGetByKey0"));
    check!(session_of(engine_handle, "FwpmCalloutGetByKey0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(wanted) = (unsafe { key.as_ref() }).copied() else { return STATUS_FWP_NULL_POINTER };
    if callout.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let mut engine = lock();
    let Some(managed) = engine.managed.get(&key_of(&wanted)).copied() else {
        return STATUS_FWP_CALLOUT_NOT_FOUND;
    };
    let Some(layer) = layer_by_id(managed.layer_id) else { return STATUS_FWP_LAYER_NOT_FOUND };
    let mut copy = Box::new(FWPM_CALLOUT0 {
        calloutKey: wanted,
        flags: managed.flags,
        applicableLayer: layer.key,
        calloutId: managed.id,
        ..FWPM_CALLOUT0::default()
    });
    let pointer = &mut *copy as *mut FWPM_CALLOUT0;
    engine.allocations.insert(pointer as usize, EngineAllocation::Callout(copy));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { callout.write(pointer) };
    STATUS_SUCCESS
}

/// `FwpmProviderGetByKey0`: a copy of the provider (key, and
/// `FWPM_PROVIDER_FLAG_PERSISTENT` if it was added persistent), freed with
/// `FwpmFreeMemory0`; `STATUS_FWP_PROVIDER_NOT_FOUND` for an unknown key.
///
/// # Safety
/// `key` NULL or valid; `provider` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmProviderGetByKey0(
    engine_handle: *mut c_void,
    key: *const GUID,
    provider: *mut *mut FWPM_PROVIDER0,
) -> NTSTATUS {
    check!(passive("FwpmProviderGetByKey0"));
    check!(session_of(engine_handle, "FwpmProviderGetByKey0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(wanted) = (unsafe { key.as_ref() }).copied() else { return STATUS_FWP_NULL_POINTER };
    if provider.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let mut engine = lock();
    let key = key_of(&wanted);
    if !engine.providers.contains_key(&key) {
        return STATUS_FWP_PROVIDER_NOT_FOUND;
    }
    let flags = if engine.persistent.contains(&key) { fwp::FWPM_PROVIDER_FLAG_PERSISTENT } else { 0 };
    let mut copy = Box::new(FWPM_PROVIDER0 { providerKey: wanted, flags, ..FWPM_PROVIDER0::default() });
    let pointer = &mut *copy as *mut FWPM_PROVIDER0;
    engine.allocations.insert(pointer as usize, EngineAllocation::Provider(copy));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { provider.write(pointer) };
    STATUS_SUCCESS
}

/// `FwpmSubLayerGetByKey0`: a copy of the sublayer (key, weight, provider
/// key, and `FWPM_SUBLAYER_FLAG_PERSISTENT` if it was added persistent),
/// freed with `FwpmFreeMemory0`; `STATUS_FWP_SUBLAYER_NOT_FOUND` for an
/// unknown key.
///
/// # Safety
/// `key` NULL or valid; `sublayer` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmSubLayerGetByKey0(
    engine_handle: *mut c_void,
    key: *const GUID,
    sublayer: *mut *mut FWPM_SUBLAYER0,
) -> NTSTATUS {
    check!(passive("FwpmSubLayerGetByKey0"));
    check!(session_of(engine_handle, "FwpmSubLayerGetByKey0"));
    // SAFETY: NULL or valid, per the caller.
    let Some(wanted) = (unsafe { key.as_ref() }).copied() else { return STATUS_FWP_NULL_POINTER };
    if sublayer.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let mut engine = lock();
    let key = key_of(&wanted);
    let Some(&(weight, provider)) = engine.sublayers.get(&key) else { return STATUS_FWP_SUBLAYER_NOT_FOUND };
    let flags = if engine.persistent.contains(&key) { fwp::FWPM_SUBLAYER_FLAG_PERSISTENT } else { 0 };
    let mut copy = Box::new(SubLayerCopy {
        sublayer: FWPM_SUBLAYER0 { subLayerKey: wanted, flags, weight, ..FWPM_SUBLAYER0::default() },
        provider: GUID::from_u128(provider.unwrap_or(0)),
    });
    if provider.is_some() {
        copy.sublayer.providerKey = &mut copy.provider;
    }
    let pointer = &mut copy.sublayer as *mut FWPM_SUBLAYER0;
    engine.allocations.insert(pointer as usize, EngineAllocation::SubLayer(copy));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { sublayer.write(pointer) };
    STATUS_SUCCESS
}

/// `FwpmFreeMemory0`: any IRQL <= DISPATCH; sets `*p` to NULL.
///
/// # Safety
/// `p` must be NULL or point to a pointer the engine returned.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpmFreeMemory0(p: *mut *mut c_void) {
    irql::require_at_most(DISPATCH_LEVEL, "FwpmFreeMemory0");
    if p.is_null() {
        return;
    }
    // SAFETY: non-NULL; readable per the caller.
    let memory = unsafe { p.read() };
    if memory.is_null() {
        return;
    }
    if lock().allocations.remove(&(memory as usize)).is_none() {
        report(
            ViolationKind::DoubleFree,
            format!("FwpmFreeMemory0({:#x}): not engine memory (double free?)", memory as usize),
        );
    }
    // SAFETY: writable per the caller.
    unsafe { p.write(std::ptr::null_mut()) };
}
