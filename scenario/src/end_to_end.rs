//! The end-to-end scenario in the simulated kernel, as the scenario binary
//! prints it: load the driver, add a filter per policy kind, classify
//! through each, read the counters, answer an ask request as the agent,
//! track flows, have a malformed policy vetoed, meet another vendor's
//! filter, delete everything, unload, and show that the pool is back to
//! zero with no verifier violation.
//!
//! The output is for a WFP engineer: layers by their `FWPM_LAYER_*` names,
//! NTSTATUS codes with their names, policies in words, why a default
//! verdict applied, and one aligned table of the filters.
#![forbid(unsafe_code)]

use std::io::{self, Write};

use wfpcallout::callbacks::state::STATE;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

use wfpcallout_wire::text::{Table, verdict_name};

use crate::names::{layer_name, policy_text, status_text};
use crate::{Harness, Layer, PolicySource, simkernel};

/// What `wfpcallout-scenario --help` prints.
pub const HELP: &str = "\
Runs the wfpcallout driver through its end-to-end scenario in the simulated kernel:
load, a filter per policy (permit, block, audit, rate-limit, ask), classification
through each, an agent answering an ask request, flow contexts, a malformed policy
vetoed by notifyFn, another vendor's filter, delete, unload, and the pool and
verifier checks. Prints what happened; exits with 0 when every result was the
expected one, 1 otherwise, 2 on a usage error.

Usage: wfpcallout-scenario [--help]

To try wfpctl's commands against the same simulated driver:
  cargo run -p wfpcallout-scenario --features tryout --bin wfpctl-sim -- --help";

/// What the scenario binary was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run the scenario.
    Run,
    /// Print [`HELP`].
    Help,
}

/// Reads the binary's arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Invocation, String> {
    match args {
        [] => Ok(Invocation::Run),
        [flag] if flag == "--help" || flag == "-h" => Ok(Invocation::Help),
        other => Err(format!("unexpected argument '{}' (the scenario takes none but --help)", other.join(" "))),
    }
}

fn policy(action: PolicyAction, label: &str) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new(label).unwrap() }
}

fn verdict(permitted: bool) -> &'static str {
    if permitted { "PERMIT" } else { "BLOCK" }
}

/// The table's columns: (header, right-aligned).
pub const COLUMNS: [(&str, bool); 9] = [
    ("FILTER", true),
    ("LAYER", false),
    ("LABEL", false),
    ("POLICY", false),
    ("4 CONNECTIONS", false),
    ("MATCHED", true),
    ("PERMITTED", true),
    ("BLOCKED", true),
    ("WHY", false),
];

/// Runs the scenario, writing its report to `out`; returns whether every
/// result was the expected one and the verifier saw nothing.
pub fn run(out: &mut dyn Write) -> io::Result<bool> {
    writeln!(out, "wfpcallout scenario in the simulated kernel")?;
    let mut harness = Harness::boot();
    harness.initialize().expect("driver loads");
    writeln!(out, "  loaded: {} callouts registered, provider, sublayer and callouts added", STATE.callout_ids.len())?;

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
    let mut rows = Table::new(&COLUMNS).indented("  ");
    for (layer, repr, port, expected) in &cases {
        let id = harness.add_filter(*layer, PolicySource::Policy(repr)).expect("filter add");
        filters.push(id);
        let agent_connected = STATE.agents.connected();
        let verdicts: Vec<bool> = (0..4).map(|_| harness.classify(*layer, id, *port).permitted()).collect();
        let ok = verdicts == expected;
        failures += usize::from(!ok);
        let counters = harness.counters(id).unwrap_or_default();
        let why = match repr.action {
            PolicyAction::Ask { default_verdict, .. } if !agent_connected => {
                format!("no agent connected: default ({})", verdict_name(default_verdict))
            }
            PolicyAction::RateLimit { .. } => "over the rate: blocked".to_string(),
            PolicyAction::Audit => "permitted and counted as audited".to_string(),
            _ => "the policy".to_string(),
        };
        rows.push(vec![
            id.to_string(),
            layer_name(layer.spec().layer_id),
            repr.label.as_str().to_string(),
            policy_text(repr),
            verdicts.iter().map(|&p| verdict(p)).collect::<Vec<_>>().join(" "),
            counters.matched.to_string(),
            counters.permitted.to_string(),
            counters.blocked.to_string(),
            if ok { why } else { format!("{why}  <-- UNEXPECTED") },
        ]);
    }
    write!(out, "{}", rows.render())?;

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
    writeln!(
        out,
        "  filter {ask_id} at {} \"ask-ssh\" ({}), agent connected: pended (BLOCK + ABSORB), the agent read \
         request {} and answered PERMIT, the reauthorization got {}{}",
        layer_name(Layer::ConnectV4.spec().layer_id),
        policy_text(&ask),
        answered.map_or(0, |a| a.0),
        reauthorized.map_or("nothing", |r| verdict(r.permitted())),
        if ask_ok { "" } else { "  <-- UNEXPECTED" }
    )?;
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
    writeln!(
        out,
        "  filter {flow_id} at {} \"track-web\" (permit, inspection callout): 3 flows established, {} live; \
         one ended, {} live, {} ever{}",
        layer_name(Layer::FlowV4.spec().layer_id),
        live.0,
        after_end.0,
        after_end.1,
        if flows_ok { "" } else { "  <-- UNEXPECTED" }
    )?;

    let malformed = harness.add_filter(Layer::ConnectV4, PolicySource::Bytes(b"not a policy"));
    writeln!(
        out,
        "  malformed policy blob: FwpmFilterAdd0 failed with {}: notifyFn vetoed the filter{}",
        malformed.err().map_or_else(|| "success".to_string(), status_text),
        if malformed.is_ok() { "  <-- UNEXPECTED" } else { "" }
    )?;
    failures += usize::from(malformed.is_ok());

    for id in &filters {
        harness.delete_filter(*id).expect("filter delete");
    }
    writeln!(out, "  deleted {} filters; filter contexts left: {}", filters.len(), harness.context_count())?;

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
    writeln!(
        out,
        "  another vendor's hard permit (higher sublayer) above our block: port 3389 {} (its filter {}), \
         port 3390 {} (our filter {}); it inspected {} classifications{}",
        verdict(excepted.permitted()),
        permit_above,
        verdict(elsewhere.permitted()),
        ours,
        simkernel::vendor::Vendor::inspected(),
        if vendor_ok { "" } else { "  <-- UNEXPECTED" }
    )?;
    vendor.uninstall();
    harness.delete_filter(ours).expect("filter delete");

    // The two remaining flows are still live: unload removes their contexts
    // before it unregisters the callouts.
    harness.unload();
    for flow in flows.iter().skip(1) {
        simkernel::engine::flows::end_flow(*flow);
    }
    let (allocations, frees) = simkernel::pool::totals();
    let live_blocks = simkernel::pool::live_blocks();
    writeln!(out, "  unloaded: {allocations} pool allocations, {frees} frees, {live_blocks} blocks still allocated")?;
    for (tag, usage) in simkernel::pool::usage_by_tag() {
        writeln!(out, "    leaked: tag {tag}: {} blocks", usage.blocks)?;
    }
    let violations = simkernel::verifier::violations();
    writeln!(out, "  verifier violations: {}", violations.len())?;
    for violation in &violations {
        writeln!(out, "    {violation}")?;
    }
    let passed = failures == 0 && violations.is_empty() && live_blocks == 0;
    if passed {
        writeln!(out, "scenario passed")?;
    } else {
        writeln!(out, "scenario FAILED: {failures} unexpected result(s), {} violation(s)", violations.len())?;
    }
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args = |list: &[&str]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(parse_args(&args(&[])), Ok(Invocation::Run));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Invocation::Help));
        assert_eq!(parse_args(&args(&["-h"])), Ok(Invocation::Help));
        assert!(parse_args(&args(&["--bogus"])).unwrap_err().contains("unexpected argument '--bogus'"));
        assert!(parse_args(&args(&["--help", "x"])).is_err());
        assert!(HELP.contains("Usage: wfpcallout-scenario [--help]"));
    }

    /// The shape a WFP engineer reads: FWPM layer names, one aligned
    /// table, policies in words, the reason for default verdicts, status
    /// names, and no Rust debug formatting.
    #[test]
    fn the_report_keeps_its_shape() {
        let mut out = Vec::new();
        assert!(run(&mut out).unwrap(), "{}", String::from_utf8_lossy(&out));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|line| line.trim_start().starts_with("FILTER")).expect("a table");
        let table = &lines[header..header + 6];
        // Indented under the title, as every line of the report is.
        assert!(table.iter().all(|line| line.starts_with("  ")), "{}", table.join("\n"));
        // Aligned: every column starts at the same place on every line.
        for column in ["LAYER", "LABEL", "POLICY", "4 CONNECTIONS", "WHY"] {
            let at = table[0].find(column).unwrap();
            for line in &table[1..] {
                assert_eq!(line.as_bytes()[at - 2..at], *b"  ", "{column} misaligned in\n{}", table.join("\n"));
                assert_ne!(line.as_bytes()[at], b' ', "{column} misaligned in\n{}", table.join("\n"));
            }
        }
        let cells = |label: &str| table.iter().find(|line| line.contains(label)).unwrap().to_string();
        let allow_line = cells("allow-web");
        let allow: Vec<&str> = allow_line.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(allow[..4], ["70001", "FWPM_LAYER_ALE_AUTH_CONNECT_V4", "allow-web", "permit"], "{text}");
        assert!(cells("deny-telnet").contains("FWPM_LAYER_ALE_AUTH_CONNECT_V6"), "{text}");
        assert!(cells("limit-dns").contains("rate-limit 1/s burst 2"), "{text}");
        assert!(cells("limit-dns").contains("PERMIT PERMIT BLOCK BLOCK"), "{text}");
        let ask = cells("ask-rdp");
        assert!(ask.contains("FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6"), "{text}");
        assert!(ask.contains("ask 1000 ms, else block"), "{text}");
        assert!(ask.ends_with("no agent connected: default (block)"), "{text}");
        assert!(text.contains("FwpmFilterAdd0 failed with 0xC000090B (STATUS_BAD_DATA)"), "{text}");
        for debug in ["RateLimit {", "Ask {", "ConnectV4", "{}", "Some(", "<-- UNEXPECTED"] {
            assert!(!text.contains(debug), "{debug} in\n{text}");
        }
        assert!(text.ends_with("scenario passed\n"), "{text}");
    }
}
