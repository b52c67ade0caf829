//! The output of [`IOCTL_WFPCALLOUT_GET_STATS`](crate::IOCTL_WFPCALLOUT_GET_STATS):
//! a fixed header with the driver's global counters and the paging state,
//! followed by `returned` [per-filter entries](crate::filter_stats).
//!
//! [`StatsHeader`] is a checked view over the header bytes and
//! [`StatsHeaderRepr`] their meaning (with the global counters in a
//! [`GlobalStatsRepr`]). [`StatsReply`] handles the reply as a whole: it
//! writes the header and the entries in place in the driver's output buffer,
//! and parses a reply into its header and an allocation-free iterator over
//! the entries.
//!
//! # Layout
//!
//! All integers are little-endian. A reply is exactly
//! `STATS_HEADER_LEN + returned × FILTER_STATS_ENTRY_LEN` bytes, that is
//! `240 + returned × 168`, at most [`STATS_REPLY_MAX_LEN`] (43 248).
//!
//! | Offset | Size | Field                       | Contents                                                              |
//! |-------:|-----:|-----------------------------|-----------------------------------------------------------------------|
//! | 0      | 8    | `filters_added`             | `u64`: ADD notifications that attached a filter context               |
//! | 8      | 8    | `filters_deleted`           | `u64`: DELETE notifications that released a filter context            |
//! | 16     | 8    | `deletes_unknown`           | `u64`: DELETE notifications for filters without a context             |
//! | 24     | 8    | `policies_rejected`         | `u64`: ADD notifications refused for an invalid policy blob           |
//! | 32     | 8    | `allocation_failures`       | `u64`: ADD notifications refused for lack of memory                   |
//! | 40     | 8    | `notify_unknown_type`       | `u64`: notifications of a type the driver does not handle             |
//! | 48     | 8    | `filters_adopted`           | `u64`: filters that existed at load and were given a context          |
//! | 56     | 8    | `adopted_policies_rejected` | `u64`: adopted filters with an invalid policy blob (default policy)   |
//! | 64     | 8    | `classify_without_context`  | `u64`: classifications for a filter without a context                 |
//! | 72     | 8    | `classify_bad_arguments`    | `u64`: classifications with malformed arguments                       |
//! | 80     | 8    | `requests_pended`           | `u64`: connections pended for the agent                               |
//! | 88     | 8    | `pend_failures`             | `u64`: Ask connections that could not be pended                       |
//! | 96     | 8    | `requests_completed`        | `u64`: pended connections completed with the agent's verdict          |
//! | 104    | 8    | `requests_timed_out`        | `u64`: pended connections the agent did not answer in time            |
//! | 112    | 8    | `requests_defaulted`        | `u64`: pended connections decided by their default verdict            |
//! | 120    | 8    | `verdicts_rejected`         | `u64`: verdict messages refused                                       |
//! | 128    | 8    | `flows_associated`          | `u64`: flow contexts associated with a flow                           |
//! | 136    | 8    | `flow_associate_failures`   | `u64`: associations the engine refused, or without a flow handle      |
//! | 144    | 8    | `flows_already_tracked`     | `u64`: flows another of our filters at the layer tracks already       |
//! | 152    | 8    | `flow_deletes_unknown`      | `u64`: flowDeleteFn calls for a context the driver does not hold      |
//! | 160    | 8    | `copy_bytes_held`           | `u64`: bytes the packet copies of pended asks hold now (not a count)  |
//! | 168    | 8    | `packets_copied`            | `u64`: packets copied for a pended ask                                |
//! | 176    | 8    | `copies_refused`            | `u64`: packets not copied for the copy bounds (default verdict)       |
//! | 184    | 8    | `ipsec_not_pended`          | `u64`: inbound asks not pended because IPsec protects the packet      |
//! | 192    | 32   | reserved                    | four `u64`, must be `0` (room for more global counters)               |
//! | 224    | 4    | `total_filters`             | `u32`: filter contexts alive when the reply was built                 |
//! | 228    | 4    | `returned`                  | `u32`: entries that follow, `0..=` the query's `max_entries`          |
//! | 232    | 4    | `more`                      | `u32`: `1` if filters after the last entry were left out, else `0`    |
//! | 236    | 4    | reserved                    | must be `0`                                                           |
//! | 240    | 168 × `returned` | entries         | [`FilterStatsEntry`] after entry, in strictly ascending `filter_id` order |
//!
//! Control protocol version 1 had 16 counters and a 176-byte header; the
//! eight at 128–191 came with version 2.
//!
//! Checks run in this order, and the first failure is reported: the buffer
//! holds the header ([`WireError::Truncated`]), the buffer length against
//! `returned` (shorter: `Truncated`, longer: [`WireError::LengthMismatch`]),
//! reserved bytes, `more` and `returned`
//! ([`WireError::ValueOutOfRange`]). The entries are then checked one by
//! one as the iterator yields them, each by the rules of
//! [`FilterStatsEntryRepr::parse`] and then for order
//! ([`WireError::EntriesOutOfOrder`]).

use core::iter::FusedIterator;
use core::slice::ChunksExact;

use crate::bytes::{clear, set_u32, set_u64s, u32_at, u64s_at, zero_at};
use crate::{
    FILTER_STATS_ENTRY_LEN, FilterStatsEntry, FilterStatsEntryRepr, STATS_MAX_ENTRIES, StatsQueryRepr, WireError,
};

/// Number of `u64` counters in [`GlobalStatsRepr`].
pub const GLOBAL_COUNTER_COUNT: usize = 24;

/// Number of reserved `u64` slots after the global counters.
pub const GLOBAL_RESERVED_COUNT: usize = 4;

/// Length of the reply header.
pub const STATS_HEADER_LEN: usize = field::RESERVED_1.end;

/// Length of the largest valid reply: the header and
/// [`STATS_MAX_ENTRIES`] entries.
pub const STATS_REPLY_MAX_LEN: usize = STATS_HEADER_LEN + STATS_MAX_ENTRIES as usize * FILTER_STATS_ENTRY_LEN;

const _: () = assert!(STATS_HEADER_LEN == 240);
const _: () = assert!(STATS_HEADER_LEN.is_multiple_of(8));

/// Byte positions of the header fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const COUNTERS: usize = 0;
    pub(super) const RESERVED_0: Range<usize> = 192..224;
    pub(super) const TOTAL_FILTERS: Range<usize> = 224..228;
    pub(super) const RETURNED: Range<usize> = 228..232;
    pub(super) const MORE: Range<usize> = 232..236;
    pub(super) const RESERVED_1: Range<usize> = 236..240;
}

const _: () = assert!(field::COUNTERS + 8 * GLOBAL_COUNTER_COUNT == field::RESERVED_0.start);
const _: () = assert!(field::RESERVED_0.end - field::RESERVED_0.start == 8 * GLOBAL_RESERVED_COUNT);

/// Declares [`GlobalStatsRepr`] from one list of counters, in wire order:
/// the struct, its names, and the array the reply carries, so a counter
/// cannot be added to one and missed in another.
macro_rules! global_counters {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// The driver's global counters: events that happened outside any
        /// filter context, or to the context table as a whole.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct GlobalStatsRepr {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl GlobalStatsRepr {
            /// The counters' names, in wire order, for tools that print them.
            pub const NAMES: [&'static str; GLOBAL_COUNTER_COUNT] = [$(stringify!($field)),*];

            /// The counters in wire order.
            pub const fn to_array(&self) -> [u64; GLOBAL_COUNTER_COUNT] {
                [$(self.$field),*]
            }

            /// The counters from an array in wire order.
            pub const fn from_array(values: [u64; GLOBAL_COUNTER_COUNT]) -> GlobalStatsRepr {
                let [$($field),*] = values;
                GlobalStatsRepr { $($field),* }
            }
        }
    };
}

global_counters! {
        /// ADD notifications that attached a filter context.
        filters_added,
        /// DELETE notifications that released a filter context.
        filters_deleted,
        /// DELETE notifications for filters without a context.
        deletes_unknown,
        /// ADD notifications refused for an invalid policy blob.
        policies_rejected,
        /// ADD notifications refused for lack of memory.
        allocation_failures,
        /// Notifications of a type the driver does not handle.
        notify_unknown_type,
        /// Filters that existed at load and were given a context.
        filters_adopted,
        /// Adopted filters with an invalid policy blob, given the default
        /// policy.
        adopted_policies_rejected,
        /// Classifications for a filter without a context.
        classify_without_context,
        /// Classifications with malformed arguments.
        classify_bad_arguments,
        /// Connections pended for the agent.
        requests_pended,
        /// Ask connections that could not be pended.
        pend_failures,
        /// Pended connections completed with the agent's verdict.
        requests_completed,
        /// Pended connections the agent did not answer in time.
        requests_timed_out,
        /// Pended connections decided by their default verdict.
        requests_defaulted,
        /// Verdict messages refused.
        verdicts_rejected,
        /// Flow contexts associated with a flow.
        flows_associated,
        /// Flow associations the engine refused, or that had no flow handle.
        flow_associate_failures,
        /// Flows another of our filters at the layer tracks already (one
        /// context per flow and callout).
        flows_already_tracked,
        /// flowDeleteFn calls for a context the driver does not hold.
        flow_deletes_unknown,
        /// Bytes the packet copies of pended asks hold now: a level, not a
        /// count, bounded by the copy budget.
        copy_bytes_held,
        /// Packets copied for a pended ask (to be injected on a permit).
        packets_copied,
        /// Packets not copied because of the copy bounds: the ask got its
        /// default verdict at once.
        copies_refused,
        /// Inbound asks not pended because IPsec protects the packet (its
        /// copy could not be injected as it is): the default applied.
        ipsec_not_pended,
}

/// A view over the bytes of a statistics reply header.
///
/// Build it with [`StatsHeader::new_checked`] for untrusted input; after
/// that every accessor reads inside the buffer. No accessor or setter can
/// panic: on a view made with [`StatsHeader::new_unchecked`] over a short
/// buffer, reads of absent bytes return zero and writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsHeader<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(StatsHeader, STATS_HEADER_LEN);

impl<T: AsRef<[u8]>> StatsHeader<T> {
    /// The global counters.
    pub fn global(&self) -> GlobalStatsRepr {
        GlobalStatsRepr::from_array(u64s_at(self.buffer.as_ref(), field::COUNTERS))
    }

    /// The `total_filters` field.
    pub fn total_filters(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::TOTAL_FILTERS)
    }

    /// The raw `returned` field.
    pub fn returned(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::RETURNED)
    }

    /// The raw `more` field.
    pub fn more(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::MORE)
    }

    /// Whether every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        let bytes = self.buffer.as_ref();
        zero_at(bytes, field::RESERVED_0) && zero_at(bytes, field::RESERVED_1)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> StatsHeader<T> {
    /// Sets the global counters.
    pub fn set_global(&mut self, value: &GlobalStatsRepr) {
        set_u64s(self.buffer.as_mut(), field::COUNTERS, &value.to_array());
    }

    /// Sets the `total_filters` field.
    pub fn set_total_filters(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::TOTAL_FILTERS, value);
    }

    /// Sets the raw `returned` field.
    pub fn set_returned(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::RETURNED, value);
    }

    /// Sets the raw `more` field.
    pub fn set_more(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::MORE, value);
    }

    /// Zeroes every reserved byte.
    pub fn clear_reserved(&mut self) {
        let bytes = self.buffer.as_mut();
        clear(bytes, field::RESERVED_0);
        clear(bytes, field::RESERVED_1);
    }
}

/// A decoded, valid statistics reply header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatsHeaderRepr {
    /// The driver's global counters.
    pub global: GlobalStatsRepr,
    /// Filter contexts alive when the reply was built.
    pub total_filters: u32,
    /// Entries that follow the header, `0..=`[`STATS_MAX_ENTRIES`] (and at
    /// most the query's `max_entries`).
    pub returned: u32,
    /// Whether filters after the last entry were left out: the tool asks
    /// again with the last entry's id as the cursor.
    pub more: bool,
}

impl StatsHeaderRepr {
    /// Decodes a header on its own, strictly: exactly [`STATS_HEADER_LEN`]
    /// bytes, reserved bytes zero, `more` `0` or `1`, `returned` at most
    /// [`STATS_MAX_ENTRIES`]. A whole reply is decoded by
    /// [`StatsReply::parse`].
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<StatsHeaderRepr, WireError> {
        let header = StatsHeader::new_checked(bytes)?;
        if !header.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let more = match header.more() {
            0 => false,
            1 => true,
            _ => return Err(WireError::ValueOutOfRange),
        };
        let repr = StatsHeaderRepr {
            global: header.global(),
            total_filters: header.total_filters(),
            returned: header.returned(),
            more,
        };
        repr.check()?;
        Ok(repr)
    }

    /// Checks `returned` against [`STATS_MAX_ENTRIES`]:
    /// [`WireError::ValueOutOfRange`] otherwise.
    pub const fn check(&self) -> Result<(), WireError> {
        if self.returned <= STATS_MAX_ENTRIES { Ok(()) } else { Err(WireError::ValueOutOfRange) }
    }

    /// Length of the header's encoding: always [`STATS_HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        STATS_HEADER_LEN
    }

    /// Encodes the header alone into the first [`STATS_HEADER_LEN`] bytes
    /// of `out`, leaving the rest untouched, and returns that length. To
    /// write a whole reply use [`StatsReply::emit_header`], which also
    /// checks that the entries fit.
    ///
    /// Returns [`WireError::ValueOutOfRange`] if `returned` is above
    /// [`STATS_MAX_ENTRIES`] and [`WireError::BufferTooSmall`] if `out` is
    /// too short; in both cases `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let dst = out.get_mut(..STATS_HEADER_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut StatsHeader::new_unchecked(dst));
        Ok(STATS_HEADER_LEN)
    }

    /// Encodes the header into a new vector, without the range check of
    /// [`emit`](Self::emit).
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; STATS_HEADER_LEN];
        self.write(&mut StatsHeader::new_unchecked(out.as_mut_slice()));
        out
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut StatsHeader<T>) {
        header.set_global(&self.global);
        header.clear_reserved();
        header.set_total_filters(self.total_filters);
        header.set_returned(self.returned);
        header.set_more(u32::from(self.more));
    }
}

/// A whole statistics reply: its header and its entries.
///
/// The driver writes a reply in place with
/// [`emit_entry`](StatsReply::emit_entry) for each entry, then
/// [`emit_header`](StatsReply::emit_header) once it knows how many there
/// are; a tool decodes it with [`parse`](StatsReply::parse) or
/// [`parse_for_query`](StatsReply::parse_for_query).
#[derive(Clone, Debug)]
pub struct StatsReply<'a> {
    header: StatsHeaderRepr,
    entries: FilterStatsEntries<'a>,
}

impl<'a> StatsReply<'a> {
    /// Decodes a reply: checks the header and that the buffer is exactly
    /// `STATS_HEADER_LEN + returned × FILTER_STATS_ENTRY_LEN` bytes (see the
    /// module documentation for the order of the checks). The entries are
    /// decoded, strictly, as [`entries`](Self::entries) yields them.
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &'a [u8]) -> Result<StatsReply<'a>, WireError> {
        StatsReply::parse_with(bytes, STATS_MAX_ENTRIES, None)
    }

    /// Decodes a reply to `query`, as [`parse`](Self::parse) does and more
    /// strictly: `returned` must not exceed the query's `max_entries`
    /// ([`WireError::ValueOutOfRange`]), and every entry's filter id must
    /// be above the query's cursor ([`WireError::EntriesOutOfOrder`]).
    pub fn parse_for_query(bytes: &'a [u8], query: &StatsQueryRepr) -> Result<StatsReply<'a>, WireError> {
        StatsReply::parse_with(bytes, query.max_entries, Some(query.after_filter_id))
    }

    fn parse_with(bytes: &'a [u8], max_entries: u32, after: Option<u64>) -> Result<StatsReply<'a>, WireError> {
        let (head, rest) = bytes.split_at_checked(STATS_HEADER_LEN).ok_or(WireError::Truncated)?;
        let returned = StatsHeader::new_unchecked(head).returned();
        // Compared as u64: `returned × FILTER_STATS_ENTRY_LEN` is below 2^40,
        // so nothing here can overflow, even where `usize` is 32 bits.
        let expected = entries_len_u64(returned);
        let actual = u64::try_from(rest.len()).unwrap_or(u64::MAX);
        if actual < expected {
            return Err(WireError::Truncated);
        }
        if actual > expected {
            return Err(WireError::LengthMismatch);
        }
        let header = StatsHeaderRepr::parse(head)?;
        if header.returned > max_entries {
            return Err(WireError::ValueOutOfRange);
        }
        Ok(StatsReply { header, entries: FilterStatsEntries::new(rest, after) })
    }

    /// The decoded header.
    pub fn header(&self) -> &StatsHeaderRepr {
        &self.header
    }

    /// An iterator over the entries, decoding each as it goes.
    pub fn entries(&self) -> FilterStatsEntries<'a> {
        self.entries.clone()
    }

    /// The header and the entries.
    pub fn into_parts(self) -> (StatsHeaderRepr, FilterStatsEntries<'a>) {
        (self.header, self.entries)
    }

    /// Length of the reply's encoding.
    pub fn buffer_len(&self) -> usize {
        STATS_HEADER_LEN + self.entries.chunks.len() * FILTER_STATS_ENTRY_LEN
    }
}

impl StatsReply<'_> {
    /// Length of a reply carrying `returned` entries, or `None` if
    /// `returned` is above [`STATS_MAX_ENTRIES`].
    pub fn reply_len(returned: u32) -> Option<usize> {
        if returned > STATS_MAX_ENTRIES {
            return None;
        }
        let entries = usize::try_from(returned).ok()?.checked_mul(FILTER_STATS_ENTRY_LEN)?;
        STATS_HEADER_LEN.checked_add(entries)
    }

    /// How many entries a reply written into an output buffer of `out_len`
    /// bytes can carry: `0` if even the header does not fit, and never more
    /// than [`STATS_MAX_ENTRIES`].
    pub fn entry_capacity(out_len: usize) -> u32 {
        let room = out_len.saturating_sub(STATS_HEADER_LEN) / FILTER_STATS_ENTRY_LEN;
        u32::try_from(room).unwrap_or(u32::MAX).min(STATS_MAX_ENTRIES)
    }

    /// Writes the header of a reply at the start of `out`, leaving the rest
    /// untouched, and returns the length of the whole reply
    /// (`STATS_HEADER_LEN + returned × FILTER_STATS_ENTRY_LEN`), which is
    /// what the driver reports as the number of bytes written. The entries
    /// are written by [`emit_entry`](Self::emit_entry), before or after.
    ///
    /// Returns [`WireError::ValueOutOfRange`] if `returned` is above
    /// [`STATS_MAX_ENTRIES`] and [`WireError::BufferTooSmall`] if `out`
    /// cannot hold the whole reply; in both cases `out` is not modified.
    pub fn emit_header(header: &StatsHeaderRepr, out: &mut [u8]) -> Result<usize, WireError> {
        let len = StatsReply::reply_len(header.returned).ok_or(WireError::ValueOutOfRange)?;
        if out.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        header.emit(out)?;
        Ok(len)
    }

    /// Writes entry number `index` (from `0`) of a reply into its place in
    /// `out`, leaving every other byte untouched, and returns the length
    /// written ([`FILTER_STATS_ENTRY_LEN`]).
    ///
    /// Returns [`WireError::ValueOutOfRange`] if `index` is not below
    /// [`STATS_MAX_ENTRIES`], [`WireError::BadActionParameters`] if the
    /// entry's policy is out of range and [`WireError::BufferTooSmall`] if
    /// `out` ends before the entry does; in every case `out` is not
    /// modified.
    pub fn emit_entry(index: u32, entry: &FilterStatsEntryRepr, out: &mut [u8]) -> Result<usize, WireError> {
        if index >= STATS_MAX_ENTRIES {
            return Err(WireError::ValueOutOfRange);
        }
        let at = usize::try_from(index)
            .ok()
            .and_then(|index| index.checked_mul(FILTER_STATS_ENTRY_LEN))
            .and_then(|offset| offset.checked_add(STATS_HEADER_LEN))
            .ok_or(WireError::ValueOutOfRange)?;
        entry.policy.action.check()?;
        let dst = out.get_mut(at..).ok_or(WireError::BufferTooSmall)?;
        entry.emit(dst)
    }
}

/// Length of `returned` entries, computed in `u64` so it cannot overflow.
fn entries_len_u64(returned: u32) -> u64 {
    // FILTER_STATS_ENTRY_LEN is a small constant; the conversion is exact.
    let entry_len = u64::try_from(FILTER_STATS_ENTRY_LEN).unwrap_or(u64::MAX);
    u64::from(returned).saturating_mul(entry_len)
}

/// The entries of a [`StatsReply`], decoded one at a time without
/// allocating.
///
/// Each item is the entry decoded by [`FilterStatsEntryRepr::parse`], or
/// its error; an entry that decodes but whose filter id is not above the
/// previous entry's (or, with
/// [`StatsReply::parse_for_query`], the query's cursor) is
/// [`WireError::EntriesOutOfOrder`]. An invalid entry does not stop the
/// iteration: the next one is still decoded, and ordered against the
/// invalid one's filter id.
#[derive(Clone, Debug)]
pub struct FilterStatsEntries<'a> {
    chunks: ChunksExact<'a, u8>,
    last_filter_id: Option<u64>,
}

impl<'a> FilterStatsEntries<'a> {
    /// Iterates over `bytes`, which the caller has checked to be a whole
    /// number of entries (a remainder would be skipped, never read), with
    /// every filter id required to be above `after` if given.
    fn new(bytes: &'a [u8], after: Option<u64>) -> FilterStatsEntries<'a> {
        // FILTER_STATS_ENTRY_LEN is a non-zero constant, so this cannot
        // panic.
        FilterStatsEntries { chunks: bytes.chunks_exact(FILTER_STATS_ENTRY_LEN), last_filter_id: after }
    }
}

impl Iterator for FilterStatsEntries<'_> {
    type Item = Result<FilterStatsEntryRepr, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.chunks.next()?;
        let filter_id = FilterStatsEntry::new_unchecked(bytes).filter_id();
        let in_order = self.last_filter_id.is_none_or(|last| filter_id > last);
        self.last_filter_id = Some(filter_id);
        Some(
            FilterStatsEntryRepr::parse(bytes)
                .and_then(|entry| if in_order { Ok(entry) } else { Err(WireError::EntriesOutOfOrder) }),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for FilterStatsEntries<'_> {}

impl FusedIterator for FilterStatsEntries<'_> {}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::filter_stats::tests::{ASK_ENTRY_BYTES, BLOCK_ENTRY_BYTES, ask_entry, block_entry};
    use crate::test_util::{self, FUZZ_MAX_LEN, FixedFormat, XorShift};

    impl FixedFormat for StatsHeaderRepr {
        const LEN: usize = STATS_HEADER_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            StatsHeaderRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// The header of a reply with two entries and more to come: counter
    /// number `i` (from 0) holds `i + 1`, except `verdicts_rejected`, which
    /// holds `u64::MAX`.
    static HEADER_BYTES: [u8; STATS_HEADER_LEN] = [
        0x01, 0, 0, 0, 0, 0, 0, 0, // filters_added = 1
        0x02, 0, 0, 0, 0, 0, 0, 0, // filters_deleted = 2
        0x03, 0, 0, 0, 0, 0, 0, 0, // deletes_unknown = 3
        0x04, 0, 0, 0, 0, 0, 0, 0, // policies_rejected = 4
        0x05, 0, 0, 0, 0, 0, 0, 0, // allocation_failures = 5
        0x06, 0, 0, 0, 0, 0, 0, 0, // notify_unknown_type = 6
        0x07, 0, 0, 0, 0, 0, 0, 0, // filters_adopted = 7
        0x08, 0, 0, 0, 0, 0, 0, 0, // adopted_policies_rejected = 8
        0x09, 0, 0, 0, 0, 0, 0, 0, // classify_without_context = 9
        0x0a, 0, 0, 0, 0, 0, 0, 0, // classify_bad_arguments = 10
        0x0b, 0, 0, 0, 0, 0, 0, 0, // requests_pended = 11
        0x0c, 0, 0, 0, 0, 0, 0, 0, // pend_failures = 12
        0x0d, 0, 0, 0, 0, 0, 0, 0, // requests_completed = 13
        0x0e, 0, 0, 0, 0, 0, 0, 0, // requests_timed_out = 14
        0x0f, 0, 0, 0, 0, 0, 0, 0, // requests_defaulted = 15
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // verdicts_rejected = u64::MAX
        0x11, 0, 0, 0, 0, 0, 0, 0, // flows_associated = 17
        0x12, 0, 0, 0, 0, 0, 0, 0, // flow_associate_failures = 18
        0x13, 0, 0, 0, 0, 0, 0, 0, // flows_already_tracked = 19
        0x14, 0, 0, 0, 0, 0, 0, 0, // flow_deletes_unknown = 20
        0x15, 0, 0, 0, 0, 0, 0, 0, // copy_bytes_held = 21
        0x16, 0, 0, 0, 0, 0, 0, 0, // packets_copied = 22
        0x17, 0, 0, 0, 0, 0, 0, 0, // copies_refused = 23
        0x18, 0, 0, 0, 0, 0, 0, 0, // ipsec_not_pended = 24
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x05, 0x00, 0x00, 0x00, // total_filters = 5
        0x02, 0x00, 0x00, 0x00, // returned = 2
        0x01, 0x00, 0x00, 0x00, // more = 1
        0x00, 0x00, 0x00, 0x00, // reserved
    ];

    /// An empty first page: no filters at all.
    static EMPTY_HEADER_BYTES: [u8; STATS_HEADER_LEN] = {
        let mut bytes = [0u8; STATS_HEADER_LEN];
        bytes[0] = 0x2a; // filters_added = 42
        bytes[8] = 0x2a; // filters_deleted = 42
        bytes
    };

    fn header_repr() -> StatsHeaderRepr {
        let mut counters = core::array::from_fn(|i| u64::try_from(i + 1).unwrap());
        counters[15] = u64::MAX;
        StatsHeaderRepr { global: GlobalStatsRepr::from_array(counters), total_filters: 5, returned: 2, more: true }
    }

    fn empty_header_repr() -> StatsHeaderRepr {
        StatsHeaderRepr {
            global: GlobalStatsRepr { filters_added: 42, filters_deleted: 42, ..GlobalStatsRepr::default() },
            ..StatsHeaderRepr::default()
        }
    }

    fn header_fixtures() -> [(&'static [u8], StatsHeaderRepr); 2] {
        [(&HEADER_BYTES, header_repr()), (&EMPTY_HEADER_BYTES, empty_header_repr())]
    }

    /// The two-entry reply: `HEADER_BYTES`, the Block entry (filter 0x1234)
    /// and the Ask entry (filter 0x0102_0304_0506_0708). 576 bytes.
    fn two_entry_reply() -> [u8; FUZZ_MAX_LEN] {
        let mut reply = [0u8; FUZZ_MAX_LEN];
        reply[..240].copy_from_slice(&HEADER_BYTES);
        reply[240..408].copy_from_slice(&BLOCK_ENTRY_BYTES);
        reply[408..576].copy_from_slice(&ASK_ENTRY_BYTES);
        reply
    }

    /// A one-entry reply (returned = 1, more = 0) and its length, 408.
    fn one_entry_reply() -> ([u8; FUZZ_MAX_LEN], usize) {
        let mut reply = [0u8; FUZZ_MAX_LEN];
        reply[..240].copy_from_slice(&HEADER_BYTES);
        reply[228] = 1;
        reply[232] = 0;
        reply[240..408].copy_from_slice(&ASK_ENTRY_BYTES);
        (reply, 408)
    }

    /// Re-emits a reply from its decoded parts into a buffer of `len` bytes.
    fn emit_reply(header: &StatsHeaderRepr, entries: &[FilterStatsEntryRepr], out: &mut [u8]) -> usize {
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(StatsReply::emit_entry(u32::try_from(i).unwrap(), entry, out), Ok(FILTER_STATS_ENTRY_LEN));
        }
        StatsReply::emit_header(header, out).unwrap()
    }

    /// Parses a reply; if the header and every entry are accepted, checks
    /// that re-emitting gives the same bytes and those parse the same.
    /// Returns whether the whole reply was accepted.
    fn check_any_reply(bytes: &[u8]) -> bool {
        let Ok(reply) = StatsReply::parse(bytes) else {
            return false;
        };
        assert_eq!(reply.buffer_len(), bytes.len());
        assert_eq!(reply.entries().len(), usize::try_from(reply.header().returned).unwrap());
        let mut decoded = [FilterStatsEntryRepr::default(); 2];
        let mut count = 0;
        for (i, entry) in reply.entries().enumerate() {
            let raw = &bytes[STATS_HEADER_LEN + i * FILTER_STATS_ENTRY_LEN..][..FILTER_STATS_ENTRY_LEN];
            if let Ok(repr) = FilterStatsEntryRepr::parse(raw) {
                test_util::assert_canonical(raw, &repr);
            }
            let Ok(entry) = entry else {
                return false;
            };
            decoded[i] = entry;
            count += 1;
        }
        let mut out = [0x5au8; FUZZ_MAX_LEN];
        let len = emit_reply(reply.header(), &decoded[..count], &mut out);
        assert_eq!(&out[..len], bytes);
        let again = StatsReply::parse(&out[..len]).unwrap();
        assert_eq!(again.header(), reply.header());
        assert!(again.entries().zip(reply.entries()).all(|(a, b)| a == b));
        true
    }

    #[test]
    fn layout_constants() {
        assert_eq!(STATS_HEADER_LEN, 240);
        assert_eq!(GLOBAL_COUNTER_COUNT, 24);
        assert_eq!(GLOBAL_RESERVED_COUNT, 4);
        assert_eq!(STATS_REPLY_MAX_LEN, 43_248);
        assert_eq!(GlobalStatsRepr::NAMES[0], "filters_added");
        assert_eq!(GlobalStatsRepr::NAMES[15], "verdicts_rejected");
        assert_eq!(GlobalStatsRepr::NAMES[16], "flows_associated");
        assert_eq!(GlobalStatsRepr::NAMES[23], "ipsec_not_pended");
    }

    #[test]
    fn global_array_order() {
        let global = header_repr().global;
        assert_eq!(global.filters_added, 1);
        assert_eq!(global.notify_unknown_type, 6);
        assert_eq!(global.classify_bad_arguments, 10);
        assert_eq!(global.requests_pended, 11);
        assert_eq!(global.requests_defaulted, 15);
        assert_eq!(global.verdicts_rejected, u64::MAX);
        assert_eq!(global.flows_associated, 17);
        assert_eq!(global.flow_deletes_unknown, 20);
        assert_eq!(global.copy_bytes_held, 21);
        assert_eq!(global.ipsec_not_pended, 24);
        assert_eq!(GlobalStatsRepr::from_array(global.to_array()), global);
    }

    // ---- The header on its own. ----

    #[test]
    fn deconstruct_header() {
        let header = StatsHeader::new_checked(&HEADER_BYTES[..]).unwrap();
        assert_eq!(header.global(), header_repr().global);
        assert_eq!(header.total_filters(), 5);
        assert_eq!(header.returned(), 2);
        assert_eq!(header.more(), 1);
        assert!(header.reserved_is_zero());
        assert_eq!(header.into_inner(), &HEADER_BYTES[..]);
    }

    #[test]
    fn construct_header() {
        let mut buf = [0xa5u8; STATS_HEADER_LEN];
        let mut header = StatsHeader::new_unchecked(&mut buf[..]);
        header.set_global(&header_repr().global);
        header.clear_reserved();
        header.set_total_filters(5);
        header.set_returned(2);
        header.set_more(1);
        assert_eq!(buf, HEADER_BYTES);
    }

    #[test]
    fn parse_and_emit_headers() {
        for (bytes, repr) in header_fixtures() {
            assert_eq!(StatsHeaderRepr::parse(bytes), Ok(repr));
            test_util::assert_canonical(bytes, &repr);
            test_util::emit_too_small_writes_nothing(&repr);
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn to_bytes_matches_emit() {
        for (bytes, repr) in header_fixtures() {
            assert_eq!(repr.to_bytes().as_slice(), bytes);
        }
    }

    #[test]
    fn header_errors() {
        let parse_mutated = |mutate: fn(&mut [u8])| test_util::parse_mutated::<StatsHeaderRepr>(&HEADER_BYTES, mutate);
        assert_eq!(StatsHeaderRepr::parse(&HEADER_BYTES[..239]), Err(WireError::Truncated));
        assert_eq!(StatsHeaderRepr::parse(&[0u8; 241]), Err(WireError::LengthMismatch));
        // The new counters are counters, not reserved bytes.
        assert_eq!(parse_mutated(|b| b[128] = 0x7f).map(|h| h.global.flows_associated), Ok(0x7f));
        assert_eq!(parse_mutated(|b| b[191] = 1).map(|h| h.global.ipsec_not_pended), Ok(24 | 1 << 56));
        for at in [192usize, 204, 223, 236, 239] {
            let mut bytes = HEADER_BYTES;
            bytes[at] = 1;
            assert_eq!(StatsHeaderRepr::parse(&bytes), Err(WireError::ReservedNotZero), "byte {at}");
        }
        assert_eq!(parse_mutated(|b| b[232] = 2), Err(WireError::ValueOutOfRange));
        assert_eq!(parse_mutated(|b| b[235] = 1), Err(WireError::ValueOutOfRange));
        assert_eq!(
            parse_mutated(|b| b[228..232].copy_from_slice(&257u32.to_le_bytes())),
            Err(WireError::ValueOutOfRange)
        );
        assert_eq!(parse_mutated(|b| b[228..232].copy_from_slice(&256u32.to_le_bytes())).map(|h| h.returned), Ok(256));
        let too_many = StatsHeaderRepr { returned: 257, ..StatsHeaderRepr::default() };
        let mut out = [0xa5u8; STATS_HEADER_LEN];
        assert_eq!(too_many.emit(&mut out), Err(WireError::ValueOutOfRange));
        assert_eq!(out, [0xa5; STATS_HEADER_LEN]);
    }

    #[test]
    fn header_random_and_truncated() {
        test_util::random_bytes_of_every_length::<StatsHeaderRepr>(0x1111_2222_3333_4444, &[]);
        for (bytes, repr) in header_fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0x4444_3333_2222_1111);
            assert!(test_util::mutated::<StatsHeaderRepr>(bytes, 0x0101_0101_0101_0101) > 0);
        }
    }

    // ---- Whole replies. ----

    #[test]
    fn parse_two_entry_reply() {
        let bytes = two_entry_reply();
        let reply = StatsReply::parse(&bytes).unwrap();
        assert_eq!(*reply.header(), header_repr());
        assert_eq!(reply.buffer_len(), 576);
        let mut entries = reply.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.next(), Some(Ok(block_entry())));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries.next(), Some(Ok(ask_entry())));
        assert_eq!(entries.next(), None);
        assert_eq!(entries.next(), None);
        let (header, entries) = reply.into_parts();
        assert_eq!(header.returned, 2);
        assert_eq!(entries.count(), 2);
        assert!(check_any_reply(&bytes));
    }

    #[test]
    fn parse_empty_reply() {
        let reply = StatsReply::parse(&EMPTY_HEADER_BYTES).unwrap();
        assert_eq!(*reply.header(), empty_header_repr());
        assert_eq!(reply.entries().next(), None);
        assert!(check_any_reply(&EMPTY_HEADER_BYTES));
    }

    #[test]
    fn emit_two_entry_reply_in_place() {
        // Entries first, header last, as the driver does; nothing past the
        // reply is touched.
        let mut out = [0xa5u8; FUZZ_MAX_LEN + 8];
        assert_eq!(StatsReply::emit_entry(0, &block_entry(), &mut out), Ok(FILTER_STATS_ENTRY_LEN));
        assert_eq!(StatsReply::emit_entry(1, &ask_entry(), &mut out), Ok(FILTER_STATS_ENTRY_LEN));
        assert_eq!(StatsReply::emit_header(&header_repr(), &mut out), Ok(576));
        assert_eq!(out[..576], two_entry_reply());
        assert!(out[576..].iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn emit_header_needs_room_for_the_entries() {
        let header = header_repr();
        for len in 0..576 {
            let mut out = [0xa5u8; FUZZ_MAX_LEN];
            assert_eq!(StatsReply::emit_header(&header, &mut out[..len]), Err(WireError::BufferTooSmall), "len {len}");
            assert!(out.iter().all(|&b| b == 0xa5));
        }
        let mut out = [0u8; FUZZ_MAX_LEN];
        let too_many = StatsHeaderRepr { returned: STATS_MAX_ENTRIES + 1, ..header };
        assert_eq!(StatsReply::emit_header(&too_many, &mut out), Err(WireError::ValueOutOfRange));
    }

    #[test]
    fn emit_entry_errors_write_nothing() {
        let mut out = [0xa5u8; FUZZ_MAX_LEN];
        assert_eq!(
            StatsReply::emit_entry(STATS_MAX_ENTRIES, &block_entry(), &mut out),
            Err(WireError::ValueOutOfRange)
        );
        assert_eq!(StatsReply::emit_entry(u32::MAX, &block_entry(), &mut out), Err(WireError::ValueOutOfRange));
        // Entry 2 would end at 744.
        assert_eq!(StatsReply::emit_entry(2, &block_entry(), &mut out), Err(WireError::BufferTooSmall));
        assert_eq!(StatsReply::emit_entry(1, &block_entry(), &mut out[..575]), Err(WireError::BufferTooSmall));
        let mut bad = block_entry();
        bad.policy.action = crate::PolicyAction::Ask { timeout_ms: 0, default_verdict: crate::Verdict::Block };
        assert_eq!(StatsReply::emit_entry(0, &bad, &mut out), Err(WireError::BadActionParameters));
        assert!(out.iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn lengths_and_capacity() {
        assert_eq!(StatsReply::reply_len(0), Some(240));
        assert_eq!(StatsReply::reply_len(2), Some(576));
        assert_eq!(StatsReply::reply_len(STATS_MAX_ENTRIES), Some(STATS_REPLY_MAX_LEN));
        assert_eq!(StatsReply::reply_len(STATS_MAX_ENTRIES + 1), None);
        assert_eq!(StatsReply::reply_len(u32::MAX), None);
        assert_eq!(StatsReply::entry_capacity(0), 0);
        assert_eq!(StatsReply::entry_capacity(239), 0);
        assert_eq!(StatsReply::entry_capacity(240), 0);
        assert_eq!(StatsReply::entry_capacity(407), 0);
        assert_eq!(StatsReply::entry_capacity(408), 1);
        assert_eq!(StatsReply::entry_capacity(576), 2);
        assert_eq!(StatsReply::entry_capacity(STATS_REPLY_MAX_LEN), STATS_MAX_ENTRIES);
        assert_eq!(StatsReply::entry_capacity(usize::MAX), STATS_MAX_ENTRIES);
    }

    #[test]
    fn reply_length_errors() {
        let bytes = two_entry_reply();
        assert_eq!(StatsReply::parse(&[]).err(), Some(WireError::Truncated));
        assert_eq!(StatsReply::parse(&bytes[..239]).err(), Some(WireError::Truncated));
        // Header whole, entries cut.
        assert_eq!(StatsReply::parse(&bytes[..240]).err(), Some(WireError::Truncated));
        assert_eq!(StatsReply::parse(&bytes[..575]).err(), Some(WireError::Truncated));
        // One entry too many.
        let (one, len) = one_entry_reply();
        assert_eq!(StatsReply::parse(&one[..len + 168]).err(), Some(WireError::LengthMismatch));
        assert_eq!(StatsReply::parse(&one[..len + 1]).err(), Some(WireError::LengthMismatch));
        // A huge `returned` is a length problem, not an overflow.
        let mut huge = bytes;
        huge[228..232].fill(0xff);
        assert_eq!(StatsReply::parse(&huge).err(), Some(WireError::Truncated));
    }

    #[test]
    fn reply_header_errors() {
        let mut bytes = two_entry_reply();
        bytes[200] = 1;
        assert_eq!(StatsReply::parse(&bytes).err(), Some(WireError::ReservedNotZero));
        let mut bytes = two_entry_reply();
        bytes[232] = 3;
        assert_eq!(StatsReply::parse(&bytes).err(), Some(WireError::ValueOutOfRange));
    }

    #[test]
    fn reply_for_query() {
        let bytes = two_entry_reply();
        let ok = |query: StatsQueryRepr| StatsReply::parse_for_query(&bytes, &query).map(|r| r.entries().count());
        assert_eq!(ok(StatsQueryRepr { after_filter_id: 0, max_entries: 2 }), Ok(2));
        assert_eq!(ok(StatsQueryRepr { after_filter_id: 0x1233, max_entries: 256 }), Ok(2));
        // More entries than asked for.
        assert_eq!(ok(StatsQueryRepr { after_filter_id: 0, max_entries: 1 }).err(), Some(WireError::ValueOutOfRange));
        // An entry at or before the cursor.
        let query = StatsQueryRepr { after_filter_id: 0x1234, max_entries: 2 };
        let reply = StatsReply::parse_for_query(&bytes, &query).unwrap();
        let mut entries = reply.entries();
        assert_eq!(entries.next(), Some(Err(WireError::EntriesOutOfOrder)));
        assert_eq!(entries.next(), Some(Ok(ask_entry())));
    }

    #[test]
    fn entries_out_of_order() {
        // Swap the two entries.
        let mut bytes = two_entry_reply();
        bytes[240..408].copy_from_slice(&ASK_ENTRY_BYTES);
        bytes[408..576].copy_from_slice(&BLOCK_ENTRY_BYTES);
        let reply = StatsReply::parse(&bytes).unwrap();
        let mut entries = reply.entries();
        assert_eq!(entries.next(), Some(Ok(ask_entry())));
        assert_eq!(entries.next(), Some(Err(WireError::EntriesOutOfOrder)));
        // The same id twice is out of order too.
        let mut bytes = two_entry_reply();
        bytes[408..576].copy_from_slice(&BLOCK_ENTRY_BYTES);
        let results: [_; 2] = core::array::from_fn({
            let mut entries = StatsReply::parse(&bytes).unwrap().into_parts().1;
            move |_| entries.next()
        });
        assert_eq!(results, [Some(Ok(block_entry())), Some(Err(WireError::EntriesOutOfOrder))]);
        assert!(!check_any_reply(&bytes));
    }

    #[test]
    fn invalid_entry_does_not_stop_iteration() {
        let mut bytes = two_entry_reply();
        bytes[240 + 10] = 7; // first entry: unknown origin
        let reply = StatsReply::parse(&bytes).unwrap();
        let mut entries = reply.entries();
        assert_eq!(entries.next(), Some(Err(WireError::UnknownOrigin(7))));
        assert_eq!(entries.next(), Some(Ok(ask_entry())));
        assert_eq!(entries.next(), None);
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_replies_of_every_length() {
        let mut rng = XorShift(0x3c6e_f372_fe94_f82b);
        let mut buf = [0u8; FUZZ_MAX_LEN];
        for round in 0..16 {
            for len in 0..=FUZZ_MAX_LEN {
                rng.fill(&mut buf[..len]);
                // Every other round gets a consistent header, so the entries
                // see garbage too.
                if round % 2 == 1 && len >= STATS_HEADER_LEN {
                    let returned = u32::try_from((len - STATS_HEADER_LEN) / FILTER_STATS_ENTRY_LEN).unwrap();
                    let mut header = StatsHeader::new_unchecked(&mut buf[..STATS_HEADER_LEN]);
                    header.clear_reserved();
                    header.set_returned(returned);
                    header.set_more(u32::from(rng.next_u8() % 2));
                }
                check_any_reply(&buf[..len]);
            }
        }
    }

    #[test]
    fn truncated_and_extended_replies() {
        let mut rng = XorShift(0x6a09_e667_f3bc_c908);
        let (one, one_len) = one_entry_reply();
        for (valid, valid_len) in [(two_entry_reply(), FUZZ_MAX_LEN), (one, one_len)] {
            for len in 0..=FUZZ_MAX_LEN {
                for fill_random in [false, true] {
                    let mut buf = valid;
                    if fill_random {
                        rng.fill(&mut buf[valid_len..]);
                    }
                    let result = StatsReply::parse(&buf[..len]).map(|r| *r.header());
                    if len == valid_len {
                        assert!(result.is_ok());
                        assert!(check_any_reply(&buf[..len]));
                    } else if len < valid_len {
                        assert_eq!(result, Err(WireError::Truncated), "len {len}");
                    } else {
                        assert_eq!(result, Err(WireError::LengthMismatch), "len {len}");
                    }
                }
            }
        }
        let mut buf = [0u8; FUZZ_MAX_LEN];
        buf[..STATS_HEADER_LEN].copy_from_slice(&EMPTY_HEADER_BYTES);
        for len in 0..=FUZZ_MAX_LEN {
            let expected = match len {
                STATS_HEADER_LEN => Ok(empty_header_repr()),
                l if l < STATS_HEADER_LEN => Err(WireError::Truncated),
                _ => Err(WireError::LengthMismatch),
            };
            assert_eq!(StatsReply::parse(&buf[..len]).map(|r| *r.header()), expected, "len {len}");
        }
    }

    #[test]
    fn mutated_replies() {
        let mut rng = XorShift(0xbb67_ae85_84ca_a73b);
        let mut accepted = 0;
        for _ in 0..5_000 {
            let mut buf = two_entry_reply();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(FUZZ_MAX_LEN);
                buf[at] ^= 1 << rng.below(8);
            }
            if check_any_reply(&buf) {
                accepted += 1;
            }
        }
        assert!(accepted > 0);
    }

    #[test]
    fn unchecked_header_view_over_short_buffers_never_panics() {
        for len in 0..STATS_HEADER_LEN {
            let mut buf = HEADER_BYTES;
            let mut header = StatsHeader::new_unchecked(&mut buf[..len]);
            let _ =
                (header.global(), header.total_filters(), header.returned(), header.more(), header.reserved_is_zero());
            header.set_global(&GlobalStatsRepr::default());
            header.set_total_filters(1);
            header.set_returned(1);
            header.set_more(1);
            header.clear_reserved();
            assert_eq!(header.check_len(), Err(WireError::Truncated));
        }
    }
}
