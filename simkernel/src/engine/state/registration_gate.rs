//! Makes callout registration and unregistration atomic with respect to
//! every engine operation that calls into a callout or depends on whether
//! it is registered (filter add with notifyFn ADD, filter delete with
//! notifyFn DELETE, other notifications).
//!
//! Why: Windows sends ADD for exactly the filters added after a callout
//! registers and none for those that existed before ("Processing Notify
//! Callouts"; FwpsCalloutRegister: filters that already exist get no
//! ADD and must be enumerated). So an add is ordered entirely before or
//! entirely after a registration; an add that checked "not registered"
//! and published after the registration (and after the driver's snapshot
//! of existing filters) would be a filter the driver can never know.
//!
//! The gate is a reader/writer lock: the operations above hold it shared
//! (they still run concurrently with each other), register and unregister
//! hold it exclusively. Shared holds are re-entrant per thread (notifyFn
//! may complete work that reaches the engine again); a waiting writer
//! stops new readers from other threads so unload is not starved by
//! traffic. A thread that holds it shared and asks for it exclusively
//! (unregistering from inside notifyFn) would deadlock on Windows; here it
//! is reported.

use crate::sync_points::BlockedWait;
use std::cell::Cell;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

#[derive(Default)]
struct GateState {
    shared: usize,
    exclusive: Option<ThreadId>,
    writers_waiting: usize,
}

static GATE: Mutex<GateState> = Mutex::new(GateState { shared: 0, exclusive: None, writers_waiting: 0 });
static CHANGED: Condvar = Condvar::new();

thread_local! {
    /// Shared holds of the calling thread.
    static HELD_SHARED: Cell<usize> = const { Cell::new(0) };
}

fn state() -> MutexGuard<'static, GateState> {
    GATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait(guard: MutexGuard<'static, GateState>) -> MutexGuard<'static, GateState> {
    CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner())
}

/// A shared hold: registration cannot change while it lives.
pub(crate) struct SharedHold(());

/// Holds the gate shared (re-entrant on this thread).
pub(crate) fn shared() -> SharedHold {
    let me = std::thread::current().id();
    let mut gate = state();
    let reentrant = HELD_SHARED.with(Cell::get) > 0 || gate.exclusive == Some(me);
    if !reentrant && (gate.exclusive.is_some() || gate.writers_waiting > 0) {
        let _blocked = BlockedWait::begin();
        while gate.exclusive.is_some() || gate.writers_waiting > 0 {
            gate = wait(gate);
        }
    }
    gate.shared += 1;
    HELD_SHARED.with(|h| h.set(h.get() + 1));
    SharedHold(())
}

impl Drop for SharedHold {
    fn drop(&mut self) {
        let mut gate = state();
        gate.shared = gate.shared.saturating_sub(1);
        HELD_SHARED.with(|h| h.set(h.get().saturating_sub(1)));
        drop(gate);
        CHANGED.notify_all();
    }
}

/// An exclusive hold: no shared operation is in progress while it lives.
pub(crate) struct ExclusiveHold(());

/// Holds the gate exclusively; `None` if this thread holds it shared (the
/// caller reports the misuse and fails the call).
pub(crate) fn exclusive() -> Option<ExclusiveHold> {
    if HELD_SHARED.with(Cell::get) > 0 {
        return None;
    }
    let me = std::thread::current().id();
    let mut gate = state();
    if gate.shared > 0 || gate.exclusive.is_some() {
        let _blocked = BlockedWait::begin();
        gate.writers_waiting += 1;
        while gate.shared > 0 || gate.exclusive.is_some() {
            gate = wait(gate);
        }
        gate.writers_waiting -= 1;
    }
    gate.exclusive = Some(me);
    Some(ExclusiveHold(()))
}

impl Drop for ExclusiveHold {
    fn drop(&mut self) {
        state().exclusive = None;
        CHANGED.notify_all();
    }
}

pub(crate) fn reset() {
    *state() = GateState::default();
    HELD_SHARED.with(|h| h.set(0));
    CHANGED.notify_all();
}
