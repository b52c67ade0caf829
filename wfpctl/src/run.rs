//! Runs a [`Command`] against a [`Backend`], writing to the given output:
//! the behaviour of every subcommand, independent of Windows.
#![forbid(unsafe_code)]

use core::fmt;
use std::io::{self, BufRead, Write};

use wfpcallout_wire::{AskRequestRepr, PolicyRepr, VERSION_FLAG_LOADED, Verdict, VerdictMessageRepr, WireError};

use crate::backend::{BFE_SERVICE, Backend, BackendError, DRIVER_SERVICE, MISSING_OBJECT_CODES, ServiceState};
use crate::command::{AgentOptions, BlobSource, Command, DeleteTarget, Format};
use crate::driver_client::{self, DriverError};
use crate::filter_spec::FilterSpec;
use crate::footprint::Footprint;
use crate::json::Json;
use crate::output::{self, StatusReport};
use crate::policy::{self, verdict_name};
use crate::{hex, json_output, rules};

/// Where a command reads and writes.
pub struct Io<'a> {
    /// Results.
    pub out: &'a mut dyn Write,
    /// Warnings and progress.
    pub err: &'a mut dyn Write,
    /// The terminal, for `agent --interactive`, and the blob of
    /// `policy decode -`.
    pub input: &'a mut dyn BufRead,
}

impl Io<'_> {
    fn json(&mut self, value: &Json) -> io::Result<()> {
        writeln!(self.out, "{value}")
    }
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
    /// There was nothing to work on (an empty standard input): a usage
    /// error, exit status 2.
    NoInput(String),
    /// The input is not in the form the command reads (standard input
    /// that is not hex): a usage error, exit status 2, like the same text
    /// given as an argument.
    BadInput(String),
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
            RunError::NoInput(what) => write!(f, "no input: {what}"),
            RunError::BadInput(what) => f.write_str(what),
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
    /// not delete everything, `uninstall` that had to keep an object.
    Degraded,
    /// `uninstall` removed everything from the engine, but the driver is
    /// still loaded (exit status [`crate::EXIT_DRIVER_LOADED`]).
    DriverLoaded,
}

/// Runs one command, printing text.
pub fn run(command: &Command, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    run_as(command, Format::Text, backend, io)
}

/// Runs one command, printing its results as `format` says.
pub fn run_as(
    command: &Command,
    format: Format,
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<Outcome, RunError> {
    match command {
        Command::FilterAdd(spec) => filter_add(spec, format, backend, io),
        Command::FilterDelete(target) => filter_delete(*target, format, backend, io),
        Command::FilterList => filter_list(format, backend, io),
        Command::Stats => stats(format, backend, io),
        Command::LogLevel(level) => crate::log_level::run(*level, format, backend, io),
        Command::Agent(options) => agent(options, format, backend, io),
        Command::Status => status(format, backend, io),
        Command::PolicyEncode(policy) => policy_encode(policy, format, io),
        Command::PolicyDecode(source) => policy_decode(source, format, io),
        Command::State => state(format, backend, io),
        Command::Uninstall => crate::uninstall::run(format, backend, io),
    }
}

fn state(format: Format, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    backend.open_engine()?;
    let footprint = Footprint::analyze(backend.engine_objects()?);
    match format {
        Format::Json => io.json(&footprint.json())?,
        Format::Text => write!(io.out, "{}", footprint.text())?,
    }
    Ok(if footprint.complete() && footprint.leftovers.is_empty() { Outcome::Success } else { Outcome::Degraded })
}

fn filter_add(
    spec: &FilterSpec,
    format: Format,
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<Outcome, RunError> {
    let blob = policy::encode(&spec.policy).map_err(RunError::Policy)?;
    backend.open_engine()?;
    let id = backend.add_filter(spec, &blob).map_err(|error| missing_objects(error, backend))?;
    if format == Format::Json {
        io.json(&json_output::filter_added(id, spec))?;
        return Ok(Outcome::Success);
    }
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

/// What to do when `FwpmFilterAdd0` finds no provider, sublayer or
/// callouts of ours. The driver adds them when it starts: if it is not
/// running, starting it is the answer; if it is, they were deleted since
/// (`wfpctl uninstall` with the driver loaded), and only a restart adds
/// them again. Any other error, or a service state that cannot be read,
/// is passed on as it is.
fn missing_objects(error: BackendError, backend: &mut dyn Backend) -> RunError {
    if !error.code.is_some_and(|code| MISSING_OBJECT_CODES.contains(&code)) {
        return error.into();
    }
    let hint = match backend.service_state(DRIVER_SERVICE) {
        Ok(ServiceState::Running) => format!(
            "the driver is running, so they were deleted after it started (wfpctl uninstall?): restart it \
             (sc.exe stop {DRIVER_SERVICE}, then sc.exe start {DRIVER_SERVICE}) to add them again"
        ),
        Ok(ServiceState::NotInstalled) => "the driver is not installed: install and start it".to_string(),
        Ok(_) => format!("start the driver (sc.exe start {DRIVER_SERVICE})"),
        Err(_) => return error.into(),
    };
    RunError::Message(format!("{error}; {hint}"))
}

fn filter_delete(
    target: DeleteTarget,
    format: Format,
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<Outcome, RunError> {
    backend.open_engine()?;
    let ids = match target {
        DeleteTarget::Id(id) => {
            backend.delete_filter(id)?;
            if format == Format::Json {
                io.json(&json_output::filters_deleted(&[id], &[]))?;
            } else {
                writeln!(io.out, "deleted filter {id}")?;
            }
            return Ok(Outcome::Success);
        }
        DeleteTarget::AllOurs => backend.list_our_filters()?.into_iter().map(|filter| filter.id).collect::<Vec<_>>(),
    };
    let (mut deleted, mut failed) = (Vec::new(), Vec::new());
    for id in &ids {
        match backend.delete_filter(*id) {
            Ok(()) => {
                deleted.push(*id);
                if format == Format::Text {
                    writeln!(io.out, "deleted filter {id}")?;
                }
            }
            Err(error) => {
                writeln!(io.err, "wfpctl: could not delete filter {id}: {error}")?;
                failed.push((*id, error.to_string()));
            }
        }
    }
    if format == Format::Json {
        io.json(&json_output::filters_deleted(&deleted, &failed))?;
    } else {
        writeln!(io.out, "deleted {} of {} wfpcallout filters", deleted.len(), ids.len())?;
    }
    Ok(if failed.is_empty() { Outcome::Success } else { Outcome::Degraded })
}

fn filter_list(format: Format, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
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
    match format {
        Format::Json => io.json(&json_output::filter_list(&rows, stats.is_some()))?,
        Format::Text => write!(io.out, "{}", output::filter_table(&rows, stats.is_some()))?,
    }
    Ok(Outcome::Success)
}

fn stats(format: Format, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    driver_client::version(backend)?;
    let header = driver_client::global_stats(backend)?;
    match format {
        Format::Json => io.json(&json_output::stats(&header))?,
        Format::Text => write!(io.out, "{}", output::stats_summary(&header))?,
    }
    Ok(Outcome::Success)
}

fn status(format: Format, backend: &mut dyn Backend, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let report = StatusReport {
        bfe: backend.service_state(BFE_SERVICE).map_err(|e| e.to_string()),
        driver_service: backend.service_state(DRIVER_SERVICE).map_err(|e| e.to_string()),
        driver: driver_client::version(backend).map_err(|e| e.to_string()),
    };
    match format {
        Format::Json => io.json(&json_output::status(&report))?,
        Format::Text => write!(io.out, "{}", output::status_report(&report))?,
    }
    Ok(if report.healthy() { Outcome::Success } else { Outcome::Degraded })
}

fn policy_encode(policy: &PolicyRepr, format: Format, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let blob = policy::encode(policy).map_err(RunError::Policy)?;
    match format {
        Format::Json => io.json(&json_output::policy_encoded(&hex::encode(&blob), blob.len(), policy))?,
        Format::Text => writeln!(io.out, "{}", hex::encode(&blob))?,
    }
    Ok(Outcome::Success)
}

/// What `policy decode` tells a user who gave it nothing.
pub const NO_BLOB: &str = "give the policy blob as hex (policy decode 5746504301…), or pipe the hex into \
                           `policy decode -`";

fn policy_decode(source: &BlobSource, format: Format, io: &mut Io<'_>) -> Result<Outcome, RunError> {
    let read;
    let blob = match source {
        BlobSource::Bytes(bytes) => bytes,
        BlobSource::Stdin => {
            let mut text = String::new();
            io.input.read_to_string(&mut text)?;
            if text.trim().is_empty() {
                return Err(RunError::NoInput(format!("standard input was empty; {NO_BLOB}")));
            }
            read = hex::decode(&text).map_err(|e| RunError::BadInput(format!("standard input is not hex: {e}")))?;
            &read
        }
    };
    if blob.is_empty() {
        return Err(RunError::NoInput(NO_BLOB.to_string()));
    }
    let policy = policy::decode(blob).map_err(RunError::Policy)?;
    match format {
        Format::Json => io.json(&json_output::policy_decoded(blob.len(), &policy))?,
        Format::Text => write!(io.out, "{}", output::policy_details(&policy, blob.len()))?,
    }
    Ok(Outcome::Success)
}

/// How the agent reached a verdict.
enum Reason {
    Rule(usize),
    Asked,
    Default,
}

fn agent(
    options: &AgentOptions,
    format: Format,
    backend: &mut dyn Backend,
    io: &mut Io<'_>,
) -> Result<Outcome, RunError> {
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
        let rule = match reason {
            Reason::Rule(index) => options.rules.get(index).map(ToString::to_string),
            Reason::Asked | Reason::Default => None,
        };
        let why = match (&reason, &rule) {
            (Reason::Rule(index), rule) => format!("rule {} {}", index + 1, rule.as_deref().unwrap_or_default()),
            (Reason::Asked, _) => "answered".to_string(),
            (Reason::Default, _) => "no rule matched: the filter's default".to_string(),
        };
        let answer = VerdictMessageRepr { request_id: request.request_id, verdict };
        let sent = driver_client::send_verdict(backend, &answer);
        if format == Format::Json {
            let reason_word = match reason {
                Reason::Rule(_) => "rule",
                Reason::Asked => "asked",
                Reason::Default => "default",
            };
            let line = json_output::request(&request)
                .with("verdict", verdict_name(verdict))
                .with("reason", reason_word)
                .with("rule", rule)
                .with("accepted", sent.is_ok())
                .with("error", sent.as_ref().err().map(ToString::to_string));
            io.json(&line)?;
        }
        match sent {
            Ok(()) if format == Format::Text => {
                writeln!(io.out, "{} => {} ({why})", output::describe_request(&request), verdict_name(verdict))?;
            }
            Ok(()) => {}
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
