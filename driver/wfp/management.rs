//! The management side: a session with the filter engine, and the
//! provider, sublayer and `FWPM_CALLOUT0`s that let any WFP client add
//! filters naming our callouts. All of it runs at PASSIVE_LEVEL.
#![deny(unsafe_code)]

use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::{CALLOUTS, CalloutSpec, PROVIDER_KEY, SUBLAYER_KEY};
use crate::wfp::ffi::{
    FwpmCalloutAdd0, FwpmCalloutDeleteByKey0, FwpmCalloutGetByKey0, FwpmEngineClose0, FwpmEngineOpen0,
    FwpmFilterCreateEnumHandle0, FwpmFilterDestroyEnumHandle0, FwpmFilterEnum0, FwpmFreeMemory0, FwpmProviderAdd0,
    FwpmProviderContextGetByKey2, FwpmProviderDeleteByKey0, FwpmProviderGetByKey0, FwpmSubLayerAdd0,
    FwpmSubLayerDeleteByKey0, FwpmSubLayerGetByKey0, FwpmTransactionAbort0, FwpmTransactionBegin0,
    FwpmTransactionCommit0, GUID, HANDLE, RPC_C_AUTHN_WINNT, STATUS_FWP_ALREADY_EXISTS, fwp,
};
use crate::wfp::filter_view::ProviderBlob;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};
use fwps_types::fwp::{
    FWPM_CALLOUT0, FWPM_DISPLAY_DATA0, FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER0, FWPM_PROVIDER_CONTEXT2,
    FWPM_PROVIDER0, FWPM_SESSION0, FWPM_SUBLAYER0,
};

/// An open `FwpmEngineOpen0` session, owned: only [`open_engine`] makes
/// one, [`close_engine`] consumes it, and it cannot be copied, so a handle
/// cannot outlive its close or be forged from an integer.
#[derive(Debug, PartialEq, Eq)]
pub struct EngineHandle(HANDLE);

impl EngineHandle {
    /// The raw handle, for the FFI calls.
    fn raw(&self) -> HANDLE {
        self.0
    }
}

/// Where the driver keeps its session between load and unload (the global
/// state holds one): it only ever holds a handle [`open_engine`] made, so
/// what [`EngineSlot::take`] returns is one.
pub struct EngineSlot(AtomicPtr<c_void>);

impl EngineSlot {
    /// Empty (const: it lives in the driver's static state).
    pub const fn new() -> Self {
        Self(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Keeps `engine` until [`EngineSlot::take`]; a session kept already is
    /// closed (never leaked).
    pub fn store(&self, engine: EngineHandle) {
        let old = self.0.swap(engine.raw(), Ordering::AcqRel);
        if !old.is_null() {
            close_engine(EngineHandle(old));
        }
    }

    /// The session kept, if any, leaving the slot empty.
    pub fn take(&self) -> Option<EngineHandle> {
        let raw = self.0.swap(core::ptr::null_mut(), Ordering::AcqRel);
        (!raw.is_null()).then_some(EngineHandle(raw))
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

/// Our sublayer's weight: in the upper half, below the system's own.
pub const SUBLAYER_WEIGHT: u16 = 0x8000;

fn display(name: &'static [u16], description: &'static [u16]) -> FWPM_DISPLAY_DATA0 {
    // The engine only reads display strings; the casts drop a const the
    // windows-sys type does not carry.
    FWPM_DISPLAY_DATA0 { name: name.as_ptr().cast_mut(), description: description.as_ptr().cast_mut() }
}

fn key_ptr(key: &'static GUID) -> *mut GUID {
    core::ptr::from_ref(key).cast_mut()
}

static PROVIDER_KEY_STATIC: GUID = PROVIDER_KEY;

/// `EPT_NT_NOT_REGISTERED` and `RPC_NT_SERVER_UNAVAILABLE`: what opening a
/// session returns when BFE is not running (no RPC endpoint).
const EPT_NT_NOT_REGISTERED: i32 = 0xC002_0036_u32 as i32;
const RPC_NT_SERVER_UNAVAILABLE: i32 = 0xC002_0017_u32 as i32;

/// Opens a (non-dynamic) session: the objects we add outlive it, so filters
/// that name our callouts survive a driver restart.
pub fn open_engine() -> Result<EngineHandle> {
    let session = FWPM_SESSION0 {
        displayData: display(crate::wide!("wfpcallout"), crate::wide!("wfpcallout driver session")),
        ..FWPM_SESSION0::default()
    };
    let mut handle: HANDLE = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: every pointer is valid for the call; PASSIVE_LEVEL.
    let status =
        unsafe { FwpmEngineOpen0(core::ptr::null(), RPC_C_AUTHN_WINNT, core::ptr::null(), &session, &mut handle) };
    NtStatus::to_result(status).inspect_err(|s| {
        if matches!(s.raw(), EPT_NT_NOT_REGISTERED | RPC_NT_SERVER_UNAVAILABLE) {
            // No session without BFE (FwpmBfeStateGet0 remarks). The load
            // fails rather than waiting for it: start BFE and load again.
            crate::log!(Level::Error, "FwpmEngineOpen0 failed: {}: the base filtering engine (BFE) is not running", s);
        } else {
            crate::log!(Level::Error, "FwpmEngineOpen0 failed: {}", s);
        }
    })?;
    if handle.is_null() {
        return Err(NtStatus::INVALID_DEVICE_STATE);
    }
    Ok(EngineHandle(handle))
}

/// Closes the session, retrying a failure a few times (a session left open
/// leaks until BFE restarts).
pub fn close_engine(engine: EngineHandle) {
    let _ = crate::platform::status::retry_teardown("FwpmEngineClose0", 3, || {
        #[allow(unsafe_code)]
        // SAFETY: `engine` came from open_engine; it is closed at most once
        // successfully (a failed close leaves it open).
        unsafe {
            FwpmEngineClose0(engine.raw())
        }
    });
}

/// An object that exists already (left by an earlier load) is fine.
fn added(what: &str, status: i32) -> Result {
    if status == STATUS_FWP_ALREADY_EXISTS {
        return Ok(());
    }
    NtStatus::to_result(status).inspect_err(|s| crate::log!(Level::Error, "adding the {} failed: {}", what, s))
}

/// `FwpmTransactionBegin0`: a read-write transaction on the session.
pub fn begin_transaction(engine: &EngineHandle) -> Result {
    #[allow(unsafe_code)]
    // SAFETY: an open session (the type's invariant); PASSIVE_LEVEL.
    NtStatus::to_result(unsafe { FwpmTransactionBegin0(engine.raw(), 0) })
}

/// `FwpmTransactionCommit0` of the session's transaction.
pub fn commit_transaction(engine: &EngineHandle) -> Result {
    #[allow(unsafe_code)]
    // SAFETY: an open session; with no transaction the engine says so.
    NtStatus::to_result(unsafe { FwpmTransactionCommit0(engine.raw()) })
}

/// `FwpmTransactionAbort0` of the session's transaction.
pub fn abort_transaction(engine: &EngineHandle) -> Result {
    #[allow(unsafe_code)]
    // SAFETY: an open session; with no transaction the engine says so.
    NtStatus::to_result(unsafe { FwpmTransactionAbort0(engine.raw()) })
}

/// Objects of an older install that are not persistent and that
/// [`add_objects`] kept because filters use them: they and those filters
/// work, but are gone when the filter engine stops or the system shuts
/// down (a persistent filter in a non-persistent sublayer, or naming a
/// non-persistent callout, does not outlive a reboot). All `false`/`0`:
/// every object is persistent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct KeptNonPersistent {
    /// The provider (our sublayer, callouts or other objects name it).
    pub provider: bool,
    /// The sublayer (filters are in it).
    pub sublayer: bool,
    /// Callouts (filters name them).
    pub callouts: u32,
}

impl KeptNonPersistent {
    /// Whether anything was kept non-persistent.
    pub fn any(&self) -> bool {
        self.provider || self.sublayer || self.callouts != 0
    }
}

/// Adds provider, sublayer and callouts in one transaction: all or nothing.
///
/// Objects an earlier load left are reused if persistent; if not (an
/// install from before persistence), each is replaced by a persistent one
/// when nothing uses it, and kept otherwise: the load goes on, with a
/// warning naming the object, and what was kept is returned. The driver
/// never deletes others' filters to make room. A callout without
/// provider contexts or with another layer is another matter: its filters
/// would lose their policies, so one in use fails the load.
pub fn add_objects(engine: &EngineHandle) -> Result<KeptNonPersistent> {
    begin_transaction(engine)?;
    let result = add_objects_in_transaction(engine);
    let end = if result.is_ok() { commit_transaction(engine) } else { abort_transaction(engine) };
    let kept = result?;
    end.map(|()| kept).inspect_err(|s| {
        crate::log!(Level::Error, "committing the objects failed: {}", s);
        // Whether a failed commit leaves the transaction open is not
        // documented: abort it (harmless NO_TXN_IN_PROGRESS if it is gone).
        let _ = abort_transaction(engine);
    })
}

fn add_objects_in_transaction(engine: &EngineHandle) -> Result<KeptNonPersistent> {
    let mut kept = KeptNonPersistent::default();
    let provider = FWPM_PROVIDER0 {
        providerKey: PROVIDER_KEY,
        displayData: display(crate::wide!("wfpcallout"), crate::wide!("wfpcallout callout driver")),
        // Persistent, like the sublayer and the callouts: persistent filters
        // may only name persistent objects (FWPM_CALLOUT0: a persistent
        // callout "can be referenced by boot-time and other persistent
        // filters"), and adoption promises to find them after a reboot.
        flags: fwp::FWPM_PROVIDER_FLAG_PERSISTENT,
        ..FWPM_PROVIDER0::default()
    };
    let add_provider = || {
        #[allow(unsafe_code)]
        // SAFETY: `provider` is valid for the call; no security descriptor.
        unsafe {
            FwpmProviderAdd0(engine.raw(), &provider, core::ptr::null())
        }
    };
    let status = add_provider();
    if status == STATUS_FWP_ALREADY_EXISTS && !provider_is_persistent(engine)? {
        // Our sublayer and callouts name the provider: those nothing uses
        // go first (they are added again below, persistent), so that the
        // provider can go too unless something still needs it.
        remove_unused_objects_naming_the_provider(engine)?;
        kept.provider = replace_non_persistent(
            "provider",
            || {
                #[allow(unsafe_code)]
                // SAFETY: valid engine handle and key.
                unsafe {
                    FwpmProviderDeleteByKey0(engine.raw(), &PROVIDER_KEY)
                }
            },
            add_provider,
        )?;
    } else {
        added("provider", status)?;
    }

    let sublayer = FWPM_SUBLAYER0 {
        subLayerKey: SUBLAYER_KEY,
        displayData: display(crate::wide!("wfpcallout"), crate::wide!("Filters calling wfpcallout")),
        providerKey: key_ptr(&PROVIDER_KEY_STATIC),
        weight: SUBLAYER_WEIGHT,
        flags: fwp::FWPM_SUBLAYER_FLAG_PERSISTENT,
        ..FWPM_SUBLAYER0::default()
    };
    let add_sublayer = || {
        #[allow(unsafe_code)]
        // SAFETY: `sublayer` and the key it points to are valid for the call.
        unsafe {
            FwpmSubLayerAdd0(engine.raw(), &sublayer, core::ptr::null())
        }
    };
    let status = add_sublayer();
    if status == STATUS_FWP_ALREADY_EXISTS && !sublayer_is_persistent(engine)? {
        kept.sublayer = replace_non_persistent(
            "sublayer",
            || {
                #[allow(unsafe_code)]
                // SAFETY: valid engine handle and key.
                unsafe {
                    FwpmSubLayerDeleteByKey0(engine.raw(), &SUBLAYER_KEY)
                }
            },
            add_sublayer,
        )?;
    } else {
        added("sublayer", status)?;
    }

    for spec in CALLOUTS.iter() {
        let callout = FWPM_CALLOUT0 {
            calloutKey: spec.key,
            displayData: display(spec.name, spec.description),
            // Without USES_PROVIDER_CONTEXT notifyFn never sees the provider
            // context that carries the filter's policy.
            flags: fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT | fwp::FWPM_CALLOUT_FLAG_PERSISTENT,
            providerKey: key_ptr(&PROVIDER_KEY_STATIC),
            applicableLayer: spec.layer_key,
            ..FWPM_CALLOUT0::default()
        };
        #[allow(unsafe_code)]
        // SAFETY: `callout` and the key it points to are valid for the call.
        let status = unsafe { FwpmCalloutAdd0(engine.raw(), &callout, core::ptr::null(), core::ptr::null_mut()) };
        if status == STATUS_FWP_ALREADY_EXISTS {
            if keep_or_replace_callout(engine, &callout)? {
                kept.callouts += 1;
            }
        } else {
            added("callout", status)?;
        }
    }
    Ok(kept)
}

/// Reads an object the engine returns by key: `get` makes the
/// `Fwpm*GetByKey0` call into the out-pointer it is given, `read` looks at
/// the object (NULL: `None`), and the engine's copy is freed after it.
fn read_by_key<T, R>(
    what: &str,
    get: impl FnOnce(*mut *mut T) -> i32,
    read: impl FnOnce(Option<&T>) -> R,
) -> Result<R> {
    let mut existing: *mut T = core::ptr::null_mut();
    NtStatus::to_result(get(&mut existing))
        .inspect_err(|s| crate::log!(Level::Error, "reading the existing {} failed: {}", what, s))?;
    #[allow(unsafe_code)]
    // SAFETY: on success the engine returned NULL or a valid object of the
    // type the call fills, alive until freed below.
    let value = read(unsafe { existing.as_ref() });
    #[allow(unsafe_code)]
    // SAFETY: engine memory returned above, not used after this.
    unsafe {
        free_engine_memory(existing.cast())
    };
    Ok(value)
}

/// Whether the provider with our key is persistent.
fn provider_is_persistent(engine: &EngineHandle) -> Result<bool> {
    let get = |out| {
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle, key and out-pointer; PASSIVE_LEVEL.
        unsafe {
            FwpmProviderGetByKey0(engine.raw(), &PROVIDER_KEY, out)
        }
    };
    read_by_key("provider", get, |p: Option<&FWPM_PROVIDER0>| {
        p.is_some_and(|p| p.flags & fwp::FWPM_PROVIDER_FLAG_PERSISTENT != 0)
    })
}

/// Whether the sublayer with our key is persistent.
fn sublayer_is_persistent(engine: &EngineHandle) -> Result<bool> {
    let get = |out| {
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle, key and out-pointer; PASSIVE_LEVEL.
        unsafe {
            FwpmSubLayerGetByKey0(engine.raw(), &SUBLAYER_KEY, out)
        }
    };
    read_by_key("sublayer", get, |l: Option<&FWPM_SUBLAYER0>| {
        l.is_some_and(|l| l.flags & fwp::FWPM_SUBLAYER_FLAG_PERSISTENT != 0)
    })
}

/// Deletes our callouts and sublayer where nothing uses them (an object in
/// use, or already gone, stays as it is), so that a non-persistent
/// provider they name can be replaced.
fn remove_unused_objects_naming_the_provider(engine: &EngineHandle) -> Result {
    let tolerated = |status: i32, not_found: i32| {
        if status == fwps_types::STATUS_FWP_IN_USE || status == not_found {
            Ok(())
        } else {
            NtStatus::to_result(status)
        }
    };
    for spec in CALLOUTS.iter() {
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle and key.
        let status = unsafe { FwpmCalloutDeleteByKey0(engine.raw(), &spec.key) };
        tolerated(status, fwps_types::STATUS_FWP_CALLOUT_NOT_FOUND)?;
    }
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle and key.
    let status = unsafe { FwpmSubLayerDeleteByKey0(engine.raw(), &SUBLAYER_KEY) };
    tolerated(status, fwps_types::STATUS_FWP_SUBLAYER_NOT_FOUND)
}

/// An object of ours exists but is not persistent (an install from before
/// persistence): deleted and added again, persistent, when nothing uses it
/// (`Ok(false)`); kept as it is when something does (`Ok(true)`): deleting
/// others' filters is not ours to do, and the filters work until the
/// filter engine stops or the system shuts down. Provider, sublayer and
/// callouts all go through here, with the same warning.
fn replace_non_persistent(what: &str, delete: impl FnOnce() -> i32, add: impl FnOnce() -> i32) -> Result<bool> {
    let deleted = delete();
    if deleted == fwps_types::STATUS_FWP_IN_USE {
        crate::log!(
            Level::Warning,
            "the existing {} is not persistent and is in use: kept as it is; it and the filters using it are lost when the filter engine stops or the system restarts (wfpctl uninstall, then load again and add the filters again, makes them persistent)",
            what
        );
        return Ok(true);
    }
    NtStatus::to_result(deleted)
        .inspect_err(|s| crate::log!(Level::Error, "deleting the non-persistent {} failed: {}", what, s))?;
    added(what, add())?;
    crate::log!(Level::Info, "replaced the existing non-persistent {} by a persistent one", what);
    Ok(false)
}

fn same_guid(a: &GUID, b: &GUID) -> bool {
    (a.data1, a.data2, a.data3, a.data4) == (b.data1, b.data2, b.data3, b.data4)
}

/// A management callout with our key exists already (an earlier install
/// left it). It is kept only if it is what we would add: the same layer
/// and `FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT`, without which the engine
/// hands notifyFn no provider context and every filter silently gets the
/// default policy (a block filter would permit). Otherwise it is replaced
/// (deleted and added again, in the same transaction); if filters still
/// name it, it cannot be, and the load fails with `STATUS_FWP_IN_USE`
/// and a log line saying what to do. One that is right but not persistent
/// is handled as the provider and sublayer are ([`replace_non_persistent`]):
/// `Ok(true)` when it was kept because filters name it.
fn keep_or_replace_callout(engine: &EngineHandle, wanted: &FWPM_CALLOUT0) -> Result<bool> {
    let get = |out| {
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle, key and out-pointer; PASSIVE_LEVEL.
        unsafe {
            FwpmCalloutGetByKey0(engine.raw(), &wanted.calloutKey, out)
        }
    };
    let (matches, persistent) = read_by_key("callout", get, |found: Option<&FWPM_CALLOUT0>| {
        found.map_or((false, false), |found| {
            let matches = found.flags & fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT != 0
                && same_guid(&found.applicableLayer, &wanted.applicableLayer);
            (matches, found.flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT != 0)
        })
    })?;
    let add = || {
        #[allow(unsafe_code)]
        // SAFETY: `wanted` and the key it points to are valid for the call.
        unsafe {
            FwpmCalloutAdd0(engine.raw(), wanted, core::ptr::null(), core::ptr::null_mut())
        }
    };
    if matches && persistent {
        return Ok(false);
    }
    if matches {
        return replace_non_persistent(
            "callout",
            || {
                #[allow(unsafe_code)]
                // SAFETY: valid engine handle and key.
                unsafe {
                    FwpmCalloutDeleteByKey0(engine.raw(), &wanted.calloutKey)
                }
            },
            add,
        );
    }
    crate::log!(
        Level::Warning,
        "an existing callout lacks FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT or has another layer: replacing it"
    );
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle and key.
    let deleted = unsafe { FwpmCalloutDeleteByKey0(engine.raw(), &wanted.calloutKey) };
    if deleted == fwps_types::STATUS_FWP_IN_USE {
        crate::log!(
            Level::Error,
            "an existing callout without provider contexts is still named by filters: policies would be lost; delete those filters (or run wfpctl uninstall) and load again"
        );
        return Err(NtStatus::from_raw(deleted));
    }
    NtStatus::to_result(deleted)?;
    added("callout", add()).map(|()| false)
}

/// Filters fetched per `FwpmFilterEnum0` call.
const ENUM_BATCH: u32 = 64;

/// Calls `visit` for every filter (an enumeration snapshot) whose action
/// names callout `spec`, a batch at a time, freeing each batch after its
/// visits (adoption's walk). A failing visit does not stop the walk; the
/// first failure is returned after it, else how many visits answered
/// `true`.
pub fn for_each_filter_of(
    engine: &EngineHandle,
    spec: &CalloutSpec,
    mut visit: impl FnMut(&FWPM_FILTER0) -> Result<bool>,
) -> Result<usize> {
    let template = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: spec.layer_key,
        enumType: fwp::FWP_FILTER_ENUM_OVERLAPPING,
        actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
        calloutKey: core::ptr::from_ref(&spec.key).cast_mut(),
        ..FWPM_FILTER_ENUM_TEMPLATE0::default()
    };
    let mut enum_handle: HANDLE = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: template and out-pointer are valid for the call.
    NtStatus::to_result(unsafe { FwpmFilterCreateEnumHandle0(engine.raw(), &template, &mut enum_handle) })?;
    let mut counted = 0;
    let mut outcome = Ok(());
    loop {
        let mut entries: *mut *mut FWPM_FILTER0 = core::ptr::null_mut();
        let mut returned = 0u32;
        #[allow(unsafe_code)]
        // SAFETY: out-pointers are valid; the engine allocates the array.
        let status = unsafe { FwpmFilterEnum0(engine.raw(), enum_handle, ENUM_BATCH, &mut entries, &mut returned) };
        if let Err(status) = NtStatus::to_result(status) {
            outcome = outcome.and(Err(status));
            break;
        }
        for index in 0..returned as usize {
            #[allow(unsafe_code)]
            // SAFETY: the batch FwpmFilterEnum0 returned `returned` entries
            // of; it is freed only after this loop.
            let filter = unsafe { filter_at(entries, index) };
            match filter.map(&mut visit) {
                Some(Ok(true)) => counted += 1,
                Some(Ok(false)) => {}
                Some(Err(status)) => outcome = outcome.and(Err(status)),
                None => outcome = outcome.and(Err(NtStatus::INVALID_PARAMETER)),
            }
        }
        #[allow(unsafe_code)]
        // SAFETY: the array FwpmFilterEnum0 allocated for this batch; its
        // visits are done.
        unsafe {
            free_engine_memory(entries.cast())
        };
        if returned < ENUM_BATCH {
            break;
        }
    }
    #[allow(unsafe_code)]
    // SAFETY: the handle came from FwpmFilterCreateEnumHandle0 above.
    let _ = unsafe { FwpmFilterDestroyEnumHandle0(engine.raw(), enum_handle) };
    outcome.map(|()| counted)
}

/// Entry `index` of an array `FwpmFilterEnum0` returned with more than
/// `index` entries (NULL array or entry: `None`).
///
/// # Safety
/// `entries` is NULL or an array `FwpmFilterEnum0` returned with more than
/// `index` entries, not freed while the result is used.
#[allow(unsafe_code)]
unsafe fn filter_at<'a>(entries: *mut *mut FWPM_FILTER0, index: usize) -> Option<&'a FWPM_FILTER0> {
    if entries.is_null() {
        return None;
    }
    // SAFETY: FwpmFilterEnum0 returned an array of `returned` pointers and
    // index < returned; it stays valid until freed after this batch.
    let entry = unsafe { entries.add(index) };
    // SAFETY: as above: the slot is readable.
    let filter = unsafe { *entry };
    // SAFETY: each entry points to a filter valid until the array is freed.
    unsafe { filter.as_ref() }
}

/// Frees memory the engine allocated (an enumeration array, a provider
/// context); NULL is nothing to free.
///
/// # Safety
/// `memory` is NULL or memory the engine allocated for us, not freed yet
/// and not used afterwards.
#[allow(unsafe_code)]
unsafe fn free_engine_memory(memory: *mut c_void) {
    if memory.is_null() {
        return;
    }
    let mut memory = memory;
    #[allow(unsafe_code)]
    // SAFETY: memory came from the engine and is freed once, here.
    unsafe {
        FwpmFreeMemory0(&mut memory)
    };
}

/// Deletes what `add_objects` added. Objects still referenced by filters
/// (`STATUS_FWP_IN_USE`) stay, and are reused at the next load; they are
/// persistent, so only a management client removes them for good
/// (`wfpctl uninstall`), perhaps while we are loaded: objects already
/// gone are what we wanted, not an error.
pub fn delete_objects(engine: &EngineHandle) {
    for spec in CALLOUTS.iter() {
        #[allow(unsafe_code)]
        // SAFETY: valid engine handle and key.
        let status = unsafe { FwpmCalloutDeleteByKey0(engine.raw(), &spec.key) };
        log_delete("callout", status);
    }
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle and key.
    log_delete("sublayer", unsafe { FwpmSubLayerDeleteByKey0(engine.raw(), &SUBLAYER_KEY) });
    #[allow(unsafe_code)]
    // SAFETY: valid engine handle and key.
    log_delete("provider", unsafe { FwpmProviderDeleteByKey0(engine.raw(), &PROVIDER_KEY) });
}

/// The `*_NOT_FOUND` statuses of the three deletions: the object was
/// deleted already (`wfpctl uninstall`).
const NOT_FOUND: [i32; 3] = [
    fwps_types::STATUS_FWP_CALLOUT_NOT_FOUND,
    fwps_types::STATUS_FWP_SUBLAYER_NOT_FOUND,
    fwps_types::STATUS_FWP_PROVIDER_NOT_FOUND,
];

fn log_delete(what: &str, status: i32) {
    if NOT_FOUND.contains(&status) {
        return;
    }
    if status == fwps_types::STATUS_FWP_IN_USE {
        crate::log!(Level::Info, "kept the {}: filters still use it", what);
    } else if let Err(status) = NtStatus::to_result(status) {
        crate::log!(Level::Warning, "kept the {} (delete returned {})", what, status);
    }
}

/// What an existing filter's provider context says, read through `read`
/// while the engine's copy is alive (adoption: a filter added before we
/// registered got no ADD, so its policy is fetched). `Ok(None)` when the
/// filter has no provider context; an error when it cannot be fetched.
pub fn read_provider_context<R>(
    engine: &EngineHandle,
    filter: &FWPM_FILTER0,
    read: impl FnOnce(&ProviderBlob<'_>) -> R,
) -> Result<Option<R>> {
    if filter.flags & fwp::FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT == 0 {
        return Ok(None);
    }
    #[allow(unsafe_code)]
    // SAFETY: with HAS_PROVIDER_CONTEXT the union holds providerContextKey.
    let key = unsafe { filter.Anonymous.providerContextKey };
    let mut context: *mut FWPM_PROVIDER_CONTEXT2 = core::ptr::null_mut();
    #[allow(unsafe_code)]
    // SAFETY: an open session; key and out-pointer are valid for the call.
    let status = unsafe { FwpmProviderContextGetByKey2(engine.raw(), &key, &mut context) };
    NtStatus::to_result(status)?;
    #[allow(unsafe_code)]
    // SAFETY: the engine's provider context, freed only after `read`.
    let blob = unsafe { provider_blob(context) };
    let value = read(&blob);
    #[allow(unsafe_code)]
    // SAFETY: the engine allocated `context` for this call; `read` is done
    // with the blob it points into.
    unsafe {
        free_engine_memory(context.cast())
    };
    Ok(Some(value))
}

/// The blob of a provider context the engine returned.
///
/// # Safety
/// `context` is NULL or a provider context the engine returned, not freed
/// while the blob is used.
#[allow(unsafe_code)]
unsafe fn provider_blob<'a>(context: *const FWPM_PROVIDER_CONTEXT2) -> ProviderBlob<'a> {
    // SAFETY: NULL or the engine's provider context, valid until freed
    // (the one caller reads the blob before freeing).
    let Some(context) = (unsafe { context.as_ref() }) else {
        return ProviderBlob::Absent;
    };
    if context.r#type != fwp::FWPM_GENERAL_CONTEXT {
        return ProviderBlob::WrongType(context.r#type);
    }
    // SAFETY: for FWPM_GENERAL_CONTEXT the union holds dataBuffer.
    let buffer = unsafe { context.Anonymous.dataBuffer };
    // SAFETY: NULL or a blob valid as long as the context.
    match unsafe { buffer.as_ref() } {
        Some(blob) if !blob.data.is_null() && blob.size != 0 => {
            // SAFETY: data holds size readable bytes.
            ProviderBlob::General(unsafe { core::slice::from_raw_parts(blob.data, blob.size as usize) })
        }
        _ => ProviderBlob::General(&[]),
    }
}
