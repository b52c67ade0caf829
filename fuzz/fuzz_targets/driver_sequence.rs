//! The driver driven by the fuzzer through the simulated kernel: the input
//! is a program of operations (add a filter whose policy blob is the next
//! bytes, add a filter with a well-formed policy, classify one filter or a
//! whole layer, delete a filter, connect/disconnect the agent, answer a
//! request through the IOCTLs, let time pass, establish and end flows,
//! send any IOCTL, send an unknown notify type, lose DELETEs, unload and
//! reload). After each input: unload, and the simulated kernel's checks
//! (no leak, no verifier violation), every pended operation completed
//! exactly once, and every verdict one its filter's policy allows.
#![no_main]

use fwps_types::STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER;
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use wfpcallout::callbacks::state::STATE;
use wfpcallout::control::ioctls;
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::clock;
use wfpcallout_simkernel::engine::{self, flows, packets, pending};
use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, Label, LogLevel, PolicyAction, PolicyRepr, Verdict, VerdictMessageRepr,
};

/// Operations per input, at most (each input boots a kernel).
const MAX_OPERATIONS: usize = 64;
const AGENT_FILE: u64 = 0xF022;
const LAYERS: [Layer; 6] =
    [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6, Layer::FlowV4, Layer::FlowV6];

/// The program's input, consumed front to back; reads past the end give 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        let len = len.min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A well-formed policy built from the input (so that deeper paths than
/// the decoder's refusals are reached).
fn policy(input: &mut Input<'_>) -> PolicyRepr {
    let verdict = if input.byte() & 1 == 0 { Verdict::Permit } else { Verdict::Block };
    let action = match input.byte() % 5 {
        0 => PolicyAction::Permit,
        1 => PolicyAction::Block,
        2 => PolicyAction::Audit,
        3 => PolicyAction::RateLimit {
            rate_per_sec: 1 + u32::from(input.u16()) % 1_000,
            burst: 1 + u32::from(input.byte()) % 16,
        },
        _ => PolicyAction::Ask { timeout_ms: 1 + input.u32() % 60_000, default_verdict: verdict },
    };
    let log_level = match input.byte() % 4 {
        0 => LogLevel::Off,
        1 => LogLevel::Error,
        2 => LogLevel::Info,
        _ => LogLevel::Trace,
    };
    let len = usize::from(input.byte() % 16);
    let text: String = input.bytes(len).iter().map(|b| char::from(b'a' + b % 26)).collect();
    PolicyRepr { action, log_level, label: Label::new(&text).unwrap_or_default() }
}

/// What the program has made so far.
#[derive(Default)]
struct World {
    /// Live filters: id, layer.
    filters: Vec<(u64, Layer)>,
    /// Every filter added with a well-formed policy, by id: its action.
    actions: HashMap<u64, PolicyAction>,
    /// Flows established and not ended.
    flows: Vec<u64>,
    /// Operations classifications pended.
    pended: Vec<usize>,
}

fn pick<T: Copy>(items: &[T], input: &mut Input<'_>) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    items.get(usize::from(input.byte()) % items.len()).copied()
}

/// The verdict of a targeted classification must fit the policy the
/// driver holds for the filter (or the default when it holds none).
fn check_verdict(filter: u64, result: &engine::ClassifyResult) {
    let action = STATE.table.get(filter).map_or(PolicyRepr::DEFAULT.action, |c| c.policy().action);
    let ok = match action {
        PolicyAction::Permit | PolicyAction::Audit => result.permitted(),
        PolicyAction::Block => !result.permitted() && result.hard,
        PolicyAction::RateLimit { .. } => result.permitted() || result.hard,
        PolicyAction::Ask { default_verdict, .. } => match result.pended {
            Some(_) => !result.permitted() && result.hard && result.absorbed,
            None => result.permitted() == (default_verdict == Verdict::Permit),
        },
    };
    assert!(ok, "filter {filter} with {action:?} answered {result:?}");
}

fn step(harness: &mut Harness, world: &mut World, input: &mut Input<'_>) {
    match input.byte() % 16 {
        // A filter whose provider context is the next bytes, as they are.
        0 => {
            let Some(layer) = pick(&LAYERS, input) else { return };
            let len = usize::from(input.byte() % 96);
            let blob = input.bytes(len).to_vec();
            match harness.add_filter(layer, PolicySource::Bytes(&blob)) {
                Ok(id) => {
                    assert!(blob.is_empty() || PolicyRepr::parse(&blob).is_ok(), "a malformed blob got in");
                    world.filters.push((id, layer));
                }
                Err(status) => {
                    assert!(status < 0);
                    // A well-formed blob is vetoed only for a policy that
                    // cannot work at ALE_FLOW_ESTABLISHED (block, rate-limit,
                    // ask: a filter there must not return a verdict).
                    let refused_at_flow = matches!(layer, Layer::FlowV4 | Layer::FlowV6)
                        && PolicyRepr::parse(&blob)
                            .is_ok_and(|p| !matches!(p.action, PolicyAction::Permit | PolicyAction::Audit))
                        && status == STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER;
                    assert!(
                        PolicyRepr::parse(&blob).is_err() || refused_at_flow,
                        "a well-formed blob was vetoed ({status:#x})"
                    );
                }
            }
        }
        // A filter with a well-formed policy (or none at all).
        1 | 2 => {
            let Some(layer) = pick(&LAYERS, input) else { return };
            let repr = policy(input);
            let source = if input.byte().is_multiple_of(8) { PolicySource::None } else { PolicySource::Policy(&repr) };
            let with_policy = matches!(source, PolicySource::Policy(_));
            if let Ok(id) = harness.add_filter(layer, source) {
                if with_policy {
                    world.actions.insert(id, repr.action);
                }
                world.filters.push((id, layer));
            }
        }
        3 | 4 => {
            let Some((id, layer)) = pick(&world.filters, input) else { return };
            let port = input.u16();
            if let Ok(result) = engine::classify_filter(id, &layer.connection(port)) {
                world.pended.extend(result.pended);
                if result.decided_by.is_some() {
                    check_verdict(id, &result);
                }
            }
        }
        5 => {
            let Some(layer) = pick(&LAYERS[..4], input) else { return };
            let result = engine::classify(&layer.connection(input.u16()));
            world.pended.extend(result.pended);
        }
        6 => {
            let Some(index) = (!world.filters.is_empty()).then(|| usize::from(input.byte()) % world.filters.len())
            else {
                return;
            };
            let (id, _) = world.filters.swap_remove(index);
            if input.byte() & 0x80 != 0 {
                // WFP loses the DELETE: the driver keeps the context until unload.
                engine::lose_delete_notifications(1);
            }
            harness.delete_filter(id).expect("a live filter deletes");
        }
        7 => {
            if input.byte() & 1 == 0 {
                let mut out = [0u8; ASK_REQUEST_LEN];
                let _ = ioctls::agent_get_request(AGENT_FILE, &[], &mut out);
            } else {
                ioctls::file_cleanup(AGENT_FILE);
            }
        }
        // The agent answers the next request, or sends a guess.
        8 | 9 => {
            let mut out = [0u8; ASK_REQUEST_LEN];
            let verdict = if input.byte() & 1 == 0 { Verdict::Permit } else { Verdict::Block };
            let request_id = match ioctls::agent_get_request(AGENT_FILE, &[], &mut out) {
                Ok(Some(len)) => AskRequestRepr::parse(&out[..len]).expect("the driver's request decodes").request_id,
                _ => u64::from(input.byte()),
            };
            let message = VerdictMessageRepr { request_id, verdict }.to_bytes();
            let _ = ioctls::dispatch_ioctl(ioctls::SET_VERDICT, &message, &mut []);
        }
        10 => {
            clock::advance_ms(u64::from(input.u16()));
            wfpcallout::control::lifecycle::on_timer();
        }
        11 => {
            let Some(layer) = pick(&[Layer::FlowV4, Layer::FlowV6], input) else { return };
            let (handle, result) = flows::establish_flow(&layer.connection(input.u16()));
            world.pended.extend(result.pended);
            world.flows.push(handle);
        }
        12 => {
            if !world.flows.is_empty() {
                let index = usize::from(input.byte()) % world.flows.len();
                flows::end_flow(world.flows.swap_remove(index));
            }
        }
        // Any IOCTL code with any buffers.
        13 => {
            let code = match input.byte() % 5 {
                0 => ioctls::GET_VERSION,
                1 => ioctls::GET_STATS,
                2 => ioctls::SET_VERDICT,
                3 => ioctls::GET_REQUEST,
                _ => input.u32(),
            };
            let len = usize::from(input.byte());
            let buffer = input.bytes(len).to_vec();
            let mut out = vec![0u8; usize::from(input.u16() % 4096)];
            match ioctls::dispatch_ioctl(code, &buffer, &mut out) {
                Ok(written) => assert!(written <= out.len()),
                Err(status) => assert!(!status.is_success()),
            }
        }
        14 => {
            if let Some((id, _)) = pick(&world.filters, input) {
                let notify_type = i32::from(input.byte()) - 1;
                if !(0..=1).contains(&notify_type) {
                    let _ = engine::send_notify(id, notify_type);
                }
            }
        }
        // Unload and load again: filters stay in the engine and are adopted.
        _ => {
            harness.unload();
            if harness.initialize().is_err() {
                // Cannot fail without injected faults; end the program.
                panic!("reload failed");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut harness = Harness::load();
    let mut world = World::default();
    let mut input = Input(data);
    let mut operations = 0;
    while !input.is_empty() && operations < MAX_OPERATIONS {
        step(&mut harness, &mut world, &mut input);
        operations += 1;
    }
    harness.unload();
    for handle in world.flows.drain(..) {
        flows::end_flow(handle);
    }
    for (id, _) in world.filters.drain(..) {
        harness.delete_filter(id).expect("a live filter deletes");
    }
    let completions = pending::take_completions();
    let completed: HashSet<usize> = completions.iter().map(|c| c.operation).collect();
    assert_eq!(completed.len(), completions.len(), "an operation was completed twice");
    let pended: HashSet<usize> = world.pended.iter().copied().collect();
    assert_eq!(pended, completed, "pended and completed operations differ");
    assert_eq!(pending::pended_count(), 0);
    // A packet we reinjected passes our ask filters (it is ours); every
    // other filter of ours judges it by its policy (README, "Our own
    // injected packets"), so only such a filter may have stopped it.
    let reinjected = packets::take_reinjected();
    for (_, result) in &reinjected {
        let judged_by_policy = result
            .decided_by
            .and_then(|id| world.actions.get(&id))
            .is_some_and(|action| !matches!(action, PolicyAction::Ask { .. }));
        assert!(result.permitted() || judged_by_policy, "a reinjected packet was stopped by an ask filter: {result:?}");
    }
    harness.kernel.assert_unloaded_clean();
});
