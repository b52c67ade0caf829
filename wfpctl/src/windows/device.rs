//! The driver's control device: `CreateFileW(\\.\WfpCallout)` and
//! `DeviceIoControl` with `METHOD_BUFFERED` IOCTLs.
#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;

use super::wide::to_wide;
use crate::backend::{BackendError, DEVICE_PATH};

/// The last Win32 error of this thread, as a failure of `operation`.
pub fn last_error(operation: &str) -> BackendError {
    // SAFETY: GetLastError has no preconditions.
    let code = unsafe { GetLastError() };
    BackendError::code(operation, code)
}

/// An open handle to the control device.
///
/// # Invariants
/// `handle` is a valid file handle from `CreateFileW`, owned by this value
/// and closed once, on drop.
pub struct Device {
    handle: HANDLE,
}

impl Device {
    /// Opens the control device for reading and writing (the agent IOCTLs
    /// need both). The device's DACL admits only SYSTEM and administrators.
    pub fn open() -> Result<Device, BackendError> {
        let path = to_wide(DEVICE_PATH);
        // SAFETY: `path` is NUL-terminated and outlives the call; no
        // security attributes and no template file are passed.
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                // Other wfpctl processes (a `stats` next to a running
                // `agent`) open the device too.
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                core::ptr::null(),
                OPEN_EXISTING,
                FILE_ATTRIBUTE_NORMAL,
                core::ptr::null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE || handle.is_null() {
            return Err(last_error(&format!("open {DEVICE_PATH}")));
        }
        // INVARIANT: a valid handle, owned from here on.
        Ok(Device { handle })
    }

    /// Sends one IOCTL; returns the bytes the driver wrote. Synchronous:
    /// the handle is not opened for overlapped I/O, so an IOCTL the driver
    /// parks (the agent's GET_REQUEST) waits here until it completes.
    pub fn ioctl(&self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError> {
        let too_large = || BackendError::message("DeviceIoControl", "buffer larger than 4 GiB");
        let input_len = u32::try_from(input.len()).map_err(|_| too_large())?;
        let output_size = u32::try_from(output_len).map_err(|_| too_large())?;
        let mut output = vec![0u8; output_len];
        let input_ptr = if input.is_empty() { core::ptr::null() } else { input.as_ptr().cast() };
        let output_ptr = if output.is_empty() { core::ptr::null_mut() } else { output.as_mut_ptr().cast() };
        let mut returned = 0u32;
        // SAFETY: the handle is valid (invariant); the input pointer is NULL
        // or `input_len` readable bytes, the output pointer NULL or
        // `output_size` writable bytes, both alive for the call; no
        // OVERLAPPED, so the call completes before it returns.
        let ok = unsafe {
            DeviceIoControl(
                self.handle,
                code,
                input_ptr,
                input_len,
                output_ptr,
                output_size,
                &mut returned,
                core::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_error("DeviceIoControl"));
        }
        output.truncate(usize::try_from(returned).unwrap_or(output_len));
        Ok(output)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: the handle is valid and owned (invariant), closed only here.
        let _ = unsafe { CloseHandle(self.handle) };
    }
}
