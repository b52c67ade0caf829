//! Another vendor's callout and filters, beside the driver under test, as
//! on a real machine (Windows Firewall, an EDR, a VPN client all add their
//! own). A driver must stay correct when filters above it decide first
//! (its classifyFn then runs without the write right and must write
//! nothing), when they inspect the same traffic, and when their adds and
//! deletes reauthorize its connections ("Filter Arbitration";
//! "ALE Re-authorization").
//!
//! The vendor has its own sublayers (one above any weight the driver
//! uses, one below), an INSPECTION callout registered at the four ALE
//! authorization layers that only counts what it sees, and static filters
//! the test places: a hard permit above, a block below.

use crate::engine::{self, FilterAction, FilterSpec};
use fwps_types::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

/// The vendor's sublayer above everything the driver uses.
pub const SUBLAYER_ABOVE: GUID = GUID::from_u128(0x0e7d_0000_0000_4000_8000_0000_0000_00a1);
/// Its sublayer below.
pub const SUBLAYER_BELOW: GUID = GUID::from_u128(0x0e7d_0000_0000_4000_8000_0000_0000_00b1);
const SUBLAYER_ABOVE_WEIGHT: u16 = 0xFFF0;
const SUBLAYER_BELOW_WEIGHT: u16 = 0x0010;

/// The ALE authorization layers: (FWPM key, FWPS id).
const AUTH_LAYERS: [(GUID, u16); 4] = [
    (fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V4),
    (fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V6, FWPS_LAYER_ALE_AUTH_CONNECT_V6),
    (fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4),
    (fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6),
];

static INSPECTED: AtomicU64 = AtomicU64::new(0);

fn callout_key(index: usize) -> GUID {
    GUID::from_u128(0x0e7d_0000_0000_4000_8000_0000_0000_0c00 | index as u128)
}

unsafe extern "system" fn vendor_classify(
    _values: *const FWPS_INCOMING_VALUES0,
    _metadata: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    _filter: *const FWPS_FILTER2,
    _flow_context: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    INSPECTED.fetch_add(1, Ordering::Relaxed);
    // An inspection callout answers CONTINUE, and only with the right.
    // SAFETY: the engine passes its classifyOut, ours for the call.
    if let Some(out) = unsafe { out.as_mut() }
        && out.rights & FWPS_RIGHT_ACTION_WRITE != 0
    {
        out.actionType = fwp::FWP_ACTION_CONTINUE;
    }
}

unsafe extern "system" fn vendor_notify(
    _notify_type: FWPS_CALLOUT_NOTIFY_TYPE,
    _key: *const GUID,
    _filter: *mut FWPS_FILTER2,
) -> NTSTATUS {
    STATUS_SUCCESS
}

/// The vendor, installed.
pub struct Vendor {
    callout_ids: Vec<u32>,
    filters: Vec<u64>,
}

impl Vendor {
    /// Registers the vendor's callouts, adds its FWPM callouts and
    /// sublayers, and an INSPECTION filter per ALE authorization layer in
    /// the sublayer above. `device_object` as for the driver.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // the device object is opaque: passed through, never dereferenced
    pub fn install(device_object: *mut c_void) -> Result<Vendor, NTSTATUS> {
        INSPECTED.store(0, Ordering::Relaxed);
        for (key, weight) in [(SUBLAYER_ABOVE, SUBLAYER_ABOVE_WEIGHT), (SUBLAYER_BELOW, SUBLAYER_BELOW_WEIGHT)] {
            match engine::add_sublayer(key, weight) {
                Ok(()) | Err(STATUS_FWP_ALREADY_EXISTS) => {}
                Err(status) => return Err(status),
            }
        }
        let mut session = std::ptr::null_mut();
        // SAFETY: `session` is writable.
        let status = unsafe {
            engine::FwpmEngineOpen0(
                std::ptr::null(),
                RPC_C_AUTHN_WINNT,
                std::ptr::null(),
                std::ptr::null(),
                &mut session,
            )
        };
        if status != STATUS_SUCCESS {
            return Err(status);
        }
        let mut vendor = Vendor { callout_ids: Vec::new(), filters: Vec::new() };
        let mut outcome = Ok(());
        for (index, (layer_key, _)) in AUTH_LAYERS.iter().enumerate() {
            let key = callout_key(index);
            let registration = FWPS_CALLOUT2 {
                calloutKey: key,
                flags: 0,
                classifyFn: Some(vendor_classify),
                notifyFn: Some(vendor_notify),
                flowDeleteFn: None,
            };
            let mut id = 0;
            // SAFETY: valid device object, callout and out pointer.
            let status = unsafe { engine::FwpsCalloutRegister2(device_object, &registration, &mut id) };
            if status != STATUS_SUCCESS {
                outcome = Err(status);
                break;
            }
            vendor.callout_ids.push(id);
            let managed = fwp::FWPM_CALLOUT0 { calloutKey: key, applicableLayer: *layer_key, ..Default::default() };
            // SAFETY: valid session and callout; the id is not needed.
            let status = unsafe { engine::FwpmCalloutAdd0(session, &managed, std::ptr::null(), std::ptr::null_mut()) };
            if status != STATUS_SUCCESS && status != STATUS_FWP_ALREADY_EXISTS {
                outcome = Err(status);
                break;
            }
            let spec = FilterSpec { weight: 0x10, ..FilterSpec::callout(*layer_key, SUBLAYER_ABOVE, key) };
            let spec = FilterSpec { action: FilterAction::CalloutInspection(key), ..spec };
            match engine::add_filter(&spec) {
                Ok(id) => vendor.filters.push(id),
                Err(status) => {
                    outcome = Err(status);
                    break;
                }
            }
        }
        let _ = engine::FwpmEngineClose0(session);
        match outcome {
            Ok(()) => Ok(vendor),
            Err(status) => {
                vendor.uninstall();
                Err(status)
            }
        }
    }

    /// Adds a static filter of the vendor's at `layer_key`: `above` in its
    /// high sublayer (where a hard permit overrides the driver's block),
    /// or in its low one; with `remote_port` as its only condition.
    pub fn add_static_filter(
        &mut self,
        layer_key: GUID,
        above: bool,
        action: FilterAction,
        hard: bool,
        remote_port: u16,
    ) -> Result<u64, NTSTATUS> {
        let sublayer = if above { SUBLAYER_ABOVE } else { SUBLAYER_BELOW };
        let spec = FilterSpec {
            key: None,
            layer_key,
            sublayer_key: sublayer,
            action,
            weight: 0x20,
            conditions: vec![(FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT, u32::from(remote_port))],
            provider_context: None,
            raw_context: 0,
            flags: if hard { fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT } else { 0 },
        };
        let id = engine::add_filter(&spec)?;
        self.filters.push(id);
        Ok(id)
    }

    /// Classifications the vendor's inspection callouts have seen.
    pub fn inspected() -> u64 {
        INSPECTED.load(Ordering::Relaxed)
    }

    /// Deletes the vendor's filters and unregisters its callouts.
    pub fn uninstall(mut self) {
        for id in self.filters.drain(..) {
            let _ = engine::delete_filter(id);
        }
        for id in self.callout_ids.drain(..) {
            let _ = engine::FwpsCalloutUnregisterById0(id);
        }
    }
}
