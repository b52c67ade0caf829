//! Conformance: engine operations are atomic with respect to callout
//! registration and unregistration (simkernel/CONFORMANCE.md, rows A1-A5).
//!
//! Each test stops one operation at a named point inside the engine
//! (`sync_points`), runs the competing operation on another thread, lets
//! the first go on, and checks that the outcome is one a serial order of
//! the two could give. Driven by probe callouts, not by the driver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::engine::{self, Connection, flows};
use wfpcallout_simkernel::sync_points::{self, wait_blocked_or_finished};

fn flow_connection() -> Connection {
    Connection { layer_id: FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4, ..Connection::tcp_connect_v4(443) }
}

/// A1: a filter added while its callout registers gets ADD, or is there
/// for the enumeration the registering driver makes right after: never
/// neither (which would leave the driver a filter it cannot know).
#[test]
fn filter_add_racing_registration_is_notified_or_enumerated() {
    let mut kernel = probe::boot();
    let device = kernel.device_object() as usize;
    let probe = Probe::add(1, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let pause = sync_points::arm(sync_points::FILTER_ADD_CALLOUT_LOOKED_UP);
    let (filter_id, enumerated, waited) = std::thread::scope(|scope| {
        let adder = scope.spawn(|| engine::add_filter(&probe.filter()).unwrap());
        // The add has decided the callout is not registered.
        pause.wait_reached();
        let registrar = scope.spawn(|| {
            assert_eq!(probe.register(device as *mut _), STATUS_SUCCESS);
            probe::enumerate_filters(&probe)
        });
        let waited = wait_blocked_or_finished(&registrar);
        pause.resume();
        (adder.join().unwrap(), registrar.join().unwrap(), waited)
    });
    let notified = probe::position(&Event::Add(filter_id)).is_some();
    assert!(
        notified || enumerated.contains(&filter_id),
        "filter {filter_id} got no ADD and was not enumerated after registration"
    );
    assert!(waited, "registration ran inside a filter add instead of waiting for it");
    kernel.assert_clean();
}

/// A2: unregistration racing a filter add: notifyFn ADD is never called
/// after FwpsCalloutUnregisterById0 has returned.
#[test]
fn no_add_notification_after_unregistration_returned() {
    let mut kernel = probe::boot();
    let probe = Probe::add(2, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let pause = sync_points::arm(sync_points::FILTER_ADD_CALLOUT_LOOKED_UP);
    let filter_id = std::thread::scope(|scope| {
        let adder = scope.spawn(|| engine::add_filter(&probe.filter()).unwrap());
        // The add has decided the callout is registered.
        pause.wait_reached();
        let unregistrar = scope.spawn(|| {
            assert_eq!(probe.unregister(), STATUS_SUCCESS);
            probe::log(Event::Mark("unregistered"));
        });
        assert!(wait_blocked_or_finished(&unregistrar), "unregistration ran inside a filter add");
        pause.resume();
        unregistrar.join().unwrap();
        adder.join().unwrap()
    });
    let add = probe::position(&Event::Add(filter_id)).expect("ADD before the unregistration");
    let unregistered = probe::position(&Event::Mark("unregistered")).unwrap();
    assert!(add < unregistered, "notifyFn ADD ran after the callout was unregistered: {:?}", probe::events());
    kernel.assert_clean();
}

/// A3: unregistration racing a filter delete: notifyFn DELETE is never
/// called after FwpsCalloutUnregisterById0 has returned.
#[test]
fn no_delete_notification_after_unregistration_returned() {
    let mut kernel = probe::boot();
    let probe = Probe::add(3, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let filter_id = engine::add_filter(&probe.filter()).unwrap();
    let pause = sync_points::arm(sync_points::FILTER_DELETE_CALLOUT_LOOKED_UP);
    std::thread::scope(|scope| {
        let deleter = scope.spawn(|| engine::delete_filter(filter_id).unwrap());
        pause.wait_reached();
        let unregistrar = scope.spawn(|| {
            assert_eq!(probe.unregister(), STATUS_SUCCESS);
            probe::log(Event::Mark("unregistered"));
        });
        assert!(wait_blocked_or_finished(&unregistrar), "unregistration ran inside a filter delete");
        pause.resume();
        unregistrar.join().unwrap();
        deleter.join().unwrap();
    });
    let delete = probe::position(&Event::Delete(filter_id)).expect("DELETE before the unregistration");
    let unregistered = probe::position(&Event::Mark("unregistered")).unwrap();
    assert!(delete < unregistered, "notifyFn DELETE ran after the callout was unregistered: {:?}", probe::events());
    kernel.assert_clean();
}

/// A4: a flow context associated while the callout unregisters: either the
/// association fails (callout gone) or the unregistration is refused with
/// STATUS_DEVICE_BUSY. Never a context left on a flow for a callout that
/// is no longer registered (its flowDeleteFn would be unreachable).
#[test]
fn flow_association_racing_unregistration_is_ordered() {
    let mut kernel = probe::boot();
    let probe = Probe::add(4, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter_with(engine::FilterAction::CalloutInspection)).unwrap();
    probe::associate_flow_contexts(true);
    let pause = sync_points::arm(sync_points::FLOW_ASSOCIATE_CALLOUT_CHECKED);
    let (handle, unregister_status) = std::thread::scope(|scope| {
        let flow = scope.spawn(|| flows::establish_flow(&flow_connection()).0);
        pause.wait_reached();
        let unregistrar = scope.spawn(|| probe.unregister());
        assert!(wait_blocked_or_finished(&unregistrar), "unregistration ran inside a flow association");
        pause.resume();
        (flow.join().unwrap(), unregistrar.join().unwrap())
    });
    let associated = probe::events().contains(&Event::Associated(STATUS_SUCCESS));
    assert!(associated, "the association was checked first, so it succeeds: {:?}", probe::events());
    assert_eq!(unregister_status, STATUS_DEVICE_BUSY, "a flow carries the callout's context");
    flows::end_flow(handle);
    assert!(probe::events().contains(&Event::FlowDelete(0xF10F)));
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_clean();
}

/// A5: a flow ending while the callout unregisters: the context counts as
/// associated until its flowDeleteFn has returned, so the unregistration
/// is refused in between (and flowDeleteFn is always reachable).
#[test]
fn flow_delete_in_progress_keeps_the_callout_busy() {
    let mut kernel = probe::boot();
    let probe = Probe::add(5, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter_with(engine::FilterAction::CalloutInspection)).unwrap();
    probe::associate_flow_contexts(true);
    let (handle, _) = flows::establish_flow(&flow_connection());
    assert!(probe::events().contains(&Event::Associated(STATUS_SUCCESS)));
    let pause = sync_points::arm(sync_points::FLOW_CONTEXT_DETACHED);
    let status = std::thread::scope(|scope| {
        let ender = scope.spawn(|| flows::end_flow(handle));
        pause.wait_reached();
        let status = probe.unregister();
        pause.resume();
        ender.join().unwrap();
        status
    });
    assert_eq!(status, STATUS_DEVICE_BUSY, "flowDeleteFn had not run yet");
    assert!(probe::events().contains(&Event::FlowDelete(0xF10F)));
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_clean();
}
