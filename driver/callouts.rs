//! Our four callouts (ALE connect and recv-accept, IPv4 and IPv6): their
//! keys, their layers, and their registration with `FwpsCalloutRegister2`.
#![deny(unsafe_code)]

use crate::classify::classify_fn;
use crate::driver_state::{CALLOUT_COUNT, STATE};
use crate::ffi::{
    FWPS_CALLOUT2, FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS, FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
    FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS, FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V6,
    FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
    FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6, FwpsCalloutRegister2, FwpsCalloutUnregisterById0, GUID, fwp,
};
use crate::log::Level;
use crate::notify::notify_fn;
use crate::status::{NtStatus, Result};
use core::ffi::c_void;
use core::sync::atomic::Ordering;

/// Our provider: owns the sublayer and the management callouts.
pub const PROVIDER_KEY: GUID = GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0001);
/// Our sublayer, where `wfpctl` puts the filters it adds.
pub const SUBLAYER_KEY: GUID = GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0002);

/// One callout: what `FwpsCalloutRegister2` and `FwpmCalloutAdd0` need.
pub struct CalloutSpec {
    /// The callout's key, which filters name in their action.
    pub key: GUID,
    /// The management layer (`FWPM_LAYER_*`).
    pub layer_key: GUID,
    /// The matching run-time layer id (`FWPS_LAYER_*`).
    pub layer_id: u16,
    /// Index of the FLAGS incoming value at that layer.
    pub flags_field: usize,
    /// Display name, NUL-terminated UTF-16 (shown by `netsh wfp show filters`).
    pub name: &'static [u16],
    /// Display description, NUL-terminated UTF-16.
    pub description: &'static [u16],
    /// Whether it tracks flows (and so registers a flowDeleteFn).
    pub tracks_flows: bool,
}

/// The callouts, in the order of `DriverState::callout_ids`.
pub static CALLOUTS: [CalloutSpec; CALLOUT_COUNT] = [
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0010),
        layer_key: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        layer_id: FWPS_LAYER_ALE_AUTH_CONNECT_V4,
        flags_field: FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS,
        name: crate::wide!("wfpcallout ALE connect v4"),
        description: crate::wide!("Per-filter policy for outbound IPv4 connections"),
        tracks_flows: false,
    },
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0011),
        layer_key: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V6,
        layer_id: FWPS_LAYER_ALE_AUTH_CONNECT_V6,
        flags_field: FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS,
        name: crate::wide!("wfpcallout ALE connect v6"),
        description: crate::wide!("Per-filter policy for outbound IPv6 connections"),
        tracks_flows: false,
    },
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0012),
        layer_key: fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        flags_field: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
        name: crate::wide!("wfpcallout ALE recv-accept v4"),
        description: crate::wide!("Per-filter policy for inbound IPv4 connections"),
        tracks_flows: false,
    },
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0013),
        layer_key: fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
        layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
        flags_field: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
        name: crate::wide!("wfpcallout ALE recv-accept v6"),
        description: crate::wide!("Per-filter policy for inbound IPv6 connections"),
        tracks_flows: false,
    },
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0014),
        layer_key: fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
        layer_id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
        flags_field: FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS,
        name: crate::wide!("wfpcallout flow established v4"),
        description: crate::wide!("Tracks IPv4 connections permitted by wfpcallout filters"),
        tracks_flows: true,
    },
    CalloutSpec {
        key: GUID::from_u128(0x5c0f_1e7a_2b3d_4e8f_9a61_7d2c_4b8e_0015),
        layer_key: fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6,
        layer_id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
        flags_field: FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS,
        name: crate::wide!("wfpcallout flow established v6"),
        description: crate::wide!("Tracks IPv6 connections permitted by wfpcallout filters"),
        tracks_flows: true,
    },
];

/// The run-time layer of one of our callouts, by its run-time id.
pub fn layer_of_callout(callout_id: u32) -> Option<u16> {
    if callout_id == 0 {
        return None;
    }
    STATE
        .callout_ids
        .iter()
        .zip(CALLOUTS.iter())
        .find(|(id, _)| id.load(Ordering::Relaxed) == callout_id)
        .map(|(_, spec)| spec.layer_id)
}

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
            flowDeleteFn: if spec.tracks_flows { Some(crate::flows::flow_delete_fn) } else { None },
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
