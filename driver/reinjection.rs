//! Permitting a pended connection at ALE_AUTH_RECV_ACCEPT: completion does
//! not reauthorize there, so at pend time the first packet is cloned (with
//! its data start moved back to the IP header, as inbound injection
//! expects), the operation is completed with the clone, and to permit the
//! clone is injected back into the receive path; the engine classifies it
//! again and classify recognises it as our own injection. To deny, the
//! clone is freed.
#![deny(unsafe_code)]

use crate::driver_state::STATE;
use crate::ffi::HANDLE;
use crate::filter_view::{IncomingValues, Metadata};
use crate::log::Level;
use crate::status::{NtStatus, Result};
use core::ffi::c_void;
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
/// `NET_BUFFER_LIST.FirstNetBuffer` (after `Next`) on x64: offset 8.
const NBL_FIRST_NET_BUFFER_OFFSET: usize = 8;
/// FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_V{4,6}_INTERFACE_INDEX / SUB_INTERFACE_INDEX.
const RECV_ACCEPT_INTERFACE_INDEX: usize = 16;
const RECV_ACCEPT_SUB_INTERFACE_INDEX: usize = 17;

/// A cloned inbound packet, waiting for the verdict on its connection.
///
/// # Invariants
/// `clone` is a live clone from `FwpsAllocateCloneNetBufferList0`, owned by
/// this value until `finish` injects or frees it.
pub struct PendedPacket {
    clone: usize,
    family: u16,
    compartment: u32,
    interface_index: u32,
    sub_interface_index: u32,
}

impl PendedPacket {
    /// The clone, as `FwpsCompleteOperation0` takes it.
    pub fn net_buffer_list(&self) -> *mut c_void {
        self.clone as *mut c_void
    }
}

fn handle() -> Option<HANDLE> {
    let handle = STATE.injection.load(Ordering::Acquire);
    (!handle.is_null()).then_some(handle)
}

/// Creates the injection handle (initialize, PASSIVE_LEVEL).
pub fn open() -> Result {
    let mut handle: HANDLE = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: the out-pointer is valid; PASSIVE_LEVEL.
    let status =
        unsafe { crate::ffi::FwpsInjectionHandleCreate0(AF_UNSPEC, FWPS_INJECTION_TYPE_TRANSPORT, &mut handle) };
    NtStatus::to_result(status)
        .inspect_err(|s| crate::log!(Level::Error, "FwpsInjectionHandleCreate0 failed: {}", s))?;
    STATE.injection.store(handle, Ordering::Release);
    Ok(())
}

/// Destroys it (unload, after the callouts are unregistered).
pub fn close() {
    let handle = STATE.injection.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if handle.is_null() {
        return;
    }
    // A failed destroy leaves the handle alive: retried, like the session.
    let _ = crate::status::retry_teardown("FwpsInjectionHandleDestroy0", 3, || {
        #[allow(unsafe_code)]
        // SAFETY: our handle, destroyed at most once successfully; PASSIVE_LEVEL.
        unsafe {
            crate::ffi::FwpsInjectionHandleDestroy0(handle)
        }
    });
}

/// Whether `layer_data` is a packet we injected (classify permits it).
pub(crate) fn is_our_injection(layer_data: *mut c_void) -> bool {
    let Some(handle) = handle() else { return false };
    if layer_data.is_null() {
        return false;
    }
    #[allow(unsafe_code)]
    // SAFETY: `layer_data` is classify's packet, valid for the call.
    let state = unsafe { crate::ffi::FwpsQueryPacketInjectionState0(handle, layer_data, core::ptr::null_mut()) };
    matches!(state, INJECTED_BY_SELF | PREVIOUSLY_INJECTED_BY_SELF)
}

#[allow(unsafe_code)]
fn first_net_buffer(list: *mut c_void) -> *mut c_void {
    // SAFETY: `list` is classify's NET_BUFFER_LIST, valid for the call, and
    // at least FirstNetBuffer's end long.
    let field = unsafe { list.cast::<u8>().add(NBL_FIRST_NET_BUFFER_OFFSET) };
    // SAFETY: FirstNetBuffer is a pointer at offset 8 of the structure on x64.
    unsafe { field.cast::<*mut c_void>().read_unaligned() }
}

/// Clones classify's packet for a pended inbound connection.
pub(crate) fn clone_packet(
    layer_data: *mut c_void,
    values: &IncomingValues<'_>,
    metadata: Option<&Metadata<'_>>,
    remote: IpAddr,
) -> Result<PendedPacket> {
    if layer_data.is_null() || handle().is_none() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let headers = metadata.and_then(Metadata::header_sizes).ok_or(NtStatus::INVALID_PARAMETER)?;
    let buffer = first_net_buffer(layer_data);
    if buffer.is_null() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    #[allow(unsafe_code)]
    // SAFETY: the packet's first NET_BUFFER, valid during classify; the
    // headers it is retreated over are in the buffer (the metadata says so).
    let status = unsafe { crate::ffi::NdisRetreatNetBufferDataStart(buffer, headers, 0, core::ptr::null_mut()) };
    if status != 0 {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    let mut clone: *mut c_void = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: the packet is valid during classify; the out-pointer is valid.
    let status = unsafe {
        crate::ffi::FwpsAllocateCloneNetBufferList0(
            layer_data,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            0,
            &mut clone,
        )
    };
    #[allow(unsafe_code)]
    // SAFETY: undoes the retreat above before the engine sees the packet.
    unsafe {
        crate::ffi::NdisAdvanceNetBufferDataStart(buffer, headers, 0, core::ptr::null_mut())
    };
    NtStatus::to_result(status)?;
    if clone.is_null() {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // INVARIANT: a live clone, now owned by the PendedPacket.
    Ok(PendedPacket {
        clone: clone as usize,
        family: if remote.is_ipv6() { AF_INET6 } else { AF_INET },
        compartment: metadata.and_then(Metadata::compartment_id).unwrap_or(0),
        interface_index: values.uint32(RECV_ACCEPT_INTERFACE_INDEX).unwrap_or(0),
        sub_interface_index: values.uint32(RECV_ACCEPT_SUB_INTERFACE_INDEX).unwrap_or(0),
    })
}

/// After `FwpsCompleteOperation0(context, clone)`: injects the clone to
/// permit, frees it to deny.
pub fn finish(packet: PendedPacket, verdict: Verdict) {
    if verdict == Verdict::Permit
        && let Some(handle) = handle()
    {
        #[allow(unsafe_code)]
        // SAFETY: our handle and our live clone; on success the completion
        // function frees the clone, so ownership passes to the stack.
        let status = unsafe {
            crate::ffi::FwpsInjectTransportReceiveAsync0(
                handle,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
                packet.family,
                packet.compartment,
                packet.interface_index,
                packet.sub_interface_index,
                packet.net_buffer_list(),
                Some(injection_complete),
                core::ptr::null_mut(),
            )
        };
        if NtStatus::to_result(status).is_ok() {
            return;
        }
        crate::log!(Level::Warning, "FwpsInjectTransportReceiveAsync0 failed: {:#010X}", status as u32);
    }
    free_clone(packet.net_buffer_list());
}

#[allow(unsafe_code)]
fn free_clone(clone: *mut c_void) {
    // SAFETY: a live clone owned by the caller, freed once.
    unsafe { crate::ffi::FwpsFreeCloneNetBufferList0(clone, 0) };
}

/// The injection's completion: the stack is done with the clone.
#[allow(unsafe_code)]
unsafe extern "system" fn injection_complete(_context: *mut c_void, net_buffer_list: *mut c_void, _dispatch_level: u8) {
    // `dispatchLevel` only says at which IRQL we run; freeing a clone works
    // at either.
    free_clone(net_buffer_list);
}
