//! Conformance: lifecycle faults a callout driver must survive
//! (simkernel/CONFORMANCE.md, rows L1-L6): a DELETE notification that never
//! arrives, FwpmFilterDeleteById0 failing transiently, management objects
//! that already exist with other settings, and the base filtering engine
//! not running, and persistence across a BFE restart. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::fwp::FWPM_SUBLAYER0;
use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::engine::{self, Connection, EPT_NT_NOT_REGISTERED};
use wfpcallout_simkernel::faults;

/// L1: a lost DELETE: the filter is gone from the engine and classification
/// no longer reaches the callout, but the callout is never told (its
/// per-filter state is the driver's to reclaim at unload).
#[test]
fn a_lost_delete_notification_deletes_the_filter_silently() {
    let mut kernel = probe::boot();
    let probe = Probe::add(121, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let lost = engine::add_filter(&probe.filter()).unwrap();
    let told = engine::add_filter(&probe.filter()).unwrap();
    engine::lose_delete_notifications(1);
    engine::delete_filter(lost).unwrap();
    engine::delete_filter(told).unwrap();
    let events = probe::events();
    assert!(!events.contains(&Event::Delete(lost)), "the first DELETE was lost");
    assert!(events.contains(&Event::Delete(told)), "only one was lost");
    assert!(!engine::filter_ids().contains(&lost));
    probe::answer(fwp::FWP_ACTION_BLOCK);
    assert!(engine::classify(&Connection::tcp_connect_v4(80)).permitted(), "no filter left to reach");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// L2: FwpmFilterDeleteById0 fails transiently: nothing changes (no
/// DELETE, the filter still classifies); a retry deletes it.
#[test]
fn a_failed_delete_changes_nothing_and_a_retry_works() {
    let mut kernel = probe::boot();
    let probe = Probe::add(122, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let id = engine::add_filter(&probe.filter()).unwrap();
    faults::fail_call("FwpmFilterDeleteById0", 0, STATUS_INSUFFICIENT_RESOURCES);
    assert_eq!(engine::delete_filter(id), Err(STATUS_INSUFFICIENT_RESOURCES));
    assert!(!probe::events().contains(&Event::Delete(id)));
    probe::answer(fwp::FWP_ACTION_BLOCK);
    assert!(!engine::classify(&Connection::tcp_connect_v4(80)).permitted(), "the filter still decides");
    engine::delete_filter(id).unwrap();
    assert!(probe::events().contains(&Event::Delete(id)));
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// L3: adding a management object whose key exists already returns
/// STATUS_FWP_ALREADY_EXISTS and leaves the existing object as it was (its
/// weight here), whatever the new one asked for.
#[test]
fn an_existing_object_is_kept_as_it_was() {
    let kernel = probe::boot();
    let key = GUID::from_u128(0x9B0B_5B00_0000_4000_8000_0000_0000_0123);
    engine::add_sublayer(key, 7).unwrap();
    let session = probe::try_session().unwrap();
    let sublayer = FWPM_SUBLAYER0 { subLayerKey: key, weight: 0x7000, ..Default::default() };
    // SAFETY: valid session and sublayer.
    let status = unsafe { engine::FwpmSubLayerAdd0(session, &sublayer, std::ptr::null()) };
    assert_eq!(status, STATUS_FWP_ALREADY_EXISTS);
    assert_eq!(engine::sublayer_weight(&key), Some(7), "not replaced");
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// L4: with the base filtering engine stopped no session opens
/// (EPT_NT_NOT_REGISTERED), while callouts still register; once it runs,
/// sessions open again.
#[test]
fn without_bfe_no_session_opens_but_callouts_register() {
    let mut kernel = probe::boot();
    engine::set_bfe_running(false);
    assert_eq!(probe::try_session().err(), Some(EPT_NT_NOT_REGISTERED));
    let key = GUID::from_u128(0x9B0B_0000_0000_4000_8000_0000_0000_0124);
    let callout = FWPS_CALLOUT2 {
        calloutKey: key,
        flags: 0,
        classifyFn: Some(probe::noop_classify),
        notifyFn: Some(probe::noop_notify),
        flowDeleteFn: None,
    };
    let mut id = 0;
    // SAFETY: valid device object, callout and out pointer.
    let status = unsafe { engine::FwpsCalloutRegister2(kernel.device_object(), &callout, &mut id) };
    assert_eq!(status, STATUS_SUCCESS);
    engine::set_bfe_running(true);
    let session = probe::try_session().unwrap();
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    assert_eq!(engine::FwpsCalloutUnregisterById0(id), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// L5: a BFE restart keeps what was added persistent and loses the rest; a
/// persistent filter naming a non-persistent callout is lost with it.
#[test]
fn a_bfe_restart_keeps_only_persistent_objects() {
    let kernel = probe::boot();
    let session = probe::try_session().unwrap();
    let sublayer_key = GUID::from_u128(0x9B0B_5B00_0000_4000_8000_0000_0000_0125);
    let sublayer = FWPM_SUBLAYER0 {
        subLayerKey: sublayer_key,
        flags: fwp::FWPM_SUBLAYER_FLAG_PERSISTENT,
        weight: 9,
        ..Default::default()
    };
    // SAFETY: valid session and sublayer.
    assert_eq!(unsafe { engine::FwpmSubLayerAdd0(session, &sublayer, std::ptr::null()) }, STATUS_SUCCESS);
    let callout = |n: u128, flags: u32| {
        let key = GUID::from_u128(0x9B0B_0000_0000_4000_8000_0000_0000_0000 | n);
        let callout = fwp::FWPM_CALLOUT0 {
            calloutKey: key,
            applicableLayer: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
            flags,
            ..Default::default()
        };
        // SAFETY: valid session and callout.
        let status = unsafe { engine::FwpmCalloutAdd0(session, &callout, std::ptr::null(), std::ptr::null_mut()) };
        assert_eq!(status, STATUS_SUCCESS);
        key
    };
    let kept_callout = callout(126, fwp::FWPM_CALLOUT_FLAG_PERSISTENT);
    let lost_callout = callout(127, 0);
    let filter = |callout_key: GUID, flags: u32| {
        let spec = engine::FilterSpec {
            flags,
            ..engine::FilterSpec::callout(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, sublayer_key, callout_key)
        };
        engine::add_filter(&spec).unwrap()
    };
    let kept = filter(kept_callout, fwp::FWPM_FILTER_FLAG_PERSISTENT);
    let lost_with_its_callout = filter(lost_callout, fwp::FWPM_FILTER_FLAG_PERSISTENT);
    let not_persistent = filter(kept_callout, 0);
    assert!(engine::restart_bfe().is_err(), "sessions still open");
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    engine::restart_bfe().unwrap();
    assert_eq!(engine::filter_ids(), vec![kept]);
    assert!(!engine::filter_ids().contains(&lost_with_its_callout) && !engine::filter_ids().contains(&not_persistent));
    assert!(engine::has_managed_callout(&kept_callout) && !engine::has_managed_callout(&lost_callout));
    assert_eq!(engine::sublayer_weight(&sublayer_key), Some(9));
    engine::delete_filter(kept).unwrap();
    kernel.assert_unloaded_clean();
}

/// L6: unload must not return while a callout is still registered: a
/// callout left registered when the driver is gone is reported as a leak
/// (the engine would call into an unloaded image).
#[test]
fn a_callout_left_registered_at_unload_is_reported() {
    let mut kernel = probe::boot();
    let probe = Probe::add(128, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel.assert_unloaded_clean()));
    assert!(result.is_err(), "the registered callout is reported");
    let violations = wfpcallout_simkernel::verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, wfpcallout_simkernel::verifier::ViolationKind::Leak);
    assert!(violations[0].message.contains("still registered after unload"), "{}", violations[0].message);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
