//! The input of [`IOCTL_WFPCALLOUT_SET_LOG_LEVEL`](crate::IOCTL_WFPCALLOUT_SET_LOG_LEVEL):
//! the most verbose level the driver's debug output may print. Lines above
//! it are neither formatted nor printed, so an administrator can make
//! logging cost nothing on a busy machine and turn it back on to diagnose.
//!
//! [`LogGate`] is a checked view over the raw bytes; [`LogGateRepr`] is the
//! decoded meaning.
//!
//! # Layout
//!
//! The buffer is exactly [`LOG_GATE_LEN`] (4) bytes.
//!
//! | Offset | Size | Field       | Contents                                             |
//! |-------:|-----:|-------------|------------------------------------------------------|
//! | 0      | 1    | `max_level` | a [`LogLevel`] code: `0` off, `1` error .. `4` trace |
//! | 1      | 3    | reserved    | must be `0`                                          |
//!
//! Checks run in this order, and the first failure is reported: exact
//! length, reserved bytes, the level code ([`WireError::UnknownLogLevel`]).

use crate::bytes::{clear, set_u8, u8_at, zero_at};
use crate::{LogLevel, WireError};

/// Length of a log gate request.
pub const LOG_GATE_LEN: usize = 4;

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const MAX_LEVEL: usize = 0;
    pub(super) const RESERVED: Range<usize> = 1..4;
}

const _: () = assert!(field::RESERVED.end == LOG_GATE_LEN);

/// A view over the bytes of a log gate request.
///
/// Build it with [`LogGate::new_checked`] for untrusted input; after that
/// every accessor reads inside the buffer. No accessor or setter can panic:
/// on a view made with [`LogGate::new_unchecked`] over a short buffer,
/// reads of absent bytes return zero and writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGate<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(LogGate, LOG_GATE_LEN);

impl<T: AsRef<[u8]>> LogGate<T> {
    /// The raw level code.
    pub fn max_level(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::MAX_LEVEL)
    }

    /// Whether every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        zero_at(self.buffer.as_ref(), field::RESERVED)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> LogGate<T> {
    /// Sets the raw level code.
    pub fn set_max_level(&mut self, code: u8) {
        set_u8(self.buffer.as_mut(), field::MAX_LEVEL, code);
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        clear(self.buffer.as_mut(), field::RESERVED);
    }
}

/// A decoded log gate request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGateRepr {
    /// The most verbose level printed ([`LogLevel::Off`]: nothing).
    pub max_level: LogLevel,
}

impl LogGateRepr {
    /// Decodes a request, checking its length, reserved bytes and level.
    pub fn parse(bytes: &[u8]) -> Result<LogGateRepr, WireError> {
        let view = LogGate::new_checked(bytes)?;
        if !view.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        Ok(LogGateRepr { max_level: LogLevel::from_code(view.max_level())? })
    }

    /// Writes the request into `buffer`, which must be exactly
    /// [`LOG_GATE_LEN`] bytes.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<(), WireError> {
        let mut view = LogGate::new_checked(buffer)?;
        view.set_max_level(self.max_level.code());
        view.clear_reserved();
        Ok(())
    }

    /// The encoded request.
    pub fn to_bytes(&self) -> [u8; LOG_GATE_LEN] {
        [self.max_level.code(), 0, 0, 0]
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_level_round_trips() {
        for level in [LogLevel::Off, LogLevel::Error, LogLevel::Warning, LogLevel::Info, LogLevel::Trace] {
            let repr = LogGateRepr { max_level: level };
            let mut bytes = [0xAA; LOG_GATE_LEN];
            repr.emit(&mut bytes).unwrap();
            assert_eq!(bytes, repr.to_bytes());
            assert_eq!(bytes, [level.code(), 0, 0, 0]);
            assert_eq!(LogGateRepr::parse(&bytes), Ok(repr));
        }
    }

    #[test]
    fn bad_sizes_reserved_bytes_and_levels_are_refused() {
        assert_eq!(LogGateRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(LogGateRepr::parse(&[1, 0, 0]), Err(WireError::Truncated));
        assert_eq!(LogGateRepr::parse(&[1, 0, 0, 0, 0]), Err(WireError::LengthMismatch));
        for at in 1..LOG_GATE_LEN {
            let mut bytes = [1, 0, 0, 0];
            bytes[at] = 1;
            assert_eq!(LogGateRepr::parse(&bytes), Err(WireError::ReservedNotZero), "byte {at}");
        }
        assert_eq!(LogGateRepr::parse(&[5, 0, 0, 0]), Err(WireError::UnknownLogLevel(5)));
        assert_eq!(LogGateRepr::parse(&[0xFF, 0, 0, 0]), Err(WireError::UnknownLogLevel(0xFF)));
        let mut short = [0; 3];
        assert_eq!(LogGateRepr { max_level: LogLevel::Info }.emit(&mut short), Err(WireError::Truncated));
    }
}
