//! classifyFn: apply the filter's policy at up to DISPATCH_LEVEL.
//!
//! Fast path: the context comes straight from `filter->context` (written by
//! our ADD notify): no allocation, no lock, no lookup. Only while filters
//! exist that we did not see added (adoption in progress, or adopted filters
//! alive) does classify look the filter id up in the table, and a filter
//! found nowhere gets the default policy; a stale `context` is never read.
#![deny(unsafe_code)]

use crate::driver_state::STATE;
use crate::ffi::{FWPS_CLASSIFY_OUT0, FWPS_FILTER2, FWPS_INCOMING_METADATA_VALUES0, FWPS_INCOMING_VALUES0};
use crate::filter_context::{ContextRef, FilterContext};
use crate::filter_view::{ClassifyOut, FilterView};
use crate::log::Level;
use crate::per_cpu_counters::Counter;
use core::ffi::c_void;
use core::sync::atomic::Ordering;
use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr, Verdict};

/// The verdict a policy reached, before it is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let the connection through.
    Permit,
    /// Refuse it.
    Block,
}

/// The classifyFn we register (`FWPS_CALLOUT_CLASSIFY_FN2`).
///
/// # Safety
/// Called by the filter engine with every pointer NULL or valid for the
/// call, at IRQL <= DISPATCH_LEVEL.
#[allow(unsafe_code)]
pub unsafe extern "system" fn classify_fn(
    _in_fixed_values: *const FWPS_INCOMING_VALUES0,
    _in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    _layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER2,
    _flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine passes NULL or its classify output, ours alone for
    // the duration of the call.
    let Some(mut out) = (unsafe { ClassifyOut::from_raw(classify_out) }) else {
        STATE.stats.classify_bad_arguments.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if !out.can_write() {
        // Someone with higher priority decided; we may not write anything.
        return;
    }
    // SAFETY: the engine passes NULL or the matched filter, valid for the call.
    let Some(view) = (unsafe { FilterView::from_raw(filter) }) else {
        STATE.stats.classify_bad_arguments.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let clear_right = view.clears_action_right();
    if STATE.classify_needs_lookup() {
        match STATE.table.get(view.id()) {
            Some(context) => write(decide(&context), clear_right, &mut out),
            None => classify_without_context(clear_right, &mut out),
        }
        return;
    }
    // SAFETY: not in lookup mode, every live filter naming our callouts was
    // added through our notifyFn, which stored this pointer while the table
    // holds the filter's reference until DELETE. The engine does not call
    // classify for a filter once its DELETE notify has returned.
    match unsafe { ContextRef::borrow(view.raw_context()) } {
        Some(context) => write(decide(context), clear_right, &mut out),
        None => classify_without_context(clear_right, &mut out),
    }
}

fn classify_without_context(clear_right: bool, out: &mut ClassifyOut<'_>) {
    STATE.stats.classify_without_context.fetch_add(1, Ordering::Relaxed);
    let decision = match PolicyRepr::DEFAULT.action {
        PolicyAction::Block => Decision::Block,
        _ => Decision::Permit,
    };
    write(decision, clear_right, out);
}

fn write(decision: Decision, clear_right: bool, out: &mut ClassifyOut<'_>) {
    match decision {
        Decision::Permit => out.permit(clear_right),
        Decision::Block => out.block(),
    }
}

/// Applies a context's policy and counts it. Pure apart from the counters,
/// the rate limiter and the clock: no allocation, no lock, no lookup.
#[inline]
pub fn decide(context: &FilterContext) -> Decision {
    context.count(Counter::Matched);
    let policy = context.policy();
    let decision = match policy.action {
        PolicyAction::Permit => Decision::Permit,
        PolicyAction::Block => Decision::Block,
        PolicyAction::Audit => {
            context.count(Counter::Audited);
            crate::log!(Level::Info, "audit: filter {} ({}) permitted", context.filter_id(), policy.label);
            Decision::Permit
        }
        PolicyAction::RateLimit { .. } => {
            if context.rate_limiter().try_acquire(crate::clock::now_ticks()) {
                Decision::Permit
            } else {
                context.count(Counter::RateLimited);
                Decision::Block
            }
        }
        PolicyAction::Ask { default_verdict, .. } => {
            // Until an agent answers asynchronously, ask resolves at once to
            // the filter's default verdict and is counted as defaulted.
            context.count(Counter::Defaulted);
            match default_verdict {
                Verdict::Permit => Decision::Permit,
                Verdict::Block => Decision::Block,
            }
        }
    };
    context.count(match decision {
        Decision::Permit => Counter::Permitted,
        Decision::Block => Counter::Blocked,
    });
    if policy.log_level >= LogLevel::Trace {
        crate::log!(Level::Trace, "filter {} ({}): {:?}", context.filter_id(), policy.label, decision);
    }
    decision
}
