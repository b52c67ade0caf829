//! UTF-16 strings and GUIDs at the Windows API boundary.
#![allow(unsafe_code)] // reads of NUL-terminated strings the engine returns

use windows_sys::core::GUID;

use crate::keys::Guid;

/// `text` as a NUL-terminated UTF-16 string (an interior NUL cuts it short
/// where Windows reads it; none of wfpctl's strings has one).
pub fn to_wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The longest string read back from the engine (display names are short;
/// this only bounds a missing terminator).
const MAX_READ: usize = 32_768;

/// Reads a NUL-terminated UTF-16 string (lossily; NULL reads as empty).
///
/// # Safety
/// `text` must be NULL or point to a NUL-terminated UTF-16 string (or at
/// least [`MAX_READ`] readable units) that stays valid during the call.
pub unsafe fn from_wide_ptr(text: *const u16) -> String {
    if text.is_null() {
        return String::new();
    }
    let mut len = 0;
    while len < MAX_READ {
        // SAFETY: the units before the terminator are readable (caller's
        // contract) and the loop stops at the terminator.
        let unit = unsafe { text.add(len) };
        // SAFETY: as above: `unit` is at or before the terminator.
        if unsafe { unit.read() } == 0 {
            break;
        }
        len += 1;
    }
    // SAFETY: the `len` units before the terminator were just read one by
    // one; they are initialized and valid for the call.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    String::from_utf16_lossy(units)
}

/// The Windows `GUID` of a [`Guid`].
pub const fn guid(key: Guid) -> GUID {
    GUID::from_u128(key.to_u128())
}

/// The [`Guid`] of a Windows `GUID`.
pub const fn from_guid(guid: &GUID) -> Guid {
    Guid::from_fields(guid.data1, guid.data2, guid.data3, guid.data4)
}

/// Whether a Windows `GUID` is the key (usable in constant assertions).
pub const fn same(windows: GUID, ours: Guid) -> bool {
    let (data1, data2, data3, data4) = ours.fields();
    windows.data1 == data1
        && windows.data2 == data2
        && windows.data3 == data3
        && u64::from_be_bytes(windows.data4) == u64::from_be_bytes(data4)
}
