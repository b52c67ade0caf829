//! Pool with accounting by tag, special-pool style guard bytes, poisoning
//! on free, and the verifier's pool rules: non-paged only at DISPATCH_LEVEL,
//! frees must match a live block and its tag, nothing may remain at unload.

use crate::faults;
use crate::irql;
use crate::verifier::{ViolationKind, report};
use fwps_types::{DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, POOL_FLAG_UNINITIALIZED};
use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Pool blocks are 16-byte aligned, as on x64 Windows.
const POOL_ALIGN: usize = 16;
/// Guard bytes after every block; a changed guard is an overrun.
const GUARD_LEN: usize = 16;
const GUARD_BYTE: u8 = 0xFD;
/// Freed memory is filled with this before it is returned.
pub const POISON_BYTE: u8 = 0xD5;

#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    tag: u32,
    paged: bool,
}

#[derive(Default)]
struct PoolState {
    live: HashMap<usize, Block>,
    allocations: u64,
    frees: u64,
}

static POOL: Mutex<Option<PoolState>> = Mutex::new(None);

fn with_pool<R>(f: impl FnOnce(&mut PoolState) -> R) -> R {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(PoolState::default))
}

/// Renders a tag as WinDbg's `!poolused` shows it.
pub fn tag_name(tag: u32) -> String {
    tag.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '.' }).collect()
}

fn layout_for(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(GUARD_LEN)?, POOL_ALIGN).ok()
}

/// `ExAllocatePool2`.
#[unsafe(no_mangle)]
pub extern "system" fn ExAllocatePool2(flags: u64, size: usize, tag: u32) -> *mut core::ffi::c_void {
    let paged = flags & POOL_FLAG_PAGED != 0;
    if !irql::require_at_most(DISPATCH_LEVEL, "ExAllocatePool2") {
        return std::ptr::null_mut();
    }
    if paged && irql::current() >= DISPATCH_LEVEL {
        report(
            ViolationKind::Irql,
            format!("paged pool allocation ({size} bytes, tag '{}') at DISPATCH_LEVEL", tag_name(tag)),
        );
    }
    if flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED) == 0 {
        report(ViolationKind::ApiMisuse, format!("ExAllocatePool2 without a pool type (flags {flags:#x})"));
    }
    if tag == 0 {
        report(ViolationKind::ApiMisuse, "ExAllocatePool2 with tag 0");
    }
    if faults::allocation_should_fail() {
        return std::ptr::null_mut();
    }
    let Some(layout) = layout_for(size.max(1)) else {
        return std::ptr::null_mut();
    };
    let block = if flags & POOL_FLAG_UNINITIALIZED != 0 {
        // SAFETY: the layout has a non-zero size.
        unsafe { alloc(layout) }
    } else {
        // SAFETY: the layout has a non-zero size.
        unsafe { alloc_zeroed(layout) }
    };
    if block.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: the guard starts inside the allocation (layout includes it).
    let guard = unsafe { block.add(size.max(1)) };
    // SAFETY: GUARD_LEN bytes from there are part of the allocation.
    unsafe { std::ptr::write_bytes(guard, GUARD_BYTE, GUARD_LEN) };
    with_pool(|pool| {
        pool.live.insert(block as usize, Block { size: size.max(1), tag, paged });
        pool.allocations += 1;
    });
    block.cast()
}

/// `ExFreePoolWithTag`.
///
/// # Safety
/// As in Windows: `p` must be a live block from `ExAllocatePool2`. The
/// simulated kernel checks this and reports a violation instead of
/// corrupting memory when it does not hold.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn ExFreePoolWithTag(p: *mut core::ffi::c_void, tag: u32) {
    if !irql::require_at_most(DISPATCH_LEVEL, "ExFreePoolWithTag") {
        return;
    }
    let address = p as usize;
    let block = with_pool(|pool| {
        let block = pool.live.get(&address).copied();
        if let Some(block) = block
            && block.tag == tag
        {
            pool.live.remove(&address);
            pool.frees += 1;
        }
        block
    });
    let Some(block) = block else {
        report(
            ViolationKind::DoubleFree,
            format!("ExFreePoolWithTag({address:#x}, '{}'): not a live pool block (double free?)", tag_name(tag)),
        );
        return;
    };
    if block.tag != tag {
        report(
            ViolationKind::WrongTag,
            format!(
                "ExFreePoolWithTag({address:#x}): freed with tag '{}' but allocated with '{}'",
                tag_name(tag),
                tag_name(block.tag)
            ),
        );
        return;
    }
    let bytes = p.cast::<u8>();
    // SAFETY: the guard starts inside the live block we just removed.
    let guard_start = unsafe { bytes.add(block.size) };
    // SAFETY: GUARD_LEN bytes from there belong to the block.
    let guard = unsafe { std::slice::from_raw_parts(guard_start, GUARD_LEN) };
    if guard.iter().any(|&b| b != GUARD_BYTE) {
        report(
            ViolationKind::PoolCorruption,
            format!("pool block {address:#x} ('{}', {} bytes) was written past its end", tag_name(tag), block.size),
        );
    }
    // SAFETY: the block is ours to poison and free, with the layout it was
    // allocated with.
    unsafe {
        std::ptr::write_bytes(bytes, POISON_BYTE, block.size);
    }
    if let Some(layout) = layout_for(block.size) {
        // SAFETY: allocated by ExAllocatePool2 with this layout.
        unsafe { dealloc(bytes, layout) };
    }
}

/// Whether `[address, address + len)` lies inside one live pool block;
/// `Some(paged)` if it does (for MDLs built over driver memory).
pub fn live_range(address: usize, len: usize) -> Option<bool> {
    with_pool(|pool| {
        pool.live.iter().find_map(|(&start, block)| {
            let end = start.checked_add(block.size)?;
            (address >= start && address.checked_add(len)? <= end).then_some(block.paged)
        })
    })
}

/// Bytes and blocks outstanding for one tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagUsage {
    /// Live blocks.
    pub blocks: usize,
    /// Live bytes.
    pub bytes: usize,
    /// Of which paged.
    pub paged_blocks: usize,
}

/// Live pool by tag name, like `!poolused`.
pub fn usage_by_tag() -> BTreeMap<String, TagUsage> {
    with_pool(|pool| {
        let mut usage: BTreeMap<String, TagUsage> = BTreeMap::new();
        for block in pool.live.values() {
            let entry = usage.entry(tag_name(block.tag)).or_default();
            entry.blocks += 1;
            entry.bytes += block.size;
            entry.paged_blocks += usize::from(block.paged);
        }
        usage
    })
}

/// Live blocks in total.
pub fn live_blocks() -> usize {
    with_pool(|pool| pool.live.len())
}

/// Allocations and frees since boot.
pub fn totals() -> (u64, u64) {
    with_pool(|pool| (pool.allocations, pool.frees))
}

/// Reports every live block as a leak; returns how many there were.
pub fn report_leaks() -> usize {
    let usage = usage_by_tag();
    for (tag, u) in &usage {
        report(
            ViolationKind::Leak,
            format!("pool leak: tag '{tag}': {} blocks, {} bytes still allocated", u.blocks, u.bytes),
        );
    }
    usage.values().map(|u| u.blocks).sum()
}

pub(crate) fn reset() {
    // Blocks a previous (failed) test leaked are forgotten, not freed: the
    // driver may still point at them.
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some(PoolState::default());
}
