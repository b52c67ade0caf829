//! Late registration: filters that name our callouts may exist before we
//! register (persistent filters after a reboot, which our persistent
//! provider, sublayer and callouts let exist; a driver restart). The engine sends no ADD
//! for them but will send DELETE, and their `context` holds whatever was
//! there before (for a restart, a pointer into freed pool). We enumerate
//! them and build their contexts in the table; classify finds them there.
#![forbid(unsafe_code)]

use crate::callbacks::notify::policy_from_blob;
use crate::callbacks::state::{Adopting, STATE};
use crate::filters::filter_context::{ContextRef, Origin};
use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::{CALLOUTS, CalloutSpec};
use crate::wfp::filter_view::FilterEntry;
use crate::wfp::management::{self, EngineHandle};
use core::sync::atomic::Ordering;
use wfpcallout_wire::PolicyRepr;

/// Adoption starts: until it has finished, classify cannot know which
/// filters' `context` is ours and must use the table. Called before the
/// callouts are registered: registering asks for the proof returned, and
/// only [`adopt_existing_filters`], given it, ends lookup for adoption.
pub fn begin() -> Adopting {
    STATE.begin_adoption()
}

/// Adopts every filter naming one of our callouts. Runs inside a
/// transaction so the snapshot is consistent and a concurrent delete waits
/// until our context is in the table (its DELETE then finds it).
/// Returns how many filters were adopted, and then ends adoption's lookup
/// mode (`adopting`, from [`begin`]); or the first failure: then some
/// filter may be unknown to us, and classify keeps using the table.
pub fn adopt_existing_filters(engine: &EngineHandle, adopting: Adopting) -> Result<usize> {
    management::begin_transaction(engine)?;
    let mut adopted = 0;
    let mut outcome = Ok(());
    for spec in CALLOUTS.iter() {
        match adopt_for_callout(engine, spec) {
            Ok(count) => adopted += count,
            Err(status) => outcome = outcome.and(Err(status)),
        }
    }
    // Nothing was written: abort is the cheapest way to end the transaction.
    // If abort fails, commit (of nothing) ends it instead: a transaction left
    // open would hold up every other management client.
    if let Err(status) = management::abort_transaction(engine) {
        crate::log!(Level::Warning, "FwpmTransactionAbort0 failed ({}): committing the empty transaction", status);
        if let Err(status) = management::commit_transaction(engine) {
            crate::log!(Level::Error, "ending the adoption transaction failed: {}", status);
        }
    }
    outcome?;
    STATE.end_adoption(adopting);
    Ok(adopted)
}

fn adopt_for_callout(engine: &EngineHandle, spec: &'static CalloutSpec) -> Result<usize> {
    management::for_each_filter_of(engine, spec, |filter| adopt_one(engine, filter, spec.layer_id))
}

/// The policy of an adopted filter: from its provider context if it has
/// one. A malformed policy cannot be vetoed any more: the filter gets the
/// default policy and the event is counted and logged.
fn adopted_policy(engine: &EngineHandle, filter: &FilterEntry<'_>) -> PolicyRepr {
    match management::read_provider_context(engine, filter, policy_from_blob) {
        Ok(None) => PolicyRepr::DEFAULT,
        Ok(Some(Ok(policy))) => policy,
        Ok(Some(Err(_))) | Err(_) => {
            STATE.stats.adopted_policies_rejected.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Warning, "adopted filter {}: unusable policy, default applied", filter.id());
            PolicyRepr::DEFAULT
        }
    }
}

/// Builds and inserts one adopted context: `Ok(false)` if notifyFn already
/// gave it one, an error if the filter stays unknown to us.
fn adopt_one(engine: &EngineHandle, filter: &FilterEntry<'_>, layer_id: u16) -> Result<bool> {
    let filter_id = filter.id();
    if STATE.table.get(filter_id).is_some() {
        // Added through notifyFn while we were enumerating.
        return Ok(false);
    }
    let policy = adopted_policy(engine, filter);
    let context = match ContextRef::try_new(filter_id, layer_id, Origin::Adopted, policy) {
        Ok(context) => context,
        Err(status) => {
            STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
            crate::log!(Level::Error, "adopted filter {}: no pool, default policy applies", filter_id);
            return Err(status);
        }
    };
    match STATE.table.insert(filter_id, context) {
        Ok(()) => {
            STATE.adopted_added();
            STATE.stats.filters_adopted.fetch_add(1, Ordering::Relaxed);
            Ok(true)
        }
        Err((NtStatus::ALREADY_EXISTS, _context)) => Ok(false),
        Err((status, _context)) => {
            if status == NtStatus::INSUFFICIENT_RESOURCES {
                STATE.stats.allocation_failures.fetch_add(1, Ordering::Relaxed);
            }
            crate::log!(Level::Warning, "adopted filter {}: not inserted: {}", filter_id, status);
            Err(status)
        }
    }
}
