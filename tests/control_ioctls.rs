//! The control device's IOCTLs as user mode sees them: exact reply
//! formats, paging, the agent's request/verdict pair, and every buffer the
//! decoders must refuse (short, long, garbage) with a clear status.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::control::ioctls::{self, GET_REQUEST, GET_STATS, GET_VERSION, SET_VERDICT};
use wfpcallout::platform::status::NtStatus;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::pending;
use wfpcallout_wire::*;

const AGENT_FILE: u64 = 0xF11E;

fn query(after: u64, max: u32) -> Vec<u8> {
    StatsQueryRepr { after_filter_id: after, max_entries: max }.to_bytes()
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn version_reports_abi_and_state() {
    let harness = Harness::load();
    let mut out = [0u8; 64];
    let len = ioctls::dispatch_ioctl(GET_VERSION, &[], &mut out).unwrap();
    let version = VersionInfoRepr::parse(&out[..len]).unwrap();
    assert_eq!(version.abi_version, CONTROL_ABI_VERSION);
    assert!(version.has_flag(VERSION_FLAG_LOADED) && version.has_flag(VERSION_FLAG_ADOPTION_COMPLETE));
    assert!(!version.has_flag(VERSION_FLAG_AGENT_CONNECTED));
    assert_eq!(ioctls::dispatch_ioctl(GET_VERSION, &[0], &mut out), Err(NtStatus::INVALID_BUFFER_SIZE));
    assert_eq!(ioctls::dispatch_ioctl(GET_VERSION, &[], &mut out[..15]), Err(NtStatus::BUFFER_TOO_SMALL));
    assert_eq!(ioctls::dispatch_ioctl(0x0012_6FFC, &[], &mut out), Err(NtStatus::INVALID_DEVICE_REQUEST));
    harness.unload_and_check();
}

#[test]
fn stats_page_through_every_filter_in_order() {
    let harness = Harness::load();
    let repr = PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Off, label: Label::new("s").unwrap() };
    let ids: Vec<u64> =
        (0..600).map(|i| harness.add_filter(Layer::ALL[i % 4], PolicySource::Policy(&repr)).unwrap()).collect();
    for &id in ids.iter().take(10) {
        harness.classify(Layer::ConnectV4, id, 80);
    }
    let mut out = vec![0u8; STATS_REPLY_MAX_LEN];
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let q = StatsQueryRepr { after_filter_id: after, max_entries: STATS_MAX_ENTRIES };
        let len = ioctls::dispatch_ioctl(GET_STATS, &q.to_bytes(), &mut out).unwrap();
        let reply = StatsReply::parse_for_query(&out[..len], &q).unwrap();
        assert_eq!(reply.header().total_filters, 600);
        assert_eq!(reply.header().global.filters_added, 600);
        for entry in reply.entries() {
            let entry = entry.unwrap();
            assert_eq!(entry.policy, repr);
            assert_eq!(entry.origin, FilterOrigin::Notified);
            seen.push((entry.filter_id, entry.counters.audited));
        }
        if !reply.header().more {
            break;
        }
        after = seen.last().unwrap().0;
    }
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), ids, "every filter once, ascending");
    assert_eq!(seen.iter().map(|s| s.1).sum::<u64>(), 10);
    // A small output buffer gets fewer entries, never a partial one.
    let small = StatsReply::reply_len(3).unwrap();
    let len = ioctls::dispatch_ioctl(GET_STATS, &query(0, 256), &mut out[..small + 7]).unwrap();
    assert_eq!(len, small);
    for id in ids {
        harness.delete_filter(id).unwrap();
    }
    harness.unload_and_check();
}

#[test]
fn stats_refuses_bad_buffers() {
    let harness = Harness::load();
    let mut out = vec![0u8; 4096];
    assert_eq!(ioctls::dispatch_ioctl(GET_STATS, &[], &mut out), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(ioctls::dispatch_ioctl(GET_STATS, &query(0, 0), &mut out), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(ioctls::dispatch_ioctl(GET_STATS, &query(0, 257), &mut out), Err(NtStatus::INVALID_PARAMETER));
    let mut long = query(0, 1);
    long.push(0);
    assert_eq!(ioctls::dispatch_ioctl(GET_STATS, &long, &mut out), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(ioctls::dispatch_ioctl(GET_STATS, &query(0, 1), &mut out[..10]), Err(NtStatus::BUFFER_TOO_SMALL));
    harness.unload_and_check();
}

#[test]
fn agent_reads_requests_and_answers_through_ioctls() {
    let harness = Harness::load();
    let repr = PolicyRepr {
        action: PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block },
        log_level: LogLevel::Info,
        label: Label::new("ask-web").unwrap(),
    };
    let filter = harness.add_filter(Layer::ConnectV6, PolicySource::Policy(&repr)).unwrap();
    let mut out = [0u8; ASK_REQUEST_LEN];
    // Nothing queued yet: the glue would park this IOCTL.
    assert_eq!(ioctls::agent_get_request(AGENT_FILE, &[], &mut out), Ok(None));
    let result = harness.classify_layer(Layer::ConnectV6, 8443);
    assert!(result.pended.is_some());
    let len = ioctls::agent_get_request(AGENT_FILE, &[], &mut out).unwrap().unwrap();
    let request = AskRequestRepr::parse(&out[..len]).unwrap();
    assert_eq!((request.filter_id, request.remote_port, request.direction), (filter, 8443, Direction::Outbound));
    assert_eq!(request.remote_address, "2001:db8::10".parse::<IpAddr>().unwrap());
    assert_eq!(
        (request.timeout_ms, request.default_verdict, request.label.as_str()),
        (30_000, Verdict::Block, "ask-web")
    );
    let verdict = VerdictMessageRepr { request_id: request.request_id, verdict: Verdict::Permit }.to_bytes();
    assert_eq!(ioctls::dispatch_ioctl(SET_VERDICT, &verdict, &mut []), Ok(0));
    assert_eq!(ioctls::dispatch_ioctl(SET_VERDICT, &verdict, &mut []), Err(NtStatus::NOT_FOUND), "only once");
    let completions = pending::take_completions();
    assert!(completions[0].reauthorization.unwrap().permitted());
    // Version now shows the agent.
    let mut version = [0u8; VERSION_INFO_LEN];
    ioctls::dispatch_ioctl(GET_VERSION, &[], &mut version).unwrap();
    assert!(VersionInfoRepr::parse(&version).unwrap().has_flag(VERSION_FLAG_AGENT_CONNECTED));
    ioctls::file_cleanup(AGENT_FILE);
    assert!(!STATE.agents.connected());
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

#[test]
fn agent_ioctls_refuse_short_long_and_garbage_buffers() {
    let harness = Harness::load();
    let mut out = [0u8; ASK_REQUEST_LEN];
    assert_eq!(ioctls::agent_get_request(AGENT_FILE, &[1], &mut out), Err(NtStatus::INVALID_BUFFER_SIZE));
    assert_eq!(
        ioctls::agent_get_request(AGENT_FILE, &[], &mut out[..ASK_REQUEST_LEN - 1]),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(ioctls::agent_get_request(0, &[], &mut out), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(ioctls::dispatch_ioctl(GET_REQUEST, &[], &mut out), Err(NtStatus::INVALID_DEVICE_REQUEST));
    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    for length in 0..=64usize {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..length).map(|_| xorshift(&mut seed) as u8).collect();
            let result = ioctls::dispatch_ioctl(SET_VERDICT, &bytes, &mut []);
            match VerdictMessageRepr::parse(&bytes) {
                Ok(_) => assert_eq!(result, Err(NtStatus::NOT_FOUND), "well-formed but unknown id"),
                Err(_) => assert_eq!(result, Err(NtStatus::INVALID_PARAMETER), "{bytes:?}"),
            }
        }
    }
    harness.unload_and_check();
}

#[test]
fn any_code_and_buffer_gets_a_status_never_a_crash() {
    let harness = Harness::load();
    let mut seed = 0xDEAD_BEEF_F00D_CAFEu64;
    let codes = [GET_VERSION, GET_STATS, SET_VERDICT, GET_REQUEST, 0, u32::MAX, 0x0012_6008];
    let mut out = vec![0u8; 1024];
    for round in 0..5_000 {
        let code = if round % 3 == 0 { xorshift(&mut seed) as u32 } else { codes[round % codes.len()] };
        let length = (xorshift(&mut seed) % 300) as usize;
        let input: Vec<u8> = (0..length).map(|_| xorshift(&mut seed) as u8).collect();
        let out_len = (xorshift(&mut seed) % 1024) as usize;
        match ioctls::dispatch_ioctl(code, &input, &mut out[..out_len]) {
            Ok(written) => assert!(written <= out_len),
            Err(status) => assert!(!status.is_success()),
        }
    }
    harness.unload_and_check();
}
