//! Conformance: the write right (simkernel/CONFORMANCE.md, rows W1-W3).
//! Without `FWPS_RIGHT_ACTION_WRITE` on entry a callout writes nothing to
//! classifyOut, except a BLOCK that vetoes (classifyFn0, FWPS_CLASSIFY_OUT0,
//! "Filter Arbitration"). Driven by probe callouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, FilterSpec};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

/// A hard permit in a sublayer above the probe's: the probe then runs
/// with the write right cleared.
fn hard_permit_above(probe: &Probe) -> u64 {
    let high = GUID::from_u128(0x9B0B_AAAA_0000_4000_8000_0000_0000_0001);
    engine::add_sublayer(high, 0xFFFF).unwrap();
    let spec = FilterSpec {
        sublayer_key: high,
        action: FilterAction::Permit,
        flags: fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT,
        ..probe.filter()
    };
    engine::add_filter(&spec).unwrap()
}

fn setup(n: u128) -> (wfpcallout_simkernel::Kernel, Probe, u64, u64) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let permit = hard_permit_above(&probe);
    let ours = engine::add_filter(&probe.filter()).unwrap();
    (kernel, probe, permit, ours)
}

/// W1: a callout that respects the right leaves every byte as it was given.
#[test]
fn a_callout_without_the_right_that_writes_nothing_is_clean() {
    let (kernel, _probe, permit, ours) = setup(11);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    engine::trace_classify_out(true);
    let result = engine::classify(&Connection::tcp_connect_v4(80));
    let trace = engine::take_classify_out_trace();
    engine::trace_classify_out(false);
    assert_eq!(result.decided_by, Some(permit));
    let call = trace.iter().find(|t| t.filter_id == ours).expect("the probe was called");
    assert_eq!(call.after, call.before);
    kernel.assert_clean();
}

/// W2: writing PERMIT without the right is a reported violation.
#[test]
fn writing_permit_without_the_right_is_a_violation() {
    let (_kernel, _probe, _permit, ours) = setup(12);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    probe::ignore_write_right(true);
    let _ = engine::classify(&Connection::tcp_connect_v4(80));
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains(&format!("filter {ours}")));
    assert!(violations[0].message.contains("without FWPS_RIGHT_ACTION_WRITE"));
}

/// W3: a BLOCK written without the right is a veto, which the docs allow.
#[test]
fn a_block_veto_without_the_right_is_allowed() {
    let (kernel, _probe, _permit, _ours) = setup(13);
    probe::answer(fwp::FWP_ACTION_BLOCK);
    probe::ignore_write_right(true);
    let _ = engine::classify(&Connection::tcp_connect_v4(80));
    kernel.assert_clean();
}
