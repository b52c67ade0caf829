//! The end-to-end scenario in the simulated kernel (see
//! [`wfpcallout_scenario::end_to_end`]). Exits non-zero if anything is off.

use std::process::ExitCode;

use wfpcallout_scenario::end_to_end::{self, Invocation};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match end_to_end::parse_args(&args) {
        Ok(Invocation::Run) => {}
        Ok(Invocation::Help) => {
            println!("{}", end_to_end::HELP);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("wfpcallout-scenario: {error}\n\n{}", end_to_end::HELP);
            return ExitCode::from(2);
        }
    }
    let mut stdout = std::io::stdout().lock();
    match end_to_end::run(&mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("wfpcallout-scenario: {error}");
            ExitCode::FAILURE
        }
    }
}
