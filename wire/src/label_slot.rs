//! A [`Label`] stored in a fixed-size slot of [`LABEL_MAX_LEN`] bytes, as in
//! the statistics entries and the agent's requests: a separate `label_len`
//! byte says how many bytes are text, and the rest of the slot is zero.
//!
//! Decoding checks, in this order: `label_len <= LABEL_MAX_LEN`
//! ([`WireError::LabelTooLong`]), the text is UTF-8
//! ([`WireError::LabelNotUtf8`]) without control characters
//! ([`WireError::LabelControlCharacter`]), the rest of the slot is zero
//! ([`WireError::ReservedNotZero`]). So exactly one slot encodes each label.

use crate::label::LABEL_MAX_LEN;
use crate::{Label, WireError};

/// Decodes a label from its length byte and its slot (which the caller's
/// checked view guarantees is [`LABEL_MAX_LEN`] bytes long).
pub(crate) fn decode(label_len: u8, slot: &[u8]) -> Result<Label, WireError> {
    let len = usize::from(label_len);
    if len > LABEL_MAX_LEN {
        return Err(WireError::LabelTooLong);
    }
    let (text, padding) = slot.split_at_checked(len).ok_or(WireError::LabelTooLong)?;
    let label = Label::from_bytes(text)?;
    if padding.iter().any(|&b| b != 0) {
        return Err(WireError::ReservedNotZero);
    }
    Ok(label)
}

/// Writes `label` into `slot`, zeroing the rest of it, and returns the
/// `label_len` byte to store beside it. If the slot is too short for the
/// label (never the case for a slot of [`LABEL_MAX_LEN`] bytes) it is only
/// zeroed.
pub(crate) fn encode(label: &Label, slot: &mut [u8]) -> u8 {
    slot.fill(0);
    let text = label.as_bytes();
    if let Some(dst) = slot.get_mut(..text.len()) {
        dst.copy_from_slice(text);
    }
    // A label is at most LABEL_MAX_LEN bytes, which fits a `u8`.
    u8::try_from(text.len()).unwrap_or(u8::MAX)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let label = Label::new("ask-ü").unwrap();
        let mut slot = [0xa5u8; LABEL_MAX_LEN];
        let len = encode(&label, &mut slot);
        assert_eq!(len, 6);
        assert_eq!(&slot[..6], "ask-ü".as_bytes());
        assert!(slot[6..].iter().all(|&b| b == 0));
        assert_eq!(decode(len, &slot), Ok(label));
    }

    #[test]
    fn full_and_empty() {
        let slot = [b'z'; LABEL_MAX_LEN];
        assert_eq!(decode(64, &slot).map(|l| l.len()), Ok(64));
        assert_eq!(decode(0, &[0; LABEL_MAX_LEN]), Ok(Label::EMPTY));
    }

    #[test]
    fn errors_in_order() {
        let mut slot = [0u8; LABEL_MAX_LEN];
        assert_eq!(decode(65, &slot), Err(WireError::LabelTooLong));
        assert_eq!(decode(255, &slot), Err(WireError::LabelTooLong));
        slot[0] = 0xff;
        slot[10] = 1;
        assert_eq!(decode(1, &slot), Err(WireError::LabelNotUtf8));
        slot[0] = b'a';
        assert_eq!(decode(1, &slot), Err(WireError::ReservedNotZero));
        // Counted as text, the zeros and the 1 are control characters.
        assert_eq!(decode(11, &slot), Err(WireError::LabelControlCharacter(0)));
        slot[1..10].fill(b'b');
        assert_eq!(decode(11, &slot), Err(WireError::LabelControlCharacter(1)));
        slot[10] = b'c';
        assert_eq!(decode(11, &slot), Ok(Label::new("abbbbbbbbbc").unwrap()));
    }

    #[test]
    fn short_slot_never_panics() {
        assert_eq!(decode(3, &[b'a'; 2]), Err(WireError::LabelTooLong));
        let mut short = [0xa5u8; 2];
        assert_eq!(encode(&Label::new("abc").unwrap(), &mut short), 3);
        assert_eq!(short, [0, 0]);
    }
}
