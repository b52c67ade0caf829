//! Every subcommand run against the recording [`MockBackend`]: which
//! system calls it makes, with which arguments, and what it prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Cursor;

use wfpcallout_wire::{
    AskRequestRepr, Direction, FilterCounters, FilterOrigin, FilterStatsEntryRepr, GlobalStatsRepr,
    IOCTL_WFPCALLOUT_AGENT_GET_REQUEST, IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, IOCTL_WFPCALLOUT_GET_STATS,
    IOCTL_WFPCALLOUT_GET_VERSION, Label, LogLevel, PolicyAction, PolicyRepr, STATS_MAX_ENTRIES, STATS_REPLY_MAX_LEN,
    StatsQueryRepr, Verdict, VerdictMessageRepr,
};

use crate::backend::ServiceState;
use crate::cli;
use crate::command::{Command, Invocation};
use crate::mock_backend::{Call, MockBackend};
use crate::run::{Io, Outcome, RunError, run_as};

/// What a run printed and how it ended.
struct Ran {
    result: Result<Outcome, RunError>,
    out: String,
    err: String,
}

fn invocation(line: &str) -> Invocation {
    cli::parse_from(std::iter::once("wfpctl").chain(line.split_whitespace())).unwrap()
}

fn command(line: &str) -> Command {
    invocation(line).command
}

fn run_with_input(line: &str, backend: &mut MockBackend, input: &str) -> Ran {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = Cursor::new(input.as_bytes().to_vec());
    let invocation = invocation(line);
    let result = run_as(
        &invocation.command,
        invocation.format,
        backend,
        &mut Io { out: &mut out, err: &mut err, input: &mut input },
    );
    Ran { result, out: String::from_utf8(out).unwrap(), err: String::from_utf8(err).unwrap() }
}

fn run_line(line: &str, backend: &mut MockBackend) -> Ran {
    run_with_input(line, backend, "")
}

fn entry(filter_id: u64, matched: u64) -> FilterStatsEntryRepr {
    FilterStatsEntryRepr {
        filter_id,
        layer_id: 48,
        origin: FilterOrigin::Notified,
        policy: PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Off, label: Label::new("web").unwrap() },
        references: 1,
        counters: FilterCounters { matched, permitted: matched, audited: matched, ..FilterCounters::default() },
    }
}

fn request(request_id: u64, protocol: u8, remote_port: u16) -> AskRequestRepr {
    AskRequestRepr {
        request_id,
        filter_id: 66_017,
        process_id: 4242,
        layer_id: 48,
        direction: Direction::Outbound,
        protocol,
        default_verdict: Verdict::Block,
        timeout_ms: 10_000,
        local_address: "10.0.0.2".parse().unwrap(),
        local_port: 50_000,
        remote_address: "192.0.2.1".parse().unwrap(),
        remote_port,
        label: Label::new("ask").unwrap(),
    }
}

#[test]
fn filter_add_calls_add_filter_with_the_spec_and_the_blob() {
    let mut backend = MockBackend::default();
    let line = "filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action audit --label web";
    let Command::FilterAdd(expected_spec) = command(line) else { panic!("not filter add") };
    let ran = run_line(line, &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(ran.out, "66017\n");
    assert!(
        ran.err.contains("added filter 66017 at connect-v4: audit when protocol=tcp remote-port=443"),
        "{}",
        ran.err
    );
    assert_eq!(backend.calls.len(), 2, "{:?}", backend.calls);
    assert_eq!(backend.calls[0], Call::OpenEngine);
    let Call::AddFilter { spec, blob } = &backend.calls[1] else { panic!("{:?}", backend.calls[1]) };
    assert_eq!(*spec, expected_spec);
    // The blob is what the driver's decoder turns back into the policy.
    assert_eq!(
        PolicyRepr::parse(blob),
        Ok(PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Off, label: Label::new("web").unwrap() })
    );
}

#[test]
fn filter_list_pages_through_get_stats_until_more_is_false() {
    let mut backend = MockBackend::default();
    for port in [443, 80, 53, 22, 25] {
        let line = format!("filter add --layer connect --ip v4 --remote-port {port} --action audit --label web");
        run_line(&line, &mut backend).result.unwrap();
    }
    let ids: Vec<u64> = backend.filters.iter().map(|filter| filter.id).collect();
    assert_eq!(ids, [66_017, 66_018, 66_019, 66_020, 66_021]);
    backend.driver().stats = ids.iter().map(|&id| entry(id, id - 66_000)).collect();
    backend.driver().page_size = 2;
    backend.calls.clear();

    let ran = run_line("filter list", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(
        backend.stats_queries(),
        [
            StatsQueryRepr { after_filter_id: 0, max_entries: STATS_MAX_ENTRIES },
            StatsQueryRepr { after_filter_id: 66_018, max_entries: STATS_MAX_ENTRIES },
            StatsQueryRepr { after_filter_id: 66_020, max_entries: STATS_MAX_ENTRIES },
        ]
    );
    assert!(backend.calls.iter().all(|call| match call {
        Call::Ioctl { code, output_len, .. } =>
            *code == IOCTL_WFPCALLOUT_GET_STATS && *output_len == STATS_REPLY_MAX_LEN,
        _ => true,
    }));
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines.len(), 6, "{}", ran.out);
    for (line, (id, port)) in lines[1..].iter().zip(ids.iter().zip([443, 80, 53, 22, 25])) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[..5], [&id.to_string(), "connect-v4", &format!("remote-port={port}"), "audit", "web"]);
        assert_eq!(cells[6], (id - 66_000).to_string());
    }
    assert_eq!(ran.err, "");
}

#[test]
fn filter_list_without_the_driver_still_lists_the_engine_filters() {
    let mut backend = MockBackend::default();
    run_line("filter add --layer connect --ip v4 --action block", &mut backend).result.unwrap();
    backend.driver = None;
    let ran = run_line("filter list", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert!(ran.out.contains("66017  connect-v4  -"), "{}", ran.out);
    assert!(
        ran.err.contains("no counters: GET_STATS: open \\\\.\\WfpCallout failed: 0x00000002 (ERROR_FILE_NOT_FOUND"),
        "{}",
        ran.err
    );
}

#[test]
fn filter_list_stops_a_driver_that_pages_forever() {
    let mut backend = MockBackend::default();
    backend.driver().stats = vec![entry(1, 1), entry(2, 2)];
    backend.driver().page_size = 0;
    let ran = run_line("filter list", &mut backend);
    assert!(ran.err.contains("did not advance past filter 0"), "{}", ran.err);
    assert_eq!(backend.stats_queries().len(), 1);
}

#[test]
fn filter_delete_by_id_and_all_ours() {
    let mut backend = MockBackend::default();
    for _ in 0..3 {
        run_line("filter add --layer flow --ip v6 --action permit", &mut backend).result.unwrap();
    }
    backend.calls.clear();
    let ran = run_line("filter delete 66018", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(ran.out, "deleted filter 66018\n");
    assert_eq!(backend.calls, [Call::OpenEngine, Call::DeleteFilter(66_018)]);

    let ran = run_line("filter delete 5", &mut backend);
    let err = ran.result.unwrap_err().to_string();
    assert!(err.contains("FWP_E_FILTER_NOT_FOUND"), "{err}");

    backend.undeletable.push(66_019);
    backend.calls.clear();
    let ran = run_line("filter delete --all-ours", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    assert_eq!(
        backend.calls,
        [Call::OpenEngine, Call::ListOurFilters, Call::DeleteFilter(66_017), Call::DeleteFilter(66_019)]
    );
    assert_eq!(ran.out, "deleted filter 66017\ndeleted 1 of 2 wfpcallout filters\n");
    assert!(ran.err.contains("could not delete filter 66019") && ran.err.contains("FWP_E_IN_USE"), "{}", ran.err);
}

#[test]
fn stats_reads_the_version_then_one_page() {
    let mut backend = MockBackend::default();
    backend.driver().global = GlobalStatsRepr {
        filters_added: 3,
        policies_rejected: 1,
        flows_associated: 7,
        copy_bytes_held: 72,
        ipsec_not_pended: 2,
        ..GlobalStatsRepr::default()
    };
    backend.driver().stats = vec![entry(1, 1), entry(2, 2)];
    let ran = run_line("stats", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let ioctls = backend.ioctls();
    assert_eq!(ioctls.len(), 2);
    assert_eq!(ioctls[0].0, IOCTL_WFPCALLOUT_GET_VERSION);
    assert_eq!(backend.stats_queries(), [StatsQueryRepr { after_filter_id: 0, max_entries: 1 }]);
    let lines: Vec<Vec<&str>> = ran.out.lines().map(|line| line.split_whitespace().collect()).collect();
    assert!(lines.contains(&vec!["filter_contexts_alive", "2"]), "{}", ran.out);
    assert!(lines.contains(&vec!["filters_added", "3"]), "{}", ran.out);
    assert!(lines.contains(&vec!["policies_rejected", "1"]), "{}", ran.out);
    assert!(lines.contains(&vec!["flows_associated", "7"]), "{}", ran.out);
    assert!(lines.contains(&vec!["copy_bytes_held", "72"]), "{}", ran.out);
    assert!(lines.contains(&vec!["ipsec_not_pended", "2"]), "{}", ran.out);
}

#[test]
fn a_driver_of_another_protocol_version_is_named() {
    // Version 1 is the driver before the flow and copy counters (a 176-byte
    // statistics header); 3 stands for any later one. Either is named, and
    // no statistics are read from it.
    for driver in [1, 3] {
        let mut backend = MockBackend::default();
        backend.driver().version.abi_version = driver;
        let err = run_line("stats", &mut backend).result.unwrap_err().to_string();
        assert!(err.contains(&format!("control protocol version {driver}, this wfpctl speaks version 2")), "{err}");
        assert!(err.contains("use the wfpctl built with the driver"), "{err}");
        assert_eq!(backend.ioctls().len(), 1);
    }
}

#[test]
fn status_queries_both_services_and_the_driver() {
    let mut backend = MockBackend::default();
    let ran = run_line("status", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert!(backend.calls.contains(&Call::ServiceState("BFE".to_string())));
    assert!(backend.calls.contains(&Call::ServiceState("WfpCallout".to_string())));
    assert!(ran.out.contains("callouts            registered"), "{}", ran.out);

    backend.driver = None;
    backend.services.insert("WfpCallout".to_string(), ServiceState::Stopped);
    let ran = run_line("status", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    assert!(ran.out.contains("WfpCallout service  stopped"), "{}", ran.out);
    assert!(ran.out.contains("ERROR_FILE_NOT_FOUND"), "{}", ran.out);
}

#[test]
fn agent_answers_by_the_first_matching_rule_until_max() {
    let mut backend = MockBackend::default();
    backend.driver().requests =
        [request(1, 6, 443), request(2, 17, 53), request(3, 6, 22), request(4, 6, 443)].into_iter().collect();
    let ran = run_line("agent --rule permit:tcp:443 --rule block:udp:* --max 3", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(
        backend.driver().verdicts,
        [
            VerdictMessageRepr { request_id: 1, verdict: Verdict::Permit },
            VerdictMessageRepr { request_id: 2, verdict: Verdict::Block },
            // No rule: the request's default verdict.
            VerdictMessageRepr { request_id: 3, verdict: Verdict::Block },
        ]
    );
    // The fourth request was never fetched.
    assert_eq!(backend.driver().requests.len(), 1);
    let codes: Vec<u32> = backend.ioctls().iter().map(|(code, _)| *code).collect();
    assert_eq!(
        codes,
        [
            IOCTL_WFPCALLOUT_GET_VERSION,
            IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
            IOCTL_WFPCALLOUT_AGENT_SET_VERDICT,
            IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
            IOCTL_WFPCALLOUT_AGENT_SET_VERDICT,
            IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
            IOCTL_WFPCALLOUT_AGENT_SET_VERDICT,
        ]
    );
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].ends_with("=> permit (rule 1 permit:tcp:443)"), "{}", lines[0]);
    assert!(lines[1].ends_with("=> block (rule 2 block:udp:*)"), "{}", lines[1]);
    assert!(lines[2].ends_with("=> block (no rule matched: the filter's default)"), "{}", lines[2]);
    assert!(ran.err.contains("3 requests handled"), "{}", ran.err);
}

#[test]
fn agent_asks_on_the_terminal_when_no_rule_matches() {
    let mut backend = MockBackend::default();
    backend.driver().requests =
        [request(1, 6, 80), request(2, 6, 443), request(3, 6, 81), request(4, 6, 82), request(5, 6, 83)]
            .into_iter()
            .collect();
    // Request 1: a wrong answer, then "p". Request 2: rule. Request 3:
    // Enter (the default). Request 4: "block". Request 5: end of input.
    let ran = run_with_input("agent --interactive --rule block:tcp:443 --max 5", &mut backend, "maybe\np\n\nblock\n");
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let verdicts: Vec<(u64, Verdict)> =
        backend.driver().verdicts.iter().map(|verdict| (verdict.request_id, verdict.verdict)).collect();
    assert_eq!(
        verdicts,
        [(1, Verdict::Permit), (2, Verdict::Block), (3, Verdict::Block), (4, Verdict::Block), (5, Verdict::Block)]
    );
    assert!(ran.err.contains("'maybe' is neither p nor b"), "{}", ran.err);
    assert_eq!(ran.err.matches("permit or block? [p/b, Enter: block]").count(), 5, "{}", ran.err);
    assert!(ran.out.lines().next().unwrap().ends_with("=> permit (answered)"), "{}", ran.out);
    assert!(ran.out.lines().nth(4).unwrap().ends_with("(no rule matched: the filter's default)"), "{}", ran.out);
}

#[test]
fn agent_keeps_serving_when_a_verdict_is_refused() {
    let mut backend = MockBackend::default();
    backend.driver().requests = [request(1, 6, 443), request(2, 6, 443)].into_iter().collect();
    backend.driver().refuse_verdicts_for.push(1);
    let ran = run_line("agent --rule permit:any:* --max 2", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(backend.driver().verdicts, [VerdictMessageRepr { request_id: 2, verdict: Verdict::Permit }]);
    assert!(ran.err.contains("request 1: the driver did not take the verdict"), "{}", ran.err);
    assert!(ran.err.contains("ERROR_NOT_FOUND"), "{}", ran.err);
}

#[test]
fn agent_needs_registered_callouts() {
    let mut backend = MockBackend::default();
    backend.driver().version.flags = 0;
    let err = run_line("agent --interactive", &mut backend).result.unwrap_err().to_string();
    assert!(err.contains("has not registered its callouts"), "{err}");
    assert_eq!(backend.ioctls().len(), 1);
}

#[test]
fn policy_encode_and_decode_need_no_backend() {
    let mut backend = MockBackend::default();
    let ran = run_line("policy encode --action rate-limit --rate 10 --burst 20 --log info --label lim", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let hex = ran.out.trim().to_string();
    assert_eq!(hex, "574650430100_1b00_03030003_0a000000_14000000_00000000_6c696d".replace('_', ""));
    let ran = run_line(&format!("policy decode {hex}"), &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(ran.out, "action  rate-limit 10/s burst 20\nlog     info\nlabel   lim\nlength  27 bytes\n");
    let ran = run_line("policy decode 57465043", &mut backend);
    let err = ran.result.unwrap_err().to_string();
    assert_eq!(err, "the policy blob is malformed: buffer truncated");
    assert!(backend.calls.is_empty());
}

#[test]
fn policy_decode_reads_stdin_and_says_when_there_is_nothing() {
    let mut backend = MockBackend::default();
    let hex = "574650430100180001000000000000000000000000000000";
    let ran = run_with_input("policy decode -", &mut backend, &format!("{hex}\n"));
    assert_eq!(ran.result.unwrap(), Outcome::Success, "{}", ran.err);
    assert_eq!(ran.out, "action  block\nlog     off\nlabel   -\nlength  24 bytes\n");
    for empty in ["", "  \n"] {
        let ran = run_with_input("policy decode -", &mut backend, empty);
        let error = ran.result.unwrap_err();
        assert!(matches!(error, RunError::NoInput(_)), "{error:?}");
        assert!(error.to_string().starts_with("no input: standard input was empty"), "{error}");
        assert_eq!(crate::exit_status(&Err(error)), crate::EXIT_USAGE);
    }
    // Not hex: a usage error, exit status 2, as `policy decode 57zz` is.
    let ran = run_with_input("policy decode -", &mut backend, "57zz");
    let error = ran.result.unwrap_err();
    assert!(error.to_string().contains("standard input is not hex"), "{error}");
    assert_eq!(crate::exit_status(&Err(error)), crate::EXIT_USAGE);
    assert!(backend.calls.is_empty());
}

// --json: one test per command that prints data, on the exact text, so the
// field names cannot change unnoticed.

#[test]
fn json_filter_add() {
    let mut backend = MockBackend::default();
    let ran = run_line(
        "filter add --layer connect --ip v4 --remote-addr 10.0.0.0/8 --remote-port 5000-5100 --action deny --json",
        &mut backend,
    );
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(
        ran.out,
        concat!(
            r#"{"filter_id":66017,"layer":"connect-v4","conditions":[{"field":"remote-addr","value":"10.0.0.0/8"},"#,
            r#"{"field":"remote-port","value":"5000-5100"}],"policy":{"action":"block","rate_per_sec":null,"#,
            r#""burst":null,"timeout_ms":null,"default":null,"log":"off","label":""},"name":"wfpcallout: block"}"#,
            "\n"
        )
    );
    assert!(ran.err.is_empty(), "{}", ran.err);
}

#[test]
fn json_filter_delete() {
    let mut backend = MockBackend::default();
    for _ in 0..3 {
        run_line("filter add --layer connect --ip v4 --action audit", &mut backend);
    }
    backend.undeletable.push(66_018);
    let ran = run_line("filter delete --all-ours --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    assert_eq!(
        ran.out,
        concat!(
            r#"{"deleted":[66017,66019],"failed":[{"filter_id":66018,"error":"FwpmFilterDeleteById0 failed: "#,
            r#"0x8032000a (FWP_E_IN_USE: the object is still referenced by another object)"}]}"#,
            "\n"
        )
    );
    let ran = run_line("filter delete 66018 --json", &mut backend);
    assert!(ran.result.is_err());
    backend.undeletable.clear();
    let ran = run_line("filter delete 66018 --json", &mut backend);
    assert_eq!(ran.out, "{\"deleted\":[66018],\"failed\":[]}\n");
}

#[test]
fn json_filter_list() {
    let mut backend = MockBackend::default();
    run_line(
        "filter add --layer connect --ip v4 --protocol tcp --remote-port 443 --action audit --label web",
        &mut backend,
    );
    backend.driver().stats = vec![entry(66_017, 3), entry(70_000, 1)];
    let ran = run_line("filter list --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let policy = r#"{"action":"audit","rate_per_sec":null,"burst":null,"timeout_ms":null,"default":null,"log":"off","label":"web"}"#;
    let counters = |n: u64| {
        format!(
            r#"{{"matched":{n},"permitted":{n},"blocked":0,"audited":{n},"rate_limited":0,"defaulted":0,"pended":0,"live_flows":0,"flows_total":0}}"#
        )
    };
    let driver = |n: u64| {
        format!(r#"{{"layer_id":48,"policy":{policy},"origin":"added","references":1,"counters":{}}}"#, counters(n))
    };
    assert_eq!(
        ran.out,
        format!(
            concat!(
                r#"{{"counters_read":true,"filters":[{{"filter_id":66017,"layer":"connect-v4","name":"wfpcallout: web","#,
                r#""conditions":[{{"field":"protocol","value":"tcp"}},{{"field":"remote-port","value":"443"}}],"#,
                r#""other_conditions":0,"driver":{}}},{{"filter_id":70000,"layer":null,"name":null,"conditions":null,"#,
                r#""other_conditions":null,"driver":{}}}]}}"#,
                "\n"
            ),
            driver(3),
            driver(1)
        )
    );
    backend.driver = None;
    let ran = run_line("filter list --json", &mut backend);
    assert!(ran.out.starts_with(r#"{"counters_read":false,"filters":[{"filter_id":66017,"#), "{}", ran.out);
    assert!(ran.out.ends_with("\"driver\":null}]}\n"), "{}", ran.out);
}

#[test]
fn json_stats() {
    let mut backend = MockBackend::default();
    backend.driver().global =
        GlobalStatsRepr { filters_added: 2, requests_pended: 4, packets_copied: 3, ..GlobalStatsRepr::default() };
    backend.driver().stats = vec![entry(1, 0)];
    let ran = run_line("stats --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(
        ran.out,
        concat!(
            r#"{"filter_contexts_alive":1,"counters":{"filters_added":2,"filters_deleted":0,"deletes_unknown":0,"#,
            r#""policies_rejected":0,"allocation_failures":0,"notify_unknown_type":0,"filters_adopted":0,"#,
            r#""adopted_policies_rejected":0,"classify_without_context":0,"classify_bad_arguments":0,"#,
            r#""requests_pended":4,"pend_failures":0,"requests_completed":0,"requests_timed_out":0,"#,
            r#""requests_defaulted":0,"verdicts_rejected":0,"flows_associated":0,"flow_associate_failures":0,"#,
            r#""flows_already_tracked":0,"flow_deletes_unknown":0,"copy_bytes_held":0,"packets_copied":3,"#,
            r#""copies_refused":0,"ipsec_not_pended":0}}"#,
            "\n"
        )
    );
}

#[test]
fn json_status() {
    let mut backend = MockBackend::default();
    let ran = run_line("status --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(
        ran.out,
        concat!(
            r#"{"healthy":true,"bfe_service":{"state":"running","error":null},"#,
            r#""driver_service":{"state":"running","error":null},"control_device":{"path":"\\\\.\\WfpCallout","#,
            r#""error":null,"driver_version":"0.1.0","control_protocol":2,"callouts_registered":true,"#,
            r#""adoption_complete":true,"agent_connected":false}}"#,
            "\n"
        )
    );
    backend.driver = None;
    backend.services.insert("WfpCallout".to_string(), ServiceState::Stopped);
    let ran = run_line("status --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    assert!(ran.out.starts_with(r#"{"healthy":false,"#), "{}", ran.out);
    assert!(ran.out.contains(r#""driver_service":{"state":"stopped","error":null}"#), "{}", ran.out);
    assert!(ran.out.contains(r#""error":"GET_VERSION: open \\\\.\\WfpCallout failed: 0x00000002"#), "{}", ran.out);
    assert!(ran.out.ends_with("\"callouts_registered\":null,\"adoption_complete\":null,\"agent_connected\":null}}\n"));
}

#[test]
fn json_policy_encode_and_decode() {
    let mut backend = MockBackend::default();
    let ran = run_line("policy encode --action ask --timeout-ms 5000 --default allow --label a --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let policy = r#"{"action":"ask","rate_per_sec":null,"burst":null,"timeout_ms":5000,"default":"permit","log":"off","label":"a"}"#;
    let hex = "57465043010019000400010188130000000000000000000061";
    assert_eq!(ran.out, format!("{{\"hex\":\"{hex}\",\"length\":25,\"policy\":{policy}}}\n"));
    let ran = run_line(&format!("policy decode {hex} --json"), &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert_eq!(ran.out, format!("{{\"length\":25,\"policy\":{policy}}}\n"));
    let ran = run_line("policy encode --action rate-limit --rate 10 --burst 20 --json", &mut backend);
    assert!(ran.out.contains(r#""action":"rate-limit","rate_per_sec":10,"burst":20,"timeout_ms":null"#), "{}", ran.out);
}

#[test]
fn json_agent_prints_one_line_per_request() {
    let mut backend = MockBackend::default();
    backend.driver().requests.extend([request(1, 6, 443), request(2, 17, 53)]);
    backend.driver().refuse_verdicts_for.push(2);
    let ran = run_line("agent --rule allow:tcp:443 --max 2 --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", ran.out);
    let connection = concat!(
        r#""filter_id":66017,"label":"ask","direction":"outbound","protocol":"tcp","local_address":"10.0.0.2","#,
        r#""local_port":50000,"remote_address":"192.0.2.1","remote_port":443,"process_id":4242,"layer_id":48,"#,
        r#""default":"block","timeout_ms":10000"#
    );
    assert_eq!(
        lines[0],
        format!(
            r#"{{"request_id":1,{connection},"verdict":"permit","reason":"rule","rule":"permit:tcp:443","accepted":true,"error":null}}"#
        )
    );
    assert!(lines[1].starts_with(r#"{"request_id":2,"#), "{}", lines[1]);
    assert!(lines[1].contains(r#""protocol":"udp""#), "{}", lines[1]);
    assert!(
        lines[1].contains(
            r#""verdict":"block","reason":"default","rule":null,"accepted":false,"error":"AGENT_SET_VERDICT"#
        ),
        "{}",
        lines[1]
    );
}

#[test]
fn state_reports_the_footprint_and_exits_one_when_something_is_off() {
    let mut backend = MockBackend::default();
    run_line("filter add --layer connect --ip v4 --remote-port 443 --action audit --label web", &mut backend);
    let ran = run_line("state", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success, "{}", ran.out);
    assert!(backend.calls.contains(&Call::EngineObjects));
    let lines: Vec<&str> = ran.out.lines().collect();
    assert_eq!(lines[0], "provider  {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}  present \"wfpcallout\", persistent");
    assert_eq!(
        lines[1],
        "sublayer  {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0002}  present \"wfpcallout\", weight 28672, persistent"
    );
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["CALLOUT", "KEY", "ID", "REGISTERED", "FILTERS"]);
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["connect-v4", "{5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0010}", "301", "yes", "1"]
    );
    let filter: Vec<&str> = lines[10].split_whitespace().collect();
    assert_eq!(
        filter,
        ["66017", "connect-v4", "-", "CALLOUT_TERMINATING", "audit", "web", "wfpcallout", "remote-port=443"]
    );
    assert_eq!(lines.last(), Some(&"leftovers: none"));

    // A stopped driver: its callouts unregistered, the filter left behind.
    backend.driver().version.flags = 0;
    let ran = run_line("state --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    let json = ran.out;
    assert!(json.starts_with(r#"{"complete":false,"provider":{"key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001","name":"wfpcallout","weight":null,"persistent":true},"#), "{json}");
    assert!(
        json.contains(r#"{"callout":"connect-v4","key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0010","present":true,"id":301,"registered":false}"#),
        "{json}"
    );
    assert!(
        json.contains(concat!(
            r#""filters":[{"filter_id":66017,"name":"wfpcallout: web","layer":"connect-v4","ours":true,"weight":null,"#,
            r#""action_type":"CALLOUT_TERMINATING","persistent":false,"conditions":[{"field":"remote-port","value":"443"}],"#,
            r#""policy":{"action":"audit","#
        )),
        "{json}"
    );
    assert!(
        json.contains(
            r#""leftovers":[{"object":"filter 66017","why":"names a wfpcallout callout, and none is registered"#
        ),
        "{json}"
    );
    assert!(json.ends_with("}]}\n"), "{json}");
}

#[test]
fn log_level_sends_the_level_after_the_version_check() {
    for (word, code) in [("off", 0u8), ("error", 1), ("warning", 2), ("info", 3), ("trace", 4)] {
        let mut backend = MockBackend::default();
        let ran = run_line(&format!("log-level {word}"), &mut backend);
        assert_eq!(ran.result.unwrap(), Outcome::Success);
        let ioctls = backend.ioctls();
        assert_eq!(ioctls.len(), 2);
        assert_eq!(ioctls[0].0, IOCTL_WFPCALLOUT_GET_VERSION);
        assert_eq!(ioctls[1], (wfpcallout_wire::IOCTL_WFPCALLOUT_SET_LOG_LEVEL, vec![code, 0, 0, 0]));
        assert_eq!(ran.out, format!("driver log level: {word}\n"));
    }
}

/// The driver stopped: no control device, callouts unregistered.
fn stopped_driver() -> MockBackend {
    MockBackend { driver: None, ..MockBackend::default() }
}

#[test]
fn uninstall_deletes_filters_then_objects_and_a_second_run_finds_nothing() {
    let mut backend = stopped_driver();
    run_line("filter add --layer connect --ip v4 --remote-port 443 --action audit", &mut backend);
    run_line("filter add --layer recv-accept --ip v4 --local-port 80 --action block", &mut backend);
    let ran = run_line("uninstall", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Success, "{}", ran.err);
    assert!(backend.calls.contains(&Call::DeleteOurObjects));
    assert_eq!(
        ran.out,
        "deleted filter 66017 at connect-v4\n\
         deleted filter 66018 at recv-accept-v4\n\
         deleted 2 provider contexts\n\
         deleted callout connect-v4 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0010}\n\
         deleted callout connect-v6 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0011}\n\
         deleted callout recv-accept-v4 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0012}\n\
         deleted callout recv-accept-v6 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0013}\n\
         deleted callout flow-v4 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0014}\n\
         deleted callout flow-v6 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0015}\n\
         deleted the sublayer {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0002}\n\
         deleted the provider {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}\n\
         wfpcallout is gone from the filter engine\n"
    );
    assert_eq!(ran.err, "");
    assert!(backend.filters.is_empty() && backend.blobs.is_empty() && !backend.objects_present);

    let again = run_line("uninstall", &mut backend);
    assert_eq!(again.result.unwrap(), Outcome::Success);
    assert_eq!(again.out, "nothing of wfpcallout was left in the filter engine\n");
    let state = run_line("state", &mut backend);
    assert!(state.out.starts_with("provider  {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}  missing"), "{}", state.out);
}

#[test]
fn uninstall_with_the_driver_loaded_says_to_stop_it_and_exits_four() {
    let mut backend = MockBackend::default();
    run_line("filter add --layer connect --ip v4 --remote-port 443 --action audit", &mut backend);
    let ran = run_line("uninstall", &mut backend);
    let outcome = ran.result.unwrap();
    assert_eq!(outcome, Outcome::DriverLoaded);
    assert_eq!(crate::exit_status(&Ok(outcome)), crate::EXIT_DRIVER_LOADED);
    assert!(ran.out.ends_with("wfpcallout is gone from the filter engine\n"), "{}", ran.out);
    assert_eq!(
        ran.err,
        "wfpctl: the driver is still loaded: its callouts stay registered until it stops (sc.exe stop WfpCallout); \
         started again, it adds its provider, sublayer and callouts back\n"
    );
    // Run again, the objects are gone but the driver still answers: the
    // same advice.
    let again = run_line("uninstall", &mut backend);
    assert_eq!(again.result.unwrap(), Outcome::DriverLoaded);
    assert_eq!(again.out, "nothing of wfpcallout was left in the filter engine\n");
    assert!(backend.ioctls().iter().all(|(code, _)| *code == IOCTL_WFPCALLOUT_GET_VERSION));
}

#[test]
fn json_uninstall() {
    let mut backend = MockBackend::default();
    run_line("filter add --layer connect --ip v4 --remote-port 443 --action audit", &mut backend);
    let ran = run_line("uninstall --json", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::DriverLoaded);
    let callout = |name: &str, last: char| {
        format!(
            r#"{{"callout":"{name}","key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e001{last}","result":"deleted","error":null}}"#
        )
    };
    let callouts = [
        ("connect-v4", '0'),
        ("connect-v6", '1'),
        ("recv-accept-v4", '2'),
        ("recv-accept-v6", '3'),
        ("flow-v4", '4'),
        ("flow-v6", '5'),
    ]
    .map(|(name, last)| callout(name, last))
    .join(",");
    assert_eq!(
        ran.out,
        format!(
            concat!(
                r#"{{"filters_deleted":[66017],"provider_contexts_deleted":1,"callouts":[{}],"#,
                r#""sublayer":{{"key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0002","result":"deleted","error":null}},"#,
                r#""provider":{{"key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001","result":"deleted","error":null}},"#,
                r#""complete":true,"driver_loaded":true}}"#,
                "\n"
            ),
            callouts
        )
    );
    let mut stopped = stopped_driver();
    stopped.objects_present = false;
    let ran = run_line("uninstall --json", &mut stopped);
    assert_eq!(ran.result.unwrap(), Outcome::Success);
    assert!(ran.out.starts_with(r#"{"filters_deleted":[],"provider_contexts_deleted":0,"callouts":[{"callout":"connect-v4","key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0010","result":"absent","error":null},"#), "{}", ran.out);
    assert!(ran.out.ends_with("\"complete\":true,\"driver_loaded\":false}\n"), "{}", ran.out);
}

#[test]
fn filter_add_after_uninstall_says_to_restart_a_running_driver() {
    // `uninstall` with the driver loaded deletes the provider the running
    // driver added when it started: starting it again is not possible,
    // restarting it is what adds the objects back.
    let mut backend = MockBackend::default();
    run_line("uninstall", &mut backend).result.unwrap();
    let ran = run_line("filter add --layer connect --ip v4 --action block", &mut backend);
    let error = ran.result.unwrap_err().to_string();
    assert!(error.starts_with("FwpmFilterAdd0 failed: 0x80320005 (FWP_E_PROVIDER_NOT_FOUND: "), "{error}");
    assert!(
        error.ends_with(
            "the driver is running, so they were deleted after it started (wfpctl uninstall?): restart it \
             (sc.exe stop WfpCallout, then sc.exe start WfpCallout) to add them again"
        ),
        "{error}"
    );
    assert!(!error.contains("start the driver"), "{error}");

    // With the driver stopped, starting it is the answer.
    let mut stopped = stopped_driver();
    stopped.services.insert("WfpCallout".to_string(), ServiceState::Stopped);
    run_line("uninstall", &mut stopped).result.unwrap();
    let ran = run_line("filter add --layer connect --ip v4 --action block", &mut stopped);
    let error = ran.result.unwrap_err().to_string();
    assert!(error.ends_with("; start the driver (sc.exe start WfpCallout)"), "{error}");
    assert!(stopped.calls.contains(&Call::ServiceState("WfpCallout".to_string())));

    // Other errors are not explained that way, and ask nothing more.
    let mut backend = MockBackend::default();
    run_line("filter add --layer connect --ip v4 --action block", &mut backend).result.unwrap();
    assert!(!backend.calls.iter().any(|call| matches!(call, Call::ServiceState(_))));
}

#[test]
fn uninstall_says_what_the_engine_kept_and_exits_one() {
    let mut backend = stopped_driver();
    backend.sublayer_in_use = true;
    let ran = run_line("uninstall", &mut backend);
    assert_eq!(ran.result.unwrap(), Outcome::Degraded);
    assert!(
        ran.out.contains(
            "kept the sublayer {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0002}: FwpmSubLayerDeleteByKey0 failed: 0x8032000a \
             (FWP_E_IN_USE: the object is still referenced by another object)\n"
        ),
        "{}",
        ran.out
    );
    assert!(
        ran.out.ends_with("some wfpcallout objects are still referenced and were kept (see above)\n"),
        "{}",
        ran.out
    );
    let ran = run_line("uninstall --json", &mut backend);
    assert!(ran.out.contains(r#""sublayer":{"key":"5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0002","result":"kept","error":"FwpmSubLayerDeleteByKey0 failed"#), "{}", ran.out);
    assert!(ran.out.contains(r#""complete":false,"driver_loaded":false}"#), "{}", ran.out);
}

#[test]
fn uninstall_failures_are_errors_that_say_what_to_do() {
    let mut backend = stopped_driver();
    let id = run_line("filter add --layer connect --ip v4 --remote-port 443 --action audit", &mut backend).out;
    backend.undeletable.push(id.trim().parse().unwrap());
    let ran = run_line("uninstall", &mut backend);
    let error = ran.result.unwrap_err().to_string();
    assert!(error.starts_with("FwpmFilterDeleteById0 failed: 0x8032000a (FWP_E_IN_USE"), "{error}");
    assert_eq!(ran.out, "", "nothing deleted, nothing printed");
    assert!(backend.objects_present && backend.filters.len() == 1, "the transaction aborted");
    // The errors the engine session itself meets.
    let denied = crate::backend::BackendError::code("FwpmEngineOpen0", 5).to_string();
    assert!(denied.contains("run wfpctl from an elevated (administrator) prompt"), "{denied}");
    for code in [1753, 1722, 0x8007_06D9, 0xC002_0036] {
        let stopped = crate::backend::BackendError::code("FwpmEngineOpen0", code).to_string();
        assert!(stopped.contains("the base filtering engine (BFE) is not running: start it"), "{stopped}");
    }
}

#[test]
fn uninstall_is_a_command_with_help() {
    assert_eq!(command("uninstall"), Command::Uninstall);
    assert!(command("uninstall").needs_windows());
    let help = cli::parse_from(["wfpctl", "uninstall", "--help"]).unwrap_err().to_string();
    assert!(help.contains("exit status 4"), "{help}");
    let top = cli::parse_from(["wfpctl", "--help"]).unwrap_err().to_string();
    assert!(top.contains("wfpctl uninstall"), "{top}");
    assert!(top.contains("4 uninstall left nothing in the filter engine"), "{top}");
}
