//! What a policy tells the callout to do with a matched connection, and the
//! ranges its parameters must lie in.
//!
//! The ranges are part of the wire format: a blob whose parameters fall
//! outside them is rejected by the kernel rather than clamped, so a typo in a
//! tool cannot turn into a silently different rule.

use crate::WireError;

/// Highest accepted [`PolicyAction::RateLimit`] `rate_per_sec`.
pub const RATE_LIMIT_RATE_MAX: u32 = 1_000_000;
/// Highest accepted [`PolicyAction::RateLimit`] `burst`.
pub const RATE_LIMIT_BURST_MAX: u32 = 1_000_000;
/// Highest accepted [`PolicyAction::Ask`] `timeout_ms` (ten minutes).
pub const ASK_TIMEOUT_MS_MAX: u32 = 600_000;

/// Wire codes of the actions.
mod code {
    pub(super) const PERMIT: u8 = 0;
    pub(super) const BLOCK: u8 = 1;
    pub(super) const AUDIT: u8 = 2;
    pub(super) const RATE_LIMIT: u8 = 3;
    pub(super) const ASK: u8 = 4;
}

/// A final decision for a connection: what FWP_ACTION_PERMIT or
/// FWP_ACTION_BLOCK the callout will write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the connection through.
    Permit,
    /// Refuse the connection.
    Block,
}

impl Verdict {
    /// The wire code of this verdict. Zero is deliberately unassigned, so a
    /// zero-filled [`PolicyAction::Ask`] cannot silently default to permit.
    pub const fn code(self) -> u8 {
        match self {
            Verdict::Permit => 1,
            Verdict::Block => 2,
        }
    }

    /// Decodes a wire code; every unassigned code (including zero) is an
    /// error.
    pub const fn from_code(code: u8) -> Result<Verdict, WireError> {
        match code {
            1 => Ok(Verdict::Permit),
            2 => Ok(Verdict::Block),
            other => Err(WireError::UnknownVerdict(other)),
        }
    }
}

/// What the callout does with a connection its filter matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Permit the connection.
    Permit,
    /// Block the connection.
    Block,
    /// Permit the connection and report it.
    Audit,
    /// Permit connections up to a token-bucket rate, block the excess.
    RateLimit {
        /// Tokens added per second, `1..=`[`RATE_LIMIT_RATE_MAX`].
        rate_per_sec: u32,
        /// Bucket size, `1..=`[`RATE_LIMIT_BURST_MAX`].
        burst: u32,
    },
    /// Pend the connection and ask the user-mode agent for a verdict.
    Ask {
        /// How long to wait for the agent, `1..=`[`ASK_TIMEOUT_MS_MAX`] ms.
        timeout_ms: u32,
        /// What to decide when the agent does not answer in time.
        default_verdict: Verdict,
    },
}

/// The action as it sits in the policy header: code, verdict byte and the two
/// parameter slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActionFields {
    pub(crate) code: u8,
    pub(crate) verdict: u8,
    pub(crate) param_a: u32,
    pub(crate) param_b: u32,
}

impl PolicyAction {
    /// The wire code of this action.
    pub const fn code(&self) -> u8 {
        match self {
            PolicyAction::Permit => code::PERMIT,
            PolicyAction::Block => code::BLOCK,
            PolicyAction::Audit => code::AUDIT,
            PolicyAction::RateLimit { .. } => code::RATE_LIMIT,
            PolicyAction::Ask { .. } => code::ASK,
        }
    }

    /// Checks the parameters against the ranges the wire format accepts, so
    /// that an encoder never writes a blob the decoder would refuse.
    pub const fn check(&self) -> Result<(), WireError> {
        let ok = match *self {
            PolicyAction::Permit | PolicyAction::Block | PolicyAction::Audit => true,
            PolicyAction::RateLimit { rate_per_sec, burst } => {
                rate_per_sec >= 1 && rate_per_sec <= RATE_LIMIT_RATE_MAX && burst >= 1 && burst <= RATE_LIMIT_BURST_MAX
            }
            PolicyAction::Ask { timeout_ms, .. } => timeout_ms >= 1 && timeout_ms <= ASK_TIMEOUT_MS_MAX,
        };
        if ok { Ok(()) } else { Err(WireError::BadActionParameters) }
    }

    /// Splits the action into its header fields. Slots the action does not
    /// use are zero.
    pub(crate) const fn to_fields(self) -> ActionFields {
        let (verdict, param_a, param_b) = match self {
            PolicyAction::Permit | PolicyAction::Block | PolicyAction::Audit => (0, 0, 0),
            PolicyAction::RateLimit { rate_per_sec, burst } => (0, rate_per_sec, burst),
            PolicyAction::Ask { timeout_ms, default_verdict } => (default_verdict.code(), timeout_ms, 0),
        };
        ActionFields { code: self.code(), verdict, param_a, param_b }
    }

    /// Rebuilds an action from its header fields, strictly: unknown codes,
    /// out-of-range parameters and non-zero unused slots are all refused, so
    /// that every accepted header re-encodes to the same bytes.
    pub(crate) const fn from_fields(fields: ActionFields) -> Result<PolicyAction, WireError> {
        let ActionFields { code, verdict, param_a, param_b } = fields;
        let action = match code {
            code::PERMIT | code::BLOCK | code::AUDIT => {
                if verdict != 0 || param_a != 0 || param_b != 0 {
                    return Err(WireError::BadActionParameters);
                }
                match code {
                    code::PERMIT => PolicyAction::Permit,
                    code::BLOCK => PolicyAction::Block,
                    _ => PolicyAction::Audit,
                }
            }
            code::RATE_LIMIT => {
                if verdict != 0 {
                    return Err(WireError::BadActionParameters);
                }
                PolicyAction::RateLimit { rate_per_sec: param_a, burst: param_b }
            }
            code::ASK => {
                let default_verdict = match Verdict::from_code(verdict) {
                    Ok(v) => v,
                    Err(err) => return Err(err),
                };
                if param_b != 0 {
                    return Err(WireError::BadActionParameters);
                }
                PolicyAction::Ask { timeout_ms: param_a, default_verdict }
            }
            other => return Err(WireError::UnknownAction(other)),
        };
        match action.check() {
            Ok(()) => Ok(action),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(code: u8, verdict: u8, param_a: u32, param_b: u32) -> ActionFields {
        ActionFields { code, verdict, param_a, param_b }
    }

    #[test]
    fn verdict_codes() {
        for code in 0..=u8::MAX {
            match Verdict::from_code(code) {
                Ok(v) => assert_eq!(v.code(), code),
                Err(err) => assert_eq!(err, WireError::UnknownVerdict(code)),
            }
        }
        assert_eq!(Verdict::from_code(0), Err(WireError::UnknownVerdict(0)));
    }

    #[test]
    fn unknown_action_codes() {
        for code in 5..=u8::MAX {
            assert_eq!(PolicyAction::from_fields(fields(code, 0, 0, 0)), Err(WireError::UnknownAction(code)));
        }
    }

    #[test]
    fn simple_actions_need_zero_slots() {
        for code in [code::PERMIT, code::BLOCK, code::AUDIT] {
            assert!(PolicyAction::from_fields(fields(code, 0, 0, 0)).is_ok());
            for bad in [fields(code, 1, 0, 0), fields(code, 0, 1, 0), fields(code, 0, 0, 1)] {
                assert_eq!(PolicyAction::from_fields(bad), Err(WireError::BadActionParameters));
            }
        }
    }

    #[test]
    fn rate_limit_bounds() {
        let max = RATE_LIMIT_RATE_MAX;
        let burst_max = RATE_LIMIT_BURST_MAX;
        for (rate, burst, ok) in [
            (1, 1, true),
            (max, burst_max, true),
            (0, 1, false),
            (1, 0, false),
            (max + 1, 1, false),
            (1, burst_max + 1, false),
            (u32::MAX, u32::MAX, false),
        ] {
            let got = PolicyAction::from_fields(fields(code::RATE_LIMIT, 0, rate, burst));
            if ok {
                assert_eq!(got, Ok(PolicyAction::RateLimit { rate_per_sec: rate, burst }));
            } else {
                assert_eq!(got, Err(WireError::BadActionParameters));
            }
        }
        assert_eq!(PolicyAction::from_fields(fields(code::RATE_LIMIT, 1, 10, 10)), Err(WireError::BadActionParameters));
    }

    #[test]
    fn ask_bounds_and_verdict() {
        for (timeout, ok) in [(1, true), (ASK_TIMEOUT_MS_MAX, true), (0, false), (ASK_TIMEOUT_MS_MAX + 1, false)] {
            let got = PolicyAction::from_fields(fields(code::ASK, 2, timeout, 0));
            assert_eq!(got.is_ok(), ok, "timeout {timeout}");
        }
        assert_eq!(PolicyAction::from_fields(fields(code::ASK, 0, 100, 0)), Err(WireError::UnknownVerdict(0)));
        assert_eq!(PolicyAction::from_fields(fields(code::ASK, 3, 100, 0)), Err(WireError::UnknownVerdict(3)));
        assert_eq!(PolicyAction::from_fields(fields(code::ASK, 1, 100, 1)), Err(WireError::BadActionParameters));
    }

    #[test]
    fn fields_roundtrip() {
        for action in [
            PolicyAction::Permit,
            PolicyAction::Block,
            PolicyAction::Audit,
            PolicyAction::RateLimit { rate_per_sec: 5, burst: 20 },
            PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block },
            PolicyAction::Ask { timeout_ms: 1, default_verdict: Verdict::Permit },
        ] {
            assert_eq!(action.check(), Ok(()));
            assert_eq!(PolicyAction::from_fields(action.to_fields()), Ok(action));
        }
    }

    #[test]
    fn check_rejects_out_of_range_reprs() {
        assert_eq!(PolicyAction::RateLimit { rate_per_sec: 0, burst: 1 }.check(), Err(WireError::BadActionParameters));
        assert_eq!(
            PolicyAction::Ask { timeout_ms: 0, default_verdict: Verdict::Permit }.check(),
            Err(WireError::BadActionParameters)
        );
    }
}
