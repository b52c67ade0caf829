//! Conformance: reading management objects back (simkernel/CONFORMANCE.md,
//! row M4): `FwpmProviderGetByKey0` and `FwpmSubLayerGetByKey0` return a
//! copy that shows whether the object was added persistent, which a
//! driver needs to tell an older install's objects from its own; the copy
//! is engine memory, freed once with `FwpmFreeMemory0`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::fwp::{FWPM_PROVIDER0, FWPM_SUBLAYER0};
use fwps_types::*;
use std::ffi::c_void;
use wfpcallout_simkernel::engine;

fn open_session() -> *mut c_void {
    let mut handle = std::ptr::null_mut();
    // SAFETY: `handle` is writable.
    let status = unsafe {
        engine::FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_WINNT, std::ptr::null(), std::ptr::null(), &mut handle)
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

/// A GUID as one number (GUID has neither `PartialEq` nor `Debug`).
fn n(guid: &GUID) -> u128 {
    (u128::from(guid.data1) << 96)
        | (u128::from(guid.data2) << 80)
        | (u128::from(guid.data3) << 64)
        | u128::from(u64::from_be_bytes(guid.data4))
}

fn add_provider(session: *mut c_void, key: GUID, flags: u32) {
    let provider = FWPM_PROVIDER0 { providerKey: key, flags, ..Default::default() };
    // SAFETY: valid session and provider.
    assert_eq!(unsafe { engine::FwpmProviderAdd0(session, &provider, std::ptr::null()) }, STATUS_SUCCESS);
}

/// The flags, weight and provider key a read returns, the copy freed.
fn read_sublayer(session: *mut c_void, key: &GUID) -> Result<(u32, u16, Option<u128>), NTSTATUS> {
    let mut copy: *mut FWPM_SUBLAYER0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmSubLayerGetByKey0(session, key, &mut copy) };
    if status != STATUS_SUCCESS {
        assert!(copy.is_null(), "nothing returned on failure");
        return Err(status);
    }
    // SAFETY: the engine returned a valid sublayer.
    let found = unsafe { &*copy };
    assert_eq!(n(&found.subLayerKey), n(key));
    // SAFETY: NULL or valid as long as the copy.
    let provider = unsafe { found.providerKey.as_ref() }.map(n);
    let read = (found.flags, found.weight, provider);
    let mut memory = copy.cast::<c_void>();
    // SAFETY: engine memory, freed once.
    unsafe { engine::FwpmFreeMemory0(&mut memory) };
    assert!(memory.is_null());
    Ok(read)
}

fn read_provider_flags(session: *mut c_void, key: &GUID) -> Result<u32, NTSTATUS> {
    let mut copy: *mut FWPM_PROVIDER0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmProviderGetByKey0(session, key, &mut copy) };
    if status != STATUS_SUCCESS {
        return Err(status);
    }
    // SAFETY: the engine returned a valid provider.
    let found = unsafe { &*copy };
    assert_eq!(n(&found.providerKey), n(key));
    let flags = found.flags;
    let mut memory = copy.cast::<c_void>();
    // SAFETY: engine memory, freed once.
    unsafe { engine::FwpmFreeMemory0(&mut memory) };
    Ok(flags)
}

/// M4: the persistent flag as added, the sublayer's weight and provider,
/// NOT_FOUND for unknown keys; every copy freed (a copy never freed would
/// be reported as a leak when the kernel goes).
#[test]
fn provider_and_sublayer_reads_show_their_persistence() {
    let kernel = probe::boot();
    let session = open_session();
    let (persistent, plain) = (GUID::from_u128(0x51), GUID::from_u128(0x52));
    add_provider(session, persistent, fwp::FWPM_PROVIDER_FLAG_PERSISTENT);
    add_provider(session, plain, 0);
    assert_eq!(read_provider_flags(session, &persistent), Ok(fwp::FWPM_PROVIDER_FLAG_PERSISTENT));
    assert_eq!(read_provider_flags(session, &plain), Ok(0));
    assert_eq!(read_provider_flags(session, &GUID::from_u128(0x53)), Err(STATUS_FWP_PROVIDER_NOT_FOUND));

    let sublayer_key = GUID::from_u128(0x61);
    let sublayer = FWPM_SUBLAYER0 {
        subLayerKey: sublayer_key,
        providerKey: &persistent as *const GUID as *mut GUID,
        weight: 0x1234,
        flags: fwp::FWPM_SUBLAYER_FLAG_PERSISTENT,
        ..Default::default()
    };
    // SAFETY: valid session and sublayer.
    assert_eq!(unsafe { engine::FwpmSubLayerAdd0(session, &sublayer, std::ptr::null()) }, STATUS_SUCCESS);
    engine::add_sublayer(GUID::from_u128(0x62), 7).unwrap();
    assert_eq!(read_sublayer(session, &sublayer_key), Ok((fwp::FWPM_SUBLAYER_FLAG_PERSISTENT, 0x1234, Some(0x51))));
    assert_eq!(read_sublayer(session, &GUID::from_u128(0x62)), Ok((0, 7, None)));
    assert_eq!(read_sublayer(session, &GUID::from_u128(0x63)), Err(STATUS_FWP_SUBLAYER_NOT_FOUND));
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
