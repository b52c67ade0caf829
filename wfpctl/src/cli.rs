//! The command line: clap's definition, and its translation into a checked
//! [`Command`]. Every mistake is reported as a clap error (with the usage
//! of the subcommand at fault), exit status 2: options that contradict each
//! other, values out of range, an IPv6 address at an IPv4 layer.
#![forbid(unsafe_code)]

use core::fmt::Display;
use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, value_parser};
use wfpcallout_wire::{ASK_TIMEOUT_MS_MAX, LABEL_MAX_LEN, Label, RATE_LIMIT_BURST_MAX, RATE_LIMIT_RATE_MAX, WireError};

use crate::command::{AgentOptions, BlobSource, Command, DeleteTarget, Format, Invocation};
use crate::filter_spec::{FilterOptions, FilterSpec, IpVersion, Layer, SpecError, WEIGHT_RANGE_MAX, Weight};
use crate::hex;
use crate::policy::{ActionKind, LogArg, PolicyError, PolicyOptions, VerdictArg};
use crate::rules::Rule;
use crate::vocabulary::{AddressMatch, PortRange, parse_address_match, parse_port_range};

const EXAMPLES: &str = "\
Examples (elevated prompt, driver started):
  wfpctl status
  wfpctl state
  wfpctl filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action audit --label web
  wfpctl filter add --layer connect --ip v4 --remote-addr 10.0.0.0/8 --remote-port 5000-5100 --action block
  wfpctl filter add --layer connect --ip v4 --protocol tcp --action ask --timeout-ms 15000 --default permit
  wfpctl agent --rule permit:tcp:443 --rule block:any:*
  wfpctl filter list --json
  wfpctl stats
  wfpctl filter delete --all-ours
  wfpctl uninstall          (after stopping the driver: removes its persistent objects for good)
  wfpctl policy encode --action rate-limit --rate 10 --burst 20   (any host)

The same words everywhere: verdicts permit (allow) and block (deny); ports 0-65535 and
ranges LOW-HIGH; addresses and subnets ADDRESS/PREFIX.

--json prints one JSON document per result (the agent: one per request); field names are
listed in docs/WALKTHROUGH.md.

Exit status: 0 success; 1 failed, or found the driver not ready, or left something undone;
2 usage error (bad or contradictory options, no input); 3 needs Windows, this host is not;
4 uninstall left nothing in the filter engine, but the driver is still loaded (stop it).";

/// wfpctl: drive the wfpcallout WFP callout driver.
#[derive(Debug, Parser)]
#[command(
    name = "wfpctl",
    version,
    about = "Control the wfpcallout Windows Filtering Platform callout driver",
    long_about = "Control the wfpcallout Windows Filtering Platform callout driver: add and delete filters that \
                  call its callouts with a per-filter policy (permit, block, audit, rate-limit, ask), read its \
                  counters, show its footprint in the engine, and answer its ask requests. Everything but `policy` \
                  needs Windows and an elevated prompt (wfpctl-sim runs the rest against the simulated driver).",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// Print results as JSON (one document per line) instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Debug, Subcommand)]
enum TopCommand {
    /// Add, delete and list filters that call the wfpcallout callouts
    #[command(subcommand)]
    Filter(FilterCommand),
    /// Show the driver's global counters
    Stats,
    /// Set the most verbose level the driver's debug output prints (until it unloads)
    LogLevel { level: crate::log_level::DriverLogLevel },
    /// Answer the driver's ask requests until stopped (Ctrl+C) or --max requests
    Agent(AgentArgs),
    /// Show whether BFE runs, the driver is loaded and its callouts are registered
    Status,
    /// Show the driver's footprint in the filter engine: provider, sublayer, callouts (registered?), every filter
    /// naming them, leftovers of an earlier install
    State,
    /// Delete every filter naming the wfpcallout callouts, then the callouts, sublayer and provider (persistent:
    /// they stay until deleted); works with the driver stopped or removed
    #[command(
        long_about = "Delete, in one transaction, every filter naming a wfpcallout callout (whoever added it), the \
                      wfpcallout provider contexts, then the six callouts, the sublayer and the provider. The \
                      driver adds them persistent, and its unload keeps those filters still name: this removes \
                      them for good, with the driver stopped (the usual order: stop it, then uninstall) or \
                      loaded (its callouts then stay registered until it stops: exit status 4). Objects already \
                      gone are fine: a second run says nothing was left."
    )]
    Uninstall,
    /// Encode or decode a policy blob (works on any host)
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum FilterCommand {
    /// Add a filter whose action calls a wfpcallout callout with a policy; prints the filter id
    Add(FilterAddArgs),
    /// Delete a filter by id, or every filter of the wfpcallout provider
    Delete(FilterDeleteArgs),
    /// List the wfpcallout provider's filters with their policies and counters
    List,
}

#[derive(Debug, Args)]
struct FilterAddArgs {
    /// Layer: connect (outbound), recv-accept (inbound), flow (established connections)
    #[arg(long, value_enum)]
    layer: Layer,
    /// IP version of the layer
    #[arg(long, value_enum)]
    ip: IpVersion,
    /// Match only this remote address, or subnet ADDRESS/PREFIX (10.0.0.0/8, 2001:db8::/32)
    #[arg(long, value_name = "ADDRESS", value_parser = parse_address_match)]
    remote_addr: Option<AddressMatch>,
    /// Match only this remote port (0-65535), or range LOW-HIGH
    #[arg(long, value_name = "PORT", value_parser = parse_port_range)]
    remote_port: Option<PortRange>,
    /// Match only this local address, or subnet ADDRESS/PREFIX
    #[arg(long, value_name = "ADDRESS", value_parser = parse_address_match)]
    local_addr: Option<AddressMatch>,
    /// Match only this local port (0-65535), or range LOW-HIGH
    #[arg(long, value_name = "PORT", value_parser = parse_port_range)]
    local_port: Option<PortRange>,
    /// Match only this IP protocol: tcp, udp, icmp, icmpv6 or a number 0-255
    #[arg(long, value_name = "PROTOCOL", value_parser = crate::filter_spec::parse_protocol)]
    protocol: Option<u8>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Exact filter weight within the wfpcallout sublayer (FWP_UINT64)
    #[arg(long, value_name = "WEIGHT", conflicts_with = "weight_range")]
    weight: Option<u64>,
    /// Weight range 0-15 (FWP_UINT8): the engine picks the weight inside it by how specific the conditions are
    #[arg(long, value_name = "RANGE", value_parser = value_parser!(u8).range(0..=i64::from(WEIGHT_RANGE_MAX)))]
    weight_range: Option<u8>,
}

#[derive(Debug, Args)]
struct PolicyArgs {
    /// What the driver does with matched connections
    #[arg(long, value_enum)]
    action: ActionKind,
    /// rate-limit: connections permitted per second
    #[arg(
        long,
        value_name = "PER_SECOND",
        required_if_eq("action", "rate-limit"),
        value_parser = value_parser!(u32).range(1..=i64::from(RATE_LIMIT_RATE_MAX))
    )]
    rate: Option<u32>,
    /// rate-limit: bucket size, the burst permitted at once [default: the rate]
    #[arg(long, value_name = "COUNT", value_parser = value_parser!(u32).range(1..=i64::from(RATE_LIMIT_BURST_MAX)))]
    burst: Option<u32>,
    /// ask: how long a connection waits for the agent [default: 10000]
    #[arg(long, value_name = "MS", value_parser = value_parser!(u32).range(1..=i64::from(ASK_TIMEOUT_MS_MAX)))]
    timeout_ms: Option<u32>,
    /// ask: the verdict when no agent answers in time [default: block]
    #[arg(long = "default", value_enum, value_name = "VERDICT")]
    default_verdict: Option<VerdictArg>,
    /// How much the driver logs about matched connections (DbgPrintEx, IHVNETWORK component)
    #[arg(long, value_enum, default_value_t = LogArg::Off)]
    log: LogArg,
    /// A name for the policy, shown in listings, logs and to the agent (at most 64 bytes)
    #[arg(long, value_parser = parse_label)]
    label: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "all_ours"])))]
struct FilterDeleteArgs {
    /// The filter id, as `filter add` printed it or `filter list` shows it
    #[arg(value_name = "ID")]
    id: Option<u64>,
    /// Delete every filter of the wfpcallout provider
    #[arg(long)]
    all_ours: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("how").required(true).multiple(true).args(["rules", "interactive"])))]
struct AgentArgs {
    /// VERDICT:PROTOCOL:PORT, e.g. permit:tcp:443, deny:udp:5000-5100, block:any:* (repeat; the first match decides)
    #[arg(long = "rule", value_name = "RULE")]
    rules: Vec<Rule>,
    /// Ask on this terminal about requests no rule matches (otherwise they get their default verdict)
    #[arg(long)]
    interactive: bool,
    /// Stop after this many requests
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(1..=u64::MAX))]
    max: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the provider-context blob of a policy as hex
    Encode(PolicyArgs),
    /// Decode a policy blob given as hex, as the driver's notifyFn does
    Decode {
        /// The blob in hex (spaces, ':' and '-' between digits are ignored); - reads the hex from standard input
        #[arg(value_name = "HEX", required = true, num_args = 1..)]
        hex: Vec<String>,
    },
}

fn parse_label(text: &str) -> Result<String, String> {
    match Label::new(text) {
        Ok(_) => Ok(text.to_string()),
        Err(WireError::LabelControlCharacter(code)) => Err(format!(
            "a label cannot contain control characters (it has U+{code:04X}): labels are printed in tables, logs \
             and filter names"
        )),
        Err(_) => Err(format!("{} bytes is too long: a label is at most {LABEL_MAX_LEN} bytes of UTF-8", text.len())),
    }
}

/// A clap error in the context of a subcommand (its usage is shown).
fn usage_error(path: &[&str], kind: ErrorKind, message: impl Display) -> clap::Error {
    let mut current = Cli::command();
    current.build();
    for name in path {
        match current.find_subcommand(name).cloned() {
            Some(sub) => current = sub,
            None => break,
        }
    }
    current.error(kind, message)
}

fn policy_error(path: &[&str], error: PolicyError) -> clap::Error {
    let kind = match error {
        PolicyError::OptionNeedsAction { .. } => ErrorKind::ArgumentConflict,
        PolicyError::MissingRate => ErrorKind::MissingRequiredArgument,
        PolicyError::OutOfRange { .. } | PolicyError::Label(_) => ErrorKind::ValueValidation,
    };
    usage_error(path, kind, error)
}

fn spec_error(path: &[&str], error: SpecError) -> clap::Error {
    let kind = match error {
        SpecError::AddressFamily { .. } | SpecError::VerdictAtFlowLayer(_) => ErrorKind::ArgumentConflict,
        SpecError::WeightRange(_) => ErrorKind::ValueValidation,
    };
    usage_error(path, kind, error)
}

impl PolicyArgs {
    fn options(&self) -> PolicyOptions {
        PolicyOptions {
            action: Some(self.action),
            rate: self.rate,
            burst: self.burst,
            timeout_ms: self.timeout_ms,
            default_verdict: self.default_verdict,
            log: self.log,
            label: self.label.clone(),
        }
    }
}

impl Cli {
    /// Checks what clap parsed and types it.
    fn into_invocation(self) -> Result<Invocation, clap::Error> {
        let format = if self.json { Format::Json } else { Format::Text };
        Ok(Invocation { command: self.command.into_command()?, format })
    }
}

impl TopCommand {
    fn into_command(self) -> Result<Command, clap::Error> {
        match self {
            TopCommand::Filter(FilterCommand::Add(args)) => {
                const PATH: &[&str] = &["filter", "add"];
                let policy = args.policy.options().build().map_err(|e| policy_error(PATH, e))?;
                let weight = match (args.weight, args.weight_range) {
                    (Some(weight), _) => Weight::Exact(weight),
                    (None, Some(range)) => Weight::Range(range),
                    (None, None) => Weight::Auto,
                };
                let options = FilterOptions {
                    layer: args.layer,
                    ip: args.ip,
                    remote_address: args.remote_addr,
                    remote_port: args.remote_port,
                    local_address: args.local_addr,
                    local_port: args.local_port,
                    protocol: args.protocol,
                    weight,
                    policy,
                };
                let spec = FilterSpec::build(&options).map_err(|e| spec_error(PATH, e))?;
                Ok(Command::FilterAdd(spec))
            }
            TopCommand::Filter(FilterCommand::Delete(args)) => Ok(Command::FilterDelete(match args.id {
                Some(id) => DeleteTarget::Id(id),
                None => DeleteTarget::AllOurs,
            })),
            TopCommand::Filter(FilterCommand::List) => Ok(Command::FilterList),
            TopCommand::Stats => Ok(Command::Stats),
            TopCommand::LogLevel { level } => Ok(Command::LogLevel(level)),
            TopCommand::Agent(args) => {
                Ok(Command::Agent(AgentOptions { rules: args.rules, interactive: args.interactive, max: args.max }))
            }
            TopCommand::Status => Ok(Command::Status),
            TopCommand::State => Ok(Command::State),
            TopCommand::Uninstall => Ok(Command::Uninstall),
            TopCommand::Policy(PolicyCommand::Encode(args)) => {
                let policy = args.options().build().map_err(|e| policy_error(&["policy", "encode"], e))?;
                Ok(Command::PolicyEncode(policy))
            }
            TopCommand::Policy(PolicyCommand::Decode { hex }) => {
                const PATH: &[&str] = &["policy", "decode"];
                if hex.as_slice() == ["-"] {
                    return Ok(Command::PolicyDecode(BlobSource::Stdin));
                }
                if hex.iter().any(|part| part == "-") {
                    return Err(usage_error(
                        PATH,
                        ErrorKind::ArgumentConflict,
                        "- (read standard input) cannot be combined with hex on the command line",
                    ));
                }
                let bytes = hex::decode(&hex.concat())
                    .map_err(|e| usage_error(PATH, ErrorKind::ValueValidation, format!("<HEX> is not hex: {e}")))?;
                if bytes.is_empty() {
                    return Err(usage_error(
                        PATH,
                        ErrorKind::InvalidValue,
                        format!("no input: <HEX> is empty; {}", crate::run::NO_BLOB),
                    ));
                }
                Ok(Command::PolicyDecode(BlobSource::Bytes(bytes)))
            }
        }
    }
}

/// Parses a command line (the first item is the program name).
pub fn parse_from<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)?.into_invocation()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::filter_spec::{CalloutTarget, Condition, ConditionField, ConditionValue};
    use crate::keys;
    use wfpcallout_wire::{LogLevel, PolicyAction, PolicyRepr, Verdict};

    fn parse(line: &str) -> Result<Command, clap::Error> {
        invocation(line).map(|invocation| invocation.command)
    }

    fn invocation(line: &str) -> Result<Invocation, clap::Error> {
        parse_from(std::iter::once("wfpctl").chain(line.split_whitespace()))
    }

    fn error(line: &str) -> (ErrorKind, String) {
        let err = parse(line).expect_err(line);
        (err.kind(), err.to_string())
    }

    fn add(line: &str) -> FilterSpec {
        match parse(line).unwrap() {
            Command::FilterAdd(spec) => spec,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn filter_add_audit() {
        let spec =
            add("filter add --layer connect --ip v4 --remote-port 443 --protocol tcp --action audit --label web");
        assert_eq!(spec.target, CalloutTarget { layer: Layer::Connect, ip: IpVersion::V4 });
        assert_eq!(spec.callout_key(), keys::callout::CONNECT_V4);
        assert_eq!(
            spec.conditions,
            [
                Condition { field: ConditionField::Protocol, value: ConditionValue::Uint8(6) },
                Condition { field: ConditionField::RemotePort, value: ConditionValue::Uint16(443) },
            ]
        );
        assert_eq!(spec.policy.action, PolicyAction::Audit);
        assert_eq!(spec.policy.label.as_str(), "web");
        assert_eq!(spec.policy.log_level, LogLevel::Off);
        assert_eq!(spec.weight, Weight::Auto);
    }

    #[test]
    fn filter_add_every_option() {
        let spec = add("filter add --layer recv-accept --ip v6 --remote-addr 2001:db8::7 --local-addr 2001:db8::1 \
             --local-port 8443 --remote-port 50000 --protocol 17 --action rate-limit --rate 5 --burst 9 --log trace \
             --label limited --weight 1000");
        assert_eq!(spec.target, CalloutTarget { layer: Layer::RecvAccept, ip: IpVersion::V6 });
        assert_eq!(spec.conditions.len(), 5);
        assert_eq!(
            spec.conditions_text(),
            "protocol=udp remote-addr=2001:db8::7 remote-port=50000 local-addr=2001:db8::1 local-port=8443"
        );
        assert_eq!(
            spec.policy,
            PolicyRepr {
                action: PolicyAction::RateLimit { rate_per_sec: 5, burst: 9 },
                log_level: LogLevel::Trace,
                label: Label::new("limited").unwrap()
            }
        );
        assert_eq!(spec.weight, Weight::Exact(1000));
        assert_eq!(add("filter add --layer flow --ip v4 --action permit --weight-range 12").weight, Weight::Range(12));
    }

    #[test]
    fn filter_add_ask() {
        let spec = add("filter add --layer connect --ip v4 --action ask --timeout-ms 600000 --default permit");
        assert_eq!(spec.policy.action, PolicyAction::Ask { timeout_ms: 600_000, default_verdict: Verdict::Permit });
        let spec = add("filter add --layer connect --ip v6 --action ask");
        assert_eq!(spec.policy.action, PolicyAction::Ask { timeout_ms: 10_000, default_verdict: Verdict::Block });
    }

    #[test]
    fn option_of_another_action() {
        let (kind, text) = error("filter add --layer connect --ip v4 --action permit --rate 5");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(text.contains("--rate is only meaningful with --action rate-limit"), "{text}");
        assert!(text.contains("Usage: wfpctl filter add"), "{text}");
        let (kind, text) = error("filter add --layer connect --ip v4 --action block --default permit");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(text.contains("--default is only meaningful with --action ask"), "{text}");
        let (_, text) = error("policy encode --action audit --timeout-ms 5");
        assert!(text.contains("--timeout-ms is only meaningful with --action ask"), "{text}");
        assert!(text.contains("Usage: wfpctl policy encode"), "{text}");
        let (kind, text) = error("filter add --layer connect --ip v4 --action rate-limit");
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(text.contains("--rate"), "{text}");
    }

    #[test]
    fn values_out_of_range() {
        for (line, says) in [
            ("filter add --layer connect --ip v4 --action audit --remote-port 70000", "not a port (0 to 65535)"),
            ("filter add --layer connect --ip v4 --action audit --local-port 90-80", "is empty"),
            ("filter add --layer connect --ip v4 --action audit --remote-addr 10.0.0.1/8", "host bits set"),
            ("filter add --layer connect --ip v4 --action ask --timeout-ms 0", "0 is not in 1..=600000"),
            ("filter add --layer connect --ip v4 --action ask --timeout-ms 600001", "600001"),
            ("filter add --layer connect --ip v4 --action rate-limit --rate 0", "0 is not in 1..=1000000"),
            ("filter add --layer connect --ip v4 --action rate-limit --rate 1 --burst 1000001", "1000001"),
            ("filter add --layer connect --ip v4 --action audit --protocol 300", "not a protocol"),
            ("filter add --layer connect --ip v4 --action audit --weight-range 16", "16 is not in 0..=15"),
            ("filter add --layer connect --ip v4 --action audit --remote-addr 10.0.0.300", "10.0.0.300"),
            ("agent --rule permit:tcp:443 --max 0", "0 is not in 1..=18446744073709551615"),
        ] {
            let (kind, text) = error(line);
            assert_eq!(kind, ErrorKind::ValueValidation, "{line}: {text}");
            assert!(text.contains(says), "{line}: {text}");
        }
        let (kind, text) = error("filter add --layer connect --ip v4 --action audit --label web\u{1b}[2J");
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(text.contains("a label cannot contain control characters (it has U+001B)"), "{text}");
        let long_label = format!("filter add --layer connect --ip v4 --action audit --label {}", "x".repeat(65));
        let (kind, text) = error(&long_label);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(text.contains("at most 64 bytes"), "{text}");
    }

    #[test]
    fn address_family_must_match_the_layer() {
        let (kind, text) = error("filter add --layer connect --ip v4 --action block --remote-addr 2001:db8::1");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            text.contains("--remote-addr 2001:db8::1 is an IPv6 address but the filter is at the IPv4 layer"),
            "{text}"
        );
        let (kind, _) = error("filter add --layer connect --ip v6 --action block --local-addr 192.0.2.1");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
    }

    #[test]
    fn ask_at_the_flow_layer_is_refused() {
        let (kind, text) = error("filter add --layer flow --ip v4 --action ask");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(text.contains("--action ask cannot be used with --layer flow"), "{text}");
    }

    #[test]
    fn bad_enum_values_and_missing_options() {
        let (kind, text) = error("filter add --layer transport --ip v4 --action audit");
        assert_eq!(kind, ErrorKind::InvalidValue);
        assert!(text.contains("connect, recv-accept, flow"), "{text}");
        let (kind, _) = error("filter add --layer connect --ip v5 --action audit");
        assert_eq!(kind, ErrorKind::InvalidValue);
        let (kind, _) = error("filter add --layer connect --ip v4 --action maybe");
        assert_eq!(kind, ErrorKind::InvalidValue);
        let (kind, text) = error("filter add --layer connect --action audit");
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(text.contains("--ip"), "{text}");
        let (kind, _) = error("filter add --layer connect --ip v4 --action audit --weight 5 --weight-range 3");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        let (kind, _) = error("filter add --layer connect --ip v4 --action audit --log loud");
        assert_eq!(kind, ErrorKind::InvalidValue);
    }

    #[test]
    fn one_vocabulary_for_filters_and_rules() {
        assert_eq!(add("filter add --layer connect --ip v4 --action allow").policy.action, PolicyAction::Permit);
        assert_eq!(add("filter add --layer connect --ip v4 --action deny").policy.action, PolicyAction::Block);
        let spec = add("filter add --layer connect --ip v4 --action ask --default allow");
        assert_eq!(spec.policy.action, PolicyAction::Ask { timeout_ms: 10_000, default_verdict: Verdict::Permit });
        let spec = add("filter add --layer connect --ip v4 --action deny --remote-port 5000-5100 --local-port 0 \
             --remote-addr 10.0.0.0/8");
        assert_eq!(spec.conditions_text(), "remote-addr=10.0.0.0/8 remote-port=5000-5100 local-port=0");
        assert_eq!(
            spec.conditions[1],
            Condition { field: ConditionField::RemotePort, value: ConditionValue::Uint16Range(5000, 5100) }
        );
        // The rules take the same words.
        let Command::Agent(options) = parse("agent --rule deny:udp:5000-5100 --rule allow:tcp:0").unwrap() else {
            panic!("not an agent command")
        };
        assert_eq!(options.rules[0].to_string(), "block:udp:5000-5100");
        assert_eq!(options.rules[1].to_string(), "permit:tcp:0");
        let (kind, text) = error("filter add --layer connect --ip v6 --action audit --remote-addr 10.0.0.0/8");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(text.contains("10.0.0.0/8 is an IPv4 address"), "{text}");
    }

    #[test]
    fn json_is_global() {
        assert_eq!(invocation("filter list").unwrap().format, Format::Text);
        assert_eq!(invocation("filter list --json").unwrap().format, Format::Json);
        assert_eq!(invocation("--json stats").unwrap().format, Format::Json);
        assert_eq!(invocation("policy decode --json 57465043").unwrap().format, Format::Json);
    }

    #[test]
    fn filter_delete_and_list() {
        assert_eq!(parse("filter delete 66017").unwrap(), Command::FilterDelete(DeleteTarget::Id(66_017)));
        assert_eq!(parse("filter delete --all-ours").unwrap(), Command::FilterDelete(DeleteTarget::AllOurs));
        assert_eq!(error("filter delete").0, ErrorKind::MissingRequiredArgument);
        assert_eq!(error("filter delete 5 --all-ours").0, ErrorKind::ArgumentConflict);
        assert_eq!(error("filter delete five").0, ErrorKind::ValueValidation);
        assert_eq!(parse("filter list").unwrap(), Command::FilterList);
        assert_eq!(parse("stats").unwrap(), Command::Stats);
        assert_eq!(parse("status").unwrap(), Command::Status);
    }

    #[test]
    fn agent() {
        let Command::Agent(options) = parse("agent --rule permit:tcp:443 --rule block:any:* --max 3").unwrap() else {
            panic!("not an agent command")
        };
        assert_eq!(options.rules.len(), 2);
        assert_eq!(options.rules[1].to_string(), "block:any:*");
        assert_eq!(options.max, Some(3));
        assert!(!options.interactive);
        let Command::Agent(options) = parse("agent --interactive").unwrap() else { panic!("not an agent command") };
        assert!(options.interactive && options.rules.is_empty() && options.max.is_none());
        let (kind, text) = error("agent");
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(text.contains("--rule") && text.contains("--interactive"), "{text}");
        let (kind, text) = error("agent --rule permit:tcp");
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(text.contains("VERDICT:PROTOCOL:PORT"), "{text}");
    }

    #[test]
    fn policy_encode_and_decode() {
        let Command::PolicyEncode(policy) = parse("policy encode --action block --label x").unwrap() else {
            panic!("not policy encode")
        };
        assert_eq!(policy.action, PolicyAction::Block);
        let hex = hex::encode(&policy.to_bytes());
        assert_eq!(
            parse(&format!("policy decode {hex}")).unwrap(),
            Command::PolicyDecode(BlobSource::Bytes(policy.to_bytes()))
        );
        // Split into several arguments, as a pasted dump would be.
        assert_eq!(
            parse("policy decode 5746 5043").unwrap(),
            Command::PolicyDecode(BlobSource::Bytes(b"WFPC".to_vec()))
        );
        assert_eq!(parse("policy decode -").unwrap(), Command::PolicyDecode(BlobSource::Stdin));
        let (kind, text) = error("policy decode 57 -");
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(text.contains("cannot be combined"), "{text}");
        let empty = parse_from(["wfpctl", "policy", "decode", ""]).unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::InvalidValue);
        assert!(empty.to_string().contains("no input: <HEX> is empty"), "{empty}");
        let (kind, text) = error("policy decode 57zz");
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(text.contains("not hex"), "{text}");
        assert_eq!(error("policy decode").0, ErrorKind::MissingRequiredArgument);
        assert_eq!(error("policy encode").0, ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn only_policy_commands_run_without_windows() {
        assert!(!parse("policy encode --action permit").unwrap().needs_windows());
        assert!(!parse("policy decode 00").unwrap().needs_windows());
        for line in ["status", "state", "stats", "filter list", "filter delete 1", "agent --interactive"] {
            assert!(parse(line).unwrap().needs_windows(), "{line}");
        }
    }

    #[test]
    fn help_and_version() {
        assert_eq!(error("--help").0, ErrorKind::DisplayHelp);
        assert_eq!(error("--version").0, ErrorKind::DisplayVersion);
        let (_, help) = error("filter add --help");
        assert!(help.contains("--remote-port <PORT>"), "{help}");
        assert!(help.contains("rate-limit"), "{help}");
        let (_, help) = error("--help");
        assert!(help.contains("Examples"), "{help}");
        assert_eq!(error("").0, ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }
}
