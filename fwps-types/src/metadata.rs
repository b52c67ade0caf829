//! `FWPS_INCOMING_METADATA_VALUES0`: per-classify metadata, each field valid
//! only when its `FWPS_METADATA_FIELD_*` bit is set in `currentMetadataValues`.
//!
//! The structure grows with `NTDDI_VERSION`; this is the Windows 8+ layout
//! (280 bytes). Only the Vista-stable prefix (bytes 0-143) may be relied on
//! when the presence bit says so: the driver reads nothing past it.

use core::ffi::c_void;

/// `FWPS_DISCARD_METADATA0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FWPS_DISCARD_METADATA0 {
    /// `FWPS_DISCARD_MODULE0` enum.
    pub discardModule: i32,
    /// Module-specific reason.
    pub discardReason: u32,
    /// Filter that discarded the data, if any.
    pub filterId: u64,
}

/// `FWPS_INBOUND_FRAGMENT_METADATA0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FWPS_INBOUND_FRAGMENT_METADATA0 {
    /// IP fragment identification.
    pub fragmentIdentification: u32,
    /// Offset of the fragment.
    pub fragmentOffset: u16,
    /// Length of the fragment.
    pub fragmentLength: u32,
}

/// `IP_ADDRESS_PREFIX` (a `SOCKADDR_INET` and a prefix length), kept opaque:
/// 32 bytes, 4-byte aligned.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default)]
pub struct IP_ADDRESS_PREFIX_OPAQUE {
    /// Raw bytes of the prefix.
    pub bytes: [u8; 32],
}

/// `FWPS_INCOMING_METADATA_VALUES0` as laid out for Windows 8 and later.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FWPS_INCOMING_METADATA_VALUES0 {
    /// Bit set of `FWPS_METADATA_FIELD_*`: which fields below are valid.
    pub currentMetadataValues: u32,
    /// `FWP_CONDITION_FLAG_*` style flags of the metadata.
    pub flags: u32,
    /// Reserved for system use.
    pub reserved: u64,
    /// Why data was discarded (discard layers only).
    pub discardMetadata: FWPS_DISCARD_METADATA0,
    /// Flow handle, for `FwpsFlowAssociateContext0`.
    pub flowHandle: u64,
    /// IP header size.
    pub ipHeaderSize: u32,
    /// Transport header size.
    pub transportHeaderSize: u32,
    /// Full path of the process (`FWP_BYTE_BLOB*`).
    pub processPath: *mut crate::fwp::FWP_BYTE_BLOB,
    /// Access token handle.
    pub token: u64,
    /// Process id of the endpoint owner.
    pub processId: u64,
    /// Source interface index.
    pub sourceInterfaceIndex: u32,
    /// Destination interface index.
    pub destinationInterfaceIndex: u32,
    /// Compartment id.
    pub compartmentId: u32,
    /// Inbound fragment data.
    pub fragmentMetadata: FWPS_INBOUND_FRAGMENT_METADATA0,
    /// Path MTU.
    pub pathMtu: u32,
    /// Handle for `FwpsPendOperation0` at the ALE auth layers.
    pub completionHandle: *mut c_void,
    /// Transport endpoint handle.
    pub transportEndpointHandle: u64,
    /// `SCOPE_ID` of the remote address.
    pub remoteScopeId: u32,
    /// `WSACMSGHDR*` control data.
    pub controlData: *mut c_void,
    /// Length of `controlData`.
    pub controlDataLength: u32,
    /// `FWP_DIRECTION` of the packet.
    pub packetDirection: i32,
    /// Header-include header.
    pub headerIncludeHeader: *mut c_void,
    /// Its length.
    pub headerIncludeHeaderLength: u32,
    /// Destination prefix (opaque here).
    pub destinationPrefix: IP_ADDRESS_PREFIX_OPAQUE,
    /// Frame length.
    pub frameLength: u16,
    /// Parent endpoint handle.
    pub parentEndpointHandle: u64,
    /// ICMP id and sequence.
    pub icmpIdAndSequence: u32,
    /// Local redirect target PID.
    pub localRedirectTargetPID: u32,
    /// `SOCKADDR*` original destination.
    pub originalDestination: *mut c_void,
    /// Redirect records handle.
    pub redirectRecords: *mut c_void,
    /// `FWPS_L2_METADATA_FIELD_*` bits.
    pub currentL2MetadataValues: u32,
    /// L2 flags.
    pub l2Flags: u32,
    /// Ethernet MAC header size.
    pub ethernetMacHeaderSize: u32,
    /// Wi-Fi operation mode.
    pub wiFiOperationMode: u32,
    /// vSwitch source port id.
    pub vSwitchSourcePortId: u32,
    /// vSwitch source NIC index.
    pub vSwitchSourceNicIndex: u16,
    /// vSwitch destination port id.
    pub vSwitchDestinationPortId: u32,
    /// vSwitch packet context.
    pub vSwitchPacketContext: *mut c_void,
    /// Sub-process tag.
    pub subProcessTag: *mut c_void,
    /// Reserved.
    pub reserved1: u64,
}

impl FWPS_INCOMING_METADATA_VALUES0 {
    /// All fields absent: what a test or the simulator starts from.
    pub const EMPTY: Self = Self {
        currentMetadataValues: 0,
        flags: 0,
        reserved: 0,
        discardMetadata: FWPS_DISCARD_METADATA0 { discardModule: 0, discardReason: 0, filterId: 0 },
        flowHandle: 0,
        ipHeaderSize: 0,
        transportHeaderSize: 0,
        processPath: core::ptr::null_mut(),
        token: 0,
        processId: 0,
        sourceInterfaceIndex: 0,
        destinationInterfaceIndex: 0,
        compartmentId: 0,
        fragmentMetadata: FWPS_INBOUND_FRAGMENT_METADATA0 {
            fragmentIdentification: 0,
            fragmentOffset: 0,
            fragmentLength: 0,
        },
        pathMtu: 0,
        completionHandle: core::ptr::null_mut(),
        transportEndpointHandle: 0,
        remoteScopeId: 0,
        controlData: core::ptr::null_mut(),
        controlDataLength: 0,
        packetDirection: 0,
        headerIncludeHeader: core::ptr::null_mut(),
        headerIncludeHeaderLength: 0,
        destinationPrefix: IP_ADDRESS_PREFIX_OPAQUE { bytes: [0; 32] },
        frameLength: 0,
        parentEndpointHandle: 0,
        icmpIdAndSequence: 0,
        localRedirectTargetPID: 0,
        originalDestination: core::ptr::null_mut(),
        redirectRecords: core::ptr::null_mut(),
        currentL2MetadataValues: 0,
        l2Flags: 0,
        ethernetMacHeaderSize: 0,
        wiFiOperationMode: 0,
        vSwitchSourcePortId: 0,
        vSwitchSourceNicIndex: 0,
        vSwitchDestinationPortId: 0,
        vSwitchPacketContext: core::ptr::null_mut(),
        subProcessTag: core::ptr::null_mut(),
        reserved1: 0,
    };
}
