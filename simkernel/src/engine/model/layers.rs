//! The layers the engine models, and GUIDs as map keys: plain data every
//! other part of the engine looks layers up in.

use fwps_types::*;

/// A GUID as a map key.
pub(crate) fn key_of(guid: &GUID) -> u128 {
    (u128::from(guid.data1) << 96)
        | (u128::from(guid.data2) << 80)
        | (u128::from(guid.data3) << 64)
        | u128::from(u64::from_be_bytes(guid.data4))
}

/// The layers the engine models: (FWPM key, FWPS run-time id, FLAGS index,
/// value count).
pub(crate) fn layer_by_key(layer: &GUID) -> Option<LayerInfo> {
    LAYERS.iter().copied().find(|l| key_of(&l.key) == key_of(layer))
}

pub(crate) fn layer_by_id(layer_id: u16) -> Option<LayerInfo> {
    LAYERS.iter().copied().find(|l| l.id == layer_id)
}

/// What the engine knows about a layer.
#[derive(Clone, Copy)]
pub struct LayerInfo {
    /// FWPM layer key.
    pub key: GUID,
    /// FWPS run-time layer id.
    pub id: u16,
    /// Index of its FLAGS field.
    pub flags_field: usize,
    /// Number of incoming values.
    pub value_count: usize,
    /// IPv6 addresses.
    pub v6: bool,
    /// Whether classify at this layer can be pended (ALE auth layers).
    pub pendable: bool,
    /// Index of its REAUTHORIZE_REASON field (ALE auth layers).
    pub reauthorize_reason_field: Option<usize>,
}

const LAYERS: [LayerInfo; 6] = [
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        id: FWPS_LAYER_ALE_AUTH_CONNECT_V4,
        flags_field: FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS,
        value_count: FWPS_FIELD_ALE_AUTH_CONNECT_MAX,
        v6: false,
        pendable: true,
        reauthorize_reason_field: Some(FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON),
    },
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V6,
        id: FWPS_LAYER_ALE_AUTH_CONNECT_V6,
        flags_field: FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS,
        value_count: FWPS_FIELD_ALE_AUTH_CONNECT_MAX,
        v6: true,
        pendable: true,
        reauthorize_reason_field: Some(FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON),
    },
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        flags_field: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
        value_count: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_MAX,
        v6: false,
        pendable: true,
        reauthorize_reason_field: Some(FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON),
    },
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
        id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
        flags_field: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
        value_count: FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_MAX,
        v6: true,
        pendable: true,
        reauthorize_reason_field: Some(FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON),
    },
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4,
        id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
        flags_field: FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS,
        value_count: FWPS_FIELD_ALE_FLOW_ESTABLISHED_MAX,
        v6: false,
        pendable: false,
        reauthorize_reason_field: None,
    },
    LayerInfo {
        key: fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6,
        id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
        flags_field: FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS,
        value_count: FWPS_FIELD_ALE_FLOW_ESTABLISHED_MAX,
        v6: true,
        pendable: false,
        reauthorize_reason_field: None,
    },
];
