//! A short, inline, always-valid UTF-8 name attached to a policy.
//!
//! The label lets logs and the user-mode agent say *which* policy matched
//! ("block-telemetry") instead of a filter id. It is stored inline so that a
//! decoded policy is a plain `Copy` value the kernel can keep in a filter
//! context without allocating.

use core::fmt;

use crate::WireError;

/// Longest label, in bytes of UTF-8 (not characters).
pub const LABEL_MAX_LEN: usize = 64;

/// A policy label of at most [`LABEL_MAX_LEN`] bytes of UTF-8.
///
/// # Invariants
///
/// - `len <= LABEL_MAX_LEN`;
/// - `bytes[..len]` is valid UTF-8 without control characters (no
///   [`char::is_control`]: C0 controls, DEL, C1 controls), so a label
///   cannot break the line or the table it is printed in, nor carry
///   terminal escape sequences into a console or a debugger;
/// - `bytes[len..]` is all zero, so the derived equality and hash compare
///   labels by their text only.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label {
    bytes: [u8; LABEL_MAX_LEN],
    len: u8,
}

// The length is stored in a `u8`, on the wire as well as here.
const _: () = assert!(LABEL_MAX_LEN <= u8::MAX as usize);

impl Label {
    /// The empty label, used when a policy has no name.
    // INVARIANT: zero length, all bytes zero.
    pub const EMPTY: Label = Label { bytes: [0; LABEL_MAX_LEN], len: 0 };

    /// Makes a label from text, refusing anything longer than
    /// [`LABEL_MAX_LEN`] bytes rather than truncating it (a cut could fall
    /// inside a multi-byte character, and a silently shortened name is
    /// misleading in a log).
    pub fn new(s: &str) -> Result<Label, WireError> {
        Label::from_bytes(s.as_bytes())
    }

    /// Makes a label from untrusted bytes, as found on the wire: checks the
    /// length first, then UTF-8, then that no character is a control
    /// character ([`WireError::LabelControlCharacter`] names the first).
    pub fn from_bytes(bytes: &[u8]) -> Result<Label, WireError> {
        let len = u8::try_from(bytes.len()).map_err(|_| WireError::LabelTooLong)?;
        let mut label = Label::EMPTY;
        let dst = label.bytes.get_mut(..bytes.len()).ok_or(WireError::LabelTooLong)?;
        let text = core::str::from_utf8(bytes).map_err(|_| WireError::LabelNotUtf8)?;
        if let Some(control) = text.chars().find(|c| c.is_control()) {
            // Control characters (category Cc) are U+0000..=U+001F and
            // U+007F..=U+009F: the code point fits a byte.
            return Err(WireError::LabelControlCharacter(u8::try_from(u32::from(control)).unwrap_or(u8::MAX)));
        }
        dst.copy_from_slice(bytes);
        // INVARIANT: `bytes.len() <= LABEL_MAX_LEN` since the `get_mut`
        // succeeded, the copied bytes were checked to be UTF-8 without
        // control characters, and the rest of the array is still zero from
        // `EMPTY`.
        label.len = len;
        Ok(label)
    }

    /// The label text.
    pub fn as_str(&self) -> &str {
        // By the invariant this never takes the fallback; it exists only
        // because this crate does not use `unsafe` to skip the check.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The label as UTF-8 bytes, as written on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the label is empty (the policy has no name).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Label {
    fn default() -> Label {
        Label::EMPTY
    }
}

impl TryFrom<&str> for Label {
    type Error = WireError;

    fn try_from(s: &str) -> Result<Label, WireError> {
        Label::new(s)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Label").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn empty() {
        assert!(Label::EMPTY.is_empty());
        assert_eq!(Label::EMPTY.len(), 0);
        assert_eq!(Label::EMPTY.as_str(), "");
        assert_eq!(Label::EMPTY.as_bytes(), b"");
        assert_eq!(Label::new(""), Ok(Label::EMPTY));
        assert_eq!(Label::default(), Label::EMPTY);
    }

    #[test]
    fn ascii_roundtrip() {
        let label = Label::new("block-telemetry").unwrap_or(Label::EMPTY);
        assert_eq!(label.as_str(), "block-telemetry");
        assert_eq!(label.as_bytes(), b"block-telemetry");
        assert_eq!(label.len(), 15);
        assert!(!label.is_empty());
    }

    #[test]
    fn exactly_max_len_is_accepted() {
        let text = [b'a'; LABEL_MAX_LEN];
        let s = core::str::from_utf8(&text).unwrap_or("");
        let label = Label::new(s);
        assert!(label.is_ok());
        assert_eq!(label.map(|l| l.len()), Ok(LABEL_MAX_LEN));
    }

    #[test]
    fn one_over_max_len_is_rejected() {
        let text = [b'a'; LABEL_MAX_LEN + 1];
        let s = core::str::from_utf8(&text).unwrap_or("");
        assert_eq!(s.len(), LABEL_MAX_LEN + 1);
        assert_eq!(Label::new(s), Err(WireError::LabelTooLong));
        assert_eq!(Label::from_bytes(&text), Err(WireError::LabelTooLong));
    }

    #[test]
    fn far_over_max_len_is_rejected() {
        let text = [b'a'; 300];
        assert_eq!(Label::from_bytes(&text), Err(WireError::LabelTooLong));
    }

    #[test]
    fn multibyte_utf8_counts_bytes() {
        // "é" is 2 bytes: 32 of them fill the label exactly.
        let mut text = [0u8; LABEL_MAX_LEN];
        for pair in text.chunks_exact_mut(2) {
            pair.copy_from_slice("é".as_bytes());
        }
        let label = Label::from_bytes(&text);
        assert!(label.is_ok());
        let label = label.unwrap_or(Label::EMPTY);
        assert_eq!(label.as_str().chars().count(), 32);
        assert_eq!(label.len(), LABEL_MAX_LEN);

        // 63 bytes of ASCII plus a 2-byte character is 65 bytes.
        let mut over = [b'x'; LABEL_MAX_LEN + 1];
        over[LABEL_MAX_LEN - 1..].copy_from_slice("é".as_bytes());
        assert!(core::str::from_utf8(&over).is_ok());
        assert_eq!(Label::from_bytes(&over), Err(WireError::LabelTooLong));

        // Four-byte characters too.
        let label = Label::new("policy 🔒 ünïcödé");
        assert_eq!(label.map(|l| l.as_str() == "policy 🔒 ünïcödé"), Ok(true));
    }

    #[test]
    fn invalid_utf8_is_rejected() {
        for bad in [
            &[0xff][..],
            &[b'a', 0xc3][..],             // cut in the middle of "é"
            &[0xe2, 0x28, 0xa1][..],       // bad continuation
            &[0xc0, 0x80][..],             // overlong NUL
            &[0xed, 0xa0, 0x80][..],       // UTF-16 surrogate
            &[0xf4, 0x90, 0x80, 0x80][..], // above U+10FFFF
        ] {
            assert_eq!(Label::from_bytes(bad), Err(WireError::LabelNotUtf8));
        }
    }

    #[test]
    fn control_characters_are_rejected() {
        for (bad, code) in [
            ("\u{1b}[2Jcleared", 0x1b), // ESC: a terminal escape sequence
            ("two\nlines", 0x0a),
            ("carriage\rreturn", 0x0d),
            ("tab\there", 0x09),
            ("nul\0", 0x00),
            ("del\u{7f}", 0x7f),
            ("c1 \u{9b}2J", 0x9b), // CSI, the one-character ESC [
            ("c1 \u{85}", 0x85),   // NEL
        ] {
            assert_eq!(Label::new(bad), Err(WireError::LabelControlCharacter(code)), "{bad:?}");
            assert_eq!(Label::from_bytes(bad.as_bytes()), Err(WireError::LabelControlCharacter(code)), "{bad:?}");
        }
        // Length is checked first, then UTF-8, then control characters.
        let mut long = [0x1b; LABEL_MAX_LEN + 1];
        assert_eq!(Label::from_bytes(&long), Err(WireError::LabelTooLong));
        long[1] = 0xff;
        assert_eq!(Label::from_bytes(&long[..2]), Err(WireError::LabelNotUtf8));
        // Printable text around them is fine, spaces and other scripts too.
        for good in ["block telemetry", "ask: browser (443)", "policy 🔒 ünïcödé", "\u{a0}nbsp", "日本語"] {
            assert_eq!(Label::new(good).map(|l| l.as_str() == good), Ok(true), "{good:?}");
        }
    }

    #[test]
    fn equality_ignores_previous_contents() {
        let a = Label::new("ab").unwrap_or(Label::EMPTY);
        let b = Label::try_from("ab").unwrap_or(Label::EMPTY);
        assert_eq!(a, b);
        assert_ne!(a, Label::new("abc").unwrap_or(Label::EMPTY));
    }
}
