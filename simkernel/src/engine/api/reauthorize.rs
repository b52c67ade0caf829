//! The engine reauthorizing live connections (see `state/reauthorization.rs`
//! for when it does): a classification again, with
//! `FWP_CONDITION_FLAG_IS_REAUTHORIZE` in FLAGS and the reason in
//! REAUTHORIZE_REASON. Public as `engine::reauthorization::*`. The packet
//! it carries as layerData (or not) is `client.rs::layer_data_for`'s (Z9).

use crate::engine::classification::client::classify;
use crate::engine::model::classify_result::ClassifyResult;
use crate::engine::model::connection::Connection;
use crate::engine::state::reauthorization;
use fwps_types::*;

/// The next packet of a live connection: reauthorized first if a reason is
/// due (the result is returned; a BLOCK tears the connection down).
/// `None`: nothing was due (or the connection is not live).
pub fn next_packet(connection: &Connection) -> Option<ClassifyResult> {
    let due = reauthorization::take_due(connection)?;
    (due != 0).then(|| reauthorize(connection, due))
}

/// The next packet of a live connection arrives in the opposite direction
/// (an inbound packet of an outbound connection, ...): reauthorized first
/// if a reason is due, at the connection's own layer, with the metadata's
/// `packetDirection` the packet's (WDS inspect `inspect.c`: a re-auth at
/// ALE_AUTH_CONNECT "triggered by an inbound packet received immediately
/// after a policy change at ALE_AUTH_CONNECT layer").
pub fn next_packet_in_opposite_direction(connection: &Connection) -> Option<ClassifyResult> {
    let due = reauthorization::take_due(connection)?;
    (due != 0).then(|| reauthorize(&Connection { opposite_direction: true, ..connection.clone() }, due))
}

/// Reauthorizes a connection now, for `reason` (`FWP_CONDITION_REAUTHORIZE_REASON_*`).
pub fn reauthorize(connection: &Connection, reason: u32) -> ClassifyResult {
    let again = Connection {
        flags: connection.flags | FWP_CONDITION_FLAG_IS_REAUTHORIZE,
        reauthorize_reason: reason,
        ..connection.clone()
    };
    classify(&again)
}
