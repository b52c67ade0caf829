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

// The tag bits are free only because every context address is a multiple of 4.
const _: () = assert!(core::mem::align_of::<FilterContext>() > TAG_MASK as usize);

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
}
