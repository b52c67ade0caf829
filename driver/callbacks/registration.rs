//! Our four callouts (ALE connect and recv-accept, IPv4 and IPv6): their
//! keys, their layers, and their registration with `FwpsCalloutRegister2`.
#![forbid(unsafe_code)]

use crate::callbacks::state::{Adopting, STATE};
use crate::callbacks::trampolines::{classify_fn, notify_fn};
use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::CALLOUT_COUNT;
use crate::wfp::callout_table::CALLOUTS;
use crate::wfp::ffi::{DeviceObject, FWPS_CALLOUT2, callout_register, callout_unregister_by_id};
use core::sync::atomic::Ordering;

/// Registers every callout; on a failure part way returns it, and the
/// caller unregisters the ones already registered. `_adopting` shows that
/// classify is in lookup mode for adoption already (`adoption::begin`):
/// filters that predate the callouts can be classified as soon as they
/// are registered, and their `context` is not ours.
pub fn register_all(device_object: DeviceObject, _adopting: &Adopting) -> Result {
    for (slot, spec) in STATE.callout_ids.iter().zip(CALLOUTS.iter()) {
        let callout = FWPS_CALLOUT2 {
            calloutKey: spec.key,
            flags: 0,
            classifyFn: Some(classify_fn),
            notifyFn: Some(notify_fn),
            flowDeleteFn: if spec.tracks_flows { Some(crate::callbacks::flow_delete::flow_delete_fn) } else { None },
        };
        // PASSIVE_LEVEL (initialize); the engine copies the structure.
        let id = callout_register(device_object, &callout)
            .inspect_err(|status| crate::log!(Level::Error, "FwpsCalloutRegister2 failed: {}", status))?;
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
        // A run-time id the engine gave us; PASSIVE_LEVEL.
        let status = NtStatus::from_raw(callout_unregister_by_id(id));
        if status.is_success() || status == NtStatus::from_raw(fwps_types::STATUS_FWP_CALLOUT_NOT_FOUND) {
            slot.store(0, Ordering::Release);
        } else if outcome.is_ok() {
            outcome = Err(status);
        }
    }
    outcome
}
