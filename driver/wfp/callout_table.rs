//! Our six callouts (ALE connect and recv-accept, flow established; IPv4
//! and IPv6): their keys, layers and display names, what both
//! `FwpsCalloutRegister2` and `FwpmCalloutAdd0` need. Their run-time ids
//! live in `callbacks::state`.
#![forbid(unsafe_code)]

use crate::wfp::ffi::{
    FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS, FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS, FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS,
    FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V6, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
    FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6, GUID,
    fwp,
};

/// Number of callouts we register (four ALE auth layers, two flow-established).
pub const CALLOUT_COUNT: usize = 6;

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

/// Whether `layer_id` is an ALE_FLOW_ESTABLISHED layer.
pub fn is_flow_layer(layer_id: u16) -> bool {
    matches!(layer_id, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4 | FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6)
}

/// Whether `layer_id` is an ALE_AUTH_RECV_ACCEPT layer (inbound).
pub fn is_recv_accept_layer(layer_id: u16) -> bool {
    matches!(layer_id, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6)
}

/// Whether `layer_id` is an ALE_AUTH_CONNECT layer (outbound).
pub fn is_connect_layer(layer_id: u16) -> bool {
    matches!(layer_id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6)
}

/// The FLAGS incoming value's index at one of our callouts' layers.
pub fn flags_field(layer_id: u16) -> Option<usize> {
    CALLOUTS.iter().find(|spec| spec.layer_id == layer_id).map(|spec| spec.flags_field)
}
