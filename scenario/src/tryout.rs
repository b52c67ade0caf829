//! The try-out: wfpctl's own commands against the real driver code in the
//! simulated kernel, in one process, from a script (or standard input),
//! so wfpctl can be tried on a host that is not Windows.
//!
//! Each line is a wfpctl command line without the leading `wfpctl`
//! (`filter add …`, `filter list`, `stats`, `status`, `agent …`, `policy …`,
//! with `--json` where wanted), or one of the try-out's own commands:
//!
//! - `traffic --layer connect|recv-accept --ip v4 [--protocol tcp|udp|N]
//!   [--remote-port P] [--local-port P] [--count N]`: connections through
//!   the simulated engine (10.0.0.2:49152 to 192.0.2.10 outbound, the other
//!   way inbound), each with the verdict and the filter that decided;
//! - `agent …` starts the agent: it answers what is waiting, and from then
//!   on every request the traffic causes, as a running `wfpctl agent`
//!   would (`--interactive` is not available here: the script is the
//!   input);
//! - `stop-driver` stops the driver as `sc.exe stop WfpCallout` would (its
//!   unload keeps the objects filters still name), for `uninstall`.
//!
//! Lines starting with `#` are comments. Each command is echoed as
//! `PS> wfpctl …` followed by what it printed (standard output and
//! standard error, in order), so the session reads like the walkthrough.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::io::{self, Cursor, Write};
use std::rc::Rc;

use clap::Parser;
use wfpcallout::callbacks::state::STATE;
use wfpcallout_simkernel::engine::{self, pending};
use wfpctl::command::{AgentOptions, Command, Format};
use wfpctl::filter_spec::{IpVersion, Layer as CtlLayer, parse_protocol};
use wfpctl::run::{Io, run_as};

use crate::Layer;
use crate::simulated_backend::{HANDLE_TOKEN, SimulatedBackend};

/// What `wfpctl-sim --help` prints.
pub const HELP: &str = "\
wfpctl-sim: wfpctl's commands against the wfpcallout driver in the simulated kernel.

Usage: wfpctl-sim [SCRIPT]     (no SCRIPT, or -: read the commands from standard input)

One command per line, without the leading `wfpctl`:
  filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action audit --label web
  filter list [--json]    stats [--json]    status    filter delete ID | --all-ours
  agent --rule permit:tcp:443 --rule block:any:*    (answers the ask requests of the traffic that follows)
  traffic --layer connect|recv-accept --ip v4 [--protocol tcp] [--remote-port P] [--local-port P] [--count N]
  stop-driver    (as sc.exe stop WfpCallout)    uninstall
  # a comment
Each command is echoed as `PS> wfpctl ...` with what it printed. The simulated engine matches
single ports, protocols and IPv4 addresses (ranges, subnets and IPv6 addresses are for the Windows backend).
Exit status: 0 when every command succeeded and the driver unloaded clean, 1 otherwise,
2 on a usage error.";

/// Where `wfpctl-sim` reads its commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Print [`HELP`] instead.
    Help,
    /// Standard input (no argument, or `-`).
    Stdin,
    /// A script file.
    File(String),
}

/// Reads `wfpctl-sim`'s arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Source, String> {
    match args {
        [] => Ok(Source::Stdin),
        [one] if one == "-" => Ok(Source::Stdin),
        [one] if one == "--help" || one == "-h" => Ok(Source::Help),
        [one] if one.starts_with('-') => Err(format!("unknown option '{one}'")),
        [path] => Ok(Source::File(path.clone())),
        _ => Err("one SCRIPT at most".to_string()),
    }
}

/// Whether a script has a command (not only blank lines and comments).
pub fn has_commands(script: &str) -> bool {
    script.lines().map(str::trim).any(|line| !line.is_empty() && !line.starts_with('#'))
}

/// `traffic`: connections through the simulated engine.
#[derive(Debug, Parser)]
#[command(name = "traffic", no_binary_name = true)]
struct TrafficArgs {
    /// connect (outbound) or recv-accept (inbound)
    #[arg(long, value_enum)]
    layer: CtlLayer,
    /// IP version (the simulated engine matches IPv4 addresses only)
    #[arg(long, value_enum)]
    ip: IpVersion,
    /// tcp, udp, or a number
    #[arg(long, value_parser = parse_protocol, default_value = "tcp")]
    protocol: u8,
    /// The remote port [default: 443]
    #[arg(long, default_value_t = 443)]
    remote_port: u16,
    /// The local port [default: 49152]
    #[arg(long, default_value_t = 49_152)]
    local_port: u16,
    /// How many connections [default: 1]
    #[arg(long, default_value_t = 1)]
    count: u32,
}

/// A writer several [`Io`] members share, so standard output and standard
/// error of a command land in one transcript, in order.
#[derive(Clone, Default)]
struct Transcript(Rc<RefCell<Vec<u8>>>);

impl Write for Transcript {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transcript {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// A try-out session: the simulated driver, and the agent once started.
pub struct Session {
    backend: SimulatedBackend,
    agent: Option<AgentOptions>,
    connections: u64,
    failures: usize,
}

impl Session {
    /// Boots the simulated kernel and loads the driver.
    pub fn start() -> Result<Session, String> {
        let backend = SimulatedBackend::load().map_err(|error| error.to_string())?;
        Ok(Session { backend, agent: None, connections: 0, failures: 0 })
    }

    /// Runs a script, writing the transcript to `out`; returns whether
    /// every command succeeded and the driver unloaded clean.
    pub fn run_script(mut self, script: &str, out: &mut dyn Write) -> io::Result<bool> {
        for line in script.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            writeln!(out, "PS> wfpctl {line}")?;
            let text = self.line(line);
            out.write_all(&text)?;
        }
        writeln!(out, "-- end of the session: unloading the driver")?;
        let failures = self.failures;
        match self.backend.unload() {
            Ok(allocations) => {
                writeln!(out, "-- unloaded: {allocations} pool allocations, all freed; no verifier violation")?;
                Ok(failures == 0)
            }
            Err(problems) => {
                for problem in problems {
                    writeln!(out, "-- {problem}")?;
                }
                Ok(false)
            }
        }
    }

    /// One line: its transcript.
    fn line(&mut self, line: &str) -> Vec<u8> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words == ["stop-driver"] {
            self.backend.stop_driver();
            self.agent = None;
            return b"-- the driver unloaded (sc.exe stop WfpCallout); the engine keeps what filters name\n".to_vec();
        }
        if words.first() == Some(&"traffic") {
            let mut text = Vec::new();
            match TrafficArgs::try_parse_from(words.iter().skip(1)) {
                Ok(args) => self.traffic(&args, &mut text),
                Err(error) => {
                    self.failures += 1;
                    text.extend_from_slice(error.to_string().as_bytes());
                }
            }
            return text;
        }
        let invocation = match wfpctl::cli::parse_from(std::iter::once("wfpctl").chain(words.iter().copied())) {
            Ok(invocation) => invocation,
            Err(error) => {
                self.failures += 1;
                return error.to_string().into_bytes();
            }
        };
        if let Command::Agent(options) = &invocation.command {
            if options.interactive {
                self.failures += 1;
                return b"wfpctl: error: --interactive needs a terminal; in the try-out give --rule\n".to_vec();
            }
            // A running agent's handle is attached by its first, parked
            // GET_REQUEST: from now on the driver pends ask connections.
            self.backend.harness().connect_agent(HANDLE_TOKEN);
            self.agent = Some(options.clone());
            let transcript = Transcript::default();
            let mut banner = transcript.clone();
            let _ = writeln!(
                banner,
                "agent: started ({} rules); it answers the ask requests of the traffic that follows",
                options.rules.len()
            );
            self.answer_waiting(invocation.format, &transcript, true);
            return transcript.take();
        }
        self.run(&invocation.command, invocation.format)
    }

    /// Runs a wfpctl command; its transcript.
    fn run(&mut self, command: &Command, format: Format) -> Vec<u8> {
        let transcript = Transcript::default();
        let (mut out, mut err) = (transcript.clone(), transcript.clone());
        let mut input = Cursor::new(Vec::new());
        let result =
            run_as(command, format, &mut self.backend, &mut Io { out: &mut out, err: &mut err, input: &mut input });
        let status = wfpctl::exit_status(&result);
        if let Err(error) = result {
            let _ = writeln!(err, "wfpctl: error: {error}");
        }
        if status != wfpctl::EXIT_SUCCESS {
            self.failures += 1;
            let _ = writeln!(err, "(exit status {status})");
        }
        transcript.take()
    }

    /// The started agent answers every request waiting in the driver, one
    /// at a time (wfpctl's agent with `--max 1`); its banner is shown once.
    fn answer_waiting(&mut self, format: Format, transcript: &Transcript, first: bool) {
        let Some(options) = self.agent.clone() else { return };
        while STATE.pending.has_queued() {
            let one = Command::Agent(AgentOptions { max: Some(1), ..options.clone() });
            let mut out = transcript.clone();
            let mut err: Box<dyn Write> = if first { Box::new(transcript.clone()) } else { Box::new(io::sink()) };
            let mut input = Cursor::new(Vec::new());
            let result =
                run_as(&one, format, &mut self.backend, &mut Io { out: &mut out, err: &mut *err, input: &mut input });
            if let Err(error) = result {
                self.failures += 1;
                let _ = writeln!(out, "wfpctl: error: {error}");
                return;
            }
        }
    }

    fn traffic(&mut self, args: &TrafficArgs, text: &mut Vec<u8>) {
        let layer = match (args.layer, args.ip) {
            (CtlLayer::Connect, IpVersion::V4) => Layer::ConnectV4,
            (CtlLayer::RecvAccept, IpVersion::V4) => Layer::RecvAcceptV4,
            (CtlLayer::Flow, _) | (_, IpVersion::V6) => {
                self.failures += 1;
                let _ = writeln!(
                    text,
                    "traffic: the try-out sends IPv4 connections at --layer connect or recv-accept (flows are \
                     tracked once a connection is permitted)"
                );
                return;
            }
        };
        for _ in 0..args.count {
            self.connections += 1;
            let mut connection = layer.connection(args.remote_port);
            connection.protocol = args.protocol;
            connection.local_port = args.local_port;
            let result = engine::classify(&connection);
            let (direction, from, to) = match layer {
                Layer::RecvAcceptV4 => (
                    "inbound",
                    format!("{}:{}", connection.remote_address, connection.remote_port),
                    format!("{}:{}", connection.local_address, connection.local_port),
                ),
                _ => (
                    "outbound",
                    format!("{}:{}", connection.local_address, connection.local_port),
                    format!("{}:{}", connection.remote_address, connection.remote_port),
                ),
            };
            let protocol = wfpctl::filter_spec::protocol_name(connection.protocol);
            let verdict = if result.pended.is_some() {
                "pended for the agent (BLOCK + ABSORB until it answers)".to_string()
            } else {
                verdict_word(&result)
            };
            let _ = writeln!(text, "connection {}: {direction} {protocol} {from} -> {to}: {verdict}", self.connections);
            if result.pended.is_some() {
                let transcript = Transcript::default();
                self.answer_waiting(Format::Text, &transcript, false);
                text.extend_from_slice(&transcript.take());
                // The stack may carry an injected packet (and classify it)
                // after the injection returned, just before its completion
                // (simkernel CONFORMANCE I7): let it finish before reporting.
                engine::packets::deliver_injection_completions();
                for completion in pending::take_completions() {
                    let outcome = match completion.reauthorization {
                        Some(result) => format!("completed; the reauthorization got {}", verdict_word(&result)),
                        // At recv-accept completion does not reauthorize:
                        // the driver completed with its clone of the packet.
                        None => match engine::packets::take_reinjected().first() {
                            Some((_, result)) => format!(
                                "completed with the cloned packet; the driver reinjected it: {}",
                                verdict_word(result)
                            ),
                            None => "completed with the cloned packet; the driver dropped it: BLOCK".to_string(),
                        },
                    };
                    let _ = writeln!(text, "connection {}: {outcome}", self.connections);
                }
            }
        }
    }
}

/// `PERMIT (filter 70001)`, `BLOCK (no filter matched)`.
fn verdict_word(result: &engine::ClassifyResult) -> String {
    let by = result.decided_by.map_or_else(|| "no filter matched".to_string(), |id| format!("filter {id}"));
    if result.permitted() { format!("PERMIT ({by})") } else { format!("BLOCK ({by})") }
}

/// Runs a script in a fresh session; the transcript goes to `out`.
pub fn run(script: &str, out: &mut dyn Write) -> io::Result<bool> {
    match Session::start() {
        Ok(session) => session.run_script(script, out),
        Err(error) => {
            writeln!(out, "the simulated driver did not load: {error}")?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// The indented blocks of a Markdown file that start with `first`,
    /// dedented, each up to its blank line.
    fn blocks(markdown: &str, first: &str) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut current: Option<String> = None;
        for line in markdown.lines() {
            let code = line.strip_prefix("    ");
            match (&mut current, code) {
                (Some(block), Some(code)) => {
                    block.push_str(code);
                    block.push('\n');
                }
                (Some(_), None) => blocks.extend(current.take()),
                (None, Some(code)) if code.starts_with(first) => current = Some(format!("{code}\n")),
                (None, _) => {}
            }
        }
        blocks.extend(current);
        blocks
    }

    /// `request 7:` as `request N:`: request ids count on across the driver
    /// loads of one test process (the try-out binary always starts at 1).
    fn without_request_ids(text: &str) -> String {
        text.lines()
            .map(|line| {
                let indent = &line[..line.len() - line.trim_start().len()];
                match line.trim_start().strip_prefix("request ").and_then(|rest| rest.split_once(':')) {
                    Some((id, rest)) if id.chars().all(|c| c.is_ascii_digit()) => {
                        format!("{indent}request N:{rest}\n")
                    }
                    _ => format!("{line}\n"),
                }
            })
            .collect()
    }

    /// Every wfpctl output the walkthrough shows comes from the try-out's
    /// transcript of `docs/tryout.txt` (the agent's banner aside: a real
    /// agent waits for Ctrl+C, the try-out's answers the traffic that
    /// follows).
    #[test]
    fn the_walkthrough_shows_what_the_tryout_prints() {
        let mut out = Vec::new();
        assert!(run(&docs("tryout.txt"), &mut out).unwrap(), "{}", String::from_utf8_lossy(&out));
        let transcript = without_request_ids(&String::from_utf8(out).unwrap());
        let walkthrough = without_request_ids(&docs("WALKTHROUGH.md"));
        let shown = blocks(&walkthrough, "PS> wfpctl ");
        let checked: Vec<&String> = shown.iter().filter(|block| !block.starts_with("PS> wfpctl agent")).collect();
        assert!(checked.len() >= 7, "{checked:?}");
        for block in checked {
            assert!(
                transcript.contains(block.as_str()),
                "the walkthrough shows\n{block}\nthe try-out printed\n{transcript}"
            );
        }
        let requests = blocks(&walkthrough, "request N: outbound tcp 10.0.0.2:49152");
        assert_eq!(requests.len(), 1);
        assert!(transcript.contains(&requests[0]), "{}\n{transcript}", requests[0]);
    }

    #[test]
    fn pended_connections_end_as_the_agent_says() {
        let script = "filter add --layer recv-accept --ip v4 --local-port 3389 --action ask --default permit\n\
                      filter add --layer connect --ip v4 --remote-port 22 --action ask --default block\n\
                      agent --rule deny:udp:* --rule allow:tcp:22\n\
                      traffic --layer recv-accept --ip v4 --local-port 3389 --protocol udp\n\
                      traffic --layer connect --ip v4 --remote-port 22\n\
                      traffic --layer connect --ip v4 --remote-port 22 --protocol udp\n";
        let mut out = Vec::new();
        assert!(run(script, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("connection 1: completed with the cloned packet; the driver dropped it: BLOCK"),
            "{text}"
        );
        assert!(text.contains("connection 2: completed; the reauthorization got PERMIT (filter 70002)"), "{text}");
        assert!(text.contains("connection 3: completed; the reauthorization got BLOCK (filter 70002)"), "{text}");
    }

    #[test]
    fn every_bad_line_fails_the_session_and_says_why() {
        for (line, says) in [
            ("traffic --layer connect", "--ip"),
            ("traffic --layer flow --ip v4", "the try-out sends IPv4 connections"),
            ("traffic --layer connect --ip v6", "the try-out sends IPv4 connections"),
            ("frobnicate", "unrecognized subcommand"),
            ("agent --interactive", "--interactive needs a terminal"),
            ("filter delete 12345", "FwpmFilterDeleteById0 failed"),
            ("policy decode 5746", "the policy blob is malformed"),
        ] {
            let mut out = Vec::new();
            assert!(!run(&format!("status\n{line}\nstats\n"), &mut out).unwrap(), "{line}");
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(says), "{line}: {text}");
            assert!(text.contains("PS> wfpctl stats\nCOUNTER"), "the session goes on after {line}: {text}");
        }
    }

    #[test]
    fn arguments() {
        let args = |list: &[&str]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(parse_args(&args(&[])), Ok(Source::Stdin));
        assert_eq!(parse_args(&args(&["-"])), Ok(Source::Stdin));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Source::Help));
        assert_eq!(parse_args(&args(&["s.txt"])), Ok(Source::File("s.txt".to_string())));
        assert_eq!(parse_args(&args(&["--x"])), Err("unknown option '--x'".to_string()));
        assert!(parse_args(&args(&["a", "b"])).is_err());
        assert!(!has_commands("# only a comment\n\n   \n"));
        assert!(has_commands("# a comment\nstatus\n"));
    }

    #[test]
    fn traffic_through_filters_and_the_agent() {
        let script = "filter add --layer connect --ip v4 --remote-port 81 --action rate-limit --rate 1 --burst 2\n\
                      traffic --layer connect --ip v4 --remote-port 81 --count 3\n\
                      filter add --layer recv-accept --ip v4 --local-port 3389 --action ask --default block\n\
                      traffic --layer recv-accept --ip v4 --local-port 3389\n\
                      agent --rule allow:tcp:3389\n\
                      traffic --layer recv-accept --ip v4 --local-port 3389\n\
                      filter add --layer connect --ip v4 --remote-port 5000-5100 --action block\n";
        let mut out = Vec::new();
        assert!(!run(script, &mut out).unwrap(), "the range filter is refused: the session reports a failure");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("connection 3: outbound tcp 10.0.0.2:49152 -> 192.0.2.10:81: BLOCK (filter 70001)"),
            "{text}"
        );
        assert!(
            text.contains("connection 2: outbound tcp 10.0.0.2:49152 -> 192.0.2.10:81: PERMIT (filter 70001)"),
            "{text}"
        );
        // No agent yet: the ask filter's default, at once.
        assert!(
            text.contains("connection 4: inbound tcp 192.0.2.10:443 -> 10.0.0.2:3389: BLOCK (filter 70002)"),
            "{text}"
        );
        assert!(
            text.contains("connection 5: inbound tcp 192.0.2.10:443 -> 10.0.0.2:3389: pended for the agent"),
            "{text}"
        );
        assert!(text.contains("=> permit (rule 1 permit:tcp:3389)"), "{text}");
        assert!(
            text.contains(
                "connection 5: completed with the cloned packet; the driver reinjected it: PERMIT (filter 70002)"
            ),
            "{text}"
        );
        assert!(text.contains("remote-port=5000-5100: the simulated engine matches single ports"), "{text}");
        assert!(text.contains("(exit status 1)"), "{text}");
        assert!(text.ends_with("no verifier violation\n"), "{text}");
    }
}
