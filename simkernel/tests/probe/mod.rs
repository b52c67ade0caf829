//! Probe callouts: minimal callouts written for conformance tests, so the
//! tests exercise the simulated engine itself, not the wfpcallout driver.
//! Every callback appends to one ordered log the test reads afterwards;
//! what classifyFn answers is set per probe.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::fwp::{FWPM_CALLOUT0, FWPM_FILTER0};
use fwps_types::*;
use std::ffi::c_void;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use wfpcallout_simkernel::engine::{self, FilterAction, FilterSpec};

/// Something a probe callout saw, or a mark the test put in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// notifyFn ADD for a filter.
    Add(u64),
    /// notifyFn DELETE for a filter (with a NULL filterKey, as documented).
    Delete(u64),
    /// notifyFn DELETE for a filter with a non-NULL filterKey (never right).
    DeleteWithKey(u64),
    /// notifyFn with a type the probe does not know.
    OtherNotify(u64, i32),
    /// notifyFn ran at this IRQL.
    NotifyIrql(u8),
    /// classifyFn ran with these rights on entry.
    ClassifyRights(u64, u32),
    /// classifyFn at an ALE auth layer saw these FLAGS and REAUTHORIZE_REASON.
    AuthFields(u64, u32, u32),
    /// classifyFn for a filter.
    Classify(u64),
    /// FwpsFlowAssociateContext0 from classifyFn returned this status.
    Associated(NTSTATUS),
    /// flowDeleteFn for a context.
    FlowDelete(u64),
    /// FwpsPendOperation0 from classifyFn returned this status.
    PendStatus(NTSTATUS),
    /// The test's own mark (e.g. "unregistered").
    Mark(&'static str),
}

static LOG: Mutex<Vec<Event>> = Mutex::new(Vec::new());
/// The IRQL of each classifyFn and flowDeleteFn call, in order (kept
/// apart from the event log, whose order tests compare exactly).
static CLASSIFY_IRQLS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLOW_DELETE_IRQLS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The IRQL each classifyFn call of a probe ran at, since boot.
pub fn classify_irqls() -> Vec<u8> {
    CLASSIFY_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The IRQL each flowDeleteFn call of a probe ran at, since boot.
pub fn flow_delete_irqls() -> Vec<u8> {
    FLOW_DELETE_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Appends to the log.
pub fn log(event: Event) {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).push(event);
}

/// The log so far.
pub fn events() -> Vec<Event> {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Empties the log (a test's fresh start between rounds).
pub fn clear_log() {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Position of the first `event` in the log.
pub fn position(event: &Event) -> Option<usize> {
    events().iter().position(|e| e == event)
}

/// What a probe's classifyFn writes: an action (0 = nothing).
static VERDICT: AtomicU32 = AtomicU32::new(0);
/// Per callout id: the action it writes and whether it clears the write
/// right with it (overrides `VERDICT`).
static ANSWERS: Mutex<Vec<(u32, u32, bool)>> = Mutex::new(Vec::new());
/// Whether classifyFn associates a flow context (at flow layers).
static ASSOCIATE: AtomicU32 = AtomicU32::new(0);
/// Whether classifyFn writes its verdict even without the write right.
static IGNORE_RIGHT: AtomicU32 = AtomicU32::new(0);
/// What notifyFn returns for ADD and for DELETE.
/// A packet the probe's classifyFn injects (TCP receive injection) and the
/// injection handle to use: (clone, handle), 0 = none.
static INJECT: Mutex<(usize, usize)> = Mutex::new((0, 0));

/// The next classifyFn injects `clone` with `handle` from inside itself.
pub fn inject_from_classify(clone: *mut c_void, handle: *mut c_void) {
    *INJECT.lock().unwrap_or_else(|e| e.into_inner()) = (clone as usize, handle as usize);
}

/// The injection's completion: the clone goes back to its owner (freed).
pub unsafe extern "system" fn inject_complete(_context: *mut c_void, clone: *mut c_void, _dispatch: u8) {
    engine::packets::FwpsFreeCloneNetBufferList0(clone, 0);
}

/// The interfaces a probe injects on: those of the connection the test
/// last classified (set by the test, as a callout reads them in classify).
static INTERFACES: Mutex<(u32, u32)> = Mutex::new((0, 0));

/// The next injections name these interface and sub-interface indexes.
pub fn inject_on(interfaces: (u32, u32)) {
    *INTERFACES.lock().unwrap_or_else(|e| e.into_inner()) = interfaces;
}

/// Injects `clone` (its connection's family) with `handle`, on the
/// interfaces of [`inject_on`].
pub fn inject(handle: *mut c_void, clone: *mut c_void, v6: bool) -> NTSTATUS {
    let (interface, sub_interface) = *INTERFACES.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: the completion frees the clone once; the rest are plain values.
    unsafe {
        engine::packets::FwpsInjectTransportReceiveAsync0(
            handle,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            if v6 { 23 } else { 2 },
            1,
            interface,
            sub_interface,
            clone,
            Some(inject_complete),
            std::ptr::null_mut(),
        )
    }
}

/// What classifyFn calls with its layerData and metadata first (a test's
/// own packet handling: copying, cloning), if set.
pub type LayerDataHook = fn(*mut c_void, &FWPS_INCOMING_METADATA_VALUES0);
static ON_LAYER_DATA: Mutex<Option<LayerDataHook>> = Mutex::new(None);

/// Sets (or clears) the layerData hook.
pub fn on_layer_data(hook: Option<LayerDataHook>) {
    *ON_LAYER_DATA.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

/// `packetDirection` of each classification that carried one: (filter, direction).
static DIRECTIONS: Mutex<Vec<(u64, i32)>> = Mutex::new(Vec::new());

/// The packet directions classifyFn saw so far.
pub fn directions() -> Vec<(u64, i32)> {
    DIRECTIONS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// INTERFACE_INDEX and SUB_INTERFACE_INDEX each classification at an ALE
/// auth layer carried: (filter, layer, interface, sub-interface).
static INTERFACES_SEEN: Mutex<Vec<(u64, u16, u32, u32)>> = Mutex::new(Vec::new());

/// The interface indexes classifyFn saw so far.
pub fn interfaces_seen() -> Vec<(u64, u16, u32, u32)> {
    INTERFACES_SEEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether the next classifyFn pends its classification.
static PEND_NEXT: AtomicU32 = AtomicU32::new(0);
/// Whether classifyFn records the addresses of its parameters.
static KEEP: AtomicU32 = AtomicU32::new(0);
/// The parameters kept: (values, metadata, filter, remote IPv6 address).
static KEPT: Mutex<Vec<(usize, usize, usize, usize)>> = Mutex::new(Vec::new());
static ADD_STATUS: AtomicI32 = AtomicI32::new(STATUS_SUCCESS);
static DELETE_STATUS: AtomicI32 = AtomicI32::new(STATUS_SUCCESS);

/// Boots a kernel and clears the log and probe settings.
/// A booted kernel with probe `n` registered at `layer` and one filter
/// calling it: (kernel, probe, filter id).
pub fn boot_with_filter(n: u128, layer: GUID) -> (wfpcallout_simkernel::Kernel, Probe, u64) {
    let mut kernel = boot();
    let probe = Probe::add(n, layer);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let id = engine::add_filter(&probe.filter()).unwrap();
    (kernel, probe, id)
}

pub fn boot() -> wfpcallout_simkernel::Kernel {
    let kernel = wfpcallout_simkernel::Kernel::boot();
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
    CLASSIFY_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    FLOW_DELETE_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    VERDICT.store(0, Ordering::SeqCst);
    ANSWERS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ASSOCIATE.store(0, Ordering::SeqCst);
    IGNORE_RIGHT.store(0, Ordering::SeqCst);
    KEEP.store(0, Ordering::SeqCst);
    *INJECT.lock().unwrap_or_else(|e| e.into_inner()) = (0, 0);
    *INTERFACES.lock().unwrap_or_else(|e| e.into_inner()) = (0, 0);
    *ON_LAYER_DATA.lock().unwrap_or_else(|e| e.into_inner()) = None;
    DIRECTIONS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    INTERFACES_SEEN.lock().unwrap_or_else(|e| e.into_inner()).clear();
    PEND_NEXT.store(0, Ordering::SeqCst);
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).clear();
    ADD_STATUS.store(STATUS_SUCCESS, Ordering::SeqCst);
    DELETE_STATUS.store(STATUS_SUCCESS, Ordering::SeqCst);
    kernel
}

/// The probe's classifyFn answers `action` (FWP_ACTION_*; 0 writes nothing).
pub fn answer(action: u32) {
    VERDICT.store(action, Ordering::SeqCst);
}

/// The next classification the probe sees is pended (FwpsPendOperation0,
/// BLOCK + ABSORB with the write right cleared), as an ask callout does.
pub fn pend_next(on: bool) {
    PEND_NEXT.store(u32::from(on), Ordering::SeqCst);
}

/// The probe's classifyFn keeps the addresses of what it was lent (as a
/// buggy callout would keep the pointers).
pub fn keep_parameters(on: bool) {
    KEEP.store(u32::from(on), Ordering::SeqCst);
}

/// The addresses kept: (values, metadata, filter, remote IPv6 address or 0).
pub fn kept_parameters() -> Vec<(usize, usize, usize, usize)> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What the probe's notifyFn returns for ADD and DELETE.
pub fn notify_returns(add: NTSTATUS, delete: NTSTATUS) {
    ADD_STATUS.store(add, Ordering::SeqCst);
    DELETE_STATUS.store(delete, Ordering::SeqCst);
}

/// The probe's classifyFn writes its verdict whether or not it has the
/// write right (to provoke the verifier).
pub fn ignore_write_right(on: bool) {
    IGNORE_RIGHT.store(u32::from(on), Ordering::SeqCst);
}

/// The probe's classifyFn associates a flow context when it has a flow.
pub fn associate_flow_contexts(on: bool) {
    ASSOCIATE.store(u32::from(on), Ordering::SeqCst);
}

unsafe extern "system" fn probe_classify(
    values: *const FWPS_INCOMING_VALUES0,
    metadata: *const FWPS_INCOMING_METADATA_VALUES0,
    layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER2,
    _flow_context: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    CLASSIFY_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).push(wfpcallout_simkernel::irql::current());
    // SAFETY: the engine passes valid pointers for the call.
    let metadata = unsafe { &*metadata };
    // SAFETY: as above.
    let filter = unsafe { &*filter };
    // SAFETY: as above; classifyOut is ours for the call.
    let out = unsafe { &mut *out };
    log(Event::Classify(filter.filterId));
    if metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_PACKET_DIRECTION != 0 {
        DIRECTIONS.lock().unwrap_or_else(|e| e.into_inner()).push((filter.filterId, metadata.packetDirection));
    }
    let hook = *ON_LAYER_DATA.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hook) = hook {
        hook(layer_data, metadata);
    }
    if KEEP.load(Ordering::SeqCst) != 0 {
        // SAFETY: the engine passes valid incoming values for the call.
        let values_ref = unsafe { &*values };
        let index = FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS;
        let remote_v6 = if (index as u32) < values_ref.valueCount {
            // SAFETY: the array holds valueCount entries for the call.
            let array = unsafe { std::slice::from_raw_parts(values_ref.incomingValue, values_ref.valueCount as usize) };
            let value = array[index].value;
            if value.r#type == fwp::FWP_BYTE_ARRAY16_TYPE {
                // SAFETY: the tag says the union holds a byteArray16 pointer.
                unsafe { value.Anonymous.byteArray16 as usize }
            } else {
                0
            }
        } else {
            0
        };
        KEPT.lock().unwrap_or_else(|e| e.into_inner()).push((
            values as usize,
            metadata as *const _ as usize,
            filter as *const _ as usize,
            remote_v6,
        ));
    }
    log(Event::ClassifyRights(filter.filterId, out.rights));
    // SAFETY: the engine passes valid incoming values for the call.
    let values_view = unsafe { &*values };
    let fields = match values_view.layerId {
        FWPS_LAYER_ALE_AUTH_CONNECT_V4 | FWPS_LAYER_ALE_AUTH_CONNECT_V6 => Some((
            FWPS_FIELD_ALE_AUTH_CONNECT_FLAGS,
            FWPS_FIELD_ALE_AUTH_CONNECT_REAUTHORIZE_REASON,
            FWPS_FIELD_ALE_AUTH_CONNECT_INTERFACE_INDEX,
            FWPS_FIELD_ALE_AUTH_CONNECT_SUB_INTERFACE_INDEX,
        )),
        FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4 | FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V6 => Some((
            FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_FLAGS,
            FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_REAUTHORIZE_REASON,
            FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_INTERFACE_INDEX,
            FWPS_FIELD_ALE_AUTH_RECV_ACCEPT_SUB_INTERFACE_INDEX,
        )),
        _ => None,
    };
    if let Some((flags_field, reason_field, interface_field, sub_interface_field)) = fields {
        // SAFETY: the array holds valueCount entries for the call.
        let array = unsafe { std::slice::from_raw_parts(values_view.incomingValue, values_view.valueCount as usize) };
        // Each is FWP_UINT32 at these layers (0 when the tag says otherwise).
        let read = |index: usize| {
            array
                .get(index)
                .filter(|v| v.value.r#type == fwp::FWP_UINT32)
                // SAFETY: the tag says the union holds uint32.
                .map_or(0, |v| unsafe { v.value.Anonymous.uint32 })
        };
        log(Event::AuthFields(filter.filterId, read(flags_field), read(reason_field)));
        INTERFACES_SEEN.lock().unwrap_or_else(|e| e.into_inner()).push((
            filter.filterId,
            values_view.layerId,
            read(interface_field),
            read(sub_interface_field),
        ));
    }
    if ASSOCIATE.load(Ordering::SeqCst) != 0
        && metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_FLOW_HANDLE != 0
    {
        let callout_id = filter.action.calloutId;
        let status = engine::flows::FwpsFlowAssociateContext0(metadata.flowHandle, 52, callout_id, 0xF10F);
        log(Event::Associated(status));
    }
    let (clone, handle) = std::mem::take(&mut *INJECT.lock().unwrap_or_else(|e| e.into_inner()));
    if clone != 0 {
        log(Event::Mark("injected"));
        let _ = inject(handle as *mut c_void, clone as *mut c_void, false);
    }
    if PEND_NEXT.swap(0, Ordering::SeqCst) != 0
        && metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_COMPLETION_HANDLE != 0
    {
        let mut completion_context = std::ptr::null_mut();
        // SAFETY: the handle comes from this classification's metadata.
        let status = unsafe { engine::pending::FwpsPendOperation0(metadata.completionHandle, &mut completion_context) };
        log(Event::PendStatus(status));
        if status == STATUS_SUCCESS {
            out.actionType = fwp::FWP_ACTION_BLOCK;
            out.flags |= FWPS_CLASSIFY_OUT_FLAG_ABSORB;
            out.rights &= !FWPS_RIGHT_ACTION_WRITE;
            return;
        }
    }
    let callout_id = filter.action.calloutId;
    let own = ANSWERS.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|a| a.0 == callout_id).copied();
    let (verdict, clear_right) = match own {
        Some((_, action, clear)) => (action, clear),
        None => {
            let action = VERDICT.load(Ordering::SeqCst);
            (action, action == fwp::FWP_ACTION_BLOCK)
        }
    };
    let may_write = out.rights & FWPS_RIGHT_ACTION_WRITE != 0 || IGNORE_RIGHT.load(Ordering::SeqCst) != 0;
    if verdict != 0 && may_write {
        out.actionType = verdict;
        if clear_right {
            out.rights &= !FWPS_RIGHT_ACTION_WRITE;
        }
    }
}

unsafe extern "system" fn probe_notify(
    kind: FWPS_CALLOUT_NOTIFY_TYPE,
    key: *const GUID,
    filter: *mut FWPS_FILTER2,
) -> NTSTATUS {
    // SAFETY: the engine passes a valid filter for the call.
    let id = unsafe { (*filter).filterId };
    log(Event::NotifyIrql(wfpcallout_simkernel::irql::current()));
    match kind {
        FWPS_CALLOUT_NOTIFY_ADD_FILTER => {
            log(Event::Add(id));
            ADD_STATUS.load(Ordering::SeqCst)
        }
        FWPS_CALLOUT_NOTIFY_DELETE_FILTER => {
            log(if key.is_null() { Event::Delete(id) } else { Event::DeleteWithKey(id) });
            DELETE_STATUS.load(Ordering::SeqCst)
        }
        other => {
            log(Event::OtherNotify(id, other));
            STATUS_SUCCESS
        }
    }
}

unsafe extern "system" fn probe_flow_delete(_layer_id: u16, _callout_id: u32, context: u64) {
    FLOW_DELETE_IRQLS.lock().unwrap_or_else(|e| e.into_inner()).push(wfpcallout_simkernel::irql::current());
    log(Event::FlowDelete(context));
}

/// A probe callout: its key, and the FWPM callout that lets filters name it.
pub struct Probe {
    /// The callout key filters name.
    pub key: GUID,
    /// The layer it serves.
    pub layer_key: GUID,
    /// The sublayer its filters go in.
    pub sublayer_key: GUID,
    /// Run-time id once registered or added.
    pub id: u32,
}

/// Opens a management session as a kernel client would, or says why not.
pub fn try_session() -> Result<*mut c_void, NTSTATUS> {
    let mut handle = std::ptr::null_mut();
    // SAFETY: `handle` is writable.
    let status = unsafe {
        engine::FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_WINNT, std::ptr::null(), std::ptr::null(), &mut handle)
    };
    if status == STATUS_SUCCESS { Ok(handle) } else { Err(status) }
}

/// Opens a management session as a kernel client would.
pub fn session() -> *mut c_void {
    try_session().expect("FwpmEngineOpen0")
}

/// A classifyFn that writes nothing (for callouts a test only registers).
pub unsafe extern "system" fn noop_classify(
    _: *const FWPS_INCOMING_VALUES0,
    _: *const FWPS_INCOMING_METADATA_VALUES0,
    _: *mut c_void,
    _: *const c_void,
    _: *const FWPS_FILTER2,
    _: u64,
    _: *mut FWPS_CLASSIFY_OUT0,
) {
}

/// A notifyFn that accepts everything.
pub unsafe extern "system" fn noop_notify(
    _: FWPS_CALLOUT_NOTIFY_TYPE,
    _: *const GUID,
    _: *mut FWPS_FILTER2,
) -> NTSTATUS {
    STATUS_SUCCESS
}

impl Probe {
    /// Adds the FWPM callout (`FwpmCalloutAdd0`) and a sublayer for
    /// `layer_key`; the callout is not registered yet.
    pub fn add(n: u128, layer_key: GUID) -> Self {
        Self::add_weighted(n, layer_key, 0x100 + n as u16)
    }

    /// [`Probe::add`] with a sublayer of `sublayer_weight` (higher first).
    pub fn add_weighted(n: u128, layer_key: GUID, sublayer_weight: u16) -> Self {
        let key = GUID::from_u128(0x9B0B_0000_0000_4000_8000_0000_0000_0000 | n);
        let sublayer_key = GUID::from_u128(0x9B0B_5B00_0000_4000_8000_0000_0000_0000 | n);
        engine::add_sublayer(sublayer_key, sublayer_weight).unwrap();
        let session = session();
        let callout = FWPM_CALLOUT0 { calloutKey: key, applicableLayer: layer_key, ..Default::default() };
        let mut id = 0;
        // SAFETY: valid session, callout and out pointer.
        let status = unsafe { engine::FwpmCalloutAdd0(session, &callout, std::ptr::null(), &mut id) };
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
        Self { key, layer_key, sublayer_key, id }
    }

    /// `FwpsCalloutRegister2` with the probe's callbacks.
    pub fn register(&self, kernel_device: *mut c_void) -> NTSTATUS {
        let callout = FWPS_CALLOUT2 {
            calloutKey: self.key,
            flags: 0,
            classifyFn: Some(probe_classify),
            notifyFn: Some(probe_notify),
            flowDeleteFn: Some(probe_flow_delete),
        };
        let mut id = 0;
        // SAFETY: valid device object, callout and out pointer.
        unsafe { engine::FwpsCalloutRegister2(kernel_device, &callout, &mut id) }
    }

    /// This probe's classifyFn writes `action` (0 = nothing), clearing the
    /// write right with it when `clear_right` (a hard decision).
    pub fn answer(&self, action: u32, clear_right: bool) {
        let mut answers = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
        answers.retain(|a| a.0 != self.id);
        answers.push((self.id, action, clear_right));
    }

    /// A filter in this probe's sublayer that does not call a callout.
    pub fn static_filter(&self, action: FilterAction, weight: u64, flags: u32) -> FilterSpec {
        FilterSpec { action, weight, flags, ..self.filter() }
    }

    /// `FwpsCalloutUnregisterById0`.
    pub fn unregister(&self) -> NTSTATUS {
        engine::FwpsCalloutUnregisterById0(self.id)
    }

    /// A terminating filter calling the probe, no conditions.
    pub fn filter(&self) -> FilterSpec {
        FilterSpec::callout(self.layer_key, self.sublayer_key, self.key)
    }

    /// A filter calling the probe with `action`.
    pub fn filter_with(&self, action: fn(GUID) -> FilterAction) -> FilterSpec {
        FilterSpec { action: action(self.key), ..self.filter() }
    }
}

/// The ids of the filters naming `probe` that an enumeration returns now
/// (`FwpmFilterCreateEnumHandle0` + `FwpmFilterEnum0`), as a driver that
/// adopts existing filters would see them.
pub fn enumerate_filters(probe: &Probe) -> Vec<u64> {
    let session = session();
    let mut key = probe.key;
    let template = fwp::FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: probe.layer_key,
        calloutKey: &mut key,
        actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
        ..Default::default()
    };
    let mut handle = std::ptr::null_mut();
    // SAFETY: valid session, template and out pointer.
    let status = unsafe { engine::FwpmFilterCreateEnumHandle0(session, &template, &mut handle) };
    assert_eq!(status, STATUS_SUCCESS);
    let mut ids = Vec::new();
    loop {
        let mut entries: *mut *mut FWPM_FILTER0 = std::ptr::null_mut();
        let mut returned = 0u32;
        // SAFETY: valid handles and out pointers.
        let status = unsafe { engine::FwpmFilterEnum0(session, handle, 64, &mut entries, &mut returned) };
        assert_eq!(status, STATUS_SUCCESS);
        if returned > 0 {
            // SAFETY: the engine returned an array of `returned` entries.
            let array = unsafe { std::slice::from_raw_parts(entries, returned as usize) };
            for &entry in array {
                // SAFETY: each entry points to a valid FWPM_FILTER0.
                ids.push(unsafe { (*entry).filterId });
            }
        }
        if !entries.is_null() {
            let mut memory = entries.cast::<c_void>();
            // SAFETY: engine memory returned by FwpmFilterEnum0.
            unsafe { engine::FwpmFreeMemory0(&mut memory) };
        }
        if returned < 64 {
            break;
        }
    }
    assert_eq!(engine::FwpmFilterDestroyEnumHandle0(session, handle), STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    ids
}

/// A live injection handle for transport injection of `family` (AF_INET 2,
/// or 0 for any), created at PASSIVE_LEVEL; the test destroys it.
pub fn transport_injection_handle(family: u16) -> *mut c_void {
    let mut handle = std::ptr::null_mut();
    // SAFETY: `handle` is writable; PASSIVE_LEVEL.
    let status = unsafe {
        engine::packets::FwpsInjectionHandleCreate0(family, engine::packets::FWPS_INJECTION_TYPE_TRANSPORT, &mut handle)
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

/// A clone of the classification's list (`layerData`), allocated from
/// classifyFn; the caller frees it or injects it.
pub fn clone_of(layer_data: *mut c_void) -> *mut c_void {
    let mut clone = std::ptr::null_mut();
    // SAFETY: `clone` is writable; layerData is the engine's list for the call.
    let status = unsafe {
        engine::packets::FwpsAllocateCloneNetBufferList0(
            layer_data,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            &mut clone,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    clone
}

/// Waits (real time) until no injection completion is outstanding: another
/// thread delivered them.
pub fn wait_for_injection_completions() {
    for _ in 0..10_000 {
        if engine::packets::outstanding_injection_completions() == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the completion never came");
}

/// An inbound UDP connection at ALE_AUTH_RECV_ACCEPT_V4 on local `port`.
pub fn inbound_udp(port: u16) -> engine::Connection {
    engine::Connection {
        layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        protocol: 17,
        ..engine::Connection::tcp_connect_v4(port)
    }
}
