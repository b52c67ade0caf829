//! The end-to-end scenario in the simulated kernel: load the driver, add a
//! filter per policy kind, classify through each, read the counters, delete
//! the filters, unload, and show that the pool is back to zero with no
//! verifier violation. Exits non-zero if anything is off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

    harness.unload();
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
