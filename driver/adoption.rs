//! Late registration: filters that name our callouts may exist before we
//! register (persistent filters after a reboot, which our persistent
//! provider, sublayer and callouts let exist; a driver restart). The engine sends no ADD
//! for them but will send DELETE, and their `context` holds whatever was
//! there before (for a restart, a pointer into freed pool). We enumerate
//! them and build their contexts in the table; classify finds them there.
#![deny(unsafe_code)]

use crate::callouts::{CALLOUTS, CalloutSpec};
use crate::driver_state::STATE;
use crate::ffi::{
    FwpmFilterCreateEnumHandle0, FwpmFilterDestroyEnumHandle0, FwpmFilterEnum0, FwpmFreeMemory0,
    FwpmProviderContextGetByKey2, FwpmTransactionAbort0, FwpmTransactionBegin0, FwpmTransactionCommit0, HANDLE, fwp,
};
use crate::filter_context::{ContextRef, Origin};
use crate::filter_view::ProviderBlob;
use crate::log::Level;
use crate::management::EngineHandle;
use crate::notify::policy_from_blob;
use crate::status::{NtStatus, Result};
use core::ffi::c_void;
use core::sync::atomic::Ordering;
use fwps_types::fwp::{FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER0, FWPM_PROVIDER_CONTEXT2};
use wfpcallout_wire::PolicyRepr;

/// Filters fetched per `FwpmFilterEnum0` call.
const ENUM_BATCH: u32 = 64;

/// Adopts every filter naming one of our callouts. Runs inside a
/// transaction so the snapshot is consistent and a concurrent delete waits
/// until our context is in the table (its DELETE then finds it).
/// Returns how many filters were adopted, or the first failure: then some
/// filter may be unknown to us, and classify must keep using the table.
pub fn adopt_existing_filters(engine: EngineHandle) -> Result<usize> {
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle; PASSIVE_LEVEL.
    NtStatus::to_result(unsafe { FwpmTransactionBegin0(engine.raw(), 0) })?;
    let mut adopted = 0;
    let mut outcome = Ok(());
    for spec in CALLOUTS.iter() {
        match adopt_for_callout(engine, spec) {
            Ok(count) => adopted += count,
            Err(status) => outcome = outcome.and(Err(status)),
        }
    }
    // Nothing was written: abort is the cheapest way to end the transaction.
    // If abort fails, commit (of nothing) ends it instead: a transaction left
    // open would hold up every other management client.
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle with our transaction in progress.
    let aborted = NtStatus::to_result(unsafe { FwpmTransactionAbort0(engine.raw()) });
    if let Err(status) = aborted {
        crate::log!(Level::Warning, "FwpmTransactionAbort0 failed ({}): committing the empty transaction", status);
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle; our transaction is still in progress.
        let committed = NtStatus::to_result(unsafe { FwpmTransactionCommit0(engine.raw()) });
        if let Err(status) = committed {
            crate::log!(Level::Error, "ending the adoption transaction failed: {}", status);
        }
    }
    outcome.map(|()| adopted)
}

fn adopt_for_callout(engine: EngineHandle, spec: &'static CalloutSpec) -> Result<usize> {
    let template = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: spec.layer_key,
        enumType: fwp::FWP_FILTER_ENUM_OVERLAPPING,
        actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
        calloutKey: core::ptr::from_ref(&spec.key).cast_mut(),
        ..FWPM_FILTER_ENUM_TEMPLATE0::default()
    };
    let mut enum_handle: HANDLE = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: template and out-pointer are valid for the call.
    NtStatus::to_result(unsafe { FwpmFilterCreateEnumHandle0(engine.raw(), &template, &mut enum_handle) })?;
    let result = enumerate(engine, enum_handle, spec.layer_id);
    #[allow(unsafe_code)]
    // SAFETY: the handle came from FwpmFilterCreateEnumHandle0 above.
    let _ = unsafe { FwpmFilterDestroyEnumHandle0(engine.raw(), enum_handle) };
    result
}

fn enumerate(engine: EngineHandle, enum_handle: HANDLE, layer_id: u16) -> Result<usize> {
    let mut adopted = 0;
    let mut outcome = Ok(());
    loop {
        let mut entries: *mut *mut FWPM_FILTER0 = core::ptr::null_mut();
        let mut returned = 0u32;
        #[allow(unsafe_code)]
        // SAFETY: out-pointers are valid; the engine allocates the array.
        let status = unsafe { FwpmFilterEnum0(engine.raw(), enum_handle, ENUM_BATCH, &mut entries, &mut returned) };
        NtStatus::to_result(status)?;
        for index in 0..returned as usize {
            match engine_filter(entries, index).map(|filter| adopt_one(engine, filter, layer_id)) {
                Some(Ok(true)) => adopted += 1,
                Some(Ok(false)) => {}
                Some(Err(status)) => outcome = outcome.and(Err(status)),
                None => outcome = outcome.and(Err(NtStatus::INVALID_PARAMETER)),
            }
        }
        free_engine_memory(entries.cast());
        if returned < ENUM_BATCH {
            return outcome.map(|()| adopted);
        }
    }
}

#[allow(unsafe_code)]
fn engine_filter<'a>(entries: *mut *mut FWPM_FILTER0, index: usize) -> Option<&'a FWPM_FILTER0> {
    if entries.is_null() {
        return None;
    }
    // SAFETY: FwpmFilterEnum0 returned an array of `returned` pointers and
    // index < returned; it stays valid until freed after this batch.
    let entry = unsafe { entries.add(index) };
    // SAFETY: as above: the slot is readable.
    let filter = unsafe { *entry };
    // SAFETY: each entry points to a filter valid until the array is freed.
    unsafe { filter.as_ref() }
}

fn free_engine_memory(memory: *mut c_void) {
    if memory.is_null() {
        return;
    }
    let mut memory = memory;
    #[allow(unsafe_code)]
    // SAFETY: memory came from the engine (enum array or provider context).
    unsafe {
        FwpmFreeMemory0(&mut memory)
    };
}

/// The policy of an adopted filter: from its provider context if it has
/// one. A malformed policy cannot be vetoed any more: the filter gets the
/// default policy and the event is counted and logged.
fn adopted_policy(engine: EngineHandle, filter: &FWPM_FILTER0) -> PolicyRepr {
    if filter.flags & fwp::FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT == 0 {
        return PolicyRepr::DEFAULT;
    }
    #[allow(unsafe_code)]
    // SAFETY: with HAS_PROVIDER_CONTEXT the union holds providerContextKey.
    let key = unsafe { filter.Anonymous.providerContextKey };
    let mut context: *mut FWPM_PROVIDER_CONTEXT2 = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: key and out-pointer are valid for the call.
    let status = unsafe { FwpmProviderContextGetByKey2(engine.raw(), &key, &mut context) };
    let decoded = match NtStatus::to_result(status) {
        Ok(()) => policy_from_blob(&provider_blob(context)).map_err(|_| ()),
        Err(_) => Err(()),
    };
    free_engine_memory(context.cast());
    decoded.unwrap_or_else(|()| {
        STATE.stats.adopted_policies_rejected.fetch_add(1, Ordering::Relaxed);
        crate::log!(Level::Warning, "adopted filter {}: unusable policy, default applied", filter.filterId);
        PolicyRepr::DEFAULT
    })
}

#[allow(unsafe_code)]
fn provider_blob<'a>(context: *const FWPM_PROVIDER_CONTEXT2) -> ProviderBlob<'a> {
    // SAFETY: NULL or the engine's provider context, valid until freed
    // (callers copy the blob before freeing).
    let Some(context) = (unsafe { context.as_ref() }) else {
        return ProviderBlob::Absent;
    };
    if context.r#type != fwp::FWPM_GENERAL_CONTEXT {
        return ProviderBlob::WrongType(context.r#type);
    }
    // SAFETY: for FWPM_GENERAL_CONTEXT the union holds dataBuffer.
    let buffer = unsafe { context.Anonymous.dataBuffer };
    // SAFETY: NULL or a blob valid as long as the context.
    match unsafe { buffer.as_ref() } {
        Some(blob) if !blob.data.is_null() && blob.size != 0 => {
            // SAFETY: data holds size readable bytes.
            ProviderBlob::General(unsafe { core::slice::from_raw_parts(blob.data, blob.size as usize) })
        }
        _ => ProviderBlob::General(&[]),
    }
}

/// Builds and inserts one adopted context: `Ok(false)` if notifyFn already
/// gave it one, an error if the filter stays unknown to us.
fn adopt_one(engine: EngineHandle, filter: &FWPM_FILTER0, layer_id: u16) -> Result<bool> {
    let filter_id = filter.filterId;
    if STATE.table.get(filter_id).is_some() {
        // Added through notifyFn while we were enumerating.
        return Ok(false);
    }
    let policy = adopted_policy(engine, filter);
    let context = match ContextRef::try_new(filter_id, layer_id, Origin::Adopted, policy) {
        Ok(context) => context,
        Err(status) => {
            STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Error, "adopted filter {}: no pool, default policy applies", filter_id);
            return Err(status);
        }
    };
    match STATE.table.insert(filter_id, context) {
        Ok(()) => {
            STATE.adopted_added();
            STATE.stats.filters_adopted.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        }
        Err((NtStatus::ALREADY_EXISTS, _context)) => Ok(false),
        Err((status, _context)) => {
            if status == NtStatus::INSUFFICIENT_RESOURCES {
                STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
            }
            crate::log!(Level::Warning, "adopted filter {}: not inserted: {}", filter_id, status);
            Err(status)
        }
    }
}
