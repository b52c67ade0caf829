//! Load and unload: the portable part of DriverEntry and EvtDriverUnload.
//! The KMDF glue (or the simulated kernel's loader) creates the device
//! object and calls these at PASSIVE_LEVEL.
#![forbid(unsafe_code)]

use crate::callbacks::adoption;
use crate::callbacks::registration;
use crate::callbacks::state::STATE;
use crate::platform::log::Level;
use crate::platform::rundown::Drained;
use crate::platform::status::{NtStatus, Result};
use crate::verdicts::pending::EndReason;
use crate::wfp::callout_table::CALLOUT_COUNT;
use crate::wfp::ffi::DeviceObject;
use crate::wfp::management;
use core::sync::atomic::Ordering;

/// Registers the callouts, adds the management objects and adopts filters
/// that already name our callouts. On failure everything done so far is
/// undone and the status is returned (the driver then fails to load).
/// The ETW provider registers first, so the load's own failures are
/// events, and is gone again when a load fails.
pub fn initialize(device_object: DeviceObject) -> Result {
    if STATE.loaded.load(Ordering::Acquire) {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    crate::platform::etw::register();
    match start(device_object) {
        Ok(adopted) => {
            let adopted = u32::try_from(adopted).unwrap_or(u32::MAX);
            crate::platform::etw::loaded(CALLOUT_COUNT as u32, adopted);
            Ok(())
        }
        Err((what, status)) => {
            crate::platform::etw::error(what, status);
            crate::platform::etw::unregister();
            Err(status)
        }
    }
}

/// [`initialize`] once the provider is registered: the filters adopted, or
/// what failed and its status (everything undone).
fn start(device_object: DeviceObject) -> core::result::Result<usize, (&'static str, NtStatus)> {
    STATE.reset_stats();
    STATE.rundown.reopen();
    STATE.pending.open().map_err(|status| ("the pending-request table", status))?;
    if let Err(status) = crate::wfp::injection::open() {
        release_contexts(&STATE.rundown.close_and_wait());
        return Err(("the injection handles", status));
    }
    // Until adoption has finished, classify cannot know which filters'
    // `context` is ours: it must use the table (set before registering,
    // which asks for the proof; adoption alone ends it).
    let adopting = adoption::begin();

    if let Err(status) = registration::register_all(device_object, &adopting) {
        unregister_callouts();
        release_contexts(&STATE.rundown.close_and_wait());
        return Err(("FwpsCalloutRegister2", status));
    }
    let engine = match management::open_engine() {
        Ok(engine) => engine,
        Err(status) => {
            unregister_callouts();
            release_contexts(&STATE.rundown.close_and_wait());
            return Err(("FwpmEngineOpen0", status));
        }
    };
    if let Err(status) = management::add_objects(&engine) {
        unregister_callouts();
        management::close_engine(engine);
        release_contexts(&STATE.rundown.close_and_wait());
        return Err(("adding the provider, sublayer and callouts", status));
    }
    let adoption = adoption::adopt_existing_filters(&engine, adopting);
    // Kept until unload, which deletes the objects and closes it.
    // A session kept already is closed, not leaked.
    if let Some(old) = STATE.engine.replace(engine) {
        management::close_engine(old);
    }
    let adopted = match adoption {
        Ok(adopted) => {
            crate::log!(Level::Info, "loaded; adopted {} existing filters", adopted);
            adopted
        }
        Err(status) => {
            // Not fatal: classify keeps finding contexts through the table,
            // and unknown filters get the default policy.
            crate::log!(Level::Warning, "adoption incomplete ({}): classify stays on table lookups", status);
            crate::platform::etw::error("adopting existing filters (not fatal)", status);
            0
        }
    };
    STATE.loaded.store(true, Ordering::Release);
    Ok(adopted)
}

/// Unloads in the documented order: unregister the callouts (retrying on
/// `STATUS_DEVICE_BUSY` until done: an unload cannot fail), delete the management objects, close the session,
/// then free every context still held (DELETE notifications can be lost, so
/// nothing waits for them). Afterwards the driver owns no pool.
pub fn unload() {
    STATE.loaded.store(false, Ordering::Release);
    // Stop accepting new pends, then complete every pended operation with
    // its filter's default verdict (their reauthorizations still reach us).
    STATE.pending.stop_accepting();
    let finished = STATE.pending.finish_where(EndReason::Unload, |_, _| true);
    STATE.pending.discard_answered(|_, _| true);
    STATE.agents.reset();
    if finished != 0 {
        crate::log!(Level::Info, "unload: completed {} pending requests with their default verdict", finished);
    }
    // The packets those verdicts let through must meet our filters while
    // their callouts are still registered (else they are blocked).
    crate::wfp::injection::wait_for_delivery();
    // Flow contexts go next (a PENDING removal frees in flowDeleteFn), then
    // the callouts, which the engine refuses while flow contexts remain.
    unregister_callouts();
    // No new callback can start; wait for the ones already running (they
    // may hold borrowed contexts) before anything is freed: what frees
    // asks for the proof of that wait.
    let drained = STATE.rundown.close_and_wait();
    if let Some(engine) = STATE.engine.take() {
        management::delete_objects(&engine);
        management::close_engine(engine);
    }
    release_contexts(&drained);
    crate::log!(Level::Info, "unloaded");
    crate::platform::etw::unloaded(u32::try_from(finished).unwrap_or(u32::MAX));
    // Last: no callback, timer or IOCTL can write an event any more.
    crate::platform::etw::unregister();
}

/// Unregisters every callout, however long it takes ("Unloading a Callout
/// Driver": unload must not return while a callout is registered, or the
/// engine calls into an unloaded image; on `STATUS_DEVICE_BUSY` remove the
/// flow contexts and call again). An unload cannot fail, so there is no
/// bound: each round removes the flow contexts associated meanwhile (by
/// classifications that started before `loaded` was cleared) and waits
/// 10 ms at PASSIVE_LEVEL for flowDeleteFn calls still to come.
fn unregister_callouts() {
    let mut attempts: u32 = 0;
    loop {
        STATE.flows.remove_all();
        let Err(status) = registration::unregister_all() else { return };
        attempts = attempts.saturating_add(1);
        if attempts.is_power_of_two() {
            crate::log!(
                Level::Warning,
                "unload: callouts still registered ({}) after {} attempts: removing flow contexts and asking again",
                status,
                attempts
            );
        }
        crate::platform::kernel::sleep_100ns(registration::UNREGISTER_RETRY_INTERVAL);
    }
}

/// Drops every context the table still holds (no callout can reach them
/// once unregistered) and frees the table itself, with the contexts of
/// deleted filters still waiting for their grace period (the rundown has
/// drained: none can be in use). `drained` is the proof that the driver's
/// rundown was closed and the callbacks inside it waited for (unload's
/// own wait, or a failed initialize's), since classify may borrow a
/// context or read the slots only inside it (`wfp::filter_view`'s
/// `ContextWords`); the next initialize reopens it. A refusal (a proof
/// that does not hold: a bug) leaves the storage, and lookup mode, as
/// they are, and is logged: a leak, never a free under a classify.
fn release_contexts(drained: &Drained<'_>) {
    STATE.flows.release_all();
    crate::wfp::injection::close();
    while let Some(context) = STATE.table.pop_any() {
        drop(context);
    }
    if let Err(status) = STATE.table.release_storage(&STATE.rundown, drained) {
        crate::log!(Level::Error, "unload: context storage kept ({}): the rundown has not drained", status);
        crate::platform::etw::error("releasing the context storage", status);
    }
    STATE.pending.stop_accepting();
    STATE.pending.close();
    if let Err(status) = STATE.clear_lookup_mode(drained) {
        crate::log!(Level::Error, "unload: lookup mode kept ({})", status);
        crate::platform::etw::error("leaving lookup mode", status);
    }
}

/// Periodic work, from a timer the glue runs (every 100 ms on Windows):
/// times out pending requests whose deadline passed, and frees the
/// contexts of deleted filters whose grace period has passed since (no
/// classify still in flight that could hold them: a DELETE frees at once
/// when none is). Up to DISPATCH_LEVEL; never waits.
pub fn on_timer() {
    let expired = STATE.pending.expire(crate::platform::kernel::now_ticks());
    if expired != 0 {
        crate::log!(Level::Info, "{} pending requests timed out", expired);
    }
    // Inside the rundown, as reclaiming must be (unload frees the slots'
    // storage only once it has drained); closed: unload frees them all.
    if let Some(inside) = STATE.rundown.enter() {
        STATE.table.reclaim(&STATE.rundown, &inside);
    }
}
