//! The simulated kernel's checker catches what it claims to catch. Each
//! test runs deliberately bad code written here (never in the driver) and
//! expects the verifier's report to fail it with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, unsafe_code)]

use fwps_types::{DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED};
use wfpcallout::platform::pool::{PoolBox, TAG_FILTER_CONTEXT};
use wfpcallout_simkernel::pool::{ExAllocatePool2, ExFreePoolWithTag};
use wfpcallout_simkernel::verifier::ViolationKind;
use wfpcallout_simkernel::{Kernel, irql, verifier};

const TAG: u32 = u32::from_le_bytes(*b"Test");

#[test]
fn clean_code_passes() {
    let kernel = Kernel::boot();
    let block = PoolBox::try_new([0u64; 4], TAG_FILTER_CONTEXT).unwrap();
    drop(block);
    kernel.assert_unloaded_clean();
}

#[test]
#[should_panic(expected = "pool leak: tag 'WfFc': 1 blocks, 32 bytes still allocated")]
fn leaked_block_fails_with_its_tag() {
    let kernel = Kernel::boot();
    std::mem::forget(PoolBox::try_new([0u64; 4], TAG_FILTER_CONTEXT).unwrap());
    kernel.assert_unloaded_clean();
}

#[test]
#[should_panic(expected = "not a live pool block (double free?)")]
fn double_free_fails() {
    let kernel = Kernel::boot();
    let block = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG);
    // SAFETY: a live block with its tag.
    unsafe { ExFreePoolWithTag(block, TAG) };
    // SAFETY: deliberately wrong: the simulated kernel checks it.
    unsafe { ExFreePoolWithTag(block, TAG) };
    kernel.assert_clean();
}

#[test]
#[should_panic(expected = "paged pool allocation (64 bytes, tag 'Test') at DISPATCH_LEVEL")]
fn paged_allocation_at_dispatch_fails() {
    let kernel = Kernel::boot();
    let block = irql::at_dispatch(|| ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG));
    // SAFETY: a live block with its tag.
    unsafe { ExFreePoolWithTag(block, TAG) };
    kernel.assert_clean();
}

#[test]
#[should_panic(expected = "freed with tag 'Nope' but allocated with 'Test'")]
fn wrong_tag_fails() {
    let kernel = Kernel::boot();
    let block = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG);
    // SAFETY: deliberately wrong tag: the simulated kernel checks it.
    unsafe { ExFreePoolWithTag(block, u32::from_le_bytes(*b"Nope")) };
    // SAFETY: the right tag this time.
    unsafe { ExFreePoolWithTag(block, TAG) };
    kernel.assert_clean();
}

#[test]
#[should_panic(expected = "was written past its end")]
fn overrun_fails() {
    let kernel = Kernel::boot();
    let block = ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, TAG).cast::<u8>();
    // SAFETY: one past the 16 requested is still inside the guard bytes.
    let past_end = unsafe { block.add(16) };
    // SAFETY: deliberately writes the guard (the simulated kernel owns it).
    unsafe { past_end.write(0) };
    // SAFETY: a live block with its tag.
    unsafe { ExFreePoolWithTag(block.cast(), TAG) };
    kernel.assert_clean();
}

#[test]
#[should_panic(expected = "FwpmEngineOpen0 called at IRQL 2")]
fn passive_only_call_at_dispatch_fails() {
    let kernel = Kernel::boot();
    let mut handle = std::ptr::null_mut();
    irql::at_dispatch(|| {
        // SAFETY: valid out-pointer; the IRQL is wrong on purpose.
        unsafe {
            wfpcallout::wfp::ffi::FwpmEngineOpen0(
                std::ptr::null(),
                fwps_types::RPC_C_AUTHN_WINNT,
                std::ptr::null(),
                std::ptr::null(),
                &mut handle,
            )
        }
    });
    kernel.assert_clean();
}

#[test]
#[should_panic(expected = "engine session(s) still open")]
fn engine_session_left_open_is_a_leak() {
    let kernel = Kernel::boot();
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid out-pointer at PASSIVE_LEVEL.
    let status = unsafe {
        wfpcallout::wfp::ffi::FwpmEngineOpen0(
            std::ptr::null(),
            fwps_types::RPC_C_AUTHN_WINNT,
            std::ptr::null(),
            std::ptr::null(),
            &mut handle,
        )
    };
    assert_eq!(status, 0);
    kernel.assert_unloaded_clean();
}

#[test]
fn spin_lock_raises_to_dispatch_and_restores() {
    let kernel = Kernel::boot();
    let lock = wfpcallout::platform::spin_lock::SpinLock::new(5u32);
    {
        let mut guard = lock.lock();
        assert_eq!(irql::current(), DISPATCH_LEVEL);
        *guard += 1;
    }
    assert_eq!(irql::current(), 0);
    assert_eq!(*lock.read(), 6);
    kernel.assert_clean();
}

#[test]
fn violations_carry_their_kind() {
    let _kernel = Kernel::boot();
    let block = ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG);
    // SAFETY: a live block with its tag.
    unsafe { ExFreePoolWithTag(block, TAG) };
    // SAFETY: deliberately a double free.
    unsafe { ExFreePoolWithTag(block, TAG) };
    let violations = verifier::take();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].kind, ViolationKind::DoubleFree);
}
