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
//! UTF-8 label. The byte-by-byte table is in the [`policy`] module.
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
//! # Features
//!
//! - `std`: adds [`PolicyRepr::to_bytes`] for user-mode tools. The driver
//!   builds without it.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod action;
pub mod error;
pub mod label;
pub mod log_level;
pub mod policy;

pub use action::{ASK_TIMEOUT_MS_MAX, PolicyAction, RATE_LIMIT_BURST_MAX, RATE_LIMIT_RATE_MAX, Verdict};
pub use error::WireError;
pub use label::{LABEL_MAX_LEN, Label};
pub use log_level::LogLevel;
pub use policy::{POLICY_HEADER_LEN, POLICY_MAGIC, POLICY_MAX_LEN, POLICY_VERSION, PolicyBlob, PolicyRepr};
