//! A connection attempt as the ALE auth layers see it (what a test
//! classifies; `classification/classify_input.rs` turns it into what
//! classifyFn receives).

use fwps_types::*;
use std::net::IpAddr;

/// One connection to classify.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Run-time layer id (`FWPS_LAYER_ALE_AUTH_*`).
    pub layer_id: u16,
    /// Local address (its family must match the layer's).
    pub local_address: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address.
    pub remote_address: IpAddr,
    /// Remote port.
    pub remote_port: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub protocol: u8,
    /// Owning process id.
    pub process_id: u64,
    /// `FWP_CONDITION_FLAG_*` in the FLAGS field (e.g. IS_REAUTHORIZE).
    pub flags: u32,
    /// `FWP_CONDITION_REAUTHORIZE_REASON_*` in the REAUTHORIZE_REASON field
    /// (0 on an initial authorization).
    pub reauthorize_reason: u32,
    /// The packet being classified travels against the connection's own
    /// direction (an inbound packet of a connection authorized at
    /// ALE_AUTH_CONNECT, or an outbound one at ALE_AUTH_RECV_ACCEPT): the
    /// metadata's `packetDirection` says so.
    pub opposite_direction: bool,
}

impl Connection {
    /// An outbound IPv4 TCP connection to `remote_port`.
    pub fn tcp_connect_v4(remote_port: u16) -> Self {
        Self {
            layer_id: FWPS_LAYER_ALE_AUTH_CONNECT_V4,
            local_address: IpAddr::from([10, 0, 0, 2]),
            local_port: 49_152,
            remote_address: IpAddr::from([192, 0, 2, 10]),
            remote_port,
            protocol: 6,
            process_id: 4_242,
            flags: 0,
            reauthorize_reason: 0,
            opposite_direction: false,
        }
    }
}
