//! Policy building: the command line's `--action`, `--rate`, `--burst`,
//! `--timeout-ms`, `--default`, `--log` and `--label` become a
//! [`PolicyRepr`], and that becomes the blob a filter's provider context
//! carries (the driver decodes it with the very same
//! [`PolicyRepr::parse`]).
#![forbid(unsafe_code)]

use core::fmt;

use clap::ValueEnum;
use wfpcallout_wire::{
    ASK_TIMEOUT_MS_MAX, Label, LogLevel, PolicyAction, PolicyRepr, RATE_LIMIT_BURST_MAX, RATE_LIMIT_RATE_MAX, Verdict,
    WireError,
};

/// `--action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum ActionKind {
    /// Permit matched connections (also: allow).
    #[value(alias = "allow")]
    Permit,
    /// Block matched connections (also: deny).
    #[value(alias = "deny")]
    Block,
    /// Permit, count and log matched connections.
    Audit,
    /// Permit up to --rate connections per second (bursts of --burst), block the rest.
    RateLimit,
    /// Hold each matched connection until `wfpctl agent` answers (or --timeout-ms passes).
    Ask,
}

/// `--default`: the verdict of an ask policy when no agent answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum VerdictArg {
    /// Permit the connection (also: allow).
    #[value(alias = "allow")]
    Permit,
    /// Block the connection (also: deny).
    #[value(alias = "deny")]
    Block,
}

impl From<VerdictArg> for Verdict {
    fn from(verdict: VerdictArg) -> Verdict {
        match verdict {
            VerdictArg::Permit => Verdict::Permit,
            VerdictArg::Block => Verdict::Block,
        }
    }
}

/// `--log`: how much the driver logs about matched connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Default)]
pub enum LogArg {
    /// Nothing.
    #[default]
    Off,
    /// Failures.
    Error,
    /// Failures and suspicious events.
    Warning,
    /// Every decision.
    Info,
    /// Every decision with its inputs.
    Trace,
}

impl From<LogArg> for LogLevel {
    fn from(level: LogArg) -> LogLevel {
        match level {
            LogArg::Off => LogLevel::Off,
            LogArg::Error => LogLevel::Error,
            LogArg::Warning => LogLevel::Warning,
            LogArg::Info => LogLevel::Info,
            LogArg::Trace => LogLevel::Trace,
        }
    }
}

/// How long an ask policy waits for the agent when `--timeout-ms` is not given.
pub const DEFAULT_ASK_TIMEOUT_MS: u32 = 10_000;

/// The default verdict of an ask policy when `--default` is not given.
pub const DEFAULT_ASK_VERDICT: Verdict = Verdict::Block;

/// The policy options as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PolicyOptions {
    /// `--action` (permit when absent).
    pub action: Option<ActionKind>,
    /// `--rate`.
    pub rate: Option<u32>,
    /// `--burst`.
    pub burst: Option<u32>,
    /// `--timeout-ms`.
    pub timeout_ms: Option<u32>,
    /// `--default`.
    pub default_verdict: Option<VerdictArg>,
    /// `--log`.
    pub log: LogArg,
    /// `--label`.
    pub label: Option<String>,
}

/// Why the policy options do not make a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// An option that only one action uses was given with another.
    OptionNeedsAction {
        /// The option, without dashes.
        option: &'static str,
        /// The action it belongs to.
        action: &'static str,
    },
    /// `--action rate-limit` without `--rate`.
    MissingRate,
    /// A parameter outside the range the driver accepts.
    OutOfRange {
        /// The option, without dashes.
        option: &'static str,
        /// The value given.
        value: u32,
        /// The largest accepted value (the smallest is 1).
        max: u32,
    },
    /// The label is longer than 64 bytes, or has a control character.
    Label(WireError),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::OptionNeedsAction { option, action } => {
                write!(f, "--{option} is only meaningful with --action {action}")
            }
            PolicyError::MissingRate => f.write_str("--action rate-limit needs --rate <PER_SECOND>"),
            PolicyError::OutOfRange { option, value, max } => {
                write!(f, "--{option} {value} is out of range: use 1 to {max}")
            }
            PolicyError::Label(error @ WireError::LabelControlCharacter(_)) => write!(f, "--label: {error}"),
            PolicyError::Label(error) => {
                write!(f, "--label: {error} (at most {} bytes of UTF-8)", wfpcallout_wire::LABEL_MAX_LEN)
            }
        }
    }
}

impl std::error::Error for PolicyError {}

fn in_range(option: &'static str, value: u32, max: u32) -> Result<u32, PolicyError> {
    if (1..=max).contains(&value) { Ok(value) } else { Err(PolicyError::OutOfRange { option, value, max }) }
}

impl PolicyOptions {
    /// Checks the options against each other and against the ranges the
    /// driver accepts, and builds the policy.
    pub fn build(&self) -> Result<PolicyRepr, PolicyError> {
        let action = self.action.unwrap_or(ActionKind::Permit);
        if action != ActionKind::RateLimit {
            for (option, given) in [("rate", self.rate.is_some()), ("burst", self.burst.is_some())] {
                if given {
                    return Err(PolicyError::OptionNeedsAction { option, action: "rate-limit" });
                }
            }
        }
        if action != ActionKind::Ask {
            for (option, given) in
                [("timeout-ms", self.timeout_ms.is_some()), ("default", self.default_verdict.is_some())]
            {
                if given {
                    return Err(PolicyError::OptionNeedsAction { option, action: "ask" });
                }
            }
        }
        let action = match action {
            ActionKind::Permit => PolicyAction::Permit,
            ActionKind::Block => PolicyAction::Block,
            ActionKind::Audit => PolicyAction::Audit,
            ActionKind::RateLimit => {
                let rate = in_range("rate", self.rate.ok_or(PolicyError::MissingRate)?, RATE_LIMIT_RATE_MAX)?;
                // One second's worth of connections when no burst is given.
                let burst = in_range("burst", self.burst.unwrap_or(rate), RATE_LIMIT_BURST_MAX)?;
                PolicyAction::RateLimit { rate_per_sec: rate, burst }
            }
            ActionKind::Ask => PolicyAction::Ask {
                timeout_ms: in_range(
                    "timeout-ms",
                    self.timeout_ms.unwrap_or(DEFAULT_ASK_TIMEOUT_MS),
                    ASK_TIMEOUT_MS_MAX,
                )?,
                default_verdict: self.default_verdict.map_or(DEFAULT_ASK_VERDICT, Verdict::from),
            },
        };
        let label = Label::new(self.label.as_deref().unwrap_or("")).map_err(PolicyError::Label)?;
        Ok(PolicyRepr { action, log_level: self.log.into(), label })
    }
}

/// Encodes a policy as the provider-context blob, refusing anything the
/// driver would refuse, and checks the result with the driver's decoder.
pub fn encode(policy: &PolicyRepr) -> Result<Vec<u8>, WireError> {
    policy.action.check()?;
    let blob = policy.to_bytes();
    // The driver decodes with this very function: a blob it would refuse
    // never leaves wfpctl.
    if PolicyRepr::parse(&blob)? != *policy {
        return Err(WireError::LengthMismatch);
    }
    Ok(blob)
}

/// Decodes a blob as the driver's notifyFn does.
pub fn decode(blob: &[u8]) -> Result<PolicyRepr, WireError> {
    PolicyRepr::parse(blob)
}

// The words for actions, verdicts and log levels are the scenario's too:
// one definition, in the wire crate, so the two cannot drift apart.
pub use wfpcallout_wire::text::{action_name, describe_action, log_level_name, verdict_name};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use wfpcallout_wire::{POLICY_HEADER_LEN, POLICY_MAGIC};

    fn action(kind: ActionKind) -> PolicyOptions {
        PolicyOptions { action: Some(kind), ..PolicyOptions::default() }
    }

    #[test]
    fn every_action_round_trips_through_the_driver_decoder() {
        let options = [
            PolicyOptions::default(),
            action(ActionKind::Block),
            PolicyOptions { log: LogArg::Info, label: Some("web".into()), ..action(ActionKind::Audit) },
            PolicyOptions { rate: Some(10), burst: Some(20), ..action(ActionKind::RateLimit) },
            PolicyOptions { rate: Some(RATE_LIMIT_RATE_MAX), ..action(ActionKind::RateLimit) },
            action(ActionKind::Ask),
            PolicyOptions {
                timeout_ms: Some(ASK_TIMEOUT_MS_MAX),
                default_verdict: Some(VerdictArg::Permit),
                log: LogArg::Trace,
                label: Some("ä".repeat(32)),
                ..action(ActionKind::Ask)
            },
        ];
        for option in options {
            let policy = option.build().unwrap();
            let blob = encode(&policy).unwrap();
            assert_eq!(&blob[..4], &POLICY_MAGIC);
            assert_eq!(blob.len(), POLICY_HEADER_LEN + policy.label.len());
            assert_eq!(PolicyRepr::parse(&blob), Ok(policy));
            assert_eq!(decode(&blob), Ok(policy));
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(PolicyOptions::default().build(), Ok(PolicyRepr::DEFAULT));
        let ask = action(ActionKind::Ask).build().unwrap();
        assert_eq!(
            ask.action,
            PolicyAction::Ask { timeout_ms: DEFAULT_ASK_TIMEOUT_MS, default_verdict: Verdict::Block }
        );
        let limited = PolicyOptions { rate: Some(7), ..action(ActionKind::RateLimit) }.build().unwrap();
        assert_eq!(limited.action, PolicyAction::RateLimit { rate_per_sec: 7, burst: 7 });
    }

    #[test]
    fn the_exact_bytes_of_an_audit_policy() {
        let policy = PolicyOptions { log: LogArg::Info, label: Some("web".into()), ..action(ActionKind::Audit) }
            .build()
            .unwrap();
        let blob = encode(&policy).unwrap();
        assert_eq!(
            blob,
            [
                b'W', b'F', b'P', b'C', 1, 0, 27, 0, // magic, version, reserved, total_len
                2, 3, 0, 3, // audit, info, no verdict, label_len
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // params, reserved
                b'w', b'e', b'b',
            ]
        );
    }

    #[test]
    fn options_of_another_action_are_refused() {
        for (options, option, needs) in [
            (PolicyOptions { rate: Some(1), ..action(ActionKind::Permit) }, "rate", "rate-limit"),
            (PolicyOptions { burst: Some(1), ..action(ActionKind::Ask) }, "burst", "rate-limit"),
            (PolicyOptions { timeout_ms: Some(5), ..action(ActionKind::Block) }, "timeout-ms", "ask"),
            (PolicyOptions { default_verdict: Some(VerdictArg::Permit), ..PolicyOptions::default() }, "default", "ask"),
        ] {
            let err = options.build().unwrap_err();
            assert_eq!(err, PolicyError::OptionNeedsAction { option, action: needs });
            assert_eq!(err.to_string(), format!("--{option} is only meaningful with --action {needs}"));
        }
        assert_eq!(action(ActionKind::RateLimit).build(), Err(PolicyError::MissingRate));
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let zero_timeout = PolicyOptions { timeout_ms: Some(0), ..action(ActionKind::Ask) };
        assert_eq!(
            zero_timeout.build(),
            Err(PolicyError::OutOfRange { option: "timeout-ms", value: 0, max: ASK_TIMEOUT_MS_MAX })
        );
        let fast = PolicyOptions { rate: Some(RATE_LIMIT_RATE_MAX + 1), ..action(ActionKind::RateLimit) };
        assert!(matches!(fast.build(), Err(PolicyError::OutOfRange { option: "rate", .. })));
        let no_burst = PolicyOptions { rate: Some(1), burst: Some(0), ..action(ActionKind::RateLimit) };
        assert!(matches!(no_burst.build(), Err(PolicyError::OutOfRange { option: "burst", .. })));
        // A repr built by hand with bad parameters is refused by encode.
        let bad = PolicyRepr { action: PolicyAction::RateLimit { rate_per_sec: 0, burst: 1 }, ..PolicyRepr::DEFAULT };
        assert_eq!(encode(&bad), Err(WireError::BadActionParameters));
    }

    #[test]
    fn long_labels_are_refused() {
        let long = PolicyOptions { label: Some("x".repeat(65)), ..PolicyOptions::default() };
        assert_eq!(long.build(), Err(PolicyError::Label(WireError::LabelTooLong)));
        let fits = PolicyOptions { label: Some("x".repeat(64)), ..PolicyOptions::default() };
        assert_eq!(fits.build().unwrap().label.len(), 64);
        let escape = PolicyOptions { label: Some("web\u{1b}[2J".to_string()), ..PolicyOptions::default() };
        let error = escape.build().unwrap_err();
        assert_eq!(error, PolicyError::Label(WireError::LabelControlCharacter(0x1b)));
        assert_eq!(error.to_string(), "--label: label contains a control character (U+001B)");
    }

    #[test]
    fn descriptions() {
        assert_eq!(describe_action(&PolicyAction::Audit), "audit");
        assert_eq!(
            describe_action(&PolicyAction::RateLimit { rate_per_sec: 10, burst: 20 }),
            "rate-limit 10/s burst 20"
        );
        assert_eq!(
            describe_action(&PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Permit }),
            "ask 5000 ms, else permit"
        );
        assert_eq!(log_level_name(LogLevel::Warning), "warning");
    }
}
