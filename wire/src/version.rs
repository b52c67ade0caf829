//! The answer to [`IOCTL_WFPCALLOUT_GET_VERSION`](crate::IOCTL_WFPCALLOUT_GET_VERSION):
//! which protocol the driver speaks, which build it is and what state it is
//! in.
//!
//! [`VersionInfo`] is a checked view over the raw bytes; [`VersionInfoRepr`]
//! is the decoded meaning.
//!
//! # Layout
//!
//! All integers are little-endian; the buffer is exactly
//! [`VERSION_INFO_LEN`] (16) bytes. This layout is the same in every
//! protocol version, so that a tool can always learn which one the driver
//! speaks.
//!
//! | Offset | Size | Field            | Contents                                                              |
//! |-------:|-----:|------------------|-----------------------------------------------------------------------|
//! | 0      | 4    | `magic`          | `b"WFPV"` ([`VERSION_INFO_MAGIC`])                                     |
//! | 4      | 4    | `abi_version`    | `u32`: the driver's [`CONTROL_ABI_VERSION`](crate::CONTROL_ABI_VERSION) |
//! | 8      | 4    | `driver_version` | `u32`: `major << 16 \| minor << 8 \| patch` ([`driver_version`])        |
//! | 12     | 4    | `flags`          | `u32`: bit 0 [`VERSION_FLAG_LOADED`], bit 1 [`VERSION_FLAG_ADOPTION_COMPLETE`], bit 2 [`VERSION_FLAG_AGENT_CONNECTED`]; other bits must be `0` |
//!
//! Checks run in this order, and the first failure is reported: magic
//! ([`WireError::BadMagic`], or [`WireError::Truncated`] before it), exact
//! length, flags ([`WireError::UnknownFlags`]). The ABI version is not
//! checked by [`VersionInfoRepr::parse`]: comparing it with
//! [`CONTROL_ABI_VERSION`](crate::CONTROL_ABI_VERSION) is the tool's
//! decision. A tool that wants to name the driver's ABI version even when
//! the flags are unknown (a newer driver) reads
//! [`VersionInfo::abi_version`] from the checked view first.

use crate::WireError;
use crate::bytes::{array_at, check_exact_len, set_bytes, set_u32, u32_at};

/// Magic bytes opening the version reply.
pub const VERSION_INFO_MAGIC: [u8; 4] = *b"WFPV";

/// Length of the version reply.
pub const VERSION_INFO_LEN: usize = 16;

/// The driver has registered its callouts and is classifying traffic.
pub const VERSION_FLAG_LOADED: u32 = 1;

/// Filters that existed before the driver loaded have all been adopted.
pub const VERSION_FLAG_ADOPTION_COMPLETE: u32 = 2;

/// A user-mode agent is waiting for ask requests.
pub const VERSION_FLAG_AGENT_CONNECTED: u32 = 4;

/// Every assigned flag bit; any other bit is refused.
pub const VERSION_FLAGS_KNOWN: u32 =
    VERSION_FLAG_LOADED | VERSION_FLAG_ADOPTION_COMPLETE | VERSION_FLAG_AGENT_CONNECTED;

/// Packs a driver version as the `driver_version` field carries it:
/// `major << 16 | minor << 8 | patch`.
pub const fn driver_version(major: u16, minor: u8, patch: u8) -> u32 {
    ((major as u32) << 16) | ((minor as u32) << 8) | patch as u32
}

/// Byte positions of the fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const ABI_VERSION: Range<usize> = 4..8;
    pub(super) const DRIVER_VERSION: Range<usize> = 8..12;
    pub(super) const FLAGS: Range<usize> = 12..16;
}

const _: () = assert!(field::FLAGS.end == VERSION_INFO_LEN);

/// A view over the bytes of a version reply.
///
/// Build it with [`VersionInfo::new_checked`] for untrusted input; after
/// that every accessor reads inside the buffer. No accessor or setter can
/// panic: on a view made with [`VersionInfo::new_unchecked`] over a short
/// buffer, reads of absent bytes return zero and writes to them are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VersionInfo<T> {
    /// Wraps a buffer without any check.
    pub const fn new_unchecked(buffer: T) -> VersionInfo<T> {
        VersionInfo { buffer }
    }

    /// Wraps a buffer after [`check_identity`](Self::check_identity) and
    /// [`check_len`](Self::check_len) pass.
    pub fn new_checked(buffer: T) -> Result<VersionInfo<T>, WireError> {
        let info = VersionInfo::new_unchecked(buffer);
        info.check_identity()?;
        info.check_len()?;
        Ok(info)
    }

    /// Checks the magic: [`WireError::Truncated`] if the buffer ends before
    /// it, [`WireError::BadMagic`] if it is wrong.
    pub fn check_identity(&self) -> Result<(), WireError> {
        let magic = self.buffer.as_ref().get(field::MAGIC).ok_or(WireError::Truncated)?;
        if magic != VERSION_INFO_MAGIC {
            return Err(WireError::BadMagic);
        }
        Ok(())
    }

    /// Checks that the buffer is exactly [`VERSION_INFO_LEN`] bytes:
    /// [`WireError::Truncated`] if shorter, [`WireError::LengthMismatch`] if
    /// longer.
    pub fn check_len(&self) -> Result<(), WireError> {
        check_exact_len(self.buffer.as_ref().len(), VERSION_INFO_LEN)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), field::MAGIC)
    }

    /// The driver's control protocol version.
    pub fn abi_version(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ABI_VERSION)
    }

    /// The packed driver version.
    pub fn driver_version(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::DRIVER_VERSION)
    }

    /// The raw flags.
    pub fn flags(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::FLAGS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VersionInfo<T> {
    /// Sets the magic bytes.
    pub fn set_magic(&mut self, value: [u8; 4]) {
        set_bytes(self.buffer.as_mut(), field::MAGIC, &value);
    }

    /// Sets the control protocol version.
    pub fn set_abi_version(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ABI_VERSION, value);
    }

    /// Sets the packed driver version.
    pub fn set_driver_version(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::DRIVER_VERSION, value);
    }

    /// Sets the raw flags.
    pub fn set_flags(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::FLAGS, value);
    }
}

/// A decoded, valid version reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionInfoRepr {
    /// The driver's control protocol version; a tool compares it with
    /// [`CONTROL_ABI_VERSION`](crate::CONTROL_ABI_VERSION).
    pub abi_version: u32,
    /// The driver build, packed by [`driver_version`].
    pub driver_version: u32,
    /// `VERSION_FLAG_*` bits; only [`VERSION_FLAGS_KNOWN`] may be set.
    pub flags: u32,
}

impl VersionInfoRepr {
    /// Decodes a version reply, strictly: exactly [`VERSION_INFO_LEN`]
    /// bytes, the right magic, no unknown flag bits.
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<VersionInfoRepr, WireError> {
        let info = VersionInfo::new_checked(bytes)?;
        let flags = info.flags();
        check_flags(flags)?;
        Ok(VersionInfoRepr { abi_version: info.abi_version(), driver_version: info.driver_version(), flags })
    }

    /// Length of the encoding: always [`VERSION_INFO_LEN`].
    pub const fn buffer_len(&self) -> usize {
        VERSION_INFO_LEN
    }

    /// Encodes the reply into the first [`VERSION_INFO_LEN`] bytes of `out`,
    /// leaving the rest untouched, and returns that length.
    ///
    /// Returns [`WireError::UnknownFlags`] if unassigned flag bits are set
    /// (so that nothing `parse` would refuse is written) and
    /// [`WireError::BufferTooSmall`] if `out` is too short; in both cases
    /// `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        check_flags(self.flags)?;
        let dst = out.get_mut(..VERSION_INFO_LEN).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut VersionInfo::new_unchecked(dst));
        Ok(VERSION_INFO_LEN)
    }

    /// Encodes the reply into a new vector. Writes the flags as given, even
    /// unknown bits (which `parse` will refuse).
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; VERSION_INFO_LEN];
        self.write(&mut VersionInfo::new_unchecked(out.as_mut_slice()));
        out
    }

    /// Whether every bit of `flag` is set.
    pub const fn has_flag(&self, flag: u32) -> bool {
        flag != 0 && self.flags & flag == flag
    }

    /// The major part of the driver version.
    pub const fn driver_major(&self) -> u16 {
        (self.driver_version >> 16) as u16
    }

    /// The minor part of the driver version.
    pub const fn driver_minor(&self) -> u8 {
        (self.driver_version >> 8) as u8
    }

    /// The patch part of the driver version.
    pub const fn driver_patch(&self) -> u8 {
        self.driver_version as u8
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, info: &mut VersionInfo<T>) {
        info.set_magic(VERSION_INFO_MAGIC);
        info.set_abi_version(self.abi_version);
        info.set_driver_version(self.driver_version);
        info.set_flags(self.flags);
    }
}

/// Refuses unassigned flag bits, naming them.
fn check_flags(flags: u32) -> Result<(), WireError> {
    match flags & !VERSION_FLAGS_KNOWN {
        0 => Ok(()),
        unknown => Err(WireError::UnknownFlags(unknown)),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::CONTROL_ABI_VERSION;
    use crate::test_util::{self, FixedFormat};

    impl FixedFormat for VersionInfoRepr {
        const LEN: usize = VERSION_INFO_LEN;
        fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
            VersionInfoRepr::parse(bytes)
        }
        fn emit_bytes(&self, out: &mut [u8]) -> Result<usize, WireError> {
            self.emit(out)
        }
        fn len(&self) -> usize {
            self.buffer_len()
        }
    }

    /// ABI 2, driver 1.2.3, loaded and adoption complete.
    static LOADED_BYTES: [u8; 16] = [
        b'W', b'F', b'P', b'V', // magic
        0x02, 0x00, 0x00, 0x00, // abi_version = 2
        0x03, 0x02, 0x01, 0x00, // driver_version = 1.2.3
        0x03, 0x00, 0x00, 0x00, // flags = LOADED | ADOPTION_COMPLETE
    ];

    /// ABI 2, driver 258.255.0, every flag.
    static ALL_FLAGS_BYTES: [u8; 16] = [
        b'W', b'F', b'P', b'V', // magic
        0x02, 0x00, 0x00, 0x00, // abi_version = 2
        0x00, 0xff, 0x02, 0x01, // driver_version = 258.255.0
        0x07, 0x00, 0x00, 0x00, // flags = all three
    ];

    /// Unloaded: ABI 2, driver 0.1.0, no flags.
    static UNLOADED_BYTES: [u8; 16] = [
        b'W', b'F', b'P', b'V', // magic
        0x02, 0x00, 0x00, 0x00, // abi_version = 2
        0x00, 0x01, 0x00, 0x00, // driver_version = 0.1.0
        0x00, 0x00, 0x00, 0x00, // flags
    ];

    fn fixtures() -> [(&'static [u8], VersionInfoRepr); 3] {
        [
            (
                &LOADED_BYTES,
                VersionInfoRepr {
                    abi_version: CONTROL_ABI_VERSION,
                    driver_version: driver_version(1, 2, 3),
                    flags: VERSION_FLAG_LOADED | VERSION_FLAG_ADOPTION_COMPLETE,
                },
            ),
            (
                &ALL_FLAGS_BYTES,
                VersionInfoRepr {
                    abi_version: CONTROL_ABI_VERSION,
                    driver_version: driver_version(258, 255, 0),
                    flags: VERSION_FLAGS_KNOWN,
                },
            ),
            (
                &UNLOADED_BYTES,
                VersionInfoRepr { abi_version: CONTROL_ABI_VERSION, driver_version: driver_version(0, 1, 0), flags: 0 },
            ),
        ]
    }

    #[test]
    fn layout_constants() {
        assert_eq!(VERSION_INFO_LEN, 16);
        assert_eq!(&VERSION_INFO_MAGIC, b"WFPV");
        assert_eq!(VERSION_FLAG_LOADED, 1);
        assert_eq!(VERSION_FLAG_ADOPTION_COMPLETE, 2);
        assert_eq!(VERSION_FLAG_AGENT_CONNECTED, 4);
        assert_eq!(VERSION_FLAGS_KNOWN, 7);
        assert_eq!(driver_version(1, 2, 3), 0x0001_0203);
        assert_eq!(driver_version(u16::MAX, u8::MAX, u8::MAX), u32::MAX);
    }

    #[test]
    fn deconstruct() {
        let info = VersionInfo::new_checked(&LOADED_BYTES[..]).unwrap();
        assert_eq!(info.magic(), VERSION_INFO_MAGIC);
        assert_eq!(info.abi_version(), 2);
        assert_eq!(info.driver_version(), 0x0001_0203);
        assert_eq!(info.flags(), 3);
        assert_eq!(info.into_inner(), &LOADED_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut buf = [0xa5u8; 16];
        let mut info = VersionInfo::new_unchecked(&mut buf[..]);
        info.set_magic(VERSION_INFO_MAGIC);
        info.set_abi_version(2);
        info.set_driver_version(0x0102_ff00);
        info.set_flags(7);
        assert_eq!(buf, ALL_FLAGS_BYTES);
    }

    #[test]
    fn parse_and_emit_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(VersionInfoRepr::parse(bytes), Ok(repr));
            test_util::assert_canonical(bytes, &repr);
            test_util::emit_too_small_writes_nothing(&repr);
        }
    }

    #[test]
    fn repr_helpers() {
        let (_, repr) = fixtures()[0];
        assert_eq!((repr.driver_major(), repr.driver_minor(), repr.driver_patch()), (1, 2, 3));
        assert!(repr.has_flag(VERSION_FLAG_LOADED));
        assert!(repr.has_flag(VERSION_FLAG_ADOPTION_COMPLETE));
        assert!(!repr.has_flag(VERSION_FLAG_AGENT_CONNECTED));
        assert!(!repr.has_flag(VERSION_FLAG_LOADED | VERSION_FLAG_AGENT_CONNECTED));
        assert!(!repr.has_flag(0));
        assert_eq!(repr.buffer_len(), VERSION_INFO_LEN);
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
    fn error_truncated() {
        assert_eq!(VersionInfoRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(VersionInfoRepr::parse(b"WFP"), Err(WireError::Truncated));
        assert_eq!(VersionInfoRepr::parse(&LOADED_BYTES[..15]), Err(WireError::Truncated));
    }

    #[test]
    fn error_length_mismatch() {
        let mut buf = [0u8; 17];
        buf[..16].copy_from_slice(&LOADED_BYTES);
        assert_eq!(VersionInfoRepr::parse(&buf), Err(WireError::LengthMismatch));
    }

    #[test]
    fn error_bad_magic() {
        assert_eq!(
            test_util::parse_mutated::<VersionInfoRepr>(&LOADED_BYTES, |b| b[3] = b'C'),
            Err(WireError::BadMagic)
        );
        assert_eq!(VersionInfoRepr::parse(&[0u8; 16]), Err(WireError::BadMagic));
        // The magic is checked before the length.
        assert_eq!(VersionInfoRepr::parse(b"WFPC"), Err(WireError::BadMagic));
    }

    #[test]
    fn error_unknown_flags() {
        for bit in 3..32 {
            let flags = 1u32 << bit;
            let got = test_util::parse_mutated::<VersionInfoRepr>(&ALL_FLAGS_BYTES, |b| {
                b[12..16].copy_from_slice(&(flags | 7).to_le_bytes());
            });
            assert_eq!(got, Err(WireError::UnknownFlags(flags)), "bit {bit}");
        }
        assert_eq!(
            test_util::parse_mutated::<VersionInfoRepr>(&LOADED_BYTES, |b| b[12..16].fill(0xff)),
            Err(WireError::UnknownFlags(!7))
        );
        // But the view still shows the ABI version, for an error message.
        let mut newer = LOADED_BYTES;
        newer[4] = 2;
        newer[12] = 0x0b;
        assert_eq!(VersionInfo::new_checked(&newer[..]).map(|v| v.abi_version()), Ok(2));
    }

    #[test]
    fn emit_refuses_unknown_flags() {
        let repr = VersionInfoRepr { abi_version: 1, driver_version: 0, flags: 8 };
        let mut out = [0xa5u8; 16];
        assert_eq!(repr.emit(&mut out), Err(WireError::UnknownFlags(8)));
        assert_eq!(out, [0xa5; 16]);
    }

    // ---- Garbage and impossible lengths. ----

    #[test]
    fn random_bytes_of_every_length() {
        test_util::random_bytes_of_every_length::<VersionInfoRepr>(0x9e37_79b9_7f4a_7c15, &VERSION_INFO_MAGIC);
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        for (bytes, repr) in fixtures() {
            test_util::truncated_and_extended(bytes, repr, 0xdead_beef_cafe_f00d);
        }
    }

    #[test]
    fn mutated_fixtures() {
        for (bytes, _) in fixtures() {
            assert!(test_util::mutated::<VersionInfoRepr>(bytes, 0x5151_5151_5151_5151) > 0);
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        for len in 0..VERSION_INFO_LEN {
            let mut buf = LOADED_BYTES;
            let mut info = VersionInfo::new_unchecked(&mut buf[..len]);
            let _ = (info.magic(), info.abi_version(), info.driver_version(), info.flags());
            info.set_magic(VERSION_INFO_MAGIC);
            info.set_abi_version(9);
            info.set_driver_version(9);
            info.set_flags(9);
            assert!(info.check_len().is_err());
        }
        let empty = VersionInfo::new_unchecked(&[][..]);
        assert_eq!(empty.flags(), 0);
        assert_eq!(empty.check_identity(), Err(WireError::Truncated));
    }
}
