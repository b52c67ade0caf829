//! The end-to-end scenario in the simulated kernel (see
//! [`wfpcallout_scenario::end_to_end`]). Exits non-zero if anything is off.

use std::process::ExitCode;

const HELP: &str = "\
Runs the wfpcallout driver through its end-to-end scenario in the simulated kernel:
load, a filter per policy (permit, block, audit, rate-limit, ask), classification
through each, an agent answering an ask request, flow contexts, a malformed policy
vetoed by notifyFn, another vendor's filter, delete, unload, and the pool and
verifier checks. Prints what happened; exits with 0 when every result was the
expected one, 1 otherwise, 2 on a usage error.

Usage: wfpcallout-scenario [--help]

To try wfpctl's commands against the same simulated driver: wfpctl-sim --help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["--help" | "-h"] => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("wfpcallout-scenario: unexpected argument '{}'\n\n{HELP}", other.join(" "));
            return ExitCode::from(2);
        }
    }
    let mut stdout = std::io::stdout().lock();
    match wfpcallout_scenario::end_to_end::run(&mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("wfpcallout-scenario: {error}");
            ExitCode::FAILURE
        }
    }
}
