//! Runs a [`Command`] against a [`Backend`], writing to the given output:
//! the behaviour of every subcommand, independent of Windows.
#![forbid(unsafe_code)]

use core::fmt;
use std::io::{self, BufRead, Write};

use wfpcallout_wire::{AskRequestRepr, PolicyRepr, VERSION_FLAG_LOADED, Verdict, VerdictMessageRepr, WireError};

use crate::backend::{BFE_SERVICE, Backend, BackendError, DRIVER_SERVICE};
use crate::command::{AgentOptions, Command, DeleteTarget};
use crate::driver_client::{self, DriverError};
use crate::filter_spec::FilterSpec;
use crate::output::{self, StatusReport};
use crate::policy::{self, verdict_name};
use crate::{hex, rules};

/// Where a command reads and writes.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Warnings and progress.
    pub err: &'a mut dyn Write,
    /// The terminal, for `agent --interactive`.
    pub input: &'a mut dyn BufRead,
}

/// Why a command failed.
#[derive(Debug)]
pub enum RunError {
    /// A system call failed.
    Backend(BackendError),
    /// Talking to the driver failed.
    Driver(DriverError),
    /// A policy blob is malformed.
    Policy(WireError),
    /// Writing the output failed.
    Io(io::Error),
    /// Something else, in words.
    Message(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Backend(error) => write!(f, "{error}"),
            RunError::Driver(error) => write!(f, "{error}"),
            RunError::Policy(error) => write!(f, "the policy blob is malformed: {error}"),
            RunError::Io(error) => write!(f, "{error}"),
            RunError::Message(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for RunError {}

impl From<BackendError> for RunError {
    fn from(error: BackendError) -> RunError {
        RunError::Backend(error)
    }
}

impl From<DriverError> for RunError {
    fn from(error: DriverError) -> RunError {
        RunError::Driver(error)
    }
}

impl From<io::Error> for RunError {
    fn from(error: io::Error) -> RunError {
        RunError::Io(error)
    }
}

/// How a command that ran ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done (exit status 0).
    Success,
    /// It ran, but found or left something wrong (exit status 1): `status`
    /// of a driver that is not ready, `filter delete --all-ours` that could
    /// not delete everything.
    Degraded,
}

/// Runs one command.
pub fn run(command: &Command, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    match command {
        Command::FilterAdd(spec) => filter_add(spec, backend, io),
        Command::FilterDelete(target) => filter_delete(*target, backend, io),
        Command::FilterList => filter_list(backend, io),
        Command::Stats => stats(backend, io),
        Command::Agent(options) => agent(options, backend, io),
        Command::Status => status(backend, io),
        Command::PolicyEncode(policy) => policy_encode(policy, io),
        Command::PolicyDecode(blob) => policy_decode(blob, io),
    }
}

fn filter_add(spec: &FilterSpec, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let blob = policy::encode(&spec.policy).map_err(RunError::Policy)?;
    backend.open_engine()?;
    let id = backend.add_filter(spec, &blob)?;
    writeln!(io.out, "{id}")?;
    writeln!(
        io.err,
        "added filter {id} at {}: {} when {} ({})",
        spec.target,
        policy::describe_action(&spec.policy.action),
        spec.conditions_text(),
        spec.name
    )?;
    Ok(Outcome::Success)
}

fn filter_delete(target: DeleteTarget, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    backend.open_engine()?;
    match target {
        DeleteTarget::Id(id) => {
            backend.delete_filter(id)?;
            writeln!(io.out, "deleted filter {id}")?;
            Ok(Outcome::Success)
        }
        DeleteTarget::AllOurs => {
            let filters = backend.list_our_filters()?;
            let mut failed = 0usize;
            for filter in &filters {
                match backend.delete_filter(filter.id) {
                    Ok(()) => writeln!(io.out, "deleted filter {}", filter.id)?,
                    Err(error) => {
                        failed += 1;
                        writeln!(io.err, "wfpctl: could not delete filter {}: {error}", filter.id)?;
                    }
                }
            }
            writeln!(io.out, "deleted {} of {} wfpcallout filters", filters.len() - failed, filters.len())?;
            Ok(if failed == 0 { Outcome::Success } else { Outcome::Degraded })
        }
    }
}

fn filter_list(backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    backend.open_engine()?;
    let filters = backend.list_our_filters()?;
    let stats = match driver_client::all_filter_stats(backend) {
        Ok((_, entries)) => Some(entries),
        Err(error) => {
            writeln!(io.err, "wfpctl: warning: no counters: {error}")?;
            None
        }
    };
    let rows = output::join_filters(&filters, stats.as_deref());
    write!(io.out, "{}", output::filter_table(&rows, stats.is_some()))?;
    Ok(Outcome::Success)
}

fn stats(backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    driver_client::version(backend)?;
    let header = driver_client::global_stats(backend)?;
    write!(io.out, "{}", output::stats_summary(&header))?;
    Ok(Outcome::Success)
}

fn status(backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let report = StatusReport {
        bfe: backend.service_state(BFE_SERVICE).map_err(|e| e.to_string()),
        driver_service: backend.service_state(DRIVER_SERVICE).map_err(|e| e.to_string()),
        driver: driver_client::version(backend).map_err(|e| e.to_string()),
    };
    write!(io.out, "{}", output::status_report(&report))?;
    Ok(if report.healthy() { Outcome::Success } else { Outcome::Degraded })
}

fn policy_encode(policy: &PolicyRepr, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let blob = policy::encode(policy).map_err(RunError::Policy)?;
    writeln!(io.out, "{}", hex::encode(&blob))?;
    Ok(Outcome::Success)
}

fn policy_decode(blob: &[u8], io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let policy = policy::decode(blob).map_err(RunError::Policy)?;
    write!(io.out, "{}", output::policy_details(&policy, blob.len()))?;
    Ok(Outcome::Success)
}

/// How the agent reached a verdict.
enum Reason {
    Rule(usize),
    Asked,
    Default,
}

fn agent(options: &AgentOptions, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let version = driver_client::version(backend)?;
    if !version.has_flag(VERSION_FLAG_LOADED) {
        return Err(RunError::Message(
            "the driver has not registered its callouts: no connection will be asked about".to_string(),
        ));
    }
    writeln!(
        io.err,
        "agent: waiting for ask requests ({} rules{}); Ctrl+C stops, and pending requests then get their default \
         verdict",
        options.rules.len(),
        if options.interactive { ", asking on this terminal when none matches" } else { "" }
    )?;
    let mut interactive = options.interactive;
    let mut handled = 0u64;
    while options.max.is_none_or(|max| handled < max) {
        let request = driver_client::next_request(backend)?;
        let (verdict, reason) = match rules::decide(&options.rules, &request) {
            Some((index, verdict)) => (verdict, Reason::Rule(index)),
            None if interactive => match ask(&request, io)? {
                Some(verdict) => (verdict, Reason::Asked),
                None => {
                    // The terminal is closed: stop asking.
                    interactive = false;
                    (request.default_verdict, Reason::Default)
                }
            },
            None => (request.default_verdict, Reason::Default),
        };
        let why = match reason {
            Reason::Rule(index) => {
                let rule = options.rules.get(index).map(ToString::to_string).unwrap_or_default();
                format!("rule {} {rule}", index + 1)
            }
            Reason::Asked => "answered".to_string(),
            Reason::Default => "no rule matched: the filter's default".to_string(),
        };
        let answer = VerdictMessageRepr { request_id: request.request_id, verdict };
        match driver_client::send_verdict(backend, &answer) {
            Ok(()) => writeln!(io.out, "{} => {} ({why})", output::describe_request(&request), verdict_name(verdict))?,
            // Late (the timeout passed) or already decided: the driver
            // applied the default; keep serving.
            Err(error) => writeln!(
                io.err,
                "wfpctl: request {}: the driver did not take the verdict ({error}); it applied the default ({})",
                request.request_id,
                verdict_name(request.default_verdict)
            )?,
        }
        handled += 1;
    }
    writeln!(io.err, "agent: {handled} requests handled")?;
    Ok(Outcome::Success)
}

/// Asks about one request on the terminal. `None` when the input is closed.
fn ask(request: &AskRequestRepr, io: &mut Io<'_>) -> Result<Option<Verdict>, RunError> {
    writeln!(io.err, "{}", output::describe_request(request))?;
    loop {
        write!(
            io.err,
            "permit or block? [p/b, Enter: {}] (answer within {} ms) ",
            verdict_name(request.default_verdict),
            request.timeout_ms
        )?;
        io.err.flush()?;
        let mut line = String::new();
        if io.input.read_line(&mut line)? == 0 {
            writeln!(io.err)?;
            return Ok(None);
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "" => return Ok(Some(request.default_verdict)),
            "p" | "permit" | "y" | "yes" | "allow" => return Ok(Some(Verdict::Permit)),
            "b" | "block" | "n" | "no" | "deny" => return Ok(Some(Verdict::Block)),
            other => writeln!(io.err, "'{other}' is neither p nor b")?,
        }
    }
}
