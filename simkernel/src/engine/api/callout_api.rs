//! `FwpsCalloutRegister2` and `FwpsCalloutUnregisterById0`.

use super::flows;
use crate::engine::model::layers::key_of;
use crate::engine::state::engine_state::{RegisteredCallout, lock};
use crate::engine::state::registration_gate;
use crate::faults;
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;

/// `FwpsCalloutRegister2`: PASSIVE_LEVEL; the key must be new; no ADD is
/// sent for filters that already name the callout. Atomic with respect to
/// filter add and delete (`registration_gate`).
///
/// # Safety
/// `callout` must be NULL or valid; `callout_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsCalloutRegister2(
    device_object: *mut core::ffi::c_void,
    callout: *const FWPS_CALLOUT2,
    callout_id: *mut u32,
) -> NTSTATUS {
    if !irql::require_at_most(PASSIVE_LEVEL, "FwpsCalloutRegister2") {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if let Some(status) = faults::call_should_fail("FwpsCalloutRegister2") {
        return status;
    }
    // SAFETY: the caller passes NULL or a valid callout.
    let Some(callout) = (unsafe { callout.as_ref() }) else {
        return STATUS_FWP_NULL_POINTER;
    };
    if device_object.is_null() {
        report(ViolationKind::ApiMisuse, "FwpsCalloutRegister2 with a NULL device object");
        return STATUS_INVALID_PARAMETER;
    }
    let (Some(classify), Some(notify)) = (callout.classifyFn, callout.notifyFn) else {
        return STATUS_INVALID_PARAMETER;
    };
    let key = key_of(&callout.calloutKey);
    let Some(_gate) = registration_gate::exclusive() else {
        report(ViolationKind::ApiMisuse, "FwpsCalloutRegister2 from inside a notification of the engine");
        return STATUS_FWP_IN_USE;
    };
    let mut engine = lock();
    if engine.registered.contains_key(&key) {
        return STATUS_FWP_ALREADY_EXISTS;
    }
    let id = engine.callout_id_for(key);
    engine.registered.insert(key, RegisteredCallout { id, classify, notify, flow_delete: callout.flowDeleteFn });
    if !callout_id.is_null() {
        // SAFETY: the caller passes NULL or a writable u32.
        unsafe { callout_id.write(id) };
    }
    STATUS_SUCCESS
}

/// `FwpsCalloutUnregisterById0`: PASSIVE_LEVEL. Filters that name the
/// callout stay; from now on they act as if it were absent. Refused with
/// `STATUS_DEVICE_BUSY` while any flow holds a context of the callout,
/// including one whose flowDeleteFn is still running; while one of its
/// classifyFn calls runs, refused the same way or not, at random (row
/// R7). Atomic with respect to filter add and delete and to flow context
/// association.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsCalloutUnregisterById0(callout_id: u32) -> NTSTATUS {
    if !irql::require_at_most(PASSIVE_LEVEL, "FwpsCalloutUnregisterById0") {
        return STATUS_INVALID_DEVICE_STATE;
    }
    if let Some(status) = faults::call_should_fail("FwpsCalloutUnregisterById0") {
        return status;
    }
    let Some(_gate) = registration_gate::exclusive() else {
        report(ViolationKind::ApiMisuse, "FwpsCalloutUnregisterById0 from inside a notification of the engine");
        return STATUS_FWP_IN_USE;
    };
    let mut engine = lock();
    let Some(key) = engine.registered.iter().find(|(_, c)| c.id == callout_id).map(|(k, _)| *k) else {
        return STATUS_FWP_CALLOUT_NOT_FOUND;
    };
    if flows::contexts_of(callout_id) > 0 || engine.unregister_refused_while_classifying(callout_id) {
        return STATUS_DEVICE_BUSY;
    }
    engine.registered.remove(&key);
    STATUS_SUCCESS
}
