//! Model of the pended-request table (`driver/pending.rs`) and of the
//! paths that finish requests (`driver/notify.rs` `on_delete`,
//! `driver/agent.rs` `Agents::detach`, `driver/lifecycle.rs` `unload` and
//! `on_timer`), over a model of the engine's pend/complete
//! (`FwpsPendOperation0`/`FwpsCompleteOperation0`, with the
//! reauthorization at ALE_AUTH_CONNECT run on the completing thread, as
//! the simulated kernel does).
//!
//! | model                                   | driver (`driver/pending.rs` unless named)            |
//! |-----------------------------------------|------------------------------------------------------|
//! | [`Pending::pend`]                       | `Pending::pend` (re-checks `accepting` under the lock; completes itself if it cannot file) |
//! | [`Pending::take_next`]                  | `Pending::take_next` → `RequestTable::next_queued` (Queued → Delivered) |
//! | [`Pending::answer`]                     | `Pending::answer` → `take_for_answer(.., must_be_delivered)` → `settle` |
//! | [`Pending::finish_where`]               | `Pending::finish_where` → `take_first_unanswered` → `settle`, one at a time |
//! | [`Pending::expire`]                     | `Pending::expire` (+ `discard_answered`)              |
//! | [`Pending::discard_answered`]           | `Pending::discard_answered` → `take_answered`         |
//! | [`Pending::take_reauthorization`]       | `Pending::take_reauthorization` → `take_answered_for` |
//! | `complete_operation`, `discard`         | `complete_operation` (never under the lock), `discard` |
//! | [`on_delete`]                           | `notify::on_delete`                                   |
//! | [`agent_gone`]                          | `agent::Agents::detach` (last agent)                  |
//! | [`unload`], [`release_contexts`]        | `lifecycle::unload` (its pending part), `release_contexts` |
//!
//! The table is a fixed array of slots each owning a boxed request, as in
//! the driver (there: raw `PoolBox` pointers in a `PoolSlice`). The driver
//! finds requests through intrusive lists and ids that name their slot
//! (O(1) in the number pending); the model finds the same request by
//! scanning: the oldest queued one (lowest id: the driver gives ids in
//! filing order, under the lock), the one with the answered id, the first
//! answered one for a connection. Every table operation runs under the one
//! lock in both, so which interleavings loom explores does not depend on
//! how a request is found inside it. The engine
//! model counts, per operation, completions, the verdict completed with,
//! the clone's fate at recv-accept, and the request's free.

use crate::context_ref::ContextRef;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc as Memory;

/// Slots in the model's table (the driver has 1024).
pub const MAX_PENDING_REQUESTS: usize = 4;

/// The agent's answer, or a filter's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let the connection through.
    Permit,
    /// Refuse it.
    Block,
}

impl Verdict {
    fn code(self) -> usize {
        match self {
            Verdict::Permit => 1,
            Verdict::Block => 2,
        }
    }

    /// The verdict an engine counter holds (0: none).
    pub fn from_code(code: usize) -> Option<Verdict> {
        match code {
            1 => Some(Verdict::Permit),
            2 => Some(Verdict::Block),
            _ => None,
        }
    }
}

/// What the agent is told about one pended connection (the fields the
/// algorithm uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AskInfo {
    /// The request id: what the verdict must name.
    pub request_id: u64,
    /// The filter whose policy asked.
    pub filter_id: u64,
    /// True at recv-accept (no reauthorization; a clone to inject).
    pub inbound: bool,
    /// Stands for the 5-tuple.
    pub remote_port: u16,
    /// What applies if the agent does not answer.
    pub default_verdict: Verdict,
}

impl AskInfo {
    fn same_connection(&self, other: &AskInfo) -> bool {
        self.filter_id == other.filter_id && self.inbound == other.inbound && self.remote_port == other.remote_port
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestState {
    Queued,
    Delivered,
    Answered(Verdict),
}

/// The cloned packet of a pended recv-accept connection (`PendedPacket`):
/// must be finished (injected or freed) exactly once.
pub struct PendedPacket {
    operation: usize,
    engine: Memory<Engine>,
}

impl PendedPacket {
    /// `reinjection::finish`: inject to permit, free to deny.
    fn finish(self, verdict: Verdict) {
        let index = self.operation - 1;
        self.engine.packets_finished[index].fetch_add(1, Ordering::Relaxed);
        if verdict == Verdict::Permit {
            self.engine.packets_injected[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The request's pool block: counts its free.
struct Allocation {
    request_id: u64,
    engine: Memory<Engine>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if let Some(frees) = self.engine.request_frees.get((self.request_id - 1) as usize) {
            frees.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct PendedRequest {
    info: AskInfo,
    completion_context: usize,
    packet: Option<PendedPacket>,
    _filter: ContextRef,
    deadline: u64,
    state: RequestState,
    _allocation: Allocation,
}

#[derive(Default)]
struct RequestSlot {
    request_id: u64,
    request: Option<Box<PendedRequest>>,
}

struct RequestTable {
    slots: Option<Vec<RequestSlot>>,
    live: usize,
}

/// Why a request was finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The agent answered.
    Verdict,
    /// The request's timeout passed.
    Timeout,
    /// Its filter was deleted.
    FilterDeleted,
    /// The agent went away.
    AgentGone,
    /// The driver is unloading.
    Unload,
}

/// A refusal: `FwpsPendOperation0` failed, or a verdict names no delivered,
/// unanswered request (the driver's `STATUS_NOT_FOUND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// What to do with a classification the table could not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendOutcome {
    /// Pended: the request id.
    Pended(u64),
    /// Not pended: this verdict now.
    Immediate(Verdict),
}

/// What completing one request needs, taken out under the lock.
struct Settled {
    completion_context: usize,
    packet: Option<PendedPacket>,
    verdict: Verdict,
}

/// The model of the engine's side of pending, with the accounting the
/// checks read. Operations are numbered from 1 (`completion_context`);
/// request ids too, and the models pend request n as operation n.
pub struct Engine {
    /// The connection behind each operation (what the engine reclassifies).
    pub connections: Vec<AskInfo>,
    /// `FwpsCompleteOperation0` calls per operation.
    pub completions: Vec<AtomicUsize>,
    /// The verdict each operation was completed with (`Verdict` code).
    pub completed_verdict: Vec<AtomicUsize>,
    /// Completed with a packet (the clone).
    pub completed_with_packet: Vec<AtomicBool>,
    /// Reauthorizations that found the kept verdict, per operation.
    pub reauthorized: Vec<AtomicUsize>,
    /// Clones finished (injected or freed), per operation.
    pub packets_finished: Vec<AtomicUsize>,
    /// Clones injected, per operation.
    pub packets_injected: Vec<AtomicUsize>,
    /// Requests freed, per request id.
    pub request_frees: Vec<AtomicUsize>,
    /// The verdict the agent got accepted (`Pending::answer` returned Ok).
    pub agent_verdict: Vec<AtomicUsize>,
    /// Classifications `Pending::pend` refused before pending (unload had
    /// begun): answered at once, never pended, never allocated.
    pub never_pended: Vec<AtomicBool>,
}

impl Engine {
    /// An engine that will see `connections.len()` pended operations.
    pub fn new(connections: Vec<AskInfo>) -> Memory<Self> {
        let counters = || connections.iter().map(|_| AtomicUsize::new(0)).collect::<Vec<_>>();
        Memory::new(Engine {
            completions: counters(),
            completed_verdict: counters(),
            completed_with_packet: connections.iter().map(|_| AtomicBool::new(false)).collect(),
            reauthorized: counters(),
            packets_finished: counters(),
            packets_injected: counters(),
            request_frees: counters(),
            agent_verdict: counters(),
            never_pended: connections.iter().map(|_| AtomicBool::new(false)).collect(),
            connections,
        })
    }

    /// `FwpsPendOperation0` for operation `operation`.
    pub fn pend_operation(&self, operation: usize) -> Result<usize, Refused> {
        Ok(operation)
    }

    /// `FwpsCompleteOperation0`: records the completion; at ALE_AUTH_CONNECT
    /// returns the connection the engine now reauthorizes.
    fn complete_operation(&self, operation: usize, with_packet: bool, verdict: Verdict) -> Option<AskInfo> {
        let index = operation - 1;
        let before = self.completions[index].fetch_add(1, Ordering::Relaxed);
        assert_eq!(before, 0, "operation {operation} completed twice");
        self.completed_verdict[index].store(verdict.code(), Ordering::Relaxed);
        self.completed_with_packet[index].store(with_packet, Ordering::Relaxed);
        let connection = self.connections[index];
        (!connection.inbound).then_some(connection)
    }

    /// Records that classify answered at once without pending `operation`.
    pub fn not_pended(&self, operation: usize) {
        self.never_pended[operation - 1].store(true, Ordering::Relaxed);
    }

    /// Records an answer the driver accepted.
    pub fn agent_answered(&self, request_id: u64, verdict: Verdict) {
        self.agent_verdict[(request_id - 1) as usize].store(verdict.code(), Ordering::Relaxed);
    }

    /// Every invariant, once every thread is done and unload has run:
    /// each operation completed exactly once, with the agent's accepted
    /// verdict or else the default; each clone finished once, injected
    /// only when permitted; each request freed once.
    pub fn check_every_request_finished_once(&self) {
        for (index, connection) in self.connections.iter().enumerate() {
            let operation = index + 1;
            if self.never_pended[index].load(Ordering::Relaxed) {
                assert_eq!(self.completions[index].load(Ordering::Relaxed), 0, "operation {operation}: never pended");
                assert_eq!(self.request_frees[index].load(Ordering::Relaxed), 0, "request {operation}: never made");
                if connection.inbound {
                    assert_eq!(self.packets_finished[index].load(Ordering::Relaxed), 1, "clone {operation}: freed");
                    assert_eq!(self.packets_injected[index].load(Ordering::Relaxed), 0, "clone {operation}: dropped");
                }
                continue;
            }
            assert_eq!(self.completions[index].load(Ordering::Relaxed), 1, "operation {operation}: completions");
            let agent = Verdict::from_code(self.agent_verdict[index].load(Ordering::Relaxed));
            let completed = Verdict::from_code(self.completed_verdict[index].load(Ordering::Relaxed));
            assert_eq!(completed, Some(agent.unwrap_or(connection.default_verdict)), "operation {operation}: verdict");
            assert_eq!(self.request_frees[index].load(Ordering::Relaxed), 1, "request {operation}: frees");
            if connection.inbound {
                assert!(
                    self.completed_with_packet[index].load(Ordering::Relaxed),
                    "recv-accept completes with the clone"
                );
                assert_eq!(self.packets_finished[index].load(Ordering::Relaxed), 1, "clone {operation}: finished");
                let injected = self.packets_injected[index].load(Ordering::Relaxed);
                assert_eq!(injected == 1, completed == Some(Verdict::Permit), "clone {operation}: injected");
            } else {
                assert!(!self.completed_with_packet[index].load(Ordering::Relaxed), "connect completes with NULL");
                assert!(self.reauthorized[index].load(Ordering::Relaxed) <= 1, "one reauthorization");
            }
        }
    }
}

/// The pending machinery (`Pending`).
pub struct Pending {
    table: Mutex<RequestTable>,
    accepting: AtomicBool,
    next_id: AtomicU64,
    engine: Memory<Engine>,
}

impl Pending {
    /// `Pending::new` + `Pending::open`: the table allocated, accepting.
    pub fn open(engine: Memory<Engine>) -> Self {
        let slots = (0..MAX_PENDING_REQUESTS).map(|_| RequestSlot::default()).collect();
        Self {
            table: Mutex::new(RequestTable { slots: Some(slots), live: 0 }),
            accepting: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
            engine,
        }
    }

    /// The engine model.
    pub fn engine(&self) -> &Memory<Engine> {
        &self.engine
    }

    /// `Pending::stop_accepting`.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// `Pending::close`: frees the table once every request is gone.
    pub fn close(&self) {
        let old = {
            let mut table = self.table.lock().unwrap();
            if table.live != 0 {
                return;
            }
            table.slots.take()
        };
        drop(old);
    }

    /// `Pending::live`.
    pub fn live(&self) -> usize {
        self.table.lock().unwrap().live
    }

    /// `Pending::pend`: allocate, pend (`pend` wraps `FwpsPendOperation0`),
    /// file under the lock if still accepting, else complete at once.
    pub fn pend(
        &self,
        info: AskInfo,
        filter: &ContextRef,
        now: u64,
        packet: Option<PendedPacket>,
        pend: impl FnOnce() -> Result<usize, Refused>,
    ) -> PendOutcome {
        let default = PendOutcome::Immediate(info.default_verdict);
        if !self.accepting.load(Ordering::Acquire) || self.live() >= MAX_PENDING_REQUESTS {
            discard(packet);
            return default;
        }
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = AskInfo { request_id, ..info };
        let deadline = now.saturating_add(100);
        let request = Box::new(PendedRequest {
            info,
            completion_context: 0,
            packet: None,
            _filter: filter.clone(),
            deadline,
            state: RequestState::Queued,
            _allocation: Allocation { request_id, engine: self.engine.clone() },
        });
        let completion_context = match pend() {
            Ok(context) => context,
            Err(Refused) => {
                discard(packet);
                return default;
            }
        };
        let mut request = request;
        request.completion_context = completion_context;
        request.packet = packet;
        let filed = {
            let mut table = self.table.lock().unwrap();
            if self.accepting.load(Ordering::Acquire) { table.file(request_id, request) } else { Err(request) }
        };
        match filed {
            Ok(()) => PendOutcome::Pended(request_id),
            Err(mut request) => {
                let settled = Settled {
                    completion_context: request.completion_context,
                    packet: request.packet.take(),
                    verdict: request.info.default_verdict,
                };
                drop(request);
                self.complete_operation(settled);
                PendOutcome::Pended(request_id)
            }
        }
    }

    /// `Pending::take_next`.
    pub fn take_next(&self) -> Option<AskInfo> {
        let mut table = self.table.lock().unwrap();
        table.next_queued()
    }

    /// `Pending::answer`: only a delivered, unanswered request.
    pub fn answer(&self, request_id: u64, verdict: Verdict) -> Result<(), Refused> {
        let taken = self.table.lock().unwrap().take_for_answer(request_id, verdict, true);
        match taken {
            Some(settled) => {
                self.finish_operation(settled, Finish::Verdict);
                Ok(())
            }
            None => Err(Refused),
        }
    }

    /// A deliberately wrong `answer` for the negative control: finds the
    /// request by id alone, whatever its state, so a verdict arriving after
    /// a timeout completes the operation a second time. Not in the driver.
    pub fn answer_ignoring_state(&self, request_id: u64, verdict: Verdict) -> Result<(), Refused> {
        let taken = {
            let mut table = self.table.lock().unwrap();
            table.position(|r| r.info.request_id == request_id).and_then(|index| table.settle(index, verdict))
        };
        match taken {
            Some(settled) => {
                self.finish_operation(settled, Finish::Verdict);
                Ok(())
            }
            None => Err(Refused),
        }
    }

    /// `Pending::finish_where`: one at a time, the lock released around
    /// each completion.
    pub fn finish_where(&self, why: Finish, which: impl Fn(&AskInfo, u64) -> bool) -> usize {
        let mut finished = 0;
        loop {
            let taken = self.table.lock().unwrap().take_first_unanswered(&which);
            let Some(settled) = taken else { return finished };
            self.finish_operation(settled, why);
            finished += 1;
        }
    }

    /// `Pending::expire`.
    pub fn expire(&self, now: u64) -> usize {
        let expired = self.finish_where(Finish::Timeout, |_, deadline| deadline <= now);
        self.discard_answered(|_, deadline| deadline <= now);
        expired
    }

    /// `Pending::discard_answered`.
    pub fn discard_answered(&self, which: impl Fn(&AskInfo, u64) -> bool) {
        loop {
            let taken = self.table.lock().unwrap().take_answered(&which);
            match taken {
                Some(request) => drop(request),
                None => return,
            }
        }
    }

    /// `Pending::take_reauthorization`.
    pub fn take_reauthorization(&self, info: &AskInfo) -> Option<Verdict> {
        let request = self.table.lock().unwrap().take_answered_for(info)?;
        let verdict = match request.state {
            RequestState::Answered(verdict) => Some(verdict),
            RequestState::Queued | RequestState::Delivered => None,
        };
        drop(request);
        verdict
    }

    fn finish_operation(&self, settled: Settled, _why: Finish) {
        self.complete_operation(settled);
    }

    /// `complete_operation`: no lock of ours is held; at ALE_AUTH_CONNECT
    /// the engine reauthorizes at once, on this thread, and classify takes
    /// the table lock (`take_reauthorization`).
    fn complete_operation(&self, settled: Settled) {
        let with_packet = settled.packet.is_some();
        let reauthorize = self.engine.complete_operation(settled.completion_context, with_packet, settled.verdict);
        if let Some(packet) = settled.packet {
            packet.finish(settled.verdict);
        }
        if let Some(connection) = reauthorize
            && let Some(verdict) = self.take_reauthorization(&connection)
        {
            assert_eq!(verdict, settled.verdict, "the reauthorization got another request's verdict");
            self.engine.reauthorized[settled.completion_context - 1].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `discard`: a clone that will not be needed is freed.
fn discard(packet: Option<PendedPacket>) {
    if let Some(packet) = packet {
        packet.finish(Verdict::Block);
    }
}

impl RequestTable {
    fn slots_mut(&mut self) -> impl Iterator<Item = &mut RequestSlot> {
        self.slots.iter_mut().flat_map(|slots| slots.iter_mut())
    }

    fn file(&mut self, request_id: u64, request: Box<PendedRequest>) -> Result<(), Box<PendedRequest>> {
        let Some(slot) = self.slots_mut().find(|slot| slot.request.is_none()) else {
            return Err(request);
        };
        *slot = RequestSlot { request_id, request: Some(request) };
        self.live += 1;
        Ok(())
    }

    fn remove(&mut self, index: usize) -> Option<Box<PendedRequest>> {
        let slot = self.slots.as_mut()?.get_mut(index)?;
        let request = core::mem::take(slot).request?;
        self.live -= 1;
        Some(request)
    }

    fn position(&mut self, mut test: impl FnMut(&PendedRequest) -> bool) -> Option<usize> {
        self.slots.as_ref()?.iter().position(|slot| slot.request.as_deref().is_some_and(&mut test))
    }

    fn request_at(&mut self, index: usize) -> Option<&mut PendedRequest> {
        self.slots.as_mut()?.get_mut(index)?.request.as_deref_mut()
    }

    fn next_queued(&mut self) -> Option<AskInfo> {
        let mut best: Option<(u64, usize)> = None;
        for (index, slot) in self.slots.iter().flat_map(|s| s.iter()).enumerate() {
            if slot.request.is_none() || best.is_some_and(|(id, _)| id < slot.request_id) {
                continue;
            }
            if slot.request.as_deref().is_some_and(|r| r.state == RequestState::Queued) {
                best = Some((slot.request_id, index));
            }
        }
        let (_, index) = best?;
        let request = self.request_at(index)?;
        request.state = RequestState::Delivered;
        Some(request.info)
    }

    fn take_for_answer(&mut self, request_id: u64, verdict: Verdict, must_be_delivered: bool) -> Option<Settled> {
        let index = self.position(|r| {
            r.info.request_id == request_id
                && match r.state {
                    RequestState::Delivered => true,
                    RequestState::Queued => !must_be_delivered,
                    RequestState::Answered(_) => false,
                }
        })?;
        self.settle(index, verdict)
    }

    fn take_first_unanswered(&mut self, which: &impl Fn(&AskInfo, u64) -> bool) -> Option<Settled> {
        let index = self.position(|r| !matches!(r.state, RequestState::Answered(_)) && which(&r.info, r.deadline))?;
        let verdict = self.request_at(index)?.info.default_verdict;
        self.settle(index, verdict)
    }

    fn settle(&mut self, index: usize, verdict: Verdict) -> Option<Settled> {
        let request = self.request_at(index)?;
        let settled =
            Settled { completion_context: request.completion_context, packet: request.packet.take(), verdict };
        request.state = RequestState::Answered(verdict);
        if request.info.inbound {
            drop(self.remove(index));
        }
        Some(settled)
    }

    fn take_answered(&mut self, which: &impl Fn(&AskInfo, u64) -> bool) -> Option<Box<PendedRequest>> {
        let index = self.position(|r| matches!(r.state, RequestState::Answered(_)) && which(&r.info, r.deadline))?;
        self.remove(index)
    }

    fn take_answered_for(&mut self, info: &AskInfo) -> Option<Box<PendedRequest>> {
        let index = self.position(|r| matches!(r.state, RequestState::Answered(_)) && r.info.same_connection(info))?;
        self.remove(index)
    }
}

/// The clone a recv-accept classification takes before pending
/// (`reinjection::clone_packet`).
pub fn clone_packet(engine: &Memory<Engine>, operation: usize) -> PendedPacket {
    PendedPacket { operation, engine: engine.clone() }
}

/// `notify::on_delete`: the filter's requests get its default verdict,
/// the verdicts kept for it go, then the table's reference.
pub fn on_delete(pending: &Pending, table: &crate::context_ref::ContextTable, filter_id: u64) {
    pending.finish_where(Finish::FilterDeleted, |info, _| info.filter_id == filter_id);
    pending.discard_answered(|info, _| info.filter_id == filter_id);
    drop(table.remove());
}

/// `Agents::detach` for the last agent: everything pending gets its default.
pub fn agent_gone(pending: &Pending) -> usize {
    pending.finish_where(Finish::AgentGone, |_, _| true)
}

/// `lifecycle::unload`, its pending part: stop accepting, complete every
/// pended operation with its default, drop the kept verdicts.
pub fn unload(pending: &Pending) -> usize {
    pending.stop_accepting();
    let finished = pending.finish_where(Finish::Unload, |_, _| true);
    pending.discard_answered(|_, _| true);
    finished
}

/// `lifecycle::release_contexts`, its pending and table part.
pub fn release_contexts(pending: &Pending, table: &crate::context_ref::ContextTable) {
    drop(table.remove());
    pending.stop_accepting();
    pending.close();
}
