//! Conformance: explicit transactions (simkernel/CONFORMANCE.md, row M5).
//! `FwpmTransactionAbort0` "causes the current transaction within the
//! current session to abort and rollback": what the transaction added is
//! gone and what it deleted is back as it was (persistence, weight,
//! provider, callout id); a commit keeps both. A deleted object is gone
//! with its flags: added again without `PERSISTENT`, it is not persistent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::fwp::{FWPM_CALLOUT0, FWPM_PROVIDER0, FWPM_SUBLAYER0};
use fwps_types::*;
use std::ffi::c_void;
use wfpcallout_simkernel::engine;

fn add_provider(session: *mut c_void, key: &GUID, flags: u32) {
    let provider = FWPM_PROVIDER0 { providerKey: *key, flags, ..Default::default() };
    // SAFETY: valid session and provider.
    assert_eq!(unsafe { engine::FwpmProviderAdd0(session, &provider, std::ptr::null()) }, STATUS_SUCCESS);
}

fn add_sublayer(session: *mut c_void, key: &GUID, provider: &GUID, weight: u16, flags: u32) {
    let sublayer = FWPM_SUBLAYER0 {
        subLayerKey: *key,
        providerKey: provider as *const GUID as *mut GUID,
        weight,
        flags,
        ..Default::default()
    };
    // SAFETY: valid session and sublayer.
    assert_eq!(unsafe { engine::FwpmSubLayerAdd0(session, &sublayer, std::ptr::null()) }, STATUS_SUCCESS);
}

/// Adds a management callout at ALE_AUTH_CONNECT_V4; returns its run-time id.
fn add_callout(session: *mut c_void, key: &GUID, flags: u32) -> u32 {
    let callout = FWPM_CALLOUT0 {
        calloutKey: *key,
        applicableLayer: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        flags,
        ..Default::default()
    };
    let mut id = 0;
    // SAFETY: valid session, callout and id.
    assert_eq!(unsafe { engine::FwpmCalloutAdd0(session, &callout, std::ptr::null(), &mut id) }, STATUS_SUCCESS);
    id
}

/// Frees engine memory returned by a read, once.
fn free(copy: *mut c_void) {
    let mut memory = copy;
    // SAFETY: engine memory from a read, freed once.
    unsafe { engine::FwpmFreeMemory0(&mut memory) };
}

fn provider_flags(session: *mut c_void, key: &GUID) -> Result<u32, NTSTATUS> {
    let mut copy: *mut FWPM_PROVIDER0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmProviderGetByKey0(session, key, &mut copy) };
    if status != STATUS_SUCCESS {
        return Err(status);
    }
    // SAFETY: the engine returned a valid provider.
    let flags = unsafe { (*copy).flags };
    free(copy.cast());
    Ok(flags)
}

/// A sublayer's flags, weight and whether it names a provider.
fn sublayer(session: *mut c_void, key: &GUID) -> Result<(u32, u16, bool), NTSTATUS> {
    let mut copy: *mut FWPM_SUBLAYER0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmSubLayerGetByKey0(session, key, &mut copy) };
    if status != STATUS_SUCCESS {
        return Err(status);
    }
    // SAFETY: the engine returned a valid sublayer, alive until freed below.
    let found = unsafe { &*copy };
    let read = (found.flags, found.weight, !found.providerKey.is_null());
    free(copy.cast());
    Ok(read)
}

/// A callout's flags and run-time id.
fn callout(session: *mut c_void, key: &GUID) -> Result<(u32, u32), NTSTATUS> {
    let mut copy: *mut FWPM_CALLOUT0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmCalloutGetByKey0(session, key, &mut copy) };
    if status != STATUS_SUCCESS {
        return Err(status);
    }
    // SAFETY: the engine returned a valid callout, alive until freed below.
    let found = unsafe { &*copy };
    let read = (found.flags, found.calloutId);
    free(copy.cast());
    Ok(read)
}

fn delete_callout(session: *mut c_void, key: &GUID) -> NTSTATUS {
    // SAFETY: valid session and key.
    unsafe { engine::FwpmCalloutDeleteByKey0(session, key) }
}

fn delete_sublayer(session: *mut c_void, key: &GUID) -> NTSTATUS {
    // SAFETY: valid session and key.
    unsafe { engine::FwpmSubLayerDeleteByKey0(session, key) }
}

fn delete_provider(session: *mut c_void, key: &GUID) -> NTSTATUS {
    // SAFETY: valid session and key.
    unsafe { engine::FwpmProviderDeleteByKey0(session, key) }
}

const OLD_PROVIDER: GUID = GUID::from_u128(0x7100);
const OLD_SUBLAYER: GUID = GUID::from_u128(0x7200);
const OLD_CALLOUT: GUID = GUID::from_u128(0x7300);
const NEW_PROVIDER: GUID = GUID::from_u128(0x7101);
const NEW_SUBLAYER: GUID = GUID::from_u128(0x7201);
const NEW_CALLOUT: GUID = GUID::from_u128(0x7301);

/// Outside any transaction: a persistent provider with a persistent
/// sublayer (weight 0x4321) and a callout (flags 0x4) under it. Returns the
/// callout's run-time id.
fn install_old_objects(session: *mut c_void) -> u32 {
    add_provider(session, &OLD_PROVIDER, fwp::FWPM_PROVIDER_FLAG_PERSISTENT);
    add_sublayer(session, &OLD_SUBLAYER, &OLD_PROVIDER, 0x4321, fwp::FWPM_SUBLAYER_FLAG_PERSISTENT);
    add_callout(session, &OLD_CALLOUT, 0x4)
}

/// In one transaction: deletes the old objects (callout, sublayer,
/// provider, in the order their references require) and adds new ones.
fn replace_in_transaction(session: *mut c_void) {
    assert_eq!(engine::FwpmTransactionBegin0(session, 0), STATUS_SUCCESS);
    assert_eq!(delete_callout(session, &OLD_CALLOUT), STATUS_SUCCESS);
    assert_eq!(delete_sublayer(session, &OLD_SUBLAYER), STATUS_SUCCESS);
    assert_eq!(delete_provider(session, &OLD_PROVIDER), STATUS_SUCCESS);
    add_provider(session, &NEW_PROVIDER, 0);
    add_sublayer(session, &NEW_SUBLAYER, &NEW_PROVIDER, 7, 0);
    add_callout(session, &NEW_CALLOUT, 0);
    // Inside the transaction the session sees its own changes.
    assert_eq!(provider_flags(session, &OLD_PROVIDER), Err(STATUS_FWP_PROVIDER_NOT_FOUND));
    assert_eq!(provider_flags(session, &NEW_PROVIDER), Ok(0));
}

/// M5: an abort puts back what the transaction deleted, as it was, and
/// removes what it added.
#[test]
fn an_abort_rolls_back_deletes_and_adds() {
    let kernel = probe::boot();
    let session = probe::session();
    let old_id = install_old_objects(session);
    replace_in_transaction(session);
    assert_eq!(engine::FwpmTransactionAbort0(session), STATUS_SUCCESS);

    assert_eq!(provider_flags(session, &OLD_PROVIDER), Ok(fwp::FWPM_PROVIDER_FLAG_PERSISTENT));
    assert_eq!(sublayer(session, &OLD_SUBLAYER), Ok((fwp::FWPM_SUBLAYER_FLAG_PERSISTENT, 0x4321, true)));
    assert_eq!(callout(session, &OLD_CALLOUT), Ok((0x4, old_id)));
    assert_eq!(provider_flags(session, &NEW_PROVIDER), Err(STATUS_FWP_PROVIDER_NOT_FOUND));
    assert_eq!(sublayer(session, &NEW_SUBLAYER), Err(STATUS_FWP_SUBLAYER_NOT_FOUND));
    assert_eq!(callout(session, &NEW_CALLOUT), Err(STATUS_FWP_CALLOUT_NOT_FOUND));
    // The restored objects still reference each other: the provider is in
    // use by its sublayer again.
    assert_eq!(delete_provider(session, &OLD_PROVIDER), STATUS_FWP_IN_USE);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// M5: a commit keeps the deletes and the adds.
#[test]
fn a_commit_keeps_deletes_and_adds() {
    let kernel = probe::boot();
    let session = probe::session();
    install_old_objects(session);
    replace_in_transaction(session);
    assert_eq!(engine::FwpmTransactionCommit0(session), STATUS_SUCCESS);

    assert_eq!(provider_flags(session, &OLD_PROVIDER), Err(STATUS_FWP_PROVIDER_NOT_FOUND));
    assert_eq!(sublayer(session, &OLD_SUBLAYER), Err(STATUS_FWP_SUBLAYER_NOT_FOUND));
    assert_eq!(callout(session, &OLD_CALLOUT), Err(STATUS_FWP_CALLOUT_NOT_FOUND));
    assert_eq!(provider_flags(session, &NEW_PROVIDER), Ok(0));
    assert_eq!(sublayer(session, &NEW_SUBLAYER), Ok((0, 7, true)));
    assert!(callout(session, &NEW_CALLOUT).is_ok());
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// M5: a deleted persistent object is gone with its flag; the same key
/// added again without `PERSISTENT` reads as not persistent.
#[test]
fn a_deleted_object_added_again_has_only_its_new_flags() {
    let kernel = probe::boot();
    let session = probe::session();
    add_provider(session, &OLD_PROVIDER, fwp::FWPM_PROVIDER_FLAG_PERSISTENT);
    assert_eq!(delete_provider(session, &OLD_PROVIDER), STATUS_SUCCESS);
    add_provider(session, &OLD_PROVIDER, 0);
    assert_eq!(provider_flags(session, &OLD_PROVIDER), Ok(0));
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
