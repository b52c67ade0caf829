//! The bytes of a simulated packet: a real IPv4 or IPv6 header and a TCP or
//! UDP header for a connection, then a payload. Inbound packets carry the
//! remote end as source; outbound ones the local end. A packet the engine
//! gets back (a callout's deep copy, injected) is parsed to find the
//! connection it belongs to, as the stack would: a copy taken from the
//! wrong offset does not parse.

use super::connection::Connection;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::sync::atomic::{AtomicUsize, Ordering};

/// Payload bytes after the transport header in simulated packets.
static PAYLOAD_LEN: AtomicUsize = AtomicUsize::new(DEFAULT_PAYLOAD_LEN);
const DEFAULT_PAYLOAD_LEN: usize = 32;

/// Sets the payload length of the packets the engine presents from now on
/// (default 32 bytes; the IP total length field caps IPv4 packets at 64 KiB,
/// which the simulator does not enforce, so a test can present larger ones).
pub fn set_payload_len(len: usize) {
    PAYLOAD_LEN.store(len, Ordering::Relaxed);
}

pub(crate) fn reset() {
    PAYLOAD_LEN.store(DEFAULT_PAYLOAD_LEN, Ordering::Relaxed);
}

/// Which way a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Received: source is the remote end.
    Inbound,
    /// Sent: source is the local end.
    Outbound,
}

/// IP header length for the connection's family.
fn ip_len(connection: &Connection) -> usize {
    if connection.local_address.is_ipv6() { 40 } else { 20 }
}

/// Transport header length for its protocol.
fn transport_len(protocol: u8) -> usize {
    if protocol == 6 { 20 } else { 8 }
}

/// The whole packet (IP header, transport header, payload).
pub(crate) fn build(connection: &Connection, direction: Direction) -> Vec<u8> {
    let (source, destination) = match direction {
        Direction::Inbound => {
            ((connection.remote_address, connection.remote_port), (connection.local_address, connection.local_port))
        }
        Direction::Outbound => {
            ((connection.local_address, connection.local_port), (connection.remote_address, connection.remote_port))
        }
    };
    let transport = transport_len(connection.protocol);
    let ip = ip_len(connection);
    let payload = PAYLOAD_LEN.load(Ordering::Relaxed);
    let total = ip + transport + payload;
    let mut bytes = vec![0u8; total];
    match (source.0, destination.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes[0] = 0x45;
            bytes[2..4].copy_from_slice(&(total.min(0xFFFF) as u16).to_be_bytes());
            bytes[8] = 128;
            bytes[9] = connection.protocol;
            bytes[12..16].copy_from_slice(&s.octets());
            bytes[16..20].copy_from_slice(&d.octets());
        }
        (s, d) => {
            bytes[0] = 0x60;
            bytes[4..6].copy_from_slice(&((transport + payload).min(0xFFFF) as u16).to_be_bytes());
            bytes[6] = connection.protocol;
            bytes[7] = 128;
            bytes[8..24].copy_from_slice(&v6(s).octets());
            bytes[24..40].copy_from_slice(&v6(d).octets());
        }
    }
    bytes[ip..ip + 2].copy_from_slice(&source.1.to_be_bytes());
    bytes[ip + 2..ip + 4].copy_from_slice(&destination.1.to_be_bytes());
    for (i, byte) in bytes[ip + transport..].iter_mut().enumerate() {
        *byte = 0xA0 ^ i as u8;
    }
    bytes
}

fn v6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// The ports a transport header starts with (source, destination), if the
/// bytes hold a whole header for `protocol`.
pub(crate) fn transport_ports(bytes: &[u8], protocol: u8) -> Option<(u16, u16)> {
    if bytes.len() < transport_len(protocol) {
        return None;
    }
    let ports = bytes.get(0..4)?;
    Some((u16::from_be_bytes([ports[0], ports[1]]), u16::from_be_bytes([ports[2], ports[3]])))
}

/// What a packet says about itself: protocol, source, destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub protocol: u8,
    pub source: (IpAddr, u16),
    pub destination: (IpAddr, u16),
}

/// Parses an IP packet starting at its IP header; `None` if it does not
/// start with a well-formed IPv4/IPv6 header followed by TCP or UDP.
pub(crate) fn parse(bytes: &[u8]) -> Option<Parsed> {
    let version = bytes.first()? >> 4;
    let (protocol, source, destination, ip) = match version {
        4 if bytes.first()? & 0x0F == 5 => {
            let s: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = bytes.get(16..20)?.try_into().ok()?;
            (*bytes.get(9)?, IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)), 20)
        }
        6 => {
            let s: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = bytes.get(24..40)?.try_into().ok()?;
            (*bytes.get(6)?, IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)), 40)
        }
        _ => return None,
    };
    if protocol != 6 && protocol != 17 {
        return None;
    }
    let ports = bytes.get(ip..ip + 4)?;
    let source_port = u16::from_be_bytes([ports[0], ports[1]]);
    let destination_port = u16::from_be_bytes([ports[2], ports[3]]);
    if bytes.len() < ip + transport_len(protocol) {
        return None;
    }
    Some(Parsed { protocol, source: (source, source_port), destination: (destination, destination_port) })
}
