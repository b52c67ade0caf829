//! Writes the seed corpora (`fuzz/corpus/<target>/`) from valid encodings
//! made by the wire crate's encoders, and short driver programs in the
//! `driver_sequence` input language. Run from the repository root:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_seeds
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use wfpcallout_wire::{
    AskRequestRepr, Direction, FilterCounters, FilterOrigin, FilterStatsEntryRepr, GlobalStatsRepr, Label, LogLevel,
    PolicyAction, PolicyRepr, STATS_REPLY_MAX_LEN, StatsHeaderRepr, StatsQueryRepr, StatsReply, Verdict,
    VerdictMessageRepr, VersionInfoRepr,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn policy(action: PolicyAction, log_level: LogLevel, label: &str) -> PolicyRepr {
    PolicyRepr { action, log_level, label: Label::new(label).unwrap() }
}

fn policies() -> Vec<(&'static str, PolicyRepr)> {
    vec![
        ("permit", policy(PolicyAction::Permit, LogLevel::Off, "")),
        ("block", policy(PolicyAction::Block, LogLevel::Error, "block-telnet")),
        ("audit", policy(PolicyAction::Audit, LogLevel::Info, "audit")),
        ("rate", policy(PolicyAction::RateLimit { rate_per_sec: 100, burst: 10 }, LogLevel::Trace, "rate")),
        (
            "ask",
            policy(PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block }, LogLevel::Info, "ask-web"),
        ),
        ("label-64", policy(PolicyAction::Permit, LogLevel::Off, &"x".repeat(64))),
    ]
}

fn ask_request(local: &str, remote: &str, direction: Direction) -> AskRequestRepr {
    AskRequestRepr {
        request_id: 7,
        filter_id: 70_001,
        process_id: 4_242,
        layer_id: 48,
        direction,
        protocol: 6,
        default_verdict: Verdict::Block,
        timeout_ms: 30_000,
        local_address: local.parse::<IpAddr>().unwrap(),
        local_port: 49_152,
        remote_address: remote.parse::<IpAddr>().unwrap(),
        remote_port: 443,
        label: Label::new("ask-web").unwrap(),
    }
}

fn stats_reply(entries: u32) -> Vec<u8> {
    let mut out = vec![0u8; STATS_REPLY_MAX_LEN];
    let header = StatsHeaderRepr {
        global: GlobalStatsRepr { filters_added: 3, requests_pended: 1, ..GlobalStatsRepr::default() },
        total_filters: entries,
        returned: entries,
        more: false,
    };
    let len = StatsReply::emit_header(&header, &mut out).unwrap();
    for index in 0..entries {
        let entry = FilterStatsEntryRepr {
            filter_id: 70_001 + u64::from(index),
            layer_id: 48,
            origin: if index == 0 { FilterOrigin::Notified } else { FilterOrigin::Adopted },
            policy: policies()[index as usize].1,
            references: 1,
            counters: FilterCounters { matched: 10, permitted: 9, blocked: 1, ..FilterCounters::default() },
        };
        StatsReply::emit_entry(index, &entry, &mut out).unwrap();
    }
    out.truncate(len);
    out
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    out
}

/// `driver_sequence` programs (see its step function for the opcodes).
fn programs() -> Vec<(&'static str, Vec<u8>)> {
    let ask_policy = |layer: u8, verdict: u8| {
        let mut op = vec![1, layer, verdict, 4];
        op.extend_from_slice(&5_000u32.to_le_bytes());
        op.extend_from_slice(&[2, 3, b'a', b's', b'k', 1]);
        op
    };
    let simple_policy = |layer: u8, action: u8| vec![1, layer, 0, action, 0, 0, 1];
    let mut ask = ask_policy(0, 1);
    ask.extend_from_slice(&[7, 0]); // connect the agent
    ask.extend_from_slice(&[3, 0, 0xBB, 0x01]); // classify: pends
    ask.extend_from_slice(&[8, 0]); // the agent permits
    ask.extend_from_slice(&[3, 0, 0x50, 0x00]); // pends again
    ask.extend_from_slice(&[10, 0x10, 0x27]); // 10 s: timeout
    ask.extend_from_slice(&[3, 0, 0x51, 0x00, 7, 1]); // pends; the agent goes
    ask.extend_from_slice(&[3, 0, 0x52, 0x00, 15]); // pends; unload and reload

    let mut inbound = ask_policy(2, 0);
    inbound.extend_from_slice(&[7, 0, 5, 2, 0x16, 0x00, 8, 0, 5, 2, 0x17, 0x00, 8, 1, 6, 0, 0]);

    let mut flows = simple_policy(4, 0);
    flows.extend(simple_policy(5, 2));
    flows.extend_from_slice(&[11, 0, 1, 0, 11, 0, 2, 0, 11, 1, 3, 0, 12, 0, 6, 1, 0, 12, 0, 15]);

    let blob = policies()[3].1.to_bytes();
    let mut raw = vec![0, 1, blob.len() as u8];
    raw.extend_from_slice(&blob);
    raw.extend_from_slice(&[0, 3, 5, b'W', b'F', b'P', b'C', 9, 4, 0, 0, 0, 0]);
    raw.extend_from_slice(&[6, 0, 0x80, 15]); // delete with its DELETE lost, reload

    let query = StatsQueryRepr { after_filter_id: 0, max_entries: 16 }.to_bytes();
    let mut ioctls = simple_policy(0, 2);
    ioctls.extend_from_slice(&[13, 0, 0, 0x40, 0x00]);
    ioctls.extend_from_slice(&[13, 1, query.len() as u8]);
    ioctls.extend_from_slice(&query);
    ioctls.extend_from_slice(&[0x00, 0x10, 14, 0, 3, 13, 4, 0x44, 0xE0, 0x12, 0x00, 0, 0, 0]);
    vec![("ask", ask), ("inbound-ask", inbound), ("flows", flows), ("raw-blobs", raw), ("ioctls", ioctls)]
}

fn main() {
    for (name, repr) in policies() {
        write("policy_blob", name, &repr.to_bytes());
    }
    write(
        "ioctl_decoders",
        "stats-query",
        &with_selector(0, &StatsQueryRepr { after_filter_id: 70_000, max_entries: 64 }.to_bytes()),
    );
    write(
        "ioctl_decoders",
        "verdict",
        &with_selector(1, &VerdictMessageRepr { request_id: 7, verdict: Verdict::Permit }.to_bytes()),
    );
    write(
        "ioctl_decoders",
        "ask-v4",
        &with_selector(2, &ask_request("10.0.0.2", "192.0.2.10", Direction::Outbound).to_bytes()),
    );
    write(
        "ioctl_decoders",
        "ask-v6",
        &with_selector(2, &ask_request("2001:db8::2", "2001:db8::10", Direction::Inbound).to_bytes()),
    );
    let version =
        VersionInfoRepr { abi_version: 1, driver_version: wfpcallout_wire::driver_version(0, 1, 0), flags: 7 };
    write("ioctl_decoders", "version", &with_selector(3, &version.to_bytes()));
    write("ioctl_decoders", "stats-reply-0", &with_selector(4, &stats_reply(0)));
    write("ioctl_decoders", "stats-reply-2", &with_selector(4, &stats_reply(2)));
    for (name, program) in programs() {
        write("driver_sequence", name, &program);
    }
}
