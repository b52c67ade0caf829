//! Permitting a pended connection at ALE_AUTH_RECV_ACCEPT: completion does
//! not reauthorize there, so at pend time the first packet is copied, the
//! operation is completed with the copy, and to permit the copy is injected
//! back into the receive path; the engine classifies it again and classify
//! recognises it as our own injection. To deny, the copy is freed.
//!
//! At ALE_AUTH_CONNECT a UDP (or ICMP) connection's first datagram comes as
//! layerData, and completing the operation flushes it ("Any pended packet
//! data is flushed ... The callout could buffer such data and reinject the
//! data on the application's behalf", FwpsCompleteOperation0; the inspect
//! sample send-injects it once the reauthorization permitted). So it is
//! copied the same way (from its transport header) and, to permit, sent
//! with `FwpsInjectTransportSendAsync1` on its socket
//! (`transportEndpointHandle`) to its remote address. Its socket control
//! data (the application's ancillary data, e.g. `IP_PKTINFO` choosing the
//! source address: metadata `controlData`, valid only during classify) is
//! copied with it and passed in `FWPS_TRANSPORT_SEND_PARAMS1.controlData`,
//! as the inspect sample does, so the datagram leaves as the application
//! sent it (FWPS_TRANSPORT_SEND_PARAMS1: control data "must be deep-copied
//! in the callout driver's implementation of the classifyFn function, and
//! the controlData buffer must remain valid until the injection completion
//! function is called"); it counts in the copy budget and is bounded by
//! [`MAX_CONTROL_DATA`].
//!
//! The copy is deep: the bytes from the IP header go into our own non-paged
//! buffer, described by an MDL and wrapped with
//! `FwpsAllocateNetBufferAndNetBufferList0`. A shallow clone
//! (`FwpsAllocateCloneNetBufferList0`) would keep the stack's buffers while
//! a person decides, which its remarks forbid ("must not hold cloned
//! packets while ... waiting for user input ... it makes a deep copy of
//! the packet using FwpsAllocateNetBufferAndNetBufferList0, and it blocks
//! and absorbs the original packet"). The memory copies hold is bounded
//! ([`MAX_PACKET_COPY`] each, [`MAX_COPY_BYTES_HELD`] in all) and counted
//! ([`COPIES`]); past the bound the ask gets its default verdict at once.
#![forbid(unsafe_code)]

use crate::platform::log::Level;
use crate::platform::pool::{PoolBox, PoolSlice, PoolTag};
use crate::platform::status::{NtStatus, Result};
pub use crate::wfp::ffi::TAG_PACKET_COPY_RECORD;
use crate::wfp::ffi::{Injection, PacketCopy};
use crate::wfp::filter_view::{IncomingValues, LayerData, Metadata};
use core::net::IpAddr;
use core::sync::atomic::Ordering;
use wfpcallout_wire::Verdict;

/// `FWPS_INJECTION_TYPE_TRANSPORT` (fwpsk.h: STREAM 0x1, TRANSPORT 0x2,
/// NETWORK 0x4, FORWARD 0x8): the handle type `FwpsInjectTransport*` needs.
const FWPS_INJECTION_TYPE_TRANSPORT: u32 = 0x2;
/// `AF_UNSPEC`: the handle injects both families.
const AF_UNSPEC: u16 = 0;
/// `AF_INET`.
const AF_INET: u16 = 2;
/// `AF_INET6`.
const AF_INET6: u16 = 23;
/// `FWPS_PACKET_INJECTED_BY_SELF` and `FWPS_PACKET_PREVIOUSLY_INJECTED_BY_SELF`.
const INJECTED_BY_SELF: i32 = 1;
const PREVIOUSLY_INJECTED_BY_SELF: i32 = 3;
/// FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_V{4,6}_INTERFACE_INDEX / SUB_INTERFACE_INDEX.
const RECV_ACCEPT_INTERFACE_INDEX: usize = 16;
const RECV_ACCEPT_SUB_INTERFACE_INDEX: usize = 17;

/// The largest packet copied (bytes from the IP header); larger ones are
/// not pended (default verdict).
pub const MAX_PACKET_COPY: usize = 64 * 1024;
/// The largest socket control data copied with a first datagram; with
/// more, the datagram is not copied (the connection is still pended; the
/// application retransmits).
pub const MAX_CONTROL_DATA: usize = 4 * 1024;
/// Bytes all copies may hold at once (1,024 pended SYNs of 60 bytes take
/// 60 KiB; this leaves room for large first datagrams).
pub const MAX_COPY_BYTES_HELD: u64 = 2 * 1024 * 1024;

/// The copied packet bytes (and a first datagram's control data).
pub const TAG_PACKET_COPY: PoolTag = PoolTag::new(*b"WfPk");
/// Our NET_BUFFER_LIST pool.
const TAG_NBL_POOL: u32 = u32::from_le_bytes(*b"WfNb");

crate::counter_set! {
    /// Counters of the packet copies (the memory pended asks hold).
    pub struct CopyStats {
        /// Bytes copies hold now.
        bytes_held,
        /// Packets copied.
        copied,
        /// Packets not copied because of the bounds (the ask got its default).
        refused,
        /// Inbound asks not pended because IPsec protects the packet (its
        /// copy could not be injected as it is): the default applied.
        ipsec,
    }
}

/// The copy counters.
pub static COPIES: CopyStats = CopyStats::new();

/// The packet injection handle and our NET_BUFFER_LIST pool (closed
/// between loads).
static INJECTION: Injection = Injection::new();

/// Bytes of the copy budget ([`MAX_COPY_BYTES_HELD`]) a copy holds: given
/// back when it is dropped, with the copy.
pub(crate) struct Reservation(usize);

impl Reservation {
    /// Reserves `len` bytes; `None` when the budget would overflow.
    fn take(len: usize) -> Option<Self> {
        let bytes = len as u64;
        let held = COPIES.bytes_held.fetch_add(bytes, Ordering::Relaxed);
        if held.saturating_add(bytes) > MAX_COPY_BYTES_HELD {
            COPIES.bytes_held.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Self(len))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        COPIES.bytes_held.fetch_sub(self.0 as u64, Ordering::Relaxed);
    }
}

/// Where a copied packet goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Receive path, on the interface it came from (ALE_AUTH_RECV_ACCEPT).
    Inbound {
        /// `IF_INDEX` it arrived on.
        interface_index: u32,
        /// Its sub-interface.
        sub_interface_index: u32,
    },
    /// Send path of its socket (the first datagram at ALE_AUTH_CONNECT).
    Outbound {
        /// `transportEndpointHandle` of the sending socket.
        endpoint: u64,
        /// The remote address.
        remote: IpAddr,
        /// Its scope id.
        scope_id: u32,
    },
}

/// A copied packet, waiting for the verdict on its connection.
pub struct PendedPacket {
    copy: PoolBox<PacketCopy<Reservation>>,
    family: u16,
    compartment: u32,
    direction: Direction,
}

impl PendedPacket {
    /// The copy, for `PendedOperation::complete` to complete the operation
    /// with (borrowed: it stays ours, to inject or free after).
    pub(crate) fn copy(&self) -> &PacketCopy<Reservation> {
        &self.copy
    }

    /// Whether `FwpsCompleteOperation0` gets this copy when the connection
    /// ends with `verdict`: only when [`finish`] is about to inject it on
    /// the receive path (a permitted recv-accept: "A net buffer list to be
    /// injected must be passed to FwpsCompleteOperation0",
    /// FwpsInjectTransportReceiveAsync0). A connect completes with NULL and
    /// sends its first datagram afterwards, and a denied recv-accept
    /// completes with NULL and frees its copy, as Microsoft's inspect
    /// sample does: what the engine would do with any other list is not
    /// documented (CONFORMANCE Z7).
    pub(crate) fn goes_with_completion(&self, verdict: Verdict) -> bool {
        verdict == Verdict::Permit && matches!(self.direction, Direction::Inbound { .. }) && INJECTION.is_open()
    }
}

/// Creates the injection handle and the list pool (initialize,
/// PASSIVE_LEVEL). The copy counts start again here, as the other counters
/// do at load (a static outlives a load only in the simulated kernel);
/// `bytes_held` is a level that live copies give back, so it is left alone
/// (zero at load).
pub fn open() -> Result {
    for count in [&COPIES.copied, &COPIES.refused, &COPIES.ipsec] {
        count.store(0, Ordering::Relaxed);
    }
    INJECTION
        .create_handle(AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT)
        .inspect_err(|s| crate::log!(Level::Error, "FwpsInjectionHandleCreate0 failed: {}", s))?;
    if let Err(status) = INJECTION.allocate_list_pool(TAG_NBL_POOL) {
        crate::log!(Level::Error, "NdisAllocateNetBufferListPool failed");
        close();
        return Err(status);
    }
    Ok(())
}

/// Destroys the handle (unload, after the callouts are unregistered), then
/// the list pool: destroying the handle waits for our injections'
/// completions, which free the last lists.
pub fn close() {
    INJECTION.close();
}

/// Unload, once every pended operation is completed and before the
/// callouts are unregistered: waits (PASSIVE_LEVEL, bounded) for the
/// injections still in flight. An injected packet may travel the stack
/// after the injection call returned, until just before its completion
/// (CONFORMANCE I7); met by our filters after their callout is
/// unregistered, it would be blocked ("filters with an action type of
/// FWP_ACTION_CALLOUT_TERMINATING ... are treated as FWP_ACTION_BLOCK",
/// FwpsCalloutUnregisterById0), and the permit it was injected for lost.
pub fn wait_for_delivery() {
    let left = INJECTION.wait_for_lists();
    if left != 0 {
        crate::log!(Level::Warning, "unload: {} injected packet(s) not completed yet: unregistering anyway", left);
    }
}

/// Whether classify's packet is one we injected (the ask filter that
/// pended its connection permits it).
pub(crate) fn is_our_injection(layer_data: &LayerData<'_>) -> bool {
    let Some(handle) = INJECTION.handle() else { return false };
    matches!(layer_data.injection_state(handle), INJECTED_BY_SELF | PREVIOUSLY_INJECTED_BY_SELF)
}

/// Deep-copies classify's packet for a pended connection: inbound from its
/// IP header (the receive path takes it so), outbound from its transport
/// header, where the datagram starts (the send path adds the IP header).
pub(crate) fn copy_packet(
    layer_data: &LayerData<'_>,
    values: &IncomingValues<'_>,
    metadata: Option<&Metadata<'_>>,
    inbound: bool,
    remote: IpAddr,
) -> Result<PendedPacket> {
    if !INJECTION.is_open() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let direction = if inbound {
        Direction::Inbound {
            interface_index: values.uint32(RECV_ACCEPT_INTERFACE_INDEX).unwrap_or(0),
            sub_interface_index: values.uint32(RECV_ACCEPT_SUB_INTERFACE_INDEX).unwrap_or(0),
        }
    } else {
        Direction::Outbound {
            endpoint: metadata.and_then(Metadata::transport_endpoint_handle).ok_or(NtStatus::INVALID_PARAMETER)?,
            remote,
            scope_id: metadata.and_then(Metadata::remote_scope_id).unwrap_or(0),
        }
    };
    let headers =
        if inbound { metadata.and_then(Metadata::header_sizes).ok_or(NtStatus::INVALID_PARAMETER)? } else { 0 };
    let packet_len = layer_data.data_length().ok_or(NtStatus::INVALID_PARAMETER)?.saturating_add(headers as usize);
    // Only an outbound datagram is sent with its control data.
    let control_data = if inbound { None } else { metadata.and_then(Metadata::control_data) };
    let control_len = control_data.map_or(0, <[u8]>::len);
    let len = packet_len.saturating_add(control_len);
    let reservation =
        if packet_len > MAX_PACKET_COPY || control_len > MAX_CONTROL_DATA { None } else { Reservation::take(len) };
    let Some(reservation) = reservation else {
        COPIES.refused.fetch_add(1, Ordering::Relaxed);
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    };
    // From here every failure drops the reservation, which gives the
    // bytes back.
    let data = PoolSlice::<u8>::try_zeroed(packet_len, TAG_PACKET_COPY)?;
    let control = match control_data {
        Some(source) => {
            let mut copy = PoolSlice::<u8>::try_zeroed(source.len(), TAG_PACKET_COPY)?;
            copy.copy_from_slice(source);
            Some(copy)
        }
        None => None,
    };
    let mut copy = PacketCopy::try_new(data, control, reservation)?;
    layer_data.copy_packet(headers, copy.bytes_mut())?;
    copy.build_list(&INJECTION)?;
    COPIES.copied.fetch_add(1, Ordering::Relaxed);
    Ok(PendedPacket {
        copy,
        family: if remote.is_ipv6() { AF_INET6 } else { AF_INET },
        compartment: metadata.and_then(Metadata::compartment_id).unwrap_or(0),
        direction,
    })
}

/// After the operation is completed with the copy
/// (`PendedOperation::complete`): injects the copy to
/// permit (inbound into the receive path, a first datagram into its
/// socket's send path), frees it to deny.
pub fn finish(packet: PendedPacket, verdict: Verdict) {
    let PendedPacket { copy, family, compartment, direction } = packet;
    let Some(handle) = INJECTION.handle().filter(|_| verdict == Verdict::Permit) else {
        drop(copy);
        return;
    };
    // On success the completion frees the copy; on failure it is freed
    // before the call returns.
    let status = match direction {
        Direction::Inbound { interface_index, sub_interface_index } => {
            PacketCopy::inject_receive(copy, handle, (family, compartment), interface_index, sub_interface_index)
        }
        Direction::Outbound { endpoint, remote, scope_id } => {
            PacketCopy::inject_send(copy, handle, (family, compartment), endpoint, (remote, scope_id))
        }
    };
    if NtStatus::to_result(status).is_ok() {
        return;
    }
    crate::log!(Level::Warning, "packet injection failed: {:#010X}", status as u32);
}
