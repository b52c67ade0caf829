//! What wfpctl prints: the filter table (engine view joined with the
//! driver's per-filter statistics), the global counters, the status report,
//! ask requests, and decoded policies. Pure functions from data to text.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use wfpcallout_wire::{
    AskRequestRepr, Direction, FilterOrigin, FilterStatsEntryRepr, GlobalStatsRepr, PolicyRepr, StatsHeaderRepr,
    VERSION_FLAG_ADOPTION_COMPLETE, VERSION_FLAG_AGENT_CONNECTED, VERSION_FLAG_LOADED, VersionInfoRepr,
};

use crate::backend::{BFE_SERVICE, DEVICE_PATH, DRIVER_SERVICE, EngineFilter, ServiceState};
use crate::filter_spec::{conditions_text, protocol_name};
use crate::policy::{describe_action, log_level_name, verdict_name};
use wfpcallout_wire::text::Table;

/// One line of `filter list`: what the engine says about a filter and what
/// the driver counts for it; either may be missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterRow<'a> {
    /// The run-time filter id.
    pub id: u64,
    /// The engine's view (missing: a filter the driver knows that is not
    /// ours, i.e. added by another tool naming our callouts).
    pub engine: Option<&'a EngineFilter>,
    /// The driver's view (missing: the driver holds no context for it, or
    /// its statistics could not be read).
    pub stats: Option<&'a FilterStatsEntryRepr>,
}

/// Joins the engine's filters with the driver's entries by filter id,
/// sorted by id. Without statistics every row has `stats: None`.
pub fn join_filters<'a>(engine: &'a [EngineFilter], stats: Option<&'a [FilterStatsEntryRepr]>) -> Vec<FilterRow<'a>> {
    let stats = stats.unwrap_or(&[]);
    let mut rows: Vec<FilterRow<'a>> = engine
        .iter()
        .map(|filter| FilterRow {
            id: filter.id,
            engine: Some(filter),
            stats: stats.iter().find(|entry| entry.filter_id == filter.id),
        })
        .collect();
    for entry in stats {
        if !engine.iter().any(|filter| filter.id == entry.filter_id) {
            rows.push(FilterRow { id: entry.filter_id, engine: None, stats: Some(entry) });
        }
    }
    rows.sort_by_key(|row| row.id);
    rows
}

const FILTER_COLUMNS: [(&str, bool); 16] = [
    ("ID", true),
    ("LAYER", false),
    ("CONDITIONS", false),
    ("POLICY", false),
    ("LABEL", false),
    ("LOG", false),
    ("MATCHED", true),
    ("PERMITTED", true),
    ("BLOCKED", true),
    ("AUDITED", true),
    ("RATE-LIMITED", true),
    ("PENDED", true),
    ("DEFAULTED", true),
    ("FLOWS", true),
    ("REFS", true),
    ("ORIGIN", false),
];

/// The `filter list` table. `counters_known` says whether the driver's
/// statistics were read (otherwise policy and counters show `?`).
pub fn filter_table(rows: &[FilterRow<'_>], counters_known: bool) -> String {
    if rows.is_empty() {
        return "no wfpcallout filters\n".to_string();
    }
    let unknown = if counters_known { "-" } else { "?" };
    let mut table = Table::new(&FILTER_COLUMNS);
    for row in rows {
        let layer = match (row.engine.and_then(|filter| filter.target), row.stats) {
            (Some(target), _) => target.to_string(),
            (None, Some(entry)) => format!("layer {}", entry.layer_id),
            (None, None) => "?".to_string(),
        };
        let conditions = match row.engine {
            Some(filter) if filter.other_conditions > 0 => {
                format!("{} +{} more", conditions_text(&filter.conditions), filter.other_conditions)
            }
            Some(filter) => conditions_text(&filter.conditions),
            None => "(not added by wfpctl)".to_string(),
        };
        let mut cells = vec![row.id.to_string(), layer, conditions];
        match row.stats {
            Some(entry) => {
                let c = &entry.counters;
                cells.extend([
                    describe_action(&entry.policy.action),
                    label_cell(&entry.policy),
                    log_level_name(entry.policy.log_level).to_string(),
                    c.matched.to_string(),
                    c.permitted.to_string(),
                    c.blocked.to_string(),
                    c.audited.to_string(),
                    c.rate_limited.to_string(),
                    c.pended.to_string(),
                    c.defaulted.to_string(),
                    format!("{}/{}", c.live_flows, c.flows_total),
                    entry.references.to_string(),
                    match entry.origin {
                        FilterOrigin::Notified => "added".to_string(),
                        FilterOrigin::Adopted => "adopted".to_string(),
                    },
                ]);
            }
            None => {
                let policy = if counters_known { "(no driver context)" } else { "?" };
                cells.push(policy.to_string());
                cells.extend(std::iter::repeat_n(unknown.to_string(), FILTER_COLUMNS.len() - cells.len()));
            }
        }
        table.push(cells);
    }
    let mut text = table.render();
    if !counters_known {
        text.push_str("? the driver's statistics could not be read: policies and counters are unknown\n");
    }
    text
}

fn label_cell(policy: &PolicyRepr) -> String {
    if policy.label.is_empty() { "-".to_string() } else { policy.label.to_string() }
}

/// The `stats` report: live contexts, then every global counter.
pub fn stats_summary(header: &StatsHeaderRepr) -> String {
    let mut table = Table::new(&[("COUNTER", false), ("VALUE", true)]);
    table.push(vec!["filter_contexts_alive".to_string(), header.total_filters.to_string()]);
    for (name, value) in GlobalStatsRepr::NAMES.iter().zip(header.global.to_array()) {
        table.push(vec![(*name).to_string(), value.to_string()]);
    }
    table.render()
}

/// What `status` found out; each part is a value or why it is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusReport {
    /// The Base Filtering Engine service.
    pub bfe: Result<ServiceState, String>,
    /// The driver's service.
    pub driver_service: Result<ServiceState, String>,
    /// The driver's answer to GET_VERSION.
    pub driver: Result<VersionInfoRepr, String>,
}

impl StatusReport {
    /// BFE runs, and the driver answers with its callouts registered.
    pub fn healthy(&self) -> bool {
        self.bfe == Ok(ServiceState::Running)
            && self.driver.as_ref().is_ok_and(|version| version.has_flag(VERSION_FLAG_LOADED))
    }
}

/// The `status` report.
pub fn status_report(report: &StatusReport) -> String {
    let service = |state: &Result<ServiceState, String>| match state {
        Ok(state) => state.to_string(),
        Err(error) => format!("unknown ({error})"),
    };
    let mut table = Table::without_header(&[false, false]);
    table.push(vec![format!("{BFE_SERVICE} service"), service(&report.bfe)]);
    table.push(vec![format!("{DRIVER_SERVICE} service"), service(&report.driver_service)]);
    match &report.driver {
        Ok(version) => {
            let yes_no =
                |flag, yes: &str, no: &str| if version.has_flag(flag) { yes.to_string() } else { no.to_string() };
            table.push(vec![
                "control device".to_string(),
                format!(
                    "{DEVICE_PATH}: driver {}.{}.{}, control protocol {}",
                    version.driver_major(),
                    version.driver_minor(),
                    version.driver_patch(),
                    version.abi_version
                ),
            ]);
            table.push(vec!["callouts".to_string(), yes_no(VERSION_FLAG_LOADED, "registered", "not registered")]);
            table.push(vec![
                "adoption".to_string(),
                yes_no(VERSION_FLAG_ADOPTION_COMPLETE, "complete", "in progress (or failed: see the debugger log)"),
            ]);
            table.push(vec!["agent".to_string(), yes_no(VERSION_FLAG_AGENT_CONNECTED, "connected", "none")]);
        }
        Err(error) => {
            table.push(vec!["control device".to_string(), format!("{DEVICE_PATH}: {error}")]);
            table.push(vec!["callouts".to_string(), "unknown".to_string()]);
        }
    }
    table.render()
}

fn endpoint(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// One ask request, on one line: `request 7: outbound tcp
/// 10.0.0.2:50000 -> 192.0.2.1:443, pid 4242, filter 66017 "web", else
/// block in 10000 ms`.
pub fn describe_request(request: &AskRequestRepr) -> String {
    let (direction, from, to) = match request.direction {
        Direction::Outbound => (
            "outbound",
            endpoint(request.local_address, request.local_port),
            endpoint(request.remote_address, request.remote_port),
        ),
        Direction::Inbound => (
            "inbound",
            endpoint(request.remote_address, request.remote_port),
            endpoint(request.local_address, request.local_port),
        ),
    };
    let label = if request.label.is_empty() { String::new() } else { format!(" \"{}\"", request.label) };
    format!(
        "request {}: {direction} {} {from} -> {to}, pid {}, filter {}{label}, else {} in {} ms",
        request.request_id,
        protocol_name(request.protocol),
        request.process_id,
        request.filter_id,
        verdict_name(request.default_verdict),
        request.timeout_ms
    )
}

/// A decoded policy, one field per line (`policy decode`).
pub fn policy_details(policy: &PolicyRepr, blob_len: usize) -> String {
    let mut table = Table::without_header(&[false, false]);
    table.push(vec!["action".to_string(), describe_action(&policy.action)]);
    table.push(vec!["log".to_string(), log_level_name(policy.log_level).to_string()]);
    table.push(vec!["label".to_string(), label_cell(policy)]);
    table.push(vec!["length".to_string(), format!("{blob_len} bytes")]);
    table.render()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::filter_spec::{CalloutTarget, Condition, ConditionField, ConditionValue, IpVersion, Layer};
    use core::net::Ipv6Addr;
    use wfpcallout_wire::{
        FilterCounters, Label, LogLevel, PolicyAction, STATS_REPLY_MAX_LEN, StatsReply, Verdict, driver_version,
    };

    fn engine_filter(id: u64, port: u16) -> EngineFilter {
        EngineFilter {
            id,
            name: "wfpcallout: web".to_string(),
            target: Some(CalloutTarget { layer: Layer::Connect, ip: IpVersion::V4 }),
            conditions: vec![Condition { field: ConditionField::RemotePort, value: ConditionValue::Uint16(port) }],
            other_conditions: 0,
            effective_weight: None,
        }
    }

    /// A statistics reply built with the wire crate's encoders, as the
    /// driver builds it, then parsed back as wfpctl reads it.
    fn synthetic_reply() -> (StatsHeaderRepr, Vec<FilterStatsEntryRepr>) {
        let audit = FilterStatsEntryRepr {
            filter_id: 66_017,
            layer_id: 48,
            origin: FilterOrigin::Notified,
            policy: PolicyRepr {
                action: PolicyAction::Audit,
                log_level: LogLevel::Info,
                label: Label::new("web").unwrap(),
            },
            references: 1,
            counters: FilterCounters { matched: 12, permitted: 12, audited: 12, ..FilterCounters::default() },
        };
        let limited = FilterStatsEntryRepr {
            filter_id: 66_020,
            layer_id: 44,
            origin: FilterOrigin::Adopted,
            policy: PolicyRepr {
                action: PolicyAction::RateLimit { rate_per_sec: 10, burst: 20 },
                log_level: LogLevel::Off,
                label: Label::EMPTY,
            },
            references: 3,
            counters: FilterCounters {
                matched: 1_000_000,
                permitted: 999_000,
                blocked: 1_000,
                rate_limited: 1_000,
                live_flows: 2,
                flows_total: 7,
                ..FilterCounters::default()
            },
        };
        let header = StatsHeaderRepr {
            global: GlobalStatsRepr {
                filters_added: 2,
                filters_adopted: 1,
                requests_pended: 4,
                ..GlobalStatsRepr::default()
            },
            total_filters: 2,
            returned: 2,
            more: false,
        };
        let mut buffer = vec![0u8; STATS_REPLY_MAX_LEN];
        let len = StatsReply::emit_header(&header, &mut buffer).unwrap();
        StatsReply::emit_entry(0, &audit, &mut buffer).unwrap();
        StatsReply::emit_entry(1, &limited, &mut buffer).unwrap();
        let reply = StatsReply::parse(&buffer[..len]).unwrap();
        let entries: Vec<_> = reply.entries().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries, [audit, limited]);
        (*reply.header(), entries)
    }

    #[test]
    fn filter_table_joins_engine_and_driver() {
        let (_, entries) = synthetic_reply();
        let engine = [engine_filter(66_017, 443), engine_filter(66_018, 80)];
        let rows = join_filters(&engine, Some(&entries));
        assert_eq!(rows.iter().map(|row| row.id).collect::<Vec<_>>(), [66_017, 66_018, 66_020]);
        let text = filter_table(&rows, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("   ID  LAYER       CONDITIONS"), "{text}");
        assert!(lines[0].ends_with("REFS  ORIGIN"), "{text}");
        let audit: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            audit,
            [
                "66017",
                "connect-v4",
                "remote-port=443",
                "audit",
                "web",
                "info",
                "12",
                "12",
                "0",
                "12",
                "0",
                "0",
                "0",
                "0/0",
                "1",
                "added"
            ]
        );
        assert!(lines[2].contains("66018  connect-v4  remote-port=80"), "{text}");
        assert!(lines[2].contains("(no driver context)"), "{text}");
        assert!(lines[3].contains("layer 44    (not added by wfpctl)  rate-limit 10/s burst 20"), "{text}");
        assert!(lines[3].contains("1000000     999000"), "{text}");
        assert!(lines[3].ends_with("2/7     3  adopted"), "{text}");
        // Every line has the same columns: the counters are aligned.
        let flows_column = lines[0].find("FLOWS").unwrap() + "FLOWS".len();
        assert!(lines[1..].iter().all(|line| line[..flows_column].ends_with(['0', '7', '-'])), "{text}");
    }

    #[test]
    fn filter_table_without_statistics() {
        let engine = [engine_filter(5, 443)];
        let text = filter_table(&join_filters(&engine, None), false);
        assert!(text.lines().nth(1).unwrap().ends_with("?  ?"), "{text}");
        assert!(text.contains("could not be read"), "{text}");
        assert_eq!(filter_table(&[], true), "no wfpcallout filters\n");
    }

    #[test]
    fn stats_summary_lists_every_counter() {
        let (header, _) = synthetic_reply();
        let text = stats_summary(&header);
        let lines: Vec<Vec<&str>> = text.lines().map(|line| line.split_whitespace().collect()).collect();
        assert_eq!(lines.len(), 2 + GlobalStatsRepr::NAMES.len());
        assert_eq!(lines[0], ["COUNTER", "VALUE"]);
        assert_eq!(lines[1], ["filter_contexts_alive", "2"]);
        assert_eq!(lines[2], ["filters_added", "2"]);
        assert!(lines.contains(&vec!["filters_adopted", "1"]), "{text}");
        assert!(lines.contains(&vec!["requests_pended", "4"]), "{text}");
        assert!(lines.contains(&vec!["verdicts_rejected", "0"]), "{text}");
        // Values are right-aligned under VALUE.
        let end = text.lines().next().unwrap().len();
        assert!(text.lines().all(|line| line.len() == end), "{text}");
    }

    #[test]
    fn status() {
        let loaded = VersionInfoRepr {
            abi_version: 1,
            driver_version: driver_version(0, 1, 0),
            flags: VERSION_FLAG_LOADED | VERSION_FLAG_ADOPTION_COMPLETE,
        };
        let report = StatusReport {
            bfe: Ok(ServiceState::Running),
            driver_service: Ok(ServiceState::Running),
            driver: Ok(loaded),
        };
        assert!(report.healthy());
        assert_eq!(
            status_report(&report),
            "BFE service         running\n\
             WfpCallout service  running\n\
             control device      \\\\.\\WfpCallout: driver 0.1.0, control protocol 1\n\
             callouts            registered\n\
             adoption            complete\n\
             agent               none\n"
        );
        let down = StatusReport {
            bfe: Ok(ServiceState::Running),
            driver_service: Ok(ServiceState::Stopped),
            driver: Err("open failed".to_string()),
        };
        assert!(!down.healthy());
        let text = status_report(&down);
        assert!(text.contains("WfpCallout service  stopped\n"), "{text}");
        assert!(text.contains("control device      \\\\.\\WfpCallout: open failed\n"), "{text}");
        let unregistered = StatusReport { driver: Ok(VersionInfoRepr { flags: 0, ..loaded }), ..report };
        assert!(!unregistered.healthy());
        assert!(status_report(&unregistered).contains("callouts            not registered"));
    }

    #[test]
    fn requests() {
        let mut request = AskRequestRepr {
            request_id: 7,
            filter_id: 66_017,
            process_id: 4242,
            layer_id: 48,
            direction: Direction::Outbound,
            protocol: 6,
            default_verdict: Verdict::Block,
            timeout_ms: 10_000,
            local_address: "10.0.0.2".parse().unwrap(),
            local_port: 50_000,
            remote_address: "192.0.2.1".parse().unwrap(),
            remote_port: 443,
            label: Label::new("web").unwrap(),
        };
        assert_eq!(
            describe_request(&request),
            "request 7: outbound tcp 10.0.0.2:50000 -> 192.0.2.1:443, pid 4242, filter 66017 \"web\", else block in 10000 ms"
        );
        request.direction = Direction::Inbound;
        request.local_address = IpAddr::V6(Ipv6Addr::LOCALHOST);
        request.remote_address = IpAddr::V6("2001:db8::9".parse().unwrap());
        request.label = Label::EMPTY;
        request.protocol = 17;
        assert_eq!(
            describe_request(&request),
            "request 7: inbound udp [2001:db8::9]:443 -> [::1]:50000, pid 4242, filter 66017, else block in 10000 ms"
        );
    }

    #[test]
    fn policies() {
        let policy = PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Permit },
            log_level: LogLevel::Trace,
            label: Label::new("ask-browser").unwrap(),
        };
        assert_eq!(
            policy_details(&policy, 35),
            "action  ask 5000 ms, else permit\nlog     trace\nlabel   ask-browser\nlength  35 bytes\n"
        );
    }
}
