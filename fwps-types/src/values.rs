//! Incoming values: what the engine hands classifyFn about the traffic.

use crate::fwp::{FWP_CONDITION_VALUE0, FWP_MATCH_TYPE, FWP_VALUE0};

/// One incoming data field (`FWPS_INCOMING_VALUE0`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_VALUE0 {
    /// The field's value, tagged by its `FWP_DATA_TYPE`.
    pub value: FWP_VALUE0,
}

/// The array of incoming data fields for one layer (`FWPS_INCOMING_VALUES0`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_VALUES0 {
    /// Run-time layer id (`FWPS_LAYER_*`).
    pub layerId: u16,
    /// Number of entries in `incomingValue`.
    pub valueCount: u32,
    /// `valueCount` values indexed by the layer's `FWPS_FIELD_*` enum.
    pub incomingValue: *mut FWPS_INCOMING_VALUE0,
}

/// A run-time filter condition (`FWPS_FILTER_CONDITION0`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_FILTER_CONDITION0 {
    /// Index of the field in the layer's `FWPS_FIELD_*` enum.
    pub fieldId: u16,
    /// Reserved for system use.
    pub reserved: u16,
    /// How the value is compared (`FWP_MATCH_*`).
    pub matchType: FWP_MATCH_TYPE,
    /// The value compared against.
    pub conditionValue: FWP_CONDITION_VALUE0,
}
