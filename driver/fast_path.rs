//! The classify fast path, decided once per filter by notifyFn ADD and
//! carried in the two low bits of the word it stores in `filter->context`
//! (the context's address is 8-byte aligned, so they are free). classifyFn
//! reads the verdict of a static policy from the filter itself, before it
//! enters the rundown, and touches the context only to count.
//!
//! In a debugger: `filter->context & ~3` is the `FilterContext*`, the low
//! bits are the [`FastPath`].
#![forbid(unsafe_code)]

use crate::ffi::{
    FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6, FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
    FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
};
use crate::filter_context::FilterContext;
use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr};

/// The bits of the context word that hold the fast path.
const TAG_MASK: u64 = 0b11;
/// The bit [`StaticVerdict`] adds for the filter's hard-permit flag.
const CLEAR_RIGHT: u64 = 0b100;
/// Every bit that is not the context's address.
const LOW_BITS: u64 = TAG_MASK | CLEAR_RIGHT;

// The low bits are free only because every context address is a multiple of 8.
const _: () = assert!(core::mem::align_of::<FilterContext>() > LOW_BITS as usize);

/// What classify can decide from the filter alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FastPath {
    /// Run the full policy: audit, rate limit, ask, tracing, and every
    /// policy at the recv-accept and flow-established layers (which check
    /// for our own injections and track flows).
    Full = 0,
    /// PERMIT, counted, nothing else.
    Permit = 1,
    /// BLOCK, counted, nothing else.
    Block = 2,
}

impl FastPath {
    /// The fast path for a filter with `policy` at `layer_id`. A filter's
    /// layer is fixed and is the layer of every classification it gets
    /// (each callout is registered for one layer).
    pub fn for_filter(policy: &PolicyRepr, layer_id: u16) -> Self {
        let plain_layer = !matches!(
            layer_id,
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4
                | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6
                | FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4
                | FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6
        );
        match policy.action {
            _ if !plain_layer || policy.log_level >= LogLevel::Trace => FastPath::Full,
            PolicyAction::Permit => FastPath::Permit,
            PolicyAction::Block => FastPath::Block,
            _ => FastPath::Full,
        }
    }

    /// The word notifyFn stores in `filter->context` for the context whose
    /// raw reference is `context` (a `ContextRef::as_raw` value).
    pub fn context_word(self, context: u64) -> u64 {
        context | self as u64
    }

    /// Splits a context word into the raw reference and the fast path. Any
    /// value splits; only one we stored means anything.
    #[inline(always)]
    pub fn split(word: u64) -> (u64, FastPath) {
        let fast = match word & TAG_MASK {
            1 => FastPath::Permit,
            2 => FastPath::Block,
            _ => FastPath::Full,
        };
        (word & !TAG_MASK, fast)
    }
}

/// A fast filter's context word with its hard-permit flag folded in: the
/// one value the hot path keeps across the processor lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticVerdict(u64);

impl StaticVerdict {
    /// For a context word whose fast path is `Permit` or `Block` (`None`
    /// for `Full`), from a filter whose flags say `clear_right`.
    #[inline(always)]
    pub fn new(word: u64, clear_right: bool) -> Option<Self> {
        if FastPath::split(word).1 == FastPath::Full {
            return None;
        }
        Some(Self((word & !CLEAR_RIGHT) | if clear_right { CLEAR_RIGHT } else { 0 }))
    }

    /// The raw context reference (what `ContextRef::borrow` takes).
    #[inline(always)]
    pub fn context(self) -> u64 {
        self.0 & !LOW_BITS
    }

    /// Whether the verdict is BLOCK (else PERMIT).
    #[inline(always)]
    pub fn is_block(self) -> bool {
        self.0 & TAG_MASK == FastPath::Block as u64
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
    use crate::ffi::FWPS_LAYER_ALE_AUTH_CONNECT_V4;
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
        assert_eq!(FastPath::for_filter(&policy(PolicyAction::Audit, LogLevel::Off), connect), FastPath::Full);
        let limit = PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 };
        assert_eq!(FastPath::for_filter(&policy(limit, LogLevel::Off), connect), FastPath::Full);
        for layer in [
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
            FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
            FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4,
            FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6,
        ] {
            assert_eq!(FastPath::for_filter(&policy(PolicyAction::Permit, LogLevel::Off), layer), FastPath::Full);
            assert_eq!(FastPath::for_filter(&policy(PolicyAction::Block, LogLevel::Off), layer), FastPath::Full);
        }
    }

    #[test]
    fn context_words_round_trip_and_garbage_is_full() {
        for fast in [FastPath::Full, FastPath::Permit, FastPath::Block] {
            assert_eq!(FastPath::split(fast.context_word(0xffff_a50c_1234_e010)), (0xffff_a50c_1234_e010, fast));
        }
        assert_eq!(FastPath::split(0x13), (0x10, FastPath::Full));
        assert_eq!(FastPath::split(0), (0, FastPath::Full));
    }

    #[test]
    fn static_verdicts_carry_the_context_the_verdict_and_the_flag() {
        let context = 0xffff_a50c_1234_e010;
        assert_eq!(StaticVerdict::new(FastPath::Full.context_word(context), true), None);
        for (fast, block) in [(FastPath::Permit, false), (FastPath::Block, true)] {
            for clear in [false, true] {
                let verdict = StaticVerdict::new(fast.context_word(context), clear);
                let verdict = verdict.unwrap_or(StaticVerdict(0));
                assert_eq!((verdict.context(), verdict.is_block(), verdict.clears_right()), (context, block, clear));
            }
        }
    }
}
