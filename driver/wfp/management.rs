//! The management side: a session with the filter engine, and the
//! provider, sublayer and `FWPM_CALLOUT0`s that let any WFP client add
//! filters naming our callouts. All of it runs at PASSIVE_LEVEL.
#![forbid(unsafe_code)]

use crate::platform::log::Level;
use crate::platform::status::{NtStatus, Result};
use crate::wfp::callout_table::{CALLOUTS, CalloutSpec, PROVIDER_KEY, SUBLAYER_KEY};
use crate::wfp::ffi::{
    CalloutObject, DisplayStrings, GUID, ProviderObject, STATUS_FWP_ALREADY_EXISTS, SublayerObject, fwp,
};
pub use crate::wfp::ffi::{EngineHandle, EngineSlot};
use crate::wfp::filter_view::{EngineMemory, FilterEntry, ProviderBlob};

/// Our sublayer's weight: in the upper half, below the system's own.
pub const SUBLAYER_WEIGHT: u16 = 0x8000;

static PROVIDER_KEY_STATIC: GUID = PROVIDER_KEY;

/// `EPT_NT_NOT_REGISTERED` and `RPC_NT_SERVER_UNAVAILABLE`: what opening a
/// session returns when BFE is not running (no RPC endpoint).
const EPT_NT_NOT_REGISTERED: i32 = 0xC002_0036_u32 as i32;
const RPC_NT_SERVER_UNAVAILABLE: i32 = 0xC002_0017_u32 as i32;

/// Opens a (non-dynamic) session: the objects we add outlive it, so filters
/// that name our callouts survive a driver restart.
pub fn open_engine() -> Result<EngineHandle> {
    let display = DisplayStrings::new(crate::wide!("wfpcallout"), crate::wide!("wfpcallout driver session"));
    EngineHandle::open(display)
        .inspect_err(|s| {
            if matches!(s.raw(), EPT_NT_NOT_REGISTERED | RPC_NT_SERVER_UNAVAILABLE) {
                // No session without BFE (FwpmBfeStateGet0 remarks). The load
                // fails rather than waiting for it: start BFE and load again.
                crate::log!(
                    Level::Error,
                    "FwpmEngineOpen0 failed: {}: the base filtering engine (BFE) is not running",
                    s
                );
            } else {
                crate::log!(Level::Error, "FwpmEngineOpen0 failed: {}", s);
            }
        })?
        .ok_or(NtStatus::INVALID_DEVICE_STATE)
}

/// Closes the session, retrying a failure a few times (a session left open
/// leaks until BFE restarts).
pub fn close_engine(engine: EngineHandle) {
    // A failed close gives the session back for the next attempt.
    let mut open = Some(engine);
    let _ =
        crate::platform::status::retry_teardown("FwpmEngineClose0", 3, || match open.take().map(EngineHandle::close) {
            None | Some(Ok(())) => NtStatus::SUCCESS.raw(),
            Some(Err((engine, status))) => {
                open = Some(engine);
                status.raw()
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
    engine.begin_transaction()
}

/// `FwpmTransactionCommit0` of the session's transaction.
pub fn commit_transaction(engine: &EngineHandle) -> Result {
    engine.commit_transaction()
}

/// `FwpmTransactionAbort0` of the session's transaction.
pub fn abort_transaction(engine: &EngineHandle) -> Result {
    engine.abort_transaction()
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
    let provider = ProviderObject {
        key: PROVIDER_KEY,
        display: DisplayStrings::new(crate::wide!("wfpcallout"), crate::wide!("wfpcallout callout driver")),
        // Persistent, like the sublayer and the callouts: persistent filters
        // may only name persistent objects (FWPM_CALLOUT0: a persistent
        // callout "can be referenced by boot-time and other persistent
        // filters"), and adoption promises to find them after a reboot.
        flags: fwp::FWPM_PROVIDER_FLAG_PERSISTENT,
    };
    let add_provider = || engine.add_provider(&provider);
    let status = add_provider();
    if status == STATUS_FWP_ALREADY_EXISTS && !provider_is_persistent(engine)? {
        // Our sublayer and callouts name the provider: those nothing uses
        // go first (they are added again below, persistent), so that the
        // provider can go too unless something still needs it.
        remove_unused_objects_naming_the_provider(engine)?;
        kept.provider = replace_non_persistent("provider", || engine.delete_provider(&PROVIDER_KEY), add_provider)?;
    } else {
        added("provider", status)?;
    }

    let sublayer = SublayerObject {
        key: SUBLAYER_KEY,
        display: DisplayStrings::new(crate::wide!("wfpcallout"), crate::wide!("Filters calling wfpcallout")),
        provider: &PROVIDER_KEY_STATIC,
        weight: SUBLAYER_WEIGHT,
        flags: fwp::FWPM_SUBLAYER_FLAG_PERSISTENT,
    };
    let add_sublayer = || engine.add_sublayer(&sublayer);
    let status = add_sublayer();
    if status == STATUS_FWP_ALREADY_EXISTS && !sublayer_is_persistent(engine)? {
        kept.sublayer = replace_non_persistent("sublayer", || engine.delete_sublayer(&SUBLAYER_KEY), add_sublayer)?;
    } else {
        added("sublayer", status)?;
    }

    for spec in CALLOUTS.iter() {
        let callout = CalloutObject {
            key: spec.key,
            display: DisplayStrings::new(spec.name, spec.description),
            // Without USES_PROVIDER_CONTEXT notifyFn never sees the provider
            // context that carries the filter's policy.
            flags: fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT | fwp::FWPM_CALLOUT_FLAG_PERSISTENT,
            provider: &PROVIDER_KEY_STATIC,
            layer: spec.layer_key,
        };
        let status = engine.add_callout(&callout);
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
/// `Fwpm*GetByKey0` call, `read` looks at the object (NULL: `None`), and
/// the engine's copy is freed after it.
fn read_by_key<T, R>(
    what: &str,
    get: impl FnOnce() -> Result<Option<EngineMemory<T>>>,
    read: impl FnOnce(Option<&T>) -> R,
) -> Result<R> {
    let existing = get().inspect_err(|s| crate::log!(Level::Error, "reading the existing {} failed: {}", what, s))?;
    Ok(read(existing.as_deref()))
}

/// Whether the provider with our key is persistent.
fn provider_is_persistent(engine: &EngineHandle) -> Result<bool> {
    read_by_key(
        "provider",
        || engine.provider_by_key(&PROVIDER_KEY),
        |p: Option<&fwp::FWPM_PROVIDER0>| p.is_some_and(|p| p.flags & fwp::FWPM_PROVIDER_FLAG_PERSISTENT != 0),
    )
}

/// Whether the sublayer with our key is persistent.
fn sublayer_is_persistent(engine: &EngineHandle) -> Result<bool> {
    read_by_key(
        "sublayer",
        || engine.sublayer_by_key(&SUBLAYER_KEY),
        |l: Option<&fwp::FWPM_SUBLAYER0>| l.is_some_and(|l| l.flags & fwp::FWPM_SUBLAYER_FLAG_PERSISTENT != 0),
    )
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
        tolerated(engine.delete_callout(&spec.key), fwps_types::STATUS_FWP_CALLOUT_NOT_FOUND)?;
    }
    tolerated(engine.delete_sublayer(&SUBLAYER_KEY), fwps_types::STATUS_FWP_SUBLAYER_NOT_FOUND)
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
fn keep_or_replace_callout(engine: &EngineHandle, wanted: &CalloutObject) -> Result<bool> {
    let get = || engine.callout_by_key(&wanted.key);
    let (matches, persistent) = read_by_key("callout", get, |found: Option<&fwp::FWPM_CALLOUT0>| {
        found.map_or((false, false), |found| {
            let matches = found.flags & fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT != 0
                && same_guid(&found.applicableLayer, &wanted.layer);
            (matches, found.flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT != 0)
        })
    })?;
    let add = || engine.add_callout(wanted);
    if matches && persistent {
        return Ok(false);
    }
    if matches {
        return replace_non_persistent("callout", || engine.delete_callout(&wanted.key), add);
    }
    crate::log!(
        Level::Warning,
        "an existing callout lacks FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT or has another layer: replacing it"
    );
    let deleted = engine.delete_callout(&wanted.key);
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
    mut visit: impl FnMut(&FilterEntry<'_>) -> Result<bool>,
) -> Result<usize> {
    let mut filters = engine.enumerate_filters_calling(&spec.layer_key, &spec.key)?;
    let mut counted = 0;
    let mut outcome = Ok(());
    loop {
        let page = match filters.next_page(ENUM_BATCH) {
            Ok(page) => page,
            Err(status) => {
                outcome = outcome.and(Err(status));
                break;
            }
        };
        for filter in page.filters() {
            match filter.as_ref().map(&mut visit) {
                Some(Ok(true)) => counted += 1,
                Some(Ok(false)) => {}
                Some(Err(status)) => outcome = outcome.and(Err(status)),
                None => outcome = outcome.and(Err(NtStatus::INVALID_PARAMETER)),
            }
        }
        if page.len() < ENUM_BATCH as usize {
            break;
        }
    }
    outcome.map(|()| counted)
}

/// Deletes what `add_objects` added. Objects still referenced by filters
/// (`STATUS_FWP_IN_USE`) stay, and are reused at the next load; they are
/// persistent, so only a management client removes them for good
/// (`wfpctl uninstall`), perhaps while we are loaded: objects already
/// gone are what we wanted, not an error.
pub fn delete_objects(engine: &EngineHandle) {
    for spec in CALLOUTS.iter() {
        log_delete("callout", engine.delete_callout(&spec.key));
    }
    log_delete("sublayer", engine.delete_sublayer(&SUBLAYER_KEY));
    log_delete("provider", engine.delete_provider(&PROVIDER_KEY));
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
    filter: &FilterEntry<'_>,
    read: impl FnOnce(&ProviderBlob<'_>) -> R,
) -> Result<Option<R>> {
    let Some(key) = filter.provider_context_key() else { return Ok(None) };
    let context = engine.provider_context_by_key(&key)?;
    let blob = context.as_ref().map_or(ProviderBlob::Absent, |context| context.blob());
    Ok(Some(read(&blob)))
}
