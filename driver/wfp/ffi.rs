//! Every filter-engine (fwpkclnt.sys) and NDIS function the driver calls,
//! declared once, with the engine's types (`fwps-types`), and the safe
//! types the rest of the driver calls them through, so no code above this
//! layer passes the engine a pointer: the device object callouts register
//! with (`DeviceObject`), the injection handle and list pool (`Injection`),
//! a packet's deep copy with its injections and their completion
//! (`PacketCopy`), and a management session with its transactions, adds
//! and deletes (`EngineHandle`, `EngineSlot`). What the engine lends or
//! returns is read through `filter_view`.
//!
//! On Windows these resolve to fwpkclnt.sys and ndis.sys through
//! `raw-dylib` imports (no import libraries needed, which is also what lets
//! the Linux cross-check link a PE image). Everywhere else the simulated
//! kernel crate defines the same `extern "system"` symbols, so the driver's
//! code is identical on both sides of the boundary.
#![allow(unsafe_code, non_snake_case, non_camel_case_types, missing_docs)]

pub use crate::platform::kernel::HANDLE;
pub use fwps_types::*;

use crate::platform::kernel::{IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool};
use crate::platform::pool::{PoolBox, PoolSlice, PoolTag};
use crate::platform::status::{NtStatus, Result};
use core::ffi::c_void;
use core::marker::PhantomData;
use core::net::IpAddr;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
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
pub struct DeviceObject(NonNull<c_void>);

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
        NonNull::new(device).map(Self)
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
pub fn callout_register(device: DeviceObject, callout: &FWPS_CALLOUT2) -> Result<u32> {
    let mut id = 0u32;
    // SAFETY: a live device object (`DeviceObject`'s invariant); `callout`
    // and `id` are valid for the call, and FWPS_CALLOUT2 holds no pointer
    // but the callbacks' (called by the engine, not by us).
    let status = unsafe { FwpsCalloutRegister2(device.as_raw(), callout, &mut id) };
    NtStatus::to_result(status).map(|()| id)
}

/// `FwpsCalloutUnregisterById0`: plain values only (PASSIVE_LEVEL);
/// `STATUS_DEVICE_BUSY` while flow contexts remain, `CALLOUT_NOT_FOUND`
/// for an id not registered.
pub fn callout_unregister_by_id(id: u32) -> NTSTATUS {
    // SAFETY: no pointers; the engine validates the id.
    unsafe { FwpsCalloutUnregisterById0(id) }
}

/// `NET_BUFFER_LIST_POOL_PARAMETERS`, revision 1 (ndis/nblapi.h).
#[repr(C)]
struct NetBufferListPoolParameters {
    /// `NDIS_OBJECT_HEADER`: Type, Revision, Size.
    header_type: u8,
    header_revision: u8,
    header_size: u16,
    protocol_id: u8,
    allocate_net_buffer: u8,
    context_size: u16,
    pool_tag: u32,
    data_size: u32,
}

/// Our packet injection handle and `NET_BUFFER_LIST` pool, where classify,
/// the packet copies and the injections reach them.
///
/// # Invariants
/// `handle` is NULL or a live handle from `FwpsInjectionHandleCreate0`, and
/// `pool` NULL or a live pool from `NdisAllocateNetBufferListPool`; each is
/// taken out (swapped to NULL) before it is destroyed or freed. `lists`
/// counts the lists from `pool` not yet freed (a [`PacketCopy`] adds its
/// list when it builds it and takes it off when it frees it), and the pool
/// is freed only when it is zero. The driver opens them in load before its
/// callouts are registered and closes them in unload after they are
/// unregistered and every pended request is completed, so nothing uses one
/// while it goes.
pub struct Injection {
    handle: AtomicPtr<c_void>,
    pool: AtomicPtr<c_void>,
    lists: AtomicUsize,
}

/// How long [`Injection::close`] waits for the stack to complete our
/// injections when destroying the handle did not (100-ns units: 10 s,
/// looked at every 1 ms).
const LISTS_WAIT: i64 = 100_000_000;
const LISTS_POLL: i64 = 10_000;

/// A live injection handle, borrowed from [`Injection`]: only
/// [`Injection::handle`] makes one.
#[derive(Clone, Copy)]
pub struct InjectionHandle<'a> {
    raw: NonNull<c_void>,
    _injection: PhantomData<&'a Injection>,
}

impl InjectionHandle<'_> {
    /// The handle, for the engine.
    pub fn as_raw(self) -> HANDLE {
        self.raw.as_ptr()
    }
}

impl Injection {
    /// Closed (const: it lives in a static).
    pub const fn new() -> Self {
        Self {
            handle: AtomicPtr::new(core::ptr::null_mut()),
            pool: AtomicPtr::new(core::ptr::null_mut()),
            lists: AtomicUsize::new(0),
        }
    }

    /// `FwpsInjectionHandleCreate0` for `address_family` and `injection_type`
    /// (`FWPS_INJECTION_TYPE_*`), kept until [`Injection::close`].
    /// PASSIVE_LEVEL.
    pub fn create_handle(&self, address_family: u16, injection_type: u32) -> Result {
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: plain values and an out-pointer valid for the call; PASSIVE_LEVEL.
        let status = unsafe { FwpsInjectionHandleCreate0(address_family, injection_type, &mut handle) };
        NtStatus::to_result(status)?;
        // INVARIANT: a live handle the engine just created.
        self.handle.store(handle, Ordering::Release);
        Ok(())
    }

    /// `NdisAllocateNetBufferListPool` of lists with a `NET_BUFFER` each and
    /// no context, under `tag`, kept until [`Injection::close`];
    /// `STATUS_INSUFFICIENT_RESOURCES` when NDIS has none.
    pub fn allocate_list_pool(&self, tag: u32) -> Result {
        let parameters = NetBufferListPoolParameters {
            header_type: 0x80, // NDIS_OBJECT_TYPE_DEFAULT
            header_revision: 1,
            header_size: size_of::<NetBufferListPoolParameters>() as u16,
            protocol_id: 0,
            allocate_net_buffer: 1,
            context_size: 0,
            pool_tag: tag,
            data_size: 0,
        };
        // SAFETY: parameters valid for the call; no NDIS handle (optional).
        let pool =
            unsafe { NdisAllocateNetBufferListPool(core::ptr::null_mut(), (&raw const parameters).cast::<c_void>()) };
        if pool.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // INVARIANT: a live pool NDIS just allocated.
        self.pool.store(pool, Ordering::Release);
        Ok(())
    }

    /// Destroys the handle (a failed destroy is retried a few times, like
    /// the session's close), then frees the pool once every list from it is
    /// freed. Destroying the handle returns only after our pending
    /// injections are completed (their completions free the lists), but a
    /// failed destroy waits for nothing and a completion may come later,
    /// from another thread: then this waits for the lists (PASSIVE_LEVEL),
    /// and if the stack still holds some after [`LISTS_WAIT`] the pool is
    /// left allocated (a leak) rather than freed under them. Unload, after
    /// the callouts are unregistered and every request is completed.
    pub fn close(&self) {
        // INVARIANT: taken out before it is destroyed.
        let handle = self.handle.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !handle.is_null() {
            let _ = crate::platform::status::retry_teardown("FwpsInjectionHandleDestroy0", 3, || {
                // SAFETY: our live handle (the type's invariant), destroyed
                // at most once successfully (a failed destroy leaves it
                // alive); PASSIVE_LEVEL.
                unsafe { FwpsInjectionHandleDestroy0(handle) }
            });
        }
        self.wait_for_lists();
        // INVARIANT: taken out before it is freed.
        let pool = self.pool.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if pool.is_null() {
            return;
        }
        let lists = self.lists.load(Ordering::Acquire);
        if lists != 0 {
            crate::log!(
                crate::platform::log::Level::Error,
                "{} packet list(s) still held by the stack: the list pool is left allocated",
                lists
            );
            return;
        }
        // SAFETY: our live pool (the type's invariant), freed once; no list
        // from it is left (`lists` is zero, and no new one is built: the
        // requests are gone and the pool pointer is taken out).
        unsafe { NdisFreeNetBufferListPool(pool) };
    }

    /// Waits (PASSIVE_LEVEL, polling) until no list from the pool is left,
    /// for up to [`LISTS_WAIT`]; returns how many are left then. Once every
    /// copy is completed or freed (unload), the lists left are injections
    /// the stack has not completed yet.
    pub fn wait_for_lists(&self) -> usize {
        let mut waited = 0;
        while self.lists.load(Ordering::Acquire) != 0 && waited < LISTS_WAIT {
            crate::platform::kernel::sleep_100ns(LISTS_POLL);
            waited += LISTS_POLL;
        }
        self.lists.load(Ordering::Acquire)
    }

    /// The handle, while open.
    pub fn handle(&self) -> Option<InjectionHandle<'_>> {
        let raw = NonNull::new(self.handle.load(Ordering::Acquire))?;
        Some(InjectionHandle { raw, _injection: PhantomData })
    }

    /// Whether both the handle and the pool are open.
    pub fn is_open(&self) -> bool {
        self.handle().is_some() && !self.pool.load(Ordering::Acquire).is_null()
    }
}

impl Default for Injection {
    fn default() -> Self {
        Self::new()
    }
}

/// `FWPS_TRANSPORT_SEND_PARAMS1` (x64).
#[repr(C)]
struct TransportSendParams1 {
    remote_address: *const u8,
    remote_scope_id: u32,
    control_data: *const c_void,
    control_data_length: u32,
    header_include_header: *const c_void,
    header_include_header_length: u32,
}

// x64 offsets of FWPS_TRANSPORT_SEND_PARAMS1 (fwpsk.h: pointer, SCOPE_ID
// (a ULONG), pointer, ULONG, pointer, ULONG).
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, remote_scope_id) == 8);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, control_data) == 16);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, control_data_length) == 24);
const _: () = assert!(core::mem::offset_of!(TransportSendParams1, header_include_header) == 32);
const _: () = assert!(size_of::<TransportSendParams1>() == 48);

/// A packet copy's record (the injection's completion context).
pub const TAG_PACKET_COPY_RECORD: PoolTag = PoolTag::new(*b"WfPc");

/// A deep copy of a packet: our bytes, the MDL over them and the list
/// `FwpsAllocateNetBufferAndNetBufferList0` made over that, with what a
/// send injection needs kept alive until it completes (a datagram's socket
/// control data, its remote address and the send parameters pointing at
/// them), and `held`, which the copy keeps until it is freed (the copy
/// budget's reservation). Dropping it frees the list, then the MDL, then
/// the rest. It lives in pool ([`PacketCopy::try_new`]); an injection gives
/// it to the engine and the completion takes it back and frees it.
///
/// # Invariants
/// `mdl` is `None` or our MDL over all of `data`, built for non-paged pool;
/// `nbl` is `None` or our list over `mdl` from [`Injection`]'s pool (which
/// outlives it: that type's invariant), counted in that pool's `lists`
/// (`pool_lists`) until it is freed; `send_args` points at nothing
/// (NULL) except while an injection of this very value, in its pool block,
/// is in flight.
pub struct PacketCopy<H> {
    nbl: Option<NonNull<c_void>>,
    /// The count of live lists of the pool `nbl` comes from (set with it).
    pool_lists: Option<&'static AtomicUsize>,
    mdl: Option<NonNull<c_void>>,
    data: PoolSlice<u8>,
    control: Option<PoolSlice<u8>>,
    remote: [u8; 16],
    send_args: TransportSendParams1,
    _held: H,
}

// SAFETY: the MDL and list are ours alone (no other value names them), and
// `send_args`' pointers are NULL or point into this same value; sending it
// sends all of it.
unsafe impl<H: Send> Send for PacketCopy<H> {}
// SAFETY: through `&PacketCopy` nothing is written and no pointer is
// dereferenced: the one `&self` method returns the list's address, so
// threads sharing a reference only read plain fields.
unsafe impl<H: Sync> Sync for PacketCopy<H> {}

impl<H> PacketCopy<H> {
    /// A copy of `data` (to be filled through [`PacketCopy::bytes_mut`]) and
    /// `control` in pool, without its MDL and list yet.
    pub fn try_new(data: PoolSlice<u8>, control: Option<PoolSlice<u8>>, held: H) -> Result<PoolBox<Self>> {
        let send_args = TransportSendParams1 {
            remote_address: core::ptr::null(),
            remote_scope_id: 0,
            control_data: core::ptr::null(),
            control_data_length: 0,
            header_include_header: core::ptr::null(),
            header_include_header_length: 0,
        };
        // INVARIANT: no MDL, no list, no pointers.
        let copy =
            Self { nbl: None, pool_lists: None, mdl: None, data, control, remote: [0; 16], send_args, _held: held };
        PoolBox::try_new(copy, TAG_PACKET_COPY_RECORD)
    }

    /// The packet's bytes, to copy the packet into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Describes the bytes with an MDL (`IoAllocateMdl`,
    /// `MmBuildMdlForNonPagedPool`) and a list over it from `injection`'s
    /// pool (`FwpsAllocateNetBufferAndNetBufferList0`). Once only; fails
    /// when the pool is closed or either allocation fails (what was
    /// allocated goes with the copy).
    pub fn build_list(&mut self, injection: &'static Injection) -> Result {
        let pool = injection.pool.load(Ordering::Acquire);
        let Ok(len) = u32::try_from(self.data.len()) else { return Err(NtStatus::INVALID_PARAMETER) };
        if pool.is_null() || self.mdl.is_some() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // SAFETY: `len` bytes of our non-paged buffer, which outlives the
        // MDL (both belong to this copy; the MDL is freed first).
        let mdl = unsafe { IoAllocateMdl(self.data.as_mut_ptr().cast(), len, 0, 0, core::ptr::null_mut()) };
        let mdl = NonNull::new(mdl).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: our MDL over all of `data`, built next.
        self.mdl = Some(mdl);
        // SAFETY: our MDL over non-paged pool, just allocated.
        unsafe { MmBuildMdlForNonPagedPool(mdl.as_ptr()) };
        let mut nbl: *mut c_void = core::ptr::null_mut();
        // SAFETY: a live pool (`Injection`'s invariant) and our built MDL;
        // `len` bytes from offset 0 are in it; the out-pointer is valid.
        let status =
            unsafe { FwpsAllocateNetBufferAndNetBufferList0(pool, 0, 0, mdl.as_ptr(), 0, len as usize, &mut nbl) };
        NtStatus::to_result(status)?;
        let nbl = NonNull::new(nbl).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // INVARIANT: a live list over our MDL, owned by the copy, counted
        // in its pool's lists until it is freed.
        injection.lists.fetch_add(1, Ordering::AcqRel);
        self.pool_lists = Some(&injection.lists);
        self.nbl = Some(nbl);
        Ok(())
    }

    /// The copy's list (NULL before [`PacketCopy::build_list`]), as
    /// `FwpsCompleteOperation0` takes it (only `PendedOperation::complete`
    /// passes it on, while it borrows the copy).
    pub(crate) fn net_buffer_list(&self) -> *mut c_void {
        self.nbl.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    /// `FwpsInjectTransportReceiveAsync0`: injects the copy into the receive
    /// path on `interface_index`/`sub_interface_index`. On success the
    /// completion frees it; otherwise it is freed here. The status.
    pub fn inject_receive(
        this: PoolBox<Self>,
        handle: InjectionHandle<'_>,
        (family, compartment): (u16, u32),
        interface_index: u32,
        sub_interface_index: u32,
    ) -> NTSTATUS {
        let Some(nbl) = this.nbl else { return NtStatus::INVALID_PARAMETER.raw() };
        // The copy travels as the completion context; the completion frees it.
        let raw = this.into_raw();
        // SAFETY: a live handle (`InjectionHandle`) and our live list; the
        // copy, given away above, is taken back by `injection_complete`
        // (same type and tag) once the injection is done, or below if the
        // injection fails.
        let status = unsafe {
            FwpsInjectTransportReceiveAsync0(
                handle.as_raw(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
                family,
                compartment,
                interface_index,
                sub_interface_index,
                nbl.as_ptr(),
                Some(injection_complete::<H>),
                raw.as_ptr().cast(),
            )
        };
        Self::failed(raw, status)
    }

    /// `FwpsInjectTransportSendAsync1`: injects the copy (a datagram from
    /// its transport header) into the send path of socket `endpoint`
    /// towards `remote`, with the control data copied at classify. On
    /// success the completion frees it; otherwise it is freed here. The
    /// status.
    pub fn inject_send(
        mut this: PoolBox<Self>,
        handle: InjectionHandle<'_>,
        (family, compartment): (u16, u32),
        endpoint: u64,
        (remote, scope_id): (IpAddr, u32),
    ) -> NTSTATUS {
        let Some(nbl) = this.nbl else { return NtStatus::INVALID_PARAMETER.raw() };
        let copy = &mut *this;
        match remote {
            IpAddr::V4(v4) => {
                if let Some(bytes) = copy.remote.get_mut(..4) {
                    bytes.copy_from_slice(&v4.octets());
                }
            }
            IpAddr::V6(v6) => copy.remote = v6.octets(),
        }
        // INVARIANT: the pointers name this value's own fields, in its pool
        // block, which does not move until the completion frees it.
        copy.send_args.remote_address = copy.remote.as_ptr();
        copy.send_args.remote_scope_id = scope_id;
        if let Some(control) = &copy.control {
            copy.send_args.control_data = control.as_ptr().cast();
            copy.send_args.control_data_length = u32::try_from(control.len()).unwrap_or(0);
        }
        let send_args = (&raw const copy.send_args).cast::<c_void>();
        // The copy travels as the completion context; the completion frees it.
        let raw = this.into_raw();
        // SAFETY: a live handle (`InjectionHandle`), the socket classify
        // named, our live list, and send parameters (with the remote
        // address and control data they point to) that live in the copy
        // until the completion, `injection_complete` (same type and tag),
        // takes it back and frees it, or below if the injection fails.
        let status = unsafe {
            FwpsInjectTransportSendAsync1(
                handle.as_raw(),
                core::ptr::null_mut(),
                endpoint,
                0,
                send_args,
                family,
                compartment,
                nbl.as_ptr(),
                Some(injection_complete::<H>),
                raw.as_ptr().cast(),
            )
        };
        Self::failed(raw, status)
    }

    /// After an injection call: on failure the engine did not take the
    /// copy, so it is freed here. The status, either way.
    fn failed(raw: NonNull<Self>, status: NTSTATUS) -> NTSTATUS {
        if status < 0 {
            // SAFETY: from `into_raw` with this type's tag just before the
            // failed injection, which did not take it (no completion runs).
            drop(unsafe { PoolBox::from_raw(raw, TAG_PACKET_COPY_RECORD) });
        }
        status
    }
}

impl<H> Drop for PacketCopy<H> {
    fn drop(&mut self) {
        if let Some(nbl) = self.nbl.take() {
            // SAFETY: our live list (the type's invariant), freed once here.
            unsafe { FwpsFreeNetBufferList0(nbl.as_ptr()) };
            if let Some(lists) = self.pool_lists.take() {
                lists.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Some(mdl) = self.mdl.take() {
            // SAFETY: our live MDL (the type's invariant); no list uses it
            // any more.
            unsafe { IoFreeMdl(mdl.as_ptr()) };
        }
    }
}

/// An injection's completion (`FWPS_INJECT_COMPLETE0`): the stack is done
/// with the copy, which is freed.
///
/// # Safety
/// Called by the stack once per successful injection with `context`, the
/// `PacketCopy<H>` that [`PacketCopy::inject_receive`] or
/// [`PacketCopy::inject_send`] gave away.
unsafe extern "system" fn injection_complete<H>(
    context: *mut c_void,
    _net_buffer_list: *mut c_void,
    _dispatch_level: u8,
) {
    // `dispatchLevel` only says at which IRQL we run; freeing works at either.
    if let Some(raw) = NonNull::new(context.cast::<PacketCopy<H>>()) {
        // SAFETY: the context is the copy an injection gave away with
        // `into_raw` (same type, tag TAG_PACKET_COPY_RECORD); the stack calls
        // this once (this function's contract).
        drop(unsafe { PoolBox::from_raw(raw, TAG_PACKET_COPY_RECORD) });
    }
}

/// A management object's display name and description: static,
/// NUL-terminated UTF-16 (what `crate::wide!` makes), so the engine reads
/// them in bounds.
///
/// # Invariants
/// Both slices end with a NUL.
#[derive(Clone, Copy, Debug)]
pub struct DisplayStrings {
    name: &'static [u16],
    description: &'static [u16],
}

impl DisplayStrings {
    /// The strings given; one without its NUL is replaced by the empty
    /// string (never read past its end).
    pub fn new(name: &'static [u16], description: &'static [u16]) -> Self {
        const EMPTY: &[u16] = &[0];
        let terminated = |text: &'static [u16]| if text.last() == Some(&0) { text } else { EMPTY };
        // INVARIANT: each slice ends with a NUL (checked, or EMPTY).
        Self { name: terminated(name), description: terminated(description) }
    }

    /// `FWPM_DISPLAY_DATA0` over them: the engine only reads display
    /// strings; the casts drop a const the windows-sys type does not carry.
    fn raw(self) -> fwp::FWPM_DISPLAY_DATA0 {
        fwp::FWPM_DISPLAY_DATA0 {
            name: self.name.as_ptr().cast_mut(),
            description: self.description.as_ptr().cast_mut(),
        }
    }
}

/// A provider to add (`FWPM_PROVIDER0` without provider data or service).
pub struct ProviderObject {
    /// Its key.
    pub key: GUID,
    /// Its name and description.
    pub display: DisplayStrings,
    /// `FWPM_PROVIDER_FLAG_*`.
    pub flags: u32,
}

/// A sublayer to add (`FWPM_SUBLAYER0` without provider data).
pub struct SublayerObject {
    /// Its key.
    pub key: GUID,
    /// Its name and description.
    pub display: DisplayStrings,
    /// `FWPM_SUBLAYER_FLAG_*`.
    pub flags: u32,
    /// The provider it belongs to.
    pub provider: &'static GUID,
    /// Its weight among sublayers.
    pub weight: u16,
}

/// A management callout to add (`FWPM_CALLOUT0` without provider data).
pub struct CalloutObject {
    /// Its key (the one our `FWPS_CALLOUT2` registers).
    pub key: GUID,
    /// Its name and description.
    pub display: DisplayStrings,
    /// `FWPM_CALLOUT_FLAG_*`.
    pub flags: u32,
    /// The provider it belongs to.
    pub provider: &'static GUID,
    /// The layer its filters are in.
    pub layer: GUID,
}

/// An open `FwpmEngineOpen0` session, owned: only [`EngineHandle::open`]
/// makes one and [`EngineHandle::close`] consumes it (giving it back if the
/// close fails), and it cannot be copied, so a handle cannot outlive its
/// close or be forged from an integer. All its calls run at PASSIVE_LEVEL.
///
/// # Invariants
/// `0` is a session handle from `FwpmEngineOpen0`, not closed.
#[derive(Debug, PartialEq, Eq)]
pub struct EngineHandle(NonNull<c_void>);

impl EngineHandle {
    /// `FwpmEngineOpen0` of a (non-dynamic) local session named by
    /// `display`, authenticated with `RPC_C_AUTHN_WINNT`; `None` if the
    /// engine succeeds without a handle.
    pub fn open(display: DisplayStrings) -> Result<Option<Self>> {
        let session = fwp::FWPM_SESSION0 { displayData: display.raw(), ..fwp::FWPM_SESSION0::default() };
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: the session (its display strings NUL-terminated statics,
        // `DisplayStrings`' invariant) and the out-pointer are valid for the
        // call; no server name or identity.
        let status =
            unsafe { FwpmEngineOpen0(core::ptr::null(), RPC_C_AUTHN_WINNT, core::ptr::null(), &session, &mut handle) };
        NtStatus::to_result(status)?;
        // INVARIANT: a session the engine just opened.
        Ok(NonNull::new(handle).map(Self))
    }

    /// `FwpmEngineClose0`; on failure the session stays open and is given
    /// back (to retry).
    pub fn close(self) -> core::result::Result<(), (Self, NtStatus)> {
        // SAFETY: an open session (the type's invariant), closed once: it is
        // consumed here, and given back only if it stayed open.
        let status = unsafe { FwpmEngineClose0(self.raw()) };
        NtStatus::to_result(status).map_err(|status| (self, status))
    }

    /// The handle, for the engine's calls.
    pub(crate) fn raw(&self) -> HANDLE {
        self.0.as_ptr()
    }

    /// `FwpmTransactionBegin0`: a read-write transaction on the session.
    pub fn begin_transaction(&self) -> Result {
        // SAFETY: an open session (the type's invariant); plain flags.
        NtStatus::to_result(unsafe { FwpmTransactionBegin0(self.raw(), 0) })
    }

    /// `FwpmTransactionCommit0` (with no transaction the engine says so).
    pub fn commit_transaction(&self) -> Result {
        // SAFETY: an open session (the type's invariant).
        NtStatus::to_result(unsafe { FwpmTransactionCommit0(self.raw()) })
    }

    /// `FwpmTransactionAbort0` (with no transaction the engine says so).
    pub fn abort_transaction(&self) -> Result {
        // SAFETY: an open session (the type's invariant).
        NtStatus::to_result(unsafe { FwpmTransactionAbort0(self.raw()) })
    }

    /// `FwpmProviderAdd0` (no security descriptor): its status.
    pub fn add_provider(&self, provider: &ProviderObject) -> NTSTATUS {
        let raw = fwp::FWPM_PROVIDER0 {
            providerKey: provider.key,
            displayData: provider.display.raw(),
            flags: provider.flags,
            ..fwp::FWPM_PROVIDER0::default()
        };
        // SAFETY: an open session; `raw` and the display strings it points
        // to (NUL-terminated statics) are valid for the call.
        unsafe { FwpmProviderAdd0(self.raw(), &raw, core::ptr::null()) }
    }

    /// `FwpmProviderDeleteByKey0`: its status.
    pub fn delete_provider(&self, key: &GUID) -> NTSTATUS {
        // SAFETY: an open session; the key is valid for the call.
        unsafe { FwpmProviderDeleteByKey0(self.raw(), key) }
    }

    /// `FwpmSubLayerAdd0` (no security descriptor): its status.
    pub fn add_sublayer(&self, sublayer: &SublayerObject) -> NTSTATUS {
        let raw = fwp::FWPM_SUBLAYER0 {
            subLayerKey: sublayer.key,
            displayData: sublayer.display.raw(),
            providerKey: core::ptr::from_ref(sublayer.provider).cast_mut(),
            weight: sublayer.weight,
            flags: sublayer.flags,
            ..fwp::FWPM_SUBLAYER0::default()
        };
        // SAFETY: an open session; `raw`, its display strings and the
        // provider key it points to (statics) are valid for the call, which
        // only reads them.
        unsafe { FwpmSubLayerAdd0(self.raw(), &raw, core::ptr::null()) }
    }

    /// `FwpmSubLayerDeleteByKey0`: its status.
    pub fn delete_sublayer(&self, key: &GUID) -> NTSTATUS {
        // SAFETY: an open session; the key is valid for the call.
        unsafe { FwpmSubLayerDeleteByKey0(self.raw(), key) }
    }

    /// `FwpmCalloutAdd0` (no security descriptor, id not asked for): its
    /// status.
    pub fn add_callout(&self, callout: &CalloutObject) -> NTSTATUS {
        let raw = fwp::FWPM_CALLOUT0 {
            calloutKey: callout.key,
            displayData: callout.display.raw(),
            flags: callout.flags,
            providerKey: core::ptr::from_ref(callout.provider).cast_mut(),
            applicableLayer: callout.layer,
            ..fwp::FWPM_CALLOUT0::default()
        };
        // SAFETY: an open session; `raw`, its display strings and the
        // provider key it points to (statics) are valid for the call, which
        // only reads them.
        unsafe { FwpmCalloutAdd0(self.raw(), &raw, core::ptr::null(), core::ptr::null_mut()) }
    }

    /// `FwpmCalloutDeleteByKey0`: its status (IN_USE while filters name it).
    pub fn delete_callout(&self, key: &GUID) -> NTSTATUS {
        // SAFETY: an open session; the key is valid for the call.
        unsafe { FwpmCalloutDeleteByKey0(self.raw(), key) }
    }
}

/// Where the driver keeps its session between load and unload (the global
/// state holds one).
///
/// # Invariants
/// Holds NULL or the handle of an open session it owns (only
/// [`EngineSlot::store`] puts one in, from an [`EngineHandle`]), so what
/// [`EngineSlot::take`] returns is one.
pub struct EngineSlot(AtomicPtr<c_void>);

impl EngineSlot {
    /// Empty (const: it lives in the driver's static state).
    pub const fn new() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Keeps `engine` until [`EngineSlot::take`]; a session kept already is
    /// given back to be closed (`Some`).
    #[must_use]
    pub fn replace(&self, engine: EngineHandle) -> Option<EngineHandle> {
        let EngineHandle(raw) = engine;
        let raw = raw.as_ptr();
        // INVARIANT: an open session's handle, owned by the slot from here.
        let old = self.0.swap(raw, Ordering::AcqRel);
        NonNull::new(old).map(EngineHandle)
    }

    /// The session kept, if any, leaving the slot empty.
    pub fn take(&self) -> Option<EngineHandle> {
        // INVARIANT: the slot gives its session away, keeping none.
        NonNull::new(self.0.swap(core::ptr::null_mut(), Ordering::AcqRel)).map(EngineHandle)
    }

    /// Whether a session is kept.
    pub fn is_open(&self) -> bool {
        !self.0.load(Ordering::Acquire).is_null()
    }
}

impl Default for EngineSlot {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::DisplayStrings;

    #[test]
    fn display_strings_without_their_nul_are_empty() {
        let named = DisplayStrings::new(crate::wide!("name"), crate::wide!("description"));
        assert_eq!(named.name, crate::wide!("name"));
        assert_eq!(named.description, crate::wide!("description"));
        static UNTERMINATED: [u16; 2] = [0x61, 0x62];
        let unterminated = DisplayStrings::new(&UNTERMINATED, &[]);
        assert_eq!(unterminated.name, &[0]);
        assert_eq!(unterminated.description, &[0]);
    }
}
