//! NTSTATUS as a Rust error: the driver speaks `Result`, and converts back to
//! a raw status once, at each callback boundary.

use core::fmt;

/// A kernel status code. `Err(NtStatus)` always holds a failure code; the
/// success codes only appear at the FFI boundary.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NtStatus(i32);

/// The driver's result type.
pub type Result<T = ()> = core::result::Result<T, NtStatus>;

impl NtStatus {
    /// `STATUS_SUCCESS`.
    pub const SUCCESS: Self = Self(fwps_types::STATUS_SUCCESS);
    /// Out of pool: every allocation failure maps to this.
    pub const INSUFFICIENT_RESOURCES: Self = Self(fwps_types::STATUS_INSUFFICIENT_RESOURCES);
    /// A caller passed something unusable (NULL filter, wrong context type).
    pub const INVALID_PARAMETER: Self = Self(fwps_types::STATUS_INVALID_PARAMETER);
    /// A policy blob failed to decode: what `FwpmFilterAdd0` callers see.
    pub const BAD_DATA: Self = Self(fwps_types::STATUS_BAD_DATA);
    /// An IOCTL code we do not implement.
    pub const INVALID_DEVICE_REQUEST: Self = Self(fwps_types::STATUS_INVALID_DEVICE_REQUEST);
    /// An IOCTL buffer of the wrong size.
    pub const INVALID_BUFFER_SIZE: Self = Self(fwps_types::STATUS_INVALID_BUFFER_SIZE);
    /// An output buffer too small for the answer.
    pub const BUFFER_TOO_SMALL: Self = Self(fwps_types::STATUS_BUFFER_TOO_SMALL);
    /// The driver is not in a state to do this (not initialized, unloading).
    pub const INVALID_DEVICE_STATE: Self = Self(fwps_types::STATUS_INVALID_DEVICE_STATE);
    /// A filter id we hold a context for already.
    pub const ALREADY_EXISTS: Self = Self(fwps_types::STATUS_FWP_ALREADY_EXISTS);
    /// A filter whose action or policy cannot work at its layer (e.g. a
    /// block policy at ALE_FLOW_ESTABLISHED).
    pub const ACTION_INCOMPATIBLE_WITH_LAYER: Self = Self(fwps_types::STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER);
    /// Unregister must be retried: flow contexts still exist.
    pub const DEVICE_BUSY: Self = Self(fwps_types::STATUS_DEVICE_BUSY);
    /// No such object (an unknown or already answered request id).
    pub const NOT_FOUND: Self = Self(fwps_types::STATUS_NOT_FOUND);
    /// Enumeration has nothing more.
    pub const NO_MORE_ENTRIES: Self = Self(fwps_types::STATUS_NO_MORE_ENTRIES);
    /// Something the driver relies on did not hold (a framework call gave
    /// less than it promised): fail the operation, never guess.
    pub const INTERNAL_ERROR: Self = Self(fwps_types::STATUS_INTERNAL_ERROR);
    /// An I/O request ended because its handle closed.
    pub const CANCELLED: Self = Self(fwps_types::STATUS_CANCELLED);

    /// Wraps a raw status.
    pub const fn from_raw(raw: i32) -> Self {
        Self(raw)
    }

    /// The raw value, for returning across FFI.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// `NT_SUCCESS`: success and informational codes are non-negative.
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// Turns a status returned by the kernel into a `Result`.
    pub const fn to_result(raw: i32) -> Result {
        if raw >= 0 { Ok(()) } else { Err(Self(raw)) }
    }

    /// Turns a `Result` back into the raw status a callback returns.
    pub const fn from_result(result: Result) -> i32 {
        match result {
            Ok(()) => fwps_types::STATUS_SUCCESS,
            Err(status) => status.0,
        }
    }
}

/// Calls a teardown API until it succeeds, at most `attempts` times, logging
/// each failure with `what`: an object whose close failed stays open (and
/// leaks) for good, and such failures are usually transient.
pub fn retry_teardown(what: &str, attempts: u32, mut call: impl FnMut() -> i32) -> Result {
    let mut outcome = Ok(());
    for attempt in 1..=attempts {
        outcome = NtStatus::to_result(call());
        match outcome {
            Ok(()) => break,
            Err(status) => {
                crate::log!(
                    crate::platform::log::Level::Warning,
                    "{} failed ({}/{}): {}",
                    what,
                    attempt,
                    attempts,
                    status
                )
            }
        }
    }
    outcome
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtStatus({:#010X})", self.0 as u32)
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010X}", self.0 as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_errors_are_failures() {
        assert!(NtStatus::SUCCESS.is_success());
        assert!(NtStatus::from_raw(fwps_types::STATUS_PENDING).is_success());
        assert!(!NtStatus::DEVICE_BUSY.is_success());
        assert_eq!(NtStatus::to_result(fwps_types::STATUS_DEVICE_BUSY), Err(NtStatus::DEVICE_BUSY));
        assert_eq!(NtStatus::from_result(Err(NtStatus::BAD_DATA)), fwps_types::STATUS_BAD_DATA);
        assert_eq!(std::format!("{}", NtStatus::DEVICE_BUSY), "0x80000011");
    }
}
