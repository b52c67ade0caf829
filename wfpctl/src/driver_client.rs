//! The driver's control protocol from the user-mode side: each IOCTL with
//! its buffers encoded and decoded by the wire crate, over
//! [`Backend::ioctl`].
//!
//! Every reply is decoded strictly: a driver that answers with something
//! the wire crate refuses is reported, not guessed at.
#![forbid(unsafe_code)]

use core::fmt;

use wfpcallout_wire::{
    ASK_REQUEST_LEN, AskRequestRepr, CONTROL_ABI_VERSION, FilterStatsEntryRepr, IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
    IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, IOCTL_WFPCALLOUT_GET_STATS, IOCTL_WFPCALLOUT_GET_VERSION, STATS_MAX_ENTRIES,
    STATS_REPLY_MAX_LEN, StatsHeaderRepr, StatsQueryRepr, StatsReply, VERSION_INFO_LEN, VerdictMessageRepr,
    VersionInfo, VersionInfoRepr, WireError,
};

use crate::backend::{Backend, BackendError};

/// Why talking to the driver failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverError {
    /// The IOCTL itself failed.
    Backend(BackendError),
    /// The driver's reply did not decode.
    Malformed {
        /// Which reply.
        what: &'static str,
        /// Why.
        error: WireError,
    },
    /// The driver speaks another version of the control protocol.
    AbiMismatch {
        /// The driver's version.
        driver: u32,
    },
    /// Statistics paging did not advance (a driver bug; stops an endless loop).
    PagingStuck {
        /// The cursor that was asked for twice.
        after_filter_id: u64,
    },
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Backend(error) => write!(f, "{error}"),
            DriverError::Malformed { what, error } => write!(f, "the driver's {what} reply is malformed: {error}"),
            DriverError::AbiMismatch { driver } => write!(
                f,
                "the driver speaks control protocol version {driver}, this wfpctl speaks version \
                 {CONTROL_ABI_VERSION}: use the wfpctl built with the driver"
            ),
            DriverError::PagingStuck { after_filter_id } => write!(
                f,
                "the driver's statistics did not advance past filter {after_filter_id} although it reported more"
            ),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<BackendError> for DriverError {
    fn from(error: BackendError) -> DriverError {
        DriverError::Backend(error)
    }
}

/// `IOCTL_WFPCALLOUT_GET_VERSION`, checked against this tool's protocol
/// version (before the flags, so that a newer driver is named as such).
pub fn version(backend: &mut dyn Backend) -> Result<VersionInfoRepr, DriverError> {
    let reply = backend
        .ioctl(IOCTL_WFPCALLOUT_GET_VERSION, &[], VERSION_INFO_LEN)
        .map_err(|e| DriverError::Backend(e.context("GET_VERSION")))?;
    let malformed = |error| DriverError::Malformed { what: "version", error };
    let view = VersionInfo::new_checked(reply.as_slice()).map_err(malformed)?;
    if view.abi_version() != CONTROL_ABI_VERSION {
        return Err(DriverError::AbiMismatch { driver: view.abi_version() });
    }
    VersionInfoRepr::parse(&reply).map_err(malformed)
}

/// One page of `IOCTL_WFPCALLOUT_GET_STATS`.
pub fn stats_page(
    backend: &mut dyn Backend,
    query: &StatsQueryRepr,
) -> Result<(StatsHeaderRepr, Vec<FilterStatsEntryRepr>), DriverError> {
    let malformed = |error| DriverError::Malformed { what: "statistics", error };
    let input = {
        let mut input = [0u8; wfpcallout_wire::STATS_QUERY_LEN];
        query.emit(&mut input).map_err(|error| DriverError::Malformed { what: "statistics query", error })?;
        input
    };
    let reply = backend
        .ioctl(IOCTL_WFPCALLOUT_GET_STATS, &input, STATS_REPLY_MAX_LEN)
        .map_err(|e| DriverError::Backend(e.context("GET_STATS")))?;
    let parsed = StatsReply::parse_for_query(&reply, query).map_err(malformed)?;
    let entries = parsed.entries().collect::<Result<Vec<_>, _>>().map_err(malformed)?;
    Ok((*parsed.header(), entries))
}

/// The global counters and the number of live filter contexts (a
/// one-entry page: only the header matters).
pub fn global_stats(backend: &mut dyn Backend) -> Result<StatsHeaderRepr, DriverError> {
    let (header, _) = stats_page(backend, &StatsQueryRepr { after_filter_id: 0, max_entries: 1 })?;
    Ok(header)
}

/// Every filter's statistics, page after page until the driver reports
/// no more; the last page's header comes with them.
pub fn all_filter_stats(
    backend: &mut dyn Backend,
) -> Result<(StatsHeaderRepr, Vec<FilterStatsEntryRepr>), DriverError> {
    let mut query = StatsQueryRepr { after_filter_id: 0, max_entries: STATS_MAX_ENTRIES };
    let mut all = Vec::new();
    loop {
        let (header, entries) = stats_page(backend, &query)?;
        let last = entries.last().map(|entry| entry.filter_id);
        all.extend(entries);
        match (header.more, last) {
            (false, _) => return Ok((header, all)),
            (true, Some(last)) => query.after_filter_id = last,
            (true, None) => return Err(DriverError::PagingStuck { after_filter_id: query.after_filter_id }),
        }
    }
}

/// `IOCTL_WFPCALLOUT_AGENT_GET_REQUEST`: waits until the driver has a
/// connection to decide on (the driver parks the IOCTL until then).
pub fn next_request(backend: &mut dyn Backend) -> Result<AskRequestRepr, DriverError> {
    let reply = backend
        .ioctl(IOCTL_WFPCALLOUT_AGENT_GET_REQUEST, &[], ASK_REQUEST_LEN)
        .map_err(|e| DriverError::Backend(e.context("AGENT_GET_REQUEST")))?;
    AskRequestRepr::parse(&reply).map_err(|error| DriverError::Malformed { what: "ask request", error })
}

/// `IOCTL_WFPCALLOUT_AGENT_SET_VERDICT`.
pub fn send_verdict(backend: &mut dyn Backend, verdict: &VerdictMessageRepr) -> Result<(), DriverError> {
    backend
        .ioctl(IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, &verdict.to_bytes(), 0)
        .map_err(|e| DriverError::Backend(e.context("AGENT_SET_VERDICT")))?;
    Ok(())
}
