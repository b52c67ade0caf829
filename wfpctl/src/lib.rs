//! wfpctl: the user-mode control tool of the wfpcallout WFP callout driver.
//!
//! It adds filters whose action calls one of the driver's callouts, each
//! with a provider context carrying a policy blob (`filter add`), deletes
//! and lists them with the driver's per-filter counters, shows the global
//! counters and the driver's state, answers the driver's ask requests
//! (`agent`), and removes the driver's persistent objects from the engine
//! for good (`uninstall`).
//!
//! Everything but the [`windows`] module is portable and forbids `unsafe`:
//! the command line ([`cli`]) is parsed into a checked [`command::Command`],
//! policies and filter descriptions are built by [`policy`] and
//! [`filter_spec`], and [`run`] executes commands against the
//! [`backend::Backend`] trait. On Windows the backend is the filter engine,
//! the driver's control device and the service manager (windows-sys); on
//! any other host only `policy encode` and `policy decode` run, and the
//! other commands say why they cannot (exit status [`EXIT_NOT_WINDOWS`]).
#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod command;
pub mod driver_client;
pub mod filter_spec;
pub mod footprint;
pub mod hex;
pub mod json;
pub mod json_output;
pub mod keys;
pub mod log_level;
pub mod output;
pub mod policy;
pub mod rules;
pub mod run;
pub mod uninstall;
pub mod vocabulary;
#[cfg(windows)]
pub mod windows;

#[cfg(test)]
mod mock_backend;
#[cfg(test)]
mod run_tests;

use std::io;

use command::Invocation;
use run::{Io, Outcome, RunError};

/// Exit status of a command that succeeded.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit status of a command that failed, or that ran but found or left
/// something wrong (`status` of a driver that is not ready, `filter delete
/// --all-ours` that could not delete everything).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage error: a bad or contradictory option, or no
/// input, or input that is not what the command reads, where some was
/// needed (the same text is a usage error whether it is an argument or
/// comes through standard input; clap's own errors exit with it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a command that needs Windows (the filter engine, the
/// driver) run on another host.
pub const EXIT_NOT_WINDOWS: u8 = 3;

/// Exit status of `uninstall` that removed everything from the filter
/// engine while the driver is still loaded: its callouts stay registered
/// until it stops.
pub const EXIT_DRIVER_LOADED: u8 = 4;

/// Every exit status with what it means, as `--help` and the docs list them.
pub const EXIT_STATUSES: [(u8, &str); 5] = [
    (EXIT_SUCCESS, "success"),
    (EXIT_FAILURE, "the command failed, or found the driver not ready (status), or left something undone"),
    (EXIT_USAGE, "usage error: bad or contradictory options, or missing or unreadable input"),
    (EXIT_NOT_WINDOWS, "the command needs Windows and this host is not Windows"),
    (EXIT_DRIVER_LOADED, "uninstall: nothing is left in the filter engine, but the driver is still loaded: stop it"),
];

/// The exit status of a command's result.
pub fn exit_status(result: &Result<Outcome, RunError>) -> u8 {
    match result {
        Ok(Outcome::Success) => EXIT_SUCCESS,
        Ok(Outcome::Degraded) => EXIT_FAILURE,
        Ok(Outcome::DriverLoaded) => EXIT_DRIVER_LOADED,
        Err(RunError::NoInput(_) | RunError::BadInput(_)) => EXIT_USAGE,
        Err(_) => EXIT_FAILURE,
    }
}

/// Runs a parsed command on this host's system with the process's standard
/// streams; returns the exit status.
pub fn execute(invocation: &Invocation) -> u8 {
    #[cfg(not(windows))]
    if invocation.command.needs_windows() {
        use std::io::Write as _;
        let _ = writeln!(io::stderr(), "wfpctl: {}", command::NOT_WINDOWS);
        return EXIT_NOT_WINDOWS;
    }
    #[cfg(windows)]
    let mut backend = windows::WindowsBackend::new();
    #[cfg(not(windows))]
    let mut backend = backend::Unavailable;
    execute_with(invocation, &mut backend)
}

/// Runs a parsed command against `backend` with the process's standard
/// streams; returns the exit status.
pub fn execute_with(invocation: &Invocation, backend: &mut dyn backend::Backend) -> u8 {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let stdin = io::stdin();
    let (mut out, mut err, mut input) = (stdout.lock(), stderr.lock(), stdin.lock());
    let mut io = Io { out: &mut out, err: &mut err, input: &mut input };
    let result = run::run_as(&invocation.command, invocation.format, backend, &mut io);
    let _ = io.out.flush();
    if let Err(error) = &result {
        let _ = writeln!(io.err, "wfpctl: error: {error}");
    }
    exit_status(&result)
}
