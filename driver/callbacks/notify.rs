//! notifyFn: attach a context on ADD, release it on DELETE.
//!
//! ADD builds the context from the filter's policy blob (or the default
//! policy), registers it in the table and stores it in `filter->context`.
//! A failure vetoes the filter, so the client's `FwpmFilterAdd0` fails with
//! our status. DELETE finds the context by filter id in the table, never
//! through `filter->context`, so a filter we never saw is harmless. DELETE
//! never waits: the released slot keeps the context until no classify can
//! still hold it (`HandleSlots::reclaim`), which, with none in flight, is
//! at once.
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;
use crate::filters::fast_path::ContextWord;
use crate::filters::filter_context::{ContextRef, Origin};
use crate::platform::log::Level;
use crate::platform::rundown::RundownGuard;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::ffi::{
    FWPS_CALLOUT_NOTIFY_ADD_FILTER, FWPS_CALLOUT_NOTIFY_DELETE_FILTER, FWPS_CALLOUT_NOTIFY_TYPE, NTSTATUS,
};
use crate::wfp::filter_view::{FilterView, NotifiedFilter, ProviderBlob};
use core::sync::atomic::Ordering;
use wfpcallout_wire::{POLICY_MAX_LEN, PolicyAction, PolicyRepr, WireError};

/// notifyFn's logic (the engine calls `trampolines::notify_fn`, which
/// builds the view): ADD attaches a context and stores its word in
/// `filter->context`, DELETE releases it; other types are ignored.
pub fn notify(notify_type: FWPS_CALLOUT_NOTIFY_TYPE, filter: Option<NotifiedFilter<'_>>) -> NTSTATUS {
    // Unload waits for callbacks inside the rundown; once it has closed it,
    // an ADD is refused and anything else has nothing left to touch.
    let Some(inside) = STATE.rundown.enter() else {
        return if notify_type == FWPS_CALLOUT_NOTIFY_ADD_FILTER {
            NtStatus::INVALID_DEVICE_STATE.raw()
        } else {
            NtStatus::SUCCESS.raw()
        };
    };
    let filter_id = filter.as_ref().map(|filter| filter.view().id());
    let result = match (notify_type, filter) {
        (FWPS_CALLOUT_NOTIFY_ADD_FILTER, Some(filter)) => {
            let word = on_add(&filter.view(), &inside);
            // The engine's filter is writable during its ADD notify.
            word.map(|word| filter.set_context(word))
        }
        (FWPS_CALLOUT_NOTIFY_DELETE_FILTER, Some(filter)) => {
            on_delete(filter.view().id(), &inside);
            Ok(())
        }
        (FWPS_CALLOUT_NOTIFY_ADD_FILTER | FWPS_CALLOUT_NOTIFY_DELETE_FILTER, None) => Err(NtStatus::INVALID_PARAMETER),
        (other, _) => {
            // Unknown types (and POST_COMMIT, which we do not ask for) are
            // ignored with success, as the WFP documentation requires.
            STATE.stats.notify_unknown_type.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Trace, "ignoring notify type {}", other);
            Ok(())
        }
    };
    crate::platform::etw::filter_vetoed_if(notify_type == FWPS_CALLOUT_NOTIFY_ADD_FILTER, filter_id, &result);
    NtStatus::from_result(result)
}

/// Decodes a policy from a filter's provider context. The blob is copied
/// into a kernel-owned buffer before it is parsed.
pub fn policy_from_blob(blob: &ProviderBlob<'_>) -> core::result::Result<PolicyRepr, WireError> {
    match blob {
        ProviderBlob::Absent => Ok(PolicyRepr::DEFAULT),
        ProviderBlob::WrongType(_) => Err(WireError::BadMagic),
        ProviderBlob::General(bytes) => {
            // A blob longer than any policy does not fit the buffer.
            let mut copy = [0u8; POLICY_MAX_LEN];
            let copy = copy.get_mut(..bytes.len()).ok_or(WireError::LengthMismatch)?;
            copy.copy_from_slice(bytes);
            PolicyRepr::parse(copy)
        }
    }
}

/// ADD: returns the context word to store in `filter->context`.
fn on_add(view: &FilterView<'_>, inside: &RundownGuard<'_>) -> Result<u64> {
    let filter_id = view.id();
    let policy = match policy_from_blob(&view.provider_blob()) {
        Ok(policy) => policy,
        Err(error) => {
            STATE.stats.policies_rejected.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Warning, "filter {} vetoed: bad policy blob: {}", filter_id, error);
            return Err(NtStatus::BAD_DATA);
        }
    };
    let layer_id = STATE.layer_of_callout(view.callout_id()).unwrap_or(0);
    if crate::wfp::callout_table::is_flow_layer(layer_id) {
        check_flow_filter(view, &policy)?;
    }
    let context = ContextRef::try_new(filter_id, layer_id, Origin::Notified, policy).inspect_err(|_| {
        STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
        crate::log!(Level::Error, "filter {} vetoed: no pool for its context", filter_id);
    })?;
    // The filter's own reference lives in the table; filter->context is a
    // checked handle to the slot that borrows it until DELETE releases the
    // slot, with the fast path in its low bits.
    let tag = ContextWord::tag(context.fast_path(), view.clears_action_right());
    let handle = match STATE.table.insert_with_slot(filter_id, context, tag) {
        Ok(handle) => handle,
        Err((status, context)) => {
            // A slot claimed and released again keeps a reference until
            // reclaimed (its handle was never given out: at once).
            drop(context);
            STATE.table.reclaim(&STATE.rundown, inside);
            if status == NtStatus::INSUFFICIENT_RESOURCES {
                STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
            }
            crate::log!(Level::Error, "filter {} vetoed: table insert failed: {}", filter_id, status);
            return Err(status);
        }
    };
    let word = ContextWord::of_claim(handle).raw();
    STATE.stats.filters_added.fetch_add(1, Ordering::Relaxed);
    crate::log!(Level::Trace, "filter {} added: {:?}", filter_id, policy.action);
    Ok(word)
}

/// At ALE_FLOW_ESTABLISHED a filter must not return PERMIT or BLOCK ("ALE
/// Layers"), so our classify answers CONTINUE there and the policy only
/// decides what is tracked. A TERMINATING action would turn every CONTINUE
/// into a BLOCK (FWPM_ACTION0: such a callout "always returns block or
/// permit"), and a block, rate-limit or ask policy could not be carried
/// out: both are refused with `STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER`,
/// so the client's `FwpmFilterAdd0` says why.
fn check_flow_filter(view: &FilterView<'_>, policy: &PolicyRepr) -> Result {
    let filter_id = view.id();
    if view.action_type() == fwps_types::fwp::FWP_ACTION_CALLOUT_TERMINATING {
        STATE.stats.policies_rejected.fetch_add(1, Ordering::Relaxed);
        crate::log!(
            Level::Warning,
            "filter {} vetoed: ALE_FLOW_ESTABLISHED needs an INSPECTION or UNKNOWN callout action, not TERMINATING",
            filter_id
        );
        return Err(NtStatus::ACTION_INCOMPATIBLE_WITH_LAYER);
    }
    if !matches!(policy.action, PolicyAction::Permit | PolicyAction::Audit) {
        STATE.stats.policies_rejected.fetch_add(1, Ordering::Relaxed);
        crate::log!(
            Level::Warning,
            "filter {} vetoed: ALE_FLOW_ESTABLISHED only tracks flows (permit or audit), it cannot {:?}",
            filter_id,
            policy.action
        );
        return Err(NtStatus::ACTION_INCOMPATIBLE_WITH_LAYER);
    }
    Ok(())
}

/// DELETE: releases the filter's slot (its context word stops matching)
/// and drops the table's reference, then reclaims: the slot's own
/// reference goes once every rundown line has been seen idle since the
/// release, at once when no classify is in flight (else at a later DELETE
/// or timer tick), so a classify of this filter still running (whether the
/// engine allows one after DELETE is undocumented) never sees it freed.
/// The context is freed with the last reference (a pended request or a
/// flow may still hold one). Never waits (<= DISPATCH_LEVEL).
fn on_delete(filter_id: u64, inside: &RundownGuard<'_>) {
    // Requests pended through this filter get its default verdict at the
    // next timer tick (not from inside notifyFn); the verdicts kept for
    // reauthorizations that can no longer reach it go.
    // (Skipped when nothing is pending: the scans would cost every DELETE.)
    if STATE.pending.live() != 0 {
        STATE.pending.finish_later_for_filter(filter_id);
        STATE.pending.discard_answered(|info, _| info.filter_id == filter_id);
    }
    match STATE.table.remove(filter_id) {
        Some(context) => {
            if context.origin() == Origin::Adopted {
                STATE.adopted_removed();
            }
            STATE.stats.filters_deleted.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Trace, "filter {} deleted", filter_id);
            drop(context);
            STATE.table.reclaim(&STATE.rundown, inside);
        }
        None => {
            STATE.stats.deletes_unknown.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Trace, "DELETE for unknown filter {} ignored", filter_id);
        }
    }
}
