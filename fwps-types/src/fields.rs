//! Indices into `FWPS_INCOMING_VALUES0.incomingValue` at the four ALE auth
//! layers (`FWPS_FIELDS_ALE_AUTH_{CONNECT,RECV_ACCEPT}_V{4,6}`). The V4 and V6
//! enums share their numbering; the first ten are common to both layers.

/// Application id (`FWP_BYTE_BLOB`).
pub const FWPS_FIELD_ALE_AUTH_ALE_APP_ID: usize = 0;
/// User id (security descriptor).
pub const FWPS_FIELD_ALE_AUTH_ALE_USER_ID: usize = 1;
/// Local address (`FWP_UINT32` for V4, `FWP_BYTE_ARRAY16_TYPE` for V6).
pub const FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS: usize = 2;
/// Local address type.
pub const FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS_TYPE: usize = 3;
/// Local port (`FWP_UINT16`).
pub const FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT: usize = 4;
/// IP protocol (`FWP_UINT8`).
pub const FWPS_FIELD_ALE_AUTH_IP_PROTOCOL: usize = 5;
/// Remote address.
pub const FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS: usize = 6;
/// Remote port (`FWP_UINT16`).
pub const FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT: usize = 7;
/// Remote user id.
pub const FWPS_FIELD_ALE_AUTH_ALE_REMOTE_USER_ID: usize = 8;
/// Remote machine id.
pub const FWPS_FIELD_ALE_AUTH_ALE_REMOTE_MACHINE_ID: usize = 9;

/// ALE_AUTH_CONNECT: `FWP_CONDITION_FLAG_*` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS: usize = 12;
/// ALE_AUTH_CONNECT: `FWP_CONDITION_REAUTHORIZE_REASON_*` (`FWP_UINT32`),
/// set on reauthorizations.
pub const FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON: usize = 28;
/// ALE_AUTH_CONNECT: `INTERFACE_INDEX`, the interface's `IF_INDEX` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_CONNECT_INTERFACE_INDEX: usize = 15;
/// ALE_AUTH_CONNECT: `SUB_INTERFACE_INDEX` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_CONNECT_SUB_INTERFACE_INDEX: usize = 16;
/// ALE_AUTH_CONNECT: number of fields at Windows 10 level.
pub const FWPS_FIELD_ALE_AUTH_CONNECT_MAX: usize = 42;
/// ALE_AUTH_RECV_ACCEPT: `FWP_CONDITION_FLAG_*` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS: usize = 11;
/// ALE_AUTH_RECV_ACCEPT: `FWP_CONDITION_REAUTHORIZE_REASON_*` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON: usize = 29;
/// ALE_AUTH_RECV_ACCEPT: `INTERFACE_INDEX`, the arrival interface's
/// `IF_INDEX` (`FWP_UINT32`): what receive injection names.
pub const FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_INTERFACE_INDEX: usize = 16;
/// ALE_AUTH_RECV_ACCEPT: `SUB_INTERFACE_INDEX` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_SUB_INTERFACE_INDEX: usize = 17;
/// ALE_AUTH_RECV_ACCEPT: number of fields at Windows 10 level.
pub const FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_MAX: usize = 40;

/// ALE_FLOW_ESTABLISHED: `FWP_DIRECTION` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_FLOW_ESTABLISHED_DIRECTION: usize = 12;
/// ALE_FLOW_ESTABLISHED: `FWP_CONDITION_FLAG_*` (`FWP_UINT32`).
pub const FWPS_FIELD_ALE_FLOW_ESTABLISHED_FLAGS: usize = 15;
/// ALE_FLOW_ESTABLISHED: fields the simulated engine fills (a lower bound
/// of the real count, which grows with the Windows version).
pub const FWPS_FIELD_ALE_FLOW_ESTABLISHED_MAX: usize = 16;
