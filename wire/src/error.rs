//! Why a buffer was refused.
//!
//! One flat, `Copy` error type for every wire format in the crate (the
//! policy blob and the control device buffers), so the kernel can log it at
//! DISPATCH_LEVEL without allocating and user-mode tools can print the same
//! message.

use core::fmt;

/// Why decoding or encoding a wire buffer failed.
///
/// Variants carrying a `u8` report the offending code so that a log line is
/// enough to tell a corrupt blob from one written by a newer tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the fixed header or than its own length
    /// field says.
    Truncated,
    /// The length field disagrees with the buffer length (trailing bytes) or
    /// with the header length plus the label length.
    LengthMismatch,
    /// The buffer does not start with the expected magic bytes.
    BadMagic,
    /// The format version is not one this decoder understands.
    UnsupportedVersion(u8),
    /// The action code is not assigned.
    UnknownAction(u8),
    /// An action parameter is out of range, or a parameter slot the action
    /// does not use is not zero.
    BadActionParameters,
    /// The log level code is not assigned.
    UnknownLogLevel(u8),
    /// The default verdict code is not assigned.
    UnknownVerdict(u8),
    /// The label is longer than [`LABEL_MAX_LEN`](crate::LABEL_MAX_LEN) bytes.
    LabelTooLong,
    /// The label bytes are not valid UTF-8.
    LabelNotUtf8,
    /// The label contains a control character (Unicode category Cc: C0
    /// controls such as NUL, tab, newline and ESC, DEL, C1 controls);
    /// carries its code point, which is at most 0x9f. Labels reach text
    /// tables, kernel debug output and filter names, where such a
    /// character would corrupt or forge what a reader sees.
    LabelControlCharacter(u8),
    /// A reserved byte is not zero. This includes the padding after an IPv4
    /// address in a 16-byte address slot and after a label in a fixed-size
    /// label slot.
    ReservedNotZero,
    /// The output buffer is too small for the encoding.
    BufferTooSmall,
    /// A flags field has bits set that are not assigned; carries those bits.
    UnknownFlags(u32),
    /// A count or limit is outside the range its format allows.
    ValueOutOfRange,
    /// The filter origin code is not assigned.
    UnknownOrigin(u8),
    /// The traffic direction code is not assigned.
    UnknownDirection(u8),
    /// The IP version is neither 4 nor 6.
    UnknownIpVersion(u8),
    /// The entries of a statistics reply are not in strictly ascending
    /// filter id order after the query's cursor.
    EntriesOutOfOrder,
    /// The two addresses of a connection are not of the same family, so no
    /// single IP version describes them.
    AddressFamilyMismatch,
}

impl WireError {
    /// A fixed, human-readable description, usable where formatting is not
    /// (for example in a kernel trace call taking a static string).
    pub fn as_str(&self) -> &'static str {
        match self {
            WireError::Truncated => "buffer truncated",
            WireError::LengthMismatch => "length field mismatch",
            WireError::BadMagic => "bad magic",
            WireError::UnsupportedVersion(_) => "unsupported version",
            WireError::UnknownAction(_) => "unknown action code",
            WireError::BadActionParameters => "bad action parameters",
            WireError::UnknownLogLevel(_) => "unknown log level code",
            WireError::UnknownVerdict(_) => "unknown verdict code",
            WireError::LabelTooLong => "label too long",
            WireError::LabelNotUtf8 => "label is not valid UTF-8",
            WireError::LabelControlCharacter(_) => "label contains a control character",
            WireError::ReservedNotZero => "reserved field not zero",
            WireError::BufferTooSmall => "output buffer too small",
            WireError::UnknownFlags(_) => "unknown flag bits",
            WireError::ValueOutOfRange => "value out of range",
            WireError::UnknownOrigin(_) => "unknown filter origin code",
            WireError::UnknownDirection(_) => "unknown direction code",
            WireError::UnknownIpVersion(_) => "unknown IP version",
            WireError::EntriesOutOfOrder => "entries out of order",
            WireError::AddressFamilyMismatch => "address family mismatch",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnsupportedVersion(code)
            | WireError::UnknownAction(code)
            | WireError::UnknownLogLevel(code)
            | WireError::UnknownVerdict(code)
            | WireError::UnknownOrigin(code)
            | WireError::UnknownDirection(code)
            | WireError::UnknownIpVersion(code) => write!(f, "{} ({})", self.as_str(), code),
            WireError::UnknownFlags(bits) => write!(f, "{} ({:#x})", self.as_str(), bits),
            WireError::LabelControlCharacter(code) => write!(f, "{} (U+{:04X})", self.as_str(), code),
            _ => f.write_str(self.as_str()),
        }
    }
}

impl core::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    /// A fixed-capacity `fmt::Write` sink, so the test needs no allocator.
    struct Sink {
        buf: [u8; 64],
        len: usize,
    }

    impl Write for Sink {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
            let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    fn display(err: WireError) -> Sink {
        let mut sink = Sink { buf: [0; 64], len: 0 };
        assert!(write!(sink, "{err}").is_ok());
        sink
    }

    fn text(sink: &Sink) -> &str {
        core::str::from_utf8(sink.buf.get(..sink.len).unwrap_or(&[])).unwrap_or("")
    }

    #[test]
    fn display_without_code_is_as_str() {
        let sink = display(WireError::Truncated);
        assert_eq!(text(&sink), "buffer truncated");
    }

    #[test]
    fn display_with_code_names_it() {
        let sink = display(WireError::UnsupportedVersion(7));
        assert_eq!(text(&sink), "unsupported version (7)");
    }

    #[test]
    fn display_control_codes() {
        let sink = display(WireError::UnknownIpVersion(5));
        assert_eq!(text(&sink), "unknown IP version (5)");
        let sink = display(WireError::UnknownDirection(2));
        assert_eq!(text(&sink), "unknown direction code (2)");
        let sink = display(WireError::UnknownFlags(0x18));
        assert_eq!(text(&sink), "unknown flag bits (0x18)");
        let sink = display(WireError::LabelControlCharacter(0x1b));
        assert_eq!(text(&sink), "label contains a control character (U+001B)");
    }

    #[test]
    fn every_message_is_distinct_and_nonempty() {
        let all = [
            WireError::Truncated,
            WireError::LengthMismatch,
            WireError::BadMagic,
            WireError::UnsupportedVersion(0),
            WireError::UnknownAction(0),
            WireError::BadActionParameters,
            WireError::UnknownLogLevel(0),
            WireError::UnknownVerdict(0),
            WireError::LabelTooLong,
            WireError::LabelNotUtf8,
            WireError::LabelControlCharacter(0x1b),
            WireError::ReservedNotZero,
            WireError::BufferTooSmall,
            WireError::UnknownFlags(0),
            WireError::ValueOutOfRange,
            WireError::UnknownOrigin(0),
            WireError::UnknownDirection(0),
            WireError::UnknownIpVersion(0),
            WireError::EntriesOutOfOrder,
            WireError::AddressFamilyMismatch,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(!a.as_str().is_empty());
            for b in all.iter().skip(i + 1) {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }
}
