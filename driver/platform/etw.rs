//! Events without a debugger: a TraceLogging ETW provider.
//!
//! `DbgPrintEx` (see `log`) needs a kernel debugger or DbgView to be seen;
//! these events can be recorded on any test VM with `wpr`, `tracelog` or
//! `logman` and read in WPA or `tracefmt` (docs/ETW.md has the recipe).
//!
//! The provider is named [`PROVIDER_NAME`] and its GUID is the
//! TraceLogging/EventSource hash of that name, so a session can enable it
//! as `*wfpcallout`. Events are self-describing (TraceLogging): each write
//! carries the provider traits and the event's metadata (its name and each
//! field's name and type), all built at compile time; ETW needs no manifest.
//!
//! Cost: with no session listening, an event costs one
//! `EtwProviderEnabled` call and builds nothing. Every event function may
//! be called at up to DISPATCH_LEVEL: `EtwWriteTransfer` may be called at
//! any IRQL and everything it reads is static or on the caller's stack.
//! [`register`] and [`unregister`] run at PASSIVE_LEVEL, in load and
//! unload, when no callback can be writing.
//!
//! Its events take plain values (it sits in the platform layer, below the
//! requests and connections it describes); it owns no state but the
//! registration.
#![forbid(unsafe_code)]

use crate::platform::kernel::{
    EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA, EVENT_DATA_DESCRIPTOR_TYPE_NONE,
    EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA, EVENT_DESCRIPTOR, EtwRegistration, EventData, EventScalar, GUID,
};
use crate::platform::log::Level;
use crate::platform::status::NtStatus;
use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr, Verdict};

/// The provider's name, as sessions and WPA show it.
pub const PROVIDER_NAME: &str = "wfpcallout";

/// {C1CEAD91-0AFD-5555-C4A6-C3A052D30BC0}: the TraceLogging name hash of
/// [`PROVIDER_NAME`] (SHA-1 over the EventSource namespace and the
/// upper-cased name in UTF-16BE, version nibble 5), which is what
/// `tracelog -guid *wfpcallout` and `wpr`'s `Name="*wfpcallout"` compute.
/// A test recomputes it from the name.
pub const PROVIDER_GUID: GUID = GUID::from_u128(0xc1cead91_0afd_5555_c4a6_c3a052d30bc0);

/// `EVENT_DESCRIPTOR.Channel` of TraceLogging events (decoders expect 11).
pub const CHANNEL_TRACELOGGING: u8 = 11;

/// ETW levels (`TRACE_LEVEL_*`).
pub mod level {
    /// Something failed.
    pub const ERROR: u8 = 2;
    /// Something was refused or is off.
    pub const WARNING: u8 = 3;
    /// Lifecycle and asynchronous verdicts.
    pub const INFORMATION: u8 = 4;
    /// Per-connection verdicts.
    pub const VERBOSE: u8 = 5;
}

/// Keywords, so a session can pick one kind of event.
pub mod keyword {
    /// `Verdict` events (audit and trace-level policies).
    pub const VERDICTS: u64 = 0x1;
    /// `Pended` and `Completed`: the asynchronous (ask) path.
    pub const ASKS: u64 = 0x2;
    /// `FilterVetoed`: filters notifyFn refused.
    pub const FILTERS: u64 = 0x4;
    /// `Loaded`, `Unloaded`, `Error`.
    pub const LIFECYCLE: u64 = 0x8;
}

/// TraceLogging field input types (TraceLoggingProvider.h's `TlgIn*`).
pub mod in_type {
    /// `UINT8`.
    pub const U8: u8 = 4;
    /// `UINT16`.
    pub const U16: u8 = 6;
    /// `UINT32`.
    pub const U32: u8 = 8;
    /// `UINT64`.
    pub const U64: u8 = 10;
    /// A counted 8-bit string: `UINT16` byte count, then the bytes.
    pub const COUNTED_STR8: u8 = 23;
    /// Set on the in-type byte when an out-type byte follows.
    pub const CHAIN: u8 = 0x80;
}

/// TraceLogging field output types (`TlgOut*`): how a viewer shows a value.
pub mod out_type {
    /// None: the in-type's default.
    pub const DEFAULT: u8 = 0;
    /// A `UINT16` port in network byte order.
    pub const PORT: u8 = 7;
    /// A `UINT32` shown as an NTSTATUS (with its name in WPA).
    pub const NTSTATUS: u8 = 14;
    /// A string in UTF-8.
    pub const UTF8: u8 = 35;
}

/// One field of an event's metadata.
#[derive(Clone, Copy)]
pub struct Field {
    name: &'static str,
    in_type: u8,
    out_type: u8,
}

impl Field {
    /// A field named `name` of TraceLogging type `in_type`, shown as
    /// `out_type` (`out_type::DEFAULT` for none).
    pub const fn new(name: &'static str, in_type: u8, out_type: u8) -> Self {
        Field { name, in_type, out_type }
    }
}

/// Bytes of an event's TraceLogging metadata: `u16` size, one tag byte
/// (0), the NUL-terminated name, then per field its NUL-terminated name,
/// its in-type (with the chain bit if an out-type follows) and out-type.
// Compile-time only (every caller is a const item): an index out of
// range fails the build, it cannot panic in the kernel.
#[allow(clippy::indexing_slicing)]
pub const fn metadata_len(name: &str, fields: &[Field]) -> usize {
    let mut len = 2 + 1 + name.len() + 1;
    let mut index = 0;
    while index < fields.len() {
        let field = &fields[index];
        len += field.name.len() + 1 + 1;
        if field.out_type != out_type::DEFAULT {
            len += 1;
        }
        index += 1;
    }
    len
}

/// Copies `text` and a NUL into `out` at `at`; returns the next position.
// Compile-time only (every caller is a const item): an index out of
// range fails the build, it cannot panic in the kernel.
#[allow(clippy::indexing_slicing)]
const fn put_str<const N: usize>(out: &mut [u8; N], at: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        out[at + index] = bytes[index];
        index += 1;
    }
    out[at + bytes.len()] = 0;
    at + bytes.len() + 1
}

/// The event metadata blob, built at compile time (`N` must be
/// [`metadata_len`]; anything else fails the build).
// Compile-time only (every caller is a const item): an index out of
// range fails the build, it cannot panic in the kernel.
#[allow(clippy::indexing_slicing)]
pub const fn metadata<const N: usize>(name: &str, fields: &[Field]) -> [u8; N] {
    assert!(N == metadata_len(name, fields) && N <= u16::MAX as usize, "metadata size");
    let mut out = [0u8; N];
    let size = (N as u16).to_le_bytes();
    out[0] = size[0];
    out[1] = size[1];
    out[2] = 0; // tags: none, no continuation
    let mut at = put_str(&mut out, 3, name);
    let mut index = 0;
    while index < fields.len() {
        let field = &fields[index];
        at = put_str(&mut out, at, field.name);
        if field.out_type == out_type::DEFAULT {
            out[at] = field.in_type;
            at += 1;
        } else {
            out[at] = field.in_type | in_type::CHAIN;
            out[at + 1] = field.out_type;
            at += 2;
        }
        index += 1;
    }
    assert!(at == N, "metadata size");
    out
}

const TRAITS_LEN: usize = 2 + PROVIDER_NAME.len() + 1;

/// The provider traits blob: `u16` size, the NUL-terminated name. Given to
/// `EtwSetInformation(EventProviderSetTraits)` and sent with every event.
#[allow(clippy::indexing_slicing)] // compile-time: a bad index fails the build
pub const PROVIDER_TRAITS: [u8; TRAITS_LEN] = {
    let mut out = [0u8; TRAITS_LEN];
    let size = (TRAITS_LEN as u16).to_le_bytes();
    out[0] = size[0];
    out[1] = size[1];
    put_str(&mut out, 2, PROVIDER_NAME);
    out
};

/// An event: its metadata and what a session filters it by.
pub struct Event {
    /// The TraceLogging metadata (name and fields).
    pub metadata: &'static [u8],
    /// The ETW level.
    pub level: u8,
    /// The keyword bits.
    pub keyword: u64,
}

/// Declares an event's metadata and [`Event`] from its name and fields.
macro_rules! event {
    ($(#[$doc:meta])* $event:ident, $name:literal, $level:expr, $keyword:expr, [$($field:expr),* $(,)?]) => {
        $(#[$doc])*
        pub const $event: Event = {
            const FIELDS: &[Field] = &[$($field),*];
            const METADATA: [u8; metadata_len($name, FIELDS)] = metadata($name, FIELDS);
            Event { metadata: &METADATA, level: $level, keyword: $keyword }
        };
    };
}

const fn u8_field(name: &'static str) -> Field {
    Field::new(name, in_type::U8, out_type::DEFAULT)
}
const fn u16_field(name: &'static str) -> Field {
    Field::new(name, in_type::U16, out_type::DEFAULT)
}
const fn u32_field(name: &'static str) -> Field {
    Field::new(name, in_type::U32, out_type::DEFAULT)
}
const fn u64_field(name: &'static str) -> Field {
    Field::new(name, in_type::U64, out_type::DEFAULT)
}
const fn text_field(name: &'static str) -> Field {
    Field::new(name, in_type::COUNTED_STR8, out_type::UTF8)
}
const fn status_field(name: &'static str) -> Field {
    Field::new(name, in_type::U32, out_type::NTSTATUS)
}
const fn port_field(name: &'static str) -> Field {
    Field::new(name, in_type::U16, out_type::PORT)
}

event!(
    /// The driver loaded: callouts registered, filters adopted.
    LOADED, "Loaded", level::INFORMATION, keyword::LIFECYCLE,
    [u32_field("CalloutsRegistered"), u32_field("FiltersAdopted")]
);
event!(
    /// The driver unloaded (the last event before the provider goes).
    UNLOADED, "Unloaded", level::INFORMATION, keyword::LIFECYCLE,
    [u32_field("RequestsCompleted")]
);
event!(
    /// A verdict of an audit policy or of a trace-level policy.
    VERDICT, "Verdict", level::VERBOSE, keyword::VERDICTS,
    [u64_field("FilterId"), u16_field("LayerId"), text_field("Action"), text_field("Policy"), text_field("Label")]
);
event!(
    /// A classification pended for the agent.
    PENDED, "Pended", level::INFORMATION, keyword::ASKS,
    [
        u64_field("RequestId"),
        u64_field("FilterId"),
        text_field("Direction"),
        u8_field("Protocol"),
        port_field("LocalPort"),
        port_field("RemotePort"),
        text_field("Label"),
    ]
);
event!(
    /// A pended classification completed.
    COMPLETED, "Completed", level::INFORMATION, keyword::ASKS,
    [
        u64_field("RequestId"),
        u64_field("FilterId"),
        u8_field("Protocol"),
        port_field("LocalPort"),
        port_field("RemotePort"),
        text_field("Verdict"),
        text_field("Why"),
    ]
);
event!(
    /// notifyFn refused a filter; the client's `FwpmFilterAdd0` got `Status`.
    FILTER_VETOED, "FilterVetoed", level::WARNING, keyword::FILTERS,
    [u64_field("FilterId"), status_field("Status")]
);
event!(
    /// Something failed (what, and its NTSTATUS).
    ERROR, "Error", level::ERROR, keyword::LIFECYCLE,
    [text_field("What"), status_field("Status")]
);

/// The provider's registration (none while the driver is not loaded):
/// registered and unregistered at PASSIVE_LEVEL in load and unload, while
/// no callback of ours runs (`EtwRegistration`'s invariant).
static REGISTRATION: EtwRegistration = EtwRegistration::new();

/// Registers the provider and sets its TraceLogging traits. A failure is
/// logged and otherwise ignored: the driver works without events.
/// PASSIVE_LEVEL, from load, before anything that may write an event.
pub fn register() {
    if REGISTRATION.is_registered() {
        return;
    }
    if let Err(status) = NtStatus::to_result(REGISTRATION.register(&PROVIDER_GUID)) {
        crate::log!(Level::Warning, "EtwRegister failed ({}): no ETW events", status);
        return;
    }
    if let Err(status) = NtStatus::to_result(REGISTRATION.set_traits(&PROVIDER_TRAITS)) {
        // Events still carry the traits in each write; only the provider's
        // name in the session's registration record is missing.
        crate::log!(Level::Warning, "EtwSetInformation(traits) failed: {}", status);
    }
}

/// Unregisters the provider. PASSIVE_LEVEL, last in unload (and on a
/// failed load), when nothing can write an event any more.
pub fn unregister() {
    if let Some(Err(status)) = REGISTRATION.unregister().map(NtStatus::to_result) {
        crate::log!(Level::Warning, "EtwUnregister failed: {}", status);
    }
}

/// Whether a session wants `event`; nothing else is read or built when it
/// does not.
#[inline]
fn enabled(event: &Event) -> bool {
    REGISTRATION.enabled(event.level, event.keyword)
}

/// A data descriptor over `bytes` of the given type.
fn data(bytes: &[u8], kind: u8) -> EventData<'_> {
    EventData::bytes(bytes, kind)
}

/// A field value: its bytes in place (little-endian, as ETW records them).
fn value<T: EventScalar>(value: &T) -> EventData<'_> {
    EventData::scalar(value)
}

/// A counted string: its `u16` length (kept by the caller) and its bytes.
struct Text<'a> {
    len: u16,
    bytes: &'a [u8],
}

impl<'a> Text<'a> {
    fn new(text: &'a [u8]) -> Self {
        let bytes = text.get(..usize::from(u16::MAX)).unwrap_or(text);
        Text { len: bytes.len() as u16, bytes }
    }

    fn descriptors(&self) -> [EventData<'_>; 2] {
        [value(&self.len), data(self.bytes, EVENT_DATA_DESCRIPTOR_TYPE_NONE)]
    }
}

/// Writes one event: provider traits, its metadata, then `fields` (in the
/// metadata's order).
fn write(event: &Event, fields: &[EventData<'_>]) {
    // The largest event (Pended) has 2 + 9 descriptors.
    const MAX: usize = 16;
    let mut all = [EventData::default(); MAX];
    let header = [
        data(&PROVIDER_TRAITS, EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA),
        data(event.metadata, EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA),
    ];
    let mut count = 0;
    for (slot, descriptor) in all.iter_mut().zip(header.iter().chain(fields)) {
        *slot = *descriptor;
        count += 1;
    }
    let descriptor = EVENT_DESCRIPTOR {
        Id: 0,
        Version: 0,
        Channel: CHANNEL_TRACELOGGING,
        Level: event.level,
        Opcode: 0,
        Task: 0,
        Keyword: event.keyword,
    };
    let _ = REGISTRATION.write(&descriptor, all.get(..count).unwrap_or(&all));
}

/// `Loaded`: the driver is up.
pub fn loaded(callouts_registered: u32, filters_adopted: u32) {
    if !enabled(&LOADED) {
        return;
    }
    write(&LOADED, &[value(&callouts_registered), value(&filters_adopted)]);
}

/// `Unloaded`: the driver is going (pended requests it completed on the way).
pub fn unloaded(requests_completed: u32) {
    if !enabled(&UNLOADED) {
        return;
    }
    write(&UNLOADED, &[value(&requests_completed)]);
}

/// Whether a policy's verdicts are events: those the debugger output
/// prints too — an audit policy logged at info level or more, and any
/// policy logged at trace level. Other policies stay silent (an unlogged
/// audit only counts), so a busy box is not flooded.
#[inline]
pub fn verdict_is_event(policy: &PolicyRepr) -> bool {
    let audited = matches!(policy.action, PolicyAction::Audit) && policy.log_level >= LogLevel::Info;
    audited || policy.log_level >= LogLevel::Trace
}

/// The short name of a policy's action.
fn action_name(action: &PolicyAction) -> &'static [u8] {
    match action {
        PolicyAction::Permit => b"permit",
        PolicyAction::Block => b"block",
        PolicyAction::Audit => b"audit",
        PolicyAction::RateLimit { .. } => b"rate-limit",
        PolicyAction::Ask { .. } => b"ask",
    }
}

fn verdict_name(verdict: Verdict) -> &'static [u8] {
    match verdict {
        Verdict::Permit => b"permit",
        Verdict::Block => b"block",
    }
}

/// `Verdict`: classify decided (`permitted` or not) under `policy`; only
/// for the policies [`verdict_is_event`] selects. Up to DISPATCH_LEVEL.
#[inline]
pub fn verdict(filter_id: u64, layer_id: u16, policy: &PolicyRepr, permitted: bool) {
    if !verdict_is_event(policy) {
        return;
    }
    verdict_event(filter_id, layer_id, policy, permitted);
}

#[cold]
#[inline(never)]
fn verdict_event(filter_id: u64, layer_id: u16, policy: &PolicyRepr, permitted: bool) {
    if !enabled(&VERDICT) {
        return;
    }
    let action = Text::new(verdict_name(if permitted { Verdict::Permit } else { Verdict::Block }));
    let kind = Text::new(action_name(&policy.action));
    let label = Text::new(policy.label.as_bytes());
    let [action_len, action_bytes] = action.descriptors();
    let [kind_len, kind_bytes] = kind.descriptors();
    let [label_len, label_bytes] = label.descriptors();
    write(
        &VERDICT,
        &[value(&filter_id), value(&layer_id), action_len, action_bytes, kind_len, kind_bytes, label_len, label_bytes],
    );
}

/// A connection as the request events name it: its protocol and ports
/// (host order) and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionFields {
    /// IP protocol.
    pub protocol: u8,
    /// Local port.
    pub local_port: u16,
    /// Remote port.
    pub remote_port: u16,
    /// Whether it came in (ALE_AUTH_RECV_ACCEPT).
    pub inbound: bool,
}

/// `Pended`: a classification of `filter_id`'s waits for the agent as
/// request `request_id` (the id the agent sees). Up to DISPATCH_LEVEL.
pub fn pended(request_id: u64, filter_id: u64, connection: ConnectionFields, label: &[u8]) {
    if !enabled(&PENDED) {
        return;
    }
    let direction = Text::new(if connection.inbound { b"inbound".as_slice() } else { b"outbound".as_slice() });
    let label = Text::new(label);
    let local_port = connection.local_port.to_be();
    let remote_port = connection.remote_port.to_be();
    let [direction_len, direction_bytes] = direction.descriptors();
    let [label_len, label_bytes] = label.descriptors();
    write(
        &PENDED,
        &[
            value(&request_id),
            value(&filter_id),
            direction_len,
            direction_bytes,
            value(&connection.protocol),
            value(&local_port),
            value(&remote_port),
            label_len,
            label_bytes,
        ],
    );
}

/// `Completed`: request `request_id`, a pended classification of a
/// connection (`protocol`, local and remote ports), got `verdict`, for the
/// reason `why` names ("agent", "timeout", ...). Up to DISPATCH_LEVEL.
pub fn completed(
    request_id: u64,
    filter_id: u64,
    protocol: u8,
    (local_port, remote_port): (u16, u16),
    verdict: Verdict,
    why: &str,
) {
    if !enabled(&COMPLETED) {
        return;
    }
    let local_port = local_port.to_be();
    let remote_port = remote_port.to_be();
    let verdict = Text::new(verdict_name(verdict));
    let why = Text::new(why.as_bytes());
    let [verdict_len, verdict_bytes] = verdict.descriptors();
    let [why_len, why_bytes] = why.descriptors();
    write(
        &COMPLETED,
        &[
            value(&request_id),
            value(&filter_id),
            value(&protocol),
            value(&local_port),
            value(&remote_port),
            verdict_len,
            verdict_bytes,
            why_len,
            why_bytes,
        ],
    );
}

/// `FilterVetoed`: notifyFn refused filter `filter_id` with `status`.
pub fn filter_vetoed(filter_id: u64, status: NtStatus) {
    if !enabled(&FILTER_VETOED) {
        return;
    }
    let status = status.raw() as u32;
    write(&FILTER_VETOED, &[value(&filter_id), value(&status)]);
}

/// `FilterVetoed` for a notifyFn ADD whose `result` is a failure;
/// nothing for success or other notify types.
pub fn filter_vetoed_if(is_add: bool, filter_id: Option<u64>, result: &crate::platform::status::Result) {
    if let (true, Some(filter_id), Err(status)) = (is_add, filter_id, result) {
        filter_vetoed(filter_id, *status);
    }
}

/// `Error`: `what` failed with `status`.
pub fn error(what: &str, status: NtStatus) {
    if !enabled(&ERROR) {
        return;
    }
    let what = Text::new(what.as_bytes());
    let status = status.raw() as u32;
    let [what_len, what_bytes] = what.descriptors();
    write(&ERROR, &[what_len, what_bytes, value(&status)]);
}
