//! Conformance: unregistering a callout while one of its classifyFn calls
//! runs (simkernel/CONFORMANCE.md, row R7). Microsoft's ebpf-for-windows
//! maintainers say unregistration "will fail if WFP holds a reference to
//! the callout - which can happen if there are pending flow contexts or if
//! there are any active classify on the callout"; the DDI page names only
//! the flow contexts. So the simulated engine takes both readings, at
//! random per unregistration: `STATUS_DEVICE_BUSY` while a classification
//! is inside classifyFn, or success. Either way, once no classification
//! runs the callout unregisters.
//!
//! The classification is held inside classifyFn by pending it and stopping
//! in `FwpsPendOperation0` (a sync point), then completed after the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use wfpcallout_simkernel::engine::{self, Connection};
use wfpcallout_simkernel::sync_points;

/// Holds a classification inside the probe's classifyFn, unregisters the
/// probe meanwhile and returns that status; then lets the classification
/// finish, completes its pended operation, and returns what unregistering
/// says afterwards too.
fn unregister_during_classify(probe: &probe::Probe) -> (NTSTATUS, NTSTATUS) {
    probe::pend_next(true);
    let pause = sync_points::arm(sync_points::PEND_OPERATION_PENDED);
    let (during, operation) = std::thread::scope(|scope| {
        let classifier = scope.spawn(|| engine::classify(&Connection::tcp_connect_v4(443)));
        pause.wait_reached();
        let during = probe.unregister();
        pause.resume();
        (during, classifier.join().unwrap().pended.expect("pended"))
    });
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    let _ = engine::pending::take_completions();
    let after = probe.unregister();
    (during, after)
}

/// R7, one reading fixed: refused while the classification runs; it
/// unregisters once the classification has left.
#[test]
fn unregistering_may_be_refused_while_a_classify_of_the_callout_runs() {
    let (kernel, probe, _filter) = probe::boot_with_filter(81, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_unregister_busy_while_classifying(Some(true));
    let (during, after) = unregister_during_classify(&probe);
    assert_eq!(during, STATUS_DEVICE_BUSY, "refused while classifyFn runs");
    assert_eq!(after, STATUS_SUCCESS, "unregistered once it has left");
    kernel.assert_clean();
}

/// R7, the other reading fixed: unregistered at once, the classification
/// still finishing.
#[test]
fn unregistering_may_succeed_while_a_classify_of_the_callout_runs() {
    let (kernel, probe, _filter) = probe::boot_with_filter(82, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_unregister_busy_while_classifying(Some(false));
    let (during, after) = unregister_during_classify(&probe);
    assert_eq!(during, STATUS_SUCCESS, "unregistered while classifyFn runs");
    assert_eq!(after, STATUS_FWP_CALLOUT_NOT_FOUND, "already gone");
    kernel.assert_clean();
}

/// R7: by default each unregistration takes one reading at random; with no
/// classification inside, none is refused.
#[test]
fn by_default_each_unregistration_takes_a_reading_at_random() {
    let (mut refused, mut allowed) = (false, false);
    for round in 0..64u128 {
        let (kernel, probe, _filter) = probe::boot_with_filter(200 + round, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
        match unregister_during_classify(&probe) {
            (STATUS_DEVICE_BUSY, STATUS_SUCCESS) => refused = true,
            (STATUS_SUCCESS, STATUS_FWP_CALLOUT_NOT_FOUND) => allowed = true,
            other => panic!("unexpected statuses {other:?}"),
        }
        kernel.assert_clean();
        if refused && allowed {
            break;
        }
    }
    assert!(refused && allowed, "64 unregistrations took one reading only (refused: {refused}, allowed: {allowed})");
    // Nothing running: never refused, whatever the setting.
    let (kernel, probe, _filter) = probe::boot_with_filter(300, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_unregister_busy_while_classifying(Some(true));
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_clean();
}
