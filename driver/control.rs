//! The control device's IOCTLs, decoded and answered in portable code; the
//! KMDF glue only moves buffers. Every buffer size is checked.
#![forbid(unsafe_code)]

use crate::driver_state::STATE;
use crate::status::{NtStatus, Result};
use core::sync::atomic::Ordering;

/// `CTL_CODE(FILE_DEVICE_NETWORK, function, METHOD_BUFFERED, access)`.
const fn ctl_code(function: u32, access: u32) -> u32 {
    (0x12 << 16) | (access << 14) | (function << 2)
}

/// `FILE_READ_DATA` access: queries.
const FILE_READ_ACCESS: u32 = 0x1;

/// Returns [`DRIVER_ABI_VERSION`] and the number of live filter contexts.
pub const IOCTL_WFPCALLOUT_GET_VERSION: u32 = ctl_code(0x800, FILE_READ_ACCESS);

/// The version of the control interface user-mode tools must match.
pub const DRIVER_ABI_VERSION: u32 = 1;

/// The largest input any IOCTL takes (the glue copies at most this much).
pub const MAX_INPUT_LEN: usize = 256;

/// Answers one IOCTL; returns the number of bytes written to `output`.
pub fn dispatch_ioctl(code: u32, input: &[u8], output: &mut [u8]) -> Result<usize> {
    match code {
        IOCTL_WFPCALLOUT_GET_VERSION => {
            if !input.is_empty() {
                return Err(NtStatus::INVALID_BUFFER_SIZE);
            }
            let contexts = u32::try_from(STATE.table.len()).unwrap_or(u32::MAX);
            let loaded = u32::from(STATE.loaded.load(Ordering::Acquire));
            let mut answer = [0u8; 12];
            for (chunk, value) in answer.chunks_exact_mut(4).zip([DRIVER_ABI_VERSION, loaded, contexts]) {
                chunk.copy_from_slice(&value.to_le_bytes());
            }
            let out = output.get_mut(..answer.len()).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            out.copy_from_slice(&answer);
            Ok(answer.len())
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_checks_buffers() {
        let mut out = [0u8; 12];
        assert_eq!(dispatch_ioctl(IOCTL_WFPCALLOUT_GET_VERSION, &[1], &mut out), Err(NtStatus::INVALID_BUFFER_SIZE));
        assert_eq!(dispatch_ioctl(IOCTL_WFPCALLOUT_GET_VERSION, &[], &mut out[..11]), Err(NtStatus::BUFFER_TOO_SMALL));
        assert_eq!(dispatch_ioctl(IOCTL_WFPCALLOUT_GET_VERSION, &[], &mut out), Ok(12));
        assert_eq!(out[..4], DRIVER_ABI_VERSION.to_le_bytes());
        assert_eq!(dispatch_ioctl(0x1234, &[], &mut out), Err(NtStatus::INVALID_DEVICE_REQUEST));
    }
}
