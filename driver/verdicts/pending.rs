//! Asynchronous verdicts: classifications pended for an `ask` filter, each
//! with its own request id (the user context that tells completions apart),
//! finished exactly once by the agent's verdict, a timeout, the filter's
//! deletion, the agent's disconnection or unload.
//!
//! At ALE_AUTH_CONNECT, completing an operation makes the engine classify
//! the connection again with `FWP_CONDITION_FLAG_IS_REAUTHORIZE`; that
//! reauthorization is answered from the verdict kept here for the request.
//!
//! # The table
//! A fixed array of `MAX_PENDING_REQUESTS` slots. A request id carries its
//! slot index in its low bits (above them a sequence number, so ids are
//! never reused and still order requests by age), and every slot is on
//! one intrusive list: free, queued (oldest first) or answered, except a
//! slot a pend has reserved, which is on none until the pend files its
//! request there (after `FwpsPendOperation0`, so filing cannot fail and a
//! pended operation is never completed inside classifyFn) or gives it
//! back. Reserving, filing, reading the next queued request, answering by
//! id and taking a reauthorization's verdict are O(1) in the number
//! pending (the last one walks only the answered list, which the
//! reauthorization empties). Only the timer and unload paths (timeouts, a
//! deleted filter, a gone agent) walk the slots, once per call.
//!
//! # Locking
//! One spin lock guards the request table. `FwpsCompleteOperation0` is only
//! ever called with it released, because at ALE_AUTH_CONNECT the engine may
//! run the reauthorization classify (which takes the lock) before it
//! returns.
#![forbid(unsafe_code)]

use crate::connections::connection_verdicts::{ConnectionKey, ConnectionVerdicts};
use crate::filters::filter_context::ContextRef;
use crate::platform::log::Level;
use crate::platform::pool::{PoolSlice, PoolTag, Tagged, TaggedBox};
use crate::platform::spin_lock::SpinLock;
use crate::platform::status::{NtStatus, Result};
use crate::platform::sync::AtomicBool;
use crate::wfp::filter_view::PendedOperation;
use crate::wfp::injection::{self, PendedPacket};
use core::net::IpAddr;
use core::sync::atomic::{AtomicU64, Ordering};
use wfpcallout_wire::{Label, Verdict};

/// Requests that may be pending at once; past this, ask filters answer
/// with their default verdict at once (counted as defaulted).
pub const MAX_PENDING_REQUESTS: usize = 1 << INDEX_BITS;
/// Low bits of a request id: its slot index.
const INDEX_BITS: u32 = 10;
/// The slot index in a request id.
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Pended requests (`PendedRequest`).
pub const TAG_PENDED_REQUEST: PoolTag = PoolTag::new(*b"WfPr");
/// The request table's slot array.
pub const TAG_REQUEST_TABLE: PoolTag = PoolTag::new(*b"WfPq");

/// What the agent is told about one pended connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AskInfo {
    /// The request id: what the verdict must name.
    pub request_id: u64,
    /// The filter whose policy asked.
    pub filter_id: u64,
    /// Owning process, 0 if unknown.
    pub process_id: u64,
    /// Run-time layer id.
    pub layer_id: u16,
    /// True at recv-accept (inbound).
    pub inbound: bool,
    /// IP protocol.
    pub protocol: u8,
    /// Local address.
    pub local_address: IpAddr,
    /// Local port.
    pub local_port: u16,
    /// Remote address.
    pub remote_address: IpAddr,
    /// Remote port.
    pub remote_port: u16,
    /// How long the agent has.
    pub timeout_ms: u32,
    /// What applies if it does not answer.
    pub default_verdict: Verdict,
    /// The filter's label.
    pub label: Label,
}

impl AskInfo {
    /// The connection as the `Pended` event names it.
    pub fn event_fields(&self) -> crate::platform::etw::ConnectionFields {
        crate::platform::etw::ConnectionFields {
            protocol: self.protocol,
            local_port: self.local_port,
            remote_port: self.remote_port,
            inbound: self.inbound,
        }
    }

    /// The connection, as both directions see it from this host.
    pub fn connection_key(&self) -> ConnectionKey {
        ConnectionKey {
            protocol: self.protocol,
            local: (self.local_address, self.local_port),
            remote: (self.remote_address, self.remote_port),
        }
    }

    fn same_connection(&self, other: &AskInfo) -> bool {
        self.filter_id == other.filter_id
            && self.layer_id == other.layer_id
            && self.protocol == other.protocol
            && self.local_address == other.local_address
            && self.local_port == other.local_port
            && self.remote_address == other.remote_address
            && self.remote_port == other.remote_port
    }
}

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestState {
    /// Waiting for an agent to read it.
    Queued,
    /// Read by an agent; waiting for its verdict.
    Delivered,
    /// Completed with this verdict; kept until the reauthorization takes it.
    Answered(Verdict),
}

/// One pended classification.
///
/// # Invariants
/// While `state` is `Queued` or `Delivered`, `operation` holds the pended
/// operation; it is taken (to be completed) when the request leaves those
/// states, so an Answered request holds none.
struct PendedRequest {
    info: AskInfo,
    /// The engine's pended operation, completed exactly once: the type
    /// cannot be copied and completing consumes it.
    operation: Option<PendedOperation>,
    /// At recv-accept: the cloned packet to inject (permit) or free (deny).
    packet: Option<PendedPacket>,
    /// The filter's context, kept alive while the request exists.
    _filter: ContextRef,
    deadline: u64,
    state: RequestState,
}

impl Tagged for PendedRequest {
    const TAG: PoolTag = TAG_PENDED_REQUEST;
}

/// A pended request in pool, owned by its slot (or by whoever took it out).
type RequestBox = TaggedBox<PendedRequest>;

/// One slot: the request it owns (`None` = free) and its links on the
/// list it is on (see [`RequestTable`]).
#[repr(C)]
#[derive(Default)]
struct RequestSlot {
    request_id: u64,
    request: Option<RequestBox>,
    /// The previous slot on its list, as index + 1 (0: none).
    prev: u32,
    /// The next slot on its list, as index + 1 (0: none).
    next: u32,
}

/// An intrusive doubly linked list of slots (indices + 1; 0 = none).
#[derive(Clone, Copy, Default)]
struct SlotList {
    head: u32,
    tail: u32,
}

/// Which list a slot is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// Free slots.
    Free,
    /// Requests waiting for an agent to read them, oldest first.
    Queued,
    /// Requests read by an agent: on no list (found by id).
    Delivered,
    /// Requests completed and waiting for their reauthorization.
    Answered,
}

impl RequestState {
    fn list(self) -> Which {
        match self {
            RequestState::Queued => Which::Queued,
            RequestState::Delivered => Which::Delivered,
            RequestState::Answered(_) => Which::Answered,
        }
    }
}

/// Answered requests [`Pending::discard_answered`] takes off per lock hold.
const DISCARD_BATCH: usize = 16;

/// The deadline of a request whose filter was deleted: the timer finishes
/// it first thing (see `Pending::finish_later_for_filter`).
const DELETED_DEADLINE: u64 = 0;

/// Why a request was finished, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
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

impl EndReason {
    /// The reason as the `Completed` event says it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Verdict => "agent",
            EndReason::Timeout => "timeout",
            EndReason::FilterDeleted => "filter deleted",
            EndReason::AgentGone => "agent gone",
            EndReason::Unload => "unload",
        }
    }
}

/// The request table.
///
/// # Invariants
/// `live` counts the occupied slots (each owns its request).
/// An occupied slot at index `i` has `request_id & INDEX_MASK == i`, and
/// its request's `info.request_id` is the same id. Every empty slot is on
/// the `free` list except the `reserved` ones, which are on no list; every
/// Queued request is on `queued` (in filing order), every Answered one on
/// `answered`, a Delivered one on none; `queued` counts the Queued list's
/// length. The slot array is freed only with no request and no
/// reservation left.
struct RequestTable {
    slots: Option<PoolSlice<RequestSlot>>,
    live: usize,
    /// Slots reserved by a pend in progress: taken off the free list, on
    /// no list, empty until the pend files its request or gives the slot
    /// back.
    reserved: usize,
    /// Requests in the Queued state (waiting for an agent to read them).
    queued: usize,
    free: SlotList,
    queue: SlotList,
    answered: SlotList,
    /// The next request id's sequence number (its bits above the index).
    sequence: u64,
}

/// Counters of the asynchronous path.
#[derive(Default)]
pub struct PendingStats {
    /// Classifications pended.
    pub pended: AtomicU64,
    /// `FwpsPendOperation0` failures (default verdict applied).
    pub pend_failures: AtomicU64,
    /// Operations completed (each exactly once).
    pub completed: AtomicU64,
    /// Completed because the timeout passed.
    pub timed_out: AtomicU64,
    /// Ask classifications answered at once with the default verdict (no
    /// agent, queue full, no completion handle, reauthorization unknown).
    pub defaulted: AtomicU64,
    /// Verdicts refused (unknown, late or duplicate request id).
    pub verdicts_rejected: AtomicU64,
}

/// The pending machinery: the table, whether new pends are accepted, and
/// the counters.
pub struct Pending {
    table: SpinLock<RequestTable>,
    /// The verdict each completion connection got, for its later
    /// reauthorizations (policy change, new interface, either direction).
    pub verdicts: ConnectionVerdicts,
    accepting: AtomicBool,
    /// Counters.
    pub stats: PendingStats,
}

/// What to do with a classification the table could not take.
pub enum PendOutcome {
    /// Pended: answer BLOCK + ABSORB now; the request id.
    Pended(u64),
    /// Not pended: answer with this verdict now.
    Immediate(Verdict),
}

impl Pending {
    /// An empty, closed table (const for the driver's static state).
    pub const fn new() -> Self {
        Self {
            table: SpinLock::new(RequestTable::EMPTY),
            verdicts: ConnectionVerdicts::new(),
            accepting: AtomicBool::new(false),
            stats: PendingStats {
                pended: AtomicU64::new(0),
                pend_failures: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                defaulted: AtomicU64::new(0),
                verdicts_rejected: AtomicU64::new(0),
            },
        }
    }

    /// Allocates the table and starts accepting (initialize, PASSIVE_LEVEL).
    pub fn open(&self) -> Result {
        let slots = RequestTable::all_free()?;
        self.verdicts.open()?;
        let old = {
            let mut table = self.table.lock();
            let sequence = table.sequence;
            let old = core::mem::replace(&mut *table, RequestTable::EMPTY);
            *table = RequestTable { sequence, ..RequestTable::with_free_slots(slots) };
            old.slots
        };
        drop(old);
        for counter in [
            &self.stats.pended,
            &self.stats.pend_failures,
            &self.stats.completed,
            &self.stats.timed_out,
            &self.stats.defaulted,
            &self.stats.verdicts_rejected,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.accepting.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops accepting new pends, then waits until every pend that had
    /// already reserved its slot has filed its request or given the slot
    /// back (first step of unload, PASSIVE_LEVEL). Once it returns, every
    /// pended operation is in the table, so unload's finish-all completes
    /// them all, out of band. The wait is as short as one
    /// `FwpsPendOperation0` call: no new reservation can start.
    pub fn stop_accepting(&self) {
        {
            // Under the lock: a reservation either came before (and is
            // counted) or sees the table closed.
            let _table = self.table.lock();
            self.accepting.store(false, Ordering::Release);
        }
        while self.table.read().reserved != 0 {
            wait_for_reservations();
        }
    }

    /// Whether new pends are accepted (false from the start of unload
    /// until the next load).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Frees the table once every request is gone (end of unload).
    pub fn close(&self) {
        let old = {
            let mut table = self.table.lock();
            if table.live != 0 || table.reserved != 0 {
                return;
            }
            // The lists go with the slots they link (the sequence stays:
            // ids are never reused, across loads either).
            let sequence = table.sequence;
            core::mem::replace(&mut *table, RequestTable { sequence, ..RequestTable::EMPTY }).slots
        };
        drop(old);
        self.verdicts.close();
    }

    /// Requests in the table (queued, delivered or answered).
    pub fn live(&self) -> usize {
        self.table.read().live
    }

    /// Pends a classification: reserves a slot for its request (none
    /// free, or unload began: the default verdict, nothing pended),
    /// allocates the request, pends the operation through `pend` (which
    /// wraps `FwpsPendOperation0`: `CompletionHandle::pend`), and
    /// files the request in the reserved slot. Once the operation is
    /// pended nothing can fail: it is never completed here, inside
    /// classifyFn. If unload began meanwhile, the request is filed all
    /// the same and unload completes it (`stop_accepting` waits for it).
    /// Anything that fails before gives the default verdict at once.
    pub fn pend(
        &self,
        info: AskInfo,
        filter: &ContextRef,
        now: u64,
        packet: Option<PendedPacket>,
        pend: impl FnOnce() -> Result<PendedOperation>,
    ) -> PendOutcome {
        let default = PendOutcome::Immediate(info.default_verdict);
        let reserved = {
            let mut table = self.table.lock();
            if self.accepting.load(Ordering::Acquire) { table.reserve() } else { None }
        };
        let Some((index, request_id)) = reserved else {
            self.stats.defaulted.fetch_add(1, Ordering::Relaxed);
            discard(packet);
            return default;
        };
        let deadline = now.saturating_add(u64::from(info.timeout_ms).saturating_mul(10_000));
        let Ok(mut request) = RequestBox::try_new_with(|| PendedRequest {
            info,
            operation: None,
            packet: None,
            _filter: filter.clone(),
            deadline,
            state: RequestState::Queued,
        }) else {
            self.table.lock().release(index);
            self.stats.defaulted.fetch_add(1, Ordering::Relaxed);
            discard(packet);
            return default;
        };
        let operation = match pend() {
            Ok(operation) => operation,
            Err(status) => {
                self.table.lock().release(index);
                drop(request);
                self.stats.pend_failures.fetch_add(1, Ordering::Relaxed);
                crate::log!(Level::Warning, "FwpsPendOperation0 failed: {}; default verdict", status);
                crate::platform::etw::error("FwpsPendOperation0 (the default verdict applied)", status);
                discard(packet);
                return default;
            }
        };
        // INVARIANT: the request holds its operation before it is filed
        // Queued.
        request.operation = Some(operation);
        request.packet = packet;
        // Written before the request is filed: no agent can answer it (and
        // its `Completed` be written) before its `Pended` is.
        crate::platform::etw::pended(request_id, info.filter_id, info.event_fields(), info.label.as_bytes());
        // INVARIANT: the operation is pended and not completed: Queued.
        let filed = self.table.lock().file((index, request_id), request);
        match filed {
            Ok(request_id) => {
                self.stats.pended.fetch_add(1, Ordering::Relaxed);
                PendOutcome::Pended(request_id)
            }
            Err(mut request) => {
                // Unreachable: a reserved slot keeps the slot array (`close`
                // refuses while a reservation is out) and is in it. Should
                // it happen, completing now is the one way left not to
                // strand the operation.
                self.stats.defaulted.fetch_add(1, Ordering::Relaxed);
                discard(request.packet.take());
                let completion = Completion {
                    request_id,
                    operation: request.operation.take(),
                    packet: None,
                    verdict: request.info.default_verdict,
                    connection: request.info.connection_key(),
                    filter_id: request.info.filter_id,
                };
                drop(request);
                self.complete_operation(completion);
                self.stats.completed.fetch_add(1, Ordering::Relaxed);
                PendOutcome::Pended(0)
            }
        }
    }

    /// Whether a request is waiting for an agent to read it. The glue asks
    /// again after putting a parked "get request" back: a request queued
    /// while it held the parked one found nothing to pair with.
    pub fn has_queued(&self) -> bool {
        self.table.read().queued != 0
    }

    /// Hands the oldest queued request to an agent.
    pub fn take_next(&self) -> Option<AskInfo> {
        let mut table = self.table.lock();
        table.next_queued()
    }

    /// Finishes one request with `verdict`. Errors with `NOT_FOUND`-style
    /// statuses for an unknown, already answered or never delivered id.
    pub fn answer(&self, request_id: u64, verdict: Verdict) -> Result {
        let taken = self.table.lock().take_for_answer(request_id, verdict, true);
        match taken {
            Some(completion) => {
                self.finish_operation(completion, EndReason::Verdict);
                Ok(())
            }
            None => {
                self.stats.verdicts_rejected.fetch_add(1, Ordering::Relaxed);
                Err(NtStatus::NOT_FOUND)
            }
        }
    }

    /// Finishes, with their default verdict, every request matching `which`
    /// (timeouts, a deleted filter, a gone agent, unload). Returns how many.
    pub fn finish_where(&self, why: EndReason, which: impl Fn(&AskInfo, u64) -> bool) -> usize {
        let mut finished = 0;
        // One at a time: the lock must be released around each completion.
        // The walk resumes where it stopped, so the slots are visited once;
        // a walk that finished something ends with one more pass from the
        // start, for requests filed meanwhile behind it.
        let mut from = 0;
        loop {
            let taken = self.table.lock().take_first_unanswered(from, &which);
            match taken {
                Some((index, completion)) => {
                    self.finish_operation(completion, why);
                    finished += 1;
                    from = index + 1;
                }
                None if from != 0 => from = 0,
                None => return finished,
            }
        }
    }

    /// Times out every request whose deadline is at or before `now`, and
    /// drops answered requests whose reauthorization never came.
    pub fn expire(&self, now: u64) -> usize {
        // First those whose filter was deleted (deadline moved to
        // DELETED_DEADLINE by `finish_later_for_filter`), then the timeouts.
        self.finish_where(EndReason::FilterDeleted, |_, deadline| deadline == DELETED_DEADLINE);
        let expired = self.finish_where(EndReason::Timeout, |_, deadline| deadline <= now);
        self.discard_answered(|_, deadline| deadline <= now);
        expired
    }

    /// The filter of these requests was deleted: they get its default
    /// verdict at the next timer tick (a DPC), not now. Its DELETE runs
    /// inside notifyFn, and completing there would inject permitted TCP
    /// packets from inside a callout callback, which Windows allows only
    /// out of band (FwpsInjectTransportReceiveAsync0; neither Microsoft
    /// sample completes from notifyFn). Returns how many were marked.
    pub fn finish_later_for_filter(&self, filter_id: u64) -> usize {
        self.table.lock().mark_unanswered(|info| info.filter_id == filter_id, DELETED_DEADLINE)
    }

    /// Drops answered requests matching `which` (their operation is already
    /// completed; only the kept verdict goes).
    ///
    /// The walk tests each answered request once, O(answered) per call:
    /// every lock hold takes up to [`DISCARD_BATCH`] matches off and notes
    /// where it stopped, and the next one resumes there. The requests are
    /// dropped with the lock released (dropping one releases its filter's
    /// context). Only if the slot it would resume at left the answered
    /// list meanwhile (its reauthorization took it) does the walk start
    /// over from the head.
    pub fn discard_answered(&self, which: impl Fn(&AskInfo, u64) -> bool) {
        let mut resume = None;
        loop {
            let mut batch: [Option<RequestBox>; DISCARD_BATCH] = Default::default();
            resume = self.table.lock().take_answered_batch(resume, &which, &mut batch);
            drop(batch);
            if resume.is_none() {
                return;
            }
        }
    }

    /// The verdict kept for a reauthorization of a connection we pended,
    /// taken (each reauthorization consumes its request).
    pub fn take_reauthorization(&self, info: &AskInfo) -> Option<Verdict> {
        let request = self.table.lock().take_answered_for(info)?;
        let verdict = match request.state {
            RequestState::Answered(verdict) => Some(verdict),
            RequestState::Queued | RequestState::Delivered => None,
        };
        drop(request);
        verdict
    }

    fn finish_operation(&self, completion: Completion, why: EndReason) {
        let connection = &completion.connection;
        let ports = (connection.local.1, connection.remote.1);
        crate::platform::etw::completed(
            completion.request_id,
            completion.filter_id,
            connection.protocol,
            ports,
            completion.verdict,
            why.as_str(),
        );
        if why == EndReason::Timeout {
            self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        self.complete_operation(completion);
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers the connection's verdict (for its later reauthorizations),
    /// completes the operation (with the clone at recv-accept), then
    /// injects the clone to permit or frees it to deny.
    fn complete_operation(&self, completion: Completion) {
        self.verdicts.remember(
            &completion.connection,
            completion.filter_id,
            completion.verdict,
            crate::platform::kernel::now_ticks(),
        );
        complete_operation(completion);
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

/// What completing one request needs, taken out of the table under its lock
/// and used after releasing it.
struct Completion {
    /// The request's id (the `Completed` event names it).
    request_id: u64,
    /// The operation to complete: `None` only if the request had lost it
    /// (its invariant broken), and then nothing is completed.
    operation: Option<PendedOperation>,
    packet: Option<PendedPacket>,
    verdict: Verdict,
    /// The connection and the filter that judged it.
    connection: ConnectionKey,
    filter_id: u64,
}

/// How long `stop_accepting` sleeps between looks at the reservations
/// (100-ns units: 1 ms).
#[cfg(not(loom))]
const RESERVATION_POLL: i64 = 10_000;

/// Lets a pend between its reservation and its filing go on (unload,
/// PASSIVE_LEVEL, no lock held).
fn wait_for_reservations() {
    #[cfg(not(loom))]
    crate::platform::kernel::sleep_100ns(RESERVATION_POLL);
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A clone that will not be needed after all is freed.
fn discard(packet: Option<PendedPacket>) {
    if let Some(packet) = packet {
        injection::finish(packet, Verdict::Block);
    }
}

/// Completes the operation, then injects the copy to permit or frees it
/// to deny. The completion carries the copy only when it is about to be
/// injected on the receive path (a permitted recv-accept); a connect's
/// first datagram is sent after a completion without it, and a denied
/// copy is freed after one (`PendedPacket::goes_with_completion`).
/// Without an operation to complete (a request that lost it), the copy is
/// only freed.
fn complete_operation(completion: Completion) {
    let Completion { request_id, operation, packet, verdict, .. } = completion;
    let Some(operation) = operation else {
        crate::log!(Level::Error, "request {} had no pended operation to complete", request_id);
        discard(packet);
        return;
    };
    operation.complete(packet.as_ref().filter(|packet| packet.goes_with_completion(verdict)).map(PendedPacket::copy));
    if let Some(packet) = packet {
        injection::finish(packet, verdict);
    }
}

/// The stand-in engine of the loom models (`tests/loom_pending.rs`), which
/// sits where every [`PendedOperation`] is completed.
#[cfg(loom)]
pub use crate::wfp::filter_view::loom_engine;

/// A slot index as stored in the links (index + 1).
fn link(index: usize) -> u32 {
    index as u32 + 1
}

/// The index a link names, if any.
fn unlink(link: u32) -> Option<usize> {
    (link as usize).checked_sub(1)
}

impl RequestTable {
    const EMPTY: Self = Self {
        slots: None,
        live: 0,
        reserved: 0,
        queued: 0,
        free: SlotList { head: 0, tail: 0 },
        queue: SlotList { head: 0, tail: 0 },
        answered: SlotList { head: 0, tail: 0 },
        sequence: 1,
    };

    /// A new array of empty slots, linked onto one free chain in order
    /// (done before the lock is taken).
    fn all_free() -> Result<PoolSlice<RequestSlot>> {
        let count = MAX_PENDING_REQUESTS;
        PoolSlice::try_new_with(count, TAG_REQUEST_TABLE, |index| RequestSlot {
            prev: if index == 0 { 0 } else { link(index - 1) },
            next: if index + 1 == count { 0 } else { link(index + 1) },
            ..RequestSlot::default()
        })
    }

    /// A table over slots prepared by [`Self::all_free`].
    fn with_free_slots(slots: PoolSlice<RequestSlot>) -> Self {
        let count = slots.len();
        let free = if count == 0 { SlotList::default() } else { SlotList { head: link(0), tail: link(count - 1) } };
        // INVARIANT: every slot is empty and on the free list.
        Self { slots: Some(slots), free, ..Self::EMPTY }
    }

    fn list_mut(&mut self, which: Which) -> Option<&mut SlotList> {
        match which {
            Which::Free => Some(&mut self.free),
            Which::Queued => Some(&mut self.queue),
            Which::Answered => Some(&mut self.answered),
            Which::Delivered => None,
        }
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut RequestSlot> {
        self.slots.as_mut()?.get_mut(index)
    }

    /// Appends slot `index` to list `which` (nothing for Delivered).
    fn push(&mut self, which: Which, index: usize) {
        let Some(list) = self.list_mut(which) else { return };
        let tail = list.tail;
        list.tail = link(index);
        if tail == 0 {
            list.head = link(index);
        }
        if let Some(slot) = self.slot_mut(index) {
            slot.prev = tail;
            slot.next = 0;
        }
        if let Some(before) = unlink(tail).and_then(|t| self.slot_mut(t)) {
            before.next = link(index);
        }
    }

    /// Takes slot `index` off list `which` (nothing for Delivered).
    fn take_off(&mut self, which: Which, index: usize) {
        let Some((prev, next)) = self.slot_mut(index).map(|slot| (slot.prev, slot.next)) else { return };
        if which == Which::Delivered {
            return;
        }
        match unlink(prev).and_then(|p| self.slot_mut(p)) {
            Some(before) => before.next = next,
            None => {
                if let Some(list) = self.list_mut(which) {
                    list.head = next;
                }
            }
        }
        match unlink(next).and_then(|n| self.slot_mut(n)) {
            Some(after) => after.prev = prev,
            None => {
                if let Some(list) = self.list_mut(which) {
                    list.tail = prev;
                }
            }
        }
        if let Some(slot) = self.slot_mut(index) {
            slot.prev = 0;
            slot.next = 0;
        }
    }

    /// The request in slot `index`, if occupied.
    fn request_at(&mut self, index: usize) -> Option<&mut PendedRequest> {
        self.slot_mut(index)?.request.as_deref_mut()
    }

    /// Takes a free slot for a pend about to start, and the request id
    /// it will carry (O(1)); `None` when every slot is taken. An id whose
    /// pend does not happen is never used (ids are never reused anyway).
    fn reserve(&mut self) -> Option<(usize, u64)> {
        let index = unlink(self.free.head)?;
        self.take_off(Which::Free, index);
        // INVARIANT: off the free list, on none, counted until filed or
        // released.
        self.reserved += 1;
        let request_id = (self.sequence << INDEX_BITS) | index as u64;
        self.sequence += 1;
        Some((index, request_id))
    }

    /// Gives back a reserved slot whose pend did not happen.
    fn release(&mut self, index: usize) {
        self.reserved = self.reserved.saturating_sub(1);
        self.push(Which::Free, index);
    }

    /// Files a request in the slot reserved for it under the id reserved
    /// with it (O(1)). The request only comes back if the slot does not
    /// exist, which a reservation rules out.
    fn file(
        &mut self,
        (index, request_id): (usize, u64),
        mut request: RequestBox,
    ) -> core::result::Result<u64, RequestBox> {
        let Some(slot) = self.slot_mut(index) else {
            return Err(request);
        };
        request.info.request_id = request_id;
        // INVARIANT: the slot takes over the box; the id names the slot;
        // requests are filed Queued, at the end of the queue; the
        // reservation is used up.
        slot.request_id = request_id;
        slot.request = Some(request);
        self.reserved = self.reserved.saturating_sub(1);
        self.push(Which::Queued, index);
        self.live += 1;
        self.queued += 1;
        Ok(request_id)
    }

    /// Empties slot `index` (back on the free list) and returns its request.
    fn remove(&mut self, index: usize) -> Option<RequestBox> {
        let state = self.request_at(index)?.state;
        self.take_off(state.list(), index);
        if state == RequestState::Queued {
            self.queued = self.queued.saturating_sub(1);
        }
        let slot = self.slot_mut(index)?;
        let request = core::mem::take(slot).request?;
        // INVARIANT: the slot is empty again, and free.
        self.push(Which::Free, index);
        self.live -= 1;
        Some(request)
    }

    /// The slot of `request_id`, if that request is still in the table.
    fn index_of(&self, request_id: u64) -> Option<usize> {
        let index = (request_id & INDEX_MASK) as usize;
        let slot = self.slots.as_ref()?.get(index)?;
        (slot.request.is_some() && slot.request_id == request_id).then_some(index)
    }

    /// Hands the oldest queued request to an agent (O(1)).
    fn next_queued(&mut self) -> Option<AskInfo> {
        let index = unlink(self.queue.head)?;
        self.take_off(Which::Queued, index);
        self.queued = self.queued.saturating_sub(1);
        let request = self.request_at(index)?;
        // INVARIANT: Delivered requests are on no list.
        request.state = RequestState::Delivered;
        Some(request.info)
    }

    /// Marks a request answered and returns what completing it needs. With
    /// `must_be_delivered`, only a request an agent has read qualifies.
    fn take_for_answer(&mut self, request_id: u64, verdict: Verdict, must_be_delivered: bool) -> Option<Completion> {
        let index = self.index_of(request_id)?;
        let qualifies = match self.request_at(index)?.state {
            RequestState::Delivered => true,
            RequestState::Queued => !must_be_delivered,
            RequestState::Answered(_) => false,
        };
        if !qualifies {
            return None;
        }
        self.settle(index, verdict)
    }

    /// The first unanswered request at or after slot `from` matching
    /// `which`, completion with its default verdict, and its slot.
    fn take_first_unanswered(
        &mut self,
        from: usize,
        which: &impl Fn(&AskInfo, u64) -> bool,
    ) -> Option<(usize, Completion)> {
        let slots = self.slots.as_ref()?;
        let index = slots.iter().enumerate().skip(from).find_map(|(index, slot)| {
            let request = slot.request.as_deref()?;
            (!matches!(request.state, RequestState::Answered(_)) && which(&request.info, request.deadline))
                .then_some(index)
        })?;
        let verdict = self.request_at(index)?.info.default_verdict;
        Some((index, self.settle(index, verdict)?))
    }

    /// Moves the request at `index` to Answered; at recv-accept, where no
    /// reauthorization follows, removes it. Returns what completing needs.
    fn settle(&mut self, index: usize, verdict: Verdict) -> Option<Completion> {
        let request = self.request_at(index)?;
        // INVARIANT: the operation leaves with the request's last
        // Queued/Delivered state; Answered requests hold none.
        let completion = Completion {
            request_id: request.info.request_id,
            operation: request.operation.take(),
            packet: request.packet.take(),
            verdict,
            connection: request.info.connection_key(),
            filter_id: request.info.filter_id,
        };
        let (before, inbound) = (request.state, request.info.inbound);
        if inbound {
            // No reauthorization follows: the request goes now.
            drop(self.remove(index));
            return Some(completion);
        }
        self.take_off(before.list(), index);
        if before == RequestState::Queued {
            self.queued = self.queued.saturating_sub(1);
        }
        // INVARIANT: from here the operation counts as completed (the caller
        // completes it once, outside the lock); Answered requests are on
        // the answered list.
        self.request_at(index)?.state = RequestState::Answered(verdict);
        self.push(Which::Answered, index);
        Some(completion)
    }

    /// Moves the deadline of every unanswered request matching `which`.
    fn mark_unanswered(&mut self, which: impl Fn(&AskInfo) -> bool, deadline: u64) -> usize {
        let mut marked = 0;
        for slot in self.slots.iter_mut().flat_map(|slots| slots.iter_mut()) {
            if let Some(request) = slot.request.as_deref_mut()
                && !matches!(request.state, RequestState::Answered(_))
                && which(&request.info)
            {
                request.deadline = deadline;
                marked += 1;
            }
        }
        marked
    }

    /// The first answered request satisfying `test`, walking the answered
    /// list only.
    fn find_answered(&self, mut test: impl FnMut(&PendedRequest) -> bool) -> Option<usize> {
        let slots = self.slots.as_ref()?;
        let mut cursor = self.answered.head;
        while let Some(index) = unlink(cursor) {
            let slot = slots.get(index)?;
            if slot.request.as_deref().is_some_and(&mut test) {
                return Some(index);
            }
            cursor = slot.next;
        }
        None
    }

    /// Walks the answered list from the request `resume` names (from the
    /// head if `None`, or if that request is no longer answered and in the
    /// table), testing each request once and taking those matching `which`
    /// into `batch`. Returns the request to resume at when the batch filled
    /// before the list's end, `None` once the walk is over.
    fn take_answered_batch(
        &mut self,
        resume: Option<u64>,
        which: &impl Fn(&AskInfo, u64) -> bool,
        batch: &mut [Option<RequestBox>],
    ) -> Option<u64> {
        let mut cursor = match resume.and_then(|request_id| self.index_of(request_id)) {
            // Ids are never reused, and Answered is a request's last state:
            // the same id, still answered, is still on the answered list.
            Some(index) if self.request_at(index).is_some_and(|r| matches!(r.state, RequestState::Answered(_))) => {
                link(index)
            }
            _ => self.answered.head,
        };
        let mut taken = 0;
        while let Some(index) = unlink(cursor) {
            let slot = self.slots.as_ref()?.get(index)?;
            if taken == batch.len() {
                return Some(slot.request_id);
            }
            cursor = slot.next;
            if slot.request.as_deref().is_some_and(|r| which(&r.info, r.deadline))
                && let Some(place) = batch.get_mut(taken)
            {
                *place = self.remove(index);
                taken += 1;
            }
        }
        None
    }

    fn take_answered_for(&mut self, info: &AskInfo) -> Option<RequestBox> {
        let index = self.find_answered(|r| r.info.same_connection(info))?;
        self.remove(index)
    }
}
