//! Panic-free little-endian field access at fixed offsets, shared by the
//! fixed-size views of the control device formats.
//!
//! Reads of bytes the buffer does not hold return zero and writes to them
//! are dropped, so a view made with `new_unchecked` over a short buffer can
//! never panic; `new_checked` is what guarantees that the bytes are there.

use core::ops::Range;

use crate::WireError;

/// The byte at `at`, or zero if the buffer is shorter.
pub(crate) fn u8_at(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// The bytes in `range` as an array, or zeroes if the buffer does not hold
/// them all (or `range` is not `N` long).
pub(crate) fn array_at<const N: usize>(bytes: &[u8], range: Range<usize>) -> [u8; N] {
    bytes.get(range).and_then(|field| <[u8; N]>::try_from(field).ok()).unwrap_or([0; N])
}

/// A little-endian `u16` at `range`.
pub(crate) fn u16_at(bytes: &[u8], range: Range<usize>) -> u16 {
    u16::from_le_bytes(array_at(bytes, range))
}

/// A little-endian `u32` at `range`.
pub(crate) fn u32_at(bytes: &[u8], range: Range<usize>) -> u32 {
    u32::from_le_bytes(array_at(bytes, range))
}

/// A little-endian `u64` at `range`.
pub(crate) fn u64_at(bytes: &[u8], range: Range<usize>) -> u64 {
    u64::from_le_bytes(array_at(bytes, range))
}

/// `N` consecutive little-endian `u64`s starting at `start`.
pub(crate) fn u64s_at<const N: usize>(bytes: &[u8], start: usize) -> [u64; N] {
    core::array::from_fn(|i| u64_at(bytes, u64_range(start, i)))
}

/// Whether every byte of `range` that the buffer holds is zero.
pub(crate) fn zero_at(bytes: &[u8], range: Range<usize>) -> bool {
    bytes.get(range).is_none_or(|field| field.iter().all(|&b| b == 0))
}

/// Writes the byte at `at`, if the buffer holds it.
pub(crate) fn set_u8(bytes: &mut [u8], at: usize, value: u8) {
    if let Some(byte) = bytes.get_mut(at) {
        *byte = value;
    }
}

/// Writes `value` at `range`, if the buffer holds all of it and the lengths
/// agree.
pub(crate) fn set_bytes(bytes: &mut [u8], range: Range<usize>, value: &[u8]) {
    if let Some(field) = bytes.get_mut(range)
        && field.len() == value.len()
    {
        field.copy_from_slice(value);
    }
}

/// Writes a little-endian `u16` at `range`.
pub(crate) fn set_u16(bytes: &mut [u8], range: Range<usize>, value: u16) {
    set_bytes(bytes, range, &value.to_le_bytes());
}

/// Writes a little-endian `u32` at `range`.
pub(crate) fn set_u32(bytes: &mut [u8], range: Range<usize>, value: u32) {
    set_bytes(bytes, range, &value.to_le_bytes());
}

/// Writes a little-endian `u64` at `range`.
pub(crate) fn set_u64(bytes: &mut [u8], range: Range<usize>, value: u64) {
    set_bytes(bytes, range, &value.to_le_bytes());
}

/// Writes `values` as consecutive little-endian `u64`s starting at `start`.
pub(crate) fn set_u64s(bytes: &mut [u8], start: usize, values: &[u64]) {
    for (i, &value) in values.iter().enumerate() {
        set_u64(bytes, u64_range(start, i), value);
    }
}

/// Zeroes the bytes of `range` that the buffer holds.
pub(crate) fn clear(bytes: &mut [u8], range: Range<usize>) {
    let end = range.end.min(bytes.len());
    if let Some(field) = bytes.get_mut(range.start.min(end)..end) {
        field.fill(0);
    }
}

/// Checks that a fixed-size buffer is exactly `expected` bytes long:
/// [`WireError::Truncated`] if shorter, [`WireError::LengthMismatch`] if
/// longer (trailing bytes).
pub(crate) fn check_exact_len(len: usize, expected: usize) -> Result<(), WireError> {
    if len < expected {
        Err(WireError::Truncated)
    } else if len > expected {
        Err(WireError::LengthMismatch)
    } else {
        Ok(())
    }
}

/// Where the `index`-th `u64` of an array starting at `start` sits.
/// Saturating arithmetic keeps it panic-free; the callers' offsets are small
/// constants, so it never actually saturates.
fn u64_range(start: usize, index: usize) -> Range<usize> {
    let at = start.saturating_add(index.saturating_mul(8));
    at..at.saturating_add(8)
}

/// The constructors every exact-length view has: `new_unchecked`,
/// `new_checked` (length only), `check_len` and `into_inner`.
macro_rules! exact_len_view {
    ($view:ident, $len:ident) => {
        impl<T: AsRef<[u8]>> $view<T> {
            /// Wraps a buffer without any check.
            pub const fn new_unchecked(buffer: T) -> $view<T> {
                $view { buffer }
            }

            /// Wraps a buffer after [`check_len`](Self::check_len) passes.
            pub fn new_checked(buffer: T) -> Result<$view<T>, $crate::WireError> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            #[doc = concat!("Checks that the buffer is exactly [`", stringify!($len), "`] bytes: ")]
            /// [`WireError::Truncated`](crate::WireError::Truncated) if shorter,
            /// [`WireError::LengthMismatch`](crate::WireError::LengthMismatch) if longer.
            pub fn check_len(&self) -> Result<(), $crate::WireError> {
                $crate::bytes::check_exact_len(self.buffer.as_ref().len(), $len)
            }

            /// Gives the buffer back.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
pub(crate) use exact_len_view;

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero() {
        let bytes = [1u8, 2, 3];
        assert_eq!(u8_at(&bytes, 2), 3);
        assert_eq!(u8_at(&bytes, 3), 0);
        assert_eq!(u16_at(&bytes, 0..2), 0x0201);
        assert_eq!(u16_at(&bytes, 2..4), 0);
        assert_eq!(u32_at(&bytes, 0..4), 0);
        assert_eq!(u64_at(&[], 0..8), 0);
        assert_eq!(u64s_at::<2>(&[1, 0, 0, 0, 0, 0, 0, 0, 2], 0), [1, 0]);
        assert!(zero_at(&bytes, 3..8));
        assert!(!zero_at(&bytes, 0..1));
    }

    #[test]
    fn writes_past_the_end_are_dropped() {
        let mut bytes = [0xa5u8; 4];
        set_u8(&mut bytes, 4, 1);
        set_u32(&mut bytes, 2..6, 7);
        set_u64s(&mut bytes, 0, &[1]);
        assert_eq!(bytes, [0xa5; 4]);
        set_u16(&mut bytes, 2..4, 0x0102);
        assert_eq!(bytes, [0xa5, 0xa5, 2, 1]);
        clear(&mut bytes, 3..100);
        assert_eq!(bytes, [0xa5, 0xa5, 2, 0]);
        clear(&mut bytes, 10..20);
        assert_eq!(bytes, [0xa5, 0xa5, 2, 0]);
    }

    #[test]
    fn exact_len() {
        assert_eq!(check_exact_len(15, 16), Err(WireError::Truncated));
        assert_eq!(check_exact_len(16, 16), Ok(()));
        assert_eq!(check_exact_len(17, 16), Err(WireError::LengthMismatch));
    }
}
