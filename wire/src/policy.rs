//! The policy blob: the bytes a user-mode tool stores in a filter's provider
//! context (the data buffer of an `FWPM_GENERAL_CONTEXT`), and that the
//! driver decodes in its notifyFn at up to DISPATCH_LEVEL.
//!
//! [`PolicyBlob`] is a checked view over the raw bytes; [`PolicyRepr`] is
//! the decoded meaning. Decoding is strict so that exactly one byte string
//! encodes each policy: whatever [`PolicyRepr::parse`] accepts,
//! [`PolicyRepr::emit`] writes back byte for byte.
//!
//! # Layout (version 1)
//!
//! All integers are little-endian. The header is [`POLICY_HEADER_LEN`]
//! (24) bytes, followed by the label; the whole blob is at most
//! [`POLICY_MAX_LEN`] (88) bytes.
//!
//! | Offset | Size | Field       | Contents                                                              |
//! |-------:|-----:|-------------|-----------------------------------------------------------------------|
//! | 0      | 4    | `magic`     | `b"WFPC"` ([`POLICY_MAGIC`])                                           |
//! | 4      | 1    | `version`   | `1` ([`POLICY_VERSION`])                                               |
//! | 5      | 1    | reserved    | must be `0`                                                           |
//! | 6      | 2    | `total_len` | `u16`: length of the whole blob, `24 + label_len`, and of the buffer  |
//! | 8      | 1    | `action`    | `0` Permit, `1` Block, `2` Audit, `3` RateLimit, `4` Ask               |
//! | 9      | 1    | `log_level` | `0` Off, `1` Error, `2` Warning, `3` Info, `4` Trace                   |
//! | 10     | 1    | `verdict`   | Ask: default verdict, `1` Permit, `2` Block; other actions: `0`       |
//! | 11     | 1    | `label_len` | label length in bytes, `0..=64`                                       |
//! | 12     | 4    | `param_a`   | `u32`: RateLimit `rate_per_sec`; Ask `timeout_ms`; others `0`         |
//! | 16     | 4    | `param_b`   | `u32`: RateLimit `burst`; others `0`                                  |
//! | 20     | 4    | reserved    | must be `0`                                                           |
//! | 24     | n    | `label`     | `label_len` bytes of UTF-8, no control characters                     |
//!
//! Parameter ranges: RateLimit `rate_per_sec` and `burst` in `1..=1_000_000`;
//! Ask `timeout_ms` in `1..=600_000`. A parameter slot or verdict byte that
//! the action does not use must be zero ([`WireError::BadActionParameters`]).
//!
//! Checks run in this order, and the first failure is reported: magic and
//! version (the rest of the layout is only known for version 1), buffer
//! length against the header and against `total_len`, `total_len` against
//! `label_len`, reserved bytes, action, log level, label.

use core::ops::Range;

use crate::label::LABEL_MAX_LEN;
use crate::{Label, LogLevel, PolicyAction, WireError};

/// Magic bytes opening every policy blob, so that a provider context written
/// by someone else is refused rather than misread.
pub const POLICY_MAGIC: [u8; 4] = *b"WFPC";

/// The only layout version this crate reads and writes.
pub const POLICY_VERSION: u8 = 1;

/// Length of the fixed header, which a blob with an empty label is made of.
pub const POLICY_HEADER_LEN: usize = field::LABEL;

/// Length of the largest valid blob: the header plus a full-length label.
pub const POLICY_MAX_LEN: usize = POLICY_HEADER_LEN + LABEL_MAX_LEN;

// `total_len` is a `u16`.
const _: () = assert!(POLICY_MAX_LEN <= u16::MAX as usize);

/// Byte positions of the header fields (see the module documentation).
mod field {
    use core::ops::Range;

    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const VERSION: usize = 4;
    pub(super) const RESERVED_0: usize = 5;
    pub(super) const TOTAL_LEN: Range<usize> = 6..8;
    pub(super) const ACTION: usize = 8;
    pub(super) const LOG_LEVEL: usize = 9;
    pub(super) const VERDICT: usize = 10;
    pub(super) const LABEL_LEN: usize = 11;
    pub(super) const PARAM_A: Range<usize> = 12..16;
    pub(super) const PARAM_B: Range<usize> = 16..20;
    pub(super) const RESERVED_1: Range<usize> = 20..24;
    pub(super) const LABEL: usize = 24;
}

/// A view over the bytes of a policy blob.
///
/// Build it with [`PolicyBlob::new_checked`] for untrusted input. After that
/// succeeds, every field accessor reads inside the buffer. No accessor or
/// setter can panic at all: on a view made with
/// [`PolicyBlob::new_unchecked`] over a short buffer, reads of absent bytes
/// return zero (or an empty label) and writes to them are dropped.
///
/// The view only checks structure; meaning (codes, ranges, UTF-8, reserved
/// bytes) is checked by [`PolicyRepr::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyBlob<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PolicyBlob<T> {
    /// Wraps a buffer without any check, for building a blob in place or
    /// for inspecting a rejected one.
    pub const fn new_unchecked(buffer: T) -> PolicyBlob<T> {
        PolicyBlob { buffer }
    }

    /// Wraps a buffer after [`check_identity`](Self::check_identity) and
    /// [`check_len`](Self::check_len) pass.
    pub fn new_checked(buffer: T) -> Result<PolicyBlob<T>, WireError> {
        let blob = PolicyBlob::new_unchecked(buffer);
        blob.check_identity()?;
        blob.check_len()?;
        Ok(blob)
    }

    /// Checks the magic and the version, which say how to read the rest.
    ///
    /// Returns [`WireError::Truncated`] if the buffer ends before them,
    /// [`WireError::BadMagic`] or [`WireError::UnsupportedVersion`].
    pub fn check_identity(&self) -> Result<(), WireError> {
        let bytes = self.buffer.as_ref();
        let magic = bytes.get(field::MAGIC).ok_or(WireError::Truncated)?;
        if magic != POLICY_MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = *bytes.get(field::VERSION).ok_or(WireError::Truncated)?;
        if version != POLICY_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        Ok(())
    }

    /// Checks the buffer length against the header and the length fields
    /// inside it: the buffer must hold the header, be exactly `total_len`
    /// bytes long, and `total_len` must equal the header plus `label_len`.
    ///
    /// Returns [`WireError::Truncated`] if the buffer is shorter than the
    /// header or than `total_len`, otherwise [`WireError::LengthMismatch`] if
    /// any of the lengths disagree.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < POLICY_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if len < total_len {
            return Err(WireError::Truncated);
        }
        if len > total_len {
            return Err(WireError::LengthMismatch);
        }
        if total_len != POLICY_HEADER_LEN + usize::from(self.label_len()) {
            return Err(WireError::LengthMismatch);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The magic bytes.
    pub fn magic(&self) -> [u8; 4] {
        self.read_array(field::MAGIC)
    }

    /// The layout version.
    pub fn version(&self) -> u8 {
        self.read_u8(field::VERSION)
    }

    /// The `total_len` field: length of the whole blob as its writer saw it.
    pub fn total_len(&self) -> u16 {
        u16::from_le_bytes(self.read_array(field::TOTAL_LEN))
    }

    /// The raw action code.
    pub fn action_code(&self) -> u8 {
        self.read_u8(field::ACTION)
    }

    /// The raw log level code.
    pub fn log_level_code(&self) -> u8 {
        self.read_u8(field::LOG_LEVEL)
    }

    /// The raw verdict byte (the default verdict of an Ask action).
    pub fn verdict_code(&self) -> u8 {
        self.read_u8(field::VERDICT)
    }

    /// The `label_len` field.
    pub fn label_len(&self) -> u8 {
        self.read_u8(field::LABEL_LEN)
    }

    /// The first action parameter slot.
    pub fn param_a(&self) -> u32 {
        u32::from_le_bytes(self.read_array(field::PARAM_A))
    }

    /// The second action parameter slot.
    pub fn param_b(&self) -> u32 {
        u32::from_le_bytes(self.read_array(field::PARAM_B))
    }

    /// Whether every reserved byte is zero, as version 1 requires.
    pub fn reserved_is_zero(&self) -> bool {
        self.read_u8(field::RESERVED_0) == 0 && self.read_array(field::RESERVED_1) == [0u8; 4]
    }

    /// The raw label bytes: `label_len` bytes after the header, or empty if
    /// the buffer does not hold them.
    pub fn label(&self) -> &[u8] {
        self.buffer.as_ref().get(label_range(self.label_len())).unwrap_or(&[])
    }

    fn read_u8(&self, at: usize) -> u8 {
        self.buffer.as_ref().get(at).copied().unwrap_or(0)
    }

    fn read_array<const N: usize>(&self, range: Range<usize>) -> [u8; N] {
        self.buffer.as_ref().get(range).and_then(|bytes| <[u8; N]>::try_from(bytes).ok()).unwrap_or([0; N])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PolicyBlob<T> {
    /// Sets the magic bytes.
    pub fn set_magic(&mut self, value: [u8; 4]) {
        self.write_bytes(field::MAGIC, &value);
    }

    /// Sets the layout version.
    pub fn set_version(&mut self, value: u8) {
        self.write_u8(field::VERSION, value);
    }

    /// Sets the `total_len` field.
    pub fn set_total_len(&mut self, value: u16) {
        self.write_bytes(field::TOTAL_LEN, &value.to_le_bytes());
    }

    /// Sets the raw action code.
    pub fn set_action_code(&mut self, value: u8) {
        self.write_u8(field::ACTION, value);
    }

    /// Sets the raw log level code.
    pub fn set_log_level_code(&mut self, value: u8) {
        self.write_u8(field::LOG_LEVEL, value);
    }

    /// Sets the raw verdict byte.
    pub fn set_verdict_code(&mut self, value: u8) {
        self.write_u8(field::VERDICT, value);
    }

    /// Sets the `label_len` field (write it before [`label_mut`](Self::label_mut)).
    pub fn set_label_len(&mut self, value: u8) {
        self.write_u8(field::LABEL_LEN, value);
    }

    /// Sets the first action parameter slot.
    pub fn set_param_a(&mut self, value: u32) {
        self.write_bytes(field::PARAM_A, &value.to_le_bytes());
    }

    /// Sets the second action parameter slot.
    pub fn set_param_b(&mut self, value: u32) {
        self.write_bytes(field::PARAM_B, &value.to_le_bytes());
    }

    /// Zeroes every reserved byte.
    pub fn clear_reserved(&mut self) {
        self.write_u8(field::RESERVED_0, 0);
        self.write_bytes(field::RESERVED_1, &[0; 4]);
    }

    /// The `label_len` bytes after the header, for writing the label; empty
    /// if the buffer does not hold them.
    pub fn label_mut(&mut self) -> &mut [u8] {
        let range = label_range(self.label_len());
        self.buffer.as_mut().get_mut(range).unwrap_or(&mut [])
    }

    fn write_u8(&mut self, at: usize, value: u8) {
        if let Some(byte) = self.buffer.as_mut().get_mut(at) {
            *byte = value;
        }
    }

    fn write_bytes(&mut self, range: Range<usize>, value: &[u8]) {
        if let Some(dst) = self.buffer.as_mut().get_mut(range)
            && dst.len() == value.len()
        {
            dst.copy_from_slice(value);
        }
    }
}

/// Where a label of `label_len` bytes sits.
fn label_range(label_len: u8) -> Range<usize> {
    field::LABEL..field::LABEL + usize::from(label_len)
}

/// A decoded, valid policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyRepr {
    /// What to do with matched connections.
    pub action: PolicyAction,
    /// How much to log about them.
    pub log_level: LogLevel,
    /// A name for logs and the agent.
    pub label: Label,
}

impl PolicyRepr {
    /// The policy of a filter that has no provider context: permit, log
    /// nothing, no label. It leaves traffic exactly as it would be without
    /// the callout, so a missing context never blocks anything.
    pub const DEFAULT: PolicyRepr =
        PolicyRepr { action: PolicyAction::Permit, log_level: LogLevel::Off, label: Label::EMPTY };

    /// Decodes a policy blob, strictly: the buffer must be exactly the blob
    /// (no trailing bytes), with the right magic and version, a known action
    /// with parameters in range and unused slots zero, a known log level,
    /// reserved bytes zero and a valid UTF-8 label of at most
    /// [`LABEL_MAX_LEN`] bytes.
    ///
    /// Never allocates and never panics, whatever the input.
    pub fn parse(bytes: &[u8]) -> Result<PolicyRepr, WireError> {
        let blob = PolicyBlob::new_checked(bytes)?;
        if !blob.reserved_is_zero() {
            return Err(WireError::ReservedNotZero);
        }
        let action = PolicyAction::from_fields(crate::action::ActionFields {
            code: blob.action_code(),
            verdict: blob.verdict_code(),
            param_a: blob.param_a(),
            param_b: blob.param_b(),
        })?;
        let log_level = LogLevel::from_code(blob.log_level_code())?;
        let label = Label::from_bytes(blob.label())?;
        Ok(PolicyRepr { action, log_level, label })
    }

    /// Length of the encoding: the header plus the label.
    pub fn buffer_len(&self) -> usize {
        POLICY_HEADER_LEN + self.label.len()
    }

    /// Encodes the policy into the first [`buffer_len`](Self::buffer_len)
    /// bytes of `out`, leaving the rest untouched, and returns that length.
    ///
    /// Returns [`WireError::BadActionParameters`] if the action parameters
    /// are out of range (so that nothing `parse` would refuse is written) and
    /// [`WireError::BufferTooSmall`] if `out` is too short; in both cases
    /// `out` is not modified.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        self.action.check()?;
        let len = self.buffer_len();
        let dst = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        self.write(&mut PolicyBlob::new_unchecked(dst));
        Ok(len)
    }

    /// Encodes the policy into a new vector, for user-mode tools.
    ///
    /// Unlike [`emit`](Self::emit) this cannot fail, so it does not check the
    /// action parameters: a repr with out-of-range parameters is encoded as
    /// given and [`parse`](Self::parse) will refuse the result. Call
    /// [`PolicyAction::check`] first on reprs built from user input.
    #[cfg(feature = "std")]
    pub fn to_bytes(&self) -> std::vec::Vec<u8> {
        let mut out = std::vec![0u8; self.buffer_len()];
        self.write(&mut PolicyBlob::new_unchecked(out.as_mut_slice()));
        out
    }

    /// Writes every field of a buffer of exactly `buffer_len()` bytes.
    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, blob: &mut PolicyBlob<T>) {
        let fields = self.action.to_fields();
        let label = self.label.as_bytes();
        // Both conversions always succeed: a label is at most LABEL_MAX_LEN
        // bytes, which fits a `u8`, and POLICY_MAX_LEN fits a `u16`.
        let label_len = u8::try_from(label.len()).unwrap_or(u8::MAX);
        let total_len = u16::try_from(self.buffer_len()).unwrap_or(u16::MAX);
        blob.set_magic(POLICY_MAGIC);
        blob.set_version(POLICY_VERSION);
        blob.clear_reserved();
        blob.set_total_len(total_len);
        blob.set_action_code(fields.code);
        blob.set_log_level_code(self.log_level.code());
        blob.set_verdict_code(fields.verdict);
        blob.set_label_len(label_len);
        blob.set_param_a(fields.param_a);
        blob.set_param_b(fields.param_b);
        let dst = blob.label_mut();
        if dst.len() == label.len() {
            dst.copy_from_slice(label);
        }
    }
}

impl Default for PolicyRepr {
    fn default() -> PolicyRepr {
        PolicyRepr::DEFAULT
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{ASK_TIMEOUT_MS_MAX, Verdict};

    // ---- Fixtures, written by hand from the layout table. ----

    /// Permit, Off, no label: what `PolicyRepr::DEFAULT` encodes to.
    static PERMIT_BYTES: [u8; 24] = [
        b'W', b'F', b'P', b'C', // magic
        0x01, // version
        0x00, // reserved
        0x18, 0x00, // total_len = 24
        0x00, // action = Permit
        0x00, // log_level = Off
        0x00, // verdict (unused)
        0x00, // label_len
        0x00, 0x00, 0x00, 0x00, // param_a
        0x00, 0x00, 0x00, 0x00, // param_b
        0x00, 0x00, 0x00, 0x00, // reserved
    ];

    /// Block, Warning, label "ssh".
    static BLOCK_BYTES: [u8; 27] = [
        b'W', b'F', b'P', b'C', // magic
        0x01, // version
        0x00, // reserved
        0x1b, 0x00, // total_len = 27
        0x01, // action = Block
        0x02, // log_level = Warning
        0x00, // verdict (unused)
        0x03, // label_len
        0x00, 0x00, 0x00, 0x00, // param_a
        0x00, 0x00, 0x00, 0x00, // param_b
        0x00, 0x00, 0x00, 0x00, // reserved
        b's', b's', b'h', // label
    ];

    /// Audit, Info, label "audit-dns".
    static AUDIT_BYTES: [u8; 33] = [
        b'W', b'F', b'P', b'C', // magic
        0x01, // version
        0x00, // reserved
        0x21, 0x00, // total_len = 33
        0x02, // action = Audit
        0x03, // log_level = Info
        0x00, // verdict (unused)
        0x09, // label_len
        0x00, 0x00, 0x00, 0x00, // param_a
        0x00, 0x00, 0x00, 0x00, // param_b
        0x00, 0x00, 0x00, 0x00, // reserved
        b'a', b'u', b'd', b'i', b't', b'-', b'd', b'n', b's', // label
    ];

    /// RateLimit 1000/s, burst 1_000_000, Error, label "rl".
    static RATE_LIMIT_BYTES: [u8; 26] = [
        b'W', b'F', b'P', b'C', // magic
        0x01, // version
        0x00, // reserved
        0x1a, 0x00, // total_len = 26
        0x03, // action = RateLimit
        0x01, // log_level = Error
        0x00, // verdict (unused)
        0x02, // label_len
        0xe8, 0x03, 0x00, 0x00, // param_a = rate_per_sec 1000
        0x40, 0x42, 0x0f, 0x00, // param_b = burst 1_000_000
        0x00, 0x00, 0x00, 0x00, // reserved
        b'r', b'l', // label
    ];

    /// Ask, 30 s, default Block, Trace, label "ask-ü" (6 bytes of UTF-8).
    static ASK_BYTES: [u8; 30] = [
        b'W', b'F', b'P', b'C', // magic
        0x01, // version
        0x00, // reserved
        0x1e, 0x00, // total_len = 30
        0x04, // action = Ask
        0x04, // log_level = Trace
        0x02, // verdict = Block
        0x06, // label_len
        0x30, 0x75, 0x00, 0x00, // param_a = timeout_ms 30_000
        0x00, 0x00, 0x00, 0x00, // param_b (unused)
        0x00, 0x00, 0x00, 0x00, // reserved
        b'a', b's', b'k', b'-', 0xc3, 0xbc, // label
    ];

    fn permit_repr() -> PolicyRepr {
        PolicyRepr::DEFAULT
    }

    fn block_repr() -> PolicyRepr {
        PolicyRepr { action: PolicyAction::Block, log_level: LogLevel::Warning, label: Label::new("ssh").unwrap() }
    }

    fn audit_repr() -> PolicyRepr {
        PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Info, label: Label::new("audit-dns").unwrap() }
    }

    fn rate_limit_repr() -> PolicyRepr {
        PolicyRepr {
            action: PolicyAction::RateLimit { rate_per_sec: 1000, burst: 1_000_000 },
            log_level: LogLevel::Error,
            label: Label::new("rl").unwrap(),
        }
    }

    fn ask_repr() -> PolicyRepr {
        PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: 30_000, default_verdict: Verdict::Block },
            log_level: LogLevel::Trace,
            label: Label::new("ask-ü").unwrap(),
        }
    }

    fn fixtures() -> [(&'static [u8], PolicyRepr); 5] {
        [
            (&PERMIT_BYTES, permit_repr()),
            (&BLOCK_BYTES, block_repr()),
            (&AUDIT_BYTES, audit_repr()),
            (&RATE_LIMIT_BYTES, rate_limit_repr()),
            (&ASK_BYTES, ask_repr()),
        ]
    }

    /// Asserts the round trip every accepted input must satisfy:
    /// parse -> emit gives the same bytes, and those parse to the same repr.
    fn assert_canonical(bytes: &[u8], repr: &PolicyRepr) {
        assert_eq!(repr.buffer_len(), bytes.len());
        let mut out = [0u8; POLICY_MAX_LEN];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(&out[..n], bytes);
        assert_eq!(PolicyRepr::parse(&out[..n]), Ok(*repr));
    }

    // ---- Layout. ----

    #[test]
    fn layout_constants() {
        assert_eq!(POLICY_HEADER_LEN, 24);
        assert_eq!(POLICY_MAX_LEN, 88);
        assert_eq!(&POLICY_MAGIC, b"WFPC");
        assert_eq!(POLICY_VERSION, 1);
    }

    // ---- Deconstruct: read fixtures through the view. ----

    #[test]
    fn deconstruct_permit() {
        let blob = PolicyBlob::new_checked(&PERMIT_BYTES[..]).unwrap();
        assert_eq!(blob.magic(), POLICY_MAGIC);
        assert_eq!(blob.version(), 1);
        assert_eq!(blob.total_len(), 24);
        assert_eq!(blob.action_code(), 0);
        assert_eq!(blob.log_level_code(), 0);
        assert_eq!(blob.verdict_code(), 0);
        assert_eq!(blob.label_len(), 0);
        assert_eq!(blob.param_a(), 0);
        assert_eq!(blob.param_b(), 0);
        assert!(blob.reserved_is_zero());
        assert_eq!(blob.label(), b"");
        assert_eq!(blob.into_inner(), &PERMIT_BYTES[..]);
    }

    #[test]
    fn deconstruct_rate_limit() {
        let blob = PolicyBlob::new_checked(&RATE_LIMIT_BYTES[..]).unwrap();
        assert_eq!(blob.total_len(), 26);
        assert_eq!(blob.action_code(), 3);
        assert_eq!(blob.log_level_code(), 1);
        assert_eq!(blob.label_len(), 2);
        assert_eq!(blob.param_a(), 1000);
        assert_eq!(blob.param_b(), 1_000_000);
        assert_eq!(blob.label(), b"rl");
    }

    #[test]
    fn deconstruct_ask() {
        let blob = PolicyBlob::new_checked(&ASK_BYTES[..]).unwrap();
        assert_eq!(blob.action_code(), 4);
        assert_eq!(blob.log_level_code(), 4);
        assert_eq!(blob.verdict_code(), 2);
        assert_eq!(blob.param_a(), 30_000);
        assert_eq!(blob.param_b(), 0);
        assert_eq!(blob.label(), "ask-ü".as_bytes());
    }

    // ---- Construct: build fixtures through the view's setters. ----

    #[test]
    fn construct_ask() {
        let mut buf = [0xa5u8; 30];
        let mut blob = PolicyBlob::new_unchecked(&mut buf[..]);
        blob.set_magic(POLICY_MAGIC);
        blob.set_version(POLICY_VERSION);
        blob.clear_reserved();
        blob.set_total_len(30);
        blob.set_action_code(4);
        blob.set_log_level_code(4);
        blob.set_verdict_code(2);
        blob.set_label_len(6);
        blob.set_param_a(30_000);
        blob.set_param_b(0);
        blob.label_mut().copy_from_slice("ask-ü".as_bytes());
        assert_eq!(blob.into_inner(), &ASK_BYTES[..]);
    }

    // ---- Parse and emit each fixture. ----

    #[test]
    fn parse_permit() {
        assert_eq!(PolicyRepr::parse(&PERMIT_BYTES), Ok(permit_repr()));
    }

    #[test]
    fn parse_block() {
        assert_eq!(PolicyRepr::parse(&BLOCK_BYTES), Ok(block_repr()));
    }

    #[test]
    fn parse_audit() {
        assert_eq!(PolicyRepr::parse(&AUDIT_BYTES), Ok(audit_repr()));
    }

    #[test]
    fn parse_rate_limit() {
        assert_eq!(PolicyRepr::parse(&RATE_LIMIT_BYTES), Ok(rate_limit_repr()));
    }

    #[test]
    fn parse_ask() {
        assert_eq!(PolicyRepr::parse(&ASK_BYTES), Ok(ask_repr()));
    }

    #[test]
    fn emit_each_fixture() {
        for (bytes, repr) in fixtures() {
            let mut out = [0u8; POLICY_MAX_LEN];
            assert_eq!(repr.emit(&mut out), Ok(bytes.len()));
            assert_eq!(&out[..bytes.len()], bytes, "{repr:?}");
            assert_canonical(bytes, &repr);
        }
    }

    #[test]
    fn emit_writes_exactly_buffer_len() {
        for (bytes, repr) in fixtures() {
            let mut out = [0xa5u8; POLICY_MAX_LEN + 8];
            let n = repr.emit(&mut out).unwrap();
            assert_eq!(n, repr.buffer_len());
            assert_eq!(&out[..n], bytes);
            assert!(out[n..].iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn emit_into_exact_buffer() {
        let repr = ask_repr();
        let mut out = [0u8; 30];
        assert_eq!(repr.emit(&mut out), Ok(30));
        assert_eq!(out, ASK_BYTES);
    }

    #[test]
    fn emit_buffer_too_small_writes_nothing() {
        let repr = ask_repr();
        for len in 0..repr.buffer_len() {
            let mut out = [0xa5u8; POLICY_MAX_LEN];
            assert_eq!(repr.emit(&mut out[..len]), Err(WireError::BufferTooSmall), "len {len}");
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn emit_refuses_out_of_range_parameters() {
        let reprs = [
            PolicyRepr { action: PolicyAction::RateLimit { rate_per_sec: 0, burst: 10 }, ..PolicyRepr::DEFAULT },
            PolicyRepr {
                action: PolicyAction::RateLimit { rate_per_sec: 10, burst: 1_000_001 },
                ..PolicyRepr::DEFAULT
            },
            PolicyRepr {
                action: PolicyAction::Ask { timeout_ms: 600_001, default_verdict: Verdict::Permit },
                ..PolicyRepr::DEFAULT
            },
        ];
        for repr in reprs {
            let mut out = [0xa5u8; POLICY_MAX_LEN];
            assert_eq!(repr.emit(&mut out), Err(WireError::BadActionParameters));
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn default_is_permit_off_unlabelled() {
        let repr = PolicyRepr::default();
        assert_eq!(repr, PolicyRepr::DEFAULT);
        assert_eq!(repr.action, PolicyAction::Permit);
        assert_eq!(repr.log_level, LogLevel::Off);
        assert!(repr.label.is_empty());
        assert_eq!(repr.buffer_len(), POLICY_HEADER_LEN);
    }

    #[test]
    fn max_len_blob_roundtrips() {
        let mut text = [0u8; LABEL_MAX_LEN];
        for pair in text.chunks_exact_mut(2) {
            pair.copy_from_slice("ß".as_bytes());
        }
        let text = core::str::from_utf8(&text).unwrap();
        let repr = PolicyRepr {
            action: PolicyAction::Ask { timeout_ms: ASK_TIMEOUT_MS_MAX, default_verdict: Verdict::Permit },
            log_level: LogLevel::Info,
            label: Label::new(text).unwrap(),
        };
        let mut out = [0u8; POLICY_MAX_LEN];
        assert_eq!(repr.emit(&mut out), Ok(POLICY_MAX_LEN));
        assert_eq!(PolicyRepr::parse(&out), Ok(repr));
        assert_canonical(&out, &repr);
    }

    #[cfg(feature = "std")]
    #[test]
    fn to_bytes_matches_emit() {
        for (bytes, repr) in fixtures() {
            assert_eq!(repr.to_bytes().as_slice(), bytes);
        }
    }

    // ---- Every error variant. ----

    /// Copies a fixture into a scratch buffer for mutation.
    fn scratch(bytes: &[u8]) -> ([u8; 256], usize) {
        let mut buf = [0u8; 256];
        buf[..bytes.len()].copy_from_slice(bytes);
        (buf, bytes.len())
    }

    fn parse_mutated(bytes: &[u8], mutate: impl FnOnce(&mut [u8])) -> Result<PolicyRepr, WireError> {
        let (mut buf, len) = scratch(bytes);
        mutate(&mut buf[..len]);
        PolicyRepr::parse(&buf[..len])
    }

    #[test]
    fn error_truncated() {
        assert_eq!(PolicyRepr::parse(&[]), Err(WireError::Truncated));
        assert_eq!(PolicyRepr::parse(b"WFP"), Err(WireError::Truncated));
        assert_eq!(PolicyRepr::parse(b"WFPC"), Err(WireError::Truncated));
        assert_eq!(PolicyRepr::parse(&PERMIT_BYTES[..23]), Err(WireError::Truncated));
        // Header intact, label cut short.
        assert_eq!(PolicyRepr::parse(&ASK_BYTES[..29]), Err(WireError::Truncated));
    }

    #[test]
    fn error_length_mismatch() {
        // One trailing byte.
        let (buf, len) = scratch(&BLOCK_BYTES);
        assert_eq!(PolicyRepr::parse(&buf[..len + 1]), Err(WireError::LengthMismatch));
        // total_len agrees with the buffer but not with label_len.
        assert_eq!(parse_mutated(&BLOCK_BYTES, |b| b[11] = 2), Err(WireError::LengthMismatch));
        // total_len smaller than the header.
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[6] = 0), Err(WireError::LengthMismatch));
    }

    #[test]
    fn error_bad_magic() {
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[0] = b'w'), Err(WireError::BadMagic));
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[3] = 0), Err(WireError::BadMagic));
        assert_eq!(PolicyRepr::parse(&[0u8; 24]), Err(WireError::BadMagic));
    }

    #[test]
    fn error_unsupported_version() {
        for version in [0u8, 2, 0xff] {
            assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[4] = version), Err(WireError::UnsupportedVersion(version)));
        }
        // Reported before any length problem: a future layout may differ.
        assert_eq!(PolicyRepr::parse(b"WFPC\x02"), Err(WireError::UnsupportedVersion(2)));
    }

    #[test]
    fn error_unknown_action() {
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[8] = 5), Err(WireError::UnknownAction(5)));
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[8] = 0xff), Err(WireError::UnknownAction(0xff)));
    }

    #[test]
    fn error_bad_action_parameters() {
        // rate_per_sec = 0.
        assert_eq!(parse_mutated(&RATE_LIMIT_BYTES, |b| b[12..16].fill(0)), Err(WireError::BadActionParameters));
        // burst = 1_000_001.
        assert_eq!(parse_mutated(&RATE_LIMIT_BYTES, |b| b[16] = 0x41), Err(WireError::BadActionParameters));
        // timeout_ms = 600_001.
        assert_eq!(
            parse_mutated(&ASK_BYTES, |b| b[12..16].copy_from_slice(&600_001u32.to_le_bytes())),
            Err(WireError::BadActionParameters)
        );
        // Unused slots must be zero.
        assert_eq!(parse_mutated(&BLOCK_BYTES, |b| b[19] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&BLOCK_BYTES, |b| b[10] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&ASK_BYTES, |b| b[16] = 1), Err(WireError::BadActionParameters));
        assert_eq!(parse_mutated(&RATE_LIMIT_BYTES, |b| b[10] = 1), Err(WireError::BadActionParameters));
    }

    #[test]
    fn error_unknown_log_level() {
        assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[9] = 5), Err(WireError::UnknownLogLevel(5)));
    }

    #[test]
    fn error_unknown_verdict() {
        assert_eq!(parse_mutated(&ASK_BYTES, |b| b[10] = 0), Err(WireError::UnknownVerdict(0)));
        assert_eq!(parse_mutated(&ASK_BYTES, |b| b[10] = 3), Err(WireError::UnknownVerdict(3)));
    }

    #[test]
    fn error_label_too_long() {
        // A consistent blob carrying a 65-byte label.
        let mut buf = [b'x'; POLICY_MAX_LEN + 1];
        buf[..POLICY_HEADER_LEN].copy_from_slice(&PERMIT_BYTES);
        let mut blob = PolicyBlob::new_unchecked(&mut buf[..]);
        blob.set_label_len(65);
        blob.set_total_len(89);
        assert_eq!(PolicyRepr::parse(&buf), Err(WireError::LabelTooLong));

        // And the largest label_len the field can hold.
        let mut buf = [b'x'; POLICY_HEADER_LEN + 255];
        buf[..POLICY_HEADER_LEN].copy_from_slice(&PERMIT_BYTES);
        let mut blob = PolicyBlob::new_unchecked(&mut buf[..]);
        blob.set_label_len(255);
        blob.set_total_len(279);
        assert_eq!(PolicyRepr::parse(&buf), Err(WireError::LabelTooLong));
    }

    #[test]
    fn error_label_not_utf8() {
        // Cut "ü" in half by replacing its second byte.
        assert_eq!(parse_mutated(&ASK_BYTES, |b| b[29] = b'!'), Err(WireError::LabelNotUtf8));
        assert_eq!(parse_mutated(&BLOCK_BYTES, |b| b[24] = 0xff), Err(WireError::LabelNotUtf8));
    }

    #[test]
    fn error_reserved_not_zero() {
        for at in [5usize, 20, 21, 22, 23] {
            assert_eq!(parse_mutated(&PERMIT_BYTES, |b| b[at] = 0x80), Err(WireError::ReservedNotZero), "byte {at}");
        }
    }

    /// Maps each variant to a slot; the match is exhaustive, so adding a
    /// variant without a test producing it fails to compile or fails below.
    fn variant_slot(err: WireError) -> usize {
        match err {
            WireError::Truncated => 0,
            WireError::LengthMismatch => 1,
            WireError::BadMagic => 2,
            WireError::UnsupportedVersion(_) => 3,
            WireError::UnknownAction(_) => 4,
            WireError::BadActionParameters => 5,
            WireError::UnknownLogLevel(_) => 6,
            WireError::UnknownVerdict(_) => 7,
            WireError::LabelTooLong => 8,
            WireError::LabelNotUtf8 => 9,
            WireError::LabelControlCharacter(_) => 10,
            WireError::ReservedNotZero => 11,
            WireError::BufferTooSmall => 12,
            // Errors of the control device formats: the policy decoder never
            // produces them (their own modules' tests do).
            WireError::UnknownFlags(_)
            | WireError::ValueOutOfRange
            | WireError::UnknownOrigin(_)
            | WireError::UnknownDirection(_)
            | WireError::UnknownIpVersion(_)
            | WireError::EntriesOutOfOrder
            | WireError::AddressFamilyMismatch => 13,
        }
    }

    #[test]
    fn every_error_variant_is_reachable() {
        let mut long_label = [b'x'; POLICY_MAX_LEN + 1];
        long_label[..POLICY_HEADER_LEN].copy_from_slice(&PERMIT_BYTES);
        long_label[11] = 65;
        long_label[6] = 89;

        let produced = [
            PolicyRepr::parse(&[]).err(),
            PolicyRepr::parse(&BLOCK_BYTES[..26]).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[11] = 0).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[0] = 0).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[4] = 9).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[8] = 9).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[12] = 9).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[9] = 9).err(),
            parse_mutated(&ASK_BYTES, |b| b[10] = 9).err(),
            PolicyRepr::parse(&long_label).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[26] = 0x80).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[24] = 0x1b).err(),
            parse_mutated(&BLOCK_BYTES, |b| b[5] = 9).err(),
            block_repr().emit(&mut [0u8; 26]).err(),
        ];
        let mut seen = [false; 14];
        for err in produced {
            seen[variant_slot(err.unwrap())] = true;
        }
        assert_eq!(seen[..13], [true; 13]);
        assert!(!seen[13]);
    }

    // ---- Impossible lengths and garbage: never panic, stay canonical. ----

    /// A tiny xorshift64 generator: deterministic, no dependencies.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn next_u8(&mut self) -> u8 {
            self.next_u64().to_le_bytes()[0]
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next_u64() % u64::try_from(n).unwrap()).unwrap()
        }

        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next_u8();
            }
        }
    }

    /// Parses `bytes`; if they are accepted, checks the round trip.
    /// Returns whether they were accepted.
    fn check_any(bytes: &[u8]) -> bool {
        match PolicyRepr::parse(bytes) {
            Ok(repr) => {
                assert_canonical(bytes, &repr);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn random_bytes_of_every_length() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 256];
        for round in 0..64 {
            for len in 0..=256 {
                rng.fill(&mut buf[..len]);
                // Half the rounds get a valid magic and version, so the
                // deeper checks see garbage too.
                if round % 2 == 1 && len >= 5 {
                    buf[..4].copy_from_slice(&POLICY_MAGIC);
                    buf[4] = POLICY_VERSION;
                }
                check_any(&buf[..len]);
            }
        }
    }

    #[test]
    fn random_bytes_with_consistent_lengths() {
        // A valid identity and consistent length fields; everything else
        // random. Exercises the semantic checks on every label length.
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut accepted = 0usize;
        for round in 0..20_000 {
            let mut buf = [0u8; POLICY_HEADER_LEN + 255];
            let label_len = rng.below(LABEL_MAX_LEN + 8);
            let len = POLICY_HEADER_LEN + label_len;
            rng.fill(&mut buf[..len]);
            let mut blob = PolicyBlob::new_unchecked(&mut buf[..len]);
            blob.set_magic(POLICY_MAGIC);
            blob.set_version(POLICY_VERSION);
            blob.set_total_len(u16::try_from(len).unwrap());
            blob.set_label_len(u8::try_from(label_len).unwrap());
            // Bias most rounds towards plausible values.
            if round % 4 != 0 {
                blob.clear_reserved();
                blob.set_action_code(rng.next_u8() % 6);
                blob.set_log_level_code(rng.next_u8() % 6);
                blob.set_verdict_code(rng.next_u8() % 3);
                blob.set_param_a(u32::from(rng.next_u8()));
                blob.set_param_b(if rng.next_u8().is_multiple_of(2) { 0 } else { 7 });
                for b in blob.label_mut() {
                    *b = b'a' + rng.next_u8() % 26;
                }
            }
            if check_any(&buf[..len]) {
                accepted += 1;
            }
        }
        // The generator must actually reach the accepting path.
        assert!(accepted > 100, "only {accepted} accepted");
    }

    #[test]
    fn truncated_and_extended_fixtures() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        for (bytes, repr) in fixtures() {
            for len in 0..=256 {
                for fill_random in [false, true] {
                    let (mut buf, fixture_len) = scratch(bytes);
                    if fill_random {
                        rng.fill(&mut buf[fixture_len..]);
                    }
                    let result = PolicyRepr::parse(&buf[..len]);
                    if len == fixture_len {
                        assert_eq!(result, Ok(repr));
                    } else if len < fixture_len {
                        assert_eq!(result, Err(WireError::Truncated), "len {len}");
                    } else {
                        assert_eq!(result, Err(WireError::LengthMismatch), "len {len}");
                    }
                    check_any(&buf[..len]);
                }
            }
        }
    }

    #[test]
    fn mutated_fixtures() {
        let mut rng = XorShift(0x5151_5151_5151_5151);
        for (bytes, _) in fixtures() {
            for _ in 0..5_000 {
                let (mut buf, len) = scratch(bytes);
                let flips = 1 + rng.below(3);
                for _ in 0..flips {
                    let at = rng.below(len);
                    buf[at] ^= 1 << rng.below(8);
                }
                check_any(&buf[..len]);
            }
        }
    }

    #[test]
    fn unchecked_view_over_short_buffers_never_panics() {
        let mut rng = XorShift(42);
        for len in 0..=POLICY_HEADER_LEN + 4 {
            let mut buf = [0u8; POLICY_HEADER_LEN + 4];
            rng.fill(&mut buf);
            let mut blob = PolicyBlob::new_unchecked(&mut buf[..len]);
            let _ = (
                blob.magic(),
                blob.version(),
                blob.total_len(),
                blob.action_code(),
                blob.log_level_code(),
                blob.verdict_code(),
                blob.label_len(),
                blob.param_a(),
                blob.param_b(),
                blob.reserved_is_zero(),
                blob.label().len(),
            );
            blob.set_magic(POLICY_MAGIC);
            blob.set_version(1);
            blob.set_total_len(300);
            blob.set_action_code(1);
            blob.set_log_level_code(1);
            blob.set_verdict_code(1);
            blob.set_label_len(255);
            blob.set_param_a(1);
            blob.set_param_b(1);
            blob.clear_reserved();
            assert!(blob.label_mut().is_empty());
            assert!(blob.check_len().is_err());
        }
        let empty = PolicyBlob::new_unchecked(&[][..]);
        assert_eq!(empty.magic(), [0; 4]);
        assert_eq!(empty.total_len(), 0);
        assert_eq!(empty.param_b(), 0);
        assert_eq!(empty.label(), b"");
        assert_eq!(empty.check_identity(), Err(WireError::Truncated));
    }
}
