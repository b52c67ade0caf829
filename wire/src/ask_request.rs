//! The output of [`IOCTL_WFPCALLOUT_AGENT_GET_REQUEST`](crate::IOCTL_WFPCALLOUT_AGENT_GET_REQUEST):
//! one connection that an Ask policy pended, described for the user-mode
//! agent that must decide on it.
//!
//! The agent answers with a [`VerdictMessage`](crate::VerdictMessage)
//! naming the same `request_id` before `timeout_ms` runs out; otherwise the
//! driver applies `default_verdict`.
//!
//! [`AskRequest`] is a checked view over the raw bytes; [`AskRequestRepr`]
//! is the decoded meaning.
//!
//! # Layout
//!
//! Integers are little-endian; addresses are in network byte order (the
//! octets as written, `192.0.2.1` is `c0 00 02 01`). The buffer is exactly
//! [`ASK_REQUEST_LEN`] (136) bytes.
//!
//! | Offset | Size | Field             | Contents                                                                  |
//! |-------:|-----:|-------------------|---------------------------------------------------------------------------|
//! | 0      | 8    | `request_id`      | `u64`: names the request in the verdict message                           |
//! | 8      | 8    | `filter_id`       | `u64`: the WFP runtime id of the filter whose Ask policy matched          |
//! | 16     | 8    | `process_id`      | `u64`: the process that owns the connection                               |
//! | 24     | 2    | `layer_id`        | `u16`: the WFP runtime layer id                                           |
//! | 26     | 1    | `direction`       | `0` outbound, `1` inbound                                                 |
//! | 27     | 1    | `ip_version`      | `4` or `6`                                                                |
//! | 28     | 1    | `protocol`        | IP protocol number (`6` TCP, `17` UDP, ...)                               |
//! | 29     | 1    | `default_verdict` | applied when the agent does not answer in time: `1` Permit, `2` Block     |
//! | 30     | 1    | `label_len`       | label length in bytes, `0..=64`                                           |
//! | 31     | 1    | reserved          | must be `0`                                                               |
//! | 32     | 2    | `local_port`      | `u16`                                                                     |
//! | 34     | 2    | `remote_port`     | `u16`                                                                     |
//! | 36     | 4    | `timeout_ms`      | `u32`: the policy's Ask timeout, `1..=600_000`                            |
//! | 40     | 16   | `local_address`   | IPv6: 16 octets; IPv4: 4 octets then 12 zero bytes                        |
//! | 56     | 16   | `remote_address`  | IPv6: 16 octets; IPv4: 4 octets then 12 zero bytes                        |
//! | 72     | 64   | `label`           | the policy's label: `label_len` bytes of UTF-8, then zeroes to the end    |
//!
//! Checks run in this order, and the first failure is reported: exact
//! length, reserved byte, direction ([`WireError::UnknownDirection`]), IP
//! version ([`WireError::UnknownIpVersion`]), address padding
//! ([`WireError::ReservedNotZero`]), default verdict, timeout
//! ([`WireError::BadActionParameters`], the range of
//! [`PolicyAction::Ask`]), label (length, UTF-8, zero padding).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bytes::{
    array_at, clear, set_bytes, set_u8, set_u16, set_u32, set_u64, u8_at, u16_at, u32_at, u64_at, zero_at,
};
use crate::{Label, PolicyAction, Verdict, WireError, label_slot};

/// Length of an ask request.
pub const ASK_REQUEST_LEN: usize = field::LABEL.end;

const _: () = assert!(ASK_REQUEST_LEN == 136);

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    use crate::label::LABEL_MAX_LEN;

    pub(super) const REQUEST_ID: Range<usize> = 0..8;
    pub(super) const FILTER_ID: Range<usize> = 8..16;
    pub(super) const PROCESS_ID: Range<usize> = 16..24;
    pub(super) const LAYER_ID: Range<usize> = 24..26;
    pub(super) const DIRECTION: usize = 26;
    pub(super) const IP_VERSION: usize = 27;
    pub(super) const PROTOCOL: usize = 28;
    pub(super) const DEFAULT_VERDICT: usize = 29;
    pub(super) const LABEL_LEN: usize = 30;
    pub(super) const RESERVED: Range<usize> = 31..32;
    pub(super) const LOCAL_PORT: Range<usize> = 32..34;
    pub(super) const REMOTE_PORT: Range<usize> = 34..36;
    pub(super) const TIMEOUT_MS: Range<usize> = 36..40;
    pub(super) const LOCAL_ADDRESS: Range<usize> = 40..56;
    pub(super) const REMOTE_ADDRESS: Range<usize> = 56..72;
    pub(super) const LABEL: Range<usize> = 72..72 + LABEL_MAX_LEN;
}

/// Which way a connection goes, seen from this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A local process connects out.
    Outbound,
    /// A remote peer connects in.
    Inbound,
}

impl Direction {
    /// The wire code of this direction.
    pub const fn code(self) -> u8 {
        match self {
            Direction::Outbound => 0,
            Direction::Inbound => 1,
        }
    }

    /// Decodes a wire code; every unassigned code is an error.
    pub const fn from_code(code: u8) -> Result<Direction, WireError> {
        match code {
            0 => Ok(Direction::Outbound),
            1 => Ok(Direction::Inbound),
            other => Err(WireError::UnknownDirection(other)),
        }
    }
}

/// A view over the bytes of an ask request.
///
/// Build it with [`AskRequest::new_checked`] for untrusted input; after that
/// every accessor reads inside the buffer. No accessor or setter can panic:
/// on a view made with [`AskRequest::new_unchecked`] over a short buffer,
/// reads of absent bytes return zero (or an empty slot) and writes to them
/// are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AskRequest<T: AsRef<[u8]>> {
    buffer: T,
}

crate::bytes::exact_len_view!(AskRequest, ASK_REQUEST_LEN);

impl<T: AsRef<[u8]>> AskRequest<T> {
    /// The request id.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::REQUEST_ID)
    }

    /// The filter id.
    pub fn filter_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::FILTER_ID)
    }

    /// The process id.
    pub fn process_id(&self) -> u64 {
        u64_at(self.buffer.as_ref(), field::PROCESS_ID)
    }

    /// The layer id.
    pub fn layer_id(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LAYER_ID)
    }

    /// The raw direction code.
    pub fn direction_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DIRECTION)
    }

    /// The raw IP version.
    pub fn ip_version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::IP_VERSION)
    }

    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// The raw default verdict code.
    pub fn default_verdict_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DEFAULT_VERDICT)
    }

    /// The `label_len` field.
    pub fn label_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::LABEL_LEN)
    }

    /// The local port.
    pub fn local_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LOCAL_PORT)
    }

    /// The remote port.
    pub fn remote_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::REMOTE_PORT)
    }

    /// The timeout in milliseconds.
    pub fn timeout_ms(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::TIMEOUT_MS)
    }

    /// The raw 16-byte local address slot.
    pub fn local_address(&self) -> [u8; 16] {
        array_at(self.buffer.as_ref(), field::LOCAL_ADDRESS)
    }

    /// The raw 16-byte remote address slot.
    pub fn remote_address(&self) -> [u8; 16] {
        array_at(self.buffer.as_ref(), field::REMOTE_ADDRESS)
    }

    /// Whether the reserved byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        zero_at(self.buffer.as_ref(), field::RESERVED)
    }

    /// The whole label slot ([`LABEL_MAX_LEN`](crate::LABEL_MAX_LEN) bytes), or empty if the
    /// buffer does not hold it.
    pub fn label_slot(&self) -> &[u8] {
        self.buffer.as_ref().get(field::LABEL).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AskRequest<T> {
    /// Sets the request id.
    pub fn set_request_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::REQUEST_ID, value);
    }

    /// Sets the filter id.
    pub fn set_filter_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::FILTER_ID, value);
    }

    /// Sets the process id.
    pub fn set_process_id(&mut self, value: u64) {
        set_u64(self.buffer.as_mut(), field::PROCESS_ID, value);
    }

    /// Sets the layer id.
    pub fn set_layer_id(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LAYER_ID, value);
    }

    /// Sets the raw direction code.
    pub fn set_direction_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::DIRECTION, value);
    }

    /// Sets the raw IP version.
    pub fn set_ip_version(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::IP_VERSION, value);
    }

    /// Sets the IP protocol number.
    pub fn set_protocol(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    /// Sets the raw default verdict code.
    pub fn set_default_verdict_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::DEFAULT_VERDICT, value);
    }

    /// Sets the `label_len` field.
    pub fn set_label_len(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::LABEL_LEN, value);
    }

    /// Sets the local port.
    pub fn set_local_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LOCAL_PORT, value);
    }

    /// Sets the remote port.
    pub fn set_remote_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::REMOTE_PORT, value);
    }

    /// Sets the timeout in milliseconds.
    pub fn set_timeout_ms(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::TIMEOUT_MS, value);
    }

    /// Sets the raw 16-byte local address slot.
    pub fn set_local_address(&mut self, value: [u8; 16]) {
        set_bytes(self.buffer.as_mut(), field::LOCAL_ADDRESS, &value);
    }

    /// Sets the raw 16-byte remote address slot.
    pub fn set_remote_address(&mut self, value: [u8; 16]) {
        set_bytes(self.buffer.as_mut(), field::REMOTE_ADDRESS, &value);
    }

    /// Zeroes the reserved byte.
    pub fn clear_reserved(&mut self) {
        clear(self.buffer.as_mut(), field::RESERVED);
    }

    /// The whole label slot, for writing; empty if the buffer does not hold
    /// it.
    pub fn label_slot_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::LABEL).unwrap_or(&mut [])
    }
}

/// A decoded, valid ask request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AskRequestRepr {
    /// Names the request in the agent's [`VerdictMessageRepr`](crate::VerdictMessageRepr).
    pub request_id: u64,
    /// The WFP runtime id of the filter whose Ask policy matched.
    pub filter_id: u64,
    /// The process that owns the connection.
    pub process_id: u64,
    /// The WFP runtime layer id.
    pub layer_id: u16,
    /// Which way the connection goes.
    pub direction: Direction,
    /// The IP protocol number.
    pub protocol: u8,
    /// What the driver decides if the agent does not answer in time.
    pub default_verdict: Verdict,
    /// How long the driver waits for the agent, `1..=`[`ASK_TIMEOUT_MS_MAX`](crate::ASK_TIMEOUT_MS_MAX).
    pub timeout_ms: u32,
    /// The local address; of the same family as `remote_address`.
    pub local_address: IpAddr,
    /// The local port.
    pub local_port: u16,
    /// The remote address; of the same family as `local_address`.
    pub remote_address: IpAddr,
    /// The remote port.
    pub remote_port: u16,
    /// The matched policy's label.
    pub label: Label,
}

impl AskRequestRepr {
    /// Decodes an ask request, strictly: exactly [`ASK_REQUEST_LEN`] bytes,
    /// reserved byte zero, known direction, IP version 4 or 6 with IPv4
    /// addresses zero-padded, known default verdict, timeout in the range
    /// of [`PolicyAction::Ask`], and a UTF-8 label padded with zeroes.
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<AskRequestRepr, WireError> {
        let request = AskRequest::new_checked(bytes)?;
        if !request.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let direction = Direction::from_code(request.direction_code())?;
        let ip_version = request.ip_version();
        let local_address = decode_address(ip_version, request.local_address())?;
        let remote_address = decode_address(ip_version, request.remote_address())?;
        let default_verdict = Verdict::from_code(request.default_verdict_code())?;
        let timeout_ms = request.timeout_ms();
        PolicyAction::Ask { timeout_ms, default_verdict }.check()?;
        let label = label_slot::decode(request.label_len(), request.label_slot())?;
        Ok(AskRequestRepr {
            request_id: request.request_id(),
            filter_id: request.filter_id(),
            process_id: request.process_id(),
            layer_id: request.layer_id(),
            direction,
            protocol: request.protocol(),
            default_verdict,
            timeout_ms,
            local_address,
            local_port: request.local_port(),
            remote_address,
            remote_port: request.remote_port(),
            label,
        })
    }

    /// The `ip_version` byte for these addresses: `4` or `6`, or
    /// [`WireError::AddressFamilyMismatch`] if one is IPv4 and the other
    /// IPv6.
    pub const fn ip_version(&self) -> Result<u8, WireError> {
        match (self.local_address, self.remote_address) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Ok(4),
            (IpAddr::V6(_), IpAddr::V6(_)) => Ok(6),
            _ => Err(WireError::AddressFamilyMismatch),
        }
    }

    /// Checks what [`parse`](Self::parse) checks and a repr can get wrong:
    /// the timeout range ([`WireError::BadActionParameters`]) and that both
    /// addresses are of one family ([`WireError::AddressFamilyMismatch`]).
    pub const fn check(&self) -> Result<(), WireError> {
        let action = PolicyAction::Ask { timeout_ms: self.timeout_ms, default_verdict: self.default_verdict };
        if let Err(err) = action.check() {
            return Err(err);
        }
        match self.ip_version() {
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Length of the encoding: always [`ASK_REQUEST_LEN`].
    pub const fn buffer_len(&self) -> usize {
        ASK_REQUEST_LEN
    }

    /// Encodes the request into the first [`ASK_REQUEST_LEN`] bytes of
    /// `out`, leaving the rest untouched, and returns that length.
    ///
    /// Returns the error of [`check`](Self::check) (so that nothing `parse`
    /// would refuse is written) or [`WireError::BufferTooSmall`] if `out` is
    /// too short; in every case `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.check()?;
        let dst = out.get_mut(..ASK_REQUEST_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut AskRequest::new_unchecked(dst));
        Ok(ASK_REQUEST_LEN)
    }

    /// Encodes the request into a new vector, without the checks of
    /// [`emit`](Self::emit): an out-of-range timeout is written as given,
    /// and addresses of two families are written with `ip_version` `0`;
    /// [`parse`](Self::parse) refuses both. Call [`check`](Self::check)
    /// first on reprs built from user input.
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; ASK_REQUEST_LEN];
        self.write(&mut AskRequest::new_unchecked(out.as_mut_slice()));
        out
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, request: &mut AskRequest<T>) {
        request.set_request_id(self.request_id);
        request.set_filter_id(self.filter_id);
        request.set_process_id(self.process_id);
        request.set_layer_id(self.layer_id);
        request.set_direction_code(self.direction.code());
        request.set_ip_version(self.ip_version().unwrap_or(0));
        request.set_protocol(self.protocol);
        request.set_default_verdict_code(self.default_verdict.code());
        request.clear_reserved();
        request.set_local_port(self.local_port);
        request.set_remote_port(self.remote_port);
        request.set_timeout_ms(self.timeout_ms);
        request.set_local_address(encode_address(self.local_address));
        request.set_remote_address(encode_address(self.remote_address));
        let label_len = label_slot::encode(&self.label, request.label_slot_mut());
        request.set_label_len(label_len);
    }
}

/// Decodes a 16-byte address slot for `ip_version`: IPv6 takes all 16
/// octets, IPv4 the first 4 and requires the other 12 to be zero.
fn decode_address(ip_version: u8, slot: [u8; 16]) -> Result<IpAddr, WireError> {
    match ip_version {
        4 => {
            let (octets, padding) = slot.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
            if padding.iter().any(|&b| b != 0) {
                return Err(WireError::ReservedNotZero);
            }
            Ok(IpAddr::V4(Ipv4Addr::from(*octets)))
        }
        6 => Ok(IpAddr::V6(Ipv6Addr::from(slot))),
        other => Err(WireError::UnknownIpVersion(other)),
    }
}

/// Encodes an address into its 16-byte slot.
fn encode_address(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => {
            let mut slot = [0u8; 16];
            if let Some((octets, _)) = slot.split_first_chunk_mut::<4>() {
                *octets = v4.octets();
            }
            slot
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::ASK_TIMEOUT_MS_MAX;
    use crate::LABEL_MAX_LEN;
    use crate::test_util::{self, FixedFormat};

    impl FixedFormat for AskRequestRepr {
        const LEN: usize = ASK_REQUEST_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            AskRequestRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// Builds a 136-byte request from its 72-byte head and label text.
    const fn request_bytes(head: [u8; 72], label: &[u8]) -> [u8; ASK_REQUEST_LEN] {
        let mut out = [0u8; ASK_REQUEST_LEN];
        let mut i = 0;
        while i < 72 {
            out[i] = head[i];
            i += 1;
        }
        let mut k = 0;
        while k < label.len() {
            out[72 + k] = label[k];
            k += 1;
        }
        out
    }

    /// Request 1: process 4242 connects out over TCP from 192.0.2.10:50000
    /// to 198.51.100.7:443; 30 s, default Block, label "ask-browser".
    pub(crate) static V4_BYTES: [u8; ASK_REQUEST_LEN] = request_bytes(
        [
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // request_id = 1
            0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // filter_id = 0x1234
            0x92, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // process_id = 4242
            0x30, 0x00, // layer_id = 48
            0x00, // direction = outbound
            0x04, // ip_version = 4
            0x06, // protocol = TCP
            0x02, // default_verdict = Block
            0x0b, // label_len = 11
            0x00, // reserved
            0x50, 0xc3, // local_port = 50000
            0xbb, 0x01, // remote_port = 443
            0x30, 0x75, 0x00, 0x00, // timeout_ms = 30_000
            0xc0, 0x00, 0x02, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // local_address = 192.0.2.10
            0xc6, 0x33, 0x64, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // remote_address = 198.51.100.7
        ],
        b"ask-browser",
    );

    /// Request 0xfedc_ba98_7654_3210: an inbound UDP datagram from
    /// [2001:db8::1]:53 to [fe80::1:2]:5353, 600 s, default Permit, no
    /// label.
    pub(crate) static V6_BYTES: [u8; ASK_REQUEST_LEN] = request_bytes(
        [
            0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, // request_id
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // filter_id = 7
            0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // process_id = 4 (System)
            0x2c, 0x00, // layer_id = 44
            0x01, // direction = inbound
            0x06, // ip_version = 6
            0x11, // protocol = UDP
            0x01, // default_verdict = Permit
            0x00, // label_len
            0x00, // reserved
            0xe9, 0x14, // local_port = 5353
            0x35, 0x00, // remote_port = 53
            0xc0, 0x27, 0x09, 0x00, // timeout_ms = 600_000
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02, // local_address = fe80::1:2
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // remote_address = 2001:db8::1
        ],
        b"",
    );

    pub(crate) fn v4_repr() -> AskRequestRepr {
        AskRequestRepr {
            request_id: 1,
            filter_id: 0x1234,
            process_id: 4242,
            layer_id: 48,
            direction: Direction::Outbound,
            protocol: 6,
            default_verdict: Verdict::Block,
            timeout_ms: 30_000,
            local_address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            local_port: 50_000,
            remote_address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            remote_port: 443,
            label: Label::new("ask-browser").unwrap(),
        }
    }

    fn v6_repr() -> AskRequestRepr {
        AskRequestRepr {
            request_id: 0xfedc_ba98_7654_3210,
            filter_id: 7,
            process_id: 4,
            layer_id: 44,
            direction: Direction::Inbound,
            protocol: 17,
            default_verdict: Verdict::Permit,
            timeout_ms: ASK_TIMEOUT_MS_MAX,
            local_address: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, 2)),
            local_port: 5353,
            remote_address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            remote_port: 53,
            label: Label::EMPTY,
        }
    }

    fn fixtures() -> [(&'static [u8], AskRequestRepr); 2] {
        [(&V4_BYTES, v4_repr()), (&V6_BYTES, v6_repr())]
    }

    fn parse_mutated(bytes: &[u8], mutate: impl FnOnce(&mut [u8])) -> Result<AskRequestRepr, WireError> {
        test_util::parse_mutated::<AskRequestRepr>(bytes, mutate)
    }

    #[test]
    fn layout_constants() {
        assert_eq!(ASK_REQUEST_LEN, 136);
    }

    #[test]
    fn direction_codes() {
        for code in 0..=u8::MAX {
            match Direction::from_code(code) {
                Ok(direction) => assert_eq!(direction.code(), code),
                Err(err) => assert_eq!(err, WireError::UnknownDirection(code)),
            }
        }
        assert_eq!(Direction::from_code(1), Ok(Direction::Inbound));
    }

    #[test]
    fn deconstruct() {
        let request = AskRequest::new_checked(&V4_BYTES[..]).unwrap();
        assert_eq!(request.request_id(), 1);
        assert_eq!(request.filter_id(), 0x1234);
        assert_eq!(request.process_id(), 4242);
        assert_eq!(request.layer_id(), 48);
        assert_eq!(request.direction_code(), 0);
        assert_eq!(request.ip_version(), 4);
        assert_eq!(request.protocol(), 6);
        assert_eq!(request.default_verdict_code(), 2);
        assert_eq!(request.label_len(), 11);
        assert_eq!(request.local_port(), 50_000);
        assert_eq!(request.remote_port(), 443);
        assert_eq!(request.timeout_ms(), 30_000);
        assert_eq!(request.local_address()[..4], [192, 0, 2, 10]);
        assert_eq!(request.remote_address()[..4], [198, 51, 100, 7]);
        assert!(request.reserved_is_zero());
        assert_eq!(&request.label_slot()[..11], b"ask-browser");
        assert_eq!(request.into_inner(), &V4_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; ASK_REQUEST_LEN];
        let mut request = AskRequest::new_unchecked(&mut buf[..]);
        request.set_request_id(0xfedc_ba98_7654_3210);
        request.set_filter_id(7);
        request.set_process_id(4);
        request.set_layer_id(44);
        request.set_direction_code(1);
        request.set_ip_version(6);
        request.set_protocol(17);
        request.set_default_verdict_code(1);
        request.set_label_len(0);
        request.clear_reserved();
        request.set_local_port(5353);
        request.set_remote_port(53);
        request.set_timeout_ms(600_000);
        request.set_local_address(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, 2).octets());
        request.set_remote_address(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        request.label_slot_mut().fill(0);
        assert_eq!(buf, V6_BYTES);
    }

    #[test]
    fn parse_and_emit_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(AskRequestRepr::parse(bytes), Ok(repr));
            test_util::assert_canonical(bytes, &repr);
            test_util::emit_too_small_writes_nothing(&repr);
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_stays_ipv6() {
        let mut repr = v6_repr();
        repr.remote_address = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        let mut out = [0u8; ASK_REQUEST_LEN];
        assert_eq!(repr.emit(&mut out), Ok(ASK_REQUEST_LEN));
        assert_eq!(out[27], 6);
        assert_eq!(AskRequestRepr::parse(&out), Ok(repr));
    }

    #[cfg(feature = "std")]
    #[test]
    fn to_bytes_matches_emit() {
        for (bytes, repr) in fixtures() {
            assert_eq!(repr.to_bytes().as_slice(), bytes);
        }
    }

    // ---- Every error. ----

    #[test]
    fn error_truncated_and_length_mismatch() {
        assert_eq!(AskRequestRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(AskRequestRepr::parse(&V4_BYTES[..135]), Err(WireError::Truncated));
        let mut long = [0u8; ASK_REQUEST_LEN + 1];
        long[..ASK_REQUEST_LEN].copy_from_slice(&V4_BYTES);
        assert_eq!(AskRequestRepr::parse(&long), Err(WireError::LengthMismatch));
    }

    #[test]
    fn error_reserved_not_zero() {
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[31] = 1), Err(WireError::ReservedNotZero));
        // IPv4 address padding, local and remote.
        for at in (44..56).chain(60..72) {
            assert_eq!(parse_mutated(&V4_BYTES, |b| b[at] = 1), Err(WireError::ReservedNotZero), "byte {at}");
        }
        // Label padding.
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[135] = 1), Err(WireError::ReservedNotZero));
        assert_eq!(parse_mutated(&V6_BYTES, |b| b[72] = b'x'), Err(WireError::ReservedNotZero));
    }

    #[test]
    fn error_unknown_direction() {
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[26] = 2), Err(WireError::UnknownDirection(2)));
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[26] = 0xff), Err(WireError::UnknownDirection(0xff)));
    }

    #[test]
    fn error_unknown_ip_version() {
        for version in [0u8, 5, 41, 0xff] {
            assert_eq!(parse_mutated(&V6_BYTES, |b| b[27] = version), Err(WireError::UnknownIpVersion(version)));
        }
        // An IPv6 request relabelled as IPv4 has non-zero padding.
        assert_eq!(parse_mutated(&V6_BYTES, |b| b[27] = 4), Err(WireError::ReservedNotZero));
    }

    #[test]
    fn error_unknown_verdict() {
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[29] = 0), Err(WireError::UnknownVerdict(0)));
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[29] = 3), Err(WireError::UnknownVerdict(3)));
    }

    #[test]
    fn error_bad_timeout() {
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[36..40].fill(0)), Err(WireError::BadActionParameters));
        assert_eq!(
            parse_mutated(&V4_BYTES, |b| b[36..40].copy_from_slice(&(ASK_TIMEOUT_MS_MAX + 1).to_le_bytes())),
            Err(WireError::BadActionParameters)
        );
        assert_eq!(
            parse_mutated(&V4_BYTES, |b| b[36..40].copy_from_slice(&1u32.to_le_bytes())).map(|r| r.timeout_ms),
            Ok(1)
        );
    }

    #[test]
    fn error_label() {
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[30] = 65), Err(WireError::LabelTooLong));
        assert_eq!(parse_mutated(&V4_BYTES, |b| b[72] = 0xc3), Err(WireError::LabelNotUtf8));
    }

    #[test]
    fn error_order() {
        // Reserved, direction, version, address padding, verdict, timeout,
        // label: each fix uncovers the next error.
        let mut buf = V4_BYTES;
        buf[31] = 1;
        buf[26] = 9;
        buf[27] = 9;
        buf[50] = 1;
        buf[29] = 9;
        buf[36..40].fill(0);
        buf[30] = 99;
        assert_eq!(AskRequestRepr::parse(&buf), Err(WireError::ReservedNotZero));
        type Step = (fn(&mut [u8]), Result<(), WireError>);
        let steps: [Step; 7] = [
            (|b| b[31] = 0, Err(WireError::UnknownDirection(9))),
            (|b| b[26] = 0, Err(WireError::UnknownIpVersion(9))),
            (|b| b[27] = 4, Err(WireError::ReservedNotZero)),
            (|b| b[50] = 0, Err(WireError::UnknownVerdict(9))),
            (|b| b[29] = 2, Err(WireError::BadActionParameters)),
            (|b| b[36..40].copy_from_slice(&30_000u32.to_le_bytes()), Err(WireError::LabelTooLong)),
            (|b| b[30] = 11, Ok(())),
        ];
        for (fix, expected) in steps {
            fix(&mut buf);
            assert_eq!(AskRequestRepr::parse(&buf).map(|_| ()), expected);
        }
        assert_eq!(buf, V4_BYTES);
    }

    #[test]
    fn emit_refuses_what_parse_would() {
        let mut mixed = v4_repr();
        mixed.remote_address = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(mixed.ip_version(), Err(WireError::AddressFamilyMismatch));
        let mut out = [0xa5u8; ASK_REQUEST_LEN];
        assert_eq!(mixed.emit(&mut out), Err(WireError::AddressFamilyMismatch));
        let mut slow = v4_repr();
        slow.timeout_ms = 0;
        assert_eq!(slow.emit(&mut out), Err(WireError::BadActionParameters));
        assert!(out.iter().all(|&b| b == 0xa5));
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_bytes_of_every_length() {
        test_util::random_bytes_of_every_length::<AskRequestRepr>(0xa076_1d64_78bd_642f, &[]);
    }

    #[test]
    fn random_plausible_requests() {
        let mut rng = test_util::XorShift(0xe703_7ed1_a0b4_28db);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut buf = [0u8; ASK_REQUEST_LEN];
            rng.fill(&mut buf);
            let label_len = rng.below(LABEL_MAX_LEN + 4);
            let v4 = rng.next_u8().is_multiple_of(2);
            let mut request = AskRequest::new_unchecked(&mut buf[..]);
            request.clear_reserved();
            request.set_direction_code(rng.next_u8() % 3);
            request.set_ip_version(if v4 { 4 } else { 6 });
            if v4 {
                let mut local = [0u8; 16];
                let mut remote = [0u8; 16];
                rng.fill(&mut local[..4]);
                rng.fill(&mut remote[..4]);
                request.set_local_address(local);
                request.set_remote_address(remote);
            }
            request.set_default_verdict_code(rng.next_u8() % 3);
            request.set_timeout_ms(u32::from(rng.next_u8()) * 3_000);
            request.set_label_len(u8::try_from(label_len).unwrap());
            for (i, b) in request.label_slot_mut().iter_mut().enumerate() {
                *b = if i < label_len { b'a' + rng.next_u8() % 26 } else { 0 };
            }
            if test_util::check_any::<AskRequestRepr>(&buf) {
                accepted += 1;
            }
        }
        assert!(accepted > 1_000, "only {accepted} accepted");
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        for (bytes, repr) in fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0x8ebc_6af0_9c88_c6e3);
        }
    }

    #[test]
    fn mutated_fixtures() {
        for (bytes, _) in fixtures() {
            assert!(test_util::mutated::<AskRequestRepr>(bytes, 0x5899_65cc_7537_4cc3) > 0);
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        for len in 0..ASK_REQUEST_LEN {
            let mut buf = V4_BYTES;
            let mut request = AskRequest::new_unchecked(&mut buf[..len]);
            let _ = (
                request.request_id(),
                request.filter_id(),
                request.process_id(),
                request.layer_id(),
                request.direction_code(),
                request.ip_version(),
                request.protocol(),
                request.default_verdict_code(),
                request.label_len(),
                request.local_port(),
                request.remote_port(),
                request.timeout_ms(),
                request.local_address(),
                request.remote_address(),
                request.reserved_is_zero(),
            );
            assert!(request.label_slot().is_empty());
            request.set_request_id(1);
            request.set_filter_id(1);
            request.set_process_id(1);
            request.set_layer_id(1);
            request.set_direction_code(1);
            request.set_ip_version(1);
            request.set_protocol(1);
            request.set_default_verdict_code(1);
            request.set_label_len(1);
            request.set_local_port(1);
            request.set_remote_port(1);
            request.set_timeout_ms(1);
            request.set_local_address([1; 16]);
            request.set_remote_address([1; 16]);
            request.clear_reserved();
            assert!(request.label_slot_mut().is_empty());
            assert_eq!(request.check_len(), Err(WireError::Truncated));
        }
    }
}
