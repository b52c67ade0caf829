//! How much a policy asks the driver to log about the connections it matches.

use crate::WireError;

/// How verbosely the driver logs connections matched by a policy.
///
/// Ordered from quietest to most verbose, so "log this message?" is
/// `message_level <= policy_level` (with [`LogLevel::Off`] logging nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Log nothing.
    Off,
    /// Log failures only.
    Error,
    /// Log failures and suspicious events.
    Warning,
    /// Log every decision.
    Info,
    /// Log every decision with its inputs.
    Trace,
}

impl LogLevel {
    /// The wire code of this level.
    pub const fn code(self) -> u8 {
        match self {
            LogLevel::Off => 0,
            LogLevel::Error => 1,
            LogLevel::Warning => 2,
            LogLevel::Info => 3,
            LogLevel::Trace => 4,
        }
    }

    /// Decodes a wire code; every unassigned code is an error, not a default.
    pub const fn from_code(code: u8) -> Result<LogLevel, WireError> {
        match code {
            0 => Ok(LogLevel::Off),
            1 => Ok(LogLevel::Error),
            2 => Ok(LogLevel::Warning),
            3 => Ok(LogLevel::Info),
            4 => Ok(LogLevel::Trace),
            other => Err(WireError::UnknownLogLevel(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_unknown_rejected() {
        for code in 0..=u8::MAX {
            match LogLevel::from_code(code) {
                Ok(level) => assert_eq!(level.code(), code),
                Err(err) => {
                    assert!(code > 4);
                    assert_eq!(err, WireError::UnknownLogLevel(code));
                }
            }
        }
    }

    #[test]
    fn ordered_by_verbosity() {
        assert!(LogLevel::Off < LogLevel::Error);
        assert!(LogLevel::Error < LogLevel::Warning);
        assert!(LogLevel::Warning < LogLevel::Info);
        assert!(LogLevel::Info < LogLevel::Trace);
    }
}
