//! The system wfpctl drives, behind a trait: the filter engine (add,
//! delete, list filters), the driver's control device (IOCTLs) and the
//! service manager. The Windows module implements it with windows-sys; the
//! tests implement it with a recorder and with the simulated kernel.
#![forbid(unsafe_code)]

use core::fmt;

use wfpcallout_wire::text::ntstatus_name;

use crate::filter_spec::{CalloutTarget, Condition, FilterSpec};
use crate::footprint::EngineObjects;
use crate::uninstall::Removal;

/// The driver's service name (the INF's `AddService`).
pub const DRIVER_SERVICE: &str = "WfpCallout";

/// The Base Filtering Engine's service name.
pub const BFE_SERVICE: &str = "BFE";

/// The driver's control device, as user mode opens it.
pub const DEVICE_PATH: &str = r"\\.\WfpCallout";

/// A failed system call, with what was being done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    /// The function or step that failed (`FwpmFilterAdd0`, `open \\.\WfpCallout`).
    pub operation: String,
    /// The Win32 error, `HRESULT` or `NTSTATUS` it returned, if any.
    pub code: Option<u32>,
    /// More words, if any.
    pub detail: String,
}

impl BackendError {
    /// A failure with a status code.
    pub fn code(operation: impl Into<String>, code: u32) -> BackendError {
        BackendError { operation: operation.into(), code: Some(code), detail: String::new() }
    }

    /// A failure described in words.
    pub fn message(operation: impl Into<String>, detail: impl Into<String>) -> BackendError {
        BackendError { operation: operation.into(), code: None, detail: detail.into() }
    }

    /// Adds words to a failure.
    pub fn with_detail(mut self, detail: impl Into<String>) -> BackendError {
        let detail = detail.into();
        self.detail = if self.detail.is_empty() { detail } else { format!("{detail}: {}", self.detail) };
        self
    }

    /// Says what the failed call was for: `GET_STATS: DeviceIoControl failed ...`.
    pub fn context(mut self, what: &str) -> BackendError {
        self.operation = format!("{what}: {}", self.operation);
        self
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        if let Some(code) = self.code {
            write!(f, ": {code:#010x}")?;
            if let Some((name, meaning)) = known_code(code) {
                write!(f, " ({name}: {meaning})")?;
            }
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {}

/// Names and meanings of the Win32 errors and `FWP_E_*` HRESULTs wfpctl
/// users meet most. NTSTATUS codes are in [`NTSTATUS_MEANINGS`].
const ERROR_MEANINGS: &[(u32, &str, &str)] = &[
    (1, "ERROR_INVALID_FUNCTION", "the driver does not know this request: a driver of another build?"),
    (2, "ERROR_FILE_NOT_FOUND", "the driver's control device does not exist: is the driver started?"),
    (5, "ERROR_ACCESS_DENIED", "run wfpctl from an elevated (administrator) prompt"),
    (31, "ERROR_GEN_FAILURE", "the driver refused the request"),
    (87, "ERROR_INVALID_PARAMETER", "the driver refused the buffer"),
    (122, "ERROR_INSUFFICIENT_BUFFER", "the reply did not fit"),
    (995, "ERROR_OPERATION_ABORTED", "the driver cancelled the request (is it stopping?)"),
    (1060, "ERROR_SERVICE_DOES_NOT_EXIST", "the service is not installed"),
    (1168, "ERROR_NOT_FOUND", "no such request (answered already, or timed out)"),
    (1722, "RPC_S_SERVER_UNAVAILABLE", "the base filtering engine (BFE) is not running: start it (sc.exe start BFE)"),
    (1753, "EPT_S_NOT_REGISTERED", "the base filtering engine (BFE) is not running: start it (sc.exe start BFE)"),
    (1784, "ERROR_INVALID_USER_BUFFER", "the driver refused the buffer size"),
    (
        0x8032_0001,
        "FWP_E_CALLOUT_NOT_FOUND",
        "the wfpcallout callouts do not exist: the driver adds them when it starts",
    ),
    (0x8032_0002, "FWP_E_CONDITION_NOT_FOUND", "a condition field does not exist at this layer"),
    (0x8032_0003, "FWP_E_FILTER_NOT_FOUND", "no filter with this id"),
    (0x8032_0004, "FWP_E_LAYER_NOT_FOUND", "no such layer"),
    (0x8032_0005, "FWP_E_PROVIDER_NOT_FOUND", "the wfpcallout provider is missing: the driver adds it when it starts"),
    (0x8032_0006, "FWP_E_PROVIDER_CONTEXT_NOT_FOUND", "the filter's provider context is missing"),
    (0x8032_0007, "FWP_E_SUBLAYER_NOT_FOUND", "the wfpcallout sublayer is missing: the driver adds it when it starts"),
    (0x8032_0008, "FWP_E_NOT_FOUND", "the object does not exist"),
    (0x8032_0009, "FWP_E_ALREADY_EXISTS", "the object exists already"),
    (0x8032_000A, "FWP_E_IN_USE", "the object is still referenced by another object"),
    (0x8032_000C, "FWP_E_WRONG_SESSION", "the object belongs to another session"),
    (0x8032_0014, "FWP_E_INCOMPATIBLE_LAYER", "the callout does not belong to the filter's layer"),
    (0x8032_0024, "FWP_E_INVALID_ACTION_TYPE", "the action is not valid at this layer"),
    (0x8032_0025, "FWP_E_INVALID_WEIGHT", "the weight is not valid"),
    (0x8032_0027, "FWP_E_TYPE_MISMATCH", "a condition value has the wrong type for its field"),
    (0x8032_0028, "FWP_E_OUT_OF_BOUNDS", "a value is out of bounds"),
    (0x8032_0029, "FWP_E_RESERVED", "a reserved field is not zero"),
    (0x8032_0035, "FWP_E_INVALID_PARAMETER", "the engine refused a parameter"),
    // As an HRESULT (FACILITY_WIN32), and as the NTSTATUS the simulated
    // (and kernel-mode) engine returns.
    (
        0x8007_06D9,
        "EPT_S_NOT_REGISTERED",
        "the base filtering engine (BFE) is not running: start it (sc.exe start BFE)",
    ),
    (
        0xC002_0036,
        "EPT_NT_NOT_REGISTERED",
        "the base filtering engine (BFE) is not running: start it (sc.exe start BFE)",
    ),
];

/// What the NTSTATUS codes wfpctl users meet most mean for them; their
/// names are the wire crate's ([`ntstatus_name`]), which the scenario
/// prints too.
const NTSTATUS_MEANINGS: &[(u32, &str)] = &[
    // STATUS_INVALID_PARAMETER
    (0xC000_000D, "the driver refused the policy or the buffer"),
    // STATUS_BAD_DATA
    (0xC000_090B, "the driver's notifyFn refused the filter: its policy blob is malformed"),
    // STATUS_FWP_CALLOUT_NOT_FOUND
    (0xC022_0001, "the wfpcallout callouts do not exist: the driver adds them when it starts"),
    // STATUS_FWP_FILTER_NOT_FOUND
    (0xC022_0003, "no filter with this id"),
    // STATUS_FWP_PROVIDER_NOT_FOUND
    (0xC022_0005, "the wfpcallout provider is missing: the driver adds it when it starts"),
    // STATUS_FWP_SUBLAYER_NOT_FOUND
    (0xC022_0007, "the wfpcallout sublayer is missing: the driver adds it when it starts"),
    // STATUS_FWP_IN_USE
    (0xC022_000A, "the object is still referenced by another object"),
    // STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER
    (0xC022_002C, "the driver's notifyFn refused the policy at this layer (a verdict at flow-established)"),
    // STATUS_NOT_FOUND
    (0xC000_0225, "no such request (answered already, or timed out)"),
];

/// The codes with which the engine refuses a filter because our provider,
/// sublayer or callouts do not exist (as `HRESULT`s and as `NTSTATUS`es).
/// The driver adds them when it starts, so what to do about it depends on
/// whether it is running (see `run::filter_add`).
pub const MISSING_OBJECT_CODES: [u32; 6] =
    [0x8032_0001, 0x8032_0005, 0x8032_0007, 0xC022_0001, 0xC022_0005, 0xC022_0007];

/// Names and meanings of the codes wfpctl users meet most.
pub fn known_code(code: u32) -> Option<(&'static str, &'static str)> {
    if let Some((_, name, meaning)) = ERROR_MEANINGS.iter().find(|(value, _, _)| *value == code) {
        return Some((*name, *meaning));
    }
    let (_, meaning) = NTSTATUS_MEANINGS.iter().find(|(value, _)| *value == code)?;
    Some((ntstatus_name(code)?, *meaning))
}

/// The state of a Windows service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceState {
    /// No such service.
    NotInstalled,
    /// `SERVICE_STOPPED`.
    Stopped,
    /// `SERVICE_START_PENDING`.
    StartPending,
    /// `SERVICE_STOP_PENDING`.
    StopPending,
    /// `SERVICE_RUNNING`.
    Running,
    /// `SERVICE_CONTINUE_PENDING`.
    ContinuePending,
    /// `SERVICE_PAUSE_PENDING`.
    PausePending,
    /// `SERVICE_PAUSED`.
    Paused,
    /// A state this tool does not know.
    Other(u32),
}

impl ServiceState {
    /// From `SERVICE_STATUS::dwCurrentState`.
    pub const fn from_raw(state: u32) -> ServiceState {
        match state {
            1 => ServiceState::Stopped,
            2 => ServiceState::StartPending,
            3 => ServiceState::StopPending,
            4 => ServiceState::Running,
            5 => ServiceState::ContinuePending,
            6 => ServiceState::PausePending,
            7 => ServiceState::Paused,
            other => ServiceState::Other(other),
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceState::NotInstalled => f.write_str("not installed"),
            ServiceState::Stopped => f.write_str("stopped"),
            ServiceState::StartPending => f.write_str("starting"),
            ServiceState::StopPending => f.write_str("stopping"),
            ServiceState::Running => f.write_str("running"),
            ServiceState::ContinuePending => f.write_str("continuing"),
            ServiceState::PausePending => f.write_str("pausing"),
            ServiceState::Paused => f.write_str("paused"),
            ServiceState::Other(state) => write!(f, "state {state}"),
        }
    }
}

/// A filter as the engine lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineFilter {
    /// The run-time filter id (what the driver's statistics are keyed by).
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Which of our callouts' layers it sits at (`None`: another layer).
    pub target: Option<CalloutTarget>,
    /// The conditions wfpctl understands.
    pub conditions: Vec<Condition>,
    /// How many other conditions it has.
    pub other_conditions: u32,
    /// The weight the engine computed (`effectiveWeight`), if reported.
    pub effective_weight: Option<u64>,
}

/// The system: filter engine, control device, service manager.
///
/// Engine methods open a session on first use; `open_engine` does it
/// early, so that a missing privilege or a stopped BFE is reported before
/// anything else happens.
pub trait Backend {
    /// Opens a (non-dynamic) session with the filter engine: what it adds
    /// outlives wfpctl.
    fn open_engine(&mut self) -> Result<(), BackendError>;

    /// Adds a provider context carrying `policy_blob` and a filter that
    /// uses it, in one transaction; returns the filter's run-time id.
    fn add_filter(&mut self, spec: &FilterSpec, policy_blob: &[u8]) -> Result<u64, BackendError>;

    /// Deletes one of our filters (and the provider context it used).
    fn delete_filter(&mut self, filter_id: u64) -> Result<(), BackendError>;

    /// Every filter of our provider at the layers of our callouts.
    fn list_our_filters(&mut self) -> Result<Vec<EngineFilter>, BackendError>;

    /// Sends an IOCTL to the driver's control device and returns the bytes
    /// it wrote (at most `output_len`). The device is opened on first use
    /// and kept open: the driver tells agents apart by handle.
    fn ioctl(&mut self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError>;

    /// The state of a service (`WfpCallout`, `BFE`).
    fn service_state(&mut self, service: &str) -> Result<ServiceState, BackendError>;

    /// Our provider, sublayer and callouts, every filter naming our
    /// callouts and every provider context of our provider (`wfpctl state`).
    fn engine_objects(&mut self) -> Result<EngineObjects, BackendError>;

    /// `wfpctl uninstall`: in one transaction, deletes every filter naming
    /// one of our callouts, every provider context of our provider, then
    /// our callouts, sublayer and provider. Objects already absent are
    /// reported as such, objects the engine refuses to delete
    /// (`FWP_E_IN_USE`) as kept; any other failure aborts the transaction
    /// and is returned.
    fn delete_our_objects(&mut self) -> Result<Removal, BackendError>;
}

/// The backend of a host that is not Windows: every call fails. (Only the
/// commands that need no system run there; this exists so they share the
/// code path with the others.)
#[derive(Clone, Copy, Debug, Default)]
pub struct Unavailable;

impl Unavailable {
    fn fail<T>(operation: &str) -> Result<T, BackendError> {
        Err(BackendError::message(operation, crate::command::NOT_WINDOWS))
    }
}

impl Backend for Unavailable {
    fn open_engine(&mut self) -> Result<(), BackendError> {
        Unavailable::fail("FwpmEngineOpen0")
    }

    fn add_filter(&mut self, _spec: &FilterSpec, _policy_blob: &[u8]) -> Result<u64, BackendError> {
        Unavailable::fail("FwpmFilterAdd0")
    }

    fn delete_filter(&mut self, _filter_id: u64) -> Result<(), BackendError> {
        Unavailable::fail("FwpmFilterDeleteById0")
    }

    fn list_our_filters(&mut self) -> Result<Vec<EngineFilter>, BackendError> {
        Unavailable::fail("FwpmFilterEnum0")
    }

    fn ioctl(&mut self, _code: u32, _input: &[u8], _output_len: usize) -> Result<Vec<u8>, BackendError> {
        Unavailable::fail("DeviceIoControl")
    }

    fn service_state(&mut self, _service: &str) -> Result<ServiceState, BackendError> {
        Unavailable::fail("QueryServiceStatus")
    }

    fn engine_objects(&mut self) -> Result<EngineObjects, BackendError> {
        Unavailable::fail("FwpmCalloutGetByKey0")
    }

    fn delete_our_objects(&mut self) -> Result<Removal, BackendError> {
        Unavailable::fail("FwpmCalloutDeleteByKey0")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_known_codes() {
        let err = BackendError::code("FwpmFilterAdd0", 0x8032_0001);
        assert_eq!(
            err.to_string(),
            "FwpmFilterAdd0 failed: 0x80320001 (FWP_E_CALLOUT_NOT_FOUND: the wfpcallout callouts do not exist: \
             the driver adds them when it starts)"
        );
        let err = BackendError::code("DeviceIoControl", 0x1234).with_detail("GET_STATS");
        assert_eq!(err.to_string(), "DeviceIoControl failed: 0x00001234: GET_STATS");
        assert_eq!(BackendError::message("open", "gone").to_string(), "open failed: gone");
        let err = BackendError::code("DeviceIoControl", 87).context("GET_STATS");
        assert!(err.to_string().starts_with("GET_STATS: DeviceIoControl failed: 0x00000057 (ERROR_INVALID_PARAMETER"));
        let err = BackendError::message("x", "inner").with_detail("outer");
        assert_eq!(err.detail, "outer: inner");
    }

    #[test]
    fn every_ntstatus_meaning_has_a_name() {
        for (code, meaning) in NTSTATUS_MEANINGS {
            assert_eq!(known_code(*code).map(|(_, known)| known), Some(*meaning), "{code:#010x}");
        }
    }

    #[test]
    fn the_drivers_vetoes_are_named() {
        let err = BackendError::code("FwpmFilterAdd0", 0xC000_090B);
        assert!(err.to_string().contains("(STATUS_BAD_DATA: the driver's notifyFn refused the filter"), "{err}");
        let err = BackendError::code("FwpmFilterAdd0", 0xC022_0007);
        assert!(err.to_string().contains("STATUS_FWP_SUBLAYER_NOT_FOUND"), "{err}");
    }

    #[test]
    fn service_states() {
        assert_eq!(ServiceState::from_raw(4), ServiceState::Running);
        assert_eq!(ServiceState::from_raw(1).to_string(), "stopped");
        assert_eq!(ServiceState::from_raw(9), ServiceState::Other(9));
        assert_eq!(ServiceState::NotInstalled.to_string(), "not installed");
    }

    #[test]
    fn unavailable_says_why() {
        let err = Unavailable.open_engine().unwrap_err();
        assert!(err.to_string().contains("this host is not Windows"));
    }
}
