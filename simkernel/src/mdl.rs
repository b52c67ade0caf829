//! Memory descriptor lists over driver memory: `IoAllocateMdl`,
//! `MmBuildMdlForNonPagedPool`, `IoFreeMdl`. A callout that deep-copies a
//! packet describes its own pool buffer with one and hands it to
//! `FwpsAllocateNetBufferAndNetBufferList0`. The simulator checks that the
//! memory is a live non-paged pool block, that the MDL is built before it
//! is used, and that every MDL is freed by unload.

use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::DISPATCH_LEVEL;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// What the simulator keeps about one MDL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MdlRecord {
    /// Start of the described memory.
    pub address: usize,
    /// Its length in bytes.
    pub length: u32,
    /// `MmBuildMdlForNonPagedPool` was called.
    pub built: bool,
}

/// The MDL header a caller may read (x64 `MDL`: 48 bytes; opaque here).
#[repr(C)]
struct Mdl {
    _opaque: [u64; 6],
}

struct Live {
    record: MdlRecord,
    _mdl: Box<Mdl>,
}

// SAFETY: the box is owned by the record and only its address is shared.
unsafe impl Send for Live {}

static MDLS: Mutex<Option<HashMap<usize, Live>>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut HashMap<usize, Live>) -> R) -> R {
    let mut guard = MDLS.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// The record of a live MDL.
pub(crate) fn record(mdl: *mut c_void) -> Option<MdlRecord> {
    with(|m| m.get(&(mdl as usize)).map(|l| l.record))
}

/// `IoAllocateMdl`: an MDL for `length` bytes at `virtual_address`. No IRP
/// and no secondary buffer are modelled (a callout passes FALSE, FALSE, NULL).
#[unsafe(no_mangle)]
pub extern "system" fn IoAllocateMdl(
    virtual_address: *mut c_void,
    length: u32,
    secondary_buffer: u8,
    _charge_quota: u8,
    irp: *mut c_void,
) -> *mut c_void {
    irql::require_at_most(DISPATCH_LEVEL, "IoAllocateMdl");
    if secondary_buffer != 0 || !irp.is_null() {
        report(ViolationKind::ApiMisuse, "IoAllocateMdl with an IRP or SecondaryBuffer: not what a callout does");
    }
    if virtual_address.is_null() || length == 0 {
        report(ViolationKind::ApiMisuse, "IoAllocateMdl of NULL or of zero bytes");
        return std::ptr::null_mut();
    }
    if crate::faults::allocation_should_fail() {
        return std::ptr::null_mut();
    }
    let mdl = Box::new(Mdl { _opaque: [0; 6] });
    let address = &*mdl as *const Mdl as usize;
    let record = MdlRecord { address: virtual_address as usize, length, built: false };
    with(|m| m.insert(address, Live { record, _mdl: mdl }));
    address as *mut c_void
}

/// `MmBuildMdlForNonPagedPool`: the memory must be non-paged pool.
#[unsafe(no_mangle)]
pub extern "system" fn MmBuildMdlForNonPagedPool(mdl: *mut c_void) {
    irql::require_at_most(DISPATCH_LEVEL, "MmBuildMdlForNonPagedPool");
    let Some(record) = record(mdl) else {
        report(ViolationKind::ApiMisuse, "MmBuildMdlForNonPagedPool of an MDL IoAllocateMdl did not return");
        return;
    };
    match crate::pool::live_range(record.address, record.length as usize) {
        Some(false) => {}
        Some(true) => report(ViolationKind::ApiMisuse, "MmBuildMdlForNonPagedPool over paged pool"),
        None => report(
            ViolationKind::ApiMisuse,
            format!(
                "MmBuildMdlForNonPagedPool: {} bytes at {:#x} are not inside one live pool block",
                record.length, record.address
            ),
        ),
    }
    with(|m| {
        if let Some(live) = m.get_mut(&(mdl as usize)) {
            live.record.built = true;
        }
    });
}

/// `IoFreeMdl`.
#[unsafe(no_mangle)]
pub extern "system" fn IoFreeMdl(mdl: *mut c_void) {
    irql::require_at_most(DISPATCH_LEVEL, "IoFreeMdl");
    if with(|m| m.remove(&(mdl as usize))).is_none() {
        report(ViolationKind::DoubleFree, format!("IoFreeMdl({:#x}): not a live MDL", mdl as usize));
    }
}

/// Reports MDLs never freed; returns how many.
pub(crate) fn report_leaks() -> usize {
    let count = with(|m| m.len());
    if count > 0 {
        report(ViolationKind::Leak, format!("{count} MDL(s) never freed with IoFreeMdl"));
    }
    count
}

pub(crate) fn reset() {
    *MDLS.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
}
