//! The names a WFP engineer knows things by: `FWPM_LAYER_*` for run-time
//! layer ids, `STATUS_*` for NTSTATUS codes, and a policy in words (the
//! last two in the wire crate's words, shared with wfpctl).
#![forbid(unsafe_code)]

use fwps_types::*;
use wfpcallout_wire::text::{describe_action, log_level_name, ntstatus_name};
use wfpcallout_wire::{LogLevel, PolicyRepr};

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

/// `0xC000090B (STATUS_BAD_DATA)`, or the code alone when it has no name
/// (the names are the wire crate's, which wfpctl's errors use too).
pub fn status_text(status: NTSTATUS) -> String {
    let code = u32::from_ne_bytes(status.to_ne_bytes());
    match ntstatus_name(code) {
        Some(name) => format!("{code:#010X} ({name})"),
        None => format!("{code:#010X}"),
    }
}

/// A policy in words, as wfpctl writes its action and log level: the
/// action, and the log level unless it is off (`audit, log info`).
pub fn policy_text(policy: &PolicyRepr) -> String {
    let action = describe_action(&policy.action);
    match policy.log_level {
        LogLevel::Off => action,
        level => format!("{action}, log {}", log_level_name(level)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wfpcallout_wire::text::NTSTATUS_NAMES;
    use wfpcallout_wire::{Label, PolicyAction, Verdict};

    /// The shared table names each code as `fwps_types` does.
    #[test]
    fn ntstatus_names_match_the_constants() {
        let constants = [
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
            (STATUS_FWP_PROVIDER_NOT_FOUND, "STATUS_FWP_PROVIDER_NOT_FOUND"),
            (STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND, "STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND"),
            (STATUS_FWP_SUBLAYER_NOT_FOUND, "STATUS_FWP_SUBLAYER_NOT_FOUND"),
            (STATUS_FWP_ALREADY_EXISTS, "STATUS_FWP_ALREADY_EXISTS"),
            (STATUS_FWP_IN_USE, "STATUS_FWP_IN_USE"),
            (STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER, "STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER"),
        ];
        for (status, name) in constants {
            assert!(status_text(status).ends_with(&format!(" ({name})")), "{}", status_text(status));
        }
        // Every entry of the table is one of these.
        assert_eq!(NTSTATUS_NAMES.len(), constants.len());
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
