//! Stress: every concurrent path of the driver at once, bounded by
//! operation counts (never by wall-clock time), then reconciled.
//!
//! Worker threads run together against one loaded driver:
//! - classifiers: targeted classifications of live filters (verdict checked
//!   against the filter's policy) and whole-layer classifications;
//! - a filter churner: adds filters with assorted policies at every layer
//!   (ask filters at the connect layers, permit/audit/block at the flow
//!   layers) and deletes them, including while requests are pended and
//!   flows are tracked;
//! - two agents: one through the control IOCTLs (get request, set verdict,
//!   duplicate verdicts, disconnect and reconnect), one straight through
//!   the request table, answering by port parity;
//! - a timer: moves the virtual clock and runs the driver's timeout tick;
//! - a statistics reader: pages through `IOCTL_WFPCALLOUT_GET_STATS` and
//!   asks for the version;
//! - a flow establisher and a flow ender (flowDeleteFn on another thread).
//!
//! The agents, the timer and the reader run until the traffic workers are
//! done; then the driver is unloaded, with pended requests, tracked flows
//! and live filters still in place. On Windows nothing of the driver's own
//! runs concurrently with unload (the I/O manager calls the unload routine
//! only once every handle to the control device is closed, and the glue
//! stops the timer first); the engine's callbacks could, and unloading
//! while classifications are in flight is covered by
//! `unload_while_classifications_are_in_flight` below.
//! Afterwards every counter must reconcile: each pended classification
//! completed exactly once (completion operations unique, nothing left
//! pended), every context, request and flow freed (the pool is empty after
//! unload), and the verifier saw nothing.
//!
//! The operation count per worker is `WFPCALLOUT_STRESS_OPS` (default
//! 20000); the figures are printed (run with `--nocapture` to see them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::{FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V6, fwp};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::control::ioctls::{self, GET_STATS, GET_VERSION, SET_VERDICT};
use wfpcallout::platform::status::NtStatus;
use wfpcallout_scenario::{Harness, Layer};
use wfpcallout_simkernel::engine::{self, ClassifyResult, FilterAction, flows, packets, pending, reauthorization};
use wfpcallout_simkernel::vendor::Vendor;
use wfpcallout_simkernel::{clock, faults, pool, verifier};
use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, Label, LogLevel, PolicyAction, PolicyRepr, STATS_MAX_ENTRIES, STATS_REPLY_MAX_LEN,
    StatsQueryRepr, StatsReply, Verdict, VerdictMessageRepr, VersionInfoRepr,
};

/// The agent's file object, as the glue would pass it.
const AGENT_FILE: u64 = 0x57E5_5A6E;
/// Live filters the churner keeps, at most.
const MAX_LIVE_FILTERS: usize = 48;

fn ops_per_worker() -> u64 {
    std::env::var("WFPCALLOUT_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// A small deterministic generator (each thread has its own seed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Operations done, per kind, and what the checks saw.
#[derive(Default)]
struct Figures {
    classify_targeted: AtomicU64,
    classify_layer: AtomicU64,
    classify_raced_delete: AtomicU64,
    pended: AtomicU64,
    filters_added: AtomicU64,
    filters_deleted: AtomicU64,
    agent_requests_read: AtomicU64,
    requests_ignored: AtomicU64,
    verdicts_accepted: AtomicU64,
    verdicts_refused: AtomicU64,
    agent_disconnects: AtomicU64,
    timer_ticks: AtomicU64,
    stats_queries: AtomicU64,
    version_queries: AtomicU64,
    flows_established: AtomicU64,
    flows_ended: AtomicU64,
    reauthorizations: AtomicU64,
    insane_verdicts: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Shared between the workers.
struct Shared {
    figures: Figures,
    /// Live filters: id, layer, policy action.
    filters: Mutex<Vec<(u64, Layer, PolicyAction)>>,
    /// Every operation a classification pended (as the engine reported it).
    pended_operations: Mutex<Vec<usize>>,
    /// Flows established and not yet ended.
    flows: Mutex<Vec<u64>>,
    /// Workers still running their traffic (classify, churn, flows).
    traffic_running: AtomicU64,
}

fn policy(action: PolicyAction, label: &str) -> PolicyRepr {
    PolicyRepr { action, log_level: LogLevel::Off, label: Label::new(label).unwrap() }
}

fn random_action(rng: &mut XorShift, layer: Layer) -> PolicyAction {
    let verdict = if rng.below(2) == 0 { Verdict::Permit } else { Verdict::Block };
    match (layer, rng.below(5)) {
        // Flow layers: only what tracks flows (the others are refused there).
        (Layer::FlowV4 | Layer::FlowV6, 0 | 1) => PolicyAction::Permit,
        (Layer::FlowV4 | Layer::FlowV6, _) => PolicyAction::Audit,
        // Connect layers: mostly ask, so that pends are plentiful.
        (Layer::ConnectV4 | Layer::ConnectV6, 0..=2) => {
            PolicyAction::Ask { timeout_ms: 20 + rng.below(400) as u32, default_verdict: verdict }
        }
        (_, 0) => PolicyAction::Permit,
        (_, 1) => PolicyAction::Block,
        (_, 2) => PolicyAction::Audit,
        (_, 3) => PolicyAction::RateLimit { rate_per_sec: 1 + rng.below(1_000) as u32, burst: 1 + rng.below(8) as u32 },
        (_, _) => PolicyAction::Ask { timeout_ms: 100, default_verdict: verdict },
    }
}

const ALL_LAYERS: [Layer; 6] =
    [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6, Layer::FlowV4, Layer::FlowV6];

/// Whether a targeted classification's verdict fits the filter's policy.
fn verdict_is_sane(action: PolicyAction, result: &ClassifyResult) -> bool {
    let blocked_hard = !result.permitted() && result.hard;
    match action {
        PolicyAction::Permit | PolicyAction::Audit => result.permitted() && result.pended.is_none(),
        PolicyAction::Block => blocked_hard && result.pended.is_none(),
        PolicyAction::RateLimit { .. } => (result.permitted() || blocked_hard) && result.pended.is_none(),
        PolicyAction::Ask { default_verdict, .. } => match result.pended {
            // Pended: BLOCK + ABSORB with the write right cleared.
            Some(_) => blocked_hard && result.absorbed,
            // Not pended (no agent, queue full, recv-accept, failure):
            // the filter's default verdict at once.
            None => result.permitted() == (default_verdict == Verdict::Permit),
        },
    }
}

/// Counts a traffic worker as finished when it ends, also by a panic (so
/// the other workers stop and the test fails instead of hanging).
struct Finished<'a>(&'a Shared);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.traffic_running.fetch_sub(1, Ordering::AcqRel);
    }
}

fn record_pended(shared: &Shared, result: &ClassifyResult) {
    if let Some(operation) = result.pended {
        bump(&shared.figures.pended);
        shared.pended_operations.lock().unwrap().push(operation);
    }
}

fn classifier(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    for i in 0..ops {
        let port = 1 + rng.below(60_000) as u16;
        if i % 3 == 2 {
            let layer = ALL_LAYERS[rng.below(4) as usize];
            let result = engine::classify(&layer.connection(port));
            record_pended(shared, &result);
            bump(&shared.figures.classify_layer);
            continue;
        }
        let picked = {
            let filters = shared.filters.lock().unwrap();
            if filters.is_empty() { None } else { Some(filters[rng.below(filters.len() as u64) as usize]) }
        };
        let Some((id, layer, action)) = picked else {
            std::thread::yield_now();
            continue;
        };
        match engine::classify_filter(id, &layer.connection(port)) {
            // Deleted meanwhile: the engine no longer knows it, or its
            // rundown began before our classification reached it.
            Err(_) => bump(&shared.figures.classify_raced_delete),
            Ok(result) if result.decided_by.is_none() => {
                record_pended(shared, &result);
                bump(&shared.figures.classify_raced_delete);
            }
            // Deleted while the classification ran (the engine may deliver
            // DELETE to a classification in flight, CONFORMANCE N7): the
            // driver no longer finds the filter's context, never reads freed
            // memory, and answers from the word alone: a static policy its
            // own verdict (sane, counted above as targeted), any other the
            // default policy (permit), allowed here.
            Ok(result)
                if !verdict_is_sane(action, &result)
                    && result.permitted()
                    && result.pended.is_none()
                    && !engine::filter_ids().contains(&id) =>
            {
                bump(&shared.figures.classify_raced_delete);
            }
            Ok(result) => {
                record_pended(shared, &result);
                if !verdict_is_sane(action, &result) {
                    eprintln!("insane verdict: filter {id} {action:?} at {layer:?}: {result:?}");
                    bump(&shared.figures.insane_verdicts);
                }
                bump(&shared.figures.classify_targeted);
            }
        }
    }
}

/// Adds a filter calling our callout at `layer` with `repr` as its policy
/// (what `Harness::add_filter` does, without borrowing the harness).
fn add_filter(layer: Layer, repr: &PolicyRepr) -> Result<u64, i32> {
    let mut spec = Harness::filter_spec(layer);
    spec.provider_context = Some(engine::add_provider_context(&repr.to_bytes()));
    engine::add_filter(&spec)
}

fn churner(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    for n in 0..ops {
        let live = shared.filters.lock().unwrap().len();
        let add = live < 4 || (live < MAX_LIVE_FILTERS && rng.below(2) == 0);
        if add {
            let layer = ALL_LAYERS[rng.below(6) as usize];
            let action = random_action(&mut rng, layer);
            let repr = policy(action, &format!("stress-{n}"));
            let id = add_filter(layer, &repr).expect("add filter");
            shared.filters.lock().unwrap().push((id, layer, action));
            bump(&shared.figures.filters_added);
        } else {
            let victim = {
                let mut filters = shared.filters.lock().unwrap();
                let index = rng.below(filters.len() as u64) as usize;
                filters.swap_remove(index)
            };
            engine::delete_filter(victim.0).expect("delete filter");
            bump(&shared.figures.filters_deleted);
        }
    }
}

/// Agents, the timer and the reader run at least `ops` times, and on
/// while the traffic workers run.
fn keep_going(shared: &Shared, done: &mut u64, ops: u64) -> bool {
    *done += 1;
    *done <= ops || shared.traffic_running.load(Ordering::Acquire) != 0
}

/// The agent through the control IOCTLs, as the user-mode agent would.
fn ioctl_agent(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    let mut out = [0u8; ASK_REQUEST_LEN];
    let mut done = 0;
    while keep_going(shared, &mut done, ops) {
        if rng.below(200) == 0 {
            // The agent's handle closes: everything pending gets its default.
            ioctls::file_cleanup(AGENT_FILE);
            bump(&shared.figures.agent_disconnects);
        }
        match ioctls::agent_get_request(AGENT_FILE, &[], &mut out) {
            Ok(Some(len)) => {
                let request = AskRequestRepr::parse(&out[..len]).expect("the driver's request decodes");
                bump(&shared.figures.agent_requests_read);
                if rng.below(8) == 0 {
                    // Read and never answered: a timeout, the filter's
                    // deletion, a disconnect or unload must finish it.
                    bump(&shared.figures.requests_ignored);
                    continue;
                }
                let verdict = if request.remote_port.is_multiple_of(2) { Verdict::Permit } else { Verdict::Block };
                let message = VerdictMessageRepr { request_id: request.request_id, verdict }.to_bytes();
                let answers = if rng.below(10) == 0 { 2 } else { 1 };
                for _ in 0..answers {
                    match ioctls::dispatch_ioctl(SET_VERDICT, &message, &mut []) {
                        Ok(0) => bump(&shared.figures.verdicts_accepted),
                        // Finished meanwhile (timeout, delete, disconnect,
                        // unload), or the duplicate: refused, nothing changes.
                        Err(NtStatus::NOT_FOUND) => bump(&shared.figures.verdicts_refused),
                        other => panic!("SET_VERDICT: unexpected {other:?}"),
                    }
                }
            }
            Ok(None) => std::thread::yield_now(),
            Err(status) => panic!("GET_REQUEST: unexpected {status:?}"),
        }
    }
    ioctls::file_cleanup(AGENT_FILE);
}

/// A second agent that reads the request table directly (the glue's
/// "request available" pairing path).
fn table_agent(shared: &Shared, ops: u64) {
    let mut done = 0;
    while keep_going(shared, &mut done, ops) {
        match STATE.pending.take_next() {
            Some(request) => {
                bump(&shared.figures.agent_requests_read);
                let verdict = if request.remote_port.is_multiple_of(2) { Verdict::Permit } else { Verdict::Block };
                match STATE.pending.answer(request.request_id, verdict) {
                    Ok(()) => bump(&shared.figures.verdicts_accepted),
                    Err(_) => bump(&shared.figures.verdicts_refused),
                }
            }
            None => std::thread::yield_now(),
        }
    }
}

fn timer(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    let mut done = 0;
    while keep_going(shared, &mut done, ops) {
        clock::advance_ms(rng.below(20));
        wfpcallout::control::lifecycle::on_timer();
        bump(&shared.figures.timer_ticks);
        std::thread::yield_now();
    }
}

fn stats_reader(shared: &Shared, ops: u64) {
    let mut out = vec![0u8; STATS_REPLY_MAX_LEN];
    let mut done = 0;
    while keep_going(shared, &mut done, ops) {
        let mut after = 0;
        loop {
            let query = StatsQueryRepr { after_filter_id: after, max_entries: STATS_MAX_ENTRIES / 16 };
            let len = ioctls::dispatch_ioctl(GET_STATS, &query.to_bytes(), &mut out).expect("stats");
            bump(&shared.figures.stats_queries);
            let reply = StatsReply::parse_for_query(&out[..len], &query).expect("the driver's reply decodes");
            let mut last = after;
            for entry in reply.entries() {
                last = entry.expect("entries decode").filter_id;
            }
            if !reply.header().more || last == after {
                break;
            }
            after = last;
        }
        let mut version = [0u8; 16];
        let len = ioctls::dispatch_ioctl(GET_VERSION, &[], &mut version).expect("version");
        VersionInfoRepr::parse(&version[..len]).expect("version decodes");
        bump(&shared.figures.version_queries);
    }
}

fn flow_establisher(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    for _ in 0..ops {
        let layer = Layer::FLOWS[rng.below(2) as usize];
        let mut connection = layer.connection(1 + rng.below(60_000) as u16);
        connection.local_port = rng.below(65_536) as u16;
        let (handle, _result) = flows::establish_flow(&connection);
        bump(&shared.figures.flows_established);
        shared.flows.lock().unwrap().push(handle);
    }
}

fn flow_ender(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    let mut ended = 0;
    // A quarter of the flows stay open: unload must remove their contexts.
    while ended < ops * 3 / 4 {
        let handle = {
            let mut live = shared.flows.lock().unwrap();
            if live.is_empty() {
                None
            } else {
                let index = rng.below(live.len() as u64) as usize;
                Some(live.swap_remove(index))
            }
        };
        match handle {
            Some(handle) => {
                flows::end_flow(handle);
                bump(&shared.figures.flows_ended);
                ended += 1;
            }
            None if shared.traffic_running.load(Ordering::Acquire) <= 1 => break,
            None => std::thread::yield_now(),
        }
    }
}

/// Reauthorizations keep arriving while the traffic runs, as on a machine
/// where other software changes the policy: live connections get their
/// next packet (reauthorized when a filter change is due) or a
/// new-arrival-interface reauthorization.
fn reauthorizer(shared: &Shared, seed: u64, ops: u64) {
    let mut rng = XorShift(seed);
    for _ in 0..ops {
        let live = reauthorization::live_count();
        if live == 0 {
            std::thread::yield_now();
            continue;
        }
        let skip = rng.below(live as u64) as usize;
        for connection in reauthorization::live_connections(skip, 1) {
            let delivered = if rng.below(4) == 0 {
                Some(reauthorization::reauthorize(
                    &connection,
                    fwp::FWP_CONDITION_REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE,
                ))
            } else {
                reauthorization::next_packet(&connection)
            };
            if delivered.is_some() {
                bump(&shared.figures.reauthorizations);
            }
        }
    }
}

#[test]
fn everything_at_once_then_unload_and_reconcile() {
    let ops = ops_per_worker();
    let mut harness = Harness::load();
    let shared = Arc::new(Shared {
        figures: Figures::default(),
        filters: Mutex::new(Vec::new()),
        pended_operations: Mutex::new(Vec::new()),
        flows: Mutex::new(Vec::new()),
        traffic_running: AtomicU64::new(0),
    });

    // Another vendor beside us: inspection callouts in a sublayer above
    // ours at every authorization layer, a hard permit above (outbound to
    // port 7) and a block below (inbound from port 61,000, which no
    // traffic here uses). Its install is a policy change at every layer.
    let mut vendor = Vendor::install(harness.kernel.device_object()).unwrap();
    vendor.add_static_filter(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, true, FilterAction::Permit, true, 7).unwrap();
    vendor
        .add_static_filter(fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, false, FilterAction::Block, false, 61_000)
        .unwrap();

    std::thread::scope(|scope| {
        // Traffic: classifiers, the churner, the flow threads and the
        // reauthorizations.
        let traffic = 6;
        shared.traffic_running.store(traffic, Ordering::Release);
        for worker in 0..2u64 {
            let shared = &*shared;
            scope.spawn(move || {
                let _finished = Finished(shared);
                classifier(shared, 0x1234_5678 + worker, ops);
            });
        }
        {
            let shared = &*shared;
            scope.spawn(move || {
                let _finished = Finished(shared);
                churner(shared, 0xC0FF_EE00, ops);
            });
        }
        {
            let shared = &*shared;
            scope.spawn(move || {
                let _finished = Finished(shared);
                flow_establisher(shared, 0xF10E, ops);
            });
            scope.spawn(move || {
                let _finished = Finished(shared);
                flow_ender(shared, 0xE4D, ops);
            });
            scope.spawn(move || {
                let _finished = Finished(shared);
                reauthorizer(shared, 0x4EA0, ops / 4);
            });
        }
        // The agents, the timer and the statistics reader run until the
        // traffic is over.
        let agents = [
            scope.spawn({
                let shared = &*shared;
                move || ioctl_agent(shared, 0xA6E7, ops)
            }),
            scope.spawn({
                let shared = &*shared;
                move || table_agent(shared, ops)
            }),
            scope.spawn({
                let shared = &*shared;
                move || timer(shared, 0x7137, ops)
            }),
            scope.spawn({
                let shared = &*shared;
                move || stats_reader(shared, ops / 10)
            }),
        ];
        for agent in agents {
            agent.join().unwrap();
        }
    });
    // A last burst of asks that nobody will answer, so that unload finds
    // requests pended (the traffic's were all finished when the agent
    // went), as well as flows still tracked and filters still live.
    harness.connect_agent(AGENT_FILE + 1);
    for port in 0..64 {
        for layer in [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6] {
            record_pended(&shared, &engine::classify(&layer.connection(50_000 + port)));
        }
    }
    // The final unload.
    let pending_at_unload = STATE.pending.live();
    let flows_at_unload = STATE.flows.len();
    let filters_at_unload = STATE.table.len();
    harness.unload();

    vendor.uninstall();
    // Flows still open end now; their contexts went at unload.
    for handle in shared.flows.lock().unwrap().drain(..) {
        flows::end_flow(handle);
    }
    for (id, _, _) in shared.filters.lock().unwrap().drain(..) {
        harness.delete_filter(id).unwrap();
    }

    // Reconcile. Every pended classification completed exactly once.
    let completions = pending::take_completions();
    let completed: HashSet<usize> = completions.iter().map(|c| c.operation).collect();
    assert_eq!(completed.len(), completions.len(), "an operation was completed twice");
    let pended = shared.pended_operations.lock().unwrap();
    let pended_set: HashSet<usize> = pended.iter().copied().collect();
    assert_eq!(pended_set.len(), pended.len(), "the engine handed out an operation twice");
    assert_eq!(pended_set, completed, "pended operations and completions differ");
    assert_eq!(pending::pended_count(), 0, "pended operations never completed");
    assert_eq!(STATE.pending.stats.completed.load(Ordering::Relaxed), completions.len() as u64);
    // At ALE_AUTH_CONNECT every completion ran a reauthorization that
    // reached a verdict.
    // At ALE_AUTH_CONNECT every completion ran a reauthorization (and
    // carried no packet); at ALE_AUTH_RECV_ACCEPT none did.
    for completion in &completions {
        let connect =
            matches!(completion.connection.layer_id, FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6);
        assert_eq!(completion.reauthorization.is_some(), connect, "{completion:?}");
        assert!(!(connect && completion.with_packet), "{completion:?}");
    }
    // Permitted inbound connections were reinjected; our ask filters
    // recognised the packets as ours (none was asked about again), while our
    // other filters and the vendor's judged them by their policies (so some
    // may be blocked: README, "Our own injected packets"). An injected
    // packet may travel after its injection returned (CONFORMANCE I7).
    packets::deliver_injection_completions();
    let reinjected = packets::take_reinjected();
    let reasked = reinjected.iter().filter(|(_, result)| result.pended.is_some()).count();
    let reinjected_blocked = reinjected.iter().filter(|(_, result)| !result.permitted()).count();
    let f = &shared.figures;
    assert_eq!(get(&f.insane_verdicts), 0, "verdicts that do not fit their filter's policy");
    assert_eq!(STATE.table.len(), 0);
    assert_eq!(STATE.flows.len(), 0);
    assert_eq!(STATE.pending.live(), 0);
    let (allocations, frees) = pool::totals();
    let violations = verifier::violations().len();
    println!(
        "stress figures: ops/worker={ops} at_unload(pending={pending_at_unload} flows={flows_at_unload} \
         filters={filters_at_unload}) classify_targeted={} classify_layer={} classify_raced_delete={} \
         pended={} completions={} verdicts_accepted={} verdicts_refused={} agent_requests_read={} \
         requests_ignored={} agent_disconnects={} timed_out={} timer_ticks={} filters_added={} filters_deleted={} \
         reinjected={} reinjected_blocked={reinjected_blocked} flows_established={} flows_tracked={} flows_ended={} reauthorizations={} vendor_inspected={} stats_queries={} version_queries={} \
         pool_allocations={allocations} pool_frees={frees} faults_injected={} violations={violations}",
        get(&f.classify_targeted),
        get(&f.classify_layer),
        get(&f.classify_raced_delete),
        get(&f.pended),
        completions.len(),
        get(&f.verdicts_accepted),
        get(&f.verdicts_refused),
        get(&f.agent_requests_read),
        get(&f.requests_ignored),
        get(&f.agent_disconnects),
        STATE.pending.stats.timed_out.load(Ordering::Relaxed),
        get(&f.timer_ticks),
        get(&f.filters_added),
        get(&f.filters_deleted),
        reinjected.len(),
        get(&f.flows_established),
        STATE.flows.stats.associated.load(Ordering::Relaxed),
        get(&f.flows_ended),
        get(&f.reauthorizations),
        Vendor::inspected(),
        get(&f.stats_queries),
        get(&f.version_queries),
        faults::injected(),
    );
    assert!(get(&f.pended) > 0 && get(&f.verdicts_accepted) > 0, "the asynchronous path was exercised");
    assert_eq!(reasked, 0, "a reinjected packet was not recognised as ours by an ask filter");
    assert!(STATE.flows.stats.associated.load(Ordering::Relaxed) > 0, "flows were tracked");
    // Every context, request and flow freed: the pool is empty, and the
    // engine holds nothing of ours.
    harness.kernel.assert_unloaded_clean();
}

/// Unload while classifications and flows are still arriving. Unload
/// unregisters the callouts, then closes the driver's rundown and waits for
/// classifyFn/notifyFn calls already running before it frees any context
/// (`lifecycle::unload`); under AddressSanitizer a missing wait shows as a
/// heap-use-after-free in `decide_with`. Unload runs once per round, as on
/// Windows (an unload cannot fail or be retried): it must come back with
/// every callout unregistered however busy the flows keep it.
/// Oversubscribed: twice as many traffic threads as the machine has cores.
/// Rounds: `WFPCALLOUT_PROBE_ROUNDS` (default 1,000 load/traffic/unload
/// rounds).
#[test]
fn unload_while_classifications_are_in_flight() {
    let rounds: u64 = std::env::var("WFPCALLOUT_PROBE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let workers = 2 * std::thread::available_parallelism().map_or(2, usize::from) as u64;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut harness = Harness::load();
        harness.connect_agent(AGENT_FILE);
        let mut ids = Vec::new();
        for (i, layer) in ALL_LAYERS.iter().enumerate() {
            let action = match layer {
                Layer::FlowV4 | Layer::FlowV6 => PolicyAction::Permit,
                Layer::ConnectV4 => PolicyAction::Ask { timeout_ms: 1000, default_verdict: Verdict::Permit },
                _ => PolicyAction::Audit,
            };
            ids.push((add_filter(*layer, &policy(action, &format!("probe-{i}"))).unwrap(), *layer));
        }
        let stop = AtomicBool::new(false);
        let open_flows = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (stop, ids, open_flows) = (&stop, &ids, &open_flows);
                scope.spawn(move || {
                    let mut rng = XorShift(round * 17 + worker + 1);
                    while !stop.load(Ordering::Acquire) {
                        let (id, layer) = ids[rng.below(ids.len() as u64) as usize];
                        let port = rng.below(60_000) as u16;
                        match layer {
                            Layer::FlowV4 | Layer::FlowV6 => {
                                let (handle, _) = flows::establish_flow(&layer.connection(port));
                                open_flows.lock().unwrap().push(handle);
                            }
                            _ => {
                                let _ = engine::classify_filter(id, &layer.connection(port));
                            }
                        }
                    }
                });
            }
            // Let the traffic start (iterations would do as well; the
            // point is only that unload overlaps it).
            while open_flows.lock().unwrap().len() < 8 {
                std::thread::yield_now();
            }
            harness.unload();
            stop.store(true, Ordering::Release);
        });
        for handle in open_flows.lock().unwrap().drain(..) {
            flows::end_flow(handle);
        }
        for (id, _) in ids {
            harness.delete_filter(id).unwrap();
        }
        let _ = pending::take_completions();
        let _ = packets::take_reinjected();
        let clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.kernel.assert_unloaded_clean()));
        if let Err(panic) = clean {
            failures.push(format!("round {round}: {}", panic.downcast_ref::<String>().cloned().unwrap_or_default()));
        }
    }
    println!("unload during traffic: {} of {rounds} rounds failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
