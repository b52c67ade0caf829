//! The names a WFP engineer knows things by: `FWPM_LAYER_*` for run-time
//! layer ids, `STATUS_*` for NTSTATUS codes, and a policy in words.
#![forbid(unsafe_code)]

use fwps_types::*;
use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr, Verdict};

/// The management-layer name of a run-time layer id
/// (`FWPS_LAYER_ALE_AUTH_CONNECT_V4` is `FWPM_LAYER_ALE_AUTH_CONNECT_V4`).
pub fn layer_name(layer_id: u16) -> String {
    let name = match layer_id {
        FWPS_LAYER_ALE_AUTH_CONNECT_V4 => "FWPM_LAYER_ALE_AUTH_CONNECT_V4",
        FWPS_LAYER_ALE_AUTH_CONNECT_V6 => "FWPM_LAYER_ALE_AUTH_CONNECT_V6",
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 => "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4",
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6 => "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6",
        FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4 => "FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4",
        FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6 => "FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6",
        other => return format!("layer {other}"),
    };
    name.to_string()
}

/// The NTSTATUS codes the driver and the simulated engine return, by name.
const STATUS_NAMES: [(NTSTATUS, &str); 18] = [
    (STATUS_SUCCESS, "STATUS_SUCCESS"),
    (STATUS_UNSUCCESSFUL, "STATUS_UNSUCCESSFUL"),
    (STATUS_INVALID_PARAMETER, "STATUS_INVALID_PARAMETER"),
    (STATUS_INVALID_DEVICE_REQUEST, "STATUS_INVALID_DEVICE_REQUEST"),
    (STATUS_BUFFER_TOO_SMALL, "STATUS_BUFFER_TOO_SMALL"),
    (STATUS_NOT_FOUND, "STATUS_NOT_FOUND"),
    (STATUS_INVALID_BUFFER_SIZE, "STATUS_INVALID_BUFFER_SIZE"),
    (STATUS_INSUFFICIENT_RESOURCES, "STATUS_INSUFFICIENT_RESOURCES"),
    (STATUS_INVALID_DEVICE_STATE, "STATUS_INVALID_DEVICE_STATE"),
    (STATUS_BAD_DATA, "STATUS_BAD_DATA"),
    (STATUS_FWP_CALLOUT_NOT_FOUND, "STATUS_FWP_CALLOUT_NOT_FOUND"),
    (STATUS_FWP_FILTER_NOT_FOUND, "STATUS_FWP_FILTER_NOT_FOUND"),
    (STATUS_FWP_LAYER_NOT_FOUND, "STATUS_FWP_LAYER_NOT_FOUND"),
    (STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND, "STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND"),
    (STATUS_FWP_SUBLAYER_NOT_FOUND, "STATUS_FWP_SUBLAYER_NOT_FOUND"),
    (STATUS_FWP_ALREADY_EXISTS, "STATUS_FWP_ALREADY_EXISTS"),
    (STATUS_FWP_IN_USE, "STATUS_FWP_IN_USE"),
    (STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER, "STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER"),
];

/// `0xC000090B (STATUS_BAD_DATA)`, or the code alone when it has no name here.
pub fn status_text(status: NTSTATUS) -> String {
    let code = u32::from_ne_bytes(status.to_ne_bytes());
    match STATUS_NAMES.iter().find(|(value, _)| *value == status) {
        Some((_, name)) => format!("{code:#010X} ({name})"),
        None => format!("{code:#010X}"),
    }
}

/// `permit` or `block`, as wfpctl writes a verdict.
pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Permit => "permit",
        Verdict::Block => "block",
    }
}

/// An action as wfpctl writes it (`wfpctl filter list`'s POLICY):
/// `rate-limit 1/s burst 2`, `ask 1000 ms, else block`. (The scenario
/// does not depend on wfpctl; a test with the `tryout` feature checks the
/// two agree.)
pub fn action_text(action: &PolicyAction) -> String {
    match action {
        PolicyAction::Permit => "permit".to_string(),
        PolicyAction::Block => "block".to_string(),
        PolicyAction::Audit => "audit".to_string(),
        PolicyAction::RateLimit { rate_per_sec, burst } => format!("rate-limit {rate_per_sec}/s burst {burst}"),
        PolicyAction::Ask { timeout_ms, default_verdict } => {
            format!("ask {timeout_ms} ms, else {}", verdict_name(*default_verdict))
        }
    }
}

/// A policy in words: the action, and the log level unless it is off
/// (`audit, log info`).
pub fn policy_text(policy: &PolicyRepr) -> String {
    let action = action_text(&policy.action);
    let level = match policy.log_level {
        LogLevel::Off => return action,
        LogLevel::Error => "error",
        LogLevel::Warning => "warning",
        LogLevel::Info => "info",
        LogLevel::Trace => "trace",
    };
    format!("{action}, log {level}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wfpcallout_wire::Label;

    #[cfg(feature = "tryout")]
    #[test]
    fn policies_read_as_wfpctl_writes_them() {
        for action in [
            PolicyAction::Permit,
            PolicyAction::Block,
            PolicyAction::Audit,
            PolicyAction::RateLimit { rate_per_sec: 10, burst: 20 },
            PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Permit },
            PolicyAction::Ask { timeout_ms: 1, default_verdict: Verdict::Block },
        ] {
            assert_eq!(action_text(&action), wfpctl::policy::describe_action(&action));
        }
        for level in [LogLevel::Error, LogLevel::Warning, LogLevel::Info, LogLevel::Trace] {
            let policy = PolicyRepr { action: PolicyAction::Audit, log_level: level, label: Label::EMPTY };
            assert_eq!(policy_text(&policy), format!("audit, log {}", wfpctl::policy::log_level_name(level)));
        }
    }

    #[test]
    fn names() {
        assert_eq!(layer_name(FWPS_LAYER_ALE_AUTH_CONNECT_V4), "FWPM_LAYER_ALE_AUTH_CONNECT_V4");
        assert_eq!(layer_name(FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6), "FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6");
        assert_eq!(layer_name(7), "layer 7");
        assert_eq!(status_text(STATUS_BAD_DATA), "0xC000090B (STATUS_BAD_DATA)");
        assert_eq!(status_text(0x0000_1234), "0x00001234");
        let ask = PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: 1_000, default_verdict: Verdict::Block },
            log_level: LogLevel::Off,
            label: Label::EMPTY,
        };
        assert_eq!(policy_text(&ask), "ask 1000 ms, else block");
        let limit = PolicyRepr {
            action: PolicyAction::RateLimit { rate_per_sec: 1, burst: 2 },
            log_level: LogLevel::Info,
            label: Label::EMPTY,
        };
        assert_eq!(policy_text(&limit), "rate-limit 1/s burst 2, log info");
    }
}
