//! ETW, as a kernel-mode provider sees it: `EtwRegister`,
//! `EtwUnregister`, `EtwSetInformation`, `EtwProviderEnabled` and
//! `EtwWriteTransfer`, checked like Driver Verifier would (IRQL, unknown
//! or unregistered handles, descriptor types, registrations left open at
//! unload), plus one trace session a test can enable by level and keyword.
//!
//! Every event written while the session wants it is decoded from its
//! bytes alone — the provider traits and the TraceLogging event metadata
//! that travel with it — the way `tracefmt` or WPA would: event name, then
//! each field's name, type and value. Nothing here knows the driver's
//! Rust types, so a wrong byte in the driver's metadata or data shows up
//! as a wrong or undecodable event.

use crate::verifier::{ViolationKind, report};
use fwps_types::{DISPATCH_LEVEL, GUID, NTSTATUS, PASSIVE_LEVEL};
use std::collections::HashMap;
use std::sync::Mutex;

/// `STATUS_INVALID_HANDLE`.
const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
/// `STATUS_INVALID_PARAMETER`.
const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
/// `STATUS_INVALID_DEVICE_REQUEST` (an information class not supported).
const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;
/// `EventProviderSetTraits`.
const EVENT_PROVIDER_SET_TRAITS: u32 = 2;
/// `EVENT_DESCRIPTOR.Channel` of TraceLogging events.
pub const CHANNEL_TRACELOGGING: u8 = 11;

/// A decoded field value, typed by the field's TraceLogging in/out types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// `UINT8`.
    U8(u8),
    /// `UINT16`.
    U16(u16),
    /// `UINT32`.
    U32(u32),
    /// `UINT64`.
    U64(u64),
    /// `UINT16` with out-type PORT: stored in network order, shown as a port.
    Port(u16),
    /// `UINT32` with out-type NTSTATUS.
    NtStatus(u32),
    /// A counted or NUL-terminated 8-bit string.
    Str(String),
}

/// One event as a trace viewer shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtwEvent {
    /// The provider name from the traits sent with the event.
    pub provider: String,
    /// The event name from its metadata.
    pub name: String,
    /// `EVENT_DESCRIPTOR.Level`.
    pub level: u8,
    /// `EVENT_DESCRIPTOR.Keyword`.
    pub keyword: u64,
    /// `EVENT_DESCRIPTOR.Opcode`.
    pub opcode: u8,
    /// Fields in order: name and value.
    pub fields: Vec<(String, FieldValue)>,
}

impl EtwEvent {
    /// The value of the field named `name`, if the event has one.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(field, _)| field == name).map(|(_, value)| value)
    }
}

struct Registration {
    guid: GUID,
    /// The provider name from `EtwSetInformation(EventProviderSetTraits)`.
    name: Option<String>,
}

struct Session {
    level: u8,
    keyword: u64,
}

#[derive(Default)]
struct Etw {
    registrations: HashMap<u64, Registration>,
    next_handle: u64,
    session: Option<Session>,
    events: Vec<EtwEvent>,
    enabled_calls: u64,
    writes: u64,
}

static ETW: Mutex<Option<Etw>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Etw) -> R) -> R {
    let mut guard = ETW.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Etw::default))
}

/// Starts (or changes) the session: it wants events of `level` or lower
/// (more severe) with any bit of `keyword` (0 = every keyword).
pub fn enable_session(level: u8, keyword: u64) {
    with(|etw| etw.session = Some(Session { level, keyword }));
}

/// Stops the session: no provider is enabled any more.
pub fn disable_session() {
    with(|etw| etw.session = None);
}

/// Every event recorded since boot, in order.
pub fn events() -> Vec<EtwEvent> {
    with(|etw| etw.events.clone())
}

/// Events recorded with this name.
pub fn events_named(name: &str) -> Vec<EtwEvent> {
    with(|etw| etw.events.iter().filter(|e| e.name == name).cloned().collect())
}

/// How many times `EtwProviderEnabled` and `EtwWriteTransfer` were called.
pub fn call_counts() -> (u64, u64) {
    with(|etw| (etw.enabled_calls, etw.writes))
}

/// Providers registered now: (GUID as `{xxxxxxxx-...}`, name set through
/// the traits).
pub fn registrations() -> Vec<(String, Option<String>)> {
    with(|etw| etw.registrations.values().map(|r| (guid_string(&r.guid), r.name.clone())).collect())
}

/// A GUID in registry format, lower case: `{c1cead91-0afd-5555-...}`.
pub fn guid_string(guid: &GUID) -> String {
    let d = guid.data4;
    format!(
        "{{{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
        guid.data1, guid.data2, guid.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    )
}

/// After unload: every registration still open is a leak (the image is
/// gone, ETW would call into it or keep a dangling registration).
pub fn report_leaks() {
    let open = with(|etw| etw.registrations.len());
    if open != 0 {
        report(
            ViolationKind::Leak,
            format!("{open} ETW provider registration(s) still open at unload (EtwUnregister)"),
        );
    }
}

pub(crate) fn reset() {
    *ETW.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *ON_WRITE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn require_passive(api: &str) -> bool {
    crate::irql::require_at_most(PASSIVE_LEVEL, api)
}

/// `EtwRegister`.
///
/// # Safety
/// `provider_id` must be NULL or point to a GUID; `handle` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn EtwRegister(
    provider_id: *const GUID,
    _enable_callback: *const core::ffi::c_void,
    _callback_context: *mut core::ffi::c_void,
    handle: *mut u64,
) -> NTSTATUS {
    require_passive("EtwRegister");
    if provider_id.is_null() || handle.is_null() {
        report(ViolationKind::ApiMisuse, "EtwRegister with a NULL provider id or handle");
        return STATUS_INVALID_PARAMETER;
    }
    if let Some(status) = crate::faults::call_should_fail("EtwRegister") {
        return status;
    }
    // SAFETY: checked non-NULL; the caller guarantees a GUID.
    let guid = unsafe { provider_id.read_unaligned() };
    let value = with(|etw| {
        etw.next_handle += 1;
        let value = 0x4554_5700_0000_0000 | etw.next_handle;
        etw.registrations.insert(value, Registration { guid, name: None });
        value
    });
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { handle.write_unaligned(value) };
    0
}

fn known(etw: &Etw, handle: u64, api: &str) -> bool {
    if etw.registrations.contains_key(&handle) {
        return true;
    }
    report(ViolationKind::ApiMisuse, format!("{api} with handle {handle:#x}, which is not a registered ETW provider"));
    false
}

/// `EtwUnregister`.
#[unsafe(no_mangle)]
pub extern "system" fn EtwUnregister(handle: u64) -> NTSTATUS {
    require_passive("EtwUnregister");
    with(|etw| {
        if !known(etw, handle, "EtwUnregister") {
            return STATUS_INVALID_HANDLE;
        }
        etw.registrations.remove(&handle);
        0
    })
}

/// `EtwSetInformation`: only `EventProviderSetTraits` is supported, and
/// its blob is checked (`u16` size equal to the length, a NUL-terminated
/// name).
///
/// # Safety
/// `information` must point to `length` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn EtwSetInformation(
    handle: u64,
    class: u32,
    information: *const core::ffi::c_void,
    length: u32,
) -> NTSTATUS {
    require_passive("EtwSetInformation");
    if class != EVENT_PROVIDER_SET_TRAITS {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if information.is_null() {
        report(ViolationKind::ApiMisuse, "EtwSetInformation(traits) with NULL information");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees `length` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(information.cast::<u8>(), length as usize) };
    let name = match decode_traits(bytes) {
        Ok(name) => name,
        Err(problem) => {
            report(ViolationKind::ApiMisuse, format!("EtwSetInformation(traits): {problem}"));
            return STATUS_INVALID_PARAMETER;
        }
    };
    with(|etw| {
        if !known(etw, handle, "EtwSetInformation") {
            return STATUS_INVALID_HANDLE;
        }
        if let Some(registration) = etw.registrations.get_mut(&handle) {
            registration.name = Some(name);
        }
        0
    })
}

/// `EtwProviderEnabled`: whether the session wants this level and keyword.
#[unsafe(no_mangle)]
pub extern "system" fn EtwProviderEnabled(handle: u64, level: u8, keyword: u64) -> u8 {
    with(|etw| {
        etw.enabled_calls += 1;
        if !known(etw, handle, "EtwProviderEnabled") {
            return 0;
        }
        u8::from(wants(etw.session.as_ref(), level, keyword))
    })
}

/// ETW's rule: level 0 events always pass the level test, else the level
/// must be at most the session's; keyword 0 always passes, else it must
/// share a bit with the session's (a session keyword of 0 takes all).
fn wants(session: Option<&Session>, level: u8, keyword: u64) -> bool {
    let Some(session) = session else { return false };
    let level_ok = level == 0 || level <= session.level;
    let keyword_ok = keyword == 0 || session.keyword == 0 || keyword & session.keyword != 0;
    level_ok && keyword_ok
}

/// `EVENT_DESCRIPTOR`.
#[repr(C)]
#[derive(Clone, Copy)]
struct EventDescriptor {
    id: u16,
    version: u8,
    channel: u8,
    level: u8,
    opcode: u8,
    task: u16,
    keyword: u64,
}

/// `EVENT_DATA_DESCRIPTOR`.
#[repr(C)]
#[derive(Clone, Copy)]
struct DataDescriptor {
    ptr: u64,
    size: u32,
    kind: u8,
    reserved1: u8,
    reserved2: u16,
}

/// `EtwWriteTransfer`: checks the call, then decodes and records the event
/// if the session wants it.
///
/// # Safety
/// `descriptor` must point to an `EVENT_DESCRIPTOR`; `data` to `count`
/// `EVENT_DATA_DESCRIPTOR`s each describing readable memory.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn EtwWriteTransfer(
    handle: u64,
    descriptor: *const core::ffi::c_void,
    _activity_id: *const GUID,
    _related_activity_id: *const GUID,
    count: u32,
    data: *const core::ffi::c_void,
) -> NTSTATUS {
    // Windows allows any IRQL; the driver promises DISPATCH_LEVEL at most
    // (its data is non-paged or on the stack), so more is a bug of ours.
    crate::irql::require_at_most(DISPATCH_LEVEL, "EtwWriteTransfer");
    if descriptor.is_null() || (count != 0 && data.is_null()) {
        report(ViolationKind::ApiMisuse, "EtwWriteTransfer with a NULL descriptor or data");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller guarantees an EVENT_DESCRIPTOR.
    let descriptor = unsafe { descriptor.cast::<EventDescriptor>().read_unaligned() };
    let descriptors = if count == 0 {
        &[][..]
    } else {
        // SAFETY: non-NULL (checked); the caller guarantees `count` descriptors.
        unsafe { std::slice::from_raw_parts(data.cast::<DataDescriptor>(), count as usize) }
    };
    let blocks: Vec<(u8, Vec<u8>)> = descriptors
        .iter()
        .map(|d| {
            let bytes = if d.size == 0 {
                Vec::new()
            } else {
                // SAFETY: the caller guarantees each descriptor names readable memory.
                unsafe { std::slice::from_raw_parts(d.ptr as usize as *const u8, d.size as usize) }.to_vec()
            };
            (d.kind, bytes)
        })
        .collect();
    let (status, written) = with(|etw| {
        etw.writes += 1;
        if !known(etw, handle, "EtwWriteTransfer") {
            return (STATUS_INVALID_HANDLE, None);
        }
        match decode_event(&descriptor, &blocks) {
            Ok(event) => {
                if wants(etw.session.as_ref(), descriptor.level, descriptor.keyword) {
                    etw.events.push(event.clone());
                    return (0, Some(event));
                }
                (0, None)
            }
            Err(problem) => {
                report(ViolationKind::ApiMisuse, format!("EtwWriteTransfer: {problem}"));
                (STATUS_INVALID_PARAMETER, None)
            }
        }
    });
    let hook = *ON_WRITE.lock().unwrap_or_else(|e| e.into_inner());
    if let (Some(hook), Some(event)) = (hook, written) {
        hook(&event);
    }
    status
}

/// Called with each event recorded, on the writing thread, inside its
/// `EtwWriteTransfer` (after the recording lock is released): lets a test
/// look at the driver's state at the moment an event is written.
static ON_WRITE: Mutex<Option<fn(&EtwEvent)>> = Mutex::new(None);

/// Installs (or removes) the write hook; `reset` (a boot) removes it.
pub fn on_write(hook: Option<fn(&EtwEvent)>) {
    *ON_WRITE.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

/// Decodes provider traits: `u16` size (= the blob's length), NUL-terminated
/// UTF-8 name, then optional trait chunks (ignored).
pub fn decode_traits(bytes: &[u8]) -> Result<String, String> {
    let mut reader = Reader::new(bytes);
    let size = reader.u16()? as usize;
    if size != bytes.len() {
        return Err(format!("traits size field {size} but {} bytes", bytes.len()));
    }
    reader.cstr()
}

fn decode_event(descriptor: &EventDescriptor, blocks: &[(u8, Vec<u8>)]) -> Result<EtwEvent, String> {
    if descriptor.channel != CHANNEL_TRACELOGGING {
        return Err(format!("channel {} (TraceLogging events use 11)", descriptor.channel));
    }
    let [(traits_kind, traits), (meta_kind, meta), fields @ ..] = blocks else {
        return Err(format!("{} data descriptors: TraceLogging needs traits and metadata first", blocks.len()));
    };
    if *traits_kind != 2 {
        return Err(format!("first data descriptor has type {traits_kind}, expected 2 (provider metadata)"));
    }
    if *meta_kind != 1 {
        return Err(format!("second data descriptor has type {meta_kind}, expected 1 (event metadata)"));
    }
    if let Some((kind, _)) = fields.iter().find(|(kind, _)| *kind != 0) {
        return Err(format!("a field data descriptor has type {kind}, expected 0"));
    }
    let provider = decode_traits(traits)?;
    let payload: Vec<u8> = fields.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
    let (name, layout) = decode_metadata(meta)?;
    let mut data = Reader::new(&payload);
    let mut values = Vec::new();
    for (field, in_type, out_type) in layout {
        let value = match (in_type, out_type) {
            (4, 0) => FieldValue::U8(data.u8()?),
            (6, 0) => FieldValue::U16(data.u16()?),
            (6, 7) => FieldValue::Port(u16::from_be_bytes(data.take(2)?.try_into().map_err(|_| "port")?)),
            (8, 0) => FieldValue::U32(data.u32()?),
            (8, 14) => FieldValue::NtStatus(data.u32()?),
            (10, 0) => FieldValue::U64(data.u64()?),
            (2, 0 | 35) => FieldValue::Str(data.cstr()?),
            (23, 0 | 35) => {
                let len = data.u16()? as usize;
                let bytes = data.take(len)?;
                FieldValue::Str(String::from_utf8(bytes.to_vec()).map_err(|_| format!("{field}: not UTF-8"))?)
            }
            other => return Err(format!("field {field}: in/out type {other:?} not decodable here")),
        };
        values.push((field, value));
    }
    if data.remaining() != 0 {
        return Err(format!("event {name}: {} bytes of data past its last field", data.remaining()));
    }
    Ok(EtwEvent {
        provider,
        name,
        level: descriptor.level,
        keyword: descriptor.keyword,
        opcode: descriptor.opcode,
        fields: values,
    })
}

/// Field layout from event metadata: (name, in-type, out-type or 0).
type Layout = Vec<(String, u8, u8)>;

/// Decodes TraceLogging event metadata: `u16` size (= length), tag bytes
/// (while the high bit is set), the NUL-terminated name, then per field a
/// NUL-terminated name, the in-type byte (high bit: an out-type byte
/// follows; its high bit: tag bytes follow).
pub fn decode_metadata(bytes: &[u8]) -> Result<(String, Layout), String> {
    let mut reader = Reader::new(bytes);
    let size = reader.u16()? as usize;
    if size != bytes.len() {
        return Err(format!("event metadata size field {size} but {} bytes", bytes.len()));
    }
    while reader.u8()? & 0x80 != 0 {}
    let name = reader.cstr()?;
    let mut layout = Vec::new();
    while reader.remaining() != 0 {
        let field = reader.cstr()?;
        let in_byte = reader.u8()?;
        let mut out_type = 0;
        if in_byte & 0x80 != 0 {
            let out_byte = reader.u8()?;
            out_type = out_byte & 0x7F;
            if out_byte & 0x80 != 0 {
                while reader.u8()? & 0x80 != 0 {}
            }
        }
        let in_type = in_byte & 0x7F;
        if in_type & 0x60 != 0 {
            return Err(format!("field {field}: arrays and custom fields are not used by this driver"));
        }
        layout.push((field, in_type, out_type));
    }
    Ok((name, layout))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }
    fn remaining(&self) -> usize {
        self.bytes.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("needed {n} bytes, {} left", self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| "u16")?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "u32")?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "u64")?))
    }
    fn cstr(&mut self) -> Result<String, String> {
        let end = self.bytes.iter().position(|&b| b == 0).ok_or("string without NUL")?;
        let text = String::from_utf8(self.bytes[..end].to_vec()).map_err(|_| "string not UTF-8")?;
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_decodes_field_by_field() {
        // size 19, tag 0, "Ev\0", "A\0" U32, "P\0" U16|0x80 PORT.
        let mut meta = vec![0, 0, 0];
        meta.extend_from_slice(b"Ev\0A\0");
        meta.push(8);
        meta.extend_from_slice(b"P\0");
        meta.extend_from_slice(&[6 | 0x80, 7]);
        let len = meta.len() as u16;
        meta[..2].copy_from_slice(&len.to_le_bytes());
        let (name, layout) = decode_metadata(&meta).unwrap();
        assert_eq!(name, "Ev");
        assert_eq!(layout, vec![("A".to_string(), 8, 0), ("P".to_string(), 6, 7)]);
        meta[0] += 1;
        assert!(decode_metadata(&meta).is_err(), "a wrong size field is refused");
    }

    #[test]
    fn session_rules() {
        let session = Session { level: 4, keyword: 0x2 };
        assert!(wants(Some(&session), 4, 0x2));
        assert!(!wants(Some(&session), 5, 0x2), "verbose is above the session's level");
        assert!(!wants(Some(&session), 4, 0x1), "no keyword bit in common");
        assert!(wants(Some(&session), 2, 0), "keyword 0 always passes");
        assert!(!wants(None, 1, 0), "no session, nothing enabled");
    }
}
