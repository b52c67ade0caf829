//! `wfpctl-sim`: try wfpctl on a host that is not Windows. Runs wfpctl's
//! commands, one per line of a script (or of standard input), against the
//! real driver code loaded in the simulated kernel (see
//! [`wfpcallout_scenario::tryout`]).

use std::io::Read as _;
use std::process::ExitCode;

use wfpcallout_scenario::tryout::{self, Source};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let script = match tryout::parse_args(&args) {
        Ok(Source::Help) => {
            println!("{}", tryout::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Source::Stdin) => {
            let mut script = String::new();
            if let Err(error) = std::io::stdin().read_to_string(&mut script) {
                eprintln!("wfpctl-sim: cannot read standard input: {error}");
                return ExitCode::from(2);
            }
            script
        }
        Ok(Source::File(path)) => match std::fs::read_to_string(&path) {
            Ok(script) => script,
            Err(error) => {
                eprintln!("wfpctl-sim: cannot read {path}: {error}");
                return ExitCode::from(2);
            }
        },
        Err(error) => {
            eprintln!("wfpctl-sim: {error}\n\n{}", tryout::HELP);
            return ExitCode::from(2);
        }
    };
    if !tryout::has_commands(&script) {
        eprintln!("wfpctl-sim: no input: the script has no commands\n\n{}", tryout::HELP);
        return ExitCode::from(2);
    }
    let mut stdout = std::io::stdout().lock();
    match tryout::run(&script, &mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("wfpctl-sim: {error}");
            ExitCode::FAILURE
        }
    }
}
