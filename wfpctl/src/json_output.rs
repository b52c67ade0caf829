//! What wfpctl prints with `--json`: the same data as the text tables of
//! [`crate::output`], as JSON documents with stable field names (listed in
//! `docs/WALKTHROUGH.md`, "Scripting with --json"). Numbers are numbers,
//! absent values are `null`, names are the command line's words
//! (`connect-v4`, `rate-limit`, `permit`).
#![forbid(unsafe_code)]

use wfpcallout_wire::{
    AskRequestRepr, Direction, FilterCounters, FilterOrigin, FilterStatsEntryRepr, GlobalStatsRepr, PolicyAction,
    PolicyRepr, StatsHeaderRepr, VERSION_FLAG_ADOPTION_COMPLETE, VERSION_FLAG_AGENT_CONNECTED, VERSION_FLAG_LOADED,
};

use crate::backend::{DEVICE_PATH, ServiceState};
use crate::filter_spec::{Condition, FilterSpec, protocol_name};
use crate::json::Json;
use crate::output::{FilterRow, StatusReport};
use crate::policy::{action_name, log_level_name, verdict_name};

/// A policy: `{"action":"rate-limit","rate_per_sec":10,"burst":20,
/// "timeout_ms":null,"default":null,"log":"off","label":"web"}`. Every
/// member is always present (`null` where the action has no such
/// parameter).
pub fn policy(policy: &PolicyRepr) -> Json {
    let (rate, burst, timeout, default) = match policy.action {
        PolicyAction::RateLimit { rate_per_sec, burst } => (Some(rate_per_sec), Some(burst), None, None),
        PolicyAction::Ask { timeout_ms, default_verdict } => (None, None, Some(timeout_ms), Some(default_verdict)),
        PolicyAction::Permit | PolicyAction::Block | PolicyAction::Audit => (None, None, None, None),
    };
    Json::object()
        .with("action", action_name(&policy.action))
        .with("rate_per_sec", rate)
        .with("burst", burst)
        .with("timeout_ms", timeout)
        .with("default", default.map(verdict_name))
        .with("log", log_level_name(policy.log_level))
        .with("label", policy.label.as_str())
}

/// Conditions: `[{"field":"remote-port","value":"5000-5100"}]`; the value
/// is the command line's text (`tcp`, `443`, `10.0.0.0/8`).
pub fn conditions(conditions: &[Condition]) -> Json {
    Json::Array(
        conditions
            .iter()
            .map(|condition| {
                Json::object()
                    .with("field", condition.field.name())
                    .with("value", condition.value.text(condition.field))
            })
            .collect(),
    )
}

/// `filter add`: `{"filter_id":…,"layer":…,"conditions":[…],"policy":{…},"name":…}`.
pub fn filter_added(id: u64, spec: &FilterSpec) -> Json {
    Json::object()
        .with("filter_id", id)
        .with("layer", spec.target.to_string())
        .with("conditions", conditions(&spec.conditions))
        .with("policy", policy(&spec.policy))
        .with("name", spec.name.as_str())
}

/// `filter delete`: `{"deleted":[ids],"failed":[{"filter_id":…,"error":…}]}`.
pub fn filters_deleted(deleted: &[u64], failed: &[(u64, String)]) -> Json {
    Json::object().with("deleted", deleted.to_vec()).with(
        "failed",
        Json::Array(
            failed
                .iter()
                .map(|(id, error)| Json::object().with("filter_id", *id).with("error", error.as_str()))
                .collect(),
        ),
    )
}

/// A filter's counters, by the wire's names (`matched`, `rate_limited`, …).
pub fn counters(counters: &FilterCounters) -> Json {
    FilterCounters::NAMES
        .iter()
        .zip(counters.to_array())
        .fold(Json::object(), |object, (name, value)| object.with(name, value))
}

fn driver_view(entry: &FilterStatsEntryRepr) -> Json {
    Json::object()
        .with("layer_id", entry.layer_id)
        .with("policy", policy(&entry.policy))
        .with(
            "origin",
            match entry.origin {
                FilterOrigin::Notified => "added",
                FilterOrigin::Adopted => "adopted",
            },
        )
        .with("references", entry.references)
        .with("counters", counters(&entry.counters))
}

/// `filter list`: `{"counters_read":bool,"filters":[{"filter_id":…,
/// "layer":…|null,"name":…|null,"conditions":[…]|null,
/// "other_conditions":…|null,"driver":{…}|null}]}`. `engine` members are
/// `null` for a filter only the driver knows; `driver` is `null` when the
/// driver holds no context for it or its statistics could not be read
/// (`counters_read` says which).
pub fn filter_list(rows: &[FilterRow<'_>], counters_read: bool) -> Json {
    let filters = rows
        .iter()
        .map(|row| {
            let layer = row.engine.and_then(|filter| filter.target).map(|target| target.to_string());
            Json::object()
                .with("filter_id", row.id)
                .with("layer", layer)
                .with("name", row.engine.map(|filter| filter.name.clone()))
                .with("conditions", row.engine.map_or(Json::Null, |filter| conditions(&filter.conditions)))
                .with("other_conditions", row.engine.map(|filter| filter.other_conditions))
                .with("driver", row.stats.map_or(Json::Null, driver_view))
        })
        .collect();
    Json::object().with("counters_read", counters_read).with("filters", Json::Array(filters))
}

/// `stats`: `{"filter_contexts_alive":…,"counters":{"filters_added":…,…}}`.
pub fn stats(header: &StatsHeaderRepr) -> Json {
    let counters = GlobalStatsRepr::NAMES
        .iter()
        .zip(header.global.to_array())
        .fold(Json::object(), |object, (name, value)| object.with(name, value));
    Json::object().with("filter_contexts_alive", header.total_filters).with("counters", counters)
}

fn service(state: &Result<ServiceState, String>) -> Json {
    match state {
        Ok(state) => Json::object().with("state", state.to_string()).with("error", Json::Null),
        Err(error) => Json::object().with("state", Json::Null).with("error", error.as_str()),
    }
}

/// `status`: `{"healthy":bool,"bfe_service":{"state","error"},
/// "driver_service":{…},"control_device":{"path","error","driver_version",
/// "control_protocol","callouts_registered","adoption_complete",
/// "agent_connected"}}`; what could not be read is `null`.
pub fn status(report: &StatusReport) -> Json {
    let device = match &report.driver {
        Ok(version) => Json::object()
            .with("path", DEVICE_PATH)
            .with("error", Json::Null)
            .with(
                "driver_version",
                format!("{}.{}.{}", version.driver_major(), version.driver_minor(), version.driver_patch()),
            )
            .with("control_protocol", version.abi_version)
            .with("callouts_registered", version.has_flag(VERSION_FLAG_LOADED))
            .with("adoption_complete", version.has_flag(VERSION_FLAG_ADOPTION_COMPLETE))
            .with("agent_connected", version.has_flag(VERSION_FLAG_AGENT_CONNECTED)),
        Err(error) => Json::object()
            .with("path", DEVICE_PATH)
            .with("error", error.as_str())
            .with("driver_version", Json::Null)
            .with("control_protocol", Json::Null)
            .with("callouts_registered", Json::Null)
            .with("adoption_complete", Json::Null)
            .with("agent_connected", Json::Null),
    };
    Json::object()
        .with("healthy", report.healthy())
        .with("bfe_service", service(&report.bfe))
        .with("driver_service", service(&report.driver_service))
        .with("control_device", device)
}

/// `policy encode`: `{"hex":…,"length":…,"policy":{…}}`.
pub fn policy_encoded(hex: &str, length: usize, repr: &PolicyRepr) -> Json {
    Json::object().with("hex", hex).with("length", length).with("policy", policy(repr))
}

/// `policy decode`: `{"length":…,"policy":{…}}`.
pub fn policy_decoded(length: usize, repr: &PolicyRepr) -> Json {
    Json::object().with("length", length).with("policy", policy(repr))
}

/// One ask request: `{"request_id","filter_id","label","direction",
/// "protocol","local_address","local_port","remote_address","remote_port",
/// "process_id","layer_id","default","timeout_ms"}`.
pub fn request(request: &AskRequestRepr) -> Json {
    Json::object()
        .with("request_id", request.request_id)
        .with("filter_id", request.filter_id)
        .with("label", request.label.as_str())
        .with(
            "direction",
            match request.direction {
                Direction::Outbound => "outbound",
                Direction::Inbound => "inbound",
            },
        )
        .with("protocol", protocol_name(request.protocol))
        .with("local_address", request.local_address.to_string())
        .with("local_port", request.local_port)
        .with("remote_address", request.remote_address.to_string())
        .with("remote_port", request.remote_port)
        .with("process_id", request.process_id)
        .with("layer_id", request.layer_id)
        .with("default", verdict_name(request.default_verdict))
        .with("timeout_ms", request.timeout_ms)
}
