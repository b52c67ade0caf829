//! The `wfpctl` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let invocation = match wfpctl::cli::parse_from(std::env::args_os()) {
        Ok(invocation) => invocation,
        // Help and version go to stdout with status 0, errors to stderr
        // with status 2 (clap's conventions, and wfpctl's EXIT_USAGE).
        Err(error) => error.exit(),
    };
    ExitCode::from(wfpctl::execute(&invocation))
}
