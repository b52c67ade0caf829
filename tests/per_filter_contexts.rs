//! notifyFn attaches a context on ADD and frees it on DELETE; classifyFn
//! uses it at DISPATCH_LEVEL. Every verdict, right and counter, at scale,
//! and every unhappy path: malformed blobs, allocation failure at every
//! site, notify at DISPATCH, unknown notify types, deletes with no add,
//! lost deletes, and deletes racing classification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::filters::fast_path::ContextWord;
use wfpcallout::platform::status::NtStatus;
use wfpcallout_scenario::{CLEAR_ACTION_RIGHT, Harness, Layer, PolicySource};
use wfpcallout_simkernel::{clock, engine, faults, pool};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("test").unwrap() }
}

fn stat(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[test]
fn each_policy_gives_its_verdict_rights_and_counters() {
    let harness = Harness::load();
    let cases = [
        (PolicyAction::Permit, true, false),
        (PolicyAction::Block, false, true),
        (PolicyAction::Audit, true, false),
        (PolicyAction::Ask { timeout_ms: 10, default_verdict: Verdict::Permit }, true, false),
        (PolicyAction::Ask { timeout_ms: 10, default_verdict: Verdict::Block }, false, true),
    ];
    for (action, permitted, hard) in cases {
        for layer in Layer::ALL {
            let id = harness.add_filter(layer, PolicySource::Policy(&policy(action))).unwrap();
            let result = harness.classify(layer, id, 443);
            assert_eq!(result.permitted(), permitted, "{action:?} at {layer:?}");
            assert_eq!(result.hard, hard, "BLOCK clears the write right, a plain PERMIT does not");
            let counters = harness.counters(id).unwrap();
            assert_eq!(counters.matched, 1);
            assert_eq!(counters.permitted, u64::from(permitted));
            assert_eq!(counters.blocked, u64::from(!permitted));
            assert_eq!(counters.audited, u64::from(action == PolicyAction::Audit));
            harness.delete_filter(id).unwrap();
        }
    }
    harness.unload_and_check();
}

/// notifyFn ADD decides the fast path once and stores it in the two low bits
/// of `filter->context` (the rest is the table's context); classify then
/// answers permit and block filters at plain layers from those bits, and
/// every other policy or layer through the full path, with the same
/// verdicts, rights and counters either way.
#[test]
fn the_context_word_carries_the_fast_path_and_both_paths_count_alike() {
    let harness = Harness::load();
    let traced = |action| PolicyRepr { log_level: LogLevel::Trace, ..policy(action) };
    let limit = PolicyAction::RateLimit { rate_per_sec: 1_000, burst: 1_000 };
    let connect = [Layer::ConnectV4, Layer::ConnectV6];
    let cases: Vec<(PolicyRepr, Vec<Layer>, u64, bool)> = vec![
        (policy(PolicyAction::Permit), connect.to_vec(), 1, true),
        (policy(PolicyAction::Block), connect.to_vec(), 3, false),
        (policy(PolicyAction::Permit), vec![Layer::RecvAcceptV4, Layer::RecvAcceptV6], 0, true),
        (policy(PolicyAction::Block), vec![Layer::RecvAcceptV4, Layer::RecvAcceptV6], 0, false),
        (policy(PolicyAction::Permit), Layer::FLOWS.to_vec(), 0, true),
        (traced(PolicyAction::Permit), connect.to_vec(), 0, true),
        (traced(PolicyAction::Block), connect.to_vec(), 0, false),
        (policy(PolicyAction::Audit), connect.to_vec(), 1, true),
        (traced(PolicyAction::Audit), connect.to_vec(), 0, true),
        (policy(PolicyAction::Audit), vec![Layer::RecvAcceptV4, Layer::RecvAcceptV6], 0, true),
        (policy(limit), connect.to_vec(), 0, true),
    ];
    for (repr, layers, tag, permitted) in cases {
        for layer in layers {
            for flags in [0, CLEAR_ACTION_RIGHT] {
                let mut spec = Harness::filter_spec(layer);
                spec.flags = flags;
                let id = harness.add_filter_with(spec, PolicySource::Policy(&repr)).unwrap();
                let word = engine::filter_context(id).unwrap();
                let context = STATE.table.get(id).unwrap();
                assert_eq!(
                    Some(ContextWord::from_raw(word).handle()),
                    context.slot(),
                    "{repr:?} at {layer:?}: the word's handle names the table's context's slot"
                );
                assert_eq!(word & 3, tag, "{repr:?} at {layer:?}: fast-path bits");
                assert_eq!(word & 4 != 0, flags == CLEAR_ACTION_RIGHT, "{repr:?} at {layer:?}: hard-permit bit");
                let audit = repr.action == PolicyAction::Audit;
                assert_eq!(word & 8 != 0, audit && tag != 0, "{repr:?} at {layer:?}: static-audit bit");
                drop(context);
                for _ in 0..3 {
                    let result = harness.classify(layer, id, 443);
                    assert_eq!(result.permitted(), permitted, "{repr:?} at {layer:?}");
                    // At the flow layers classify answers CONTINUE, which
                    // leaves the write right alone.
                    let flow = Layer::FLOWS.contains(&layer);
                    let hard = !flow && (!permitted || flags == CLEAR_ACTION_RIGHT);
                    assert_eq!(result.hard, hard, "{repr:?} at {layer:?} flags {flags}: write right");
                }
                let counters = harness.counters(id).unwrap();
                assert_eq!(counters.matched, 3, "{repr:?} at {layer:?}");
                assert_eq!((counters.permitted, counters.blocked), if permitted { (3, 0) } else { (0, 3) });
                assert_eq!(counters.audited, if audit { 3 } else { 0 }, "{repr:?} at {layer:?}: audited");
                harness.delete_filter(id).unwrap();
            }
        }
    }
    assert_eq!(stat(&STATE.stats.classify_without_context), 0);
    harness.unload_and_check();
}

#[test]
fn clear_action_right_filter_makes_permit_hard() {
    let harness = Harness::load();
    let mut spec = Harness::filter_spec(Layer::ConnectV4);
    spec.flags = CLEAR_ACTION_RIGHT;
    let id = harness.add_filter_with(spec, PolicySource::None).unwrap();
    let result = harness.classify(Layer::ConnectV4, id, 80);
    assert!(result.permitted() && result.hard);
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn filter_without_provider_context_gets_the_default_policy() {
    let harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV6, PolicySource::None).unwrap();
    assert!(harness.classify(Layer::ConnectV6, id, 80).permitted());
    assert_eq!(STATE.table.get(id).unwrap().policy(), &PolicyRepr::DEFAULT);
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn rate_limit_follows_the_token_bucket() {
    let harness = Harness::load();
    let repr = policy(PolicyAction::RateLimit { rate_per_sec: 10, burst: 3 });
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&repr)).unwrap();
    let verdicts: Vec<bool> = (0..5).map(|_| harness.classify(Layer::ConnectV4, id, 53).permitted()).collect();
    assert_eq!(verdicts, [true, true, true, false, false]);
    clock::advance_ms(100);
    assert!(harness.classify(Layer::ConnectV4, id, 53).permitted());
    assert!(!harness.classify(Layer::ConnectV4, id, 53).permitted());
    let counters = harness.counters(id).unwrap();
    assert_eq!((counters.matched, counters.permitted, counters.blocked, counters.rate_limited), (7, 4, 3, 3));
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn classify_without_write_right_writes_nothing() {
    let harness = Harness::load();
    // A higher sublayer with a hard permit: our callout then runs with the
    // write right cleared and must leave the verdict alone.
    let high = GUID::from_u128(0xAAAA_0000_0000_0000_0000_0000_0000_0001);
    engine::add_sublayer(high, 0xFFFF).unwrap();
    let mut hard_permit = Harness::filter_spec(Layer::ConnectV4);
    hard_permit.sublayer_key = high;
    hard_permit.action = engine::FilterAction::Permit;
    hard_permit.flags = CLEAR_ACTION_RIGHT;
    let permit_id = engine::add_filter(&hard_permit).unwrap();
    let block_id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Block))).unwrap();
    engine::trace_classify_out(true);
    let result = engine::classify(&Layer::ConnectV4.connection(80));
    let trace = engine::take_classify_out_trace();
    engine::trace_classify_out(false);
    // The engine's arbitration keeps the first decision; our callout saw no right.
    assert_eq!(result.decided_by, Some(permit_id));
    let ours: Vec<_> = trace.iter().filter(|t| t.filter_id == block_id).collect();
    assert_eq!(ours.len(), 1, "our callout was called once: {trace:?}");
    for call in ours {
        assert_eq!(call.after, call.before, "classifyOut changed without the write right");
    }
    assert_eq!(harness.counters(block_id).unwrap().matched, 0, "classify returned before touching the context");
    harness.delete_filter(block_id).unwrap();
    engine::delete_filter(permit_id).unwrap();
    harness.unload_and_check();
}

#[test]
fn ten_thousand_filters_with_assorted_policies() {
    let harness = Harness::load();
    let actions = [
        PolicyAction::Permit,
        PolicyAction::Block,
        PolicyAction::Audit,
        PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 },
        PolicyAction::Ask { timeout_ms: 5, default_verdict: Verdict::Block },
    ];
    let mut filters = Vec::new();
    for i in 0..10_000usize {
        let layer = Layer::ALL[i % 4];
        let action = actions[i % actions.len()];
        let label = format!("filter-{i}");
        let repr = PolicyRepr { action, log_level: LogLevel::Off, label: Label::new(&label).unwrap() };
        let source = if i % 7 == 0 { PolicySource::None } else { PolicySource::Policy(&repr) };
        let expected_action = if i % 7 == 0 { PolicyAction::Permit } else { action };
        filters.push((harness.add_filter(layer, source).unwrap(), layer, expected_action));
    }
    assert_eq!(harness.context_count(), 10_000);
    for (round, expect_first) in [(0, true), (1, false)] {
        for &(id, layer, action) in &filters {
            let permitted = harness.classify(layer, id, 8080).permitted();
            let expected = match action {
                PolicyAction::Permit | PolicyAction::Audit => true,
                PolicyAction::Block => false,
                PolicyAction::RateLimit { .. } => expect_first,
                PolicyAction::Ask { default_verdict, .. } => default_verdict == Verdict::Permit,
            };
            assert_eq!(permitted, expected, "filter {id} {action:?} round {round}");
        }
    }
    for &(id, _, action) in &filters {
        let c = harness.counters(id).unwrap();
        assert_eq!(c.matched, 2);
        assert_eq!(c.permitted + c.blocked, 2);
        assert_eq!(c.audited, if action == PolicyAction::Audit { 2 } else { 0 });
        assert_eq!(c.rate_limited, u64::from(matches!(action, PolicyAction::RateLimit { .. })));
    }
    for &(id, _, _) in &filters {
        harness.delete_filter(id).unwrap();
    }
    assert_eq!(harness.context_count(), 0);
    assert_eq!(stat(&STATE.stats.filters_added), 10_000);
    assert_eq!(stat(&STATE.stats.filters_deleted), 10_000);
    harness.unload_and_check();
}

#[test]
fn notify_at_dispatch_level_works() {
    let harness = Harness::load();
    engine::set_notify_irql(DISPATCH_LEVEL);
    let repr = policy(PolicyAction::Block);
    let id = harness.add_filter(Layer::RecvAcceptV6, PolicySource::Policy(&repr)).unwrap();
    assert!(!harness.classify(Layer::RecvAcceptV6, id, 22).permitted());
    harness.delete_filter(id).unwrap();
    engine::set_notify_irql(PASSIVE_LEVEL);
    harness.unload_and_check();
}

#[test]
fn unknown_notify_types_are_ignored_with_success() {
    let harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    let before = engine::filter_context(id);
    for notify_type in [FWPS_CALLOUT_NOTIFY_ADD_FILTER_POST_COMMIT, FWPS_CALLOUT_NOTIFY_TYPE_MAX, 77, -1] {
        assert_eq!(engine::send_notify(id, notify_type), Ok(STATUS_SUCCESS));
    }
    assert_eq!(engine::filter_context(id), before);
    assert_eq!(stat(&STATE.stats.notify_unknown_type), 4);
    assert!(harness.classify(Layer::ConnectV4, id, 80).permitted());
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

/// A tiny deterministic generator for garbage bytes.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn malformed_blobs_of_every_length_are_vetoed_without_leaks() {
    let harness = Harness::load();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let valid = policy(PolicyAction::RateLimit { rate_per_sec: 5, burst: 5 }).to_bytes();
    let mut vetoed = 0;
    for length in 0..=256usize {
        // Random bytes, and a valid blob truncated or extended to `length`.
        let random: Vec<u8> = (0..length).map(|_| xorshift(&mut seed) as u8).collect();
        let mut reshaped = valid.clone();
        reshaped.resize(length, 0xAB);
        for bytes in [random, reshaped] {
            match harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(&bytes)) {
                Ok(id) => {
                    // Only a well-formed blob gets in, and then it decodes.
                    assert!(PolicyRepr::parse(&bytes).is_ok() || bytes.is_empty());
                    harness.delete_filter(id).unwrap();
                }
                Err(status) => {
                    assert_eq!(status, STATUS_BAD_DATA, "length {length}");
                    assert!(PolicyRepr::parse(&bytes).is_err());
                    vetoed += 1;
                }
            }
        }
    }
    assert!(vetoed > 400);
    assert_eq!(stat(&STATE.stats.policies_rejected), vetoed);
    // A provider context of another type is malformed too.
    let key = engine::add_provider_context_of_type(fwp::FWPM_IPSEC_KEYING_CONTEXT, &valid);
    let mut spec = Harness::filter_spec(Layer::ConnectV4);
    spec.provider_context = Some(key);
    assert_eq!(engine::add_filter(&spec), Err(STATUS_BAD_DATA));
    assert_eq!(harness.context_count(), 0);
    harness.unload_and_check();
}

#[test]
fn label_with_a_control_character_is_vetoed() {
    // The label reaches DbgPrint lines, wfpctl's tables and filter names: a
    // blob whose label holds ESC (or any control character) is malformed,
    // whoever wrote it.
    let harness = Harness::load();
    let mut bytes = policy(PolicyAction::Block).to_bytes();
    let at = bytes.len() - 1;
    bytes[at] = 0x1b;
    assert_eq!(PolicyRepr::parse(&bytes), Err(wfpcallout_wire::WireError::LabelControlCharacter(0x1b)));
    let rejected = stat(&STATE.stats.policies_rejected);
    assert_eq!(harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(&bytes)), Err(STATUS_BAD_DATA));
    assert_eq!(stat(&STATE.stats.policies_rejected), rejected + 1);
    assert_eq!(harness.context_count(), 0);
    // The same blob with a printable last character gets in.
    bytes[at] = b'!';
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(&bytes)).unwrap();
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn allocation_failure_at_every_site_of_add_vetoes_cleanly() {
    let harness = Harness::load();
    let repr = policy(PolicyAction::Audit);
    // Grow the table first, so its resize is one of the sites tried.
    let mut nth = 0;
    loop {
        faults::fail_allocation(nth);
        let result = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&repr));
        faults::clear();
        match result {
            Err(status) => {
                assert_eq!(status, STATUS_INSUFFICIENT_RESOURCES, "allocation #{nth}");
                assert_eq!(harness.context_count(), 0);
                nth += 1;
            }
            Ok(id) => {
                assert!(harness.classify(Layer::ConnectV4, id, 80).permitted());
                harness.delete_filter(id).unwrap();
                break;
            }
        }
    }
    assert_eq!(nth, 3, "ADD allocates the context (its counters inside), a segment of slots and the table");
    assert_eq!(stat(&STATE.stats.allocation_failures), 3);
    harness.unload_and_check();
}

#[test]
fn delete_of_a_filter_never_seen_is_harmless() {
    let mut harness = Harness::load();
    // A filter added while the driver is unloaded, then never adopted
    // (enumeration fails at the next load).
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    harness.unload();
    faults::fail_call("FwpmFilterEnum0", 0, STATUS_UNSUCCESSFUL);
    harness.initialize().unwrap();
    assert!(STATE.classify_needs_lookup(), "adoption failed: classify must not trust filter->context");
    // The stale context word (fast path "permit" over a pointer into freed
    // pool) is never trusted.
    assert!(harness.classify(Layer::ConnectV4, id, 80).permitted());
    assert_eq!(stat(&STATE.stats.classify_without_context), 1);
    harness.delete_filter(id).unwrap();
    assert_eq!(stat(&STATE.stats.deletes_unknown), 1);
    harness.unload_and_check();
}

#[test]
fn filters_predating_registration_are_adopted_with_their_policies() {
    let mut harness = Harness::load();
    let block = policy(PolicyAction::Block);
    let audit = policy(PolicyAction::Audit);
    let blocked = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&block)).unwrap();
    let audited = harness.add_filter(Layer::ConnectV6, PolicySource::Policy(&audit)).unwrap();
    harness.unload();
    // Added while unloaded: no ADD; a garbage rawContext whose low bits say
    // "fast path, block" (the worst garbage: trusted, it would be
    // dereferenced to count and would block).
    let mut spec = Harness::filter_spec(Layer::ConnectV6);
    spec.raw_context = 0xDEAD_BEEF_DEAD_BEE3;
    let garbage = engine::add_filter(&spec).unwrap();
    harness.initialize().unwrap();
    assert_eq!(stat(&STATE.stats.filters_adopted), 3);
    assert_eq!(STATE.adopted_alive(), 3);
    assert!(!harness.classify(Layer::ConnectV4, blocked, 80).permitted());
    assert!(harness.classify(Layer::ConnectV6, audited, 80).permitted());
    assert!(harness.classify(Layer::ConnectV6, garbage, 80).permitted());
    assert_eq!(harness.counters(audited).unwrap().audited, 1);
    // New filters still get ADD, and work alongside the adopted ones.
    let fresh = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&block)).unwrap();
    assert!(!harness.classify(Layer::ConnectV4, fresh, 80).permitted());
    for id in [blocked, audited, garbage] {
        harness.delete_filter(id).unwrap();
    }
    assert!(!STATE.classify_needs_lookup(), "no adopted filter left: back on the fast path");
    assert!(!harness.classify(Layer::ConnectV4, fresh, 80).permitted());
    harness.delete_filter(fresh).unwrap();
    harness.unload_and_check();
}

#[test]
fn adopted_filter_with_malformed_policy_gets_the_default_and_is_counted() {
    let mut harness = Harness::load();
    harness.unload();
    // The management callout is gone; re-adding it needs the driver: load,
    // add a filter with a bad blob through a path that skips notify.
    harness.initialize().unwrap();
    let good = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    harness.unload();
    let mut spec = Harness::filter_spec(Layer::ConnectV4);
    spec.provider_context = Some(engine::add_provider_context(b"garbage"));
    let bad = engine::add_filter(&spec).unwrap();
    harness.initialize().unwrap();
    assert_eq!(stat(&STATE.stats.adopted_policies_rejected), 1);
    assert!(harness.classify(Layer::ConnectV4, bad, 80).permitted());
    for id in [good, bad] {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
}

#[test]
fn lost_delete_notifications_are_freed_at_unload() {
    let harness = Harness::load();
    let ids: Vec<u64> = (0..5).map(|_| harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap()).collect();
    engine::lose_delete_notifications(5);
    for id in &ids {
        harness.delete_filter(*id).unwrap();
    }
    assert_eq!(harness.context_count(), 5, "the driver was never told");
    harness.unload_and_check();
}

#[test]
fn add_failure_for_duplicate_id_is_impossible_but_reported() {
    let harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    let context = STATE.table.get(id).unwrap();
    let duplicate = wfpcallout::filters::filter_context::ContextRef::try_new(
        id,
        0,
        wfpcallout::filters::filter_context::Origin::Notified,
        PolicyRepr::DEFAULT,
    )
    .unwrap();
    match STATE.table.insert(id, duplicate) {
        Err((status, rejected)) => {
            assert_eq!(status, NtStatus::ALREADY_EXISTS);
            drop(rejected);
        }
        Ok(()) => panic!("duplicate filter id accepted"),
    }
    assert_eq!(context.reference_count(), 3, "the table's, its slot's and ours");
    drop(context);
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn filters_deleted_while_other_threads_classify() {
    let harness = Harness::load();
    let repr = policy(PolicyAction::Audit);
    let ids: Vec<u64> =
        (0..200).map(|i| harness.add_filter(Layer::ALL[i % 4], PolicySource::Policy(&repr)).unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let classified = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let (ids, stop, classified) = (ids.clone(), stop.clone(), classified.clone());
            std::thread::spawn(move || {
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let id = ids[i % ids.len()];
                    // The filter may be gone: then the engine says so.
                    if let Ok(result) = engine::classify_filter(id, &Layer::ALL[i % 4].connection(80)) {
                        assert!(result.permitted());
                        classified.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 7;
                }
            })
        })
        .collect();
    // Deletes start once the workers are classifying (on a busy machine the
    // deletes could otherwise all finish before a worker has run).
    while classified.load(Ordering::Relaxed) < 300 {
        std::thread::yield_now();
    }
    for id in &ids {
        harness.delete_filter(*id).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(classified.load(Ordering::Relaxed) > 0);
    assert_eq!(harness.context_count(), 0);
    // A deleted filter's context waits for a grace period (every rundown
    // line seen idle since its release), which a DELETE or the timer
    // completes. With the workers classifying all along (preempted inside
    // the rundown, on a busy machine), the deletes may not have seen one:
    // the next timer tick, with nobody inside, does.
    wfpcallout::control::lifecycle::on_timer();
    let usage = pool::usage_by_tag();
    assert!(!usage.contains_key("WfFc"), "contexts left after a timer tick with no classify in flight: {usage:?}");
    harness.unload_and_check();
}
