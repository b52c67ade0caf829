//! Flow contexts: connections our permit/audit filters let through are
//! tracked at ALE_FLOW_ESTABLISHED with a reference on their filter; the
//! engine's flowDeleteFn frees them at DISPATCH_LEVEL from any thread,
//! also after the filter was deleted; unload removes them (PENDING
//! included) before unregistering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::*;
use std::sync::atomic::Ordering;
use wfpcallout::callbacks::state::STATE;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{self, flows};
use wfpcallout_simkernel::{faults, pool};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

fn policy(action: PolicyAction) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new("flows").unwrap() }
}

fn live_and_total(filter: u64) -> (u64, u64) {
    STATE.table.get(filter).map(|c| c.flows()).unwrap()
}

fn no_flow_memory() -> bool {
    let usage = pool::usage_by_tag();
    !usage.contains_key("WfFl")
}

#[test]
fn ten_thousand_flows_across_filters_are_counted_and_freed_once() {
    let harness = Harness::load();
    // Permit at the v4 layer, audit at v6; six filters per layer.
    let filters: Vec<(u64, Layer)> = (0..12)
        .map(|i| {
            let layer = Layer::FLOWS[i % 2];
            let action = [PolicyAction::Permit, PolicyAction::Audit][i % 2];
            (harness.add_filter(layer, PolicySource::Policy(&policy(action))).unwrap(), layer)
        })
        .collect();
    let mut handles = Vec::new();
    for i in 0..10_000usize {
        let layer = Layer::FLOWS[i % 2];
        let mut connection = layer.connection(1_000 + (i % 50_000) as u16);
        connection.local_port = (i % 60_000) as u16;
        let (handle, result) = engine::flows::establish_flow(&connection);
        // Inspection filters answer CONTINUE: every one of the layer sees
        // the flow and none decides.
        assert_eq!((result.decided_by, result.callouts_invoked), (None, 6));
        assert!(result.permitted());
        handles.push(handle);
    }
    // One flow context per flow and callout: the first filter reached
    // tracks the flow, the others find it tracked already.
    let (first_v4, first_v6) = (filters[0].0, filters[1].0);
    assert_eq!(live_and_total(first_v4), (5_000, 5_000), "permit tracks");
    assert_eq!(live_and_total(first_v6), (5_000, 5_000), "audit tracks");
    for (filter, _) in filters.iter().skip(2) {
        assert_eq!(live_and_total(*filter), (0, 0), "one context per flow and callout");
    }
    assert_eq!(STATE.flows.len(), 10_000);
    assert!(!STATE.flows.is_empty());
    assert_eq!(STATE.flows.stats.already_tracked.load(Ordering::Relaxed), 50_000);
    assert_eq!(STATE.flows.stats.associate_failures.load(Ordering::Relaxed), 0);
    // Flows end on two other threads, at DISPATCH_LEVEL.
    let (a, b) = handles.split_at(5_000);
    let (a, b) = (a.to_vec(), b.to_vec());
    let enders = [a, b].map(|chunk| std::thread::spawn(move || chunk.into_iter().for_each(flows::end_flow)));
    for ender in enders {
        ender.join().unwrap();
    }
    assert_eq!(live_and_total(first_v4), (0, 5_000));
    assert_eq!(live_and_total(first_v6), (0, 5_000));
    assert_eq!(STATE.flows.len(), 0);
    assert!(STATE.flows.is_empty());
    assert!(no_flow_memory());
    for (filter, _) in &filters {
        harness.delete_filter(*filter).unwrap();
    }
    harness.unload_and_check();
}

/// "A filter at this layer should not return Block or Permit" (ALE Layers):
/// at ALE_FLOW_ESTABLISHED our classify answers CONTINUE (the simulator
/// reports any PERMIT or BLOCK there), and notifyFn ADD refuses what cannot
/// work there: block, rate-limit and ask policies, and a TERMINATING action
/// (which would turn CONTINUE into BLOCK).
#[test]
fn flow_layers_answer_continue_and_refuse_what_needs_a_verdict() {
    let harness = Harness::load();
    let incompatible = Err(STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER);
    for action in [
        PolicyAction::Block,
        PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 },
        PolicyAction::Ask { timeout_ms: 100, default_verdict: wfpcallout_wire::Verdict::Permit },
    ] {
        assert_eq!(harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(action))), incompatible);
    }
    let mut terminating = Harness::filter_spec(Layer::FlowV6);
    terminating.action = engine::FilterAction::CalloutTerminating(Layer::FlowV6.spec().key);
    let permit = policy(PolicyAction::Permit);
    assert_eq!(harness.add_filter_with(terminating, PolicySource::Policy(&permit)), incompatible);
    assert_eq!(STATE.table.len(), 0, "nothing was added");
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&permit)).unwrap();
    engine::trace_classify_out(true);
    let (handle, result) = flows::establish_flow(&Layer::FlowV4.connection(80));
    let trace = engine::take_classify_out_trace();
    engine::trace_classify_out(false);
    assert_eq!(result.decided_by, None);
    let ours = trace.iter().find(|t| t.filter_id == filter).unwrap();
    let action_type = u32::from_ne_bytes(ours.after[..4].try_into().unwrap());
    assert_eq!(action_type, fwp::FWP_ACTION_CONTINUE);
    assert_eq!(live_and_total(filter), (1, 1), "the flow is tracked");
    flows::end_flow(handle);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn filter_deleted_while_its_flows_live() {
    let harness = Harness::load();
    let filter = harness.add_filter(Layer::FlowV6, PolicySource::Policy(&policy(PolicyAction::Audit))).unwrap();
    let handles: Vec<u64> = (0..20).map(|p| flows::establish_flow(&Layer::FlowV6.connection(p)).0).collect();
    let context = STATE.table.get(filter).unwrap();
    harness.delete_filter(filter).unwrap();
    assert!(STATE.table.get(filter).is_none(), "gone from the table");
    assert_eq!(context.reference_count(), 21, "20 flows + ours keep it alive");
    drop(context);
    assert!(pool::usage_by_tag().contains_key("WfFc"), "the context lives until its last flow ends");
    for handle in handles {
        flows::end_flow(handle);
    }
    assert!(!pool::usage_by_tag().contains_key("WfFc"), "freed with the last flow");
    harness.unload_and_check();
}

#[test]
fn unload_with_live_flows_removes_them_first() {
    let mut harness = Harness::load();
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    let handles: Vec<u64> = (0..50).map(|p| flows::establish_flow(&Layer::FlowV4.connection(p)).0).collect();
    harness.unload();
    assert_eq!(flows::contexts_of(engine::callout_id(&Layer::FlowV4.spec().key).unwrap()), 0);
    assert!(!engine::is_registered(&Layer::FlowV4.spec().key), "unregistered once no context remained");
    for handle in handles {
        flows::end_flow(handle);
    }
    harness.delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn unload_waits_for_a_pending_removal() {
    let mut harness = Harness::load();
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    let (busy, _) = flows::establish_flow(&Layer::FlowV4.connection(443));
    let (idle, _) = flows::establish_flow(&Layer::FlowV4.connection(444));
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inside_flag = inside.clone();
    let classifier = std::thread::spawn(move || {
        flows::during_flow_classify(busy, || {
            inside_flag.store(true, Ordering::Release);
            // Hold the classify until unload has asked for the removal.
            while !flows::has_deferred_removal(busy) {
                std::thread::yield_now();
            }
        });
    });
    while !inside.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    harness.unload();
    classifier.join().unwrap();
    assert_eq!(STATE.flows.len(), 0, "PENDING removal freed in flowDeleteFn");
    assert!(!engine::is_registered(&Layer::FlowV4.spec().key));
    for handle in [busy, idle] {
        flows::end_flow(handle);
    }
    harness.delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn association_failure_leaves_the_flow_untracked() {
    let harness = Harness::load();
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    faults::fail_call("FwpsFlowAssociateContext0", 0, STATUS_INSUFFICIENT_RESOURCES);
    let (first, result) = flows::establish_flow(&Layer::FlowV4.connection(1));
    assert!(result.permitted());
    faults::fail_allocation(0);
    let (second, _) = flows::establish_flow(&Layer::FlowV4.connection(2));
    assert_eq!(STATE.flows.stats.associate_failures.load(Ordering::Relaxed), 2);
    assert_eq!(
        live_and_total(filter),
        (0, 0),
        "a failed association is not a tracked flow; the second never allocated"
    );
    assert_eq!(STATE.flows.len(), 0);
    for handle in [first, second] {
        flows::end_flow(handle);
    }
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn flow_delete_for_a_context_we_do_not_hold_is_ignored() {
    let harness = Harness::load();
    wfpcallout_simkernel::irql::at_dispatch(|| wfpcallout::callbacks::flow_delete::flow_delete_fn(52, 1, 0xDEAD_BEEF));
    assert_eq!(STATE.flows.stats.delete_unknown.load(Ordering::Relaxed), 1);
    harness.unload_and_check();
}

/// Unload overlapping an association: unload's removal pass runs while
/// FwpsFlowAssociateContext0 is between its check and its attach (stopped
/// there with a sync point). The removal must not give the context up as
/// "not associated" (it would stay with the engine for good and keep the
/// callout busy: unload would never return). Unload returns, with every
/// callout unregistered and nothing leaked.
#[test]
fn unload_racing_an_association_still_removes_the_context() {
    use wfpcallout_simkernel::sync_points;
    let harness = Harness::load();
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    let pause = sync_points::arm(sync_points::FLOW_ASSOCIATE_CALLOUT_CHECKED);
    let (handle, unload_waited) = std::thread::scope(|scope| {
        let flow = scope.spawn(|| flows::establish_flow(&Layer::FlowV4.connection(443)).0);
        pause.wait_reached();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let unloader = scope.spawn(move || {
            wfpcallout::control::lifecycle::unload();
            let _ = done_tx.send(());
        });
        // Unload's removal pass finds the entry; its unregistration then
        // waits for the association (the engine is atomic).
        let waited = sync_points::wait_blocked_or_finished(&unloader);
        pause.resume();
        let handle = flow.join().unwrap();
        // A hang guard, not a timing assertion: a driver that lost the
        // context never returns from unload at all.
        if done_rx.recv_timeout(std::time::Duration::from_secs(120)).is_err() {
            eprintln!("unload did not return: the context stayed with the engine");
            std::process::abort();
        }
        unloader.join().unwrap();
        (handle, waited)
    });
    assert!(unload_waited, "unregistration waited for the association");
    assert!(!engine::is_registered(&Layer::FlowV4.spec().key), "unload returned with the callout unregistered");
    assert_eq!(flows::contexts_of(engine::callout_id(&Layer::FlowV4.spec().key).unwrap()), 0);
    flows::end_flow(handle);
    harness.delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

/// The registration window: notifyFn ADD can come for a filter naming our
/// callout before FwpsCalloutRegister2 has returned its run-time id to us,
/// so the driver cannot tell the filter's layer yet. Such a filter (here a
/// static permit at a flow layer, the id hidden for the ADD) must still be
/// answered as its real layer requires: CONTINUE at flow-established, never
/// a static PERMIT from the fast path.
#[test]
fn an_add_during_registration_is_answered_by_the_layer_it_classifies_at() {
    let harness = Harness::load();
    let slot = Layer::FlowV4 as usize;
    let id = STATE.callout_ids[slot].swap(0, Ordering::AcqRel);
    let filter = harness.add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit))).unwrap();
    STATE.callout_ids[slot].store(id, Ordering::Release);
    engine::trace_classify_out(true);
    let (handle, result) = flows::establish_flow(&Layer::FlowV4.connection(80));
    let trace = engine::take_classify_out_trace();
    engine::trace_classify_out(false);
    assert!(result.permitted());
    let ours = trace.iter().find(|t| t.filter_id == filter).unwrap();
    assert_eq!(u32::from_ne_bytes(ours.after[..4].try_into().unwrap()), fwp::FWP_ACTION_CONTINUE);
    flows::end_flow(handle);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}
