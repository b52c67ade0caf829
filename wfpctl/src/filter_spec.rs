//! What `wfpctl filter add` asks the filter engine for, as a portable
//! description: which of the driver's callouts (and so which layer), the
//! conditions, the weight, the display name and the policy the filter's
//! provider context carries.
//!
//! The Windows module turns a [`FilterSpec`] into an `FWPM_FILTER0`: the
//! action [`CalloutTarget::action`] says (a terminating callout at the
//! authorization layers, an inspection callout at ALE_FLOW_ESTABLISHED)
//! naming [`FilterSpec::callout_key`], `FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT`
//! and, where the action allows it,
//! `FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED`, our provider and
//! sublayer, and one condition per [`Condition`]: `FWP_MATCH_EQUAL` on a
//! value, an `FWP_V4_ADDR_AND_MASK` / `FWP_V6_ADDR_AND_MASK` subnet, or
//! `FWP_MATCH_RANGE` on an `FWP_RANGE0` of ports.
#![forbid(unsafe_code)]

use core::fmt;
use std::net::IpAddr;

use clap::ValueEnum;
use wfpcallout_wire::{PolicyAction, PolicyRepr};

use crate::keys::{self, Guid};
use crate::policy;
use crate::vocabulary::{AddressMatch, PortRange};

/// Which ALE layer a filter sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Layer {
    /// ALE_AUTH_CONNECT: outbound connections (and the first outbound UDP
    /// packet of a flow).
    Connect,
    /// ALE_AUTH_RECV_ACCEPT: inbound connections.
    RecvAccept,
    /// ALE_FLOW_ESTABLISHED: connections once permitted (the driver tracks
    /// flows that permit and audit policies let through).
    Flow,
}

impl Layer {
    /// The name used on the command line and in listings.
    pub const fn name(self) -> &'static str {
        match self {
            Layer::Connect => "connect",
            Layer::RecvAccept => "recv-accept",
            Layer::Flow => "flow",
        }
    }
}

/// The IP version of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum IpVersion {
    /// IPv4 (the `_V4` layer).
    V4,
    /// IPv6 (the `_V6` layer).
    V6,
}

impl IpVersion {
    /// `"v4"` or `"v6"`.
    pub const fn name(self) -> &'static str {
        match self {
            IpVersion::V4 => "v4",
            IpVersion::V6 => "v6",
        }
    }

    /// The version of an address.
    pub const fn of(address: &IpAddr) -> IpVersion {
        match address {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

/// One of the driver's six callouts: a layer and an IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CalloutTarget {
    /// The ALE layer.
    pub layer: Layer,
    /// The IP version.
    pub ip: IpVersion,
}

impl CalloutTarget {
    /// Every callout, in the driver's registration order.
    pub const ALL: [CalloutTarget; 6] = [
        CalloutTarget { layer: Layer::Connect, ip: IpVersion::V4 },
        CalloutTarget { layer: Layer::Connect, ip: IpVersion::V6 },
        CalloutTarget { layer: Layer::RecvAccept, ip: IpVersion::V4 },
        CalloutTarget { layer: Layer::RecvAccept, ip: IpVersion::V6 },
        CalloutTarget { layer: Layer::Flow, ip: IpVersion::V4 },
        CalloutTarget { layer: Layer::Flow, ip: IpVersion::V6 },
    ];

    /// The management layer key (`FWPM_LAYER_*`).
    pub const fn layer_key(self) -> Guid {
        match (self.layer, self.ip) {
            (Layer::Connect, IpVersion::V4) => keys::layer::ALE_AUTH_CONNECT_V4,
            (Layer::Connect, IpVersion::V6) => keys::layer::ALE_AUTH_CONNECT_V6,
            (Layer::RecvAccept, IpVersion::V4) => keys::layer::ALE_AUTH_RECV_ACCEPT_V4,
            (Layer::RecvAccept, IpVersion::V6) => keys::layer::ALE_AUTH_RECV_ACCEPT_V6,
            (Layer::Flow, IpVersion::V4) => keys::layer::ALE_FLOW_ESTABLISHED_V4,
            (Layer::Flow, IpVersion::V6) => keys::layer::ALE_FLOW_ESTABLISHED_V6,
        }
    }

    /// The driver's callout key at that layer.
    pub const fn callout_key(self) -> Guid {
        match (self.layer, self.ip) {
            (Layer::Connect, IpVersion::V4) => keys::callout::CONNECT_V4,
            (Layer::Connect, IpVersion::V6) => keys::callout::CONNECT_V6,
            (Layer::RecvAccept, IpVersion::V4) => keys::callout::RECV_ACCEPT_V4,
            (Layer::RecvAccept, IpVersion::V6) => keys::callout::RECV_ACCEPT_V6,
            (Layer::Flow, IpVersion::V4) => keys::callout::FLOW_ESTABLISHED_V4,
            (Layer::Flow, IpVersion::V6) => keys::callout::FLOW_ESTABLISHED_V6,
        }
    }

    /// The filter's action type. At the authorization layers a terminating
    /// callout (its verdict is the filter's). At ALE_FLOW_ESTABLISHED "a
    /// filter should not return Block or Permit" (ALE Layers): the driver
    /// answers CONTINUE there, which a terminating action would turn into
    /// BLOCK, so the action is an inspection callout.
    pub const fn action(self) -> CalloutAction {
        match self.layer {
            Layer::Connect | Layer::RecvAccept => CalloutAction::Terminating,
            Layer::Flow => CalloutAction::Inspection,
        }
    }

    /// The callout whose layer key this is, if it is one of ours.
    pub fn from_layer_key(key: Guid) -> Option<CalloutTarget> {
        CalloutTarget::ALL.into_iter().find(|target| target.layer_key() == key)
    }
}

/// The action type of a filter that calls one of our callouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutAction {
    /// `FWP_ACTION_CALLOUT_TERMINATING`: the callout returns the verdict.
    /// Such filters also carry `FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED`,
    /// so an unloaded driver does not cut the network.
    Terminating,
    /// `FWP_ACTION_CALLOUT_INSPECTION`: the callout only looks (the engine
    /// ignores such a filter while its callout is unregistered, and refuses
    /// PERMIT_IF_CALLOUT_UNREGISTERED on it).
    Inspection,
}

impl CalloutAction {
    /// `FWP_ACTION_CALLOUT_*`.
    pub const fn action_type(self) -> u32 {
        match self {
            CalloutAction::Terminating => 0x5003,
            CalloutAction::Inspection => 0x6004,
        }
    }

    /// Whether `FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED` is allowed.
    pub const fn permits_if_unregistered(self) -> bool {
        matches!(self, CalloutAction::Terminating)
    }
}

impl fmt::Display for CalloutTarget {
    /// `connect-v4`, `recv-accept-v6`, `flow-v4`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.layer.name(), self.ip.name())
    }
}

/// A field a condition compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionField {
    /// `FWPM_CONDITION_IP_PROTOCOL` (`FWP_UINT8`).
    Protocol,
    /// `FWPM_CONDITION_IP_REMOTE_ADDRESS`.
    RemoteAddress,
    /// `FWPM_CONDITION_IP_REMOTE_PORT` (`FWP_UINT16`).
    RemotePort,
    /// `FWPM_CONDITION_IP_LOCAL_ADDRESS`.
    LocalAddress,
    /// `FWPM_CONDITION_IP_LOCAL_PORT` (`FWP_UINT16`).
    LocalPort,
}

impl ConditionField {
    /// Every field, in the order wfpctl writes conditions.
    pub const ALL: [ConditionField; 5] = [
        ConditionField::Protocol,
        ConditionField::RemoteAddress,
        ConditionField::RemotePort,
        ConditionField::LocalAddress,
        ConditionField::LocalPort,
    ];

    /// The condition's field key (`FWPM_CONDITION_*`).
    pub const fn key(self) -> Guid {
        match self {
            ConditionField::Protocol => keys::condition::IP_PROTOCOL,
            ConditionField::RemoteAddress => keys::condition::IP_REMOTE_ADDRESS,
            ConditionField::RemotePort => keys::condition::IP_REMOTE_PORT,
            ConditionField::LocalAddress => keys::condition::IP_LOCAL_ADDRESS,
            ConditionField::LocalPort => keys::condition::IP_LOCAL_PORT,
        }
    }

    /// The field whose key this is, if wfpctl knows it.
    pub fn from_key(key: Guid) -> Option<ConditionField> {
        ConditionField::ALL.into_iter().find(|field| field.key() == key)
    }

    /// The command-line option that sets it, without the dashes.
    pub const fn name(self) -> &'static str {
        match self {
            ConditionField::Protocol => "protocol",
            ConditionField::RemoteAddress => "remote-addr",
            ConditionField::RemotePort => "remote-port",
            ConditionField::LocalAddress => "local-addr",
            ConditionField::LocalPort => "local-port",
        }
    }
}

/// The value a condition compares with, typed as the engine wants it at
/// the ALE layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionValue {
    /// `FWP_UINT8` (the IP protocol).
    Uint8(u8),
    /// `FWP_UINT16` (a port).
    Uint16(u16),
    /// `FWP_RANGE0` of two `FWP_UINT16`s, matched with `FWP_MATCH_RANGE`
    /// (a port range, both ends included).
    Uint16Range(u16, u16),
    /// `FWP_UINT32` holding an IPv4 address in host byte order
    /// (`192.0.2.1` is `0xc000_0201`), as the IPv4 layers expect.
    V4Address(u32),
    /// `FWP_V4_ADDR_MASK`: an `FWP_V4_ADDR_AND_MASK`, address and mask in
    /// host byte order (`10.0.0.0/8` is `0x0a00_0000`, `0xff00_0000`).
    V4Subnet {
        /// The subnet's address.
        address: u32,
        /// Its mask.
        mask: u32,
    },
    /// `FWP_BYTE_ARRAY16_TYPE` holding an IPv6 address in network byte
    /// order, as the IPv6 layers expect.
    V6Address([u8; 16]),
    /// `FWP_V6_ADDR_MASK`: an `FWP_V6_ADDR_AND_MASK`, the address in
    /// network byte order and the prefix length.
    V6Subnet {
        /// The subnet's address.
        address: [u8; 16],
        /// Its prefix length (0 to 128).
        prefix: u8,
    },
}

impl ConditionValue {
    /// The value for an address condition.
    pub fn address(address: IpAddr) -> ConditionValue {
        match address {
            IpAddr::V4(v4) => ConditionValue::V4Address(u32::from(v4)),
            IpAddr::V6(v6) => ConditionValue::V6Address(v6.octets()),
        }
    }

    /// The value for an address or subnet condition: a plain address when
    /// the match is one address.
    pub fn address_match(matched: AddressMatch) -> ConditionValue {
        if matched.is_single() {
            return ConditionValue::address(matched.address);
        }
        match matched.address {
            IpAddr::V4(v4) => {
                ConditionValue::V4Subnet { address: u32::from(v4), mask: AddressMatch::v4_mask(matched.prefix) }
            }
            IpAddr::V6(v6) => ConditionValue::V6Subnet { address: v6.octets(), prefix: matched.prefix },
        }
    }

    /// The value for a port or port-range condition.
    pub fn ports(range: PortRange) -> ConditionValue {
        if range.is_single() {
            ConditionValue::Uint16(range.low)
        } else {
            ConditionValue::Uint16Range(range.low, range.high)
        }
    }

    /// Whether the condition compares with `FWP_MATCH_RANGE` (otherwise
    /// `FWP_MATCH_EQUAL`; a subnet is an equality on a masked address).
    pub const fn is_range(&self) -> bool {
        matches!(self, ConditionValue::Uint16Range(..))
    }

    /// The value as text: `tcp` for a protocol field, `443`, `5000-5100`,
    /// `192.0.2.1`, `10.0.0.0/8`, `2001:db8::/32`.
    pub fn text(&self, field: ConditionField) -> String {
        match *self {
            ConditionValue::Uint8(value) if field == ConditionField::Protocol => protocol_name(value),
            ConditionValue::Uint8(value) => value.to_string(),
            ConditionValue::Uint16(value) => value.to_string(),
            ConditionValue::Uint16Range(low, high) => PortRange { low, high }.to_string(),
            ConditionValue::V4Address(value) => std::net::Ipv4Addr::from(value).to_string(),
            ConditionValue::V4Subnet { address, mask } => {
                format!("{}/{}", std::net::Ipv4Addr::from(address), mask.leading_ones())
            }
            ConditionValue::V6Address(octets) => std::net::Ipv6Addr::from(octets).to_string(),
            ConditionValue::V6Subnet { address, prefix } => format!("{}/{prefix}", std::net::Ipv6Addr::from(address)),
        }
    }
}

/// One condition on a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Condition {
    /// What is compared.
    pub field: ConditionField,
    /// With what.
    pub value: ConditionValue,
}

impl fmt::Display for Condition {
    /// `protocol=tcp`, `remote-port=443`, `remote-port=5000-5100`,
    /// `remote-addr=192.0.2.1`, `remote-addr=10.0.0.0/8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field.name(), self.value.text(self.field))
    }
}

/// The IP protocol numbers wfpctl knows by name.
const PROTOCOL_NAMES: [(&str, u8); 4] = [("icmp", 1), ("tcp", 6), ("udp", 17), ("icmpv6", 58)];

/// `tcp`, `udp`, `icmp`, `icmpv6`, or the number.
pub fn protocol_name(protocol: u8) -> String {
    PROTOCOL_NAMES
        .iter()
        .find(|(_, number)| *number == protocol)
        .map_or_else(|| protocol.to_string(), |(name, _)| (*name).to_string())
}

/// Parses `tcp`, `udp`, `icmp`, `icmpv6` (any case) or a number `0..=255`.
pub fn parse_protocol(text: &str) -> Result<u8, String> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some((_, number)) = PROTOCOL_NAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(*number);
    }
    lower
        .parse::<u8>()
        .map_err(|_| format!("'{text}' is not a protocol: use tcp, udp, icmp, icmpv6 or a number from 0 to 255"))
}

/// The filter's weight within our sublayer (`FWPM_FILTER0::weight`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Weight {
    /// `FWP_EMPTY`: the engine picks the weight from the conditions.
    #[default]
    Auto,
    /// `FWP_UINT8` `0..=15`: the engine picks the weight inside this range
    /// (higher ranges win), by how specific the conditions are.
    Range(u8),
    /// `FWP_UINT64`: exactly this weight.
    Exact(u64),
}

/// The highest weight range `FWP_UINT8` accepts.
pub const WEIGHT_RANGE_MAX: u8 = 15;

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weight::Auto => f.write_str("auto"),
            Weight::Range(range) => write!(f, "range {range}"),
            Weight::Exact(weight) => write!(f, "{weight}"),
        }
    }
}

/// What `wfpctl filter add` was told, before it is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterOptions {
    /// The layer.
    pub layer: Layer,
    /// The IP version.
    pub ip: IpVersion,
    /// `--remote-addr`: an address or a subnet.
    pub remote_address: Option<AddressMatch>,
    /// `--remote-port`: a port or a range.
    pub remote_port: Option<PortRange>,
    /// `--local-addr`: an address or a subnet.
    pub local_address: Option<AddressMatch>,
    /// `--local-port`: a port or a range.
    pub local_port: Option<PortRange>,
    /// `--protocol`, as a number.
    pub protocol: Option<u8>,
    /// `--weight` or `--weight-range`.
    pub weight: Weight,
    /// The policy the provider context will carry.
    pub policy: PolicyRepr,
}

/// Why a filter cannot be built as asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// An address of the other IP version than the layer's.
    AddressFamily {
        /// The option that gave it (`remote-addr` or `local-addr`).
        option: &'static str,
        /// The address or subnet.
        address: AddressMatch,
        /// The layer's version.
        ip: IpVersion,
    },
    /// A policy that needs a verdict (block, rate-limit, ask) at
    /// ALE_FLOW_ESTABLISHED, where a filter only tracks connections.
    VerdictAtFlowLayer(&'static str),
    /// A weight range above [`WEIGHT_RANGE_MAX`].
    WeightRange(u8),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::AddressFamily { option, address, ip } => write!(
                f,
                "--{option} {address} is an IP{} address but the filter is at the IP{} layer (--ip {})",
                IpVersion::of(&address.address).name(),
                ip.name(),
                ip.name()
            ),
            SpecError::VerdictAtFlowLayer(action) => write!(
                f,
                "--action {action} cannot be used with --layer flow: at ALE_FLOW_ESTABLISHED a filter must not \
                 return a verdict, it only tracks connections (use --action permit or audit there, and --layer \
                 connect or recv-accept to {action})"
            ),
            SpecError::WeightRange(range) => {
                write!(f, "--weight-range {range} is out of range: weight ranges are 0 to {WEIGHT_RANGE_MAX}")
            }
        }
    }
}

impl std::error::Error for SpecError {}

/// A filter ready to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSpec {
    /// The callout the filter's action calls, and so its layer.
    pub target: CalloutTarget,
    /// `FWP_MATCH_EQUAL` conditions, all of which must hold.
    pub conditions: Vec<Condition>,
    /// The weight.
    pub weight: Weight,
    /// Display name (`netsh wfp show filters` shows it).
    pub name: String,
    /// Display description.
    pub description: String,
    /// The policy the filter's provider context carries.
    pub policy: PolicyRepr,
}

impl FilterSpec {
    /// Checks the options and builds the filter.
    pub fn build(options: &FilterOptions) -> Result<FilterSpec, SpecError> {
        let target = CalloutTarget { layer: options.layer, ip: options.ip };
        if target.layer == Layer::Flow {
            let refused = match options.policy.action {
                PolicyAction::Permit | PolicyAction::Audit => None,
                PolicyAction::Block => Some("block"),
                PolicyAction::RateLimit { .. } => Some("rate-limit"),
                PolicyAction::Ask { .. } => Some("ask"),
            };
            if let Some(action) = refused {
                return Err(SpecError::VerdictAtFlowLayer(action));
            }
        }
        if let Weight::Range(range) = options.weight
            && range > WEIGHT_RANGE_MAX
        {
            return Err(SpecError::WeightRange(range));
        }
        let mut conditions = Vec::new();
        if let Some(protocol) = options.protocol {
            conditions.push(Condition { field: ConditionField::Protocol, value: ConditionValue::Uint8(protocol) });
        }
        for (field, address) in [
            (ConditionField::RemoteAddress, options.remote_address),
            (ConditionField::LocalAddress, options.local_address),
        ] {
            let Some(address) = address else { continue };
            if IpVersion::of(&address.address) != target.ip {
                return Err(SpecError::AddressFamily { option: field.name(), address, ip: target.ip });
            }
            conditions.push(Condition { field, value: ConditionValue::address_match(address) });
        }
        for (field, port) in
            [(ConditionField::RemotePort, options.remote_port), (ConditionField::LocalPort, options.local_port)]
        {
            if let Some(port) = port {
                conditions.push(Condition { field, value: ConditionValue::ports(port) });
            }
        }
        conditions.sort_by_key(|condition| ConditionField::ALL.iter().position(|field| *field == condition.field));
        let name = filter_name(&options.policy);
        let description = filter_description(target, &conditions, &options.policy);
        Ok(FilterSpec { target, conditions, weight: options.weight, name, description, policy: options.policy })
    }

    /// The driver's callout the filter's action names.
    pub fn callout_key(&self) -> Guid {
        self.target.callout_key()
    }

    /// The layer the filter sits at.
    pub fn layer_key(&self) -> Guid {
        self.target.layer_key()
    }

    /// The conditions, space-separated (`-` when there are none).
    pub fn conditions_text(&self) -> String {
        conditions_text(&self.conditions)
    }
}

/// Conditions, space-separated, or `-`.
pub fn conditions_text(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return "-".to_string();
    }
    conditions.iter().map(Condition::to_string).collect::<Vec<_>>().join(" ")
}

/// `wfpcallout: <label>`, or `wfpcallout: <action>` for an unlabelled policy.
fn filter_name(policy: &PolicyRepr) -> String {
    if policy.label.is_empty() {
        format!("wfpcallout: {}", policy::action_name(&policy.action))
    } else {
        format!("wfpcallout: {}", policy.label)
    }
}

fn filter_description(target: CalloutTarget, conditions: &[Condition], policy: &PolicyRepr) -> String {
    format!(
        "Added by wfpctl at {target}: {} when {}",
        policy::describe_action(&policy.action),
        if conditions.is_empty() { "any connection".to_string() } else { conditions_text(conditions) }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use wfpcallout_wire::{Label, LogLevel, Verdict};

    fn addr(text: &str) -> AddressMatch {
        crate::vocabulary::parse_address_match(text).unwrap()
    }

    #[test]
    fn subnets_and_port_ranges() {
        let mut v4 = options(Layer::Connect, IpVersion::V4);
        v4.remote_address = Some(addr("10.0.0.0/8"));
        v4.remote_port = Some(PortRange { low: 5000, high: 5100 });
        v4.local_port = Some(PortRange { low: 0, high: 0 });
        let spec = FilterSpec::build(&v4).unwrap();
        assert_eq!(
            spec.conditions,
            [
                Condition {
                    field: ConditionField::RemoteAddress,
                    value: ConditionValue::V4Subnet { address: 0x0a00_0000, mask: 0xff00_0000 }
                },
                Condition { field: ConditionField::RemotePort, value: ConditionValue::Uint16Range(5000, 5100) },
                Condition { field: ConditionField::LocalPort, value: ConditionValue::Uint16(0) },
            ]
        );
        assert!(spec.conditions[1].value.is_range());
        assert!(!spec.conditions[0].value.is_range());
        assert_eq!(spec.conditions_text(), "remote-addr=10.0.0.0/8 remote-port=5000-5100 local-port=0");

        let mut v6 = options(Layer::RecvAccept, IpVersion::V6);
        v6.local_address = Some(addr("2001:db8::/32"));
        let spec = FilterSpec::build(&v6).unwrap();
        let mut octets = [0u8; 16];
        octets[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(spec.conditions[0].value, ConditionValue::V6Subnet { address: octets, prefix: 32 });
        assert_eq!(spec.conditions_text(), "local-addr=2001:db8::/32");

        let mut mixed = options(Layer::Connect, IpVersion::V6);
        mixed.remote_address = Some(addr("10.0.0.0/8"));
        assert_eq!(
            FilterSpec::build(&mixed).unwrap_err().to_string(),
            "--remote-addr 10.0.0.0/8 is an IPv4 address but the filter is at the IPv6 layer (--ip v6)"
        );
    }

    fn options(layer: Layer, ip: IpVersion) -> FilterOptions {
        FilterOptions {
            layer,
            ip,
            remote_address: None,
            remote_port: None,
            local_address: None,
            local_port: None,
            protocol: None,
            weight: Weight::Auto,
            policy: PolicyRepr::DEFAULT,
        }
    }

    #[test]
    fn every_target_has_distinct_keys() {
        for (i, a) in CalloutTarget::ALL.iter().enumerate() {
            assert_eq!(CalloutTarget::from_layer_key(a.layer_key()), Some(*a));
            for b in CalloutTarget::ALL.iter().skip(i + 1) {
                assert_ne!(a.layer_key(), b.layer_key());
                assert_ne!(a.callout_key(), b.callout_key());
            }
        }
        assert_eq!(CalloutTarget::from_layer_key(keys::PROVIDER_KEY), None);
        assert_eq!(CalloutTarget::ALL[3].to_string(), "recv-accept-v6");
    }

    #[test]
    fn connect_v4_with_port_and_protocol() {
        let mut options = options(Layer::Connect, IpVersion::V4);
        options.remote_port = Some(PortRange::single(443));
        options.protocol = Some(6);
        options.policy =
            PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Info, label: Label::new("web").unwrap() };
        let spec = FilterSpec::build(&options).unwrap();
        assert_eq!(spec.layer_key(), keys::layer::ALE_AUTH_CONNECT_V4);
        assert_eq!(spec.callout_key(), keys::callout::CONNECT_V4);
        assert_eq!(
            spec.conditions,
            vec![
                Condition { field: ConditionField::Protocol, value: ConditionValue::Uint8(6) },
                Condition { field: ConditionField::RemotePort, value: ConditionValue::Uint16(443) },
            ]
        );
        assert_eq!(spec.conditions_text(), "protocol=tcp remote-port=443");
        assert_eq!(spec.name, "wfpcallout: web");
        assert_eq!(spec.description, "Added by wfpctl at connect-v4: audit when protocol=tcp remote-port=443");
        assert_eq!(spec.weight, Weight::Auto);
    }

    #[test]
    fn addresses_are_typed_per_version() {
        let mut v4 = options(Layer::RecvAccept, IpVersion::V4);
        v4.local_address = Some(addr("192.0.2.1"));
        v4.remote_address = Some(addr("198.51.100.7"));
        v4.local_port = Some(PortRange::single(8080));
        let spec = FilterSpec::build(&v4).unwrap();
        assert_eq!(spec.layer_key(), keys::layer::ALE_AUTH_RECV_ACCEPT_V4);
        assert_eq!(spec.conditions[0].value, ConditionValue::V4Address(0xc633_6407));
        assert_eq!(
            spec.conditions[1],
            Condition { field: ConditionField::LocalAddress, value: ConditionValue::V4Address(0xc000_0201) }
        );
        assert_eq!(spec.conditions_text(), "remote-addr=198.51.100.7 local-addr=192.0.2.1 local-port=8080");

        let mut v6 = options(Layer::Flow, IpVersion::V6);
        v6.remote_address = Some(addr("2001:db8::1"));
        let spec = FilterSpec::build(&v6).unwrap();
        assert_eq!(spec.callout_key(), keys::callout::FLOW_ESTABLISHED_V6);
        let mut octets = [0u8; 16];
        octets[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        octets[15] = 1;
        assert_eq!(spec.conditions[0].value, ConditionValue::V6Address(octets));
        assert_eq!(spec.conditions_text(), "remote-addr=2001:db8::1");
    }

    #[test]
    fn address_of_the_other_family_is_refused() {
        let mut mixed = options(Layer::Connect, IpVersion::V4);
        mixed.remote_address = Some(addr("2001:db8::1"));
        let err = FilterSpec::build(&mixed).unwrap_err();
        assert!(matches!(err, SpecError::AddressFamily { option: "remote-addr", ip: IpVersion::V4, .. }));
        assert_eq!(
            err.to_string(),
            "--remote-addr 2001:db8::1 is an IPv6 address but the filter is at the IPv4 layer (--ip v4)"
        );
        let mut mixed = options(Layer::Connect, IpVersion::V6);
        mixed.local_address = Some(addr("10.0.0.1"));
        assert!(matches!(FilterSpec::build(&mixed), Err(SpecError::AddressFamily { option: "local-addr", .. })));
    }

    #[test]
    fn flow_filters_inspect_and_only_track() {
        for (action, name) in
            [(PolicyAction::Block, "block"), (PolicyAction::RateLimit { rate_per_sec: 1, burst: 1 }, "rate-limit")]
        {
            let mut flow = options(Layer::Flow, IpVersion::V6);
            flow.policy = PolicyRepr { action, ..PolicyRepr::DEFAULT };
            assert_eq!(FilterSpec::build(&flow), Err(SpecError::VerdictAtFlowLayer(name)));
        }
        for action in [PolicyAction::Permit, PolicyAction::Audit] {
            let mut flow = options(Layer::Flow, IpVersion::V4);
            flow.policy = PolicyRepr { action, ..PolicyRepr::DEFAULT };
            let spec = FilterSpec::build(&flow).unwrap();
            assert_eq!(spec.target.action(), CalloutAction::Inspection);
            assert!(!spec.target.action().permits_if_unregistered());
        }
        for layer in [Layer::Connect, Layer::RecvAccept] {
            let target = CalloutTarget { layer, ip: IpVersion::V4 };
            assert_eq!(target.action(), CalloutAction::Terminating);
            assert!(target.action().permits_if_unregistered());
        }
        let text = SpecError::VerdictAtFlowLayer("block").to_string();
        assert!(text.contains("--action block cannot be used with --layer flow"), "{text}");
    }

    #[test]
    fn ask_needs_an_auth_layer() {
        let ask = PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: 1_000, default_verdict: Verdict::Block },
            ..PolicyRepr::DEFAULT
        };
        let mut flow = options(Layer::Flow, IpVersion::V4);
        flow.policy = ask;
        assert_eq!(FilterSpec::build(&flow), Err(SpecError::VerdictAtFlowLayer("ask")));
        let mut inbound = options(Layer::RecvAccept, IpVersion::V4);
        inbound.policy = ask;
        assert_eq!(FilterSpec::build(&inbound).unwrap().callout_key(), keys::callout::RECV_ACCEPT_V4);
        let mut outbound = options(Layer::Connect, IpVersion::V6);
        outbound.policy = ask;
        let spec = FilterSpec::build(&outbound).unwrap();
        assert_eq!(spec.name, "wfpcallout: ask");
        assert_eq!(spec.conditions_text(), "-");
    }

    #[test]
    fn weights() {
        let mut weighted = options(Layer::Connect, IpVersion::V4);
        weighted.weight = Weight::Range(15);
        assert_eq!(FilterSpec::build(&weighted).unwrap().weight, Weight::Range(15));
        weighted.weight = Weight::Range(16);
        assert_eq!(FilterSpec::build(&weighted), Err(SpecError::WeightRange(16)));
        weighted.weight = Weight::Exact(u64::MAX);
        assert_eq!(FilterSpec::build(&weighted).unwrap().weight, Weight::Exact(u64::MAX));
        assert_eq!(Weight::Range(3).to_string(), "range 3");
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol("tcp"), Ok(6));
        assert_eq!(parse_protocol("UDP"), Ok(17));
        assert_eq!(parse_protocol("icmpv6"), Ok(58));
        assert_eq!(parse_protocol("47"), Ok(47));
        assert_eq!(parse_protocol("0"), Ok(0));
        assert!(parse_protocol("256").unwrap_err().contains("not a protocol"));
        assert!(parse_protocol("sctp").is_err());
        assert_eq!(protocol_name(17), "udp");
        assert_eq!(protocol_name(47), "47");
    }
}
