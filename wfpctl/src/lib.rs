//! wfpctl: the user-mode control tool of the wfpcallout WFP callout driver.
//!
//! It adds filters whose action calls one of the driver's callouts, each
//! with a provider context carrying a policy blob (`filter add`), deletes
//! and lists them with the driver's per-filter counters, shows the global
//! counters and the driver's state, and answers the driver's ask requests
//! (`agent`).
//!
//! Everything but the [`windows`] module is portable and forbids `unsafe`:
//! the command line ([`cli`]) is parsed into a checked [`command::Command`],
//! policies and filter descriptions are built by [`policy`] and
//! [`filter_spec`], and [`run`] executes commands against the
//! [`backend::Backend`] trait. On Windows the backend is the filter engine,
//! the driver's control device and the service manager (windows-sys); on
//! any other host only `policy encode` and `policy decode` run, and the
//! other commands say why they cannot.
#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod command;
pub mod driver_client;
pub mod filter_spec;
pub mod hex;
pub mod keys;
pub mod output;
pub mod policy;
pub mod rules;
pub mod run;
#[cfg(windows)]
pub mod windows;

#[cfg(test)]
mod mock_backend;
#[cfg(test)]
mod run_tests;

use std::io;

use command::Command;
use run::{Io, Outcome};

/// Exit status of a command that succeeded.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit status of a command that failed, or found the driver not ready.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage error, and of a command that needs Windows on
/// another host.
pub const EXIT_USAGE: u8 = 2;

/// Runs a parsed command on this host's system with the process's standard
/// streams; returns the exit status.
pub fn execute(command: &Command) -> u8 {
    #[cfg(not(windows))]
    if command.needs_windows() {
        use std::io::Write as _;
        let _ = writeln!(io::stderr(), "wfpctl: {}", command::NOT_WINDOWS);
        return EXIT_USAGE;
    }
    #[cfg(windows)]
    let mut backend = windows::WindowsBackend::new();
    #[cfg(not(windows))]
    let mut backend = backend::Unavailable;

    let stdout = io::stdout();
    let stderr = io::stderr();
    let stdin = io::stdin();
    let (mut out, mut err, mut input) = (stdout.lock(), stderr.lock(), stdin.lock());
    let mut io = Io { out: &mut out, err: &mut err, input: &mut input };
    let result = run::run(command, &mut backend, &mut io);
    let _ = io.out.flush();
    match result {
        Ok(Outcome::Success) => EXIT_SUCCESS,
        Ok(Outcome::Degraded) => EXIT_FAILURE,
        Err(error) => {
            let _ = writeln!(io.err, "wfpctl: error: {error}");
            EXIT_FAILURE
        }
    }
}
