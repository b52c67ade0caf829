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
#![deny(unsafe_code)]

use crate::platform::kernel::HANDLE;
use crate::platform::log::Level;
use crate::platform::pool::{PoolBox, PoolSlice, PoolTag};
use crate::platform::status::{NtStatus, Result};
use crate::wfp::filter_view::{IncomingValues, LayerData, Metadata};
use core::ffi::c_void;
use core::net::IpAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};
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
/// A copy's bookkeeping (the injection's completion context).
pub const TAG_PACKET_COPY_RECORD: PoolTag = PoolTag::new(*b"WfPc");
/// Our NET_BUFFER_LIST pool.
const TAG_NBL_POOL: u32 = u32::from_le_bytes(*b"WfNb");

/// `NET_BUFFER_LIST_POOL_PARAMETERS`, revision 1 (ndis/nblapi.h).
#[repr(C)]
struct NetBufferListPoolParameters {
    /// `NDIS_OBJECT_HEADER`: Type, Revision, Size.
    header_type: u8,
    header_revision: u8,
    header_size: u16,
    protocol_id: u8,
    allocate_net_buffer: u8,
    context_size: u16,
    pool_tag: u32,
    data_size: u32,
}

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

/// The packet injection handle (NULL when closed).
static INJECTION_HANDLE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
/// Our NET_BUFFER_LIST pool (NULL when closed).
static NBL_POOL: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// `FWPS_TRANSPORT_SEND_PARAMS1` (x64).
#[repr(C)]
struct TransportSendParams1 {
    remote_address: *const u8,
    remote_scope_id: u32,
    control_data: *const c_void,
    control_data_length: u32,
    header_include_header: *const c_void,
    header_include_header_length: u32,
}

// x64 offsets of FWPS_TRANSPORT_SEND_PARAMS1 (fwpsk.h: pointer, SCOPE_ID
// (a ULONG), pointer, ULONG, pointer, ULONG).
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, remote_scope_id) == 8);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, control_data) == 16);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, control_data_length) == 24);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, header_include_header) == 32);
const _: () = assert!(size_of::<TransportSendParams1>() == 48);

/// A deep copy of a packet: our bytes, the MDL over them and the list
/// `FwpsAllocateNetBufferAndNetBufferList0` made over that. Dropping it
/// frees all three (in that order reversed) and returns its bytes to the
/// budget.
///
/// # Invariants
/// `nbl` and `mdl` are 0 or live objects we allocated over `data`, which
/// outlives them; `len` bytes of the budget are reserved for this copy
/// (the packet's and its control data's).
struct PacketCopy {
    nbl: usize,
    mdl: usize,
    len: usize,
    data: PoolSlice<u8>,
    /// A first datagram's socket control data, copied at classify.
    control: Option<PoolSlice<u8>>,
    /// A datagram's remote address (network order) and the send
    /// parameters pointing at it: both must stay valid until the send
    /// injection completes, so they live here.
    remote: [u8; 16],
    send_args: TransportSendParams1,
}

#[allow(unsafe_code)]
// SAFETY: the raw pointers in `send_args` point into this same value (or
// are NULL); nothing else shares them.
unsafe impl Send for PacketCopy {}

impl Drop for PacketCopy {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.nbl != 0 {
            // SAFETY: our live list (invariant), freed once here.
            unsafe { crate::wfp::ffi::FwpsFreeNetBufferList0(self.nbl as *mut c_void) };
        }
        if self.mdl != 0 {
            // SAFETY: our live MDL (invariant), no list uses it any more.
            unsafe { crate::platform::kernel::IoFreeMdl(self.mdl as *mut c_void) };
        }
        COPIES.bytes_held.fetch_sub(self.len as u64, Ordering::Relaxed);
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
    copy: PoolBox<PacketCopy>,
    family: u16,
    compartment: u32,
    direction: Direction,
}

impl PendedPacket {
    /// The copy's list, as `FwpsCompleteOperation0` takes it.
    pub fn net_buffer_list(&self) -> *mut c_void {
        self.copy.nbl as *mut c_void
    }
}

fn handle() -> Option<HANDLE> {
    let handle = INJECTION_HANDLE.load(Ordering::Acquire);
    (!handle.is_null()).then_some(handle)
}

/// Creates the injection handle (initialize, PASSIVE_LEVEL). The copy
/// counts start again here, as the other counters do at load (a static
/// outlives a load only in the simulated kernel); `bytes_held` is a level
/// that live copies give back, so it is left alone (zero at load).
pub fn open() -> Result {
    for count in [&COPIES.copied, &COPIES.refused, &COPIES.ipsec] {
        count.store(0, Ordering::Relaxed);
    }
    let mut handle: HANDLE = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: the out-pointer is valid; PASSIVE_LEVEL.
    let status =
        unsafe { crate::wfp::ffi::FwpsInjectionHandleCreate0(AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT, &mut handle) };
    NtStatus::to_result(status)
        .inspect_err(|s| crate::log!(Level::Error, "FwpsInjectionHandleCreate0 failed: {}", s))?;
    INJECTION_HANDLE.store(handle, Ordering::Release);
    let parameters = NetBufferListPoolParameters {
        header_type: 0x80, // NDIS_OBJECT_TYPE_DEFAULT
        header_revision: 1,
        header_size: size_of::<NetBufferListPoolParameters>() as u16,
        protocol_id: 0,
        allocate_net_buffer: 1,
        context_size: 0,
        pool_tag: TAG_NBL_POOL,
        data_size: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: valid parameters for the call; no NDIS handle (optional).
    let pool = unsafe {
        crate::wfp::ffi::NdisAllocateNetBufferListPool(core::ptr::null_mut(), (&raw const parameters).cast::<c_void>())
    };
    if pool.is_null() {
        crate::log!(Level::Error, "NdisAllocateNetBufferListPool failed");
        close();
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    NBL_POOL.store(pool, Ordering::Release);
    Ok(())
}

/// Destroys it (unload, after the callouts are unregistered), then the
/// list pool: destroying the handle waits for our injections' completions,
/// which free the last lists.
pub fn close() {
    let handle = INJECTION_HANDLE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        close_handle(handle);
    }
    let pool = NBL_POOL.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !pool.is_null() {
        #[allow(unsafe_code)]
        // SAFETY: our pool, freed once; every list from it is freed (the
        // requests are gone and the injections completed).
        unsafe {
            crate::wfp::ffi::NdisFreeNetBufferListPool(pool)
        };
    }
}

fn close_handle(handle: HANDLE) {
    // A failed destroy leaves the handle alive: retried, like the session.
    let _ = crate::platform::status::retry_teardown("FwpsInjectionHandleDestroy0", 3, || {
        #[allow(unsafe_code)]
        // SAFETY: our handle, destroyed at most once successfully; PASSIVE_LEVEL.
        unsafe {
            crate::wfp::ffi::FwpsInjectionHandleDestroy0(handle)
        }
    });
}

/// Whether classify's packet is one we injected (the ask filter that
/// pended its connection permits it).
pub(crate) fn is_our_injection(layer_data: &LayerData<'_>) -> bool {
    let Some(handle) = handle() else { return false };
    #[allow(unsafe_code)]
    // SAFETY: our injection handle, and classify's packet, valid for the call (`LayerData`).
    let state =
        unsafe { crate::wfp::ffi::FwpsQueryPacketInjectionState0(handle, layer_data.as_raw(), core::ptr::null_mut()) };
    matches!(state, INJECTED_BY_SELF | PREVIOUSLY_INJECTED_BY_SELF)
}

/// Reserves `len` bytes of the copy budget; false when it would overflow.
fn reserve(len: usize) -> bool {
    let len = len as u64;
    let held = COPIES.bytes_held.fetch_add(len, Ordering::Relaxed);
    if held.saturating_add(len) > MAX_COPY_BYTES_HELD {
        COPIES.bytes_held.fetch_sub(len, Ordering::Relaxed);
        return false;
    }
    true
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
    let pool = NBL_POOL.load(Ordering::Acquire);
    if handle().is_none() || pool.is_null() {
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
    if packet_len > MAX_PACKET_COPY || control_len > MAX_CONTROL_DATA || !reserve(len) {
        COPIES.refused.fetch_add(1, Ordering::Relaxed);
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // INVARIANT: `len` bytes reserved; nothing allocated yet.
    let unreserve = |status| {
        COPIES.bytes_held.fetch_sub(len as u64, Ordering::Relaxed);
        status
    };
    let data = PoolSlice::<u8>::try_zeroed(packet_len, TAG_PACKET_COPY).map_err(unreserve)?;
    let control = match control_data {
        Some(source) => {
            let mut copy = PoolSlice::<u8>::try_zeroed(source.len(), TAG_PACKET_COPY).map_err(unreserve)?;
            copy.copy_from_slice(source);
            Some(copy)
        }
        None => None,
    };
    let send_args = TransportSendParams1 {
        remote_address: core::ptr::null(),
        remote_scope_id: 0,
        control_data: core::ptr::null(),
        control_data_length: 0,
        header_include_header: core::ptr::null(),
        header_include_header_length: 0,
    };
    let copy = PacketCopy { nbl: 0, mdl: 0, len, data, control, remote: [0; 16], send_args };
    let mut copy = PoolBox::try_new(copy, TAG_PACKET_COPY_RECORD)?;
    layer_data.copy_packet(headers, &mut copy.data)?;
    let bytes = copy.data.as_mut_ptr();
    #[allow(unsafe_code)]
    // SAFETY: `packet_len` bytes of our non-paged buffer, which outlives
    // the MDL (both belong to `copy`).
    let mdl =
        unsafe { crate::platform::kernel::IoAllocateMdl(bytes.cast(), packet_len as u32, 0, 0, core::ptr::null_mut()) };
    if mdl.is_null() {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    copy.mdl = mdl as usize;
    #[allow(unsafe_code)]
    // SAFETY: our MDL over non-paged pool.
    unsafe {
        crate::platform::kernel::MmBuildMdlForNonPagedPool(mdl)
    };
    let mut nbl: *mut c_void = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: our pool and built MDL; `packet_len` bytes from offset 0 are
    // in it; the out-pointer is valid.
    let status =
        unsafe { crate::wfp::ffi::FwpsAllocateNetBufferAndNetBufferList0(pool, 0, 0, mdl, 0, packet_len, &mut nbl) };
    NtStatus::to_result(status)?;
    if nbl.is_null() {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // INVARIANT: a live list over our MDL, owned by the copy.
    copy.nbl = nbl as usize;
    COPIES.copied.fetch_add(1, Ordering::Relaxed);
    Ok(PendedPacket {
        copy,
        family: if remote.is_ipv6() { AF_INET6 } else { AF_INET },
        compartment: metadata.and_then(Metadata::compartment_id).unwrap_or(0),
        direction,
    })
}

/// After `FwpsCompleteOperation0(context, copy)`: injects the copy to
/// permit (inbound into the receive path, a first datagram into its
/// socket's send path), frees it to deny.
pub fn finish(packet: PendedPacket, verdict: Verdict) {
    let PendedPacket { copy, family, compartment, direction } = packet;
    let Some(handle) = handle().filter(|_| verdict == Verdict::Permit) else {
        drop(copy);
        return;
    };
    let nbl = copy.nbl as *mut c_void;
    // The copy travels as the completion context; the completion frees it.
    let raw = copy.into_raw();
    let status = match direction {
        Direction::Inbound { interface_index, sub_interface_index } => {
            #[allow(unsafe_code)]
            // SAFETY: our handle and our live list; on success the completion
            // function takes the copy back and frees it.
            unsafe {
                crate::wfp::ffi::FwpsInjectTransportReceiveAsync0(
                    handle,
                    core::ptr::null_mut(),
                    core::ptr::null_mut(),
                    0,
                    family,
                    compartment,
                    interface_index,
                    sub_interface_index,
                    nbl,
                    Some(injection_complete),
                    raw.as_ptr().cast(),
                )
            }
        }
        Direction::Outbound { endpoint, remote, scope_id } => {
            let copy = raw.as_ptr();
            #[allow(unsafe_code)]
            // SAFETY: `raw` is our live copy, given away but not yet to
            // anyone: we are its only user until the injection below.
            let copy = unsafe { &mut *copy };
            match remote {
                IpAddr::V4(v4) => copy.remote[..4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => copy.remote.copy_from_slice(&v6.octets()),
            }
            copy.send_args.remote_address = copy.remote.as_ptr();
            copy.send_args.remote_scope_id = scope_id;
            if let Some(control) = &copy.control {
                // Our copy of classify's control data, which lives in the
                // copy until the completion frees it.
                copy.send_args.control_data = control.as_ptr().cast();
                copy.send_args.control_data_length = control.len() as u32;
            }
            #[allow(unsafe_code)]
            // SAFETY: our handle, the socket classify named, our live list,
            // and send parameters that live in the copy until the completion
            // function takes the copy back and frees it.
            unsafe {
                crate::wfp::ffi::FwpsInjectTransportSendAsync1(
                    handle,
                    core::ptr::null_mut(),
                    endpoint,
                    0,
                    (&raw const copy.send_args).cast(),
                    family,
                    compartment,
                    nbl,
                    Some(injection_complete),
                    raw.as_ptr().cast(),
                )
            }
        }
    };
    if NtStatus::to_result(status).is_ok() {
        return;
    }
    crate::log!(Level::Warning, "packet injection failed: {:#010X}", status as u32);
    #[allow(unsafe_code)]
    // SAFETY: from `into_raw` above with the same tag; the failed injection
    // did not take it.
    drop(unsafe { PoolBox::from_raw(raw, TAG_PACKET_COPY_RECORD) });
}

/// The injection's completion: the stack is done with the copy.
#[allow(unsafe_code)]
unsafe extern "system" fn injection_complete(context: *mut c_void, _net_buffer_list: *mut c_void, _dispatch_level: u8) {
    // `dispatchLevel` only says at which IRQL we run; freeing works at either.
    if let Some(raw) = NonNull::new(context.cast::<PacketCopy>()) {
        // SAFETY: the context is the copy `finish` gave away with `into_raw`
        // (same tag); the stack calls this once.
        drop(unsafe { PoolBox::from_raw(raw, TAG_PACKET_COPY_RECORD) });
    }
}
