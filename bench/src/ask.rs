//! The ask policy with an agent connected: classifications pended while
//! `pending` others already wait, and the agent's read and answer (whose
//! completion triggers the engine's reauthorization classify).
//!
//! Everything goes through the simulated engine, which owns the completion
//! handles `FwpsPendOperation0` needs; the report separates the driver's
//! own instructions from the simulator's (see `bench/report.py`).

use crate::{Policy, World};
use wfpcallout::callbacks::state::STATE;
use wfpcallout_simkernel::engine::pending;
use wfpcallout_wire::Verdict;

/// The agent's file-object token.
const AGENT: u64 = 0xBE_AC4E;
/// Remote ports of the requests kept waiting (the measured ones use others).
const WAITING_PORTS: u16 = 20_000;

/// A driver with one ask filter, an agent, and requests waiting.
pub struct AskWorld {
    world: World,
    next_port: u16,
}

impl AskWorld {
    /// Loads the driver, adds the ask filter, connects the agent and pends
    /// `waiting` classifications, which the agent reads but leaves
    /// unanswered (so they stay in the table without being queued).
    pub fn new(waiting: usize) -> Self {
        let world = World::new(1, Policy::AskAgent);
        STATE.agents.attach(AGENT).expect("an agent slot");
        for i in 0..waiting {
            let result = world.classify_layer(WAITING_PORTS + i as u16);
            assert!(result.pended.is_some(), "request {i} pended");
        }
        while STATE.pending.take_next().is_some() {}
        assert_eq!(STATE.pending.live(), waiting);
        Self { world, next_port: 1_000 }
    }

    /// `count` new connections classified (each pended); returns how many
    /// were pended.
    pub fn ask(&mut self, count: usize) -> usize {
        (0..count)
            .filter(|_| {
                self.next_port += 1;
                self.world.classify_layer(self.next_port).pended.is_some()
            })
            .count()
    }

    /// The agent reads every queued request and permits it; each answer
    /// completes the operation, whose reauthorization classify takes the
    /// verdict. Returns how many were answered.
    pub fn answer_all(&mut self) -> usize {
        let mut answered = 0;
        while let Some(request) = STATE.pending.take_next() {
            STATE.pending.answer(request.request_id, Verdict::Permit).expect("a delivered request");
            answered += 1;
        }
        pending::take_completions();
        answered
    }

    /// Requests in the table.
    pub fn live(&self) -> usize {
        STATE.pending.live()
    }

    /// Disconnects the agent (its requests get their default verdict),
    /// unloads and checks for leaks and violations.
    pub fn finish(self) {
        STATE.agents.detach(AGENT, &STATE.pending);
        pending::take_completions();
        self.world.finish();
    }
}
