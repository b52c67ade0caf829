//! Conformance: a filter's DELETE and the classifications still using it
//! (simkernel/CONFORMANCE.md, row N7). Whether notifyFn DELETE can arrive
//! while a classifyFn call for the same filter is still running is not
//! documented (WFP-SEMANTICS §3: UNCONFIRMED, "design so that it would be
//! harmless"), so the simulated engine takes both readings, at random per
//! delete: a callout must not free what such a classification may still
//! use when its DELETE returns. A deleted filter is never used by a
//! classification that starts after the delete.
//!
//! The classification is held inside classifyFn by pending it and stopping
//! in `FwpsPendOperation0` (a sync point), then completed after the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Event;
use wfpcallout_simkernel::engine::{self, Connection};
use wfpcallout_simkernel::sync_points::{self, wait_blocked_or_finished};

/// Holds a classification of `filter` inside classifyFn, deletes the filter
/// on another thread, and says whether the DELETE notification arrived
/// while the classification was still inside (true) or waited for it
/// (false). The classification is completed afterwards.
fn delete_during_classify(filter: u64) -> bool {
    probe::pend_next(true);
    let pause = sync_points::arm(sync_points::PEND_OPERATION_PENDED);
    let (during, operation) = std::thread::scope(|scope| {
        let classifier = scope.spawn(|| engine::classify(&Connection::tcp_connect_v4(443)));
        pause.wait_reached();
        let deleter = scope.spawn(move || {
            engine::delete_filter(filter).unwrap();
            probe::log(Event::Mark("delete returned"));
        });
        // Either the delete waits for the classification (blocked) or it
        // finishes while the classification is still stopped inside.
        let waited = wait_blocked_or_finished(&deleter);
        let during = probe::position(&Event::Delete(filter)).is_some();
        assert_eq!(waited, !during, "a delete that waited delivered DELETE, or one that finished did not");
        pause.resume();
        deleter.join().unwrap();
        let result = classifier.join().unwrap();
        (during, result.pended.expect("pended"))
    });
    engine::pending::FwpsCompleteOperation0(operation as *mut _, std::ptr::null_mut());
    let _ = engine::pending::take_completions();
    assert!(probe::position(&Event::Delete(filter)).is_some(), "DELETE was delivered");
    during
}

/// N7, one reading fixed: the DELETE arrives while the classification is
/// still inside classifyFn.
#[test]
fn a_delete_may_arrive_while_a_classification_of_the_filter_runs() {
    let (kernel, _probe, filter) = probe::boot_with_filter(71, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_delete_waits_for_classifies(Some(false));
    assert!(delete_during_classify(filter), "the delete waited although told not to");
    kernel.assert_clean();
}

/// N7, the other reading fixed: the DELETE waits for the classification.
#[test]
fn a_delete_may_wait_for_the_classifications_of_the_filter() {
    let (kernel, _probe, filter) = probe::boot_with_filter(72, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_delete_waits_for_classifies(Some(true));
    assert!(!delete_during_classify(filter), "the DELETE arrived while the classification was inside");
    kernel.assert_clean();
}

/// N7: by default each delete takes one reading at random, so over a run
/// both happen; a classification that starts after the delete never sees
/// the filter.
#[test]
fn by_default_each_delete_takes_a_reading_at_random() {
    let (mut seen_during, mut seen_after) = (false, false);
    for round in 0..64u128 {
        let (kernel, _probe, filter) = probe::boot_with_filter(100 + round, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
        if delete_during_classify(filter) {
            seen_during = true;
        } else {
            seen_after = true;
        }
        let before = probe::events().iter().filter(|e| **e == Event::Classify(filter)).count();
        let later = engine::classify(&Connection::tcp_connect_v4(443));
        assert!(later.pended.is_none());
        let after = probe::events().iter().filter(|e| **e == Event::Classify(filter)).count();
        assert_eq!(before, after, "a classification after the delete used the deleted filter");
        kernel.assert_clean();
        if seen_during && seen_after {
            return;
        }
    }
    panic!("64 deletes took one reading only (during: {seen_during}, after: {seen_after})");
}
