//! Test helpers shared by the fixed-size control formats: a tiny
//! deterministic PRNG and the checks every format must pass whatever its
//! input (never panic, and parse -> emit -> parse is the identity).

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use core::fmt::Debug;

use crate::WireError;

/// Longest buffer the exhaustive length tests try.
pub(crate) const FUZZ_MAX_LEN: usize = 576;

/// A tiny xorshift64 generator: deterministic, no dependencies.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub(crate) fn next_u8(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap()).unwrap()
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u8();
        }
    }
}

/// A decoded fixed-size format, as the generic checks below see it.
pub(crate) trait FixedFormat: Copy + PartialEq + Debug {
    /// The format's exact length.
    const LEN: usize;
    /// The format's `Repr::parse`.
    fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError>;
    /// The format's `Repr::emit`.
    fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError>;
    /// The format's `Repr::buffer_len`.
    fn len(&self) -> usize;
}

/// Asserts the round trip every accepted input must satisfy: parse -> emit
/// gives the same bytes, and those parse to the same repr.
pub(crate) fn assert_canonical<F: FixedFormat>(bytes: &[u8], repr: &F) {
    assert_eq!(repr.len(), F::LEN);
    assert_eq!(bytes.len(), F::LEN);
    let mut out = [0x5au8; FUZZ_MAX_LEN];
    let n = repr.emit_bytes(&mut out).unwrap();
    assert_eq!(n, F::LEN);
    assert_eq!(&out[..n], bytes);
    assert!(out[n..].iter().all(|&b| b == 0x5a), "emit wrote past buffer_len");
    assert_eq!(F::parse_bytes(&out[..n]), Ok(*repr));
}

/// Parses `bytes`; if they are accepted, checks the round trip. Returns
/// whether they were accepted.
pub(crate) fn check_any<F: FixedFormat>(bytes: &[u8]) -> bool {
    match F::parse_bytes(bytes) {
        Ok(repr) => {
            assert_canonical(bytes, &repr);
            true
        }
        Err(_) => false,
    }
}

/// Random bytes of every length `0..=FUZZ_MAX_LEN`; every other round the
/// buffer starts with `prefix` (a magic, say), so deeper checks see garbage
/// too.
pub(crate) fn random_bytes_of_every_length<F: FixedFormat>(seed: u64, prefix: &[u8]) {
    let mut rng = XorShift(seed);
    let mut buf = [0u8; FUZZ_MAX_LEN];
    for round in 0..16 {
        for len in 0..=FUZZ_MAX_LEN {
            rng.fill(&mut buf[..len]);
            if round % 2 == 1 && len >= prefix.len() {
                buf[..prefix.len()].copy_from_slice(prefix);
            }
            check_any::<F>(&buf[..len]);
        }
    }
}

/// A valid buffer cut to, or extended (with zeroes and with random bytes)
/// to, every length `0..=FUZZ_MAX_LEN`: only its own length is accepted,
/// shorter is `Truncated` and longer is `LengthMismatch`.
pub(crate) fn truncated_and_extended<F: FixedFormat>(bytes: &[u8], repr: F, seed: u64) {
    let mut rng = XorShift(seed);
    for len in 0..=FUZZ_MAX_LEN {
        for fill_random in [false, true] {
            let mut buf = [0u8; FUZZ_MAX_LEN];
            buf[..bytes.len()].copy_from_slice(bytes);
            if fill_random {
                rng.fill(&mut buf[bytes.len()..]);
            }
            let result = F::parse_bytes(&buf[..len]);
            if len == bytes.len() {
                assert_eq!(result, Ok(repr));
            } else if len < bytes.len() {
                assert_eq!(result, Err(WireError::Truncated), "len {len}");
            } else {
                assert_eq!(result, Err(WireError::LengthMismatch), "len {len}");
            }
            check_any::<F>(&buf[..len]);
        }
    }
}

/// Flips one to three random bits of a valid buffer, many times.
pub(crate) fn mutated<F: FixedFormat>(bytes: &[u8], seed: u64) -> usize {
    let mut rng = XorShift(seed);
    let mut accepted = 0;
    for _ in 0..5_000 {
        let mut buf = [0u8; FUZZ_MAX_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            buf[at] ^= 1 << rng.below(8);
        }
        if check_any::<F>(&buf[..bytes.len()]) {
            accepted += 1;
        }
    }
    accepted
}

/// Copies `bytes` into a scratch buffer, applies `mutate` and parses.
pub(crate) fn parse_mutated<F: FixedFormat>(bytes: &[u8], mutate: impl FnOnce(&mut [u8])) -> Result<F, WireError> {
    let mut buf = [0u8; FUZZ_MAX_LEN];
    buf[..bytes.len()].copy_from_slice(bytes);
    mutate(&mut buf[..bytes.len()]);
    F::parse_bytes(&buf[..bytes.len()])
}

/// Asserts that `emit` refuses every buffer shorter than the format and
/// leaves it untouched.
pub(crate) fn emit_too_small_writes_nothing<F: FixedFormat>(repr: &F) {
    for len in 0..F::LEN {
        let mut out = [0xa5u8; FUZZ_MAX_LEN];
        assert_eq!(repr.emit_bytes(&mut out[..len]), Err(WireError::BufferTooSmall), "len {len}");
        assert!(out.iter().all(|&b| b == 0xa5));
    }
}
