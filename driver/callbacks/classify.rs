//! classifyFn: apply the filter's policy at up to DISPATCH_LEVEL.
//!
//! Fast path: the context comes from the checked handle in
//! `filter->context` (written by our ADD notify): an index into the
//! driver's slots, used only if it is in bounds and the slot's generation
//! matches (`context_slots.rs`); no allocation, no lock, no hash lookup.
//! For a static permit, block or unlogged audit the word itself carries
//! the verdict (`fast_path.rs`). Only while filters exist that we did not
//! see added (adoption in progress, or adopted filters alive) does classify
//! look the filter id up in the table. A filter found nowhere gets the
//! default policy; a word that names no live slot is counted nowhere and
//! answered from its own bits (a static word's verdict, else the default
//! policy).
//!
//! No `unsafe` here: the borrow of the context a word names goes through
//! types of `wfp::filter_view` that carry its contract. The entry point
//! passes the matched filter as a `ClassifiedFilter` (its word unchanged
//! during the call) and the driver's promise about its words,
//! `ContextWords`; entering the rundown through `ContextWords::enter` gives,
//! only outside lookup mode (which that entry reads), the guard
//! (`OwnWordGuard`) that is the evidence this filter's word is ours and
//! whose `context()` is the checked borrow, valid while it is held: unload
//! frees nothing before the rundown drains, and a DELETE delivered
//! meanwhile leaves the context to its slot until the classify has left.
#![forbid(unsafe_code)]

use crate::callbacks::ask::{AskDecision, classify_ask};
use crate::callbacks::state::STATE;
use crate::filters::fast_path::ContextWord;
use crate::filters::filter_context::{FilterContext, FilterContextData};
use crate::filters::filter_counters::Counter;
use crate::filters::policy::{Decision, decide_now};
use crate::platform::kernel::current_processor_low_byte;
use crate::wfp::callout_table::is_flow_layer;
use crate::wfp::filter_view::{
    ClassifiedFilter, ClassifyOut, ContextWords, FilterView, IncomingValues, LayerData, Metadata, OwnWordGuard,
    Unwritable,
};
use core::sync::atomic::Ordering;
use wfpcallout_wire::{PolicyAction, PolicyRepr};

/// How a classification is answered. At ALE_FLOW_ESTABLISHED "a filter
/// should not return Block or Permit" (ALE Layers; FWPS_ACTION0), so there
/// the policy only decides whether the flow is tracked and classify
/// answers CONTINUE; everywhere else it writes the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Write the verdict; a PERMIT clears the write right if the filter
    /// says so (a hard permit).
    Verdict {
        /// `FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT` on the filter.
        clear_right: bool,
    },
    /// Write CONTINUE, whatever the policy decided.
    Continue,
}

/// classifyFn's logic (the engine calls `trampolines::classify_fn`, which
/// builds the views and passes `words`: the driver's promise that outside
/// lookup mode the filter's context word is the one our ADD stored).
///
/// The hot path (a permit or block filter we added, at a plain layer, see
/// [`FastPath`]) is here and takes no lock, makes no allocation and no
/// hash lookup: the verdict comes from the low bits of `filter->context`,
/// the context its checked handle names is touched only to count (one
/// interlocked add at a fixed offset in it), and the processor index is
/// read once, for the rundown.
/// Everything else is in `classify_full`, which alone reads the values,
/// the metadata and the packet (passed one by one, in registers, each in
/// the register the engine passed it in: `words`, a constant address, where
/// the unused classify context was, the filter where it was, the output
/// next).
#[inline(always)]
pub fn classify(
    out: Result<ClassifyOut<'_>, Unwritable>,
    view: Option<ClassifiedFilter<'_>>,
    words: &ContextWords<'_, FilterContextData>,
    values: Option<IncomingValues<'_>>,
    metadata: Option<Metadata<'_>>,
    layer_data: Option<LayerData<'_>>,
) {
    let out = match out {
        Ok(out) => out,
        Err(Unwritable::Null) => {
            STATE.stats.classify_bad_arguments.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Someone with higher priority decided; we may not write anything.
        Err(Unwritable::NoWriteRight) => return,
    };
    let Some(view) = view else {
        STATE.stats.classify_bad_arguments.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // Outside lookup mode every live filter naming our callouts was added
    // through our notifyFn, so its context word is the one we stored: the
    // rundown's fast entry tells both (unload, lookup mode) in one add.
    let word = ContextWord::from_raw(view.raw_context());
    if word.is_static() {
        if let Some(inside) = words.enter(&view, current_processor_low_byte()) {
            return classify_static(inside, word, view, out);
        }
        return static_refused(values, metadata, layer_data, words, view, out);
    }
    classify_full(values, metadata, layer_data, words, view, out)
}

/// A static word whose fast entry was refused: in lookup mode the word may
/// not be ours, so the full path looks the filter up; else (unload) the
/// verdict still comes from the word. Out of line (a tail call, its
/// arguments where the engine passed them), off the hot path.
#[cold]
#[inline(never)]
fn static_refused(
    values: Option<IncomingValues<'_>>,
    metadata: Option<Metadata<'_>>,
    layer_data: Option<LayerData<'_>>,
    words: &ContextWords<'_, FilterContextData>,
    view: ClassifiedFilter<'_>,
    out: ClassifyOut<'_>,
) {
    if words.lookup_mode() {
        return classify_full(values, metadata, layer_data, words, view, out);
    }
    // Lookup mode off now: this live filter's word is ours, and its bits
    // its own verdict.
    static_without_context(view, out)
}

/// The hot path's second half: write the static verdict the context word
/// carries, with the filter's hard-permit flag from the same word (so only
/// the word and the output live across the processor lookup), and count
/// it on the context the word's handle names. Inlined into [`classify`].
///
/// The verdict needs no context: it is the filter's own policy, fixed at
/// ADD. So a word whose handle no longer names a live slot (its filter's
/// DELETE delivered while this classification runs, CONFORMANCE N7), or a
/// classify during unload, still answers with the filter's verdict, a
/// block filter blocking to the end; it is only not counted on the filter
/// (the context is gone or going) but in `classify_without_context`.
#[inline(always)]
fn classify_static(
    inside: OwnWordGuard<'_, FilterContextData>,
    word: ContextWord,
    view: ClassifiedFilter<'_>,
    out: ClassifyOut<'_>,
) {
    // The handle in the word is checked against the slots (a garbage or
    // stale word names no live slot: counted nowhere); unload waits for
    // callbacks inside the rundown before freeing contexts.
    let Some(context) = inside.tagged_context() else {
        drop(inside);
        return static_without_context(view, out);
    };
    if word.is_plain_permit() {
        // The common case first, one test: neither BLOCK, audit nor a hard
        // permit.
        context.count(Counter::Permitted);
        out.permit(false);
    } else if word.is_block() {
        context.count(Counter::Blocked);
        out.block();
    } else {
        if word.is_audit() {
            context.count(Counter::Audited);
        }
        context.count(Counter::Permitted);
        out.permit(word.clears_right());
    }
    drop(inside);
}

/// A static word's verdict for a classification that could not use the
/// context (unload, or a handle no longer live): out of line, off the hot
/// path.
#[cold]
#[inline(never)]
fn static_without_context(view: ClassifiedFilter<'_>, out: ClassifyOut<'_>) {
    count_without_context();
    // The word the hot path read: a matched filter's `context` does not
    // change during the call (`ClassifiedFilter`). Read again here rather
    // than passed, so that the hot path keeps the word in whichever
    // register it likes.
    write_static(ContextWord::from_raw(view.raw_context()), out);
}

/// The static verdict the word carries: BLOCK, or PERMIT keeping the write
/// right unless the filter is a hard permit.
#[inline(always)]
fn write_static(word: ContextWord, out: ClassifyOut<'_>) {
    if word.is_block() {
        out.block();
    } else {
        out.permit(word.clears_right());
    }
}

/// A classification answered without its filter's context (not counted on
/// any filter).
#[inline(always)]
fn count_without_context() {
    STATE.stats.classify_without_context.fetch_add(1, Ordering::Relaxed);
}

/// Everything the hot path does not decide: lookup mode, and every policy
/// that needs the traffic, the clock or the log.
#[inline(never)]
fn classify_full(
    values: Option<IncomingValues<'_>>,
    metadata: Option<Metadata<'_>>,
    layer_data: Option<LayerData<'_>>,
    words: &ContextWords<'_, FilterContextData>,
    view: ClassifiedFilter<'_>,
    out: ClassifyOut<'_>,
) {
    let answer = if values.as_ref().is_some_and(|v| is_flow_layer(v.layer_id())) {
        Answer::Continue
    } else {
        Answer::Verdict { clear_right: view.clears_action_right() }
    };
    let processor = current_processor_low_byte();
    let traffic = Traffic { values: values.as_ref(), metadata: metadata.as_ref(), layer_data: layer_data.as_ref() };
    let Some(inside) = words.enter(&view, processor) else {
        if !words.lookup_mode() {
            // Unload closed the rundown.
            return classify_without_context(answer, out);
        }
        // Lookup mode: the word may not be ours, so the filter id is looked
        // up in the table (a counted reference, taken under its lock).
        // Unload waits for callbacks inside the rundown before freeing
        // contexts.
        let Some(_inside) = STATE.rundown.enter_on(processor) else {
            return classify_without_context(answer, out);
        };
        match STATE.table.get(view.id()) {
            Some(context) => classify_with_context(&context, &view, &traffic, answer, out),
            None => classify_without_context(answer, out),
        }
        return;
    };
    // The handle in the word is checked against the slots.
    match inside.context() {
        Some(context) => classify_with_context(context, &view, &traffic, answer, out),
        None => classify_without_context(answer, out),
    }
}

fn classify_with_context(
    context: &FilterContext,
    view: &FilterView<'_>,
    traffic: &Traffic<'_>,
    answer: Answer,
    out: ClassifyOut<'_>,
) {
    // A packet we injected after an agent permitted its connection
    // (recv-accept: the first packet; connect: the first datagram, sent
    // before the connection's reauthorization) passes our ask filters, one
    // of which pended it. Every other filter of ours judges it by its
    // policy, as it judges the connection: a block of ours in another
    // sublayer blocks both (README, "Our own injected packets").
    if let PolicyAction::Ask { .. } = context.policy().action
        && traffic.layer_data.is_some_and(crate::wfp::injection::is_our_injection)
    {
        out.permit(view.clears_action_right());
        return;
    }
    let decision = decide(context, traffic);
    // At ALE_FLOW_ESTABLISHED, connections our permit and audit policies let
    // through are tracked with a flow context (the answer is CONTINUE).
    // (Not while unloading: unload removes flow contexts and must not see
    // new ones.)
    if let (Decision::Permit, Some(values), Answer::Continue) = (decision, traffic.values, answer)
        && matches!(context.policy().action, PolicyAction::Permit | PolicyAction::Audit)
        && STATE.loaded.load(Ordering::Acquire)
    {
        STATE.flows.track(context, view.callout_id(), values, traffic.metadata);
    }
    write(decision, answer, out);
}

/// What the engine told classify about the traffic (the ask policy needs it).
pub struct Traffic<'a> {
    /// The incoming values.
    pub values: Option<&'a IncomingValues<'a>>,
    /// The metadata.
    pub metadata: Option<&'a Metadata<'a>>,
    /// `layerData`, the engine's packet for the call: at recv-accept always
    /// one (the first packet; at a reauthorization the packet that
    /// triggered it, which may be outbound); at connect a UDP connection's
    /// first datagram at the initial authorization, none at the completion's
    /// reauthorization, and at any other reauthorization (policy change,
    /// new interface, opposite direction) the triggering packet, inbound or
    /// outbound, or none. A reauthorization only asks whether it is one of
    /// our injections; its verdict comes from the one kept.
    pub layer_data: Option<&'a LayerData<'a>>,
}

/// Decides any policy, ask included (which needs the traffic), and counts
/// it.
fn decide(context: &FilterContext, traffic: &Traffic<'_>) -> Decision {
    let terms = match decide_now(context) {
        Ok(decision) => return decision,
        Err(terms) => terms,
    };
    let decision = match classify_ask(context, traffic.values, traffic.metadata, terms, traffic.layer_data, |handle| {
        handle.pend()
    }) {
        AskDecision::Now(verdict) => Decision::from(verdict),
        AskDecision::Pended => return Decision::Pended,
    };
    context.count_verdict(decision);
    decision
}

#[cold]
#[inline(never)]
fn classify_without_context(answer: Answer, out: ClassifyOut<'_>) {
    count_without_context();
    let decision = match PolicyRepr::DEFAULT.action {
        PolicyAction::Block => Decision::Block,
        _ => Decision::Permit,
    };
    write(decision, answer, out);
}

#[inline(always)]
fn write(decision: Decision, answer: Answer, out: ClassifyOut<'_>) {
    match (answer, decision) {
        (Answer::Continue, _) => out.continue_(),
        (Answer::Verdict { clear_right }, Decision::Permit) => out.permit(clear_right),
        (Answer::Verdict { .. }, Decision::Block) => out.block(),
        (Answer::Verdict { .. }, Decision::Pended) => out.block_absorb(),
    }
}
