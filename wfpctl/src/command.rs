//! The commands wfpctl runs, parsed, checked and typed: what the command
//! line means, independent of clap.
#![forbid(unsafe_code)]

use wfpcallout_wire::PolicyRepr;

use crate::filter_spec::FilterSpec;
use crate::rules::Rule;

/// What wfpctl prints, before exiting with [`crate::EXIT_NOT_WINDOWS`], for
/// a command that needs Windows on a host that is not.
pub const NOT_WINDOWS: &str =
    "wfpctl talks to the Windows filter engine and the wfpcallout driver; this host is not Windows";

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Text,
    /// One JSON document per result (`--json`), for scripts.
    Json,
}

/// Where `policy decode` gets its blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    /// Decoded from the command line's hex.
    Bytes(Vec<u8>),
    /// Hex read from standard input (`policy decode -`).
    Stdin,
}

/// Which filters `filter delete` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteTarget {
    /// One filter, by run-time id.
    Id(u64),
    /// Every filter of our provider.
    AllOurs,
}

/// How `wfpctl agent` decides.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AgentOptions {
    /// Rules, tried in order.
    pub rules: Vec<Rule>,
    /// Ask on the terminal when no rule matches.
    pub interactive: bool,
    /// Stop after this many requests.
    pub max: Option<u64>,
}

/// A command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `filter add`: add a filter calling our callout, with a policy.
    FilterAdd(FilterSpec),
    /// `filter delete`.
    FilterDelete(DeleteTarget),
    /// `filter list`: our filters, their policies and counters.
    FilterList,
    /// `stats`: the driver's global counters.
    Stats,
    /// `log-level`: the most verbose level the driver prints.
    LogLevel(crate::log_level::DriverLogLevel),
    /// `agent`: answer ask requests.
    Agent(AgentOptions),
    /// `status`: driver, callouts, BFE.
    Status,
    /// `policy encode`: print a policy blob as hex.
    PolicyEncode(PolicyRepr),
    /// `policy decode`: decode a blob given as hex.
    PolicyDecode(BlobSource),
    /// `state`: our footprint in the filter engine.
    State,
    /// `uninstall`: delete our filters, callouts, sublayer and provider.
    Uninstall,
}

/// A command and how to print its results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// `--json` or text.
    pub format: Format,
}

impl Command {
    /// Whether the command needs the Windows filter engine or the driver
    /// (everything but `policy encode` and `policy decode`).
    pub fn needs_windows(&self) -> bool {
        !matches!(self, Command::PolicyEncode(_) | Command::PolicyDecode(_))
    }
}
