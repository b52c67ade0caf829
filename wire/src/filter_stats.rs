//! One filter's entry in a statistics reply: which filter, the policy its
//! context holds, and that context's counters.
//!
//! [`FilterStatsEntry`] is a checked view over the raw bytes;
//! [`FilterStatsEntryRepr`] is the decoded meaning. The policy part
//! (action, log level, label) decodes into a [`PolicyRepr`] by the very
//! rules of the policy blob, so an entry can only show a policy the driver
//! could have accepted.
//!
//! # Layout
//!
//! All integers are little-endian; an entry is exactly
//! [`FILTER_STATS_ENTRY_LEN`] (168) bytes, a multiple of 8 so that entries
//! laid end to end keep their counters aligned.
//!
//! | Offset | Size | Field          | Contents                                                                 |
//! |-------:|-----:|----------------|--------------------------------------------------------------------------|
//! | 0      | 8    | `filter_id`    | `u64`: the WFP runtime filter id                                         |
//! | 8      | 2    | `layer_id`     | `u16`: the WFP runtime layer id                                          |
//! | 10     | 1    | `origin`       | `0` notified (added while loaded), `1` adopted (existed at load)        |
//! | 11     | 1    | `action`       | policy action code: `0` Permit, `1` Block, `2` Audit, `3` RateLimit, `4` Ask |
//! | 12     | 1    | `log_level`    | `0` Off, `1` Error, `2` Warning, `3` Info, `4` Trace                      |
//! | 13     | 1    | `verdict`      | Ask: default verdict, `1` Permit, `2` Block; other actions: `0`          |
//! | 14     | 1    | `label_len`    | label length in bytes, `0..=64`                                          |
//! | 15     | 1    | reserved       | must be `0`                                                              |
//! | 16     | 4    | `param_a`      | `u32`: RateLimit `rate_per_sec`; Ask `timeout_ms`; others `0`            |
//! | 20     | 4    | `param_b`      | `u32`: RateLimit `burst`; others `0`                                     |
//! | 24     | 4    | `references`   | `u32`: references held on the filter context when it was read           |
//! | 28     | 4    | reserved       | must be `0`                                                              |
//! | 32     | 8    | `matched`      | `u64`: classifications that reached this filter's context               |
//! | 40     | 8    | `permitted`    | `u64`: connections permitted                                             |
//! | 48     | 8    | `blocked`      | `u64`: connections blocked                                               |
//! | 56     | 8    | `audited`      | `u64`: connections permitted and reported by an Audit policy            |
//! | 64     | 8    | `rate_limited` | `u64`: connections blocked by the rate limit                             |
//! | 72     | 8    | `defaulted`    | `u64`: Ask connections decided by the default verdict                    |
//! | 80     | 8    | `pended`       | `u64`: Ask connections pended for the agent                              |
//! | 88     | 8    | `live_flows`   | `u64`: flows currently associated with the filter                        |
//! | 96     | 8    | `flows_total`  | `u64`: flows ever associated with the filter                             |
//! | 104    | 64   | `label`        | `label_len` bytes of UTF-8, then zeroes to the end of the slot           |
//!
//! The action, verdict, parameter and log level fields mean exactly what
//! they mean in the [policy blob](crate::policy), with the same ranges.
//!
//! Checks run in this order, and the first failure is reported: exact
//! length, reserved bytes, origin, action (code, verdict, parameters), log
//! level, label (length, UTF-8, zero padding).

use crate::bytes::{
    clear, set_u8, set_u16, set_u32, set_u64, set_u64s, u8_at, u16_at, u32_at, u64_at, u64s_at, zero_at,
};
use crate::{LogLevel, PolicyAction, PolicyRepr, WireError, label_slot};

/// Length of one per-filter entry.
pub const FILTER_STATS_ENTRY_LEN: usize = field::LABEL.end;

/// Number of `u64` counters in [`FilterCounters`].
pub const FILTER_COUNTER_COUNT: usize = 9;

const _: () = assert!(FILTER_STATS_ENTRY_LEN == 168);
const _: () = assert!(FILTER_STATS_ENTRY_LEN.is_multiple_of(8));

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    use crate::label::LABEL_MAX_LEN;

    pub(super) const FILTER_ID: Range<usize> = 0..8;
    pub(super) const LAYER_ID: Range<usize> = 8..10;
    pub(super) const ORIGIN: usize = 10;
    pub(super) const ACTION: usize = 11;
    pub(super) const LOG_LEVEL: usize = 12;
    pub(super) const VERDICT: usize = 13;
    pub(super) const LABEL_LEN: usize = 14;
    pub(super) const RESERVED_0: Range<usize> = 15..16;
    pub(super) const PARAM_A: Range<usize> = 16..20;
    pub(super) const PARAM_B: Range<usize> = 20..24;
    pub(super) const REFERENCES: Range<usize> = 24..28;
    pub(super) const RESERVED_1: Range<usize> = 28..32;
    pub(super) const COUNTERS: usize = 32;
    pub(super) const LABEL: Range<usize> = 104..104 + LABEL_MAX_LEN;
}

const _: () = assert!(field::COUNTERS + 8 * FILTER_COUNTER_COUNT == field::LABEL.start);

/// Where a filter's context came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterOrigin {
    /// Attached by notifyFn when the filter was added while the driver was
    /// loaded.
    Notified,
    /// Attached at load time to a filter that already existed.
    Adopted,
}

impl FilterOrigin {
    /// The wire code of this origin.
    pub const fn code(self) -> u8 {
        match self {
            FilterOrigin::Notified => 0,
            FilterOrigin::Adopted => 1,
        }
    }

    /// Decodes a wire code; every unassigned code is an error.
    pub const fn from_code(code: u8) -> Result<FilterOrigin, WireError> {
        match code {
            0 => Ok(FilterOrigin::Notified),
            1 => Ok(FilterOrigin::Adopted),
            other => Err(WireError::UnknownOrigin(other)),
        }
    }
}

/// The counters of one filter context, in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FilterCounters {
    /// Classifications that reached this filter's context.
    pub matched: u64,
    /// Connections permitted.
    pub permitted: u64,
    /// Connections blocked.
    pub blocked: u64,
    /// Connections permitted and reported by an Audit policy.
    pub audited: u64,
    /// Connections blocked by the rate limit.
    pub rate_limited: u64,
    /// Ask connections decided by the default verdict.
    pub defaulted: u64,
    /// Ask connections pended for the agent.
    pub pended: u64,
    /// Flows currently associated with the filter.
    pub live_flows: u64,
    /// Flows ever associated with the filter.
    pub flows_total: u64,
}

impl FilterCounters {
    /// The counters' names, in wire order, for tools that print them.
    pub const NAMES: [&'static str; FILTER_COUNTER_COUNT] = [
        "matched",
        "permitted",
        "blocked",
        "audited",
        "rate_limited",
        "defaulted",
        "pended",
        "live_flows",
        "flows_total",
    ];

    /// The counters in wire order.
    pub const fn to_array(&self) -> [u64; FILTER_COUNTER_COUNT] {
        [
            self.matched,
            self.permitted,
            self.blocked,
            self.audited,
            self.rate_limited,
            self.defaulted,
            self.pended,
            self.live_flows,
            self.flows_total,
        ]
    }

    /// The counters from an array in wire order.
    pub const fn from_array(values: [u64; FILTER_COUNTER_COUNT]) -> FilterCounters {
        let [matched, permitted, blocked, audited, rate_limited, defaulted, pended, live_flows, flows_total] = values;
        FilterCounters {
            matched,
            permitted,
            blocked,
            audited,
            rate_limited,
            defaulted,
            pended,
            live_flows,
            flows_total,
        }
    }
}

/// A view over the bytes of one per-filter statistics entry.
///
/// Build it with [`FilterStatsEntry::new_checked`] for untrusted input;
/// after that every accessor reads inside the buffer. No accessor or setter
/// can panic: on a view made with [`FilterStatsEntry::new_unchecked`] over a
/// short buffer, reads of absent bytes return zero (or an empty slot) and
/// writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterStatsEntry<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(FilterStatsEntry, FILTER_STATS_ENTRY_LEN);

impl<T: AsRef<[u8]>> FilterStatsEntry<T> {
    /// The filter id.
    pub fn filter_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::FILTER_ID)
    }

    /// The layer id.
    pub fn layer_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LAYER_ID)
    }

    /// The raw origin code.
    pub fn origin_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::ORIGIN)
    }

    /// The raw action code.
    pub fn action_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::ACTION)
    }

    /// The raw log level code.
    pub fn log_level_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::LOG_LEVEL)
    }

    /// The raw verdict byte (the default verdict of an Ask action).
    pub fn verdict_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VERDICT)
    }

    /// The `label_len` field.
    pub fn label_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::LABEL_LEN)
    }

    /// The first action parameter slot.
    pub fn param_a(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::PARAM_A)
    }

    /// The second action parameter slot.
    pub fn param_b(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::PARAM_B)
    }

    /// References held on the filter context when it was read.
    pub fn references(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::REFERENCES)
    }

    /// The counters.
    pub fn counters(&self) -> FilterCounters {
        FilterCounters::from_array(u64s_at(self.buffer.as_ref(), field::COUNTERS))
    }

    /// Whether every reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        let bytes = self.buffer.as_ref();
        zero_at(bytes, field::RESERVED_0) && zero_at(bytes, field::RESERVED_1)
    }

    /// The whole label slot ([`LABEL_MAX_LEN`](crate::LABEL_MAX_LEN) bytes), or empty if the
    /// buffer does not hold it.
    pub fn label_slot(&self) -> &[u8] {
        self.buffer.as_ref().get(field::LABEL).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FilterStatsEntry<T> {
    /// Sets the filter id.
    pub fn set_filter_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::FILTER_ID, value);
    }

    /// Sets the layer id.
    pub fn set_layer_id(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LAYER_ID, value);
    }

    /// Sets the raw origin code.
    pub fn set_origin_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::ORIGIN, value);
    }

    /// Sets the raw action code.
    pub fn set_action_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::ACTION, value);
    }

    /// Sets the raw log level code.
    pub fn set_log_level_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::LOG_LEVEL, value);
    }

    /// Sets the raw verdict byte.
    pub fn set_verdict_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::VERDICT, value);
    }

    /// Sets the `label_len` field.
    pub fn set_label_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::LABEL_LEN, value);
    }

    /// Sets the first action parameter slot.
    pub fn set_param_a(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::PARAM_A, value);
    }

    /// Sets the second action parameter slot.
    pub fn set_param_b(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::PARAM_B, value);
    }

    /// Sets the reference count.
    pub fn set_references(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::REFERENCES, value);
    }

    /// Sets the counters.
    pub fn set_counters(&mut self, value: &FilterCounters) {
        set_u64s(self.buffer.as_mut(), field::COUNTERS, &value.to_array());
    }

    /// Zeroes every reserved byte.
    pub fn clear_reserved(&mut self) {
        let bytes = self.buffer.as_mut();
        clear(bytes, field::RESERVED_0);
        clear(bytes, field::RESERVED_1);
    }

    /// The whole label slot, for writing; empty if the buffer does not hold
    /// it.
    pub fn label_slot_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::LABEL).unwrap_or(&mut [])
    }
}

/// A decoded, valid per-filter statistics entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterStatsEntryRepr {
    /// The WFP runtime filter id.
    pub filter_id: u64,
    /// The WFP runtime layer id.
    pub layer_id: u16,
    /// Where the filter's context came from.
    pub origin: FilterOrigin,
    /// The policy the context holds.
    pub policy: PolicyRepr,
    /// References held on the context when it was read.
    pub references: u32,
    /// The context's counters.
    pub counters: FilterCounters,
}

impl FilterStatsEntryRepr {
    /// Decodes one entry, strictly: exactly [`FILTER_STATS_ENTRY_LEN`]
    /// bytes, reserved bytes zero, a known origin, and a policy the policy
    /// blob's rules accept (known action with parameters in range and unused
    /// slots zero, known log level, UTF-8 label of at most
    /// [`LABEL_MAX_LEN`](crate::LABEL_MAX_LEN) bytes padded with zeroes).
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<FilterStatsEntryRepr, WireError> {
        let entry = FilterStatsEntry::new_checked(bytes)?;
        if !entry.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let origin = FilterOrigin::from_code(entry.origin_code())?;
        let action = PolicyAction::from_fields(crate::action::ActionFields {
            code: entry.action_code(),
            verdict: entry.verdict_code(),
            param_a: entry.param_a(),
            param_b: entry.param_b(),
        })?;
        let log_level = LogLevel::from_code(entry.log_level_code())?;
        let label = label_slot::decode(entry.label_len(), entry.label_slot())?;
        Ok(FilterStatsEntryRepr {
            filter_id: entry.filter_id(),
            layer_id: entry.layer_id(),
            origin,
            policy: PolicyRepr { action, log_level, label },
            references: entry.references(),
            counters: entry.counters(),
        })
    }

    /// Length of the encoding: always [`FILTER_STATS_ENTRY_LEN`].
    pub const fn buffer_len(&self) -> usize {
        FILTER_STATS_ENTRY_LEN
    }

    /// Encodes the entry into the first [`FILTER_STATS_ENTRY_LEN`] bytes of
    /// `out`, leaving the rest untouched, and returns that length.
    ///
    /// Returns [`WireError::BadActionParameters`] if the policy's action
    /// parameters are out of range (so that nothing `parse` would refuse is
    /// written) and [`WireError::BufferTooSmall`] if `out` is too short; in
    /// both cases `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.policy.action.check()?;
        let dst = out.get_mut(..FILTER_STATS_ENTRY_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut FilterStatsEntry::new_unchecked(dst));
        Ok(FILTER_STATS_ENTRY_LEN)
    }

    /// Encodes the entry into a new vector, without the parameter check of
    /// [`emit`](Self::emit).
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; FILTER_STATS_ENTRY_LEN];
        self.write(&mut FilterStatsEntry::new_unchecked(out.as_mut_slice()));
        out
    }

    /// Writes every field of a buffer of exactly [`FILTER_STATS_ENTRY_LEN`]
    /// bytes.
    pub(crate) fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, entry: &mut FilterStatsEntry<T>) {
        let fields = self.policy.action.to_fields();
        entry.set_filter_id(self.filter_id);
        entry.set_layer_id(self.layer_id);
        entry.set_origin_code(self.origin.code());
        entry.set_action_code(fields.code);
        entry.set_log_level_code(self.policy.log_level.code());
        entry.set_verdict_code(fields.verdict);
        entry.set_param_a(fields.param_a);
        entry.set_param_b(fields.param_b);
        entry.set_references(self.references);
        entry.clear_reserved();
        entry.set_counters(&self.counters);
        let label_len = label_slot::encode(&self.policy.label, entry.label_slot_mut());
        entry.set_label_len(label_len);
    }
}

impl Default for FilterStatsEntryRepr {
    /// Filter `0`, layer `0`, notified, the default policy, no references,
    /// every counter zero.
    fn default() -> FilterStatsEntryRepr {
        FilterStatsEntryRepr {
            filter_id: 0,
            layer_id: 0,
            origin: FilterOrigin::Notified,
            policy: PolicyRepr::DEFAULT,
            references: 0,
            counters: FilterCounters::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::LABEL_MAX_LEN;
    use crate::test_util::{self, FixedFormat};
    use crate::{Label, Verdict};

    impl FixedFormat for FilterStatsEntryRepr {
        const LEN: usize = FILTER_STATS_ENTRY_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            FilterStatsEntryRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// Builds a 168-byte entry from its 32-byte head, nine counters and
    /// label text.
    const fn entry_bytes(head: [u8; 32], counters: [u64; 9], label: &[u8]) -> [u8; FILTER_STATS_ENTRY_LEN] {
        let mut out = [0u8; FILTER_STATS_ENTRY_LEN];
        let mut i = 0;
        while i < 32 {
            out[i] = head[i];
            i += 1;
        }
        let mut c = 0;
        while c < 9 {
            let le = counters[c].to_le_bytes();
            let mut j = 0;
            while j < 8 {
                out[32 + 8 * c + j] = le[j];
                j += 1;
            }
            c += 1;
        }
        let mut k = 0;
        while k < label.len() {
            out[104 + k] = label[k];
            k += 1;
        }
        out
    }

    /// Filter 0x1234 on layer 48, adopted, Block/Warning "ssh", 2 references.
    pub(crate) static BLOCK_ENTRY_BYTES: [u8; FILTER_STATS_ENTRY_LEN] = entry_bytes(
        [
            0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // filter_id = 0x1234
            0x30, 0x00, // layer_id = 48
            0x01, // origin = adopted
            0x01, // action = Block
            0x02, // log_level = Warning
            0x00, // verdict (unused)
            0x03, // label_len
            0x00, // reserved
            0x00, 0x00, 0x00, 0x00, // param_a
            0x00, 0x00, 0x00, 0x00, // param_b
            0x02, 0x00, 0x00, 0x00, // references = 2
            0x00, 0x00, 0x00, 0x00, // reserved
        ],
        [10, 0, 10, 0, 0, 0, 0, 1, 4],
        b"ssh",
    );

    /// Filter 0x0102_0304_0506_0708 on layer 0xffff, notified, Ask 30 s
    /// default Block, Trace, "ask-\u{fc}", 1 reference, large counters.
    pub(crate) static ASK_ENTRY_BYTES: [u8; FILTER_STATS_ENTRY_LEN] = entry_bytes(
        [
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // filter_id
            0xff, 0xff, // layer_id = 0xffff
            0x00, // origin = notified
            0x04, // action = Ask
            0x04, // log_level = Trace
            0x02, // verdict = Block
            0x06, // label_len
            0x00, // reserved
            0x30, 0x75, 0x00, 0x00, // param_a = timeout_ms 30_000
            0x00, 0x00, 0x00, 0x00, // param_b (unused)
            0x01, 0x00, 0x00, 0x00, // references = 1
            0x00, 0x00, 0x00, 0x00, // reserved
        ],
        [u64::MAX, 1, 2, 3, 4, 5, 6, 7, 1 << 40],
        "ask-ü".as_bytes(),
    );

    /// Filter 7, layer 2, notified, RateLimit 1000/s burst 1_000_000, Error,
    /// a full 64-byte label.
    pub(crate) static RATE_LIMIT_ENTRY_BYTES: [u8; FILTER_STATS_ENTRY_LEN] = entry_bytes(
        [
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // filter_id = 7
            0x02, 0x00, // layer_id = 2
            0x00, // origin = notified
            0x03, // action = RateLimit
            0x01, // log_level = Error
            0x00, // verdict (unused)
            0x40, // label_len = 64
            0x00, // reserved
            0xe8, 0x03, 0x00, 0x00, // param_a = rate_per_sec 1000
            0x40, 0x42, 0x0f, 0x00, // param_b = burst 1_000_000
            0x00, 0x00, 0x00, 0x00, // references = 0
            0x00, 0x00, 0x00, 0x00, // reserved
        ],
        [0; 9],
        &[b'r'; 64],
    );

    pub(crate) fn block_entry() -> FilterStatsEntryRepr {
        FilterStatsEntryRepr {
            filter_id: 0x1234,
            layer_id: 48,
            origin: FilterOrigin::Adopted,
            policy: PolicyRepr {
                action: PolicyAction::Block,
                log_level: LogLevel::Warning,
                label: Label::new("ssh").unwrap(),
            },
            references: 2,
            counters: FilterCounters { matched: 10, blocked: 10, live_flows: 1, flows_total: 4, ..Default::default() },
        }
    }

    pub(crate) fn ask_entry() -> FilterStatsEntryRepr {
        FilterStatsEntryRepr {
            filter_id: 0x0102_0304_0506_0708,
            layer_id: 0xffff,
            origin: FilterOrigin::Notified,
            policy: PolicyRepr {
                action: PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block },
                log_level: LogLevel::Trace,
                label: Label::new("ask-ü").unwrap(),
            },
            references: 1,
            counters: FilterCounters::from_array([u64::MAX, 1, 2, 3, 4, 5, 6, 7, 1 << 40]),
        }
    }

    fn rate_limit_entry() -> FilterStatsEntryRepr {
        FilterStatsEntryRepr {
            filter_id: 7,
            layer_id: 2,
            origin: FilterOrigin::Notified,
            policy: PolicyRepr {
                action: PolicyAction::RateLimit { rate_per_sec: 1000, burst: 1_000_000 },
                log_level: LogLevel::Error,
                label: Label::from_bytes(&[b'r'; 64]).unwrap(),
            },
            references: 0,
            counters: FilterCounters::default(),
        }
    }

    fn fixtures() -> [(&'static [u8], FilterStatsEntryRepr); 3] {
        [
            (&BLOCK_ENTRY_BYTES, block_entry()),
            (&ASK_ENTRY_BYTES, ask_entry()),
            (&RATE_LIMIT_ENTRY_BYTES, rate_limit_entry()),
        ]
    }

    #[test]
    fn layout_constants() {
        assert_eq!(FILTER_STATS_ENTRY_LEN, 168);
        assert_eq!(FILTER_COUNTER_COUNT, 9);
        assert_eq!(FilterCounters::NAMES[0], "matched");
        assert_eq!(FilterCounters::NAMES[8], "flows_total");
    }

    #[test]
    fn origin_codes() {
        for code in 0..=u8::MAX {
            match FilterOrigin::from_code(code) {
                Ok(origin) => assert_eq!(origin.code(), code),
                Err(err) => assert_eq!(err, WireError::UnknownOrigin(code)),
            }
        }
        assert_eq!(FilterOrigin::from_code(1), Ok(FilterOrigin::Adopted));
    }

    #[test]
    fn counters_array_roundtrip() {
        let counters = FilterCounters::from_array([1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(counters.matched, 1);
        assert_eq!(counters.rate_limited, 5);
        assert_eq!(counters.flows_total, 9);
        assert_eq!(counters.to_array(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn deconstruct() {
        let entry = FilterStatsEntry::new_checked(&ASK_ENTRY_BYTES[..]).unwrap();
        assert_eq!(entry.filter_id(), 0x0102_0304_0506_0708);
        assert_eq!(entry.layer_id(), 0xffff);
        assert_eq!(entry.origin_code(), 0);
        assert_eq!(entry.action_code(), 4);
        assert_eq!(entry.log_level_code(), 4);
        assert_eq!(entry.verdict_code(), 2);
        assert_eq!(entry.label_len(), 6);
        assert_eq!(entry.param_a(), 30_000);
        assert_eq!(entry.param_b(), 0);
        assert_eq!(entry.references(), 1);
        assert_eq!(entry.counters().matched, u64::MAX);
        assert_eq!(entry.counters().flows_total, 1 << 40);
        assert!(entry.reserved_is_zero());
        assert_eq!(&entry.label_slot()[..6], "ask-ü".as_bytes());
        assert_eq!(entry.label_slot().len(), LABEL_MAX_LEN);
        assert_eq!(entry.into_inner(), &ASK_ENTRY_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; FILTER_STATS_ENTRY_LEN];
        let mut entry = FilterStatsEntry::new_unchecked(&mut buf[..]);
        entry.set_filter_id(0x1234);
        entry.set_layer_id(48);
        entry.set_origin_code(1);
        entry.set_action_code(1);
        entry.set_log_level_code(2);
        entry.set_verdict_code(0);
        entry.set_label_len(3);
        entry.set_param_a(0);
        entry.set_param_b(0);
        entry.set_references(2);
        entry.clear_reserved();
        entry.set_counters(&FilterCounters::from_array([10, 0, 10, 0, 0, 0, 0, 1, 4]));
        let slot = entry.label_slot_mut();
        slot.fill(0);
        slot[..3].copy_from_slice(b"ssh");
        assert_eq!(buf, BLOCK_ENTRY_BYTES);
    }

    #[test]
    fn parse_and_emit_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(FilterStatsEntryRepr::parse(bytes), Ok(repr));
            test_util::assert_canonical(bytes, &repr);
            test_util::emit_too_small_writes_nothing(&repr);
        }
    }

    #[test]
    fn default_entry_roundtrips() {
        let repr = FilterStatsEntryRepr::default();
        let mut out = [0xa5u8; FILTER_STATS_ENTRY_LEN];
        assert_eq!(repr.emit(&mut out), Ok(FILTER_STATS_ENTRY_LEN));
        assert_eq!(out, [0u8; FILTER_STATS_ENTRY_LEN]);
        assert_eq!(FilterStatsEntryRepr::parse(&out), Ok(repr));
    }

    #[cfg(feature = "std")]
    #[test]
    fn to_bytes_matches_emit() {
        for (bytes, repr) in fixtures() {
            assert_eq!(repr.to_bytes().as_slice(), bytes);
        }
    }

    // ---- Every error. ----

    fn parse_mutated(bytes: &[u8], mutate: impl FnOnce(&mut [u8])) -> Result<FilterStatsEntryRepr, WireError> {
        test_util::parse_mutated::<FilterStatsEntryRepr>(bytes, mutate)
    }

    #[test]
    fn error_truncated_and_length_mismatch() {
        assert_eq!(FilterStatsEntryRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(FilterStatsEntryRepr::parse(&BLOCK_ENTRY_BYTES[..167]), Err(WireError::Truncated));
        let mut long = [0u8; FILTER_STATS_ENTRY_LEN + 1];
        long[..FILTER_STATS_ENTRY_LEN].copy_from_slice(&BLOCK_ENTRY_BYTES);
        assert_eq!(FilterStatsEntryRepr::parse(&long), Err(WireError::LengthMismatch));
    }

    #[test]
    fn error_reserved_not_zero() {
        for at in [15usize, 28, 29, 30, 31] {
            assert_eq!(
                parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[at] = 0x80),
                Err(WireError::ReservedNotZero),
                "byte {at}"
            );
        }
        // Label padding.
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[167] = 1), Err(WireError::ReservedNotZero));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[107] = 1), Err(WireError::ReservedNotZero));
    }

    #[test]
    fn error_unknown_origin() {
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[10] = 2), Err(WireError::UnknownOrigin(2)));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[10] = 0xff), Err(WireError::UnknownOrigin(0xff)));
    }

    #[test]
    fn error_policy_fields_follow_the_policy_rules() {
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[11] = 5), Err(WireError::UnknownAction(5)));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[13] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[16] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[23] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&RATE_LIMIT_ENTRY_BYTES, |b| b[16..20].fill(0)), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&RATE_LIMIT_ENTRY_BYTES, |b| b[22] = 0x10), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&ASK_ENTRY_BYTES, |b| b[13] = 0), Err(WireError::UnknownVerdict(0)));
        assert_eq!(parse_mutated(&ASK_ENTRY_BYTES, |b| b[13] = 3), Err(WireError::UnknownVerdict(3)));
        assert_eq!(
            parse_mutated(&ASK_ENTRY_BYTES, |b| b[16..20].copy_from_slice(&600_001u32.to_le_bytes())),
            Err(WireError::BadActionParameters)
        );
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[12] = 5), Err(WireError::UnknownLogLevel(5)));
    }

    #[test]
    fn error_label() {
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[14] = 65), Err(WireError::LabelTooLong));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[14] = 255), Err(WireError::LabelTooLong));
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[104] = 0xff), Err(WireError::LabelNotUtf8));
        // Cut "ü" in half.
        assert_eq!(parse_mutated(&ASK_ENTRY_BYTES, |b| b[14] = 5), Err(WireError::LabelNotUtf8));
        // A shorter label_len leaves text in the padding.
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, |b| b[14] = 2), Err(WireError::ReservedNotZero));
    }

    #[test]
    fn error_order() {
        // Reserved before origin before action before log level before label.
        let all_bad = |b: &mut [u8]| {
            b[15] = 1;
            b[10] = 9;
            b[11] = 9;
            b[12] = 9;
            b[14] = 99;
        };
        assert_eq!(parse_mutated(&BLOCK_ENTRY_BYTES, all_bad), Err(WireError::ReservedNotZero));
        assert_eq!(
            parse_mutated(&BLOCK_ENTRY_BYTES, |b| {
                all_bad(b);
                b[15] = 0;
            }),
            Err(WireError::UnknownOrigin(9))
        );
        assert_eq!(
            parse_mutated(&BLOCK_ENTRY_BYTES, |b| {
                all_bad(b);
                b[15] = 0;
                b[10] = 0;
            }),
            Err(WireError::UnknownAction(9))
        );
        assert_eq!(
            parse_mutated(&BLOCK_ENTRY_BYTES, |b| {
                all_bad(b);
                b[15] = 0;
                b[10] = 0;
                b[11] = 1;
            }),
            Err(WireError::UnknownLogLevel(9))
        );
        assert_eq!(
            parse_mutated(&BLOCK_ENTRY_BYTES, |b| {
                all_bad(b);
                b[15] = 0;
                b[10] = 0;
                b[11] = 1;
                b[12] = 1;
            }),
            Err(WireError::LabelTooLong)
        );
    }

    #[test]
    fn emit_refuses_out_of_range_parameters() {
        let mut repr = block_entry();
        repr.policy.action = PolicyAction::RateLimit { rate_per_sec: 0, burst: 1 };
        let mut out = [0xa5u8; FILTER_STATS_ENTRY_LEN];
        assert_eq!(repr.emit(&mut out), Err(WireError::BadActionParameters));
        assert!(out.iter().all(|&b| b == 0xa5));
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_bytes_of_every_length() {
        test_util::random_bytes_of_every_length::<FilterStatsEntryRepr>(0x2545_f491_4f6c_dd1d, &[]);
    }

    #[test]
    fn random_plausible_entries() {
        let mut rng = test_util::XorShift(0x0f0f_0f0f_1234_5678);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut buf = [0u8; FILTER_STATS_ENTRY_LEN];
            rng.fill(&mut buf);
            let label_len = rng.below(LABEL_MAX_LEN + 4);
            let mut entry = FilterStatsEntry::new_unchecked(&mut buf[..]);
            entry.clear_reserved();
            entry.set_origin_code(rng.next_u8() % 3);
            entry.set_action_code(rng.next_u8() % 6);
            entry.set_log_level_code(rng.next_u8() % 6);
            entry.set_verdict_code(rng.next_u8() % 3);
            entry.set_param_a(u32::from(rng.next_u8()));
            entry.set_param_b(if rng.next_u8().is_multiple_of(2) { 0 } else { 7 });
            entry.set_label_len(u8::try_from(label_len).unwrap());
            let slot = entry.label_slot_mut();
            for (i, b) in slot.iter_mut().enumerate() {
                *b = if i < label_len { b'a' + rng.next_u8() % 26 } else { 0 };
            }
            if test_util::check_any::<FilterStatsEntryRepr>(&buf) {
                accepted += 1;
            }
        }
        assert!(accepted > 500, "only {accepted} accepted");
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        for (bytes, repr) in fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0xabcd_ef01_2345_6789);
        }
    }

    #[test]
    fn mutated_fixtures() {
        for (bytes, _) in fixtures() {
            assert!(test_util::mutated::<FilterStatsEntryRepr>(bytes, 0x7777_1111_3333_5555) > 0);
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        for len in 0..FILTER_STATS_ENTRY_LEN {
            let mut buf = ASK_ENTRY_BYTES;
            let mut entry = FilterStatsEntry::new_unchecked(&mut buf[..len]);
            let _ = (
                entry.filter_id(),
                entry.layer_id(),
                entry.origin_code(),
                entry.action_code(),
                entry.log_level_code(),
                entry.verdict_code(),
                entry.label_len(),
                entry.param_a(),
                entry.param_b(),
                entry.references(),
                entry.counters(),
                entry.reserved_is_zero(),
            );
            assert!(entry.label_slot().is_empty());
            entry.set_filter_id(1);
            entry.set_layer_id(1);
            entry.set_origin_code(1);
            entry.set_action_code(1);
            entry.set_log_level_code(1);
            entry.set_verdict_code(1);
            entry.set_label_len(1);
            entry.set_param_a(1);
            entry.set_param_b(1);
            entry.set_references(1);
            entry.set_counters(&FilterCounters::default());
            entry.clear_reserved();
            assert!(entry.label_slot_mut().is_empty());
            assert_eq!(entry.check_len(), Err(WireError::Truncated));
        }
    }
}
