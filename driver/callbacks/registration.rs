//! Our four callouts (ALE connect and recv-accept, IPv4 and IPv6): their
//! keys, their layers, and their registration with `FwpsCalloutRegister2`.
#![deny(unsafe_code)]

use crate::callbacks::classify::classify_fn;
use crate::callbacks::notify::notify_fn;
use crate::callbacks::state::STATE;
use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::CALLOUT_COUNT;
use crate::wfp::callout_table::CALLOUTS;
use crate::wfp::ffi::{FWPS_CALLOUT2, FwpsCalloutRegister2, FwpsCalloutUnregisterById0};
use core::ffi::c_void;
use core::sync::atomic::Ordering;

/// Registers every callout; on a failure part way returns it, and the
/// caller unregisters the ones already registered.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // the device object is opaque: passed through, never dereferenced
pub fn register_all(device_object: *mut c_void) -> Result {
    for (slot, spec) in STATE.callout_ids.iter().zip(CALLOUTS.iter()) {
        let callout = FWPS_CALLOUT2 {
            calloutKey: spec.key,
            flags: 0,
            classifyFn: Some(classify_fn),
            notifyFn: Some(notify_fn),
            flowDeleteFn: if spec.tracks_flows { Some(crate::callbacks::flow_delete::flow_delete_fn) } else { None },
        };
        let mut id = 0u32;
        #[allow(unsafe_code)]
        // SAFETY: `callout` and `id` are valid for the call; the engine
        // copies the structure. We are at PASSIVE_LEVEL (initialize).
        let status = unsafe { FwpsCalloutRegister2(device_object, &callout, &mut id) };
        if let Err(status) = NtStatus::to_result(status) {
            crate::log!(Level::Error, "FwpsCalloutRegister2 failed: {}", status);
            return Err(status);
        }
        slot.store(id, Ordering::Release);
    }
    crate::log!(Level::Info, "registered {} callouts", CALLOUT_COUNT);
    Ok(())
}

/// Wait between unregistration attempts at unload, in 100-ns units (10 ms).
pub const UNREGISTER_RETRY_INTERVAL: i64 = 100_000;

/// One attempt to unregister every callout still registered. Returns the
/// first failure (`STATUS_DEVICE_BUSY` while flows carry our contexts);
/// the caller removes flow contexts and asks again until it succeeds.
pub fn unregister_all() -> Result {
    let mut outcome = Ok(());
    for slot in STATE.callout_ids.iter() {
        let id = slot.load(Ordering::Acquire);
        if id == 0 {
            continue;
        }
        #[allow(unsafe_code)]
        // SAFETY: `id` is a run-time id the engine gave us; PASSIVE_LEVEL.
        let status = NtStatus::from_raw(unsafe { FwpsCalloutUnregisterById0(id) });
        if status.is_success() || status == NtStatus::from_raw(fwps_types::STATUS_FWP_CALLOUT_NOT_FOUND) {
            slot.store(0, Ordering::Release);
        } else if outcome.is_ok() {
            outcome = Err(status);
        }
    }
    outcome
}
