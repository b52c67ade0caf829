//! Benchmark fixtures for the wfpcallout driver in the simulated kernel.
//!
//! Shared by the criterion benches (`benches/classify.rs`, time) and the
//! `wfpbench` binary (instruction counts under callgrind, throughput with
//! one and two threads, memory per context). Everything here drives the
//! driver's real `classify_fn` and `notify_fn`:
//!
//! - **driver**: `wfpcallout::callbacks::trampolines::classify_fn` called the way the
//!   engine calls it, with prebuilt incoming values, metadata, classify
//!   output and an `FWPS_FILTER2` whose `context` is the one the driver's
//!   ADD notify wrote into the engine's filter;
//! - **engine**: the whole simulated path, `engine::classify_filter`
//!   (routing, rundown counters, IRQL raise, input construction), whose
//!   difference from **driver** is the simulator's own overhead;
//! - **empty**: a classifyFn that only writes PERMIT (the floor of the
//!   loop and the call; not a correct callout);
//! - **minimal**: the minimal correct callout (checks the write right,
//!   reads `filter->context`, writes the verdict);
//! - **hash-sip / hash-fib / btree**: the same decision
//!   (`wfpcallout::filters::policy::decide_static`, else `decide_now`) with the context found on every
//!   classify in a map keyed by filter id under a native atomic
//!   reader/writer spin lock ([`native_lock`]): `std` `HashMap` with its
//!   default SipHash hasher, `HashMap` with a multiplicative (Fibonacci)
//!   hasher, and `BTreeMap`.
//!
//! The kernel state is global, so one [`World`] exists at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use core::ffi::c_void;
use fwps_types::fwp::{
    self, FWP_BYTE_BLOB, FWP_VALUE0, FWP_VALUE0_0, FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER_CONTEXT2_0,
};
use fwps_types::{
    FWPS_ACTION0, FWPS_CALLOUT_NOTIFY_ADD_FILTER, FWPS_CALLOUT_NOTIFY_DELETE_FILTER, FWPS_CLASSIFY_OUT_FLAG_ABSORB,
    FWPS_CLASSIFY_OUT0, FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS, FWPS_FIELD_ALE_AUTH_CONNECT_MAX,
    FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS, FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT, FWPS_FIELD_ALE_AUTH_IP_PROTOCOL,
    FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS, FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT, FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT,
    FWPS_FILTER2, FWPS_INCOMING_METADATA_VALUES0, FWPS_INCOMING_VALUE0, FWPS_INCOMING_VALUES0,
    FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_RIGHT_ACTION_WRITE, GUID, NTSTATUS,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::filters::filter_context::{ContextRef, FilterContext};
use wfpcallout::filters::policy::{Decision, decide_now, decide_static};
use wfpcallout::platform::log::Level;
use wfpcallout_scenario::{Harness, Layer};
use wfpcallout_simkernel::engine::{self, Connection};
use wfpcallout_simkernel::{clock, irql, pool, verifier};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

pub mod ask;
pub mod native_lock;
use native_lock::NativeRwSpinLock;

/// The classifyFn signature (`FWPS_CALLOUT_CLASSIFY_FN2` without the Option).
pub type ClassifyFn = unsafe extern "system" fn(
    *const FWPS_INCOMING_VALUES0,
    *const FWPS_INCOMING_METADATA_VALUES0,
    *mut c_void,
    *const c_void,
    *const FWPS_FILTER2,
    u64,
    *mut FWPS_CLASSIFY_OUT0,
);

/// Filter counts of the classify scaling figures.
pub const CLASSIFY_SCALES: [usize; 4] = [1, 100, 10_000, 100_000];
/// Filter counts of the notify figures.
pub const NOTIFY_SCALES: [usize; 3] = [1_000, 10_000, 100_000];
/// Filters added (then deleted) per timed notify chunk: small enough that
/// the driver's table never grows inside a chunk at any notify scale, so
/// the figure is the cost at that population.
pub const NOTIFY_CHUNK: usize = 16;
/// Classifications per IRQL raise in throughput runs (a DPC's batch).
pub const DISPATCH_BATCH: u64 = 4_096;

/// The policy paths whose classify cost is reported (one filter each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Permit (the static path).
    Permit,
    /// Block (the static path).
    Block,
    /// Audit whose policy logs nothing (the static path, counted as audited).
    Audit,
    /// Audit whose policy asks for a line per connection, with the driver's
    /// log gate closed below Info: the full path, nothing formatted.
    AuditLogGated,
    /// The same with the gate open: the line is formatted and printed
    /// (through the simulated `DbgPrintEx`).
    AuditLogged,
    /// Rate limit with a token available (the compare-and-swap path).
    RateLimitPass,
    /// Rate limit with the bucket empty (the refusal path).
    RateLimitDrop,
    /// Ask with no agent connected: the default verdict at once.
    AskNoAgent,
    /// Permit while the driver is in lookup mode (an adopted filter is
    /// alive): every classify finds its context in the table.
    Lookup,
    /// Permit at ALE_AUTH_RECV_ACCEPT_V4 (full path: our own injections
    /// are recognised there). Engine path only (the packet is the engine's).
    RecvAccept,
    /// Permit at ALE_FLOW_ESTABLISHED_V4: a new flow per classify, tracked
    /// with a flow context. Engine path only (the flow is the engine's).
    FlowEstablished,
    /// Ask with an agent connected: pended (see `ask::AskWorld`; not in
    /// [`Policy::ALL`], its figures come from their own job).
    AskAgent,
}

impl Policy {
    /// Every policy, in table order.
    pub const ALL: [Policy; 11] = [
        Policy::Permit,
        Policy::Block,
        Policy::Audit,
        Policy::AuditLogGated,
        Policy::AuditLogged,
        Policy::RateLimitPass,
        Policy::RateLimitDrop,
        Policy::AskNoAgent,
        Policy::Lookup,
        Policy::RecvAccept,
        Policy::FlowEstablished,
    ];

    /// Short name (benchmark ids, report keys).
    pub fn name(self) -> &'static str {
        match self {
            Policy::Permit => "permit",
            Policy::Block => "block",
            Policy::Audit => "audit",
            Policy::AuditLogGated => "audit-log-gated",
            Policy::AuditLogged => "audit-logged",
            Policy::RateLimitPass => "rate-limit-pass",
            Policy::RateLimitDrop => "rate-limit-drop",
            Policy::AskNoAgent => "ask-no-agent",
            Policy::Lookup => "lookup",
            Policy::RecvAccept => "recv-accept",
            Policy::FlowEstablished => "flow-established",
            Policy::AskAgent => "ask-pended",
        }
    }

    /// The layer of the policy's filter.
    pub fn layer(self) -> Layer {
        match self {
            Policy::RecvAccept => Layer::RecvAcceptV4,
            Policy::FlowEstablished => Layer::FlowV4,
            _ => Layer::ConnectV4,
        }
    }

    /// Whether the bench can call classifyFn directly with its prebuilt
    /// connect-layer inputs (the other layers need the engine's packet or
    /// flow).
    pub fn direct(self) -> bool {
        self.layer() == Layer::ConnectV4 && self != Policy::AskAgent
    }

    /// The policy blob's content.
    pub fn repr(self) -> PolicyRepr {
        let (action, log_level) = match self {
            Policy::Permit | Policy::Lookup | Policy::RecvAccept | Policy::FlowEstablished => {
                (PolicyAction::Permit, LogLevel::Off)
            }
            Policy::Block => (PolicyAction::Block, LogLevel::Off),
            Policy::Audit => (PolicyAction::Audit, LogLevel::Off),
            Policy::AuditLogGated | Policy::AuditLogged => (PolicyAction::Audit, LogLevel::Info),
            // 10 ticks per token: the clock is advanced before every batch
            // (see `World::prepare`) so the bucket never runs dry.
            Policy::RateLimitPass => {
                (PolicyAction::RateLimit { rate_per_sec: 1_000_000, burst: 1_000_000 }, LogLevel::Off)
            }
            // One token, then nothing for a second of (frozen) virtual time.
            Policy::RateLimitDrop => (PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 }, LogLevel::Off),
            Policy::AskNoAgent => {
                (PolicyAction::Ask { timeout_ms: 60_000, default_verdict: Verdict::Permit }, LogLevel::Off)
            }
            // Ten minutes: no request times out while measured.
            Policy::AskAgent => {
                (PolicyAction::Ask { timeout_ms: 600_000, default_verdict: Verdict::Block }, LogLevel::Off)
            }
        };
        PolicyRepr { action, log_level, label: Label::new("bench").unwrap() }
    }

    /// The verdict every classification under this policy must reach
    /// (CONTINUE at flow-established, where classify does not decide).
    pub fn expected_action(self) -> u32 {
        match self {
            Policy::Block | Policy::RateLimitDrop => fwp::FWP_ACTION_BLOCK,
            Policy::FlowEstablished => fwp::FWP_ACTION_CONTINUE,
            // Pended: BLOCK + ABSORB now.
            Policy::AskAgent => fwp::FWP_ACTION_BLOCK,
            _ => fwp::FWP_ACTION_PERMIT,
        }
    }
}

/// A classifyFn to measure through the same loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Only writes PERMIT: the floor of the loop and the indirect call,
    /// not a correct callout (it neither checks the write right nor reads
    /// the filter).
    Empty,
    /// The minimal correct callout: checks the write right, reads
    /// `filter->context` and writes the verdict it carries.
    Minimal,
    /// The driver's classifyFn (context from `filter->context`).
    Driver,
    /// Same decision, context from a SipHash `HashMap` under a native spin lock.
    HashSip,
    /// Same decision, context from a Fibonacci-hashed `HashMap` under a native spin lock.
    HashFib,
    /// Same decision, context from a `BTreeMap` under a native spin lock.
    BTree,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 6] =
        [Variant::Empty, Variant::Minimal, Variant::Driver, Variant::HashSip, Variant::HashFib, Variant::BTree];

    /// The floors and baselines measured beside the driver at one filter.
    pub const OTHERS: [Variant; 5] =
        [Variant::Empty, Variant::Minimal, Variant::HashSip, Variant::HashFib, Variant::BTree];

    /// Short name (benchmark ids, report keys).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Empty => "empty",
            Variant::Minimal => "minimal",
            Variant::Driver => "driver",
            Variant::HashSip => "hash-sip",
            Variant::HashFib => "hash-fib",
            Variant::BTree => "btree",
        }
    }

    /// The classifyFn.
    pub fn classify_fn(self) -> ClassifyFn {
        match self {
            Variant::Empty => empty_classify,
            Variant::Minimal => minimal_classify,
            Variant::Driver => wfpcallout::callbacks::trampolines::classify_fn,
            Variant::HashSip => hash_sip_classify,
            Variant::HashFib => hash_fib_classify,
            Variant::BTree => btree_classify,
        }
    }
}

// ---------------------------------------------------------------------------
// Baselines.

/// The floor: a classifyFn that only writes the verdict.
///
/// # Safety
/// `classify_out` must be NULL or valid and unaliased for the call.
pub unsafe extern "system" fn empty_classify(
    _in_fixed_values: *const FWPS_INCOMING_VALUES0,
    _in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    _filter: *const FWPS_FILTER2,
    _flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the caller passes NULL or a valid, unaliased classify output.
    if let Some(out) = unsafe { classify_out.as_mut() } {
        out.actionType = fwp::FWP_ACTION_PERMIT;
    }
}

/// The minimal correct callout: returns without the write right, reads the
/// verdict from `filter->context` (the driver's context word: bit 1 says
/// BLOCK) and writes it, clearing the write right on BLOCK. No counting,
/// no unload protection, no argument checks beyond NULL.
///
/// # Safety
/// `filter` and `classify_out` must be NULL or valid for the call.
pub unsafe extern "system" fn minimal_classify(
    _in_fixed_values: *const FWPS_INCOMING_VALUES0,
    _in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER2,
    _flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the caller passes NULL or a valid, unaliased classify output.
    let Some(out) = (unsafe { classify_out.as_mut() }) else { return };
    if out.rights & FWPS_RIGHT_ACTION_WRITE == 0 {
        return;
    }
    // SAFETY: the caller passes NULL or a filter valid for the call.
    let Some(filter) = (unsafe { filter.as_ref() }) else { return };
    if filter.context & 0b10 != 0 {
        out.actionType = fwp::FWP_ACTION_BLOCK;
        out.rights &= !FWPS_RIGHT_ACTION_WRITE;
    } else {
        out.actionType = fwp::FWP_ACTION_PERMIT;
    }
}

/// A hasher that multiplies the filter id by 2^64/phi (what the driver's
/// own table uses), the fastest reasonable choice for dense ids.
#[derive(Clone, Copy, Default)]
pub struct FibHasher(u64);

impl Hasher for FibHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map from filter id to context, as the locked-map baselines keep it.
pub trait ContextMap: Send {
    /// The context of `filter_id`, if any.
    fn find(&self, filter_id: u64) -> Option<&FilterContext>;
    /// Adds a reference.
    fn put(&mut self, filter_id: u64, context: ContextRef);
    /// Takes every reference out (dropped by the caller, outside the lock).
    fn take_all(&mut self) -> Vec<ContextRef>;
}

impl<S: BuildHasher + Default + Send> ContextMap for Option<HashMap<u64, ContextRef, S>> {
    #[inline]
    fn find(&self, filter_id: u64) -> Option<&FilterContext> {
        self.as_ref()?.get(&filter_id).map(|context| &**context)
    }

    fn put(&mut self, filter_id: u64, context: ContextRef) {
        self.get_or_insert_with(HashMap::default).insert(filter_id, context);
    }

    fn take_all(&mut self) -> Vec<ContextRef> {
        self.take().map(|map| map.into_values().collect()).unwrap_or_default()
    }
}

impl ContextMap for BTreeMap<u64, ContextRef> {
    #[inline]
    fn find(&self, filter_id: u64) -> Option<&FilterContext> {
        self.get(&filter_id).map(|context| &**context)
    }

    fn put(&mut self, filter_id: u64, context: ContextRef) {
        self.insert(filter_id, context);
    }

    fn take_all(&mut self) -> Vec<ContextRef> {
        core::mem::take(self).into_values().collect()
    }
}

type SipMap = Option<HashMap<u64, ContextRef>>;
type FibMap = Option<HashMap<u64, ContextRef, BuildHasherDefault<FibHasher>>>;
type OrderedMap = BTreeMap<u64, ContextRef>;

static SIP_MAP: NativeRwSpinLock<SipMap> = NativeRwSpinLock::new(None);
static FIB_MAP: NativeRwSpinLock<FibMap> = NativeRwSpinLock::new(None);
static BTREE_MAP: NativeRwSpinLock<OrderedMap> = NativeRwSpinLock::new(BTreeMap::new());

fn write_verdict(decision: Decision, clear_right: bool, out: &mut FWPS_CLASSIFY_OUT0) {
    match decision {
        Decision::Permit => {
            out.actionType = fwp::FWP_ACTION_PERMIT;
            if clear_right {
                out.rights &= !FWPS_RIGHT_ACTION_WRITE;
            }
        }
        Decision::Block => {
            out.actionType = fwp::FWP_ACTION_BLOCK;
            out.rights &= !FWPS_RIGHT_ACTION_WRITE;
        }
        Decision::Pended => {
            out.actionType = fwp::FWP_ACTION_BLOCK;
            out.flags |= FWPS_CLASSIFY_OUT_FLAG_ABSORB;
            out.rights &= !FWPS_RIGHT_ACTION_WRITE;
        }
    }
}

/// The locked-map design: the same argument checks and decision as the
/// driver, but the context is looked up by filter id under the map's
/// native spin lock (shared) on every classify; the decision runs under the lock, so
/// no reference count is touched (the cheapest form of this design).
///
/// # Safety
/// `filter` and `classify_out` must be NULL or valid for the call.
#[inline(always)]
unsafe fn locked_classify<M: ContextMap>(
    map: &NativeRwSpinLock<M>,
    filter: *const FWPS_FILTER2,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the caller passes NULL or a valid, unaliased classify output.
    let Some(out) = (unsafe { classify_out.as_mut() }) else { return };
    if out.rights & FWPS_RIGHT_ACTION_WRITE == 0 {
        return;
    }
    // SAFETY: the caller passes NULL or a filter valid for the call.
    let Some(filter) = (unsafe { filter.as_ref() }) else { return };
    let clear_right = filter.flags & FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT != 0;
    let decision = map.read().find(filter.filterId).map_or(Decision::Permit, |context| {
        decide_static(context).unwrap_or_else(|| decide_now(context).unwrap_or(Decision::Block))
    });
    write_verdict(decision, clear_right, out);
}

macro_rules! locked_classify_fn {
    ($(#[$doc:meta])* $name:ident, $map:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `filter` and `classify_out` must be NULL or valid for the call.
        pub unsafe extern "system" fn $name(
            _in_fixed_values: *const FWPS_INCOMING_VALUES0,
            _in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
            _layer_data: *mut c_void,
            _classify_context: *const c_void,
            filter: *const FWPS_FILTER2,
            _flow_context: u64,
            classify_out: *mut FWPS_CLASSIFY_OUT0,
        ) {
            // SAFETY: forwarded from the caller.
            unsafe { locked_classify(&$map, filter, classify_out) }
        }
    };
}

locked_classify_fn!(
    /// Baseline: context from a `std` `HashMap` (SipHash) under a spin lock.
    hash_sip_classify,
    SIP_MAP
);
locked_classify_fn!(
    /// Baseline: context from a Fibonacci-hashed `HashMap` under a spin lock.
    hash_fib_classify,
    FIB_MAP
);
locked_classify_fn!(
    /// Baseline: context from a `BTreeMap` under a spin lock.
    btree_classify,
    BTREE_MAP
);

fn fill_baselines(ids: &[u64]) {
    let contexts: Vec<(u64, ContextRef)> =
        ids.iter().map(|&id| (id, STATE.table.get(id).expect("the driver holds a context for every filter"))).collect();
    let mut sip = SIP_MAP.write();
    let mut fib = FIB_MAP.write();
    let mut btree = BTREE_MAP.write();
    for (id, context) in contexts {
        sip.put(id, context.clone());
        fib.put(id, context.clone());
        btree.put(id, context);
    }
}

fn clear_baselines() {
    let taken = (SIP_MAP.write().take_all(), FIB_MAP.write().take_all(), BTREE_MAP.write().take_all());
    drop(taken);
}

// ---------------------------------------------------------------------------
// Inputs and filters.

/// A filter as classify receives it; shared read-only between threads.
#[derive(Clone, Copy, Debug)]
pub struct FilterPtr(pub *const FWPS_FILTER2);

// SAFETY: the pointee lives in a `World` for as long as the pointer is used,
// and classify only reads it.
unsafe impl Send for FilterPtr {}
// SAFETY: as above.
unsafe impl Sync for FilterPtr {}

/// Incoming values and metadata for an outbound IPv4 TCP connection at
/// ALE_AUTH_CONNECT_V4, built once and reused by every classification.
pub struct Inputs {
    values: Box<FWPS_INCOMING_VALUES0>,
    _array: Box<[FWPS_INCOMING_VALUE0]>,
    metadata: Box<FWPS_INCOMING_METADATA_VALUES0>,
}

// SAFETY: the pointers inside refer to the struct's own boxes, which are
// never written after construction.
unsafe impl Sync for Inputs {}
// SAFETY: as above.
unsafe impl Send for Inputs {}

fn value(data_type: i32, anonymous: FWP_VALUE0_0) -> FWPS_INCOMING_VALUE0 {
    FWPS_INCOMING_VALUE0 { value: FWP_VALUE0 { r#type: data_type, Anonymous: anonymous } }
}

impl Inputs {
    /// The values the engine would pass for `connection` (IPv4 only).
    pub fn new(connection: &Connection) -> Self {
        let mut array: Box<[FWPS_INCOMING_VALUE0]> =
            (0..FWPS_FIELD_ALE_AUTH_CONNECT_MAX).map(|_| value(fwp::FWP_EMPTY, FWP_VALUE0_0 { uint32: 0 })).collect();
        let v4 = |address: std::net::IpAddr| match address {
            std::net::IpAddr::V4(v4) => u32::from(v4),
            std::net::IpAddr::V6(_) => 0,
        };
        array[FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS] =
            value(fwp::FWP_UINT32, FWP_VALUE0_0 { uint32: v4(connection.local_address) });
        array[FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS] =
            value(fwp::FWP_UINT32, FWP_VALUE0_0 { uint32: v4(connection.remote_address) });
        array[FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT] =
            value(fwp::FWP_UINT16, FWP_VALUE0_0 { uint16: connection.local_port });
        array[FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT] =
            value(fwp::FWP_UINT16, FWP_VALUE0_0 { uint16: connection.remote_port });
        array[FWPS_FIELD_ALE_AUTH_IP_PROTOCOL] = value(fwp::FWP_UINT8, FWP_VALUE0_0 { uint8: connection.protocol });
        array[FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS] = value(fwp::FWP_UINT32, FWP_VALUE0_0 { uint32: connection.flags });
        let values = Box::new(FWPS_INCOMING_VALUES0 {
            layerId: FWPS_LAYER_ALE_AUTH_CONNECT_V4,
            valueCount: array.len() as u32,
            incomingValue: array.as_mut_ptr(),
        });
        let mut metadata = Box::new(FWPS_INCOMING_METADATA_VALUES0::EMPTY);
        metadata.currentMetadataValues = fwp::FWPS_METADATA_FIELD_PROCESS_ID;
        metadata.processId = connection.process_id;
        Self { values, _array: array, metadata }
    }

    /// `inFixedValues`.
    pub fn values(&self) -> *const FWPS_INCOMING_VALUES0 {
        &*self.values
    }

    /// `inMetaValues`.
    pub fn metadata(&self) -> *const FWPS_INCOMING_METADATA_VALUES0 {
        &*self.metadata
    }
}

/// Calls `classify` `iters` times, walking `filters` from `cursor`, the way
/// the engine calls a classifyFn: fresh classify output with the write
/// right, the same incoming values. Returns the next cursor and the sum of
/// the verdicts (to keep the work observable).
#[inline(never)]
pub fn classify_loop(
    classify: ClassifyFn,
    inputs: &Inputs,
    filters: &[FilterPtr],
    mut cursor: usize,
    iters: u64,
) -> (usize, u32) {
    let classify = black_box(classify);
    let mut verdicts = 0u32;
    for _ in 0..iters {
        let mut out = FWPS_CLASSIFY_OUT0 { rights: FWPS_RIGHT_ACTION_WRITE, ..FWPS_CLASSIFY_OUT0::default() };
        let filter = filters[cursor].0;
        // SAFETY: the inputs and the filter live in the World for the call;
        // `out` is this frame's.
        unsafe {
            classify(inputs.values(), inputs.metadata(), core::ptr::null_mut(), core::ptr::null(), filter, 0, &mut out)
        };
        verdicts = verdicts.wrapping_add(out.actionType);
        cursor += 1;
        if cursor == filters.len() {
            cursor = 0;
        }
    }
    (cursor, verdicts)
}

/// The whole simulated path: `engine::classify_filter` (the engine's
/// routing, rundown protection, IRQL raise and input construction around
/// the driver's classifyFn), `iters` times from `cursor`.
#[inline(never)]
pub fn engine_loop(ids: &[u64], connection: &Connection, mut cursor: usize, iters: u64) -> (usize, u32) {
    let mut verdicts = 0u32;
    for _ in 0..iters {
        let result = engine::classify_filter(ids[cursor], connection).expect("the filter exists");
        verdicts = verdicts.wrapping_add(result.action);
        cursor += 1;
        if cursor == ids.len() {
            cursor = 0;
        }
    }
    (cursor, verdicts)
}

/// `iters` new flows at the connection's FLOW_ESTABLISHED layer, each
/// classified through the engine (which calls classifyFn with the flow's
/// handle); the local port moves on for each, so each is a new connection.
/// Returns the verdict sum.
#[inline(never)]
pub fn flow_loop(connection: &mut Connection, iters: u64) -> u32 {
    let mut verdicts = 0u32;
    for _ in 0..iters {
        connection.local_port = connection.local_port.checked_add(1).unwrap_or(1024);
        let (_, result) = engine::flows::establish_flow(connection);
        verdicts = verdicts.wrapping_add(result.action);
    }
    verdicts
}

// ---------------------------------------------------------------------------
// Notify.

/// notifyFn ADD for one filter (a separate symbol, so callgrind attributes
/// its cost). Returns the driver's status.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn wfpbench_notify_add(filter: &mut FWPS_FILTER2) -> NTSTATUS {
    static KEY: GUID = GUID::from_u128(0x0bec_4000_0000_4000_8000_0000_0000_0001);
    // SAFETY: the filter and its provider context live in the caller and
    // the World for the call; notify may write `context`.
    unsafe { wfpcallout::callbacks::trampolines::notify_fn(FWPS_CALLOUT_NOTIFY_ADD_FILTER, &KEY, filter) }
}

/// notifyFn DELETE for one filter (filterKey NULL, as the engine passes).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn wfpbench_notify_delete(filter: &mut FWPS_FILTER2) -> NTSTATUS {
    // SAFETY: the filter lives in the caller for the call.
    unsafe {
        wfpcallout::callbacks::trampolines::notify_fn(FWPS_CALLOUT_NOTIFY_DELETE_FILTER, core::ptr::null(), filter)
    }
}

/// `FwpmFilterAdd0` in the simulated engine (which calls notifyFn ADD).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn wfpbench_engine_add(spec: &engine::FilterSpec) -> u64 {
    engine::add_filter(spec).expect("FwpmFilterAdd0")
}

/// `FwpmFilterDeleteById0` in the simulated engine (which calls notifyFn DELETE).
#[unsafe(no_mangle)]
#[inline(never)]
pub fn wfpbench_engine_delete(filter_id: u64) {
    engine::delete_filter(filter_id).expect("FwpmFilterDeleteById0");
}

/// Adds every filter through notifyFn alone.
pub fn notify_add_all(filters: &mut [FWPS_FILTER2]) {
    for filter in filters.iter_mut() {
        let status = wfpbench_notify_add(filter);
        assert!(status >= 0, "notifyFn ADD failed: {status:#x}");
    }
}

/// Deletes every filter through notifyFn alone.
pub fn notify_delete_all(filters: &mut [FWPS_FILTER2]) {
    for filter in filters.iter_mut() {
        wfpbench_notify_delete(filter);
    }
}

/// A provider context the driver's ADD notify reads, owned here.
struct ProviderContext {
    _data: Box<[u8]>,
    _blob: Box<FWP_BYTE_BLOB>,
    context: Box<FWPM_PROVIDER_CONTEXT2>,
}

impl ProviderContext {
    fn new(policy: &PolicyRepr) -> Self {
        let mut data: Box<[u8]> = policy.to_bytes().into_boxed_slice();
        let mut blob = Box::new(FWP_BYTE_BLOB { size: data.len() as u32, data: data.as_mut_ptr() });
        let context = Box::new(FWPM_PROVIDER_CONTEXT2 {
            providerContextKey: GUID::from_u128(0x0bec_4000_0000_4000_8000_0000_0000_0002),
            r#type: fwp::FWPM_GENERAL_CONTEXT,
            Anonymous: FWPM_PROVIDER_CONTEXT2_0 { dataBuffer: &mut *blob },
            providerContextId: 1,
            ..FWPM_PROVIDER_CONTEXT2::default()
        });
        Self { _data: data, _blob: blob, context }
    }
}

// ---------------------------------------------------------------------------
// The world.

/// Pool the driver holds, by tag.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// `WfFc` (contexts): blocks, bytes.
    pub contexts: (usize, usize),
    /// `WfTb` (the filter-id table's slots): blocks, bytes.
    pub table: (usize, usize),
}

/// A booted kernel with the driver loaded and `count` filters added through
/// the simulated engine (so through the driver's notifyFn), all with one
/// policy, plus everything the measurements need.
pub struct World {
    harness: Option<Harness>,
    policy: Policy,
    ids: Vec<u64>,
    /// One allocation per filter, as the engine's records are, rather than
    /// one array (which would pack the filters into fewer cache lines).
    #[allow(clippy::vec_box)]
    _filters: Vec<Box<FWPS_FILTER2>>,
    visit: Vec<FilterPtr>,
    visit_ids: Vec<u64>,
    inputs: Inputs,
    connection: Connection,
    spec: engine::FilterSpec,
    provider: ProviderContext,
    callout_id: u32,
    next_notify_id: u64,
    cursor: usize,
}

/// A small deterministic generator (xorshift64*), for the visiting order.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let j = (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

impl World {
    /// Boots, loads the driver and adds `count` filters with `policy`.
    pub fn new(count: usize, policy: Policy) -> Self {
        Self::with_processors(wfpcallout_simkernel::irql::PROCESSOR_COUNT, count, policy)
    }

    /// [`Self::new`] on a machine whose kernel says it has `processors`
    /// processors (`KeQueryActiveProcessorCountEx`) when the filters are
    /// added: what a filter would cost on a bigger machine.
    pub fn with_processors(processors: usize, count: usize, policy: Policy) -> Self {
        let harness = Harness::load();
        wfpcallout_simkernel::irql::report_processor_count(processors);
        let layer = policy.layer();
        let mut spec = Harness::filter_spec(layer);
        spec.provider_context = Some(engine::add_provider_context(&policy.repr().to_bytes()));
        let callout_id = engine::callout_id(&layer.spec().key).expect("our callout is registered");
        let ids: Vec<u64> = (0..count).map(|_| engine::add_filter(&spec).expect("FwpmFilterAdd0")).collect();
        let filters: Vec<Box<FWPS_FILTER2>> = ids
            .iter()
            .map(|&id| {
                let context = engine::filter_context(id).expect("the filter exists");
                Box::new(FWPS_FILTER2 {
                    filterId: id,
                    weight: FWP_VALUE0 {
                        r#type: fwp::FWP_EMPTY,
                        Anonymous: FWP_VALUE0_0 { uint64: core::ptr::null_mut() },
                    },
                    subLayerWeight: 0,
                    flags: 0,
                    numFilterConditions: 0,
                    filterCondition: core::ptr::null_mut(),
                    action: FWPS_ACTION0 { r#type: fwp::FWP_ACTION_CALLOUT_TERMINATING, calloutId: callout_id },
                    context,
                    providerContext: core::ptr::null_mut(),
                })
            })
            .collect();
        let mut order: Vec<usize> = (0..count).collect();
        shuffle(&mut order, 0x5EED_0000_0000_0001 ^ count as u64);
        let visit = order.iter().map(|&i| FilterPtr(&*filters[i])).collect();
        let visit_ids = order.iter().map(|&i| ids[i]).collect();
        fill_baselines(&ids);
        match policy {
            // An adopted filter alive: classify looks every context up.
            Policy::Lookup => STATE.adopted_added(),
            Policy::AuditLogGated => wfpcallout::platform::log::set_max_level(Some(Level::Warning)),
            _ => {}
        }
        let connection = layer.connection(443);
        let inputs = Inputs::new(&connection);
        let provider = ProviderContext::new(&policy.repr());
        Self {
            harness: Some(harness),
            policy,
            ids,
            _filters: filters,
            visit,
            visit_ids,
            inputs,
            connection,
            spec,
            provider,
            callout_id,
            next_notify_id: 1 << 40,
            cursor: 0,
        }
    }

    /// The filters' policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Number of engine filters.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True with no engine filter.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The filters in visiting order (a fixed pseudo-random permutation, so
    /// that at large counts each classification touches a different filter,
    /// as traffic to many destinations would).
    pub fn filters(&self) -> &[FilterPtr] {
        &self.visit
    }

    /// The prebuilt incoming values and metadata.
    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// Refills rate-limit buckets for `iters` more classifications: moves
    /// the virtual clock forward by 10 ticks per classification, which is
    /// what the rate-limit-pass policy's bucket drains. Untimed.
    pub fn prepare(&self, iters: u64) {
        if self.policy == Policy::RateLimitPass {
            clock::advance(iters.saturating_mul(10));
        }
    }

    /// `iters` classifications with `variant`, at DISPATCH_LEVEL (one raise
    /// for the whole batch, as a DPC would). Returns the verdict sum.
    pub fn classify(&mut self, variant: Variant, iters: u64) -> u32 {
        let classify = variant.classify_fn();
        let (cursor, verdicts) =
            irql::at_dispatch(|| classify_loop(classify, &self.inputs, &self.visit, self.cursor, iters));
        self.cursor = cursor;
        verdicts
    }

    /// `iters` classifications through the whole simulated engine path (at
    /// flow-established, `iters` new flows).
    pub fn classify_engine(&mut self, iters: u64) -> u32 {
        if self.policy == Policy::FlowEstablished {
            return flow_loop(&mut self.connection, iters);
        }
        let (cursor, verdicts) = engine_loop(&self.visit_ids, &self.connection, self.cursor, iters);
        self.cursor = cursor;
        verdicts
    }

    /// One classification of a connection to `remote_port` through the
    /// whole layer, as the engine runs it (pending allowed).
    pub fn classify_layer(&self, remote_port: u16) -> engine::ClassifyResult {
        let mut connection = self.connection.clone();
        connection.remote_port = remote_port;
        engine::classify(&connection)
    }

    /// `count` filters for notify-only ADD/DELETE, with fresh ids (not known
    /// to the engine) and this world's policy as provider context.
    pub fn fresh_filters(&mut self, count: usize) -> Vec<FWPS_FILTER2> {
        (0..count)
            .map(|_| {
                self.next_notify_id += 1;
                FWPS_FILTER2 {
                    filterId: self.next_notify_id,
                    weight: FWP_VALUE0 {
                        r#type: fwp::FWP_EMPTY,
                        Anonymous: FWP_VALUE0_0 { uint64: core::ptr::null_mut() },
                    },
                    subLayerWeight: 0,
                    flags: 0,
                    numFilterConditions: 0,
                    filterCondition: core::ptr::null_mut(),
                    action: FWPS_ACTION0 { r#type: fwp::FWP_ACTION_CALLOUT_TERMINATING, calloutId: self.callout_id },
                    context: 0,
                    providerContext: core::ptr::from_ref(&*self.provider.context).cast_mut(),
                }
            })
            .collect()
    }

    /// The filter spec engine ADDs use (shared provider context).
    pub fn spec(&self) -> &engine::FilterSpec {
        &self.spec
    }

    /// `count` engine ADDs; returns the new ids.
    pub fn engine_add_all(&self, count: usize) -> Vec<u64> {
        (0..count).map(|_| wfpbench_engine_add(&self.spec)).collect()
    }

    /// Engine DELETEs.
    pub fn engine_delete_all(ids: &[u64]) {
        for &id in ids {
            wfpbench_engine_delete(id);
        }
    }

    /// The driver's pool by tag now.
    pub fn memory() -> Memory {
        let usage = pool::usage_by_tag();
        let get = |tag: &str| usage.get(tag).map_or((0, 0), |u| (u.blocks, u.bytes));
        Memory { contexts: get("WfFc"), table: get("WfTb") }
    }

    /// Deletes every filter, unloads, and fails on a leak or a verifier
    /// violation.
    pub fn finish(mut self) {
        let violations = self.teardown();
        assert!(violations.is_empty(), "simulated kernel: {violations:?}");
    }

    /// Tears down and returns what the verifier saw (read before the kernel
    /// is released, since the next world resets it).
    fn teardown(&mut self) -> Vec<String> {
        let Some(mut harness) = self.harness.take() else { return Vec::new() };
        match self.policy {
            Policy::Lookup => STATE.adopted_removed(),
            Policy::AuditLogGated => wfpcallout::platform::log::set_max_level(Some(Level::Trace)),
            _ => {}
        }
        clear_baselines();
        for &id in &self.ids {
            let _ = engine::delete_filter(id);
        }
        harness.unload();
        pool::report_leaks();
        let violations = verifier::violations().iter().map(ToString::to_string).collect();
        drop(harness);
        violations
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

// ---------------------------------------------------------------------------
// Allocation counting.

/// Heap allocations made in the process (by anyone: the simulated kernel
/// included) while [`CountingAlloc`] is the global allocator.
pub static HEAP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations.
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_reaches_the_policy_verdict() {
        for policy in [Policy::Permit, Policy::Block, Policy::RateLimitDrop] {
            let mut world = World::new(50, policy);
            let expected = policy.expected_action();
            // The drop policy lets the first classification of each filter through.
            world.classify(Variant::Driver, 50);
            // The minimal callout reads only the static verdict bits.
            let minimal = (policy != Policy::RateLimitDrop).then_some(Variant::Minimal);
            for variant in
                [Variant::Driver, Variant::HashSip, Variant::HashFib, Variant::BTree].into_iter().chain(minimal)
            {
                let sum = world.classify(variant, 100);
                assert_eq!(sum, expected.wrapping_mul(100), "{policy:?} {variant:?}");
            }
            assert_eq!(world.classify_engine(100), expected.wrapping_mul(100));
            world.finish();
        }
    }

    #[test]
    fn driver_classify_uses_the_notify_context_and_counts() {
        let mut world = World::new(10, Policy::Audit);
        world.classify(Variant::Driver, 20);
        let matched: u64 = world.ids.iter().map(|&id| STATE.table.get(id).unwrap().counters().matched).sum();
        assert_eq!(matched, 20);
        assert_eq!(STATE.stats.classify_without_context.load(Ordering::Relaxed), 0);
        world.finish();
    }

    #[test]
    fn notify_round_trip_leaves_the_table_as_it_was() {
        let mut world = World::new(20, Policy::Permit);
        let before = World::memory();
        let mut filters = world.fresh_filters(NOTIFY_CHUNK);
        notify_add_all(&mut filters);
        assert_eq!(STATE.table.len(), 20 + NOTIFY_CHUNK);
        assert!(filters.iter().all(|f| f.context != 0));
        notify_delete_all(&mut filters);
        let ids = world.engine_add_all(3);
        World::engine_delete_all(&ids);
        assert_eq!(STATE.table.len(), 20);
        assert_eq!(World::memory().contexts, before.contexts);
        world.finish();
    }
}
