//! The filter engine model: registered callouts, management objects
//! (providers, sublayers, FWPM callouts, provider contexts, filters),
//! sessions, transactions and enumeration, and classification.
//!
//! Its modules depend one way, from the top of this list to the bottom,
//! and the folders are the layers (`tests/engine_layering.rs` fails on an
//! import cycle or a reference against this order):
//!
//! - this file: the public surface (what the driver's tests, `scenario`
//!   and `wfpctl` see as `engine::…`), and reset and leak reporting over
//!   every part;
//! - `api/`: entry points that drive the layers below: `callout_api.rs`
//!   (`FwpsCallout*`), `management_api.rs` (`Fwpm*`), `flows.rs` (flow
//!   contexts, `FwpsFlow*`, flowDeleteFn), `completion.rs`
//!   (`FwpsCompleteOperation0`), `injection.rs` (`FwpsInjectTransport*`)
//!   and `reauthorize.rs`; the last four classify again;
//! - `classification/`: `client.rs` (filter add and delete with their
//!   notifyFn calls, other client operations, and the classification of a
//!   connection through the filters of its layer), `classify_input.rs`,
//!   `classify_scope.rs` and `classify_out.rs` (what one classifyFn call is
//!   given and what it writes);
//! - `state/`: the engine's state, one concern per file, which never
//!   classifies: `engine_state.rs` (object tables behind the engine lock),
//!   `registration_gate.rs`, `callout_scope.rs`, `packets.rs`
//!   (NET_BUFFER_LISTs, clones, NDIS calls, the injection rules),
//!   `pending.rs` (completion handles, pended operations, the completion
//!   rules) and `reauthorization.rs` (live connections, what is due). A rule
//!   that needs a classification gets it as a parameter from the layer
//!   above (`pending::complete_operation`, `packets::inject_transport_*`);
//! - `model/`: plain data: `layers.rs`, `records.rs`, `connection.rs`,
//!   `classify_result.rs`, `packet_data.rs`.
//!
//! Inside a folder a file may use another of the same layer as long as no
//! cycle forms (`pending` uses `packets`, `packets` uses `reauthorization`).

mod api;
mod classification;
mod model;
mod state;

pub use api::callout_api::{FwpsCalloutRegister2, FwpsCalloutUnregisterById0};
pub use api::flows;
pub use api::management_api::*;
pub use classification::classify_out::{ClassifyOutTrace, take_classify_out_trace, trace_classify_out};
pub use classification::classify_scope;
pub use classification::client::*;
pub use model::classify_result::ClassifyResult;
pub use model::connection::Connection;
pub use model::layers::LayerInfo;
pub(crate) use model::layers::key_of;
pub use model::packet_data;
pub use model::records::{FilterAction, FilterSpec};
pub(crate) use state::engine_state::lock;

use crate::verifier::{ViolationKind, report};
use state::engine_state;

/// Packets at ALE_AUTH_RECV_ACCEPT and ALE_AUTH_CONNECT, their clones and
/// copies, and their injection: `state/packets.rs`, with the injection
/// entry points from `api/injection.rs`.
pub mod packets {
    pub use super::api::injection::{FwpsInjectTransportReceiveAsync0, FwpsInjectTransportSendAsync1};
    pub use super::state::packets::*;
    pub use super::state::pending::check_held_clones;
}

/// Pending at the ALE auth layers: `state/pending.rs`, with completion
/// from `api/completion.rs`.
pub mod pending {
    pub use super::api::completion::{FwpsCompleteOperation0, deliver_deferred_reauthorizations};
    pub use super::state::pending::*;
}

/// Reauthorization of live ALE connections: which are live and what is due
/// (`state/reauthorization.rs`), and the reauthorizing classifications
/// (`api/reauthorize.rs`).
pub mod reauthorization {
    pub use super::api::reauthorize::{next_packet, next_packet_in_opposite_direction, reauthorize};
    pub use super::state::reauthorization::*;
}

/// Reports what the driver left behind in the engine: open sessions,
/// enumerations, transactions and engine memory not freed.
pub(crate) fn report_leaks() -> usize {
    let engine = engine_state::lock();
    let mut leaks = 0;
    if !engine.sessions.is_empty() {
        report(
            ViolationKind::Leak,
            format!("{} engine session(s) still open (FwpmEngineClose0 missing)", engine.sessions.len()),
        );
        leaks += engine.sessions.len();
    }
    if !engine.enums.is_empty() {
        report(ViolationKind::Leak, format!("{} filter enumeration handle(s) not destroyed", engine.enums.len()));
        leaks += engine.enums.len();
    }
    if !engine.allocations.is_empty() {
        report(
            ViolationKind::Leak,
            format!("{} block(s) of engine memory not freed with FwpmFreeMemory0", engine.allocations.len()),
        );
        leaks += engine.allocations.len();
    }
    leaks += state::pending::report_leaks();
    leaks += api::flows::report_leaks();
    leaks += state::packets::report_leaks();
    if !engine.registered.is_empty() {
        report(ViolationKind::Leak, format!("{} callout(s) still registered after unload", engine.registered.len()));
        leaks += engine.registered.len();
    }
    leaks
}

/// Before a boot: no injection completion of the previous kernel is still
/// being delivered (they call into what the reset clears).
pub(crate) fn quiesce() {
    state::packets::quiesce();
}

/// Resets every part of the engine (a boot).
pub(crate) fn reset() {
    state::registration_gate::reset();
    state::reauthorization::reset();
    state::pending::reset();
    api::flows::reset();
    state::packets::reset();
    model::packet_data::reset();
    engine_state::reset();
}
