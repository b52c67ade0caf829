//! The `ask` policy on the classify path: pend the connection and queue a
//! request for the agent, or answer a reauthorization from the verdict kept
//! for it, or fall back to the filter's default verdict.
//!
//! At ALE_AUTH_RECV_ACCEPT completion does not reauthorize: the first
//! packet is deep-copied when the connection is pended (a shallow clone
//! must not wait for a person), and permitting injects the copy (see
//! `wfp::injection`). IPsec-protected inbound connections are not pended: the
//! copy could not be injected as it is (it keeps its AH/ESP header), so
//! the filter's default applies at once (counted in
//! `wfp::injection::COPIES.ipsec`).
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;
use crate::filters::filter_context::FilterContext;
use crate::filters::filter_counters::Counter;
use crate::filters::policy::AskTerms;
use crate::platform::status::NtStatus;
use crate::verdicts::pending::{AskInfo, PendOutcome};
use crate::wfp::callout_table;
use crate::wfp::ffi::{
    FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON, FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON,
    FWPS_LAYER_ALE_AUTH_CONNECT_V4, FWPS_LAYER_ALE_AUTH_CONNECT_V6, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
    FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6, fwp,
};
use crate::wfp::filter_view::{CompletionHandle, IncomingValues, LayerData, Metadata, PendedOperation};
use core::sync::atomic::Ordering;
use wfpcallout_wire::Verdict;

/// What classify answers for an ask filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AskDecision {
    /// Answer now with this verdict.
    Now(Verdict),
    /// Pended: answer BLOCK + ABSORB; the verdict comes later.
    Pended,
}

/// The connection as the agent will see it.
fn connection_info(
    context: &FilterContext,
    values: &IncomingValues<'_>,
    metadata: Option<&Metadata<'_>>,
    timeout_ms: u32,
    default_verdict: Verdict,
) -> AskInfo {
    let layer_id = values.layer_id();
    let connection = values.connection();
    AskInfo {
        request_id: 0,
        filter_id: context.filter_id(),
        process_id: metadata.and_then(Metadata::process_id).unwrap_or(0),
        layer_id,
        inbound: matches!(layer_id, FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6),
        protocol: connection.protocol,
        local_address: connection.local.0,
        local_port: connection.local.1,
        remote_address: connection.remote.0,
        remote_port: connection.remote.1,
        timeout_ms,
        default_verdict,
        label: context.policy().label,
    }
}

fn answer_default(context: &FilterContext, verdict: Verdict) -> AskDecision {
    context.count(Counter::Defaulted);
    STATE.pending.stats.defaulted.fetch_add(1, Ordering::Relaxed);
    AskDecision::Now(verdict)
}

/// Whether the FLAGS value says IPsec protects the traffic
/// (`FWP_CONDITION_FLAG_IS_IPSEC_SECURED`, as the inspect sample's
/// `IsSecureConnection` reads it).
fn is_ipsec_secured(flags: u32) -> bool {
    flags & fwp::FWP_CONDITION_FLAG_IS_IPSEC_SECURED != 0
}

/// The REAUTHORIZE_REASON field at an ALE authorization layer.
fn reauthorize_reason_field(layer_id: u16) -> Option<usize> {
    match layer_id {
        FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6 => {
            Some(FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON)
        }
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6 => {
            Some(FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON)
        }
        _ => None,
    }
}

/// A reauthorization (only the initial authorization can be pended). The
/// one that completing a pended connect triggers
/// (`FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION`) takes the
/// verdict kept for its request (so does one without a reason field);
/// every other reason (a policy change at the layer, a new arrival
/// interface, the opposite direction, ...) gets the verdict the connection
/// already has, which it keeps. A connection we never decided gets the
/// default.
fn reauthorization(
    context: &FilterContext,
    values: &IncomingValues<'_>,
    info: &AskInfo,
    default_verdict: Verdict,
) -> AskDecision {
    let reason = reauthorize_reason_field(info.layer_id).and_then(|field| values.uint32(field)).unwrap_or(0);
    // No reason (a field set without REAUTHORIZE_REASON) may be a completion.
    let completion = reason == 0 || reason & fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION != 0;
    if completion && let Some(verdict) = STATE.pending.take_reauthorization(info) {
        return AskDecision::Now(verdict);
    }
    match STATE.pending.verdicts.recall(&info.connection_key(), crate::platform::kernel::now_ticks()) {
        Some(verdict) => AskDecision::Now(verdict),
        None => answer_default(context, default_verdict),
    }
}

/// Decides an ask classification. `pend` wraps `FwpsPendOperation0` with the
/// classification's completion handle and returns the pended operation
/// (`CompletionHandle::pend`).
pub fn classify_ask(
    context: &FilterContext,
    values: Option<&IncomingValues<'_>>,
    metadata: Option<&Metadata<'_>>,
    terms: AskTerms,
    layer_data: Option<&LayerData<'_>>,
    pend: impl FnOnce(CompletionHandle<'_>) -> crate::platform::status::Result<PendedOperation>,
) -> AskDecision {
    let AskTerms { timeout_ms, default_verdict } = terms;
    let Some(values) = values else {
        return answer_default(context, default_verdict);
    };
    let info = connection_info(context, values, metadata, timeout_ms, default_verdict);
    let flags_field = callout_table::flags_field(info.layer_id);
    if flags_field.is_some_and(|field| values.is_reauthorization(field)) {
        return reauthorization(context, values, &info, default_verdict);
    }
    if !STATE.agents.connected() {
        return answer_default(context, default_verdict);
    }
    let Some(handle) = metadata.and_then(Metadata::completion_handle) else {
        return answer_default(context, default_verdict);
    };
    if info.inbound && flags_field.and_then(|field| values.uint32(field)).is_some_and(is_ipsec_secured) {
        // Its copy could not be receive-injected as it is (the AH/ESP
        // header stays in it): not pended, the default applies, counted.
        crate::wfp::injection::COPIES.ipsec.fetch_add(1, Ordering::Relaxed);
        return answer_default(context, default_verdict);
    }
    let packet = if info.inbound {
        let copied = layer_data.ok_or(NtStatus::INVALID_PARAMETER).and_then(|layer_data| {
            crate::wfp::injection::copy_packet(layer_data, values, metadata, true, info.remote_address)
        });
        match copied {
            Ok(packet) => Some(packet),
            Err(_) => return answer_default(context, default_verdict),
        }
    } else if let Some(layer_data) = layer_data {
        // The first datagram of a UDP/ICMP connection: completing flushes
        // it, so a copy is sent on a permit. Without a copy the connection
        // is still pended (the application retransmits, as Windows allows).
        crate::wfp::injection::copy_packet(layer_data, values, metadata, false, info.remote_address).ok()
    } else {
        None
    };
    let filter = context.acquire();
    match STATE.pending.pend(info, &filter, crate::platform::kernel::now_ticks(), packet, || pend(handle)) {
        PendOutcome::Pended(_) => {
            context.count(Counter::Pended);
            STATE.agents.request_available();
            AskDecision::Pended
        }
        PendOutcome::Immediate(verdict) => {
            context.count(Counter::Defaulted);
            AskDecision::Now(verdict)
        }
    }
}
