//! Every filter-engine (fwpkclnt.sys) and NDIS function the driver calls,
//! declared once, with the engine's types (`fwps-types`).
//!
//! On Windows these resolve to fwpkclnt.sys and ndis.sys through
//! `raw-dylib` imports (no import libraries needed, which is also what lets
//! the Linux cross-check link a PE image). Everywhere else the simulated
//! kernel crate defines the same `extern "system"` symbols, so the driver's
//! code is identical on both sides of the boundary.
#![allow(unsafe_code, non_snake_case, non_camel_case_types, missing_docs)]

pub use crate::platform::kernel::HANDLE;
pub use fwps_types::*;

use core::ffi::c_void;
use fwps_types::fwp::{
    FWPM_CALLOUT0, FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER0, FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER0, FWPM_SESSION0,
    FWPM_SUBLAYER0,
};

#[cfg_attr(windows, link(name = "ndis.sys", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    /// Moves a NET_BUFFER's data start back (towards the IP header).
    pub fn NdisRetreatNetBufferDataStart(
        NetBuffer: *mut c_void,
        DataOffsetDelta: u32,
        DataBackFill: u32,
        AllocateMdlHandler: *mut c_void,
    ) -> i32;
    /// Moves it forward again.
    pub fn NdisAdvanceNetBufferDataStart(
        NetBuffer: *mut c_void,
        DataOffsetDelta: u32,
        FreeMdl: u8,
        FreeMdlHandler: *mut c_void,
    );
    /// `BytesNeeded` contiguous bytes from the data start: a pointer into
    /// the buffer or `Storage` (filled), NULL if the buffer holds fewer.
    pub fn NdisGetDataBuffer(
        NetBuffer: *mut c_void,
        BytesNeeded: u32,
        Storage: *mut c_void,
        AlignMultiple: u32,
        AlignOffset: u32,
    ) -> *mut c_void;
    /// A NET_BUFFER_LIST pool (`Parameters`: NET_BUFFER_LIST_POOL_PARAMETERS); NULL on failure.
    pub fn NdisAllocateNetBufferListPool(NdisHandle: *mut c_void, Parameters: *const c_void) -> *mut c_void;
    /// Frees it (every list from it freed first).
    pub fn NdisFreeNetBufferListPool(PoolHandle: *mut c_void);
}

#[cfg_attr(windows, link(name = "fwpkclnt.sys", kind = "raw-dylib", modifiers = "+verbatim"))]
unsafe extern "system" {
    /// Registers a callout with the filter engine (PASSIVE_LEVEL).
    pub fn FwpsCalloutRegister2(
        deviceObject: *mut c_void,
        callout: *const FWPS_CALLOUT2,
        calloutId: *mut u32,
    ) -> NTSTATUS;
    /// Pends the current ALE classification (<= DISPATCH_LEVEL).
    pub fn FwpsPendOperation0(completionHandle: HANDLE, completionContext: *mut HANDLE) -> NTSTATUS;
    /// Completes a pended operation exactly once (<= DISPATCH_LEVEL).
    pub fn FwpsCompleteOperation0(completionContext: HANDLE, netBufferList: *mut c_void);
    /// Attaches our context to a flow (<= DISPATCH_LEVEL).
    pub fn FwpsFlowAssociateContext0(flowId: u64, layerId: u16, calloutId: u32, flowContext: u64) -> NTSTATUS;
    /// Detaches it: SUCCESS (flowDeleteFn ran), PENDING (it runs later),
    /// UNSUCCESSFUL (none).
    pub fn FwpsFlowRemoveContext0(flowId: u64, layerId: u16, calloutId: u32) -> NTSTATUS;
    /// Creates an injection handle (PASSIVE_LEVEL).
    pub fn FwpsInjectionHandleCreate0(addressFamily: u16, flags: u32, injectionHandle: *mut HANDLE) -> NTSTATUS;
    /// Destroys it (PASSIVE_LEVEL).
    pub fn FwpsInjectionHandleDestroy0(injectionHandle: HANDLE) -> NTSTATUS;
    /// Clones a packet (<= DISPATCH_LEVEL).
    pub fn FwpsAllocateCloneNetBufferList0(
        originalNetBufferList: *mut c_void,
        netBufferListPoolHandle: HANDLE,
        netBufferPoolHandle: HANDLE,
        allocateCloneFlags: u32,
        netBufferList: *mut *mut c_void,
    ) -> NTSTATUS;
    /// Frees a clone (<= DISPATCH_LEVEL).
    pub fn FwpsFreeCloneNetBufferList0(netBufferList: *mut c_void, freeCloneFlags: u32);
    /// A NET_BUFFER_LIST over our own memory (an MDL chain): a deep copy
    /// of a packet (<= DISPATCH_LEVEL).
    pub fn FwpsAllocateNetBufferAndNetBufferList0(
        poolHandle: HANDLE,
        contextSize: u16,
        contextBackFill: u16,
        mdlChain: *mut c_void,
        dataOffset: u32,
        dataLength: usize,
        netBufferList: *mut *mut c_void,
    ) -> NTSTATUS;
    /// Frees a list from `FwpsAllocateNetBufferAndNetBufferList0` (<= DISPATCH_LEVEL).
    pub fn FwpsFreeNetBufferList0(netBufferList: *mut c_void);
    /// Injects a packet into the receive path (<= DISPATCH_LEVEL).
    pub fn FwpsInjectTransportReceiveAsync0(
        injectionHandle: HANDLE,
        injectionContext: HANDLE,
        reserved: *mut c_void,
        flags: u32,
        addressFamily: u16,
        compartmentId: u32,
        interfaceIndex: u32,
        subInterfaceIndex: u32,
        netBufferList: *mut c_void,
        completionFn: Option<unsafe extern "system" fn(*mut c_void, *mut c_void, u8)>,
        completionContext: HANDLE,
    ) -> NTSTATUS;
    /// Injects a datagram into the send path of socket `endpointHandle`
    /// (`sendArgs`: FWPS_TRANSPORT_SEND_PARAMS1) (<= DISPATCH_LEVEL).
    pub fn FwpsInjectTransportSendAsync1(
        injectionHandle: HANDLE,
        injectionContext: HANDLE,
        endpointHandle: u64,
        flags: u32,
        sendArgs: *const c_void,
        addressFamily: u16,
        compartmentId: u32,
        netBufferList: *mut c_void,
        completionFn: Option<unsafe extern "system" fn(*mut c_void, *mut c_void, u8)>,
        completionContext: HANDLE,
    ) -> NTSTATUS;
    /// Whether a packet was injected by this handle (<= DISPATCH_LEVEL).
    pub fn FwpsQueryPacketInjectionState0(
        injectionHandle: HANDLE,
        netBufferList: *const c_void,
        injectionContext: *mut HANDLE,
    ) -> i32;
    /// Unregisters it; `STATUS_DEVICE_BUSY` while flow contexts remain.
    pub fn FwpsCalloutUnregisterById0(calloutId: u32) -> NTSTATUS;

    /// Opens a session to the filter engine (PASSIVE_LEVEL, BFE running).
    pub fn FwpmEngineOpen0(
        serverName: *const u16,
        authnService: u32,
        authIdentity: *const c_void,
        session: *const FWPM_SESSION0,
        engineHandle: *mut HANDLE,
    ) -> NTSTATUS;
    /// Closes it.
    pub fn FwpmEngineClose0(engineHandle: HANDLE) -> NTSTATUS;
    /// Starts an explicit transaction on the session.
    pub fn FwpmTransactionBegin0(engineHandle: HANDLE, flags: u32) -> NTSTATUS;
    /// Commits it.
    pub fn FwpmTransactionCommit0(engineHandle: HANDLE) -> NTSTATUS;
    /// Aborts it: nothing added inside it remains.
    pub fn FwpmTransactionAbort0(engineHandle: HANDLE) -> NTSTATUS;
    /// Adds our provider.
    pub fn FwpmProviderAdd0(engineHandle: HANDLE, provider: *const FWPM_PROVIDER0, sd: *const c_void) -> NTSTATUS;
    /// Deletes it.
    pub fn FwpmProviderDeleteByKey0(engineHandle: HANDLE, key: *const GUID) -> NTSTATUS;
    /// Reads a provider (an older install's: is it persistent?); free
    /// `*provider` with `FwpmFreeMemory0`.
    pub fn FwpmProviderGetByKey0(
        engineHandle: HANDLE,
        key: *const GUID,
        provider: *mut *mut FWPM_PROVIDER0,
    ) -> NTSTATUS;
    /// Adds our sublayer.
    pub fn FwpmSubLayerAdd0(engineHandle: HANDLE, subLayer: *const FWPM_SUBLAYER0, sd: *const c_void) -> NTSTATUS;
    /// Deletes it.
    pub fn FwpmSubLayerDeleteByKey0(engineHandle: HANDLE, key: *const GUID) -> NTSTATUS;
    /// Reads a sublayer (an older install's: is it persistent?); free
    /// `*subLayer` with `FwpmFreeMemory0`.
    pub fn FwpmSubLayerGetByKey0(
        engineHandle: HANDLE,
        key: *const GUID,
        subLayer: *mut *mut FWPM_SUBLAYER0,
    ) -> NTSTATUS;
    /// Adds a management callout so filters can name ours.
    pub fn FwpmCalloutAdd0(
        engineHandle: HANDLE,
        callout: *const FWPM_CALLOUT0,
        sd: *const c_void,
        id: *mut u32,
    ) -> NTSTATUS;
    /// Deletes it (fails with IN_USE while filters reference it).
    pub fn FwpmCalloutDeleteByKey0(engineHandle: HANDLE, key: *const GUID) -> NTSTATUS;
    /// Reads a management callout; free `*callout` with `FwpmFreeMemory0`.
    pub fn FwpmCalloutGetByKey0(engineHandle: HANDLE, key: *const GUID, callout: *mut *mut FWPM_CALLOUT0) -> NTSTATUS;
    /// Starts a filter enumeration.
    pub fn FwpmFilterCreateEnumHandle0(
        engineHandle: HANDLE,
        enumTemplate: *const FWPM_FILTER_ENUM_TEMPLATE0,
        enumHandle: *mut HANDLE,
    ) -> NTSTATUS;
    /// Returns up to `numEntriesRequested` filters; free with `FwpmFreeMemory0`.
    pub fn FwpmFilterEnum0(
        engineHandle: HANDLE,
        enumHandle: HANDLE,
        numEntriesRequested: u32,
        entries: *mut *mut *mut FWPM_FILTER0,
        numEntriesReturned: *mut u32,
    ) -> NTSTATUS;
    /// Ends an enumeration.
    pub fn FwpmFilterDestroyEnumHandle0(engineHandle: HANDLE, enumHandle: HANDLE) -> NTSTATUS;
    /// Fetches a provider context by key (for adopted filters).
    pub fn FwpmProviderContextGetByKey2(
        engineHandle: HANDLE,
        key: *const GUID,
        providerContext: *mut *mut FWPM_PROVIDER_CONTEXT2,
    ) -> NTSTATUS;
    /// Frees memory the engine returned; sets `*p` to NULL.
    pub fn FwpmFreeMemory0(p: *mut *mut c_void);
}

/// `FwpsFlowAssociateContext0`: plain values only (the engine stores the
/// context and hands it back to flowDeleteFn; nothing of ours is lent).
pub fn flow_associate_context(flow_id: u64, layer_id: u16, callout_id: u32, context: u64) -> NTSTATUS {
    // SAFETY: no pointers; the engine validates the ids.
    unsafe { FwpsFlowAssociateContext0(flow_id, layer_id, callout_id, context) }
}

/// `FwpsFlowRemoveContext0`: plain values only. flowDeleteFn may run
/// inside the call, so the caller holds no lock flowDeleteFn takes.
pub fn flow_remove_context(flow_id: u64, layer_id: u16, callout_id: u32) -> NTSTATUS {
    // SAFETY: no pointers; the engine validates the ids.
    unsafe { FwpsFlowRemoveContext0(flow_id, layer_id, callout_id) }
}

/// The WDM device object our callouts are registered with: opaque to us,
/// passed through to the engine and never dereferenced here.
///
/// # Invariants
/// A non-NULL `DEVICE_OBJECT` of this driver's that stays alive while the
/// driver is loaded (the control device's, deleted only after the callouts
/// are unregistered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceObject(core::ptr::NonNull<c_void>);

// SAFETY: an opaque address we only pass to the engine; any thread may
// pass it, and nothing of ours reads through it.
unsafe impl Send for DeviceObject {}
// SAFETY: as above: shared, it is only copied.
unsafe impl Sync for DeviceObject {}

impl DeviceObject {
    /// Wraps the framework's device object; `None` for NULL.
    ///
    /// # Safety
    /// `device` is NULL or a `DEVICE_OBJECT` of this driver that stays
    /// alive while the driver is loaded (until after its callouts are
    /// unregistered).
    pub unsafe fn from_raw(device: *mut c_void) -> Option<Self> {
        // INVARIANT: non-NULL, and alive as long as the caller promised.
        core::ptr::NonNull::new(device).map(Self)
    }

    /// The address, for the engine.
    pub fn as_raw(self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// `FwpsCalloutRegister2`: registers `callout` with the device object
/// (PASSIVE_LEVEL); its run-time id on success. The engine copies the
/// structure; the callbacks it names are called by the engine under their
/// own contracts.
pub fn callout_register(device: DeviceObject, callout: &FWPS_CALLOUT2) -> crate::platform::status::Result<u32> {
    let mut id = 0u32;
    // SAFETY: a live device object (`DeviceObject`'s invariant); `callout`
    // and `id` are valid for the call, and FWPS_CALLOUT2 holds no pointer
    // but the callbacks' (called by the engine, not by us).
    let status = unsafe { FwpsCalloutRegister2(device.as_raw(), callout, &mut id) };
    crate::platform::status::NtStatus::to_result(status).map(|()| id)
}

/// `FwpsCalloutUnregisterById0`: plain values only (PASSIVE_LEVEL);
/// `STATUS_DEVICE_BUSY` while flow contexts remain, `CALLOUT_NOT_FOUND`
/// for an id not registered.
pub fn callout_unregister_by_id(id: u32) -> NTSTATUS {
    // SAFETY: no pointers; the engine validates the id.
    unsafe { FwpsCalloutUnregisterById0(id) }
}
