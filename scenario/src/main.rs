//! The end-to-end scenario in the simulated kernel (see
//! [`wfpcallout_scenario::end_to_end`]), then the same driver beside another
//! vendor with reauthorizations arriving
//! ([`wfpcallout_scenario::run_beside_another_vendor`]). Exits non-zero if
//! anything is off.

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
    // The scenario, then a second pass with another vendor's filters
    // around ours and reauthorizations arriving: both must pass.
    let passed = end_to_end::run(&mut stdout).and_then(|first| {
        let second = wfpcallout_scenario::run_beside_another_vendor(&mut stdout)?;
        use std::io::Write;
        if second.passed() {
            writeln!(stdout, "second pass passed")?;
        } else {
            writeln!(
                stdout,
                "second pass FAILED: {} unexpected result(s), {} changed verdict(s), {} violation(s)",
                second.unexpected.len(),
                second.changed.len(),
                second.violations.len()
            )?;
        }
        Ok(first && second.passed())
    });
    match passed {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("wfpcallout-scenario: {error}");
            ExitCode::FAILURE
        }
    }
}
