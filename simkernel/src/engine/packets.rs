//! Packets at ALE_AUTH_RECV_ACCEPT and their reinjection: the engine passes
//! the first packet as `layerData` (a `NET_BUFFER_LIST` positioned after
//! the transport header); a callout that pends it clones it (after
//! retreating to the IP header, and advancing back before classify
//! returns), completes the operation with the clone, and to permit injects
//! the clone with `FwpsInjectTransportReceiveAsync0`: the engine classifies
//! the injected packet again (where the callout must recognise its own
//! injection) and then calls the injection's completion function, which
//! frees the clone. To deny, the callout frees the clone.
//!
//! Modelled memory: `NET_BUFFER_LIST` (x64: `Next` at 0, `FirstNetBuffer`
//! at 8) and a `NET_BUFFER` whose data offset the simulator tracks through
//! `NdisRetreatNetBufferDataStart`/`NdisAdvanceNetBufferDataStart`.

use super::Connection;
use super::client::{ClassifyResult, classify_with_packet};
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// `FWPS_PACKET_INJECTION_STATE` values.
pub const FWPS_PACKET_NOT_INJECTED: i32 = 0;
/// Injected by the querying handle.
pub const FWPS_PACKET_INJECTED_BY_SELF: i32 = 1;
/// Injected by someone else.
pub const FWPS_PACKET_INJECTED_BY_OTHER: i32 = 2;
/// `FWPS_INJECTION_TYPE_TRANSPORT` (fwpsk.h: STREAM 0x1, TRANSPORT 0x2,
/// NETWORK 0x4, FORWARD 0x8).
pub const FWPS_INJECTION_TYPE_TRANSPORT: u32 = 0x2;

/// The start of a `NET_BUFFER_LIST` (what a callout may read).
#[repr(C)]
struct NetBufferList {
    next: *mut NetBufferList,
    first_net_buffer: *mut NetBuffer,
    _rest: [u64; 8],
}

/// An opaque `NET_BUFFER`; the simulator tracks its data offset.
#[repr(C)]
struct NetBuffer {
    _opaque: [u64; 6],
}

struct Packet {
    connection: Connection,
    is_clone: bool,
    /// How far the data start was retreated (bytes).
    retreated: u32,
    /// Injection handle that injected it, or 0.
    injected_by: usize,
    /// Headers the engine says precede the data start (ip + transport).
    headers: u32,
    list: Box<NetBufferList>,
    buffer: Box<NetBuffer>,
}

// SAFETY: the pointers refer to the packet's own boxes.
unsafe impl Send for Packet {}

#[derive(Default)]
struct State {
    /// By NET_BUFFER_LIST address.
    packets: HashMap<usize, Packet>,
    /// NET_BUFFER address -> NET_BUFFER_LIST address.
    buffers: HashMap<usize, usize>,
    handles: HashMap<usize, u32>,
    next_handle: usize,
    /// Reinjected classifications: (connection, result).
    reinjected: Vec<(Connection, ClassifyResult)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

fn new_packet(state: &mut State, connection: &Connection, is_clone: bool, headers: u32) -> *mut c_void {
    let mut buffer = Box::new(NetBuffer { _opaque: [0; 6] });
    let list = Box::new(NetBufferList { next: std::ptr::null_mut(), first_net_buffer: &mut *buffer, _rest: [0; 8] });
    let address = &*list as *const NetBufferList as usize;
    state.buffers.insert(&*buffer as *const NetBuffer as usize, address);
    state.packets.insert(
        address,
        Packet { connection: connection.clone(), is_clone, retreated: 0, injected_by: 0, headers, list, buffer },
    );
    address as *mut c_void
}

fn drop_packet(state: &mut State, address: usize) -> Option<Packet> {
    let packet = state.packets.remove(&address)?;
    state.buffers.remove(&(&*packet.buffer as *const NetBuffer as usize));
    let _ = &packet.list;
    Some(packet)
}

/// IP + transport header sizes the metadata reports for a connection.
pub(crate) fn header_sizes(connection: &Connection) -> (u32, u32) {
    let ip = if connection.local_address.is_ipv6() { 40 } else { 20 };
    let transport = if connection.protocol == 6 { 20 } else { 8 };
    (ip, transport)
}

/// The packet an inbound classification carries (engine-owned).
pub(crate) fn incoming(connection: &Connection) -> *mut c_void {
    let (ip, transport) = header_sizes(connection);
    with(|s| new_packet(s, connection, false, ip + transport))
}

/// Ends an engine-owned packet after classify: it must be back where the
/// engine left it.
pub(crate) fn release_incoming(packet: *mut c_void) {
    if packet.is_null() {
        return;
    }
    let retreated = with(|s| drop_packet(s, packet as usize).map(|p| p.retreated));
    if let Some(retreated) = retreated.filter(|&r| r != 0) {
        report(ViolationKind::ApiMisuse, format!("layerData returned to the engine retreated by {retreated} bytes"));
    }
}

/// A live clone of a packet of `connection`, as a callout would hold after
/// `FwpsAllocateCloneNetBufferList0` (for conformance tests whose probe
/// needs one without going through layerData). Free it with
/// `FwpsFreeCloneNetBufferList0`.
pub fn clone_for_test(connection: &Connection) -> *mut c_void {
    let (ip, transport) = header_sizes(connection);
    with(|s| new_packet(s, connection, true, ip + transport))
}

/// Classifications of reinjected packets so far.
pub fn take_reinjected() -> Vec<(Connection, ClassifyResult)> {
    with(|s| std::mem::take(&mut s.reinjected))
}

/// `NdisRetreatNetBufferDataStart`.
#[unsafe(no_mangle)]
pub extern "system" fn NdisRetreatNetBufferDataStart(
    net_buffer: *mut c_void,
    data_offset_delta: u32,
    _data_back_fill: u32,
    _allocate: *mut c_void,
) -> i32 {
    if let Some(status) = crate::faults::call_should_fail("NdisRetreatNetBufferDataStart") {
        return status;
    }
    with(|s| match s.buffers.get(&(net_buffer as usize)).copied() {
        Some(list) => {
            if let Some(packet) = s.packets.get_mut(&list) {
                packet.retreated += data_offset_delta;
            }
            0
        }
        None => {
            report(ViolationKind::ApiMisuse, "NdisRetreatNetBufferDataStart on an unknown NET_BUFFER");
            0xC000_0001_u32 as i32
        }
    })
}

/// `NdisAdvanceNetBufferDataStart`.
#[unsafe(no_mangle)]
pub extern "system" fn NdisAdvanceNetBufferDataStart(
    net_buffer: *mut c_void,
    data_offset_delta: u32,
    _free_mdl: u8,
    _free: *mut c_void,
) {
    with(|s| match s.buffers.get(&(net_buffer as usize)).copied().and_then(|l| s.packets.get_mut(&l)) {
        Some(packet) if packet.retreated >= data_offset_delta => packet.retreated -= data_offset_delta,
        _ => report(ViolationKind::ApiMisuse, "NdisAdvanceNetBufferDataStart past where the data started"),
    });
}

/// `FwpsAllocateCloneNetBufferList0`: the clone must be made with the data
/// start at the IP header (retreated by ip + transport header sizes).
///
/// # Safety
/// `clone` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsAllocateCloneNetBufferList0(
    original: *mut c_void,
    _pool: *mut c_void,
    _nb_pool: *mut c_void,
    _flags: u32,
    clone: *mut *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsAllocateCloneNetBufferList0");
    if clone.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    if crate::faults::call_should_fail("FwpsAllocateCloneNetBufferList0").is_some() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let made = with(|s| {
        let packet = s.packets.get(&(original as usize))?;
        if packet.retreated != packet.headers {
            report(
                ViolationKind::ApiMisuse,
                format!(
                    "clone made {} bytes into the packet; the IP header starts {} bytes back",
                    packet.retreated, packet.headers
                ),
            );
        }
        let connection = packet.connection.clone();
        let headers = packet.headers;
        Some(new_packet(s, &connection, true, headers))
    });
    match made {
        Some(address) => {
            // SAFETY: checked non-NULL; writable per the caller.
            unsafe { clone.write(address) };
            STATUS_SUCCESS
        }
        None => {
            report(ViolationKind::ApiMisuse, "FwpsAllocateCloneNetBufferList0 of an unknown NET_BUFFER_LIST");
            STATUS_INVALID_PARAMETER
        }
    }
}

/// `FwpsFreeCloneNetBufferList0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsFreeCloneNetBufferList0(clone: *mut c_void, free_clone_flags: u32) {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsFreeCloneNetBufferList0");
    if free_clone_flags != 0 {
        report(
            ViolationKind::ApiMisuse,
            format!(
                "FwpsFreeCloneNetBufferList0 with freeCloneFlags {free_clone_flags:#x}: no flags are defined, pass 0"
            ),
        );
    }
    let freed = with(|s| match s.packets.get(&(clone as usize)) {
        Some(p) if p.is_clone => drop_packet(s, clone as usize).is_some(),
        _ => false,
    });
    if !freed {
        report(
            ViolationKind::DoubleFree,
            format!("FwpsFreeCloneNetBufferList0({:#x}): not a live clone", clone as usize),
        );
    }
}

/// Whether `net_buffer_list` is a live clone (for FwpsCompleteOperation0).
pub(crate) fn is_live_clone(net_buffer_list: *mut c_void) -> bool {
    with(|s| s.packets.get(&(net_buffer_list as usize)).is_some_and(|p| p.is_clone))
}

/// `FwpsInjectionHandleCreate0`.
///
/// # Safety
/// `handle` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsInjectionHandleCreate0(
    _family: u16,
    flags: u32,
    handle: *mut *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(PASSIVE_LEVEL, "FwpsInjectionHandleCreate0");
    if handle.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    if let Some(status) = crate::faults::call_should_fail("FwpsInjectionHandleCreate0") {
        return status;
    }
    let value = with(|s| {
        s.next_handle += 0x40;
        let value = 0x00AB_0000 + s.next_handle;
        s.handles.insert(value, flags);
        value
    });
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { handle.write(value as *mut c_void) };
    STATUS_SUCCESS
}

/// `FwpsInjectionHandleDestroy0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsInjectionHandleDestroy0(handle: *mut c_void) -> NTSTATUS {
    irql::require_at_most(PASSIVE_LEVEL, "FwpsInjectionHandleDestroy0");
    if let Some(status) = crate::faults::call_should_fail("FwpsInjectionHandleDestroy0") {
        return status;
    }
    if with(|s| s.handles.remove(&(handle as usize))).is_none() {
        report(ViolationKind::ApiMisuse, "FwpsInjectionHandleDestroy0 with an unknown handle");
        return STATUS_INVALID_PARAMETER;
    }
    STATUS_SUCCESS
}

/// `FwpsQueryPacketInjectionState0`.
#[unsafe(no_mangle)]
pub extern "system" fn FwpsQueryPacketInjectionState0(
    handle: *mut c_void,
    net_buffer_list: *mut c_void,
    _injection_context: *mut *mut c_void,
) -> i32 {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsQueryPacketInjectionState0");
    with(|s| match s.packets.get(&(net_buffer_list as usize)) {
        Some(p) if p.injected_by == 0 => FWPS_PACKET_NOT_INJECTED,
        Some(p) if p.injected_by == handle as usize => FWPS_PACKET_INJECTED_BY_SELF,
        Some(_) => FWPS_PACKET_INJECTED_BY_OTHER,
        None => {
            report(ViolationKind::ApiMisuse, "FwpsQueryPacketInjectionState0 on an unknown NET_BUFFER_LIST");
            FWPS_PACKET_NOT_INJECTED
        }
    })
}

/// `FWPS_INJECT_COMPLETE0`.
pub type InjectComplete =
    Option<unsafe extern "system" fn(context: *mut c_void, net_buffer_list: *mut c_void, dispatch_level: u8)>;

/// `FwpsInjectTransportReceiveAsync0`: the engine classifies the injected
/// clone at ALE_AUTH_RECV_ACCEPT again, then calls the completion function.
///
/// # Safety
/// `completion` must be safe to call with `completion_context` and the list.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "system" fn FwpsInjectTransportReceiveAsync0(
    handle: *mut c_void,
    _injection_context: *mut c_void,
    _reserved: *mut c_void,
    _flags: u32,
    family: u16,
    _compartment: u32,
    _interface_index: u32,
    _sub_interface_index: u32,
    net_buffer_list: *mut c_void,
    completion: InjectComplete,
    completion_context: *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsInjectTransportReceiveAsync0");
    if let Some(status) = crate::faults::call_should_fail("FwpsInjectTransportReceiveAsync0") {
        return status;
    }
    let Some(completion) = completion else {
        report(ViolationKind::ApiMisuse, "FwpsInjectTransportReceiveAsync0 without a completion function");
        return STATUS_INVALID_PARAMETER;
    };
    let connection = with(|s| {
        match s.handles.get(&(handle as usize)) {
            None => return Err("FwpsInjectTransportReceiveAsync0 with an unknown injection handle"),
            Some(&flags) if flags & FWPS_INJECTION_TYPE_TRANSPORT == 0 => {
                return Err(
                    "FwpsInjectTransportReceiveAsync0 with a handle not created for FWPS_INJECTION_TYPE_TRANSPORT",
                );
            }
            Some(_) => {}
        }
        let Some(packet) = s.packets.get_mut(&(net_buffer_list as usize)).filter(|p| p.is_clone) else {
            return Err("FwpsInjectTransportReceiveAsync0 of a NET_BUFFER_LIST that is not a live clone");
        };
        packet.injected_by = handle as usize;
        Ok(packet.connection.clone())
    });
    let connection = match connection {
        Ok(connection) => connection,
        Err(message) => {
            report(ViolationKind::ApiMisuse, message);
            return STATUS_INVALID_PARAMETER;
        }
    };
    if connection.protocol == 6
        && let Some(callback) = super::callout_scope::current()
    {
        // "TCP packets ... must be injected out of band": from a DPC or a
        // worker, never from inside a callout's own callback.
        report(
            ViolationKind::ApiMisuse,
            format!(
                "TCP packet injected with FwpsInjectTransportReceiveAsync0 from inside {callback}; TCP may be \
                 injected only out of band (a DPC or a worker)"
            ),
        );
    }
    let expected_family = if connection.local_address.is_ipv6() { 23 } else { 2 };
    if family != expected_family {
        report(
            ViolationKind::ApiMisuse,
            format!("injection with address family {family}, packet is {expected_family}"),
        );
    }
    let result = classify_with_packet(&connection, net_buffer_list);
    with(|s| s.reinjected.push((connection, result)));
    // SAFETY: the callout's completion function, called once with its own
    // context and the injected list, at DISPATCH_LEVEL as the stack would.
    irql::at_dispatch(|| unsafe { completion(completion_context, net_buffer_list, 1) });
    STATUS_SUCCESS
}

pub(crate) fn report_leaks() -> usize {
    let (clones, handles) = with(|s| (s.packets.values().filter(|p| p.is_clone).count(), s.handles.len()));
    if clones > 0 {
        report(ViolationKind::Leak, format!("{clones} cloned NET_BUFFER_LIST(s) never freed"));
    }
    if handles > 0 {
        report(ViolationKind::Leak, format!("{handles} injection handle(s) never destroyed"));
    }
    clones + handles
}

pub(crate) fn reset() {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State::default());
}
