//! The agent's rules: `permit:tcp:443`, `block:any:*`, `permit:udp:5000-5100`.
//!
//! A rule is `VERDICT:PROTOCOL:PORT`:
//!
//! - `VERDICT` is `permit` (or `allow`) or `block` (or `deny`), as in
//!   `filter add --action` and `--default`;
//! - `PROTOCOL` is `tcp`, `udp`, `icmp`, `icmpv6`, a number `0..=255`, or
//!   `any` (`*` works too);
//! - `PORT` is a port `0..=65535`, a range `LOW-HIGH` (the same words as
//!   `filter add --remote-port`), or `*` (`any`) for any. It is the port
//!   of the service: the remote port of an outbound connection, the local
//!   port of an inbound one.
//!
//! The agent tries its rules in the order given; the first that matches
//! decides. A request no rule matches is asked on the terminal
//! (`--interactive`) or gets its filter's default verdict.
#![forbid(unsafe_code)]

use core::fmt;
use core::str::FromStr;

use wfpcallout_wire::{AskRequestRepr, Direction, Verdict};

use crate::filter_spec::{parse_protocol, protocol_name};
use crate::policy::verdict_name;
use crate::vocabulary::{PortRange, parse_port_range, parse_verdict};

/// Which protocols a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolMatch {
    /// Every protocol.
    Any,
    /// One IP protocol number.
    Number(u8),
}

/// Which service ports a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// Every port.
    Any,
    /// A port or a range of ports.
    Ports(PortRange),
}

/// One agent rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What a matching request gets.
    pub verdict: Verdict,
    /// Protocols it matches.
    pub protocol: ProtocolMatch,
    /// Service ports it matches.
    pub port: PortMatch,
}

/// Why text is not a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError(String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rules look like permit:tcp:443, block:udp:5000-5100 or block:any:*)", self.0)
    }
}

impl std::error::Error for RuleError {}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let [verdict, protocol, port] = parts.as_slice() else {
            return Err(RuleError(format!("'{text}' does not have the three parts VERDICT:PROTOCOL:PORT")));
        };
        let verdict = parse_verdict(verdict).map_err(RuleError)?;
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "any" | "*" => ProtocolMatch::Any,
            other => ProtocolMatch::Number(parse_protocol(other).map_err(RuleError)?),
        };
        let port = match *port {
            "*" | "any" => PortMatch::Any,
            ports => PortMatch::Ports(parse_port_range(ports).map_err(RuleError)?),
        };
        Ok(Rule { verdict, protocol, port })
    }
}

impl fmt::Display for Rule {
    /// The canonical form: `permit:tcp:443`, `block:any:*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(verdict_name(self.verdict))?;
        match self.protocol {
            ProtocolMatch::Any => f.write_str(":any")?,
            ProtocolMatch::Number(number) => write!(f, ":{}", protocol_name(number))?,
        }
        match self.port {
            PortMatch::Any => f.write_str(":*"),
            PortMatch::Ports(ports) => write!(f, ":{ports}"),
        }
    }
}

/// The port of the service a request is about: the remote port of an
/// outbound connection, the local port of an inbound one.
pub fn service_port(request: &AskRequestRepr) -> u16 {
    match request.direction {
        Direction::Outbound => request.remote_port,
        Direction::Inbound => request.local_port,
    }
}

impl Rule {
    /// Whether the rule applies to a request.
    pub fn matches(&self, request: &AskRequestRepr) -> bool {
        let protocol = match self.protocol {
            ProtocolMatch::Any => true,
            ProtocolMatch::Number(number) => number == request.protocol,
        };
        let port = match self.port {
            PortMatch::Any => true,
            PortMatch::Ports(ports) => ports.contains(service_port(request)),
        };
        protocol && port
    }
}

/// The first rule that matches: its position in the list and its verdict.
pub fn decide(rules: &[Rule], request: &AskRequestRepr) -> Option<(usize, Verdict)> {
    rules.iter().position(|rule| rule.matches(request)).and_then(|index| Some((index, rules.get(index)?.verdict)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use wfpcallout_wire::Label;

    fn request(direction: Direction, protocol: u8, local_port: u16, remote_port: u16) -> AskRequestRepr {
        AskRequestRepr {
            request_id: 1,
            filter_id: 2,
            process_id: 3,
            layer_id: 48,
            direction,
            protocol,
            default_verdict: Verdict::Block,
            timeout_ms: 1_000,
            local_address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            local_port,
            remote_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            remote_port,
            label: Label::EMPTY,
        }
    }

    #[test]
    fn parse_and_display() {
        for (text, canonical) in [
            ("permit:tcp:443", "permit:tcp:443"),
            ("block:any:*", "block:any:*"),
            ("BLOCK:*:any", "block:any:*"),
            ("allow:UDP:5000-5100", "permit:udp:5000-5100"),
            ("deny:47:0", "block:47:0"),
            ("permit:6:80", "permit:tcp:80"),
            (" permit:icmp:* ", "permit:icmp:*"),
        ] {
            let rule: Rule = text.parse().unwrap();
            assert_eq!(rule.to_string(), canonical, "{text}");
            assert_eq!(canonical.parse::<Rule>().unwrap(), rule);
        }
        let rule: Rule = "permit:tcp:443".parse().unwrap();
        assert_eq!(
            rule,
            Rule {
                verdict: Verdict::Permit,
                protocol: ProtocolMatch::Number(6),
                port: PortMatch::Ports(PortRange::single(443))
            }
        );
    }

    #[test]
    fn bad_rules() {
        for (text, says) in [
            ("permit:tcp", "three parts"),
            ("permit:tcp:443:1", "three parts"),
            ("", "three parts"),
            ("maybe:tcp:443", "not a verdict"),
            ("permit:sctp:443", "not a protocol"),
            ("permit:tcp:65536", "not a port"),
            ("permit:tcp:-1", "not a port"),
            ("permit:tcp:http", "not a port"),
            ("permit:tcp:90-80", "is empty"),
        ] {
            let err = text.parse::<Rule>().unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
            assert!(err.contains("permit:tcp:443"), "the error shows the syntax: {err}");
        }
    }

    #[test]
    fn service_port_follows_the_direction() {
        let outbound = request(Direction::Outbound, 6, 50_000, 443);
        let inbound = request(Direction::Inbound, 6, 443, 50_000);
        assert_eq!(service_port(&outbound), 443);
        assert_eq!(service_port(&inbound), 443);
        let rule: Rule = "permit:tcp:443".parse().unwrap();
        assert!(rule.matches(&outbound));
        assert!(rule.matches(&inbound));
        assert!(!rule.matches(&request(Direction::Outbound, 6, 443, 50_000)));
        assert!(!rule.matches(&request(Direction::Outbound, 17, 50_000, 443)));
    }

    #[test]
    fn first_match_decides() {
        let rules: Vec<Rule> = ["permit:tcp:443", "block:udp:5000-5100", "permit:udp:*", "block:any:*"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        assert_eq!(decide(&rules, &request(Direction::Outbound, 6, 1, 443)), Some((0, Verdict::Permit)));
        assert_eq!(decide(&rules, &request(Direction::Outbound, 17, 1, 5000)), Some((1, Verdict::Block)));
        assert_eq!(decide(&rules, &request(Direction::Outbound, 17, 1, 5100)), Some((1, Verdict::Block)));
        assert_eq!(decide(&rules, &request(Direction::Outbound, 17, 1, 5101)), Some((2, Verdict::Permit)));
        assert_eq!(decide(&rules, &request(Direction::Outbound, 6, 1, 80)), Some((3, Verdict::Block)));
        assert_eq!(decide(&rules[..1], &request(Direction::Outbound, 6, 1, 80)), None);
        assert_eq!(decide(&[], &request(Direction::Outbound, 6, 1, 80)), None);
    }
}
