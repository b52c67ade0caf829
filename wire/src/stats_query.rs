//! The input of [`IOCTL_WFPCALLOUT_GET_STATS`](crate::IOCTL_WFPCALLOUT_GET_STATS):
//! which page of per-filter statistics a tool wants.
//!
//! Filters are returned in ascending filter id order, starting after
//! `after_filter_id`, so a tool walks every filter by passing the last id
//! of one reply as the cursor of the next query (starting from `0`) until a
//! reply says there is no more. The cursor carries all the state, so the
//! driver keeps nothing between queries.
//!
//! [`StatsQuery`] is a checked view over the raw bytes; [`StatsQueryRepr`]
//! is the decoded meaning.
//!
//! # Layout
//!
//! All integers are little-endian; the buffer is exactly
//! [`STATS_QUERY_LEN`] (16) bytes.
//!
//! | Offset | Size | Field             | Contents                                                      |
//! |-------:|-----:|-------------------|---------------------------------------------------------------|
//! | 0      | 8    | `after_filter_id` | `u64`: return only filters with a larger id                   |
//! | 8      | 4    | `max_entries`     | `u32`: at most this many entries, `1..=256` ([`STATS_MAX_ENTRIES`]) |
//! | 12     | 4    | reserved          | must be `0`                                                   |
//!
//! Checks run in this order, and the first failure is reported: exact
//! length, reserved bytes, `max_entries` ([`WireError::ValueOutOfRange`]).

use crate::WireError;
use crate::bytes::{clear, set_u32, set_u64, u32_at, u64_at, zero_at};

/// Length of a statistics query.
pub const STATS_QUERY_LEN: usize = 16;

/// The most per-filter entries one statistics reply may carry.
pub const STATS_MAX_ENTRIES: u32 = 256;

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const AFTER_FILTER_ID: Range<usize> = 0..8;
    pub(super) const MAX_ENTRIES: Range<usize> = 8..12;
    pub(super) const RESERVED: Range<usize> = 12..16;
}

const _: () = assert!(field::RESERVED.end == STATS_QUERY_LEN);

/// A view over the bytes of a statistics query.
///
/// Build it with [`StatsQuery::new_checked`] for untrusted input; after that
/// every accessor reads inside the buffer. No accessor or setter can panic:
/// on a view made with [`StatsQuery::new_unchecked`] over a short buffer,
/// reads of absent bytes return zero and writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(StatsQuery, STATS_QUERY_LEN);

impl<T: AsRef<[u8]>> StatsQuery<T> {
    /// The cursor: only filters with a larger id are wanted.
    pub fn after_filter_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::AFTER_FILTER_ID)
    }

    /// The raw `max_entries` field.
    pub fn max_entries(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::MAX_ENTRIES)
    }

    /// Whether every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        zero_at(self.buffer.as_ref(), field::RESERVED)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StatsQuery<T> {
    /// Sets the cursor.
    pub fn set_after_filter_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::AFTER_FILTER_ID, value);
    }

    /// Sets the raw `max_entries` field.
    pub fn set_max_entries(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::MAX_ENTRIES, value);
    }

    /// Zeroes every reserved byte.
    pub fn clear_reserved(&mut self) {
        clear(self.buffer.as_mut(), field::RESERVED);
    }
}

/// A decoded, valid statistics query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatsQueryRepr {
    /// Return only filters whose id is larger than this (`0`: from the
    /// start).
    pub after_filter_id: u64,
    /// Return at most this many entries, `1..=`[`STATS_MAX_ENTRIES`].
    pub max_entries: u32,
}

impl StatsQueryRepr {
    /// The first page, as large as a reply may be.
    pub const FIRST_PAGE: StatsQueryRepr = StatsQueryRepr { after_filter_id: 0, max_entries: STATS_MAX_ENTRIES };

    /// Decodes a query, strictly: exactly [`STATS_QUERY_LEN`] bytes,
    /// reserved bytes zero, `max_entries` in `1..=`[`STATS_MAX_ENTRIES`].
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<StatsQueryRepr, WireError> {
        let query = StatsQuery::new_checked(bytes)?;
        if !query.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let repr = StatsQueryRepr { after_filter_id: query.after_filter_id(), max_entries: query.max_entries() };
        repr.check()?;
        Ok(repr)
    }

    /// Checks `max_entries` against `1..=`[`STATS_MAX_ENTRIES`]:
    /// [`WireError::ValueOutOfRange`] otherwise.
    pub const fn check(&self) -> Result<(), WireError> {
        if self.max_entries >= 1 && self.max_entries <= STATS_MAX_ENTRIES {
            Ok(())
        } else {
            Err(WireError::ValueOutOfRange)
        }
    }

    /// Length of the encoding: always [`STATS_QUERY_LEN`].
    pub const fn buffer_len(&self) -> usize {
        STATS_QUERY_LEN
    }

    /// Encodes the query into the first [`STATS_QUERY_LEN`] bytes of `out`,
    /// leaving the rest untouched, and returns that length.
    ///
    /// Returns [`WireError::ValueOutOfRange`] if `max_entries` is out of
    /// range and [`WireError::BufferTooSmall`] if `out` is too short; in
    /// both cases `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let dst = out.get_mut(..STATS_QUERY_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut StatsQuery::new_unchecked(dst));
        Ok(STATS_QUERY_LEN)
    }

    /// Encodes the query into a new vector, without the range check of
    /// [`emit`](Self::emit): an out-of-range `max_entries` is written as
    /// given and the driver will refuse it.
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; STATS_QUERY_LEN];
        self.write(&mut StatsQuery::new_unchecked(out.as_mut_slice()));
        out
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, query: &mut StatsQuery<T>) {
        query.set_after_filter_id(self.after_filter_id);
        query.set_max_entries(self.max_entries);
        query.clear_reserved();
    }
}

impl Default for StatsQueryRepr {
    fn default() -> StatsQueryRepr {
        StatsQueryRepr::FIRST_PAGE
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_util::{self, FixedFormat};

    impl FixedFormat for StatsQueryRepr {
        const LEN: usize = STATS_QUERY_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            StatsQueryRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// From the start, a full page.
    static FIRST_PAGE_BYTES: [u8; 16] = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // after_filter_id = 0
        0x00, 0x01, 0x00, 0x00, // max_entries = 256
        0x00, 0x00, 0x00, 0x00, // reserved
    ];

    /// After filter 0x0102_0304_0506_0708, one entry.
    static NEXT_PAGE_BYTES: [u8; 16] = [
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // after_filter_id
        0x01, 0x00, 0x00, 0x00, // max_entries = 1
        0x00, 0x00, 0x00, 0x00, // reserved
    ];

    fn fixtures() -> [(&'static [u8], StatsQueryRepr); 2] {
        [
            (&FIRST_PAGE_BYTES, StatsQueryRepr::FIRST_PAGE),
            (&NEXT_PAGE_BYTES, StatsQueryRepr { after_filter_id: 0x0102_0304_0506_0708, max_entries: 1 }),
        ]
    }

    #[test]
    fn layout_constants() {
        assert_eq!(STATS_QUERY_LEN, 16);
        assert_eq!(STATS_MAX_ENTRIES, 256);
        assert_eq!(StatsQueryRepr::default(), StatsQueryRepr::FIRST_PAGE);
    }

    #[test]
    fn deconstruct() {
        let query = StatsQuery::new_checked(&NEXT_PAGE_BYTES[..]).unwrap();
        assert_eq!(query.after_filter_id(), 0x0102_0304_0506_0708);
        assert_eq!(query.max_entries(), 1);
        assert!(query.reserved_is_zero());
        assert_eq!(query.into_inner(), &NEXT_PAGE_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 16];
        let mut query = StatsQuery::new_unchecked(&mut buf[..]);
        query.set_after_filter_id(0);
        query.set_max_entries(256);
        query.clear_reserved();
        assert_eq!(buf, FIRST_PAGE_BYTES);
    }

    #[test]
    fn parse_and_emit_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(StatsQueryRepr::parse(bytes), Ok(repr));
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
    fn error_truncated_and_length_mismatch() {
        assert_eq!(StatsQueryRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(StatsQueryRepr::parse(&FIRST_PAGE_BYTES[..15]), Err(WireError::Truncated));
        assert_eq!(StatsQueryRepr::parse(&[0u8; 17]), Err(WireError::LengthMismatch));
    }

    #[test]
    fn error_reserved_not_zero() {
        for at in 12..16 {
            let got = test_util::parse_mutated::<StatsQueryRepr>(&FIRST_PAGE_BYTES, |b| b[at] = 1);
            assert_eq!(got, Err(WireError::ReservedNotZero), "byte {at}");
        }
        // Reserved bytes are checked before the range.
        assert_eq!(
            test_util::parse_mutated::<StatsQueryRepr>(&FIRST_PAGE_BYTES, |b| {
                b[8..12].fill(0);
                b[15] = 1;
            }),
            Err(WireError::ReservedNotZero)
        );
    }

    #[test]
    fn error_value_out_of_range() {
        for (max, ok) in [(0u32, false), (1, true), (256, true), (257, false), (u32::MAX, false)] {
            let got = test_util::parse_mutated::<StatsQueryRepr>(&NEXT_PAGE_BYTES, |b| {
                b[8..12].copy_from_slice(&max.to_le_bytes())
            });
            if ok {
                assert_eq!(got.map(|q| q.max_entries), Ok(max));
            } else {
                assert_eq!(got, Err(WireError::ValueOutOfRange), "max {max}");
            }
        }
    }

    #[test]
    fn emit_refuses_out_of_range() {
        for max in [0, STATS_MAX_ENTRIES + 1] {
            let repr = StatsQueryRepr { after_filter_id: 5, max_entries: max };
            let mut out = [0xa5u8; 16];
            assert_eq!(repr.emit(&mut out), Err(WireError::ValueOutOfRange));
            assert_eq!(out, [0xa5; 16]);
        }
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_bytes_of_every_length() {
        test_util::random_bytes_of_every_length::<StatsQueryRepr>(0x0123_4567_89ab_cdef, &[]);
    }

    #[test]
    fn random_plausible_queries() {
        let mut rng = test_util::XorShift(77);
        let mut accepted = 0;
        for _ in 0..10_000 {
            let mut buf = [0u8; STATS_QUERY_LEN];
            rng.fill(&mut buf);
            let mut query = StatsQuery::new_unchecked(&mut buf[..]);
            query.clear_reserved();
            query.set_max_entries(u32::from(rng.next_u8()) * 2);
            if test_util::check_any::<StatsQueryRepr>(&buf) {
                accepted += 1;
            }
        }
        assert!(accepted > 1_000, "only {accepted} accepted");
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        for (bytes, repr) in fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0xfeed_f00d_1234_5678);
        }
    }

    #[test]
    fn mutated_fixtures() {
        for (bytes, _) in fixtures() {
            assert!(test_util::mutated::<StatsQueryRepr>(bytes, 0x1357_9bdf_2468_ace0) > 0);
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        for len in 0..STATS_QUERY_LEN {
            let mut buf = NEXT_PAGE_BYTES;
            let mut query = StatsQuery::new_unchecked(&mut buf[..len]);
            let _ = (query.after_filter_id(), query.max_entries(), query.reserved_is_zero());
            query.set_after_filter_id(1);
            query.set_max_entries(1);
            query.clear_reserved();
            assert_eq!(query.check_len(), Err(WireError::Truncated));
        }
    }
}
