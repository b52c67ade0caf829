//! The control device protocol: the IOCTL codes user-mode tools send to the
//! driver's control device, and the version of the buffers they carry.
//!
//! Every IOCTL uses `METHOD_BUFFERED`, so the I/O manager copies the input
//! into a kernel buffer before the driver looks at it, and the driver decodes
//! that copy with the strict parsers of this crate. All integers in every
//! buffer are little-endian.
//!
//! | IOCTL                                  | Value         | Function | Access      | Input                          | Output                                 |
//! |----------------------------------------|---------------|---------:|-------------|--------------------------------|----------------------------------------|
//! | [`IOCTL_WFPCALLOUT_GET_VERSION`]       | `0x0012_6000` | `0x800`  | read        | none                           | [`VersionInfo`], 16 bytes              |
//! | [`IOCTL_WFPCALLOUT_GET_STATS`]         | `0x0012_6004` | `0x801`  | read        | [`StatsQuery`], 16 bytes       | [`StatsReply`], `240 + returned × 168` |
//! | [`IOCTL_WFPCALLOUT_AGENT_GET_REQUEST`] | `0x0012_E040` | `0x810`  | read, write | none                           | [`AskRequest`], 136 bytes              |
//! | [`IOCTL_WFPCALLOUT_AGENT_SET_VERDICT`] | `0x0012_E044` | `0x811`  | read, write | [`VerdictMessage`], 16 bytes   | none                                   |
//!
//! [`VersionInfo`]: crate::VersionInfo
//! [`StatsQuery`]: crate::StatsQuery
//! [`StatsReply`]: crate::StatsReply
//! [`AskRequest`]: crate::AskRequest
//! [`VerdictMessage`]: crate::VerdictMessage
//!
//! The codes follow the Windows `CTL_CODE` layout ([`ctl_code`]) with device
//! type [`FILE_DEVICE_NETWORK`]; functions `0x800` and up are the range
//! Microsoft leaves to vendors. The agent IOCTLs require write access as
//! well, so that a handle opened only for queries cannot answer for the
//! agent.
//!
//! [`CONTROL_ABI_VERSION`] names this set of codes and layouts as a whole. A
//! tool reads it first through `GET_VERSION`, whose layout never changes,
//! and refuses to talk to a driver of another version.

/// `FILE_DEVICE_NETWORK`: the device type of the control device.
pub const FILE_DEVICE_NETWORK: u32 = 0x12;

/// `METHOD_BUFFERED`: the I/O manager copies both buffers through a kernel
/// buffer.
pub const METHOD_BUFFERED: u32 = 0;

/// `FILE_READ_ACCESS`: the caller's handle must allow reading.
pub const FILE_READ_ACCESS: u32 = 1;

/// `FILE_WRITE_ACCESS`: the caller's handle must allow writing.
pub const FILE_WRITE_ACCESS: u32 = 2;

/// The version of the control protocol as a whole (codes and buffer
/// layouts), reported by [`IOCTL_WFPCALLOUT_GET_VERSION`].
pub const CONTROL_ABI_VERSION: u32 = 2;

/// Builds an I/O control code, as the Windows `CTL_CODE` macro does:
/// `(device_type << 16) | (access << 14) | (function << 2) | method`.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// Reports the driver's version and state: no input, a
/// [`VersionInfo`](crate::VersionInfo) as output.
pub const IOCTL_WFPCALLOUT_GET_VERSION: u32 = ctl_code(FILE_DEVICE_NETWORK, 0x800, METHOD_BUFFERED, FILE_READ_ACCESS);

/// Reads the global counters and one page of per-filter counters: a
/// [`StatsQuery`](crate::StatsQuery) as input, a
/// [`StatsReply`](crate::StatsReply) as output.
pub const IOCTL_WFPCALLOUT_GET_STATS: u32 = ctl_code(FILE_DEVICE_NETWORK, 0x801, METHOD_BUFFERED, FILE_READ_ACCESS);

/// Sets the most verbose level the driver's debug output prints: a
/// [`LogGate`](crate::LogGate) as input, no output. Writing access, like
/// every IOCTL that changes the driver's behaviour.
pub const IOCTL_WFPCALLOUT_SET_LOG_LEVEL: u32 =
    ctl_code(FILE_DEVICE_NETWORK, 0x802, METHOD_BUFFERED, FILE_READ_ACCESS | FILE_WRITE_ACCESS);

/// Takes the next pended connection the agent must decide on: no input, an
/// [`AskRequest`](crate::AskRequest) as output.
pub const IOCTL_WFPCALLOUT_AGENT_GET_REQUEST: u32 =
    ctl_code(FILE_DEVICE_NETWORK, 0x810, METHOD_BUFFERED, FILE_READ_ACCESS | FILE_WRITE_ACCESS);

/// Answers a pended connection: a [`VerdictMessage`](crate::VerdictMessage)
/// as input, no output.
pub const IOCTL_WFPCALLOUT_AGENT_SET_VERDICT: u32 =
    ctl_code(FILE_DEVICE_NETWORK, 0x811, METHOD_BUFFERED, FILE_READ_ACCESS | FILE_WRITE_ACCESS);

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::FUZZ_MAX_LEN;
    use crate::{
        AskRequestRepr, FilterStatsEntryRepr, StatsHeaderRepr, StatsQueryRepr, StatsReply, VerdictMessageRepr,
        VersionInfoRepr, WireError,
    };

    #[test]
    fn ioctl_values() {
        assert_eq!(IOCTL_WFPCALLOUT_GET_VERSION, 0x0012_6000);
        assert_eq!(IOCTL_WFPCALLOUT_GET_STATS, 0x0012_6004);
        assert_eq!(IOCTL_WFPCALLOUT_AGENT_GET_REQUEST, 0x0012_E040);
        assert_eq!(IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, 0x0012_E044);
        assert_eq!(CONTROL_ABI_VERSION, 2);
    }

    #[test]
    fn ctl_code_matches_the_windows_macro() {
        // Known Windows codes: IOCTL_DISK_GET_DRIVE_GEOMETRY and
        // FSCTL_GET_REPARSE_POINT.
        assert_eq!(ctl_code(0x07, 0, METHOD_BUFFERED, 0), 0x0007_0000);
        assert_eq!(ctl_code(0x09, 42, 0, 0), 0x0009_00a8);
        // Each part lands in its own bits.
        assert_eq!(ctl_code(0, 0, 3, 0), 3);
        assert_eq!(ctl_code(0, 0xfff, 0, 0), 0x3ffc);
        assert_eq!(ctl_code(0, 0, 0, 3), 0xc000);
        assert_eq!(ctl_code(0xffff, 0, 0, 0), 0xffff_0000);
    }

    #[test]
    fn codes_are_distinct() {
        let codes = [
            IOCTL_WFPCALLOUT_GET_VERSION,
            IOCTL_WFPCALLOUT_GET_STATS,
            IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
            IOCTL_WFPCALLOUT_AGENT_SET_VERDICT,
        ];
        for (i, a) in codes.iter().enumerate() {
            // All buffered, all of our device type.
            assert_eq!(a & 3, METHOD_BUFFERED);
            assert_eq!(a >> 16, FILE_DEVICE_NETWORK);
            for b in codes.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    /// Which of the errors added for the control formats a given error is;
    /// the match is exhaustive, so a new variant must be placed here.
    fn control_slot(err: WireError) -> Option<usize> {
        match err {
            WireError::UnknownFlags(_) => Some(0),
            WireError::ValueOutOfRange => Some(1),
            WireError::UnknownOrigin(_) => Some(2),
            WireError::UnknownDirection(_) => Some(3),
            WireError::UnknownIpVersion(_) => Some(4),
            WireError::EntriesOutOfOrder => Some(5),
            WireError::AddressFamilyMismatch => Some(6),
            // The policy blob's own errors, produced by its tests (and by the
            // control formats' tests where they apply).
            WireError::Truncated
            | WireError::LengthMismatch
            | WireError::BadMagic
            | WireError::UnsupportedVersion(_)
            | WireError::UnknownAction(_)
            | WireError::BadActionParameters
            | WireError::UnknownLogLevel(_)
            | WireError::UnknownVerdict(_)
            | WireError::LabelTooLong
            | WireError::LabelNotUtf8
            | WireError::LabelControlCharacter(_)
            | WireError::ReservedNotZero
            | WireError::BufferTooSmall => None,
        }
    }

    #[test]
    fn every_control_error_is_reachable() {
        let mut version = [0u8; 16];
        version[..4].copy_from_slice(b"WFPV");
        version[12] = 0x80;

        let mut entry = [0u8; 168];
        entry[10] = 9;

        let mut ask = [0u8; 136];
        ask[26] = 7;
        let mut ask_v5 = [0u8; 136];
        ask_v5[27] = 5;
        let mut ask_repr = crate::ask_request::tests::v4_repr();
        ask_repr.remote_address = core::net::IpAddr::V6(core::net::Ipv6Addr::LOCALHOST);

        let mut reply = [0u8; FUZZ_MAX_LEN];
        let header = StatsHeaderRepr { returned: 2, ..StatsHeaderRepr::default() };
        let first = FilterStatsEntryRepr { filter_id: 9, ..FilterStatsEntryRepr::default() };
        let second = FilterStatsEntryRepr { filter_id: 3, ..FilterStatsEntryRepr::default() };
        let len = StatsReply::emit_header(&header, &mut reply).unwrap();
        StatsReply::emit_entry(0, &first, &mut reply).unwrap();
        StatsReply::emit_entry(1, &second, &mut reply).unwrap();
        let out_of_order = StatsReply::parse(&reply[..len]).unwrap().entries().find_map(Result::err);

        let produced = [
            VersionInfoRepr::parse(&version).err(),
            StatsQueryRepr::parse(&[0u8; 16]).err(),
            FilterStatsEntryRepr::parse(&entry).err(),
            AskRequestRepr::parse(&ask).err(),
            AskRequestRepr::parse(&ask_v5).err(),
            out_of_order,
            ask_repr.emit(&mut [0u8; 136]).err(),
        ];
        let mut seen = [false; 7];
        for err in produced {
            if let Some(slot) = control_slot(err.unwrap()) {
                seen[slot] = true;
            }
        }
        assert_eq!(seen, [true; 7]);
        // The verdict message has no error of its own beyond the shared ones.
        assert_eq!(VerdictMessageRepr::parse(&[0u8; 16]), Err(WireError::UnknownVerdict(0)));
    }
}
