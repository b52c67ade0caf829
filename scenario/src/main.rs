//! The end-to-end scenario in the simulated kernel: load the driver, add a
//! filter per policy kind, classify through each, read the counters, delete
//! the filters, unload, and show that the pool is back to zero with no
//! verifier violation. Exits non-zero if anything is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::ExitCode;
use wfpcallout::driver_state::STATE;
use wfpcallout_scenario::{Harness, Layer, PolicySource, simkernel};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

fn policy(action: PolicyAction, label: &str) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new(label).unwrap() }
}

fn verdict(permitted: bool) -> &'static str {
    if permitted { "PERMIT" } else { "BLOCK" }
}

fn main() -> ExitCode {
    println!("wfpcallout scenario in the simulated kernel");
    let mut harness = Harness::boot();
    harness.initialize().expect("driver loads");
    println!("  loaded: {} callouts registered, provider/sublayer/callouts added", STATE.callout_ids.len());

    let cases = [
        (Layer::ConnectV4, policy(PolicyAction::Permit, "allow-web"), 443, [true, true, true, true]),
        (Layer::ConnectV6, policy(PolicyAction::Block, "deny-telnet"), 23, [false, false, false, false]),
        (Layer::RecvAcceptV4, policy(PolicyAction::Audit, "audit-ssh"), 22, [true, true, true, true]),
        (
            Layer::ConnectV4,
            policy(PolicyAction::RateLimit { rate_per_sec: 1, burst: 2 }, "limit-dns"),
            53,
            [true, true, false, false],
        ),
        (
            Layer::RecvAcceptV6,
            policy(PolicyAction::Ask { timeout_ms: 1000, default_verdict: Verdict::Block }, "ask-rdp"),
            3389,
            [false, false, false, false],
        ),
    ];
    let mut failures = 0;
    let mut filters = Vec::new();
    for (layer, repr, port, expected) in &cases {
        let id = harness.add_filter(*layer, PolicySource::Policy(repr)).expect("filter add");
        filters.push(id);
        let verdicts: Vec<bool> = (0..4).map(|_| harness.classify(*layer, id, *port).permitted()).collect();
        let ok = verdicts == expected;
        failures += usize::from(!ok);
        let counters = harness.counters(id).unwrap_or_default();
        println!(
            "  filter {id} {:?} {:<12} {:?}: {} (matched {}, permitted {}, blocked {}){}",
            layer,
            repr.label.as_str(),
            repr.action,
            verdicts.iter().map(|&p| verdict(p)).collect::<Vec<_>>().join(" "),
            counters.matched,
            counters.permitted,
            counters.blocked,
            if ok { "" } else { "  <-- UNEXPECTED" }
        );
    }

    // Asynchronous verdict: an agent answers an ask filter's request.
    let ask = policy(PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block }, "ask-ssh");
    // Weighted above allow-web, so the layer's classification reaches it first.
    let mut ask_spec = Harness::filter_spec(Layer::ConnectV4);
    ask_spec.weight = 10;
    let ask_id = harness.add_filter_with(ask_spec, PolicySource::Policy(&ask)).expect("ask filter");
    filters.push(ask_id);
    harness.connect_agent(0xA6E7);
    let pended = harness.classify_layer(Layer::ConnectV4, 22);
    let request = STATE.pending.take_next();
    let answered = request.map(|r| (r.request_id, STATE.pending.answer(r.request_id, Verdict::Permit)));
    let reauthorized = simkernel::engine::pending::take_completions().first().and_then(|c| c.reauthorization);
    let ask_ok = pended.pended.is_some()
        && matches!(answered, Some((_, Ok(()))))
        && reauthorized.is_some_and(|r| r.permitted() && r.decided_by == Some(ask_id));
    failures += usize::from(!ask_ok);
    println!(
        "  filter {ask_id} ConnectV4 ask-ssh: pended (BLOCK+ABSORB), agent read request {}, answered PERMIT, reauthorization -> {}{}",
        answered.map_or(0, |a| a.0),
        reauthorized.map_or("none", |r| verdict(r.permitted())),
        if ask_ok { "" } else { "  <-- UNEXPECTED" }
    );
    harness.disconnect_agent(0xA6E7);

    // Flow contexts: connections a permit filter lets through are tracked.
    let flow_id = harness
        .add_filter(Layer::FlowV4, PolicySource::Policy(&policy(PolicyAction::Permit, "track-web")))
        .expect("flow filter");
    filters.push(flow_id);
    let flows: Vec<u64> =
        (0..3).map(|port| simkernel::engine::flows::establish_flow(&Layer::FlowV4.connection(8080 + port)).0).collect();
    let live = STATE.table.get(flow_id).map(|c| c.flows()).unwrap_or_default();
    simkernel::engine::flows::end_flow(flows[0]);
    let after_end = STATE.table.get(flow_id).map(|c| c.flows()).unwrap_or_default();
    let flows_ok = live == (3, 3) && after_end == (2, 3);
    failures += usize::from(!flows_ok);
    println!(
        "  filter {flow_id} FlowV4 track-web: 3 flows established -> live {}, one ended -> live {} (ever {}){}",
        live.0,
        after_end.0,
        after_end.1,
        if flows_ok { "" } else { "  <-- UNEXPECTED" }
    );

    let malformed = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(b"not a policy"));
    println!(
        "  malformed policy blob: FwpmFilterAdd0 -> {:#010X} (vetoed by notifyFn)",
        malformed.err().unwrap_or(0) as u32
    );
    failures += usize::from(malformed.is_ok());

    for id in &filters {
        harness.delete_filter(*id).expect("filter delete");
    }
    println!("  deleted {} filters; contexts left: {}", filters.len(), harness.context_count());

    // Another vendor beside us: its hard permit above our block wins for
    // its port (our callout then runs without the write right and writes
    // nothing: the simulator checks every byte), our block holds elsewhere.
    let mut vendor = simkernel::vendor::Vendor::install(harness.kernel.device_object()).expect("vendor installs");
    let permit_above = vendor
        .add_static_filter(Layer::ConnectV4.spec().layer_key, true, simkernel::engine::FilterAction::Permit, true, 3389)
        .expect("vendor filter");
    let ours = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy(PolicyAction::Block, "no-rdp")));
    let ours = ours.expect("filter add");
    let excepted = harness.classify_layer(Layer::ConnectV4, 3389);
    let elsewhere = harness.classify_layer(Layer::ConnectV4, 3390);
    let vendor_ok = excepted.permitted()
        && excepted.decided_by == Some(permit_above)
        && !elsewhere.permitted()
        && elsewhere.decided_by == Some(ours);
    failures += usize::from(!vendor_ok);
    println!(
        "  another vendor: its hard permit above our block -> {} (port 3389), our block elsewhere -> {}; it inspected {} \
         classifications{}",
        verdict(excepted.permitted()),
        verdict(elsewhere.permitted()),
        simkernel::vendor::Vendor::inspected(),
        if vendor_ok { "" } else { "  <-- UNEXPECTED" }
    );
    vendor.uninstall();
    harness.delete_filter(ours).expect("filter delete");

    // The two remaining flows are still live: unload removes their contexts
    // before it unregisters the callouts.
    harness.unload();
    for flow in flows.iter().skip(1) {
        simkernel::engine::flows::end_flow(*flow);
    }
    let usage = simkernel::pool::usage_by_tag();
    let (allocations, frees) = simkernel::pool::totals();
    println!(
        "  unloaded: {allocations} pool allocations, {frees} frees, {} blocks live {usage:?}",
        simkernel::pool::live_blocks()
    );
    simkernel::pool::report_leaks();
    let violations = simkernel::verifier::violations();
    println!("  verifier violations: {}", violations.len());
    for violation in &violations {
        println!("    {violation}");
    }
    if failures == 0 && violations.is_empty() {
        println!("scenario passed");
        ExitCode::SUCCESS
    } else {
        println!("scenario FAILED: {failures} unexpected result(s), {} violation(s)", violations.len());
        ExitCode::FAILURE
    }
}
