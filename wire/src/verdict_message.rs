//! The input of [`IOCTL_WFPCALLOUT_AGENT_SET_VERDICT`](crate::IOCTL_WFPCALLOUT_AGENT_SET_VERDICT):
//! the agent's decision on one [`AskRequest`](crate::AskRequest).
//!
//! [`VerdictMessage`] is a checked view over the raw bytes;
//! [`VerdictMessageRepr`] is the decoded meaning.
//!
//! # Layout
//!
//! All integers are little-endian; the buffer is exactly
//! [`VERDICT_MESSAGE_LEN`] (16) bytes.
//!
//! | Offset | Size | Field        | Contents                                            |
//! |-------:|-----:|--------------|-----------------------------------------------------|
//! | 0      | 8    | `request_id` | `u64`: the `request_id` of the ask request answered |
//! | 8      | 1    | `verdict`    | `1` Permit, `2` Block                               |
//! | 9      | 7    | reserved     | must be `0`                                         |
//!
//! Checks run in this order, and the first failure is reported: exact
//! length, reserved bytes, verdict ([`WireError::UnknownVerdict`]). Whether
//! `request_id` names a request still pending is for the driver to decide.

use crate::bytes::{clear, set_u8, set_u64, u8_at, u64_at, zero_at};
use crate::{Verdict, WireError};

/// Length of a verdict message.
pub const VERDICT_MESSAGE_LEN: usize = 16;

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const REQUEST_ID: Range<usize> = 0..8;
    pub(super) const VERDICT: usize = 8;
    pub(super) const RESERVED: Range<usize> = 9..16;
}

const _: () = assert!(field::RESERVED.end == VERDICT_MESSAGE_LEN);

/// A view over the bytes of a verdict message.
///
/// Build it with [`VerdictMessage::new_checked`] for untrusted input; after
/// that every accessor reads inside the buffer. No accessor or setter can
/// panic: on a view made with [`VerdictMessage::new_unchecked`] over a short
/// buffer, reads of absent bytes return zero and writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictMessage<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(VerdictMessage, VERDICT_MESSAGE_LEN);

impl<T: AsRef<[u8]>> VerdictMessage<T> {
    /// The id of the request answered.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::REQUEST_ID)
    }

    /// The raw verdict code.
    pub fn verdict_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VERDICT)
    }

    /// Whether every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        zero_at(self.buffer.as_ref(), field::RESERVED)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VerdictMessage<T> {
    /// Sets the id of the request answered.
    pub fn set_request_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::REQUEST_ID, value);
    }

    /// Sets the raw verdict code.
    pub fn set_verdict_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::VERDICT, value);
    }

    /// Zeroes every reserved byte.
    pub fn clear_reserved(&mut self) {
        clear(self.buffer.as_mut(), field::RESERVED);
    }
}

/// A decoded, valid verdict message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerdictMessageRepr {
    /// The `request_id` of the [`AskRequestRepr`](crate::AskRequestRepr)
    /// answered.
    pub request_id: u64,
    /// The agent's decision.
    pub verdict: Verdict,
}

impl VerdictMessageRepr {
    /// Decodes a verdict message, strictly: exactly [`VERDICT_MESSAGE_LEN`]
    /// bytes, reserved bytes zero, a known verdict.
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<VerdictMessageRepr, WireError> {
        let message = VerdictMessage::new_checked(bytes)?;
        if !message.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let verdict = Verdict::from_code(message.verdict_code())?;
        Ok(VerdictMessageRepr { request_id: message.request_id(), verdict })
    }

    /// Length of the encoding: always [`VERDICT_MESSAGE_LEN`].
    pub const fn buffer_len(&self) -> usize {
        VERDICT_MESSAGE_LEN
    }

    /// Encodes the message into the first [`VERDICT_MESSAGE_LEN`] bytes of
    /// `out`, leaving the rest untouched, and returns that length.
    ///
    /// Returns [`WireError::BufferTooSmall`] if `out` is too short, in which
    /// case `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let dst = out.get_mut(..VERDICT_MESSAGE_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut VerdictMessage::new_unchecked(dst));
        Ok(VERDICT_MESSAGE_LEN)
    }

    /// Encodes the message into a new vector, for the agent.
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; VERDICT_MESSAGE_LEN];
        self.write(&mut VerdictMessage::new_unchecked(out.as_mut_slice()));
        out
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, message: &mut VerdictMessage<T>) {
        message.set_request_id(self.request_id);
        message.set_verdict_code(self.verdict.code());
        message.clear_reserved();
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_util::{self, FixedFormat};

    impl FixedFormat for VerdictMessageRepr {
        const LEN: usize = VERDICT_MESSAGE_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            VerdictMessageRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// Permit request 1.
    static PERMIT_BYTES: [u8; 16] = [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // request_id = 1
        0x01, // verdict = Permit
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    ];

    /// Block request 0xfedc_ba98_7654_3210.
    static BLOCK_BYTES: [u8; 16] = [
        0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, // request_id
        0x02, // verdict = Block
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    ];

    fn fixtures() -> [(&'static [u8], VerdictMessageRepr); 2] {
        [
            (&PERMIT_BYTES, VerdictMessageRepr { request_id: 1, verdict: Verdict::Permit }),
            (&BLOCK_BYTES, VerdictMessageRepr { request_id: 0xfedc_ba98_7654_3210, verdict: Verdict::Block }),
        ]
    }

    #[test]
    fn layout_constants() {
        assert_eq!(VERDICT_MESSAGE_LEN, 16);
    }

    #[test]
    fn deconstruct() {
        let message = VerdictMessage::new_checked(&BLOCK_BYTES[..]).unwrap();
        assert_eq!(message.request_id(), 0xfedc_ba98_7654_3210);
        assert_eq!(message.verdict_code(), 2);
        assert!(message.reserved_is_zero());
        assert_eq!(message.into_inner(), &BLOCK_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 16];
        let mut message = VerdictMessage::new_unchecked(&mut buf[..]);
        message.set_request_id(1);
        message.set_verdict_code(1);
        message.clear_reserved();
        assert_eq!(buf, PERMIT_BYTES);
    }

    #[test]
    fn parse_and_emit_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(VerdictMessageRepr::parse(bytes), Ok(repr));
            test_util::assert_canonical(bytes, &repr);
            test_util::emit_too_small_writes_nothing(&repr);
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn to_bytes_matches_emit() {
        for (bytes, repr) in fixtures() {
            assert_eq!(repr.to_bytes().as_slice(), bytes);
        }
    }

    // ---- Every error. ----

    #[test]
    fn errors() {
        assert_eq!(VerdictMessageRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(VerdictMessageRepr::parse(&PERMIT_BYTES[..15]), Err(WireError::Truncated));
        assert_eq!(VerdictMessageRepr::parse(&[0u8; 17]), Err(WireError::LengthMismatch));
        for at in 9..16 {
            assert_eq!(
                test_util::parse_mutated::<VerdictMessageRepr>(&PERMIT_BYTES, |b| b[at] = 1),
                Err(WireError::ReservedNotZero),
                "byte {at}"
            );
        }
        for code in [0u8, 3, 0xff] {
            assert_eq!(
                test_util::parse_mutated::<VerdictMessageRepr>(&PERMIT_BYTES, |b| b[8] = code),
                Err(WireError::UnknownVerdict(code))
            );
        }
        // Reserved bytes are checked before the verdict.
        assert_eq!(
            test_util::parse_mutated::<VerdictMessageRepr>(&PERMIT_BYTES, |b| {
                b[8] = 0;
                b[9] = 1;
            }),
            Err(WireError::ReservedNotZero)
        );
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_bytes_of_every_length() {
        test_util::random_bytes_of_every_length::<VerdictMessageRepr>(0x510e_527f_ade6_82d1, &[]);
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        for (bytes, repr) in fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0x9b05_688c_2b3e_6c1f);
        }
    }

    #[test]
    fn mutated_fixtures() {
        for (bytes, _) in fixtures() {
            assert!(test_util::mutated::<VerdictMessageRepr>(bytes, 0x1f83_d9ab_fb41_bd6b) > 0);
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        for len in 0..VERDICT_MESSAGE_LEN {
            let mut buf = BLOCK_BYTES;
            let mut message = VerdictMessage::new_unchecked(&mut buf[..len]);
            let _ = (message.request_id(), message.verdict_code(), message.reserved_is_zero());
            message.set_request_id(1);
            message.set_verdict_code(1);
            message.clear_reserved();
            assert_eq!(message.check_len(), Err(WireError::Truncated));
        }
    }
}
