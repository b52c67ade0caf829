//! NUL-terminated UTF-16 string literals for the WFP display names, built at
//! compile time from ASCII text.
#![forbid(unsafe_code)]

/// Encodes ASCII `text` into a NUL-terminated UTF-16 array of length `N`.
/// Evaluated at compile time; a wrong `N` or non-ASCII text fails the build.
#[allow(clippy::indexing_slicing)] // const evaluation: out of range is a build error
pub const fn ascii_to_wide<const N: usize>(text: &str) -> [u16; N] {
    let bytes = text.as_bytes();
    assert!(bytes.len() + 1 == N, "N must be the text length plus the NUL");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii(), "display names are ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// `wide!("text")`: a `&'static [u16]` holding "text" and a NUL.
#[macro_export]
macro_rules! wide {
    ($text:expr) => {{
        const TEXT: &str = $text;
        const WIDE: [u16; TEXT.len() + 1] = $crate::platform::wide::ascii_to_wide(TEXT);
        &WIDE
    }};
}

/// Static `wide!` text and its byte length without the NUL, as a counted
/// `UNICODE_STRING` describes it.
pub type Counted = (&'static [u16], u16);

/// Pairs `wide!` text with its counted byte length. Evaluated in constants:
/// text too long for the `USHORT` length fails the build.
pub const fn counted(text: &'static [u16]) -> Counted {
    let bytes = text.len().saturating_sub(1) * 2;
    assert!(bytes <= u16::MAX as usize, "text too long for a UNICODE_STRING");
    (text, bytes as u16)
}

/// `size_of::<T>()` as the `ULONG` the `Size` field of a framework
/// structure holds. Evaluated in constants: a structure too large fails
/// the build.
pub const fn struct_size<T>() -> u32 {
    let size = core::mem::size_of::<T>();
    assert!(size <= u32::MAX as usize, "structure size does not fit a ULONG");
    size as u32
}
