//! Reauthorization of live ALE connections (SDK "ALE Re-authorization";
//! WDD "Processing Classify Callouts Asynchronously"): after a connection
//! was authorized, the engine classifies it again, with
//! `FWP_CONDITION_FLAG_IS_REAUTHORIZE` in FLAGS and the reason in
//! REAUTHORIZE_REASON, when
//! - the policy at its layer changes (a filter is added or deleted there):
//!   on the connection's next packet (`FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE`);
//! - its packets arrive on a new interface (`..._NEW_ARRIVAL_INTERFACE`),
//!   or for any other documented reason a test names ([`reauthorize`]);
//! - a pended classification is completed at ALE_AUTH_CONNECT
//!   (`..._CLASSIFY_COMPLETION`, `pending.rs`).
//!
//! A reauthorization that blocks tears the connection down: it is no longer
//! live and gets no more packets. This file keeps the live connections and
//! what is due; the classifications themselves run in `api/reauthorize.rs`.

use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use fwps_types::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// A connection as the engine tells it apart: layer and 5-tuple.
type ConnectionKey = (u16, u8, IpAddr, u16, IpAddr, u16);

fn key_of(connection: &Connection) -> ConnectionKey {
    (
        connection.layer_id,
        connection.protocol,
        connection.local_address,
        connection.local_port,
        connection.remote_address,
        connection.remote_port,
    )
}

/// A live connection and the reasons it is due to be reauthorized for.
struct Live {
    connection: Connection,
    due: u32,
}

static LIVE: Mutex<Option<HashMap<ConnectionKey, Live>>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut HashMap<ConnectionKey, Live>) -> R) -> R {
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

fn is_auth_layer(layer_id: u16) -> bool {
    matches!(
        layer_id,
        FWPS_LAYER_ALE_AUTH_CONNECT_V4
            | FWPS_LAYER_ALE_AUTH_CONNECT_V6
            | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4
            | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6
    )
}

/// After a classification at an ALE auth layer: a permitted connection is
/// live (authorized); a blocked reauthorization tears it down. A pended
/// classification decides nothing yet.
pub(crate) fn classified(connection: &Connection, result: &ClassifyResult) {
    if !is_auth_layer(connection.layer_id) || result.pended.is_some() {
        return;
    }
    let key = key_of(connection);
    let initial = Connection {
        flags: connection.flags & !FWP_CONDITION_FLAG_IS_REAUTHORIZE,
        reauthorize_reason: 0,
        opposite_direction: false,
        ..connection.clone()
    };
    with(|live| {
        if result.permitted() {
            live.entry(key).or_insert(Live { connection: initial, due: 0 });
        } else {
            live.remove(&key);
        }
    });
}

/// A filter was added or deleted at `layer_id`: every live connection there
/// is reauthorized on its next packet.
pub(crate) fn policy_changed(layer_id: u16) {
    with(|live| {
        for connection in live.values_mut().filter(|l| l.connection.layer_id == layer_id) {
            connection.due |= fwp::FWP_CONDITION_REAUTHORIZE_REASON_POLICY_CHANGE;
        }
    });
}

/// Takes the reasons a live connection is due to be reauthorized for (0:
/// none); `None` if it is not live. `api/reauthorize.rs` reauthorizes it.
pub(crate) fn take_due(connection: &Connection) -> Option<u32> {
    with(|live| live.get_mut(&key_of(connection)).map(|l| std::mem::take(&mut l.due)))
}

/// Whether the engine holds `connection` as authorized and not torn down.
pub fn is_live(connection: &Connection) -> bool {
    with(|live| live.contains_key(&key_of(connection)))
}

/// Up to `limit` live connections, starting at the `skip`-th (for tests
/// that keep reauthorizations arriving while traffic runs).
pub fn live_connections(skip: usize, limit: usize) -> Vec<Connection> {
    with(|live| live.values().skip(skip).take(limit).map(|l| l.connection.clone()).collect())
}

/// Live connections at ALE auth layers.
pub fn live_count() -> usize {
    with(|live| live.len())
}

pub(crate) fn reset() {
    *LIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
}
