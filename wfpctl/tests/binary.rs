//! The `wfpctl` binary as a user runs it: exit statuses, where messages go,
//! and the commands that work on any host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Output};

fn wfpctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wfpctl")).args(args).output().expect("run wfpctl")
}

fn wfpctl_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wfpctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wfpctl");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait for wfpctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn help_and_version_exit_zero() {
    let help = wfpctl(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let out = text(&help.stdout);
    for word in ["filter", "stats", "agent", "status", "policy", "Examples"] {
        assert!(out.contains(word), "{word} missing from\n{out}");
    }
    let help = wfpctl(&["filter", "add", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("--timeout-ms <MS>"));
    let version = wfpctl(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(text(&version.stdout), format!("wfpctl {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_two_on_stderr() {
    let bad = wfpctl(&["filter", "add", "--layer", "connect", "--ip", "v4", "--action", "permit", "--rate", "3"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
    let err = text(&bad.stderr);
    assert!(err.starts_with("error: --rate is only meaningful with --action rate-limit"), "{err}");
    assert!(err.contains("Usage: wfpctl filter add"), "{err}");

    let bad =
        wfpctl(&["filter", "add", "--layer", "connect", "--ip", "v4", "--action", "block", "--remote-addr", "::1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("is an IPv6 address but the filter is at the IPv4 layer"));

    assert_eq!(wfpctl(&[]).status.code(), Some(2));
    assert_eq!(wfpctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn policy_encode_and_decode_work_on_any_host() {
    let encoded = wfpctl(&[
        "policy",
        "encode",
        "--action",
        "ask",
        "--timeout-ms",
        "5000",
        "--default",
        "permit",
        "--label",
        "ask-browser",
    ]);
    assert_eq!(encoded.status.code(), Some(0), "{}", text(&encoded.stderr));
    let hex = text(&encoded.stdout);
    assert!(hex.starts_with("5746504301002300040001"), "{hex}");
    let decoded = wfpctl(&["policy", "decode", hex.trim()]);
    assert_eq!(decoded.status.code(), Some(0), "{}", text(&decoded.stderr));
    assert_eq!(
        text(&decoded.stdout),
        "action  ask 5000 ms, else permit\nlog     off\nlabel   ask-browser\nlength  35 bytes\n"
    );
    // Text that is not hex is a usage error whether it comes as an argument
    // or through standard input.
    let not_hex = wfpctl(&["policy", "decode", "zz"]);
    assert_eq!(not_hex.status.code(), Some(2), "{}", text(&not_hex.stderr));
    let not_hex = wfpctl_with_input(&["policy", "decode", "-"], "zz");
    assert_eq!(not_hex.status.code(), Some(2), "{}", text(&not_hex.stderr));
    assert!(text(&not_hex.stderr).contains("standard input is not hex"), "{}", text(&not_hex.stderr));
    let malformed = wfpctl(&["policy", "decode", "5746504302"]);
    assert_eq!(malformed.status.code(), Some(1));
    assert_eq!(text(&malformed.stderr), "wfpctl: error: the policy blob is malformed: unsupported version (2)\n");
}

#[cfg(not(windows))]
#[test]
fn system_commands_say_this_host_is_not_windows() {
    for args in [
        &["status"][..],
        &["state"],
        &["stats"],
        &["filter", "list"],
        &["filter", "delete", "--all-ours"],
        &["filter", "add", "--layer", "connect", "--ip", "v4", "--action", "audit"],
        &["agent", "--interactive"],
    ] {
        let ran = wfpctl(args);
        assert_eq!(ran.status.code(), Some(3), "{args:?}: exit status 3, not Windows");
        assert!(ran.stdout.is_empty());
        assert_eq!(
            text(&ran.stderr),
            "wfpctl: wfpctl talks to the Windows filter engine and the wfpcallout driver; this host is not Windows\n"
        );
    }
}
