//! Hexadecimal text for `wfpctl policy encode` and `decode`.
#![forbid(unsafe_code)]

use core::fmt;

/// Lowercase hex, two digits per byte, no separators.
pub fn encode(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Why text is not hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HexError {
    /// A character that is not a hex digit (nor whitespace, `:` or `-`).
    NotADigit {
        /// The character.
        character: char,
        /// Its position (in characters).
        position: usize,
    },
    /// An odd number of digits.
    OddLength,
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::NotADigit { character, position } => {
                write!(f, "'{character}' at position {position} is not a hex digit")
            }
            HexError::OddLength => f.write_str("odd number of hex digits"),
        }
    }
}

impl std::error::Error for HexError {}

/// Decodes hex in either case. An optional `0x` prefix, whitespace, `:` and
/// `-` between digits are ignored, so a dump pasted as `57 46 50 43 ...`
/// or `57:46:50:43:...` decodes too.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim();
    let (skip, body) = match trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")) {
        Some(rest) => (2, rest),
        None => (0, trimmed),
    };
    let offset = text.len() - text.trim_start().len() + skip;
    let mut digits = Vec::with_capacity(body.len());
    for (position, character) in body.chars().enumerate() {
        if character.is_ascii_whitespace() || character == ':' || character == '-' {
            continue;
        }
        let digit = character.to_digit(16).ok_or(HexError::NotADigit { character, position: position + offset })?;
        // A hex digit is below 16.
        digits.push(u8::try_from(digit).unwrap_or(0));
    }
    let pairs = digits.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(HexError::OddLength);
    }
    Ok(pairs.map(|pair| pair.iter().fold(0u8, |byte, digit| (byte << 4) | digit)).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode(&bytes);
        assert_eq!(text.len(), 512);
        assert!(text.starts_with("000102"));
        assert!(text.ends_with("fdfeff"));
        assert_eq!(decode(&text).unwrap(), bytes);
        assert_eq!(decode(&text.to_uppercase()).unwrap(), bytes);
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn separators_and_prefix() {
        assert_eq!(decode("  0x5746 5043\n").unwrap(), b"WFPC");
        assert_eq!(decode("57:46:50:43").unwrap(), b"WFPC");
        assert_eq!(decode("57-46-50-43").unwrap(), b"WFPC");
    }

    #[test]
    fn errors() {
        assert_eq!(decode("574"), Err(HexError::OddLength));
        assert_eq!(decode("57zz"), Err(HexError::NotADigit { character: 'z', position: 2 }));
        assert_eq!(decode(" 0x5g"), Err(HexError::NotADigit { character: 'g', position: 4 }));
        assert_eq!(decode("57zz").unwrap_err().to_string(), "'z' at position 2 is not a hex digit");
    }
}
