//! The `wfpctl` command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = match wfpctl::cli::parse_from(std::env::args_os()) {
        Ok(command) => command,
        // Help and version go to stdout with status 0, errors to stderr
        // with status 2 (clap's conventions).
        Err(error) => error.exit(),
    };
    ExitCode::from(wfpctl::execute(&command))
}
