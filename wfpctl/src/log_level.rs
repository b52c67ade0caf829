//! `wfpctl log-level <off|error|warning|info|trace>`: sets the most verbose
//! level the driver's debug output prints (IOCTL_WFPCALLOUT_SET_LOG_LEVEL).
//! Lines above it are neither formatted nor printed by the driver, so
//! logging can be made to cost nothing on a busy machine and turned back
//! on to diagnose. The setting lasts until the driver unloads.

use crate::backend::Backend;
use crate::command::Format;
use crate::driver_client;
use crate::json::Json;
use crate::run::{Io, Outcome, RunError};
use clap::ValueEnum;
use wfpcallout_wire::{IOCTL_WFPCALLOUT_SET_LOG_LEVEL, LOG_GATE_LEN, LogGateRepr, LogLevel};

/// The levels a user names, quietest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum DriverLogLevel {
    /// Print nothing.
    Off,
    /// Failures only.
    Error,
    /// Failures and handled surprises.
    Warning,
    /// Lifecycle events and logged verdicts.
    Info,
    /// Per-classify detail.
    Trace,
}

impl DriverLogLevel {
    /// The level as the wire codes it.
    pub fn wire(self) -> LogLevel {
        match self {
            DriverLogLevel::Off => LogLevel::Off,
            DriverLogLevel::Error => LogLevel::Error,
            DriverLogLevel::Warning => LogLevel::Warning,
            DriverLogLevel::Info => LogLevel::Info,
            DriverLogLevel::Trace => LogLevel::Trace,
        }
    }

    /// The IOCTL's input buffer.
    pub fn encode(self) -> [u8; LOG_GATE_LEN] {
        LogGateRepr { max_level: self.wire() }.to_bytes()
    }

    /// The word the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            DriverLogLevel::Off => "off",
            DriverLogLevel::Error => "error",
            DriverLogLevel::Warning => "warning",
            DriverLogLevel::Info => "info",
            DriverLogLevel::Trace => "trace",
        }
    }
}

/// Checks the driver's protocol version, then sets its log level.
pub fn run(
    level: DriverLogLevel,
    format: Format,
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<Outcome, RunError> {
    driver_client::version(backend)?;
    backend.ioctl(IOCTL_WFPCALLOUT_SET_LOG_LEVEL, &level.encode(), 0).map_err(|e| e.context("SET_LOG_LEVEL"))?;
    match format {
        Format::Json => writeln!(io.out, "{}", Json::object().with("log_level", Json::string(level.name())))?,
        Format::Text => writeln!(io.out, "driver log level: {}", level.name())?,
    }
    Ok(Outcome::Success)
}
