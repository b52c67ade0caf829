//! The words wfpctl accepts wherever they appear, so that filters and the
//! agent's rules speak one language:
//!
//! - a verdict is `permit` (or `allow`) and `block` (or `deny`):
//!   `--action`, `--default` and the first part of a rule;
//! - a port is `0` to `65535`, and a port range `LOW-HIGH` (inclusive):
//!   `--remote-port`, `--local-port` and the last part of a rule;
//! - an address is an IPv4 or IPv6 address, and a subnet
//!   `ADDRESS/PREFIX` (`10.0.0.0/8`, `2001:db8::/32`): `--remote-addr`
//!   and `--local-addr`.
#![forbid(unsafe_code)]

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wfpcallout_wire::Verdict;

/// Parses `permit`/`allow` or `block`/`deny`, in any case.
pub fn parse_verdict(text: &str) -> Result<Verdict, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "permit" | "allow" => Ok(Verdict::Permit),
        "block" | "deny" => Ok(Verdict::Block),
        _ => Err(format!("'{text}' is not a verdict: use permit (or allow) or block (or deny)")),
    }
}

/// An inclusive range of ports; one port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// The lowest port matched.
    pub low: u16,
    /// The highest port matched (at least `low`).
    pub high: u16,
}

impl PortRange {
    /// One port.
    pub const fn single(port: u16) -> PortRange {
        PortRange { low: port, high: port }
    }

    /// Whether the range is one port.
    pub const fn is_single(self) -> bool {
        self.low == self.high
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl fmt::Display for PortRange {
    /// `443` or `5000-5100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() { write!(f, "{}", self.low) } else { write!(f, "{}-{}", self.low, self.high) }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.trim().parse::<u16>().map_err(|_| format!("'{text}' is not a port (0 to 65535)"))
}

/// Parses a port (`443`) or a range (`5000-5100`).
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (parse_port(low)?, parse_port(high)?);
            if low > high {
                return Err(format!("port range '{text}' is empty: the first port must not be above the second"));
            }
            Ok(PortRange { low, high })
        }
        None => parse_port(text).map(PortRange::single),
    }
}

/// An address or a subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressMatch {
    /// The address (for a subnet, its first address: host bits are zero).
    pub address: IpAddr,
    /// The prefix length: 32 (IPv4) or 128 (IPv6) for one address.
    pub prefix: u8,
}

impl AddressMatch {
    /// One address.
    pub const fn single(address: IpAddr) -> AddressMatch {
        let prefix = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        AddressMatch { address, prefix }
    }

    /// Whether it is one address rather than a subnet.
    pub const fn is_single(&self) -> bool {
        match self.address {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }

    /// The IPv4 mask of a prefix length, host byte order (`/8` is `0xff00_0000`).
    pub const fn v4_mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) }
    }
}

impl fmt::Display for AddressMatch {
    /// `192.0.2.1`, `10.0.0.0/8`, `2001:db8::/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() { write!(f, "{}", self.address) } else { write!(f, "{}/{}", self.address, self.prefix) }
    }
}

/// Parses an address or a subnet `ADDRESS/PREFIX`. A subnet whose address
/// has host bits set is refused (it says which subnet was probably meant).
pub fn parse_address_match(text: &str) -> Result<AddressMatch, String> {
    let text = text.trim();
    let Some((address, prefix)) = text.split_once('/') else {
        return text
            .parse::<IpAddr>()
            .map(AddressMatch::single)
            .map_err(|_| format!("'{text}' is not an IPv4 or IPv6 address, nor a subnet like 10.0.0.0/8"));
    };
    let address: IpAddr =
        address.parse().map_err(|_| format!("'{address}' in '{text}' is not an IPv4 or IPv6 address"))?;
    let max = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|prefix| *prefix <= max)
        .ok_or_else(|| format!("'{prefix}' in '{text}' is not a prefix length (0 to {max})"))?;
    let network = match address {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & AddressMatch::v4_mask(prefix))),
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    if network != address {
        return Err(format!("'{text}' has host bits set: the subnet is {network}/{prefix}"));
    }
    Ok(AddressMatch { address, prefix })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        for (text, verdict) in [
            ("permit", Verdict::Permit),
            ("ALLOW", Verdict::Permit),
            ("block", Verdict::Block),
            ("Deny", Verdict::Block),
        ] {
            assert_eq!(parse_verdict(text), Ok(verdict), "{text}");
        }
        assert!(parse_verdict("maybe").unwrap_err().contains("not a verdict"));
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(parse_port_range("443"), Ok(PortRange::single(443)));
        assert_eq!(parse_port_range("0"), Ok(PortRange::single(0)));
        assert_eq!(parse_port_range("65535"), Ok(PortRange::single(65_535)));
        assert_eq!(parse_port_range("5000-5100"), Ok(PortRange { low: 5000, high: 5100 }));
        assert_eq!(parse_port_range("80-80"), Ok(PortRange::single(80)));
        assert!(parse_port_range("65536").unwrap_err().contains("not a port (0 to 65535)"));
        assert!(parse_port_range("http").unwrap_err().contains("not a port"));
        assert!(parse_port_range("90-80").unwrap_err().contains("is empty"));
        assert!(parse_port_range("-1").unwrap_err().contains("not a port"));
        assert_eq!(PortRange { low: 5000, high: 5100 }.to_string(), "5000-5100");
        assert_eq!(PortRange::single(443).to_string(), "443");
        let range = PortRange { low: 5000, high: 5100 };
        assert!(range.contains(5000) && range.contains(5100) && !range.contains(4999) && !range.contains(5101));
    }

    #[test]
    fn addresses_and_subnets() {
        let single = parse_address_match("192.0.2.1").unwrap();
        assert!(single.is_single());
        assert_eq!(single.to_string(), "192.0.2.1");
        let subnet = parse_address_match("10.0.0.0/8").unwrap();
        assert_eq!(subnet, AddressMatch { address: "10.0.0.0".parse().unwrap(), prefix: 8 });
        assert!(!subnet.is_single());
        assert_eq!(subnet.to_string(), "10.0.0.0/8");
        assert_eq!(parse_address_match("192.0.2.1/32").unwrap(), single);
        let v6 = parse_address_match("2001:db8::/32").unwrap();
        assert_eq!(v6.prefix, 32);
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(parse_address_match("2001:db8::1/128").unwrap().is_single());
        assert_eq!(parse_address_match("0.0.0.0/0").unwrap().prefix, 0);
        assert_eq!(
            parse_address_match("10.0.0.1/8").unwrap_err(),
            "'10.0.0.1/8' has host bits set: the subnet is 10.0.0.0/8"
        );
        assert!(parse_address_match("2001:db8::1/32").unwrap_err().contains("2001:db8::/32"));
        assert!(parse_address_match("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(parse_address_match("::/129").unwrap_err().contains("0 to 128"));
        assert!(parse_address_match("10.0.0.300").unwrap_err().contains("not an IPv4 or IPv6 address"));
        assert!(parse_address_match("x/8").unwrap_err().contains("'x'"));
    }

    #[test]
    fn masks() {
        assert_eq!(AddressMatch::v4_mask(0), 0);
        assert_eq!(AddressMatch::v4_mask(8), 0xff00_0000);
        assert_eq!(AddressMatch::v4_mask(24), 0xffff_ff00);
        assert_eq!(AddressMatch::v4_mask(32), u32::MAX);
    }
}
