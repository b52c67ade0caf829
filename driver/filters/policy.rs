//! The policies that decide from a filter's context alone, and the
//! decision they reach. classifyFn (`callbacks::classify`) writes it out;
//! the `ask` policy, which needs the traffic, is decided in `callbacks::ask`.
#![forbid(unsafe_code)]

pub use crate::filters::decision::Decision;
use crate::filters::fast_path::FastPath;
use crate::filters::filter_context::FilterContext;
use crate::filters::filter_counters::Counter;
use crate::platform::log::Level;
use wfpcallout_wire::{LogLevel, PolicyAction, Verdict};

/// The static verdict of a context whose [`FastPath`] allows it, counted;
/// `None` when the full policy must run. The locked-map
/// benchmark baselines use this, so they run the same classify logic as
/// classifyFn once they have found the context.
#[inline]
pub fn decide_static(context: &FilterContext) -> Option<Decision> {
    let decision = match context.fast_path() {
        FastPath::Permit => Decision::Permit,
        FastPath::Block => Decision::Block,
        FastPath::Audit => {
            context.count(Counter::Audited);
            Decision::Permit
        }
        FastPath::Full => return None,
    };
    context.count_verdict(decision);
    Some(decision)
}

/// Decides a policy that needs nothing but the context (permit, block,
/// audit, rate-limit), counts it and logs and traces
/// it; for `ask`, which needs the traffic (`callbacks::ask`), its terms.
/// No allocation, no lock, no lookup.
#[inline]
pub fn decide_now(context: &FilterContext) -> Result<Decision, AskTerms> {
    let policy = context.policy();
    let decision = match policy.action {
        PolicyAction::Permit => Decision::Permit,
        PolicyAction::Block => Decision::Block,
        PolicyAction::Audit => {
            // Always counted; logged when the filter's log level asks for it
            // (DbgPrintEx per connection is not free at DISPATCH_LEVEL).
            context.count(Counter::Audited);
            if policy.log_level >= LogLevel::Info {
                crate::log!(Level::Info, "audit: filter {} ({}) permitted", context.filter_id(), policy.label);
            }
            Decision::Permit
        }
        PolicyAction::RateLimit { .. } => {
            if context.rate_limiter().try_acquire(crate::platform::kernel::now_ticks()) {
                Decision::Permit
            } else {
                context.count(Counter::RateLimited);
                Decision::Block
            }
        }
        PolicyAction::Ask { timeout_ms, default_verdict } => return Err(AskTerms { timeout_ms, default_verdict }),
    };
    // The verdict, which also counts the classification as matched.
    context.count_verdict(decision);
    if policy.log_level >= LogLevel::Trace {
        crate::log!(Level::Trace, "filter {} ({}): {:?}", context.filter_id(), policy.label, decision);
    }
    crate::platform::etw::verdict(context.filter_id(), context.layer_id(), policy, decision == Decision::Permit);
    Ok(decision)
}

/// An `ask` policy's terms: how long the agent has, and the verdict when
/// it does not answer in time (or no agent is connected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AskTerms {
    /// Milliseconds the agent has to answer.
    pub timeout_ms: u32,
    /// The verdict without an answer.
    pub default_verdict: Verdict,
}
