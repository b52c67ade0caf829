//! A connection attempt turned into the `FWPS_INCOMING_VALUES0` and
//! `FWPS_INCOMING_METADATA_VALUES0` classifyFn receives.

use crate::engine::model::connection::Connection;
use crate::engine::model::layers::LayerInfo;
use crate::engine::state::packets;
use fwps_types::fwp::{FWP_BYTE_ARRAY16, FWP_VALUE0, FWP_VALUE0_0};
use fwps_types::*;
use std::net::IpAddr;

/// The values and metadata for one classification, with stable addresses.
pub(crate) struct ClassifyInput {
    pub values: Box<FWPS_INCOMING_VALUES0>,
    pub(crate) array: Box<[FWPS_INCOMING_VALUE0]>,
    pub(crate) v6_addresses: Box<[FWP_BYTE_ARRAY16; 2]>,
    pub metadata: Box<FWPS_INCOMING_METADATA_VALUES0>,
    /// `layerData`: the packet at ALE_AUTH_RECV_ACCEPT, NULL elsewhere.
    pub layer_data: *mut core::ffi::c_void,
}

// SAFETY: the pointers inside refer to the input's own boxes.
unsafe impl Send for ClassifyInput {}

fn empty() -> FWPS_INCOMING_VALUE0 {
    FWPS_INCOMING_VALUE0 { value: FWP_VALUE0 { r#type: fwp::FWP_EMPTY, Anonymous: FWP_VALUE0_0 { uint32: 0 } } }
}

fn uint(data_type: i32, value: u32) -> FWPS_INCOMING_VALUE0 {
    let anonymous = match data_type {
        fwp::FWP_UINT8 => FWP_VALUE0_0 { uint8: value as u8 },
        fwp::FWP_UINT16 => FWP_VALUE0_0 { uint16: value as u16 },
        _ => FWP_VALUE0_0 { uint32: value },
    };
    FWPS_INCOMING_VALUE0 { value: FWP_VALUE0 { r#type: data_type, Anonymous: anonymous } }
}

impl ClassifyInput {
    pub fn new(layer: &LayerInfo, connection: &Connection, completion_handle: *mut core::ffi::c_void) -> Self {
        let mut array: Box<[FWPS_INCOMING_VALUE0]> = (0..layer.value_count).map(|_| empty()).collect();
        let mut v6 = Box::new([FWP_BYTE_ARRAY16 { byteArray16: [0; 16] }; 2]);
        let mut set = |index: usize, value: FWPS_INCOMING_VALUE0| {
            if let Some(slot) = array.get_mut(index) {
                *slot = value;
            }
        };
        for (i, (index, address)) in [
            (FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS, connection.local_address),
            (FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS, connection.remote_address),
        ]
        .into_iter()
        .enumerate()
        {
            match address {
                IpAddr::V4(v4) => set(index, uint(fwp::FWP_UINT32, u32::from(v4))),
                IpAddr::V6(v6addr) => {
                    v6[i].byteArray16 = v6addr.octets();
                    let pointer = &mut v6[i] as *mut FWP_BYTE_ARRAY16;
                    set(
                        index,
                        FWPS_INCOMING_VALUE0 {
                            value: FWP_VALUE0 {
                                r#type: fwp::FWP_BYTE_ARRAY16_TYPE,
                                Anonymous: FWP_VALUE0_0 { byteArray16: pointer },
                            },
                        },
                    );
                }
            }
        }
        set(FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT, uint(fwp::FWP_UINT16, u32::from(connection.local_port)));
        set(FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT, uint(fwp::FWP_UINT16, u32::from(connection.remote_port)));
        set(FWPS_FIELD_ALE_AUTH_IP_PROTOCOL, uint(fwp::FWP_UINT8, u32::from(connection.protocol)));
        set(layer.flags_field, uint(fwp::FWP_UINT32, connection.flags));
        let interface_fields = match layer.id {
            FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6 => {
                Some((FWPS_FIELD_ALE_AUTH_CONNECT_INTERFACE_INDEX, FWPS_FIELD_ALE_AUTH_CONNECT_SUB_INTERFACE_INDEX))
            }
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6 => Some((
                FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_INTERFACE_INDEX,
                FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_SUB_INTERFACE_INDEX,
            )),
            _ => None,
        };
        if let Some((interface_field, sub_interface_field)) = interface_fields {
            // The interface the connection's packets use (CONFORMANCE.md I4).
            let (interface, sub_interface) = packets::interfaces_of(connection);
            set(interface_field, uint(fwp::FWP_UINT32, interface));
            set(sub_interface_field, uint(fwp::FWP_UINT32, sub_interface));
        }
        if let Some(field) = layer.reauthorize_reason_field {
            set(field, uint(fwp::FWP_UINT32, connection.reauthorize_reason));
        }
        let values = Box::new(FWPS_INCOMING_VALUES0 {
            layerId: layer.id,
            valueCount: array.len() as u32,
            incomingValue: array.as_mut_ptr(),
        });
        let mut metadata = Box::new(FWPS_INCOMING_METADATA_VALUES0::EMPTY);
        metadata.currentMetadataValues = fwp::FWPS_METADATA_FIELD_PROCESS_ID;
        metadata.processId = connection.process_id;
        let (ip, transport) = packets::header_sizes(connection);
        metadata.currentMetadataValues |= fwp::FWPS_METADATA_FIELD_IP_HEADER_SIZE
            | fwp::FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE
            | fwp::FWPS_METADATA_FIELD_COMPARTMENT_ID;
        let outbound_layer = matches!(layer.id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6);
        if outbound_layer || matches!(layer.id, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6)
        {
            metadata.currentMetadataValues |= fwp::FWPS_METADATA_FIELD_PACKET_DIRECTION;
            let inbound = outbound_layer == connection.opposite_direction;
            metadata.packetDirection = if inbound { fwp::FWP_DIRECTION_INBOUND } else { fwp::FWP_DIRECTION_OUTBOUND };
        }
        metadata.ipHeaderSize = ip;
        metadata.transportHeaderSize = transport;
        metadata.compartmentId = 1;
        if matches!(layer.id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6) {
            // The socket sending: what send injection needs to name.
            metadata.currentMetadataValues |=
                fwp::FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE | fwp::FWPS_METADATA_FIELD_REMOTE_SCOPE_ID;
            metadata.transportEndpointHandle = packets::endpoint_of(connection);
            metadata.remoteScopeId = 0;
            if let Some((data, len)) = packets::control_data_of(metadata.transportEndpointHandle) {
                metadata.currentMetadataValues |= fwp::FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA;
                metadata.controlData = data;
                metadata.controlDataLength = len;
            }
        }
        if !completion_handle.is_null() {
            metadata.currentMetadataValues |= fwp::FWPS_METADATA_FIELD_COMPLETION_HANDLE;
            metadata.completionHandle = completion_handle;
        }
        Self { values, array, v6_addresses: v6, metadata, layer_data: std::ptr::null_mut() }
    }

    /// Sets the flow handle and its presence bit (0 = none).
    pub fn set_flow_handle(&mut self, flow_handle: u64) {
        if flow_handle != 0 {
            self.metadata.currentMetadataValues |= fwp::FWPS_METADATA_FIELD_FLOW_HANDLE;
            self.metadata.flowHandle = flow_handle;
        }
    }

    /// The value of field `index` as a u32, for condition matching.
    pub fn field_u32(&self, index: usize) -> Option<u32> {
        let value = &self.array.get(index)?.value;
        match value.r#type {
            // SAFETY: the tag says the union holds uint8.
            fwp::FWP_UINT8 => Some(u32::from(unsafe { value.Anonymous.uint8 })),
            // SAFETY: the tag says the union holds uint16.
            fwp::FWP_UINT16 => Some(u32::from(unsafe { value.Anonymous.uint16 })),
            // SAFETY: the tag says the union holds uint32.
            fwp::FWP_UINT32 => Some(unsafe { value.Anonymous.uint32 }),
            _ => None,
        }
    }
}
