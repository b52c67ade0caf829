//! The classify fast path, decided once per filter by notifyFn ADD and
//! carried in the low bits of the word it stores in `filter->context`.
//! classifyFn reads a static policy's whole answer from the filter itself,
//! and finds the context (to count) through the checked handle in the same
//! word (`context_slots.rs`).
//!
//! The word: bits 63..32 the slot's generation; bits 31..23 the slot's
//! segment and bits 13..4 its place in the segment (its index is
//! `segment * 1024 + place`; bits 22..14 are 0); bit 0 the verdict is
//! static; bit 1 that verdict is BLOCK; bit 2 the filter has
//! `FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT` (a static PERMIT clears the write
//! right); bit 3 the static PERMIT is an audit (counted as audited too).
//! Filters cannot be modified in WFP, so the flag read at ADD holds for
//! the filter's life. The low four bits are also the tag the slot is
//! claimed with, so the slot's key is the whole word, and a static word
//! (bit 0 set) can only match a claimed slot (free slots' keys have no
//! tag). The word is not an address: in a debugger, the slot at byte
//! offset `filter->context & 0x3ff0` of segment
//! `(filter->context >> 23) & 0x1ff` of the context table's slots holds the
//! `FilterContext*` if its key equals `filter->context` (docs/WINDBG.md).
#![forbid(unsafe_code)]

use crate::filters::context_slots::{INDEX_SHIFT, SlotHandle};
use crate::wfp::ffi::{FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V6};
use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr};

/// Bit 0: the verdict is static (one test tells the hot path it applies).
const STATIC: u64 = 0b001;
/// Bit 1: the static verdict is BLOCK.
const BLOCK: u64 = 0b010;
/// Bit 2: the filter's hard-permit flag.
const CLEAR_RIGHT: u64 = 0b100;
/// Bit 3: the static PERMIT is an audit without a log line.
const AUDIT: u64 = 0b1000;
/// The fast-path bits (below the slot index).
pub const LOW_BITS: u64 = STATIC | BLOCK | CLEAR_RIGHT | AUDIT;

/// What classify can decide from the filter alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FastPath {
    /// Run the full policy: audit, rate limit, ask, tracing, and every
    /// policy at the recv-accept and flow-established layers (which check
    /// for our own injections and track flows).
    Full = 0,
    /// PERMIT, counted, nothing else.
    Permit = STATIC as u8,
    /// BLOCK, counted, nothing else.
    Block = (STATIC | BLOCK) as u8,
    /// PERMIT, counted as permitted and audited, nothing logged (an audit
    /// policy whose log level is below Info).
    Audit = (STATIC | AUDIT) as u8,
}

impl FastPath {
    /// The fast path for a filter with `policy` at `layer_id`. A filter's
    /// layer is fixed and is the layer of every classification it gets
    /// (each callout is registered for one layer).
    ///
    /// Only the connect layers are plain: recv-accept must recognise our
    /// own injections, flow-established answers CONTINUE and tracks flows,
    /// and a layer not known yet (0: an ADD that came while our callout was
    /// being registered, before its run-time id was stored) takes the full
    /// path, which reads the layer from each classification.
    pub fn for_filter(policy: &PolicyRepr, layer_id: u16) -> Self {
        let plain_layer = matches!(layer_id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6);
        match policy.action {
            _ if !plain_layer || policy.log_level >= LogLevel::Trace => FastPath::Full,
            PolicyAction::Permit => FastPath::Permit,
            PolicyAction::Block => FastPath::Block,
            // The audit line is logged from Info up: that takes the full path.
            PolicyAction::Audit if policy.log_level < LogLevel::Info => FastPath::Audit,
            _ => FastPath::Full,
        }
    }
}

/// What notifyFn ADD stores in `filter->context`: the context's checked
/// handle (slot index and generation) with the filter's fast path and
/// hard-permit flag in its low bits (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextWord(u64);

const _: () = assert!(LOW_BITS < 1 << INDEX_SHIFT);

impl ContextWord {
    /// The word for the context in slot `handle`, with `fast` and the
    /// filter's flag, whatever tag `handle` was claimed with (tests build
    /// words for handles they choose; notifyFn ADD uses
    /// [`Self::of_claim`]). The index is taken modulo the slots' capacity
    /// (every index the slots issue is below it: `SlotHandle::key`).
    pub fn new(handle: SlotHandle, fast: FastPath, clear_right: bool) -> Self {
        Self(SlotHandle { tag: Self::tag(fast, clear_right), ..handle }.key())
    }

    /// The word's bits below the index for `fast` and the filter's flag:
    /// the tag its slot is claimed with (`HandleSlots::claim_tagged`), so
    /// the slot's key is the whole word. A static word's tag is never 0.
    pub fn tag(fast: FastPath, clear_right: bool) -> u8 {
        let hard = if clear_right { CLEAR_RIGHT } else { 0 };
        (fast as u64 | hard) as u8
    }

    /// The word for `handle` as claimed (its tag from [`Self::tag`]).
    pub fn of_claim(handle: SlotHandle) -> Self {
        Self(handle.key())
    }

    /// A word read back from `filter->context`. Any value is accepted;
    /// only one our ADD stored means anything.
    #[inline(always)]
    pub fn from_raw(word: u64) -> Self {
        Self(word)
    }

    /// The value to store in `filter->context`.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The checked handle the word carries (not checked yet: any word
    /// gives one; the slots decide whether it names a context).
    #[inline(always)]
    pub fn handle(self) -> SlotHandle {
        SlotHandle::from_key(self.key())
    }

    /// The handle as a slot key: the whole word (its fast-path bits are
    /// the key's tag).
    #[inline(always)]
    pub fn key(self) -> u64 {
        self.0
    }

    /// The fast path the word carries (BLOCK wins over an audit bit no
    /// word we store has with it).
    pub fn fast_path(self) -> FastPath {
        match (self.is_static(), self.is_block(), self.is_audit()) {
            (false, _, _) => FastPath::Full,
            (true, true, _) => FastPath::Block,
            (true, false, false) => FastPath::Permit,
            (true, false, true) => FastPath::Audit,
        }
    }

    /// Whether classify can answer from the word alone.
    #[inline(always)]
    pub fn is_static(self) -> bool {
        self.0 & STATIC != 0
    }

    /// Whether a static word is a PERMIT counted only as permitted that
    /// keeps the write right (neither BLOCK, audit nor a hard permit): one
    /// test for the hot path's common case.
    #[inline(always)]
    pub fn is_plain_permit(self) -> bool {
        self.0 & (BLOCK | AUDIT | CLEAR_RIGHT) == 0
    }

    /// Whether the static verdict is BLOCK (else PERMIT).
    #[inline(always)]
    pub fn is_block(self) -> bool {
        self.0 & BLOCK != 0
    }

    /// Whether a static PERMIT is also counted as audited.
    #[inline(always)]
    pub fn is_audit(self) -> bool {
        self.0 & AUDIT != 0
    }

    /// Whether a PERMIT must clear the write right (hard permit).
    #[inline(always)]
    pub fn clears_right(self) -> bool {
        self.0 & CLEAR_RIGHT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfp::ffi::{
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
        FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
    };
    use wfpcallout_wire::Label;

    fn policy(action: PolicyAction, log_level: LogLevel) -> PolicyRepr {
        PolicyRepr { action, log_level, label: Label::new("t").unwrap_or(PolicyRepr::DEFAULT.label) }
    }

    #[test]
    fn only_static_policies_at_plain_layers_are_fast() {
        let connect = FWPS_LAYER_ALE_AUTH_CONNECT_V4;
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Permit, LogLevel::Info), connect), FastPath::Permit);
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Block, LogLevel::Off), connect), FastPath::Block);
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Permit, LogLevel::Trace), connect), FastPath::Full);
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Audit, LogLevel::Off), connect), FastPath::Audit);
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Audit, LogLevel::Warning), connect), FastPath::Audit);
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Audit, LogLevel::Info), connect), FastPath::Full);
        let limit = PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 };
        assert_eq!(FastPath::for_filter(&policy(limit, LogLevel::Off), connect), FastPath::Full);
        for layer in [
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
            FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
            FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
            0, // not known yet: an ADD during registration
        ] {
            assert_eq!(FastPath::for_filter(&policy(PolicyAction::Permit, LogLevel::Off), layer), FastPath::Full);
            assert_eq!(FastPath::for_filter(&policy(PolicyAction::Block, LogLevel::Off), layer), FastPath::Full);
            assert_eq!(FastPath::for_filter(&policy(PolicyAction::Audit, LogLevel::Off), layer), FastPath::Full);
        }
    }

    #[test]
    fn context_words_round_trip_and_every_value_means_something() {
        let handle = SlotHandle { index: 0x7_def1, generation: 0xa50c_1235, tag: 0 };
        for fast in [FastPath::Full, FastPath::Permit, FastPath::Block, FastPath::Audit] {
            for clear in [false, true] {
                let word = ContextWord::from_raw(ContextWord::new(handle, fast, clear).raw());
                let tag = ContextWord::tag(fast, clear);
                assert_eq!(
                    (word.handle(), word.fast_path(), word.clears_right()),
                    (SlotHandle { tag, ..handle }, fast, clear)
                );
                assert_eq!(word.is_static(), fast != FastPath::Full);
                // The hot path's one test: a permit that keeps the write
                // right and counts nothing else (for a static word).
                if word.is_static() {
                    assert_eq!(word.is_plain_permit(), fast == FastPath::Permit && !clear, "{fast:?} {clear}");
                }
            }
        }
        assert_eq!(ContextWord::from_raw(0x12).fast_path(), FastPath::Full, "bit 0 clear: not static");
        assert_eq!(ContextWord::from_raw(0x13).fast_path(), FastPath::Block);
        assert_eq!(ContextWord::from_raw(0x19).fast_path(), FastPath::Audit);
        assert_eq!(ContextWord::from_raw(0x1b).fast_path(), FastPath::Block);
        assert_eq!(ContextWord::from_raw(0x7_0000_001f).handle(), SlotHandle { index: 1, generation: 7, tag: 0xf });
        assert!(!ContextWord::from_raw(0).is_static());
    }
}
