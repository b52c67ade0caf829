//! Wire formats shared by the wfpcallout kernel driver and its user-mode
//! tools.
//!
//! The driver decodes these buffers at up to DISPATCH_LEVEL, from memory a
//! user-mode process chose, so every decoder here is strict (one encoding
//! per value, unknown codes and non-zero reserved bytes refused),
//! allocation-free and panic-free. The crate follows the view/`Repr`
//! pattern: a checked view ([`PolicyBlob`]) guarantees that field reads stay
//! inside the buffer, and a plain value ([`PolicyRepr`]) carries the meaning,
//! with `parse` doing the semantic checks and `emit` writing exactly
//! `buffer_len()` bytes.
//!
//! # The policy blob
//!
//! A filter's provider context (`FWPM_GENERAL_CONTEXT`) carries one policy:
//! a 24-byte little-endian header (magic `b"WFPC"`, version 1, a `u16` total
//! length, action code, log level, label length, default verdict, two `u32`
//! action parameters and reserved zero bytes) followed by at most 64 bytes of
//! UTF-8 label without control characters. The byte-by-byte table is in the [`policy`] module.
//!
//! ```
//! use wfpcallout_wire::{Label, LogLevel, POLICY_MAX_LEN, PolicyAction, PolicyRepr, Verdict};
//!
//! let repr = PolicyRepr {
//!     action: PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block },
//!     log_level: LogLevel::Info,
//!     label: Label::new("ask-browser")?,
//! };
//! let mut buf = [0u8; POLICY_MAX_LEN];
//! let len = repr.emit(&mut buf)?;
//! let blob = buf.get(..len).unwrap_or_default();
//! assert_eq!(PolicyRepr::parse(blob)?, repr);
//! # Ok::<(), wfpcallout_wire::WireError>(())
//! ```
//!
//! # The control device protocol
//!
//! User-mode tools talk to the driver's control device through four
//! `METHOD_BUFFERED` IOCTLs ([`control`]), each carrying fixed-layout,
//! little-endian buffers in the same view/`Repr` style:
//!
//! - [`IOCTL_WFPCALLOUT_GET_VERSION`] returns a [`VersionInfoRepr`]
//!   ([`version`]);
//! - [`IOCTL_WFPCALLOUT_GET_STATS`] takes a [`StatsQueryRepr`]
//!   ([`stats_query`]) and returns a [`StatsReply`] ([`stats`]): the global
//!   counters, then one [`FilterStatsEntryRepr`] per filter
//!   ([`filter_stats`]);
//! - [`IOCTL_WFPCALLOUT_AGENT_GET_REQUEST`] returns an [`AskRequestRepr`]
//!   ([`ask_request`]);
//! - [`IOCTL_WFPCALLOUT_AGENT_SET_VERDICT`] takes a [`VerdictMessageRepr`]
//!   ([`verdict_message`]).
//!
//! ```
//! use wfpcallout_wire::{VERDICT_MESSAGE_LEN, Verdict, VerdictMessageRepr};
//!
//! let answer = VerdictMessageRepr { request_id: 7, verdict: Verdict::Permit };
//! let mut buf = [0u8; VERDICT_MESSAGE_LEN];
//! answer.emit(&mut buf)?;
//! assert_eq!(VerdictMessageRepr::parse(&buf)?, answer);
//! # Ok::<(), wfpcallout_wire::WireError>(())
//! ```
//!
//! # Features
//!
//! - `std`: adds `to_bytes` to every `Repr` (`PolicyRepr::to_bytes` and
//!   the control formats') for user-mode tools, and the `text` module:
//!   the words and tables those tools print. The driver builds without it.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod action;
pub mod ask_request;
mod bytes;
pub mod control;
pub mod error;
pub mod filter_stats;
pub mod label;
mod label_slot;
pub mod log_gate;
pub mod log_level;
pub mod policy;
pub mod stats;
pub mod stats_query;
#[cfg(test)]
mod test_util;
#[cfg(feature = "std")]
pub mod text;
pub mod verdict_message;
pub mod version;

pub use action::{ASK_TIMEOUT_MS_MAX, PolicyAction, RATE_LIMIT_BURST_MAX, RATE_LIMIT_RATE_MAX, Verdict};
pub use ask_request::{ASK_REQUEST_LEN, AskRequest, AskRequestRepr, Direction};
pub use control::{
    CONTROL_ABI_VERSION, FILE_DEVICE_NETWORK, FILE_READ_ACCESS, FILE_WRITE_ACCESS, IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
    IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, IOCTL_WFPCALLOUT_GET_STATS, IOCTL_WFPCALLOUT_GET_VERSION,
    IOCTL_WFPCALLOUT_SET_LOG_LEVEL, METHOD_BUFFERED, ctl_code,
};
pub use error::WireError;
pub use filter_stats::{
    FILTER_COUNTER_COUNT, FILTER_STATS_ENTRY_LEN, FilterCounters, FilterOrigin, FilterStatsEntry, FilterStatsEntryRepr,
};
pub use label::{LABEL_MAX_LEN, Label};
pub use log_gate::{LOG_GATE_LEN, LogGate, LogGateRepr};
pub use log_level::LogLevel;
pub use policy::{POLICY_HEADER_LEN, POLICY_MAGIC, POLICY_MAX_LEN, POLICY_VERSION, PolicyBlob, PolicyRepr};
pub use stats::{
    FilterStatsEntries, GLOBAL_COUNTER_COUNT, GLOBAL_RESERVED_COUNT, GlobalStatsRepr, STATS_HEADER_LEN,
    STATS_REPLY_MAX_LEN, StatsHeader, StatsHeaderRepr, StatsReply,
};
pub use stats_query::{STATS_MAX_ENTRIES, STATS_QUERY_LEN, StatsQuery, StatsQueryRepr};
pub use verdict_message::{VERDICT_MESSAGE_LEN, VerdictMessage, VerdictMessageRepr};
pub use version::{
    VERSION_FLAG_ADOPTION_COMPLETE, VERSION_FLAG_AGENT_CONNECTED, VERSION_FLAG_LOADED, VERSION_FLAGS_KNOWN,
    VERSION_INFO_LEN, VERSION_INFO_MAGIC, VersionInfo, VersionInfoRepr, driver_version,
};
