//! Constants of the kernel-side API. Values from the WDK headers as listed in
//! the project's layout table (FWPS_* flags differ from FWPM_* ones!).

use crate::{FWPS_CALLOUT_NOTIFY_TYPE, NTSTATUS};

/// notifyFn: a filter naming the callout is being added (may veto).
pub const FWPS_CALLOUT_NOTIFY_ADD_FILTER: FWPS_CALLOUT_NOTIFY_TYPE = 0;
/// notifyFn: a filter naming the callout is being deleted (`filterKey` NULL).
pub const FWPS_CALLOUT_NOTIFY_DELETE_FILTER: FWPS_CALLOUT_NOTIFY_TYPE = 1;
/// notifyFn: the adding transaction committed (only with ENABLE_COMMIT_ADD_NOTIFY).
pub const FWPS_CALLOUT_NOTIFY_ADD_FILTER_POST_COMMIT: FWPS_CALLOUT_NOTIFY_TYPE = 2;
/// First value past the known notify types.
pub const FWPS_CALLOUT_NOTIFY_TYPE_MAX: FWPS_CALLOUT_NOTIFY_TYPE = 3;

/// `FWPS_FILTER.flags`: a PERMIT from this filter must clear the write right.
pub const FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT: u16 = 0x1;
/// `FWPS_FILTER.flags`: act as PERMIT while the callout is unregistered.
pub const FWPS_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED: u16 = 0x2;

/// `FWPS_CLASSIFY_OUT0.rights`: the callout may write the action.
pub const FWPS_RIGHT_ACTION_WRITE: u32 = 0x1;
/// `FWPS_CLASSIFY_OUT0.flags`: drop silently (with BLOCK).
pub const FWPS_CLASSIFY_OUT_FLAG_ABSORB: u32 = 0x1;

/// `FWPS_FILTER` field value of the ALE auth layers' FLAGS field: this
/// classification is a reauthorization (pending is not allowed).
pub const FWP_CONDITION_FLAG_IS_REAUTHORIZE: u32 = 0x4;

/// Run-time layer ids (`FWPS_BUILTIN_LAYERS`, implicit enum order).
pub const FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4: u16 = 44;
/// IPv6 receive/accept authorization.
pub const FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6: u16 = 46;
/// IPv4 connect authorization.
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V4: u16 = 48;
/// IPv6 connect authorization.
pub const FWPS_LAYER_ALE_AUTH_CONNECT_V6: u16 = 50;

/// IPv4 flow established (implicit enum order: after ALE_AUTH_CONNECT_V6_DISCARD).
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4: u16 = 52;
/// IPv6 flow established.
pub const FWPS_LAYER_ALE_FLOW_ESTABLISHED_V6: u16 = 54;

/// Pool flag for `ExAllocatePool2`: non-paged, usable at DISPATCH_LEVEL.
pub const POOL_FLAG_NON_PAGED: u64 = 0x0000_0000_0000_0040;
/// Pool flag for `ExAllocatePool2`: paged, PASSIVE/APC only.
pub const POOL_FLAG_PAGED: u64 = 0x0000_0000_0000_0100;
/// Pool flag for `ExAllocatePool2`: do not zero the allocation.
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x0000_0000_0000_0002;

/// IRQL values that the driver's rules are stated in.
pub const PASSIVE_LEVEL: u8 = 0;
/// APC_LEVEL.
pub const APC_LEVEL: u8 = 1;
/// DISPATCH_LEVEL: classifyFn's usual IRQL; no paging, no waiting.
pub const DISPATCH_LEVEL: u8 = 2;

/// `DPFLTR_IHVNETWORK_ID`: the DbgPrintEx component for network drivers.
pub const DPFLTR_IHVNETWORK_ID: u32 = 80;
/// DbgPrintEx level: errors.
pub const DPFLTR_ERROR_LEVEL: u32 = 0;
/// DbgPrintEx level: warnings.
pub const DPFLTR_WARNING_LEVEL: u32 = 1;
/// DbgPrintEx level: trace.
pub const DPFLTR_TRACE_LEVEL: u32 = 2;
/// DbgPrintEx level: information.
pub const DPFLTR_INFO_LEVEL: u32 = 3;

/// `RPC_C_AUTHN_WINNT`, the authentication service for `FwpmEngineOpen0`.
pub const RPC_C_AUTHN_WINNT: u32 = 10;
/// `FWPM_SESSION_FLAG_DYNAMIC`: objects die with the session.
pub const FWPM_SESSION_FLAG_DYNAMIC: u32 = 0x1;

macro_rules! statuses {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$doc])* pub const $name: NTSTATUS = $value as u32 as i32;)*
    };
}

statuses! {
    /// Success.
    STATUS_SUCCESS = 0x0000_0000u32;
    /// Operation pending; completion comes later.
    STATUS_PENDING = 0x0000_0103u32;
    /// An object by that name exists already (success-class).
    STATUS_OBJECT_NAME_EXISTS = 0x4000_0000u32;
    /// The device is busy: retry (unregister with live flow contexts).
    STATUS_DEVICE_BUSY = 0x8000_0011u32;
    /// No more entries (enumeration end).
    STATUS_NO_MORE_ENTRIES = 0x8000_001Au32;
    /// Generic failure.
    STATUS_UNSUCCESSFUL = 0xC000_0001u32;
    /// An internal error (a framework call gave less than it promised).
    STATUS_INTERNAL_ERROR = 0xC000_00E5u32;
    /// The I/O request was cancelled (its handle closed).
    STATUS_CANCELLED = 0xC000_0120u32;
    /// A parameter is invalid.
    STATUS_INVALID_PARAMETER = 0xC000_000Du32;
    /// An invalid device request (unknown IOCTL).
    STATUS_INVALID_DEVICE_REQUEST = 0xC000_0010u32;
    /// The buffer is too small.
    STATUS_BUFFER_TOO_SMALL = 0xC000_0023u32;
    /// The object is not found.
    STATUS_NOT_FOUND = 0xC000_0225u32;
    /// Data is invalid (a malformed policy blob).
    STATUS_INVALID_BUFFER_SIZE = 0xC000_0206u32;
    /// Out of memory or another resource.
    STATUS_INSUFFICIENT_RESOURCES = 0xC000_009Au32;
    /// A driver operation is not supported in this state.
    STATUS_INVALID_DEVICE_STATE = 0xC000_0184u32;
    /// The data is malformed.
    STATUS_BAD_DATA = 0xC000_090Bu32;
    /// The callout does not exist.
    STATUS_FWP_CALLOUT_NOT_FOUND = 0xC022_0001u32;
    /// The filter does not exist.
    STATUS_FWP_FILTER_NOT_FOUND = 0xC022_0003u32;
    /// The layer does not exist.
    STATUS_FWP_LAYER_NOT_FOUND = 0xC022_0004u32;
    /// The provider does not exist.
    STATUS_FWP_PROVIDER_NOT_FOUND = 0xC022_0005u32;
    /// The provider context does not exist.
    STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND = 0xC022_0006u32;
    /// The sublayer does not exist.
    STATUS_FWP_SUBLAYER_NOT_FOUND = 0xC022_0007u32;
    /// The object does not exist.
    STATUS_FWP_NOT_FOUND = 0xC022_0008u32;
    /// An object with that key or id exists already.
    STATUS_FWP_ALREADY_EXISTS = 0xC022_0009u32;
    /// The object is in use (e.g. being (un)registered by another thread).
    STATUS_FWP_IN_USE = 0xC022_000Au32;
    /// The action type (or what the callout would do) is not allowed at
    /// the filter's layer.
    STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER = 0xC022_002Cu32;
    /// No explicit transaction is in progress.
    STATUS_FWP_NO_TXN_IN_PROGRESS = 0xC022_000Du32;
    /// An explicit transaction is already in progress.
    STATUS_FWP_TXN_IN_PROGRESS = 0xC022_000Eu32;
    /// A required pointer is NULL.
    STATUS_FWP_NULL_POINTER = 0xC022_001Cu32;
    /// An invalid parameter for the engine.
    STATUS_FWP_INVALID_PARAMETER = 0xC022_0035u32;
    /// The operation cannot be pended (reauthorization, wrong layer).
    STATUS_FWP_CANNOT_PEND = 0xC022_0103u32;
}
