//! Conformance: filter arbitration and callout action types
//! (simkernel/CONFORMANCE.md, rows B1-B14). Source: SDK "Filter
//! Arbitration" (sublayers by weight, all evaluated; filters by weight,
//! first PERMIT/BLOCK wins in a sublayer; soft and hard permit and block;
//! veto), FWPM_ACTION0 / FWPS_ACTION0 (callout action types). Driven by
//! probe callouts and static filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use wfpcallout_simkernel::Kernel;
use wfpcallout_simkernel::engine::{self, ClassifyResult, Connection, FilterAction};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

const PERMIT: u32 = fwp::FWP_ACTION_PERMIT;
const BLOCK: u32 = fwp::FWP_ACTION_BLOCK;
const HARD: u32 = fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT;

/// Two probes at ALE_AUTH_CONNECT_V4: `high` in a sublayer of weight
/// 0x8000, `low` in one of weight 0x10; both registered.
fn two_sublayers() -> (Kernel, Probe, Probe) {
    let mut kernel = probe::boot();
    let high = Probe::add_weighted(41, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x8000);
    let low = Probe::add_weighted(42, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, 0x10);
    assert_eq!(high.register(kernel.device_object()), STATUS_SUCCESS);
    assert_eq!(low.register(kernel.device_object()), STATUS_SUCCESS);
    (kernel, high, low)
}

fn classify() -> ClassifyResult {
    engine::classify(&Connection::tcp_connect_v4(443))
}

fn add(spec: &engine::FilterSpec) -> u64 {
    engine::add_filter(spec).unwrap()
}

/// B1: every sublayer is evaluated, the higher-weight one first, even
/// after a decision.
#[test]
fn every_sublayer_is_evaluated_highest_weight_first() {
    let (kernel, high, low) = two_sublayers();
    let low_filter = add(&low.filter_with(FilterAction::CalloutInspection));
    let high_filter = add(&high.filter());
    high.answer(BLOCK, true);
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(high_filter)));
    let order: Vec<u64> =
        probe::events().iter().filter_map(|e| if let Event::Classify(id) = e { Some(*id) } else { None }).collect();
    assert_eq!(order, vec![high_filter, low_filter], "the lower sublayer still sees the traffic");
    kernel.assert_clean();
}

/// B2: within a sublayer, filters go by weight and the first PERMIT or
/// BLOCK ends the sublayer: the rest are not evaluated.
#[test]
fn within_a_sublayer_the_heaviest_decision_wins_and_ends_it() {
    let (kernel, high, _low) = two_sublayers();
    let light = add(&high.static_filter(FilterAction::Permit, 5, 0));
    let heavy = add(&high.static_filter(FilterAction::Block, 10, 0));
    let lightest = add(&engine::FilterSpec { weight: 1, ..high.filter() });
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(heavy)));
    assert!(!probe::events().contains(&Event::Classify(lightest)), "the callout below the decision is skipped");
    let _ = light;
    kernel.assert_clean();
}

/// B3: a callout returning CONTINUE passes the decision to the next filter
/// of its sublayer (UNKNOWN action type).
#[test]
fn continue_passes_to_the_next_filter() {
    let (kernel, high, _low) = two_sublayers();
    let unknown = add(&engine::FilterSpec { weight: 10, ..high.filter_with(FilterAction::CalloutUnknown) });
    let block = add(&high.static_filter(FilterAction::Block, 5, 0));
    high.answer(0, false);
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(block)));
    assert!(probe::events().contains(&Event::Classify(unknown)));
    kernel.assert_clean();
}

/// B4: a TERMINATING callout that returns neither PERMIT nor BLOCK is
/// treated as BLOCK ("Invoke a callout that always returns block or permit").
#[test]
fn a_terminating_callout_that_continues_blocks() {
    let (kernel, high, _low) = two_sublayers();
    let terminating = add(&high.filter());
    high.answer(0, false);
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(terminating)));
    kernel.assert_clean();
}

/// B5: an INSPECTION callout's verdict never counts, and returning one is
/// a reported violation ("Invoke a callout that never returns block or permit").
#[test]
fn an_inspection_callout_must_continue() {
    let (_kernel, high, low) = two_sublayers();
    let inspection = add(&high.filter_with(FilterAction::CalloutInspection));
    let permit = add(&low.static_filter(FilterAction::Permit, 0, 0));
    high.answer(BLOCK, true);
    let result = classify();
    assert_eq!((result.action, result.decided_by), (PERMIT, Some(permit)), "the inspection verdict is ignored");
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains(&format!("filter {inspection}: an INSPECTION callout returned")));
}

/// B6: BLOCK in a lower sublayer overrides a soft PERMIT above it.
#[test]
fn block_overrides_a_soft_permit() {
    let (kernel, high, low) = two_sublayers();
    add(&high.filter());
    high.answer(PERMIT, false);
    let block = add(&low.static_filter(FilterAction::Block, 0, 0));
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard), (BLOCK, Some(block), true));
    kernel.assert_clean();
}

/// B7: a hard permit (FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT) stands against
/// a lower static BLOCK, and lower callouts run without the write right.
#[test]
fn a_hard_permit_stands_and_lower_callouts_get_no_write_right() {
    let (kernel, high, low) = two_sublayers();
    let permit = add(&high.static_filter(FilterAction::Permit, 0, HARD));
    let callout = add(&engine::FilterSpec { weight: 10, ..low.filter_with(FilterAction::CalloutUnknown) });
    add(&low.static_filter(FilterAction::Block, 0, 0));
    low.answer(0, false);
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard), (PERMIT, Some(permit), true));
    assert!(probe::events().contains(&Event::ClassifyRights(callout, 0)), "{:?}", probe::events());
    kernel.assert_clean();
}

/// B8: a callout in a lower sublayer vetoes a hard permit by returning
/// BLOCK without the write right; the veto is final and not a violation.
#[test]
fn a_callout_veto_overrides_a_hard_permit() {
    let (kernel, high, low) = two_sublayers();
    add(&high.static_filter(FilterAction::Permit, 0, HARD));
    let vetoer = add(&low.filter());
    low.answer(BLOCK, true);
    probe::ignore_write_right(true);
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard, result.vetoed), (BLOCK, Some(vetoer), true, true));
    kernel.assert_clean();
}

/// B9: without the write right a PERMIT does not override anything (and
/// is reported, see write_right.rs).
#[test]
fn a_permit_without_the_right_changes_nothing() {
    let (_kernel, high, low) = two_sublayers();
    let block = add(&high.static_filter(FilterAction::Block, 0, 0));
    add(&low.filter());
    low.answer(PERMIT, false);
    probe::ignore_write_right(true);
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(block)));
    assert_eq!(verifier::take().len(), 1);
}

/// B10: a soft BLOCK (write right left set) yields to a hard PERMIT in a
/// lower sublayer ("Soft Block: can be overridden").
#[test]
fn a_soft_block_yields_to_a_lower_hard_permit() {
    let (kernel, high, low) = two_sublayers();
    add(&high.filter());
    high.answer(BLOCK, false);
    let permit = add(&low.static_filter(FilterAction::Permit, 0, HARD));
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard), (PERMIT, Some(permit), true));
    kernel.assert_clean();
}

/// B11: a soft BLOCK is not overridden by a soft PERMIT ("Block overrides
/// Permit").
#[test]
fn a_soft_block_stands_against_a_soft_permit() {
    let (kernel, high, low) = two_sublayers();
    let blocker = add(&high.filter());
    high.answer(BLOCK, false);
    add(&low.static_filter(FilterAction::Permit, 0, 0));
    let result = classify();
    assert_eq!((result.action, result.decided_by), (BLOCK, Some(blocker)));
    kernel.assert_clean();
}

/// B12: a hard BLOCK is final: not even a lower hard permit overrides it.
#[test]
fn a_hard_block_is_final() {
    let (kernel, high, low) = two_sublayers();
    let block = add(&high.static_filter(FilterAction::Block, 0, 0));
    add(&low.static_filter(FilterAction::Permit, 0, HARD));
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard), (BLOCK, Some(block), true));
    kernel.assert_clean();
}

/// B13: a static BLOCK filter is hard: it clears the write right, so the
/// callouts of lower sublayers run without it and the result is hard (the
/// model's reading: callouts must clear the right when they block, and a
/// static block is taken to do the same).
#[test]
fn a_static_block_is_hard() {
    let (kernel, high, low) = two_sublayers();
    let block = add(&high.static_filter(FilterAction::Block, 0, 0));
    let callout = add(&low.filter_with(FilterAction::CalloutUnknown));
    low.answer(0, false);
    let result = classify();
    assert_eq!((result.action, result.decided_by, result.hard), (BLOCK, Some(block), true));
    assert!(probe::events().contains(&Event::ClassifyRights(callout, 0)), "{:?}", probe::events());
    kernel.assert_clean();
}

unsafe extern "system" fn absorbing_classify(
    _: *const FWPS_INCOMING_VALUES0,
    _: *const FWPS_INCOMING_METADATA_VALUES0,
    _: *mut core::ffi::c_void,
    _: *const core::ffi::c_void,
    _: *const FWPS_FILTER2,
    _: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: classifyOut is the callout's for the call.
    let out = unsafe { &mut *out };
    if out.rights & FWPS_RIGHT_ACTION_WRITE != 0 {
        out.actionType = BLOCK;
        out.flags |= FWPS_CLASSIFY_OUT_FLAG_ABSORB;
        out.rights &= !FWPS_RIGHT_ACTION_WRITE;
    }
}

/// B14: at ALE_AUTH_CONNECT and ALE_AUTH_RECV_ACCEPT a callout's BLOCK may
/// carry FWPS_CLASSIFY_OUT_FLAG_ABSORB (dropped silently): the result is a
/// hard, absorbed BLOCK; a static block is not absorbed.
#[test]
fn a_block_may_be_absorbed_at_the_ale_auth_layers() {
    for (n, layer_key, layer_id) in [
        (43, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V4),
        (44, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4),
    ] {
        let mut kernel = probe::boot();
        let probe = Probe::add(n, layer_key);
        let callout = FWPS_CALLOUT2 {
            calloutKey: probe.key,
            flags: 0,
            classifyFn: Some(absorbing_classify),
            notifyFn: Some(probe::noop_notify),
            flowDeleteFn: None,
        };
        let mut id = 0;
        // SAFETY: valid device object, callout and out pointer.
        let status = unsafe { engine::FwpsCalloutRegister2(kernel.device_object(), &callout, &mut id) };
        assert_eq!(status, STATUS_SUCCESS);
        let absorber = add(&probe.filter());
        let connection = Connection { layer_id, ..Connection::tcp_connect_v4(443) };
        let result = engine::classify(&connection);
        assert_eq!(
            (result.action, result.decided_by, result.hard, result.absorbed),
            (BLOCK, Some(absorber), true, true)
        );
        engine::delete_filter(absorber).unwrap();
        add(&probe.static_filter(FilterAction::Block, 0, 0));
        let result = engine::classify(&connection);
        assert_eq!((result.action, result.absorbed), (BLOCK, false));
        assert_eq!(engine::FwpsCalloutUnregisterById0(id), STATUS_SUCCESS);
        kernel.assert_unloaded_clean();
    }
}
