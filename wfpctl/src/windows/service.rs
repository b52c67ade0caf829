//! Service states from the service control manager.
#![allow(unsafe_code)]

use windows_sys::Win32::Foundation::{ERROR_SERVICE_DOES_NOT_EXIST, GetLastError};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, OpenSCManagerW, OpenServiceW, QueryServiceStatus, SC_HANDLE, SC_MANAGER_CONNECT,
    SERVICE_QUERY_STATUS, SERVICE_STATUS,
};

use super::device::last_error;
use super::wide::to_wide;
use crate::backend::{BackendError, ServiceState};

/// An open service-manager or service handle.
///
/// # Invariants
/// `0` is a valid handle from `OpenSCManagerW` or `OpenServiceW`, owned by
/// this value and closed once, on drop.
struct ServiceHandle(SC_HANDLE);

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        // SAFETY: valid and owned (invariant), closed only here.
        let _ = unsafe { CloseServiceHandle(self.0) };
    }
}

/// The state of service `name`; [`ServiceState::NotInstalled`] when there
/// is no such service. Needs no privilege beyond an ordinary user's.
pub fn service_state(name: &str) -> Result<ServiceState, BackendError> {
    // SAFETY: NULL machine and database names select the local active
    // database; connecting needs no further arguments.
    let manager = unsafe { OpenSCManagerW(core::ptr::null(), core::ptr::null(), SC_MANAGER_CONNECT) };
    if manager.is_null() {
        return Err(last_error("OpenSCManagerW"));
    }
    // INVARIANT: a valid handle, owned from here on.
    let manager = ServiceHandle(manager);
    let wide = to_wide(name);
    // SAFETY: `manager` is valid and `wide` is NUL-terminated, both alive
    // for the call.
    let service = unsafe { OpenServiceW(manager.0, wide.as_ptr(), SERVICE_QUERY_STATUS) };
    if service.is_null() {
        // SAFETY: GetLastError has no preconditions.
        let error = unsafe { GetLastError() };
        if error == ERROR_SERVICE_DOES_NOT_EXIST {
            return Ok(ServiceState::NotInstalled);
        }
        return Err(BackendError::code(format!("OpenServiceW({name})"), error));
    }
    // INVARIANT: a valid handle, owned from here on.
    let service = ServiceHandle(service);
    let mut status = SERVICE_STATUS::default();
    // SAFETY: `service` was opened with SERVICE_QUERY_STATUS; `status` is
    // writable for the call.
    let ok = unsafe { QueryServiceStatus(service.0, &mut status) };
    if ok == 0 {
        return Err(last_error(&format!("QueryServiceStatus({name})")));
    }
    Ok(ServiceState::from_raw(status.dwCurrentState))
}
