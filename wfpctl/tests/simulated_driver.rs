//! wfpctl against the real driver code in the simulated kernel: the filters
//! `filter add` describes and the policy blobs it encodes go through the
//! driver's notifyFn, classify applies them, and `filter list`, `stats` and
//! `agent` read the driver's actual IOCTL replies.
//!
//! The backend here stands where the Windows one calls `FwpmFilterAdd0`
//! and `DeviceIoControl`: it hands the same `FilterSpec` and blob to the
//! simulated engine, and the same IOCTL buffers to the driver's control
//! dispatch. Host only (the simulated kernel is the non-Windows build).
#![cfg(not(windows))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Cursor;

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::callout_table::{CALLOUTS, PROVIDER_KEY, SUBLAYER_KEY};
use wfpcallout_scenario::Layer as SimLayer;
use wfpcallout_scenario::simulated_backend::{HANDLE_TOKEN, SimulatedBackend, portable_key};
use wfpcallout_simkernel::engine::pending;
use wfpctl::filter_spec::{CalloutTarget, ConditionField};
use wfpctl::keys::{self, Guid};
use wfpctl::run::{Io, Outcome, run, run_as};

fn key(guid: &GUID) -> Guid {
    portable_key(guid)
}

/// Runs a command line; returns its outcome and standard output.
fn wfpctl(backend: &mut SimulatedBackend, line: &str) -> (Outcome, String) {
    let invocation = wfpctl::cli::parse_from(std::iter::once("wfpctl").chain(line.split_whitespace())).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = Cursor::new(Vec::new());
    let outcome = run_as(
        &invocation.command,
        invocation.format,
        backend,
        &mut Io { out: &mut out, err: &mut err, input: &mut input },
    )
    .unwrap_or_else(|error| panic!("{line}: {error}\n{}", String::from_utf8_lossy(&err)));
    (outcome, String::from_utf8(out).unwrap())
}

fn row(listing: &str, id: u64) -> Vec<&str> {
    listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no row for {id} in\n{listing}"))
        .split_whitespace()
        .collect()
}

#[test]
fn wfpctl_uses_the_drivers_keys() {
    assert_eq!(keys::PROVIDER_KEY, key(&PROVIDER_KEY));
    assert_eq!(keys::SUBLAYER_KEY, key(&SUBLAYER_KEY));
    assert_eq!(CALLOUTS.len(), CalloutTarget::ALL.len());
    for (target, spec) in CalloutTarget::ALL.iter().zip(CALLOUTS.iter()) {
        assert_eq!(target.callout_key(), key(&spec.key), "{target}");
        assert_eq!(target.layer_key(), key(&spec.layer_key), "{target}");
    }
    for (field, windows) in [
        (ConditionField::Protocol, fwp::FWPM_CONDITION_IP_PROTOCOL),
        (ConditionField::RemoteAddress, fwp::FWPM_CONDITION_IP_REMOTE_ADDRESS),
        (ConditionField::RemotePort, fwp::FWPM_CONDITION_IP_REMOTE_PORT),
        (ConditionField::LocalAddress, fwp::FWPM_CONDITION_IP_LOCAL_ADDRESS),
        (ConditionField::LocalPort, fwp::FWPM_CONDITION_IP_LOCAL_PORT),
    ] {
        assert_eq!(field.key(), key(&windows), "{field:?}");
    }
}

#[test]
fn filters_added_by_wfpctl_are_decoded_and_applied_by_the_driver() {
    let mut backend = SimulatedBackend::load().unwrap();
    let (_, out) = wfpctl(
        &mut backend,
        "filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action block --label web --log trace",
    );
    let blocking: u64 = out.trim().parse().unwrap();
    let (_, out) = wfpctl(&mut backend, "filter add --layer connect --ip v4 --remote-port 80 --action audit");
    let auditing: u64 = out.trim().parse().unwrap();
    let (_, out) = wfpctl(
        &mut backend,
        "filter add --layer connect --ip v4 --remote-port 81 --action rate-limit --rate 1 --burst 2",
    );
    let limiting: u64 = out.trim().parse().unwrap();
    assert_eq!(backend.harness().context_count(), 3, "notifyFn attached a context to each");

    // The driver decoded the policies wfpctl encoded.
    let policy = STATE.table.get(blocking).unwrap().policy().to_owned();
    assert_eq!(policy.label.as_str(), "web");
    assert!(!backend.harness().classify_layer(SimLayer::ConnectV4, 443).permitted(), "blocked by the block filter");
    assert!(backend.harness().classify_layer(SimLayer::ConnectV4, 80).permitted(), "audit permits");
    assert!(backend.harness().classify_layer(SimLayer::ConnectV4, 80).permitted());
    let limited: Vec<bool> =
        (0..3).map(|_| backend.harness().classify_layer(SimLayer::ConnectV4, 81).permitted()).collect();
    assert_eq!(limited, [true, true, false], "a burst of two, then the rate limit");
    assert!(backend.harness().classify_layer(SimLayer::ConnectV4, 22).permitted(), "no filter matches port 22");

    // `filter list` shows the driver's view of each filter.
    let (_, listing) = wfpctl(&mut backend, "filter list");
    assert_eq!(
        row(&listing, blocking)[..14],
        [
            &blocking.to_string(),
            "connect-v4",
            "protocol=tcp",
            "remote-port=443",
            "block",
            "web",
            "trace",
            "1",
            "0",
            "1",
            "0",
            "0",
            "0",
            "0"
        ]
    );
    assert_eq!(
        row(&listing, auditing)[..12],
        [&auditing.to_string(), "connect-v4", "remote-port=80", "audit", "-", "off", "2", "2", "0", "2", "0", "0"]
    );
    let limiting_row = row(&listing, limiting);
    assert_eq!(limiting_row[3..7], ["rate-limit", "1/s", "burst", "2"]);
    assert_eq!(limiting_row[9..14], ["3", "2", "1", "0", "1"], "matched, permitted, blocked, audited, rate-limited");

    // `stats` reads the global counters.
    let (_, stats) = wfpctl(&mut backend, "stats");
    assert!(stats.lines().any(|line| line.split_whitespace().eq(["filter_contexts_alive", "3"])), "{stats}");
    assert!(stats.lines().any(|line| line.split_whitespace().eq(["filters_added", "3"])), "{stats}");

    // `status` reads the driver's state.
    let (outcome, status) = wfpctl(&mut backend, "status");
    assert_eq!(outcome, Outcome::Success, "{status}");
    assert!(status.contains("callouts            registered"), "{status}");

    // `filter delete` releases the contexts through DELETE.
    let (_, out) = wfpctl(&mut backend, &format!("filter delete {blocking}"));
    assert_eq!(out, format!("deleted filter {blocking}\n"));
    assert!(backend.harness().classify_layer(SimLayer::ConnectV4, 443).permitted());
    let (outcome, _) = wfpctl(&mut backend, "filter delete --all-ours");
    assert_eq!(outcome, Outcome::Success);
    assert_eq!(backend.harness().context_count(), 0);
    let (_, listing) = wfpctl(&mut backend, "filter list");
    assert_eq!(listing, "no wfpcallout filters\n");
    assert_eq!(backend.unload().map(|_| ()), Ok(()));
}

#[test]
fn the_agent_answers_a_pended_connection() {
    let mut backend = SimulatedBackend::load().unwrap();
    let (_, out) = wfpctl(
        &mut backend,
        "filter add --layer connect --ip v4 --protocol tcp --action ask --timeout-ms 30000 --default block --label ask",
    );
    let filter: u64 = out.trim().parse().unwrap();
    // The agent's handle is attached before the connection arrives (in
    // Windows, by its first, parked GET_REQUEST).
    backend.harness().connect_agent(HANDLE_TOKEN);
    let first = backend.harness().classify_layer(SimLayer::ConnectV4, 443);
    assert!(first.pended.is_some(), "the ask policy pended the connection");

    let (_, answered) = wfpctl(&mut backend, "agent --rule permit:tcp:443 --rule block:any:* --max 1");
    assert!(
        answered.contains(&format!("outbound tcp 10.0.0.2:49152 -> 192.0.2.10:443, pid 4242, filter {filter} \"ask\"")),
        "{answered}"
    );
    assert!(answered.trim_end().ends_with("=> permit (rule 1 permit:tcp:443)"), "{answered}");
    let completions = pending::take_completions();
    assert_eq!(completions.len(), 1);
    assert!(completions[0].reauthorization.unwrap().permitted(), "the reauthorization took the agent's verdict");

    let (_, listing) = wfpctl(&mut backend, "filter list");
    let cells = row(&listing, filter);
    assert_eq!(cells[3..9], ["ask", "30000", "ms,", "else", "block", "ask"], "{listing}");

    wfpctl(&mut backend, &format!("filter delete {filter}"));
    assert_eq!(backend.unload().map(|_| ()), Ok(()));
}

#[test]
fn a_driver_without_callouts_refuses_nothing_silently() {
    // Booted but not loaded: no provider, sublayer or callouts.
    let mut backend = SimulatedBackend::booted();
    let command =
        wfpctl::cli::parse_from(["wfpctl", "filter", "add", "--layer", "connect", "--ip", "v4", "--action", "block"])
            .unwrap()
            .command;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = Cursor::new(Vec::new());
    let error = run(&command, &mut backend, &mut Io { out: &mut out, err: &mut err, input: &mut input }).unwrap_err();
    assert!(error.to_string().starts_with("FwpmFilterAdd0 failed: 0xc0220007"), "{error}");
    assert!(out.is_empty());
    drop(backend);
}

#[test]
fn state_shows_the_drivers_objects_and_leftovers_in_the_engine() {
    let mut backend = SimulatedBackend::load().unwrap();
    let (_, out) =
        wfpctl(&mut backend, "filter add --layer connect --ip v4 --remote-port 443 --action audit --label web");
    let filter: u64 = out.trim().parse().unwrap();
    let (outcome, state) = wfpctl(&mut backend, "state");
    assert_eq!(outcome, Outcome::Success, "{state}");
    assert!(state.starts_with("provider  {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}  present"), "{state}");
    for callout in ["connect-v4", "connect-v6", "recv-accept-v4", "recv-accept-v6", "flow-v4", "flow-v6"] {
        let line = state.lines().find(|line| line.starts_with(&format!("{callout} "))).unwrap();
        assert_eq!(line.split_whitespace().nth(3), Some("yes"), "{callout} registered: {state}");
    }
    let row: Vec<&str> = state
        .lines()
        .find(|line| line.trim_start().starts_with(&filter.to_string()))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1..],
        ["connect-v4", "0", "CALLOUT_TERMINATING", "audit", "web", "wfpcallout", "remote-port=443"],
        "{state}"
    );
    assert!(state.ends_with("leftovers: none\n"), "{state}");

    // A provider context nobody uses (an interrupted add) is a leftover.
    let orphan = wfpcallout_simkernel::engine::add_provider_context(b"orphan");
    let (outcome, state) = wfpctl(&mut backend, "state");
    assert_eq!(outcome, Outcome::Degraded);
    assert!(state.contains("leftovers:\n  provider context {"), "{state}");
    assert!(state.contains("no filter uses it"), "{state}");
    wfpcallout_simkernel::inspect::delete_provider_context(&orphan);

    // Deleting the filter deletes its provider context too.
    wfpctl(&mut backend, &format!("filter delete {filter}"));
    let (outcome, state) = wfpctl(&mut backend, "state --json");
    assert_eq!(outcome, Outcome::Success, "{state}");
    assert!(state.contains(r#""filters":[],"leftovers":[]"#), "{state}");
    assert_eq!(backend.unload().map(|_| ()), Ok(()));
}
