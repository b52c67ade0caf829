//! Packets at ALE_AUTH_RECV_ACCEPT and their reinjection: the engine passes
//! the first packet as `layerData` (a `NET_BUFFER_LIST` positioned after
//! the transport header). A callout that pends it either clones it
//! (`FwpsAllocateCloneNetBufferList0`, after retreating to the IP header,
//! advancing back before classify returns) or deep-copies it (reads the
//! bytes with `NdisGetDataBuffer` into its own non-paged buffer, describes
//! that with an MDL and wraps it with `FwpsAllocateNetBufferAndNetBufferList0`
//! from an `NdisAllocateNetBufferListPool` pool). To permit, it completes
//! the operation with the packet and then injects that packet with
//! `FwpsInjectTransportReceiveAsync0` (CONFORMANCE.md I6): the engine
//! classifies the injected packet again (where the callout must recognise
//! its own injection) and then calls the injection's completion function, which frees it: before
//! the injection returns or later, from another thread (an injection "can
//! execute asynchronously"; each takes a reading at random, CONFORMANCE.md
//! I2), and until then the list is the stack's. When the completion comes
//! later, the packet's own travel through the stack (its classification,
//! the send or the indication) may come later too, just before the
//! completion (a second reading at random, CONFORMANCE.md I7). To deny, the
//! callout completes with NULL and frees it.
//!
//! A shallow clone references the original's buffers: the
//! `FwpsAllocateCloneNetBufferList0` remarks forbid holding one "while
//! waiting for user input ... or any other operation that might take an
//! arbitrary amount of time" (make a deep copy instead). A shallow clone
//! still alive after [`set_clone_hold_limit_ms`] (default 1 s) while a
//! pended operation of its connection waits is a reported violation.
//!
//! Modelled memory: `NET_BUFFER_LIST` (x64: `Next` at 0, `FirstNetBuffer`
//! at 8) and `NET_BUFFER` (x64: `DataLength` at 24, `MdlChain` at 32,
//! `DataOffset` at 40), whose data start the simulator moves with
//! `NdisRetreatNetBufferDataStart`/`NdisAdvanceNetBufferDataStart`. The
//! bytes are a real IP packet (`packet_data.rs`).

use super::callout_scope;
use super::reauthorization;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::engine::model::packet_data::{self, Direction};
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::*;
use std::collections::HashMap;
use std::ffi::c_void;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// `FWPS_PACKET_INJECTION_STATE` values.
pub const FWPS_PACKET_NOT_INJECTED: i32 = 0;
/// Injected by the querying handle.
pub const FWPS_PACKET_INJECTED_BY_SELF: i32 = 1;
/// Injected by someone else.
pub const FWPS_PACKET_INJECTED_BY_OTHER: i32 = 2;
/// `FWPS_INJECTION_TYPE_TRANSPORT` (fwpsk.h: STREAM 0x1, TRANSPORT 0x2,
/// NETWORK 0x4, FORWARD 0x8).
pub const FWPS_INJECTION_TYPE_TRANSPORT: u32 = 0x2;
/// `NDIS_OBJECT_TYPE_DEFAULT`: the header type of pool parameters.
pub const NDIS_OBJECT_TYPE_DEFAULT: u8 = 0x80;
/// `NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1`.
pub const NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1` (through `DataSize`).
pub const NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u16 = 16;

/// `NET_BUFFER_LIST_POOL_PARAMETERS` (revision 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetBufferListPoolParameters {
    /// `NDIS_OBJECT_HEADER.Type`.
    pub header_type: u8,
    /// `NDIS_OBJECT_HEADER.Revision`.
    pub header_revision: u8,
    /// `NDIS_OBJECT_HEADER.Size`.
    pub header_size: u16,
    /// `ProtocolId`.
    pub protocol_id: u8,
    /// `fAllocateNetBuffer`: a NET_BUFFER comes with each list.
    pub allocate_net_buffer: u8,
    /// `ContextSize`.
    pub context_size: u16,
    /// `PoolTag`.
    pub pool_tag: u32,
    /// `DataSize`: 0 for `FwpsAllocateNetBufferAndNetBufferList0`.
    pub data_size: u32,
}

/// How long a shallow clone may be held while its pended operation waits
/// (100-ns ticks).
static CLONE_HOLD_LIMIT: AtomicU64 = AtomicU64::new(DEFAULT_CLONE_HOLD_LIMIT);
const DEFAULT_CLONE_HOLD_LIMIT: u64 = 1_000 * 10_000;

/// The start of a `NET_BUFFER_LIST` (what a callout may read).
#[repr(C)]
struct NetBufferList {
    next: *mut NetBufferList,
    first_net_buffer: *mut NetBuffer,
    _rest: [u64; 8],
}

/// The start of a `NET_BUFFER` (x64 layout of its documented fields).
#[repr(C)]
struct NetBuffer {
    next: u64,
    current_mdl: u64,
    current_mdl_offset: u32,
    _pad: u32,
    /// `DataLength` (a ULONG in a union with SIZE_T `stDataLength`).
    data_length: u64,
    mdl_chain: u64,
    data_offset: u32,
    _rest: [u32; 5],
}

/// What a NET_BUFFER_LIST is and who owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The engine's packet, lent to classifyFn as layerData.
    Engine,
    /// A shallow clone (`FwpsAllocateCloneNetBufferList0`): the callout's.
    Clone,
    /// A list over the callout's own memory
    /// (`FwpsAllocateNetBufferAndNetBufferList0`): the callout's.
    Allocated { pool: usize, mdl: usize },
}

struct Packet {
    /// The connection (`None` for an allocated list until it is injected
    /// and parsed).
    connection: Option<Connection>,
    kind: Kind,
    /// The packet's bytes from its IP header (engine packets and clones).
    data: Box<[u8]>,
    /// Where the data starts in `data` (bytes from the IP header).
    offset: u32,
    /// Injection handle that injected it, or 0.
    injected_by: usize,
    /// Headers the engine says precede the data start (ip + transport).
    headers: u32,
    /// Clock when it was made.
    made_at: u64,
    /// A hold violation was reported for it already.
    hold_reported: bool,
    /// Injected and its completion function not called yet: the stack
    /// owns it, the callout must not free, complete or inject it.
    in_flight: bool,
    list: Box<NetBufferList>,
    buffer: Box<NetBuffer>,
}

impl Packet {
    /// Mirrors `offset` into the NET_BUFFER fields a callout reads.
    fn sync_buffer(&mut self) {
        if matches!(self.kind, Kind::Allocated { .. }) {
            return;
        }
        self.buffer.data_offset = self.offset;
        self.buffer.data_length = (self.data.len() as u64).saturating_sub(u64::from(self.offset));
    }
}

// SAFETY: the pointers refer to the packet's own boxes.
unsafe impl Send for Packet {}

/// A 5-tuple as the stack reads it from an inbound packet.
type FiveTuple = (u8, IpAddr, u16, IpAddr, u16);

#[derive(Default)]
struct State {
    /// By NET_BUFFER_LIST address.
    packets: HashMap<usize, Packet>,
    /// NET_BUFFER address -> NET_BUFFER_LIST address.
    buffers: HashMap<usize, usize>,
    handles: HashMap<usize, u32>,
    next_handle: usize,
    /// NET_BUFFER_LIST pools (`NdisAllocateNetBufferListPool`): address ->
    /// their parameters' tag.
    pools: HashMap<usize, Box<u64>>,
    /// Connections whose packets the engine presented inbound, by what
    /// their packets say (to recognise an injected deep copy).
    inbound: HashMap<FiveTuple, Connection>,
    /// Initial (not reauthorizing) classifications each of them got.
    presented: HashMap<FiveTuple, u32>,
    /// Reinjected classifications: (connection, result).
    reinjected: Vec<(Connection, ClassifyResult)>,
    /// Transport endpoints (sockets) the metadata named, by handle.
    endpoints: HashMap<u64, Connection>,
    /// First datagrams flushed by a completion at ALE_AUTH_CONNECT:
    /// (connection, sent again by the callout since).
    flushed: Vec<(Connection, bool)>,
    /// Datagrams sent by send injection: (connection, the classification
    /// the injected packet got if its connection was not authorized yet).
    sent: Vec<(Connection, Option<ClassifyResult>)>,
    /// Socket control data (ancillary data such as `IP_PKTINFO`) the
    /// application gives with its datagrams, by endpoint handle: the
    /// metadata's `controlData` at ALE_AUTH_CONNECT points here.
    control_data: HashMap<u64, Box<[u8]>>,
    /// The control data each sent datagram carried (`sendArgs.controlData`),
    /// in the order of `sent`.
    sent_control_data: Vec<Vec<u8>>,
    /// Injection completions not delivered yet (the injection returned).
    outstanding: Vec<Outstanding>,
    /// Completions being delivered now, by injection handle.
    delivering: HashMap<usize, usize>,
    /// Numbers the outstanding completions.
    next_outstanding: u64,
    /// A test's fixed reading of when completions run (`None`: at random).
    completion_reading: Option<InjectionCompletion>,
    /// A test's fixed reading of when a packet whose completion comes
    /// later travels the stack (`None`: at random).
    delivery_reading: Option<InjectionDelivery>,
    /// Later completions wait for `deliver_injection_completions` (or the
    /// handle's destruction) instead of another thread delivering them.
    hold_completions: bool,
    /// Operations pended at ALE_AUTH_RECV_ACCEPT and completed, with the
    /// list passed to `FwpsCompleteOperation0` (0: NULL).
    completed: Vec<CompletedWith>,
}

/// An operation pended at ALE_AUTH_RECV_ACCEPT that `FwpsCompleteOperation0`
/// completed: the list it was given is the one to inject.
struct CompletedWith {
    connection: Connection,
    /// The NET_BUFFER_LIST passed to the completion (0: NULL).
    list: usize,
}

/// An injected packet's travel through the stack: its classification by
/// the layers it passes and what follows (the datagram sent, the packet
/// indicated), recorded for the tests.
type Delivery = Box<dyn FnOnce() + Send>;

/// An injection whose completion function has not run yet.
struct Outstanding {
    id: u64,
    handle: usize,
    completion: unsafe extern "system" fn(*mut c_void, *mut c_void, u8),
    context: usize,
    list: usize,
    at_dispatch: bool,
    /// The packet's travel, when it has not happened yet (I7): it runs
    /// just before the completion, in the same context.
    delivery: Option<Delivery>,
}

/// When an injection's completion function runs. The injection functions
/// "can execute asynchronously" (DDI `nf-fwpsk-fwpsinjecttransportreceiveasync0`,
/// `nf-fwpsk-fwpsinjecttransportsendasync1`), and the completion's
/// `dispatchLevel` says whether it runs at DISPATCH_LEVEL (TRUE) or below
/// (FALSE, DDI `nc-fwpsk-fwps_inject_complete0`): which one a given
/// injection gets is not documented, so each injection takes one at random
/// unless a test fixes it ([`set_injection_completion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionCompletion {
    /// Before the injection call returns, at DISPATCH_LEVEL, `dispatchLevel` TRUE.
    Inside,
    /// After the call returned, from another thread at PASSIVE_LEVEL,
    /// `dispatchLevel` FALSE.
    LaterAtPassive,
    /// After the call returned, from another thread at DISPATCH_LEVEL,
    /// `dispatchLevel` TRUE.
    LaterAtDispatch,
}

/// When an injected packet travels the stack (is classified by the layers
/// it passes, sent or indicated) if its completion comes after the
/// injection returned: the injection "can execute asynchronously" and its
/// success means the injection "was initiated" (DDI
/// `nf-fwpsk-fwpsinjecttransportreceiveasync0`), but no page says whether
/// the injected packet is classified again before the call returns or
/// after, so each such injection takes one at random unless a test fixes it
/// ([`set_injection_delivery`]). Either way it travels before its
/// completion runs, and a completion inside the call means it travelled
/// inside the call too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectionDelivery {
    /// Before the injection call returns.
    Inside,
    /// After the call returned, just before the completion function, from
    /// the same context (the thread and IRQL that deliver the completion).
    Later,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
/// Signalled whenever a completion has been delivered.
static DELIVERED: Condvar = Condvar::new();

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// Waits, with the state lock released meanwhile, while `busy` holds.
fn wait_while(busy: impl Fn(&State) -> bool) {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    while busy(guard.get_or_insert_with(State::default)) {
        guard = DELIVERED.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

/// Fixes when the completion functions of the next injections run
/// (`None`, the default: each injection takes a reading at random).
pub fn set_injection_completion(reading: Option<InjectionCompletion>) {
    with(|s| s.completion_reading = reading);
}

/// Fixes when a packet whose completion comes later travels the stack
/// (`None`, the default: each such injection takes a reading at random).
/// A completion inside the call always has its packet delivered inside
/// the call.
pub fn set_injection_delivery(reading: Option<InjectionDelivery>) {
    with(|s| s.delivery_reading = reading);
}

/// With `on`, completions that run after the injection returned wait for
/// [`deliver_injection_completions`] (or `FwpsInjectionHandleDestroy0`)
/// instead of another thread delivering them at once: the test decides
/// when the stack is done with the packets.
pub fn hold_injection_completions(on: bool) {
    with(|s| s.hold_completions = on);
}

/// Injections whose completion function has not returned yet.
pub fn outstanding_injection_completions() -> usize {
    with(|s| s.outstanding.len() + s.delivering.values().sum::<usize>())
}

/// Injected packets that have not travelled the stack yet (their
/// completion waits too, I7).
pub fn undelivered_injected_packets() -> usize {
    with(|s| s.outstanding.iter().filter(|o| o.delivery.is_some()).count())
}

/// Delivers every completion still waiting, on this thread (at the level
/// each injection drew), each after its packet if that had not travelled
/// yet, and waits for those other threads are delivering: afterwards the
/// stack holds no injected list. How many this call delivered.
pub fn deliver_injection_completions() -> usize {
    let taken = with(|s| take_outstanding(s, |_| true));
    let count = taken.len();
    taken.into_iter().for_each(deliver);
    wait_while(|s| !s.delivering.is_empty());
    count
}

/// Takes the waiting completions `pick` selects, counted as being
/// delivered (by handle) until [`deliver`] ends.
fn take_outstanding(state: &mut State, pick: impl Fn(&Outstanding) -> bool) -> Vec<Outstanding> {
    let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.outstanding).into_iter().partition(pick);
    state.outstanding = kept;
    for item in &taken {
        *state.delivering.entry(item.handle).or_default() += 1;
    }
    taken
}

/// One completion being delivered: counted until dropped.
struct Delivering(usize);

impl Drop for Delivering {
    fn drop(&mut self) {
        with(|s| {
            if let Some(count) = s.delivering.get_mut(&self.0) {
                *count -= 1;
                if *count == 0 {
                    s.delivering.remove(&self.0);
                }
            }
        });
        DELIVERED.notify_all();
    }
}

/// Calls a completion taken with [`take_outstanding`], after the packet's
/// travel if that was left for later (at the completion's level): the list
/// is the callout's again.
fn deliver(mut item: Outstanding) {
    let _counted = Delivering(item.handle);
    if let Some(delivery) = item.delivery.take() {
        if item.at_dispatch {
            irql::at_level(DISPATCH_LEVEL, delivery);
        } else {
            delivery();
        }
    }
    with(|s| {
        if let Some(p) = s.packets.get_mut(&item.list) {
            p.in_flight = false;
        }
    });
    let call = |dispatch_level: u8| {
        // SAFETY: the callout's completion function, called once with its
        // own context and the injected list, at the level `dispatchLevel`
        // states.
        unsafe { (item.completion)(item.context as *mut c_void, item.list as *mut c_void, dispatch_level) }
    };
    if item.at_dispatch || irql::current() >= DISPATCH_LEVEL {
        irql::at_level(DISPATCH_LEVEL, || call(1));
    } else {
        call(0);
    }
}

/// Runs an accepted injection's packet travel (`delivery`) and its
/// completion: both inside the call, or the completion later from another
/// thread (or when a test or the handle's destruction delivers it), per
/// [`InjectionCompletion`], with the travel inside the call or just before
/// that later completion, per [`InjectionDelivery`].
fn complete_injection(
    handle: *mut c_void,
    completion: unsafe extern "system" fn(*mut c_void, *mut c_void, u8),
    context: *mut c_void,
    net_buffer_list: *mut c_void,
    delivery: Delivery,
) {
    let (fixed, fixed_delivery, held) = with(|s| (s.completion_reading, s.delivery_reading, s.hold_completions));
    let reading = fixed.unwrap_or_else(|| match (crate::choice::coin(), crate::choice::coin()) {
        (true, _) => InjectionCompletion::Inside,
        (false, true) => InjectionCompletion::LaterAtPassive,
        (false, false) => InjectionCompletion::LaterAtDispatch,
    });
    let list = net_buffer_list as usize;
    if reading == InjectionCompletion::Inside {
        // The completion comes after the packet travelled: inside too.
        delivery();
        with(|s| {
            if let Some(p) = s.packets.get_mut(&list) {
                p.in_flight = false;
            }
        });
        // SAFETY: the callout's completion function, called once with its
        // own context and the injected list, at DISPATCH_LEVEL as stated.
        irql::at_dispatch(|| unsafe { completion(context, net_buffer_list, 1) });
        return;
    }
    let later = fixed_delivery
        .unwrap_or_else(|| if crate::choice::coin() { InjectionDelivery::Later } else { InjectionDelivery::Inside });
    let delivery = match later {
        InjectionDelivery::Later => Some(delivery),
        InjectionDelivery::Inside => {
            delivery();
            None
        }
    };
    let id = with(|s| {
        s.next_outstanding += 1;
        let id = s.next_outstanding;
        s.outstanding.push(Outstanding {
            id,
            handle: handle as usize,
            completion,
            context: context as usize,
            list,
            at_dispatch: reading == InjectionCompletion::LaterAtDispatch,
            delivery,
        });
        id
    });
    if held {
        return;
    }
    // If no thread can be made, the completion waits for the handle's
    // destruction (or a test's delivery).
    let _ = std::thread::Builder::new().name("injection completion".into()).spawn(move || {
        with(|s| take_outstanding(s, |o| o.id == id)).into_iter().for_each(deliver);
    });
}

/// Before a boot: completions of the previous kernel's injections are
/// dropped, and those being delivered finish first.
pub(crate) fn quiesce() {
    with(|s| s.outstanding.clear());
    wait_while(|s| !s.delivering.is_empty());
}

/// The interface and sub-interface a connection's packets arrive on (and
/// leave by): varied, non-zero, the same for every classification of the
/// connection (`classify_input.rs` fills INTERFACE_INDEX and
/// SUB_INTERFACE_INDEX with them).
pub fn interfaces_of(connection: &Connection) -> (u32, u32) {
    let mut hash: u32 = 0x811C_9DC5;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    };
    mix(&[connection.protocol]);
    for address in [connection.local_address, connection.remote_address] {
        match address {
            IpAddr::V4(v4) => mix(&v4.octets()),
            IpAddr::V6(v6) => mix(&v6.octets()),
        }
    }
    mix(&connection.local_port.to_le_bytes());
    mix(&connection.remote_port.to_le_bytes());
    let interface = 2 + hash % 61;
    (interface, interface * 16 + 1 + (hash >> 16) % 15)
}

/// `FwpsCompleteOperation0` completed an operation pended for `connection`
/// with `net_buffer_list` (NULL: none). At ALE_AUTH_RECV_ACCEPT that list is
/// the one the callout may inject afterwards, and it must inject it
/// (CONFORMANCE.md I5). `FwpsCompleteOperation0` (`pending::complete_operation`)
/// calls this for every operation it completes.
pub fn completed_with(connection: &Connection, net_buffer_list: *mut c_void) {
    // Only a list the callout may pass (its own, not in flight) counts;
    // the completion reports any other.
    if !is_recv_accept(connection.layer_id) || (!net_buffer_list.is_null() && !is_callouts_packet(net_buffer_list)) {
        return;
    }
    with(|s| {
        // A NULL completion of the flow is superseded; lists are kept each.
        s.completed.retain(|c| !(same_flow(&c.connection, connection) && c.list == 0));
        s.completed.push(CompletedWith { connection: connection.clone(), list: net_buffer_list as usize });
    });
}

fn is_recv_accept(layer_id: u16) -> bool {
    matches!(layer_id, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6)
}

/// A list the callout frees: refused while an injection of it is in
/// flight (the stack owns it); one passed to `FwpsCompleteOperation0` at
/// ALE_AUTH_RECV_ACCEPT and never injected is reported. Whether to free it.
fn may_free(state: &mut State, list: usize, api: &str) -> bool {
    if state.packets.get(&list).is_some_and(|p| p.in_flight) {
        report(
            ViolationKind::ApiMisuse,
            format!(
                "{api}({list:#x}) while an injection of it is in flight: the stack owns the list until the \
                 injection's completion function is called"
            ),
        );
        return false;
    }
    if let Some(at) = state.completed.iter().position(|c| c.list == list) {
        let completed = state.completed.remove(at);
        report(
            ViolationKind::ApiMisuse,
            format!(
                "{api}({list:#x}): the list was passed to FwpsCompleteOperation0 for {}:{} at ALE_AUTH_RECV_ACCEPT \
                 and freed without being injected; a list passed there is the one to inject \
                 (FwpsInjectTransportReceiveAsync0); to deny, complete with NULL",
                completed.connection.remote_address, completed.connection.remote_port
            ),
        );
    }
    true
}

fn insert(state: &mut State, packet: Packet) -> *mut c_void {
    let address = &*packet.list as *const NetBufferList as usize;
    state.buffers.insert(&*packet.buffer as *const NetBuffer as usize, address);
    state.packets.insert(address, packet);
    address as *mut c_void
}

fn new_packet(connection: Option<Connection>, kind: Kind, data: Box<[u8]>, offset: u32, headers: u32) -> Packet {
    let mut buffer = Box::new(NetBuffer {
        next: 0,
        current_mdl: 0,
        current_mdl_offset: 0,
        _pad: 0,
        data_length: 0,
        mdl_chain: 0,
        data_offset: 0,
        _rest: [0; 5],
    });
    let list = Box::new(NetBufferList { next: std::ptr::null_mut(), first_net_buffer: &mut *buffer, _rest: [0; 8] });
    let mut packet = Packet {
        connection,
        kind,
        data,
        offset,
        injected_by: 0,
        headers,
        made_at: crate::clock::now(),
        hold_reported: false,
        in_flight: false,
        list,
        buffer,
    };
    packet.sync_buffer();
    packet
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

fn five_tuple(connection: &Connection) -> FiveTuple {
    (
        connection.protocol,
        connection.local_address,
        connection.local_port,
        connection.remote_address,
        connection.remote_port,
    )
}

/// The packet an inbound classification carries (engine-owned), positioned
/// after the transport header.
pub(crate) fn incoming(connection: &Connection) -> *mut c_void {
    let (ip, transport) = header_sizes(connection);
    let data = packet_data::build(connection, Direction::Inbound).into_boxed_slice();
    let packet = new_packet(Some(connection.clone()), Kind::Engine, data, ip + transport, ip + transport);
    with(|s| {
        s.inbound.insert(five_tuple(connection), connection.clone());
        if connection.flags & FWP_CONDITION_FLAG_IS_REAUTHORIZE == 0 {
            *s.presented.entry(five_tuple(connection)).or_default() += 1;
        }
        insert(s, packet)
    })
}

/// Ends an engine-owned packet after classify: it must be back where the
/// engine left it.
pub(crate) fn release_incoming(packet: *mut c_void) {
    if packet.is_null() {
        return;
    }
    let retreated = with(|s| drop_packet(s, packet as usize).map(|p| p.headers.saturating_sub(p.offset)));
    if let Some(retreated) = retreated.filter(|&r| r != 0) {
        report(ViolationKind::ApiMisuse, format!("layerData returned to the engine retreated by {retreated} bytes"));
    }
}

/// The first datagram of a non-TCP connection at ALE_AUTH_CONNECT (its
/// initial classification), positioned at its transport header; NULL for
/// TCP (no data yet) and for a completion's reauthorization (other
/// reauthorizations: `triggering_packet`).
pub(crate) fn first_datagram(connection: &Connection) -> *mut c_void {
    let connect = matches!(connection.layer_id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6);
    if !connect || connection.protocol == 6 || connection.flags & FWP_CONDITION_FLAG_IS_REAUTHORIZE != 0 {
        return std::ptr::null_mut();
    }
    let (ip, _) = header_sizes(connection);
    let data = packet_data::build(connection, Direction::Outbound).into_boxed_slice();
    let packet = new_packet(Some(connection.clone()), Kind::Engine, data, ip, ip);
    with(|s| insert(s, packet))
}

/// The packet that triggered a reauthorization (engine-owned), in
/// `direction`, positioned as WDD "Data offset positions" has the
/// transport layers: an outbound packet at its transport header, an
/// inbound one after it (the data). Released with [`release_incoming`].
pub(crate) fn triggering_packet(connection: &Connection, direction: Direction) -> *mut c_void {
    let (ip, transport) = header_sizes(connection);
    let offset = match direction {
        Direction::Outbound => ip,
        Direction::Inbound => ip + transport,
    };
    let data = packet_data::build(connection, direction).into_boxed_slice();
    let packet = new_packet(Some(connection.clone()), Kind::Engine, data, offset, offset);
    with(|s| insert(s, packet))
}

/// The engine's own packets lent as layerData and not yet released: 0
/// between classifications (a test's check that the engine frees what it
/// lends).
pub fn engine_packets_outstanding() -> usize {
    with(|s| s.packets.values().filter(|p| p.kind == Kind::Engine).count())
}

/// The transport endpoint handle of a connection's socket (the metadata's
/// `transportEndpointHandle` at ALE_AUTH_CONNECT).
pub(crate) fn endpoint_of(connection: &Connection) -> u64 {
    with(|s| {
        let same = |c: &Connection| {
            c.protocol == connection.protocol
                && c.local_address == connection.local_address
                && c.local_port == connection.local_port
        };
        if let Some((&handle, _)) = s.endpoints.iter().find(|(_, c)| same(c)) {
            return handle;
        }
        let handle = 0xE0D0_0000 + 0x10 * s.endpoints.len() as u64;
        s.endpoints.insert(handle, connection.clone());
        handle
    })
}

/// The application sends its datagrams on `connection`'s socket with this
/// socket control data (`WSASendMsg` ancillary data, e.g. `IP_PKTINFO`):
/// the metadata at ALE_AUTH_CONNECT carries it
/// (`FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA`), valid during classify
/// only, and a callout sending the datagram for it must pass the same
/// bytes in `sendArgs.controlData` (CONFORMANCE.md D4). Empty: none.
pub fn set_control_data(connection: &Connection, data: &[u8]) {
    let endpoint = endpoint_of(connection);
    with(|s| {
        if data.is_empty() {
            s.control_data.remove(&endpoint);
        } else {
            s.control_data.insert(endpoint, data.into());
        }
    });
}

/// The control data of the socket `endpoint`, for the metadata.
pub(crate) fn control_data_of(endpoint: u64) -> Option<(*mut c_void, u32)> {
    with(|s| s.control_data.get(&endpoint).map(|data| (data.as_ptr().cast_mut().cast(), data.len() as u32)))
}

/// The control data the datagrams sent by `FwpsInjectTransportSendAsync1`
/// carried so far (empty: none), taken.
pub fn take_sent_control_data() -> Vec<Vec<u8>> {
    with(|s| std::mem::take(&mut s.sent_control_data))
}

/// A completion at ALE_AUTH_CONNECT flushed the first datagram it pended.
pub(crate) fn datagram_flushed(connection: &Connection) {
    with(|s| s.flushed.push((connection.clone(), false)));
}

fn same_flow(a: &Connection, b: &Connection) -> bool {
    a.protocol == b.protocol
        && a.local_address == b.local_address
        && a.local_port == b.local_port
        && a.remote_address == b.remote_address
        && a.remote_port == b.remote_port
}

/// First datagrams lost: flushed by a completion whose connection was then
/// authorized, and never sent again by the callout. (Windows allows this:
/// the application retransmits. The driver promises not to lose them.)
pub fn lost_datagrams() -> Vec<Connection> {
    let flushed: Vec<Connection> =
        with(|s| s.flushed.iter().filter(|(_, sent)| !sent).map(|(c, _)| c.clone()).collect());
    flushed.into_iter().filter(reauthorization::is_live).collect()
}

/// Datagrams sent by `FwpsInjectTransportSendAsync1` so far, taken.
pub fn take_sent() -> Vec<(Connection, Option<ClassifyResult>)> {
    with(|s| std::mem::take(&mut s.sent))
}

/// A live clone of a packet of `connection`, as a callout would hold after
/// `FwpsAllocateCloneNetBufferList0` (for conformance tests whose probe
/// needs one without going through layerData). Free it with
/// `FwpsFreeCloneNetBufferList0`.
pub fn clone_for_test(connection: &Connection) -> *mut c_void {
    let (ip, transport) = header_sizes(connection);
    let data = packet_data::build(connection, Direction::Inbound).into_boxed_slice();
    with(|s| insert(s, new_packet(Some(connection.clone()), Kind::Clone, data, 0, ip + transport)))
}

/// Classifications of reinjected packets so far.
pub fn take_reinjected() -> Vec<(Connection, ClassifyResult)> {
    with(|s| std::mem::take(&mut s.reinjected))
}

/// Sets how long a shallow clone may be held while a pended operation of
/// its connection waits before it is reported (default 1 s).
pub fn set_clone_hold_limit_ms(ms: u64) {
    CLONE_HOLD_LIMIT.store(ms.saturating_mul(10_000), Ordering::Relaxed);
}

/// Reports every shallow clone held past the limit while a pended
/// operation of its connection waits (`has_pended`: the pending table's
/// answer, passed in because pending sits above packets), each clone once.
/// `pending::check_held_clones` runs it whenever the clock moves and
/// before each completion.
pub(crate) fn check_held_clones_with(has_pended: impl Fn(&Connection) -> bool) {
    let now = crate::clock::now();
    let limit = CLONE_HOLD_LIMIT.load(Ordering::Relaxed);
    let old: Vec<(usize, Connection, u64)> = with(|s| {
        s.packets
            .iter()
            .filter(|(_, p)| p.kind == Kind::Clone && !p.hold_reported && now.saturating_sub(p.made_at) > limit)
            .filter_map(|(&a, p)| Some((a, p.connection.clone()?, now.saturating_sub(p.made_at))))
            .collect()
    });
    for (address, connection, age) in old {
        if !has_pended(&connection) {
            continue;
        }
        with(|s| {
            if let Some(p) = s.packets.get_mut(&address) {
                p.hold_reported = true;
            }
        });
        report(
            ViolationKind::ApiMisuse,
            format!(
                "shallow clone {address:#x} (FwpsAllocateCloneNetBufferList0) of {}:{} held {} ms while its pended \
                 operation waits; clones must not be held while waiting for user input: make a deep copy \
                 (FwpsAllocateNetBufferAndNetBufferList0) and absorb the original",
                connection.remote_address,
                connection.remote_port,
                age / 10_000
            ),
        );
    }
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
    let result = with(|s| {
        let list = s.buffers.get(&(net_buffer as usize)).copied()?;
        let packet = s.packets.get_mut(&list)?;
        let Some(offset) = packet.offset.checked_sub(data_offset_delta) else {
            return Some(Err("NdisRetreatNetBufferDataStart before the start of the packet (no backfill modelled)"));
        };
        packet.offset = offset;
        packet.sync_buffer();
        Some(Ok(()))
    });
    match result {
        Some(Ok(())) => 0,
        Some(Err(message)) => {
            report(ViolationKind::ApiMisuse, message);
            0xC000_0001_u32 as i32
        }
        None => {
            report(ViolationKind::ApiMisuse, "NdisRetreatNetBufferDataStart on an unknown NET_BUFFER");
            0xC000_0001_u32 as i32
        }
    }
}

/// `NdisAdvanceNetBufferDataStart`.
#[unsafe(no_mangle)]
pub extern "system" fn NdisAdvanceNetBufferDataStart(
    net_buffer: *mut c_void,
    data_offset_delta: u32,
    _free_mdl: u8,
    _free: *mut c_void,
) {
    let done = with(|s| {
        let list = s.buffers.get(&(net_buffer as usize)).copied()?;
        let packet = s.packets.get_mut(&list)?;
        let offset = packet.offset.checked_add(data_offset_delta).filter(|&o| o as usize <= packet.data.len())?;
        packet.offset = offset;
        packet.sync_buffer();
        Some(())
    });
    if done.is_none() {
        report(
            ViolationKind::ApiMisuse,
            "NdisAdvanceNetBufferDataStart past the end of the data (or unknown NET_BUFFER)",
        );
    }
}

/// `NdisGetDataBuffer`: a pointer to `bytes_needed` contiguous bytes from
/// the data start, or NULL if the buffer holds fewer. Whether the data is
/// contiguous is up to NDIS: when `storage` is given, the simulator copies
/// into it and returns it or returns a pointer into the packet, chosen at
/// random, so a caller must use the returned pointer either way.
///
/// # Safety
/// `storage` must be NULL or writable for `bytes_needed` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisGetDataBuffer(
    net_buffer: *mut c_void,
    bytes_needed: u32,
    storage: *mut c_void,
    align_multiple: u32,
    _align_offset: u32,
) -> *mut c_void {
    if align_multiple == 0 || !align_multiple.is_power_of_two() {
        report(ViolationKind::ApiMisuse, format!("NdisGetDataBuffer with AlignMultiple {align_multiple}"));
    }
    let copy_to_storage = !storage.is_null() && crate::choice::coin();
    with(|s| {
        let Some(packet) = s.buffers.get(&(net_buffer as usize)).copied().and_then(|l| s.packets.get_mut(&l)) else {
            report(ViolationKind::ApiMisuse, "NdisGetDataBuffer on an unknown NET_BUFFER");
            return std::ptr::null_mut();
        };
        let start = packet.offset as usize;
        let Some(bytes) = packet.data.get(start..start.saturating_add(bytes_needed as usize)) else {
            return std::ptr::null_mut();
        };
        if copy_to_storage {
            // SAFETY: `storage` holds `bytes_needed` bytes (caller's contract);
            // `bytes` is exactly that long and does not overlap it.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), storage.cast::<u8>(), bytes.len()) };
            storage
        } else {
            packet.data.as_mut_ptr().wrapping_add(start).cast()
        }
    })
}

/// `FwpsAllocateCloneNetBufferList0`: a clone that references the
/// original's data, from wherever its data start is (a callout retreats
/// to the IP header to receive-inject it, CONFORMANCE.md C7; an outbound
/// datagram is sent from its transport header).
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
        let copy =
            new_packet(packet.connection.clone(), Kind::Clone, packet.data.clone(), packet.offset, packet.headers);
        Some(insert(s, copy))
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
        Some(p) if p.kind == Kind::Clone => {
            !may_free(s, clone as usize, "FwpsFreeCloneNetBufferList0") || drop_packet(s, clone as usize).is_some()
        }
        _ => false,
    });
    if !freed {
        report(
            ViolationKind::DoubleFree,
            format!("FwpsFreeCloneNetBufferList0({:#x}): not a live clone", clone as usize),
        );
    }
}

/// `NdisAllocateNetBufferListPool`: a pool for
/// `FwpsAllocateNetBufferAndNetBufferList0`, which needs
/// `fAllocateNetBuffer` TRUE and `DataSize` 0. NULL on failure.
///
/// # Safety
/// `parameters` must be NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn NdisAllocateNetBufferListPool(
    _ndis_handle: *mut c_void,
    parameters: *const NetBufferListPoolParameters,
) -> *mut c_void {
    irql::require_at_most(DISPATCH_LEVEL, "NdisAllocateNetBufferListPool");
    if parameters.is_null() {
        report(ViolationKind::ApiMisuse, "NdisAllocateNetBufferListPool without parameters");
        return std::ptr::null_mut();
    }
    // SAFETY: checked non-NULL; readable per the caller.
    let p = unsafe { parameters.read_unaligned() };
    if p.header_type != NDIS_OBJECT_TYPE_DEFAULT
        || p.header_revision != NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
        || p.header_size < NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
    {
        report(
            ViolationKind::ApiMisuse,
            format!(
                "NdisAllocateNetBufferListPool: header type {:#x} revision {} size {}",
                p.header_type, p.header_revision, p.header_size
            ),
        );
        return std::ptr::null_mut();
    }
    if p.allocate_net_buffer != 1 || p.data_size != 0 {
        report(
            ViolationKind::ApiMisuse,
            "NdisAllocateNetBufferListPool for FwpsAllocateNetBufferAndNetBufferList0 needs fAllocateNetBuffer TRUE \
             and DataSize 0",
        );
    }
    if p.pool_tag == 0 {
        report(ViolationKind::ApiMisuse, "NdisAllocateNetBufferListPool with PoolTag 0");
    }
    if crate::faults::allocation_should_fail() {
        return std::ptr::null_mut();
    }
    let pool = Box::new(u64::from(p.pool_tag));
    let address = &*pool as *const u64 as usize;
    with(|s| s.pools.insert(address, pool));
    address as *mut c_void
}

/// `NdisFreeNetBufferListPool`: every list from it must be freed first.
#[unsafe(no_mangle)]
pub extern "system" fn NdisFreeNetBufferListPool(pool: *mut c_void) {
    irql::require_at_most(DISPATCH_LEVEL, "NdisFreeNetBufferListPool");
    let outcome = with(|s| {
        let lists = s
            .packets
            .values()
            .filter(|p| matches!(p.kind, Kind::Allocated { pool: q, .. } if q == pool as usize))
            .count();
        (s.pools.remove(&(pool as usize)).is_some(), lists)
    });
    match outcome {
        (false, _) => report(ViolationKind::DoubleFree, "NdisFreeNetBufferListPool of a pool that is not live"),
        (true, 0) => {}
        (true, lists) => report(
            ViolationKind::ApiMisuse,
            format!("NdisFreeNetBufferListPool with {lists} NET_BUFFER_LIST(s) from it still allocated"),
        ),
    }
}

/// `FwpsAllocateNetBufferAndNetBufferList0`: a list with one NET_BUFFER
/// over `data_length` bytes of `mdl_chain` from `data_offset` (the callout's
/// own memory: a deep copy). Freed with `FwpsFreeNetBufferList0`.
///
/// # Safety
/// `net_buffer_list` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsAllocateNetBufferAndNetBufferList0(
    pool: *mut c_void,
    context_size: u16,
    context_back_fill: u16,
    mdl_chain: *mut c_void,
    data_offset: u32,
    data_length: usize,
    net_buffer_list: *mut *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsAllocateNetBufferAndNetBufferList0");
    if net_buffer_list.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let misuse = |message: String| {
        report(ViolationKind::ApiMisuse, format!("FwpsAllocateNetBufferAndNetBufferList0: {message}"));
        STATUS_INVALID_PARAMETER
    };
    if !with(|s| s.pools.contains_key(&(pool as usize))) {
        return misuse(format!("{:#x} is not a pool from NdisAllocateNetBufferListPool", pool as usize));
    }
    if !context_size.is_multiple_of(16) || !context_back_fill.is_multiple_of(16) {
        return misuse("context sizes must be multiples of MEMORY_ALLOCATION_ALIGNMENT".into());
    }
    let Some(mdl) = crate::mdl::record(mdl_chain) else {
        return misuse("mdlChain is not a live MDL".into());
    };
    if !mdl.built {
        return misuse("the MDL was not built (MmBuildMdlForNonPagedPool)".into());
    }
    if (data_offset as usize).saturating_add(data_length) > mdl.length as usize {
        return misuse(format!("{data_length} bytes from offset {data_offset} overrun the MDL's {}", mdl.length));
    }
    if crate::faults::call_should_fail("FwpsAllocateNetBufferAndNetBufferList0").is_some() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let kind = Kind::Allocated { pool: pool as usize, mdl: mdl_chain as usize };
    let mut packet = new_packet(None, kind, Box::new([]), 0, 0);
    packet.buffer.data_length = data_length as u64;
    packet.buffer.data_offset = data_offset;
    packet.buffer.mdl_chain = mdl_chain as u64;
    packet.buffer.current_mdl = mdl_chain as u64;
    packet.buffer.current_mdl_offset = data_offset;
    let address = with(|s| insert(s, packet));
    // SAFETY: checked non-NULL; writable per the caller.
    unsafe { net_buffer_list.write(address) };
    STATUS_SUCCESS
}

/// `FwpsFreeNetBufferList0`: frees a list from
/// `FwpsAllocateNetBufferAndNetBufferList0` (its MDL and memory stay the
/// callout's).
#[unsafe(no_mangle)]
pub extern "system" fn FwpsFreeNetBufferList0(net_buffer_list: *mut c_void) {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsFreeNetBufferList0");
    let freed = with(|s| match s.packets.get(&(net_buffer_list as usize)) {
        Some(p) if matches!(p.kind, Kind::Allocated { .. }) => {
            !may_free(s, net_buffer_list as usize, "FwpsFreeNetBufferList0")
                || drop_packet(s, net_buffer_list as usize).is_some()
        }
        _ => false,
    });
    if !freed {
        report(
            ViolationKind::DoubleFree,
            format!(
                "FwpsFreeNetBufferList0({:#x}): not a live list from FwpsAllocateNetBufferAndNetBufferList0",
                net_buffer_list as usize
            ),
        );
    }
}

/// Whether `net_buffer_list` is the callout's own live packet (a clone or
/// an allocated list), as `FwpsCompleteOperation0` may take: not while an
/// injection of it is in flight (the stack owns it then).
pub(crate) fn is_callouts_packet(net_buffer_list: *mut c_void) -> bool {
    with(|s| s.packets.get(&(net_buffer_list as usize)).is_some_and(|p| p.kind != Kind::Engine && !p.in_flight))
}

/// The bytes an allocated list describes, read from its MDL's memory, and
/// the connection they belong to.
fn parse_allocated(net_buffer_list: usize) -> Result<Connection, String> {
    let (mdl, offset, length) = with(|s| match s.packets.get(&net_buffer_list) {
        Some(Packet { kind: Kind::Allocated { mdl, .. }, buffer, .. }) => {
            Some((*mdl, buffer.data_offset, buffer.data_length as usize))
        }
        _ => None,
    })
    .ok_or("not an allocated list")?;
    let record = crate::mdl::record(mdl as *mut c_void).ok_or("its MDL was freed before the injection")?;
    let start = record.address.saturating_add(offset as usize);
    if crate::pool::live_range(start, length).is_none() {
        return Err("the memory its MDL describes is not live pool any more".into());
    }
    // SAFETY: `length` bytes from `start` are inside a live pool block.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, length) };
    let parsed = packet_data::parse(bytes).ok_or("its data does not start with an IPv4/IPv6 + TCP/UDP header")?;
    let tuple = (parsed.protocol, parsed.destination.0, parsed.destination.1, parsed.source.0, parsed.source.1);
    let known = with(|s| s.inbound.get(&tuple).cloned());
    let layer_id = if parsed.destination.0.is_ipv6() {
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6
    } else {
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4
    };
    Ok(known.unwrap_or(Connection {
        layer_id,
        local_address: parsed.destination.0,
        local_port: parsed.destination.1,
        remote_address: parsed.source.0,
        remote_port: parsed.source.1,
        protocol: parsed.protocol,
        process_id: 0,
        flags: 0,
        reauthorize_reason: 0,
        opposite_direction: false,
    }))
}

/// `FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC` (fwpsk.h).
pub const FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC: u32 = 0x1;
/// `FWPS_PACKET_LIST_INFORMATION_QUERY_FWP`.
pub const FWPS_PACKET_LIST_INFORMATION_QUERY_FWP: u32 = 0x2;
/// `FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND`.
pub const FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND: u32 = 0x4;
/// `FWPS_PACKET_LIST_INFORMATION_QUERY_OUTBOUND`.
pub const FWPS_PACKET_LIST_INFORMATION_QUERY_OUTBOUND: u32 = 0x8;

/// `FwpsGetPacketListSecurityInformation0`: for an inbound IPsec query,
/// sets `ipsecInformation.inbound.isSecure` (bit 0 of the structure's
/// first UINT32) when the packet's connection is IPsec-protected (its FLAGS
/// carry `FWP_CONDITION_FLAG_IS_IPSEC_SECURED`), clears it otherwise. Only
/// that word is written (tunnel mode is not modelled).
///
/// # Safety
/// `information` must be NULL or writable for a UINT32.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn FwpsGetPacketListSecurityInformation0(
    packet_list: *mut c_void,
    query_flags: u32,
    information: *mut u32,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsGetPacketListSecurityInformation0");
    if information.is_null() {
        return STATUS_FWP_NULL_POINTER;
    }
    let direction =
        query_flags & (FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND | FWPS_PACKET_LIST_INFORMATION_QUERY_OUTBOUND);
    if query_flags & FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC != 0 && direction == 0 {
        report(
            ViolationKind::ApiMisuse,
            "FwpsGetPacketListSecurityInformation0: QUERY_IPSEC must come with QUERY_INBOUND or QUERY_OUTBOUND",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let Some(connection) = with(|s| s.packets.get(&(packet_list as usize)).map(|p| p.connection.clone())) else {
        report(ViolationKind::ApiMisuse, "FwpsGetPacketListSecurityInformation0 on an unknown NET_BUFFER_LIST");
        return STATUS_INVALID_PARAMETER;
    };
    let secure = connection.is_some_and(|c| c.flags & fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED != 0);
    if query_flags & FWPS_PACKET_LIST_INFORMATION_QUERY_IPSEC != 0
        && direction == FWPS_PACKET_LIST_INFORMATION_QUERY_INBOUND
    {
        // SAFETY: checked non-NULL; writable per the caller.
        unsafe { information.write_unaligned(u32::from(secure)) };
    }
    STATUS_SUCCESS
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
    let key = handle as usize;
    if !with(|s| s.handles.contains_key(&key)) {
        report(ViolationKind::ApiMisuse, "FwpsInjectionHandleDestroy0 with an unknown handle");
        return STATUS_INVALID_PARAMETER;
    }
    // "does not return until all pending injections are completed": the
    // handle's completions still waiting are delivered here, and those
    // other threads are delivering are waited for.
    with(|s| take_outstanding(s, |o| o.handle == key)).into_iter().for_each(deliver);
    wait_while(|s| s.delivering.contains_key(&key));
    with(|s| s.handles.remove(&key));
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

/// The classification an injected packet gets from the layer above (a
/// plain function: it may run later, on another thread, I7).
pub(crate) type Classify = fn(&Connection, *mut c_void) -> ClassifyResult;

/// `FWPS_INJECT_COMPLETE0`.
pub type InjectComplete =
    Option<unsafe extern "system" fn(context: *mut c_void, net_buffer_list: *mut c_void, dispatch_level: u8)>;

/// The work of `FwpsInjectTransportReceiveAsync0` (its entry point is in
/// `api/injection.rs`): the engine classifies the injected packet (a
/// clone, or a list over the callout's copy, which the stack parses to find
/// its connection) at ALE_AUTH_RECV_ACCEPT again with `classify`, then
/// calls the completion function; the classification comes inside the call
/// or, when the completion comes later, possibly just before it (I7).
///
/// # Safety
/// `completion` must be safe to call with `completion_context` and the list.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn inject_transport_receive(
    classify: Classify,
    has_pended: impl Fn(&Connection) -> bool,
    handle: *mut c_void,
    _injection_context: *mut c_void,
    _reserved: *mut c_void,
    _flags: u32,
    family: u16,
    _compartment: u32,
    interface_index: u32,
    sub_interface_index: u32,
    net_buffer_list: *mut c_void,
    completion: InjectComplete,
    completion_context: *mut c_void,
) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "FwpsInjectTransportReceiveAsync0");
    // The list passed to FwpsCompleteOperation0 is being injected, as
    // documented (even if this call then fails, the callout tried).
    let completed_list = with(|s| {
        let at = s.completed.iter().position(|c| c.list == net_buffer_list as usize && c.list != 0);
        at.map(|at| s.completed.remove(at)).is_some()
    });
    if let Some(status) = crate::faults::call_should_fail("FwpsInjectTransportReceiveAsync0") {
        return status;
    }
    let Some(completion) = completion else {
        report(ViolationKind::ApiMisuse, "FwpsInjectTransportReceiveAsync0 without a completion function");
        return STATUS_INVALID_PARAMETER;
    };
    let checked = with(|s| {
        match s.handles.get(&(handle as usize)) {
            None => return Err("FwpsInjectTransportReceiveAsync0 with an unknown injection handle".to_string()),
            Some(&flags) if flags & FWPS_INJECTION_TYPE_TRANSPORT == 0 => {
                return Err(
                    "FwpsInjectTransportReceiveAsync0 with a handle not created for FWPS_INJECTION_TYPE_TRANSPORT"
                        .to_string(),
                );
            }
            Some(_) => {}
        }
        match s.packets.get(&(net_buffer_list as usize)) {
            Some(p) if p.in_flight => Err("FwpsInjectTransportReceiveAsync0 of a NET_BUFFER_LIST whose previous \
                                           injection has not completed (the stack owns it)"
                .to_string()),
            // "must begin with an IP header": a clone is injected from the
            // IP header, retreated to before the call.
            Some(p) if p.kind == Kind::Clone && p.offset != 0 => Err(format!(
                "FwpsInjectTransportReceiveAsync0 of a clone whose data starts {} bytes into the packet; a list \
                 injected into the receive path must begin with an IP header",
                p.offset
            )),
            Some(p) if p.kind == Kind::Clone => Ok(p.connection.clone()),
            Some(p) if matches!(p.kind, Kind::Allocated { .. }) => Ok(None),
            _ => Err("FwpsInjectTransportReceiveAsync0 of a NET_BUFFER_LIST that is not the callout's own live \
                      packet (a clone or an allocated list)"
                .to_string()),
        }
    });
    let connection = match checked {
        Ok(Some(connection)) => Ok(connection),
        Ok(None) => parse_allocated(net_buffer_list as usize)
            .map_err(|why| format!("FwpsInjectTransportReceiveAsync0 of an allocated list: {why}")),
        Err(message) => Err(message),
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(message) => {
            report(ViolationKind::ApiMisuse, message);
            return STATUS_INVALID_PARAMETER;
        }
    };
    let presented = with(|s| {
        if let Some(p) = s.packets.get_mut(&(net_buffer_list as usize)) {
            p.injected_by = handle as usize;
            p.connection = Some(connection.clone());
            p.in_flight = true;
        }
        s.inbound.contains_key(&five_tuple(&connection))
    });
    let expected = interfaces_of(&connection);
    if presented && (interface_index, sub_interface_index) != expected {
        // "should use the value of the interface index that is passed as
        // one of the incoming data values to its classifyFn".
        report(
            ViolationKind::ApiMisuse,
            format!(
                "FwpsInjectTransportReceiveAsync0 of a packet of {}:{} on interface {interface_index} / \
                 sub-interface {sub_interface_index}; its classification at ALE_AUTH_RECV_ACCEPT carried \
                 INTERFACE_INDEX {} and SUB_INTERFACE_INDEX {}",
                connection.remote_address, connection.remote_port, expected.0, expected.1
            ),
        );
    }
    if is_recv_accept(connection.layer_id) {
        check_completed_before_injection(&connection, completed_list, &has_pended);
    }
    if connection.protocol == 6
        && let Some(callback) = callout_scope::current()
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
    if connection.flags & fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED != 0 {
        // The AH/ESP header stays in the decrypted packet: "such packets
        // cannot be recv-injected back w/o removing the AH/ESP header"
        // (inspect sample). The simulator does not model rebuilding it
        // (FwpsConstructIpHeaderForTransportPacket0), so any such
        // injection is reported.
        report(
            ViolationKind::ApiMisuse,
            format!(
                "IPsec-protected inbound packet of {}:{} injected as-is with FwpsInjectTransportReceiveAsync0; it \
                 cannot be receive-injected without removing its AH/ESP header",
                connection.remote_address, connection.remote_port
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
    let list = net_buffer_list as usize;
    let delivery = Box::new(move || {
        let result = classify(&connection, list as *mut c_void);
        with(|s| s.reinjected.push((connection, result)));
    });
    complete_injection(handle, completion, completion_context, net_buffer_list, delivery);
    STATUS_SUCCESS
}

/// For a connection pended at ALE_AUTH_RECV_ACCEPT, receive injection
/// "should be called ... after [the] pended ALE operation ... has
/// completed with a call to FwpsCompleteOperation0", and "A net buffer
/// list to be injected must be passed to FwpsCompleteOperation0"
/// (`completed_list`: this list was).
fn check_completed_before_injection(
    connection: &Connection,
    completed_list: bool,
    has_pended: &impl Fn(&Connection) -> bool,
) {
    let peer = format!("{}:{}", connection.remote_address, connection.remote_port);
    if completed_list {
        return;
    }
    // A connection presented more than once (a test classifying one
    // 5-tuple twice) may have one operation completed and another pended:
    // which operation this list belongs to is then unknown, so only the
    // list-based checks below apply.
    let presented_once = with(|s| s.presented.get(&five_tuple(connection)).is_none_or(|&n| n <= 1));
    if !presented_once {
        return;
    }
    if has_pended(connection) {
        report(
            ViolationKind::ApiMisuse,
            format!(
                "FwpsInjectTransportReceiveAsync0 of a packet of {peer}, whose operation pended at \
                 ALE_AUTH_RECV_ACCEPT is not completed yet: inject after FwpsCompleteOperation0"
            ),
        );
        return;
    }
    // A NULL completion is reported once; a list passed to the completion
    // stays the one to inject (and freeing it uninjected is reported).
    let other = with(|s| {
        let at = s.completed.iter().position(|c| same_flow(&c.connection, connection))?;
        let list = s.completed[at].list;
        if list == 0 {
            s.completed.remove(at);
        }
        Some(list)
    });
    match other {
        None => {}
        Some(0) => report(
            ViolationKind::ApiMisuse,
            format!(
                "FwpsInjectTransportReceiveAsync0 of a packet of {peer}, whose pended operation was completed with \
                 NULL: a net buffer list to be injected must be passed to FwpsCompleteOperation0"
            ),
        ),
        Some(list) => report(
            ViolationKind::ApiMisuse,
            format!(
                "FwpsInjectTransportReceiveAsync0 of a packet of {peer} that is not the list {list:#x} passed to \
                 FwpsCompleteOperation0: a net buffer list to be injected must be passed to FwpsCompleteOperation0"
            ),
        ),
    }
}

/// `FWPS_TRANSPORT_SEND_PARAMS1` (x64 layout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TransportSendParams1 {
    /// The remote address, network order (4 or 16 bytes).
    pub remote_address: *const u8,
    /// `SCOPE_ID` of the remote address.
    pub remote_scope_id: u32,
    /// Ancillary data (`WSACMSGHDR`), NULL for none.
    pub control_data: *const c_void,
    /// Its length.
    pub control_data_length: u32,
    /// Header-include header, NULL for none.
    pub header_include_header: *const c_void,
    /// Its length.
    pub header_include_header_length: u32,
}

/// The bytes a callout's own list describes (a clone from its data start,
/// an allocated list from its MDL), copied out.
fn callouts_bytes(net_buffer_list: usize) -> Result<Vec<u8>, String> {
    let found = with(|s| match s.packets.get(&net_buffer_list) {
        Some(p) if p.kind == Kind::Clone => Some(Ok(p.data.get(p.offset as usize..).unwrap_or(&[]).to_vec())),
        Some(Packet { kind: Kind::Allocated { mdl, .. }, buffer, .. }) => {
            Some(Err((*mdl, buffer.data_offset, buffer.data_length as usize)))
        }
        _ => None,
    });
    match found {
        None => Err("not the callout's own live packet (a clone or an allocated list)".into()),
        Some(Ok(bytes)) => Ok(bytes),
        Some(Err((mdl, offset, length))) => {
            let record = crate::mdl::record(mdl as *mut c_void).ok_or("its MDL was freed before the injection")?;
            let start = record.address.saturating_add(offset as usize);
            if crate::pool::live_range(start, length).is_none() {
                return Err("the memory its MDL describes is not live pool any more".into());
            }
            // SAFETY: `length` bytes from `start` are inside a live pool block.
            Ok(unsafe { std::slice::from_raw_parts(start as *const u8, length) }.to_vec())
        }
    }
}

/// The work of `FwpsInjectTransportSendAsync1` (its entry point is in
/// `api/injection.rs`): sends a datagram of the socket `endpoint_handle`
/// (the list starts at its transport header; `send_args` names the remote
/// address). A connection already authorized sends it at once; otherwise
/// the engine classifies it at ALE_AUTH_CONNECT first with `classify` (the
/// injector must recognise its own packet there). Then the completion runs.
/// When the completion comes after the call returned, the datagram may
/// travel then too, just before it (I7).
///
/// # Safety
/// `send_args` must be NULL or readable (with its remote address);
/// `completion` must be safe to call with `completion_context` and the list.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn inject_transport_send(
    classify: Classify,
    handle: *mut c_void,
    _injection_context: *mut c_void,
    endpoint_handle: u64,
    flags: u32,
    send_args: *const TransportSendParams1,
    family: u16,
    _compartment: u32,
    net_buffer_list: *mut c_void,
    completion: InjectComplete,
    completion_context: *mut c_void,
) -> NTSTATUS {
    const API: &str = "FwpsInjectTransportSendAsync1";
    irql::require_at_most(DISPATCH_LEVEL, API);
    if let Some(status) = crate::faults::call_should_fail(API) {
        return status;
    }
    let misuse = |message: String| {
        report(ViolationKind::ApiMisuse, format!("{API}: {message}"));
        STATUS_INVALID_PARAMETER
    };
    let Some(completion) = completion else { return misuse("no completion function".into()) };
    if flags != 0 {
        return misuse(format!("flags {flags:#x} (reserved, zero)"));
    }
    let (handle_flags, endpoint) =
        with(|s| (s.handles.get(&(handle as usize)).copied(), s.endpoints.get(&endpoint_handle).cloned()));
    match handle_flags {
        None => return misuse("unknown injection handle".into()),
        Some(f) if f & FWPS_INJECTION_TYPE_TRANSPORT == 0 => {
            return misuse("handle not created for FWPS_INJECTION_TYPE_TRANSPORT".into());
        }
        Some(_) => {}
    }
    let Some(endpoint) = endpoint else {
        return misuse(format!("endpoint handle {endpoint_handle:#x} is no socket the metadata named"));
    };
    if send_args.is_null() {
        return misuse("no sendArgs: the list has no IP header, so the remote address must be given".into());
    }
    // SAFETY: checked non-NULL; readable per the caller.
    let args = unsafe { send_args.read_unaligned() };
    let v6 = endpoint.local_address.is_ipv6();
    let address_len = if v6 { 16 } else { 4 };
    if args.remote_address.is_null() {
        return misuse("sendArgs without a remote address".into());
    }
    // SAFETY: the caller's remote address, 4 or 16 bytes for its family.
    let address = unsafe { std::slice::from_raw_parts(args.remote_address, address_len) };
    let remote = if v6 {
        IpAddr::from(<[u8; 16]>::try_from(address).unwrap_or([0; 16]))
    } else {
        IpAddr::from(<[u8; 4]>::try_from(address).unwrap_or([0; 4]))
    };
    if family != if v6 { 23 } else { 2 } {
        return misuse(format!("address family {family} for an IPv{} socket", if v6 { 6 } else { 4 }));
    }
    if with(|s| s.packets.get(&(net_buffer_list as usize)).is_some_and(|p| p.in_flight)) {
        return misuse("the list's previous injection has not completed (the stack owns it)".into());
    }
    let bytes = match callouts_bytes(net_buffer_list as usize) {
        Ok(bytes) => bytes,
        Err(why) => return misuse(why),
    };
    let Some((source_port, remote_port)) = packet_data::transport_ports(&bytes, endpoint.protocol) else {
        return misuse("the list does not start with a whole transport header".into());
    };
    if source_port != endpoint.local_port {
        return misuse(format!("the datagram's source port {source_port} is not its socket's {}", endpoint.local_port));
    }
    let control_data = match checked_control_data(endpoint_handle, &args) {
        Ok(data) => data,
        Err(why) => {
            // The send itself goes through (Windows sends it without the
            // ancillary data), but the application's intent is lost.
            report(ViolationKind::ApiMisuse, format!("{API}: {why}"));
            Vec::new()
        }
    };
    let layer_id = if v6 { FWPS_LAYER_ALE_AUTH_CONNECT_V6 } else { FWPS_LAYER_ALE_AUTH_CONNECT_V4 };
    let connection =
        Connection { layer_id, remote_address: remote, remote_port, flags: 0, reauthorize_reason: 0, ..endpoint };
    with(|s| {
        if let Some(p) = s.packets.get_mut(&(net_buffer_list as usize)) {
            p.injected_by = handle as usize;
            p.in_flight = true;
        }
    });
    let list = net_buffer_list as usize;
    let delivery = Box::new(move || {
        // Whether the connection is authorized yet is the stack's question
        // when the datagram reaches ALE_AUTH_CONNECT, which may be after
        // the call returned (I7).
        let classified = (!reauthorization::is_live(&connection)).then(|| classify(&connection, list as *mut c_void));
        let delivered = classified.is_none_or(|result| result.permitted());
        with(|s| {
            if delivered && let Some(entry) = s.flushed.iter_mut().find(|(c, sent)| !sent && same_flow(c, &connection))
            {
                entry.1 = true;
            }
            if delivered {
                s.sent.push((connection.clone(), classified));
                s.sent_control_data.push(control_data);
            }
        });
    });
    complete_injection(handle, completion, completion_context, net_buffer_list, delivery);
    STATUS_SUCCESS
}

/// The control data a send passes, checked against what the socket's
/// datagram carried at classify: the same bytes, in the callout's own copy
/// (classify's `controlData` is valid only during classifyFn).
fn checked_control_data(endpoint: u64, args: &TransportSendParams1) -> Result<Vec<u8>, String> {
    let expected = with(|s| s.control_data.get(&endpoint).map(|d| (d.as_ptr() as usize, d.to_vec())));
    let given = if args.control_data.is_null() || args.control_data_length == 0 {
        None
    } else {
        let (start, len) = (args.control_data as usize, args.control_data_length as usize);
        // Only memory the driver owns (live pool) or the engine's own buffer
        // is read; anything else is reported, not dereferenced.
        let engine_buffer = expected.as_ref().is_some_and(|(at, _)| *at == start);
        if !engine_buffer && crate::pool::live_range(start, len).is_none() {
            return Err(format!("sendArgs.controlData ({len} bytes at {start:#x}) is not live pool"));
        }
        // SAFETY: `len` bytes from `start` are live pool or the engine's
        // control-data buffer (checked above).
        Some((start, unsafe { std::slice::from_raw_parts(start as *const u8, len) }.to_vec()))
    };
    match (expected, given) {
        (None, None) => Ok(Vec::new()),
        (None, Some((_, bytes))) => Ok(bytes),
        (Some((_, bytes)), None) => Err(format!(
            "the datagram carried {} bytes of socket control data at classify (FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA) \
             and the send passes none in sendArgs.controlData: its ancillary data (e.g. IP_PKTINFO) is lost",
            bytes.len()
        )),
        (Some((at, _)), Some((start, _))) if at == start => {
            Err("sendArgs.controlData points at classify's metadata buffer, valid only during classifyFn: send a copy"
                .to_string())
        }
        (Some((_, expected)), Some((_, given))) if expected != given => Err(format!(
            "sendArgs.controlData ({} bytes) differs from the control data the datagram carried at classify ({} bytes)",
            given.len(),
            expected.len()
        )),
        (Some(_), Some((_, given))) => Ok(given),
    }
}

pub(crate) fn report_leaks() -> usize {
    let (clones, allocated, pools, handles) = with(|s| {
        let count = |test: fn(&Kind) -> bool| s.packets.values().filter(|p| test(&p.kind)).count();
        (count(|k| *k == Kind::Clone), count(|k| matches!(k, Kind::Allocated { .. })), s.pools.len(), s.handles.len())
    });
    if clones > 0 {
        report(ViolationKind::Leak, format!("{clones} cloned NET_BUFFER_LIST(s) never freed"));
    }
    if allocated > 0 {
        report(ViolationKind::Leak, format!("{allocated} allocated NET_BUFFER_LIST(s) never freed"));
    }
    if pools > 0 {
        report(ViolationKind::Leak, format!("{pools} NET_BUFFER_LIST pool(s) never freed"));
    }
    if handles > 0 {
        report(ViolationKind::Leak, format!("{handles} injection handle(s) never destroyed"));
    }
    clones + allocated + pools + handles
}

pub(crate) fn reset() {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State::default());
    CLONE_HOLD_LIMIT.store(DEFAULT_CLONE_HOLD_LIMIT, Ordering::Relaxed);
}
