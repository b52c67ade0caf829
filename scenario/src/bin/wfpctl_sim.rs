//! `wfpctl-sim`: try wfpctl on a host that is not Windows. Runs wfpctl's
//! commands, one per line of a script (or of standard input), against the
//! real driver code loaded in the simulated kernel (see
//! [`wfpcallout_scenario::tryout`]).

use std::io::Read as _;
use std::process::ExitCode;

const HELP: &str = "\
wfpctl-sim: wfpctl's commands against the wfpcallout driver in the simulated kernel.

Usage: wfpctl-sim [SCRIPT]     (no SCRIPT, or -: read the commands from standard input)

One command per line, without the leading `wfpctl`:
  filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action audit --label web
  filter list [--json]    stats [--json]    status    filter delete ID | --all-ours
  agent --rule permit:tcp:443 --rule block:any:*    (answers the ask requests of the traffic that follows)
  traffic --layer connect|recv-accept --ip v4 [--protocol tcp] [--remote-port P] [--local-port P] [--count N]
  # a comment
Each command is echoed as `PS> wfpctl ...` with what it printed. The simulated engine matches
single ports, protocols and IPv4 addresses (ranges, subnets and IPv6 addresses work on Windows).
Exit status: 0 when every command succeeded and the driver unloaded clean, 1 otherwise,
2 on a usage error.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let script = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--help" | "-h"] => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        [] | ["-"] => {
            let mut script = String::new();
            if let Err(error) = std::io::stdin().read_to_string(&mut script) {
                eprintln!("wfpctl-sim: cannot read standard input: {error}");
                return ExitCode::from(2);
            }
            script
        }
        [path] => match std::fs::read_to_string(path) {
            Ok(script) => script,
            Err(error) => {
                eprintln!("wfpctl-sim: cannot read {path}: {error}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("wfpctl-sim: one SCRIPT at most\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    if script.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#')) {
        eprintln!("wfpctl-sim: no input: the script has no commands\n\n{HELP}");
        return ExitCode::from(2);
    }
    let mut stdout = std::io::stdout().lock();
    match wfpcallout_scenario::tryout::run(&script, &mut stdout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("wfpctl-sim: {error}");
            ExitCode::FAILURE
        }
    }
}
