//! Named points inside engine operations where a test stops a thread and
//! runs another operation there, so races are tested deterministically
//! instead of by luck.
//!
//! A test [`arm`]s a point; the next thread to reach it stops there until
//! the [`Pause`] is resumed (or dropped, so a failing test cannot hang).
//! While it is stopped the test starts the competing operation on another
//! thread and waits, with [`wait_blocked_or_finished`], until that thread
//! has either finished or is waiting for an engine lock: in a linearizable
//! engine the competing operation must wait for the stopped one, and in a
//! racy one it runs to completion in the gap. Either way the outcome is
//! decided by the interleaving the test chose, never by timing.
//!
//! Points are named `"<API>: <where>"`; `simkernel/CONFORMANCE.md` lists
//! them with the atomicity rule each one probes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// Inside `FwpmFilterAdd0`: the filter's callout has been looked up
/// (registered or not), before notifyFn ADD and before the filter is
/// published.
pub const FILTER_ADD_CALLOUT_LOOKED_UP: &str = "FwpmFilterAdd0: callout looked up";
/// Inside `FwpmFilterDeleteById0`: the filter is unpublished and its
/// callout looked up, before notifyFn DELETE.
pub const FILTER_DELETE_CALLOUT_LOOKED_UP: &str = "FwpmFilterDeleteById0: callout looked up";
/// Inside `FwpsFlowAssociateContext0`: the callout has been found
/// registered, before the context is attached to the flow.
pub const FLOW_ASSOCIATE_CALLOUT_CHECKED: &str = "FwpsFlowAssociateContext0: callout checked";
/// A flow's context has been detached (flow end, or a removal), before its
/// flowDeleteFn is called.
pub const FLOW_CONTEXT_DETACHED: &str = "flowDeleteFn: context detached";
/// Inside `FwpsPendOperation0`: the operation is pended, before the call
/// returns to the classifyFn that pends it (a race test runs unload, or
/// another classification, while a callout is between pending an
/// operation and recording it).
pub const PEND_OPERATION_PENDED: &str = "FwpsPendOperation0: operation pended";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Armed,
    Reached,
    Resumed,
}

struct Point {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Point {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_all();
    }
}

/// Armed points by name. `ARMED_COUNT` lets [`reached`] return without a
/// lock when nothing is armed (every engine operation passes through it).
static ARMED: Mutex<Option<HashMap<&'static str, Arc<Point>>>> = Mutex::new(None);
static ARMED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Threads waiting for an engine lock right now.
static BLOCKED: Mutex<Option<HashSet<ThreadId>>> = Mutex::new(None);

fn armed() -> MutexGuard<'static, Option<HashMap<&'static str, Arc<Point>>>> {
    ARMED.lock().unwrap_or_else(|e| e.into_inner())
}

fn blocked() -> MutexGuard<'static, Option<HashSet<ThreadId>>> {
    BLOCKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread stopped (or to be stopped) at a named point. Dropping it
/// resumes the thread and disarms the point.
pub struct Pause {
    name: &'static str,
    point: Arc<Point>,
}

/// Arms `name`: the next thread to reach it stops there.
pub fn arm(name: &'static str) -> Pause {
    let point = Arc::new(Point { phase: Mutex::new(Phase::Armed), changed: Condvar::new() });
    if armed().get_or_insert_with(HashMap::new).insert(name, point.clone()).is_none() {
        ARMED_COUNT.fetch_add(1, Ordering::SeqCst);
    }
    Pause { name, point }
}

impl Pause {
    /// Waits until a thread has stopped at the point.
    pub fn wait_reached(&self) {
        let mut phase = self.point.phase();
        while *phase == Phase::Armed {
            phase = self.point.changed.wait(phase).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets the stopped thread go on.
    pub fn resume(self) {
        drop(self);
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        let mut map = armed();
        if let Some(points) = map.as_mut()
            && points.get(self.name).is_some_and(|p| Arc::ptr_eq(p, &self.point))
        {
            points.remove(self.name);
            ARMED_COUNT.fetch_sub(1, Ordering::SeqCst);
        }
        drop(map);
        self.point.set(Phase::Resumed);
    }
}

/// Called by the engine at a named point: stops the first thread to reach
/// an armed point until the test resumes it. Later threads pass.
pub(crate) fn reached(name: &'static str) {
    if ARMED_COUNT.load(Ordering::SeqCst) == 0 {
        return;
    }
    let Some(point) = armed().as_ref().and_then(|points| points.get(name).cloned()) else { return };
    let mut phase = point.phase();
    if *phase != Phase::Armed {
        return;
    }
    *phase = Phase::Reached;
    point.changed.notify_all();
    while *phase == Phase::Reached {
        phase = point.changed.wait(phase).unwrap_or_else(|e| e.into_inner());
    }
}

/// Marks the calling thread as waiting for an engine lock until the guard
/// drops.
pub(crate) struct BlockedWait(());

impl BlockedWait {
    pub(crate) fn begin() -> Self {
        blocked().get_or_insert_with(HashSet::new).insert(std::thread::current().id());
        BlockedWait(())
    }
}

impl Drop for BlockedWait {
    fn drop(&mut self) {
        if let Some(threads) = blocked().as_mut() {
            threads.remove(&std::thread::current().id());
        }
    }
}

/// Whether `thread` is waiting for an engine lock now.
pub fn is_blocked(thread: ThreadId) -> bool {
    blocked().as_ref().is_some_and(|threads| threads.contains(&thread))
}

/// Waits until `thread` has finished or is waiting for an engine lock, and
/// says which (true = blocked). Used while another thread is stopped at a
/// point: whichever happens first is decided by the engine's locking, not
/// by timing.
pub fn wait_blocked_or_finished<T>(thread: &std::thread::ScopedJoinHandle<'_, T>) -> bool {
    loop {
        if is_blocked(thread.thread().id()) {
            return true;
        }
        if thread.is_finished() {
            return false;
        }
        std::thread::yield_now();
    }
}

pub(crate) fn reset() {
    let points: Vec<Arc<Point>> = armed().take().map(|m| m.into_values().collect()).unwrap_or_default();
    ARMED_COUNT.store(0, Ordering::SeqCst);
    for point in points {
        point.set(Phase::Resumed);
    }
    *blocked() = None;
}
