//! The control device's IOCTLs, decoded and answered in portable code; the
//! KMDF glue only moves buffers (and parks "get request" IOCTLs). Every
//! input is decoded strictly from a kernel copy, every output size is
//! checked before anything is written, and nothing but the encoded reply
//! reaches user mode (the glue zeroes the output buffer first).
#![forbid(unsafe_code)]

use crate::callbacks::state::STATE;
use crate::filters::filter_context::{FilterContext, Origin};
use crate::platform::status::{NtStatus, Result};
use crate::verdicts::pending::AskInfo;
use crate::wfp::injection::COPIES;
use core::sync::atomic::{AtomicU64, Ordering};
use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, CONTROL_ABI_VERSION, Direction, FilterCounters, FilterOrigin,
    FilterStatsEntryRepr, GlobalStatsRepr, IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, IOCTL_WFPCALLOUT_GET_STATS,
    IOCTL_WFPCALLOUT_GET_VERSION, IOCTL_WFPCALLOUT_SET_LOG_LEVEL, LogGateRepr, LogLevel, STATS_MAX_ENTRIES,
    StatsHeaderRepr, StatsQueryRepr, StatsReply, VERSION_FLAG_ADOPTION_COMPLETE, VERSION_FLAG_AGENT_CONNECTED,
    VERSION_FLAG_LOADED, VERSION_INFO_LEN, VerdictMessageRepr, VersionInfoRepr, WireError, driver_version,
};

pub use wfpcallout_wire::{
    IOCTL_WFPCALLOUT_AGENT_GET_REQUEST as GET_REQUEST, IOCTL_WFPCALLOUT_AGENT_SET_VERDICT as SET_VERDICT,
    IOCTL_WFPCALLOUT_GET_STATS as GET_STATS, IOCTL_WFPCALLOUT_GET_VERSION as GET_VERSION,
    IOCTL_WFPCALLOUT_SET_LOG_LEVEL as SET_LOG_LEVEL,
};

/// The largest input any IOCTL takes (the glue copies at most this much).
pub const MAX_INPUT_LEN: usize = 256;

/// This driver's version as the control interface reports it.
pub const DRIVER_VERSION: u32 = driver_version(0, 1, 0);

/// Every malformed buffer is refused as an invalid parameter (the caller
/// sees the status; nothing here would read a count of them).
fn malformed(_: WireError) -> NtStatus {
    NtStatus::INVALID_PARAMETER
}

fn require_empty(input: &[u8]) -> Result {
    if input.is_empty() { Ok(()) } else { Err(NtStatus::INVALID_BUFFER_SIZE) }
}

fn require_output(output: &[u8], len: usize) -> Result {
    if output.len() >= len { Ok(()) } else { Err(NtStatus::BUFFER_TOO_SMALL) }
}

/// Answers one synchronous IOCTL; returns the number of bytes written to
/// `output`. ("Get request" goes through [`agent_get_request`]: it may wait.)
pub fn dispatch_ioctl(code: u32, input: &[u8], output: &mut [u8]) -> Result<usize> {
    match code {
        IOCTL_WFPCALLOUT_GET_VERSION => version(input, output),
        IOCTL_WFPCALLOUT_GET_STATS => stats(input, output),
        IOCTL_WFPCALLOUT_AGENT_SET_VERDICT => set_verdict(input),
        IOCTL_WFPCALLOUT_SET_LOG_LEVEL => set_log_level(input),
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

/// Sets the driver's log gate ([`crate::platform::log::set_max_level`]): lines above
/// the level are neither formatted nor printed from the next `log!` on.
fn set_log_level(input: &[u8]) -> Result<usize> {
    let repr = LogGateRepr::parse(input).map_err(malformed)?;
    crate::platform::log::set_max_level(match repr.max_level {
        LogLevel::Off => None,
        LogLevel::Error => Some(crate::platform::log::Level::Error),
        LogLevel::Warning => Some(crate::platform::log::Level::Warning),
        LogLevel::Info => Some(crate::platform::log::Level::Info),
        LogLevel::Trace => Some(crate::platform::log::Level::Trace),
    });
    Ok(0)
}

fn version(input: &[u8], output: &mut [u8]) -> Result<usize> {
    require_empty(input)?;
    require_output(output, VERSION_INFO_LEN)?;
    let mut flags = 0;
    if STATE.loaded.load(Ordering::Acquire) {
        flags |= VERSION_FLAG_LOADED;
    }
    if !STATE.adoption_in_progress() {
        flags |= VERSION_FLAG_ADOPTION_COMPLETE;
    }
    if STATE.agents.connected() {
        flags |= VERSION_FLAG_AGENT_CONNECTED;
    }
    let repr = VersionInfoRepr { abi_version: CONTROL_ABI_VERSION, driver_version: DRIVER_VERSION, flags };
    repr.emit(output).map_err(malformed)
}

/// The global counters, as the statistics IOCTL reports them.
pub fn global_stats() -> GlobalStatsRepr {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let s = &STATE.stats;
    let p = &STATE.pending.stats;
    let f = &STATE.flows.stats;
    let c = &COPIES;
    GlobalStatsRepr {
        filters_added: load(&s.filters_added),
        filters_deleted: load(&s.filters_deleted),
        deletes_unknown: load(&s.deletes_unknown),
        policies_rejected: load(&s.policies_rejected),
        allocation_failures: load(&s.allocation_failures),
        notify_unknown_type: load(&s.notify_unknown_type),
        filters_adopted: load(&s.filters_adopted),
        adopted_policies_rejected: load(&s.adopted_policies_rejected),
        classify_without_context: load(&s.classify_without_context),
        classify_bad_arguments: load(&s.classify_bad_arguments),
        requests_pended: load(&p.pended),
        pend_failures: load(&p.pend_failures),
        requests_completed: load(&p.completed),
        requests_timed_out: load(&p.timed_out),
        requests_defaulted: load(&p.defaulted),
        verdicts_rejected: load(&p.verdicts_rejected),
        flows_associated: load(&f.associated),
        flow_associate_failures: load(&f.associate_failures),
        flows_already_tracked: load(&f.already_tracked),
        flow_deletes_unknown: load(&f.delete_unknown),
        copy_bytes_held: load(&c.bytes_held),
        packets_copied: load(&c.copied),
        copies_refused: load(&c.refused),
        ipsec_not_pended: load(&c.ipsec),
    }
}

/// One filter's statistics entry.
pub fn filter_entry(context: &FilterContext) -> FilterStatsEntryRepr {
    let counters = context.counters();
    let (live_flows, flows_total) = context.flows();
    FilterStatsEntryRepr {
        filter_id: context.filter_id(),
        layer_id: context.layer_id(),
        origin: match context.origin() {
            Origin::Notified => FilterOrigin::Notified,
            Origin::Adopted => FilterOrigin::Adopted,
        },
        policy: *context.policy(),
        references: context.references(),
        counters: FilterCounters {
            matched: counters.matched,
            permitted: counters.permitted,
            blocked: counters.blocked,
            audited: counters.audited,
            rate_limited: counters.rate_limited,
            defaulted: counters.defaulted,
            pended: counters.pended,
            live_flows,
            flows_total,
        },
    }
}

/// The smallest ids above a cursor, kept sorted in a fixed array.
struct NextIds {
    ids: [u64; STATS_MAX_ENTRIES as usize],
    len: usize,
    capacity: usize,
    /// Ids above the cursor in all (to tell whether more remain).
    candidates: usize,
}

impl NextIds {
    fn offer(&mut self, id: u64) {
        self.candidates += 1;
        let position = self.ids.get(..self.len).map_or(0, |ids| ids.partition_point(|&x| x < id));
        if position >= self.capacity {
            return;
        }
        let end = self.len.min(self.capacity - 1);
        if let Some(window) = self.ids.get_mut(position..=end) {
            window.rotate_right(1);
            if let Some(first) = window.first_mut() {
                *first = id;
            }
        }
        self.len = (self.len + 1).min(self.capacity);
    }

    fn ids(&self) -> &[u64] {
        self.ids.get(..self.len).unwrap_or(&[])
    }
}

fn stats(input: &[u8], output: &mut [u8]) -> Result<usize> {
    let query = StatsQueryRepr::parse(input).map_err(malformed)?;
    let capacity = StatsReply::entry_capacity(output.len()).min(query.max_entries);
    if StatsReply::reply_len(0).is_none_or(|header| output.len() < header) {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    let mut page = NextIds { ids: [0; STATS_MAX_ENTRIES as usize], len: 0, capacity: capacity as usize, candidates: 0 };
    let mut total = 0u32;
    STATE.table.for_each(|id, _| {
        total = total.saturating_add(1);
        if id > query.after_filter_id {
            page.offer(id);
        }
    });
    let mut returned = 0u32;
    for &id in page.ids() {
        // A filter deleted since the scan is skipped.
        let Some(entry) = STATE.table.with(id, filter_entry) else { continue };
        StatsReply::emit_entry(returned, &entry, output).map_err(malformed)?;
        returned += 1;
    }
    let header =
        StatsHeaderRepr { global: global_stats(), total_filters: total, returned, more: page.candidates > page.len };
    StatsReply::emit_header(&header, output).map_err(malformed)
}

/// A verdict: input only, nothing written back.
fn set_verdict(input: &[u8]) -> Result<usize> {
    let message = VerdictMessageRepr::parse(input).map_err(malformed)?;
    STATE.pending.answer(message.request_id, message.verdict)?;
    Ok(0)
}

/// Encodes a request for the agent.
pub fn ask_request(info: &AskInfo) -> AskRequestRepr {
    AskRequestRepr {
        request_id: info.request_id,
        filter_id: info.filter_id,
        process_id: info.process_id,
        layer_id: info.layer_id,
        direction: if info.inbound { Direction::Inbound } else { Direction::Outbound },
        protocol: info.protocol,
        default_verdict: info.default_verdict,
        timeout_ms: info.timeout_ms,
        local_address: info.local_address,
        local_port: info.local_port,
        remote_address: info.remote_address,
        remote_port: info.remote_port,
        label: info.label,
    }
}

/// Takes the next queued request into `output`, if one is waiting (the
/// glue's "request available" path, and `agent_get_request`).
pub fn agent_take_request(output: &mut [u8]) -> Result<Option<usize>> {
    require_output(output, ASK_REQUEST_LEN)?;
    let Some(info) = STATE.pending.take_next() else { return Ok(None) };
    match ask_request(&info).emit(output) {
        Ok(len) => Ok(Some(len)),
        Err(error) => {
            // Not encodable (cannot happen with values from classify): the
            // request gets its default verdict rather than waiting forever.
            let _ = STATE.pending.answer(info.request_id, info.default_verdict);
            Err(malformed(error))
        }
    }
}

/// "Get request" from handle `file`: marks the handle as an agent, then
/// answers with the next queued request (`Some(length)`), or `None` when
/// the glue must park the IOCTL until [`crate::verdicts::agent::Agents::request_available`].
pub fn agent_get_request(file: u64, input: &[u8], output: &mut [u8]) -> Result<Option<usize>> {
    require_empty(input)?;
    require_output(output, ASK_REQUEST_LEN)?;
    STATE.agents.attach(file)?;
    agent_take_request(output)
}

/// A handle was cleaned up (its IOCTLs are cancelled by the framework).
pub fn file_cleanup(file: u64) {
    STATE.agents.detach(file, &STATE.pending);
}
