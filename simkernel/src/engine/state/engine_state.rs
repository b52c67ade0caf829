//! The engine's object tables (callouts, providers, sublayers, provider
//! contexts, filters in evaluation order, sessions, enumerations, engine
//! memory) behind one lock, as the base filtering engine keeps them.

use crate::engine::model::records::{EngineAllocation, FilterRecord, ProviderContextRecord};
use fwps_types::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A callout registered with `FwpsCalloutRegister2`.
#[derive(Clone, Copy)]
pub(crate) struct RegisteredCallout {
    pub id: u32,
    pub classify: unsafe extern "system" fn(
        *const FWPS_INCOMING_VALUES0,
        *const FWPS_INCOMING_METADATA_VALUES0,
        *mut core::ffi::c_void,
        *const core::ffi::c_void,
        *const FWPS_FILTER2,
        u64,
        *mut FWPS_CLASSIFY_OUT0,
    ),
    pub notify: unsafe extern "system" fn(FWPS_CALLOUT_NOTIFY_TYPE, *const GUID, *mut FWPS_FILTER2) -> NTSTATUS,
    pub flow_delete: FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0,
}

/// A management callout (`FwpmCalloutAdd0`).
#[derive(Clone, Copy)]
pub(crate) struct ManagedCallout {
    pub id: u32,
    pub layer_id: u16,
    pub flags: u32,
    pub provider: Option<u128>,
}

/// Sort key of a filter within its layer: higher sublayer weight first,
/// then higher filter weight, then older filters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EvaluationOrder(std::cmp::Reverse<u16>, std::cmp::Reverse<u64>, u64);

impl EvaluationOrder {
    fn of(record: &FilterRecord) -> Self {
        Self(std::cmp::Reverse(record.sublayer_weight), std::cmp::Reverse(record.weight), record.id)
    }
}

/// A kind of management object a transaction changes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Provider,
    SubLayer,
    Callout,
}

/// A management object as it was before a delete, to put back on abort.
#[derive(Clone, Copy)]
pub(crate) enum Deleted {
    Provider,
    SubLayer(u16, Option<u128>),
    Callout(ManagedCallout),
}

/// What the open transaction changed, to roll back on abort
/// ("FwpmTransactionAbort0 causes the current transaction ... to abort and
/// rollback": adds and deletes alike).
#[derive(Clone, Copy)]
pub(crate) enum Undo {
    /// An object the transaction added, by kind and key: removed again.
    Added(ObjectKind, u128),
    /// An object the transaction deleted, with whether it was persistent:
    /// put back as it was.
    Deleted { key: u128, object: Deleted, persistent: bool },
}

#[derive(Default)]
pub(crate) struct Session {
    pub transaction: Option<Vec<Undo>>,
}

/// An enumeration: a snapshot of the matching filters taken when its handle
/// was created ("FwpmFilterEnum0 works on a snapshot of the filters taken at
/// the time the enumeration handle was created"), so a filter deleted since
/// is still returned and one added since is not.
pub(crate) struct EnumState {
    pub remaining: std::collections::VecDeque<Arc<FilterRecord>>,
}

/// Everything the engine holds.
pub(crate) struct EngineState {
    pub next_filter_id: u64,
    pub next_callout_id: u32,
    pub next_handle: usize,
    pub next_provider_context_id: u64,
    /// Run-time ids by callout key: shared by FWPS registration and FWPM add.
    pub callout_ids: HashMap<u128, u32>,
    pub registered: HashMap<u128, RegisteredCallout>,
    pub managed: HashMap<u128, ManagedCallout>,
    pub providers: HashMap<u128, ()>,
    pub sublayers: HashMap<u128, (u16, Option<u128>)>,
    pub provider_contexts: HashMap<u128, ProviderContextRecord>,
    pub filters: BTreeMap<u64, Arc<FilterRecord>>,
    /// Per layer id: filters in evaluation order (sublayer weight, then
    /// filter weight, both descending; then id).
    pub by_layer: HashMap<u16, BTreeMap<EvaluationOrder, Arc<FilterRecord>>>,
    pub sessions: HashMap<usize, Session>,
    pub enums: HashMap<usize, (usize, EnumState)>,
    pub allocations: HashMap<usize, EngineAllocation>,
    /// The session whose explicit transaction holds the engine.
    pub transaction_owner: Option<usize>,
    /// IRQL at which notifyFn is called; `None`: PASSIVE_LEVEL or
    /// DISPATCH_LEVEL chosen at random per call (the docs allow both).
    pub notify_irql: Option<u8>,
    /// Whether a filter's DELETE waits for the classifications still using
    /// it (`None`: chosen at random per delete; WFP-SEMANTICS §3 leaves it
    /// UNCONFIRMED, so both readings happen).
    pub delete_waits_for_classifies: Option<bool>,
    /// Whether a reauthorization at ALE_AUTH_CONNECT other than a
    /// completion's carries the packet that triggered it (`None`: a coin
    /// per reauthorization; row Z9).
    pub connect_reauthorization_packet: Option<bool>,
    /// IRQL at which classifyFn runs when the engine's caller is at
    /// PASSIVE_LEVEL; `None`: PASSIVE or DISPATCH chosen at random per call
    /// (the DDI allows both; row J1).
    pub classify_irql: Option<u8>,
    /// IRQL at which flowDeleteFn runs; `None`: chosen at random per call
    /// (row J2).
    pub flow_delete_irql: Option<u8>,
    /// Whether unregistering a callout while one of its classifyFn calls
    /// runs is refused with `STATUS_DEVICE_BUSY` (`None`: chosen at random
    /// per unregistration; row R7).
    pub unregister_busy_while_classifying: Option<bool>,
    /// Per callout id: its classifyFn calls running now.
    pub classifying: HashMap<u32, usize>,
    /// DELETE notifications to drop (models lost notifications).
    pub lose_delete_notifications: u32,
    /// The base filtering engine service is stopped: sessions cannot open.
    pub bfe_stopped: bool,
    /// Keys of providers, sublayers and provider contexts added persistent
    /// (`FWPM_*_FLAG_PERSISTENT`); callouts and filters keep their flags.
    pub persistent: std::collections::HashSet<u128>,
}

impl EngineState {
    fn new() -> Self {
        Self {
            next_filter_id: 70_000,
            next_callout_id: 300,
            next_handle: 0x1000,
            next_provider_context_id: 9_000,
            callout_ids: HashMap::new(),
            registered: HashMap::new(),
            managed: HashMap::new(),
            providers: HashMap::new(),
            sublayers: HashMap::new(),
            provider_contexts: HashMap::new(),
            filters: BTreeMap::new(),
            by_layer: HashMap::new(),
            sessions: HashMap::new(),
            enums: HashMap::new(),
            allocations: HashMap::new(),
            transaction_owner: None,
            notify_irql: None,
            delete_waits_for_classifies: None,
            connect_reauthorization_packet: None,
            classify_irql: None,
            flow_delete_irql: None,
            unregister_busy_while_classifying: None,
            classifying: HashMap::new(),
            lose_delete_notifications: 0,
            bfe_stopped: false,
            persistent: std::collections::HashSet::new(),
        }
    }

    pub fn callout_id_for(&mut self, key: u128) -> u32 {
        if let Some(&id) = self.callout_ids.get(&key) {
            return id;
        }
        self.next_callout_id += 1;
        let id = self.next_callout_id;
        self.callout_ids.insert(key, id);
        id
    }

    /// Publishes a filter: classification can reach it from now on.
    pub fn publish(&mut self, record: Arc<FilterRecord>) {
        self.by_layer.entry(record.layer_id).or_default().insert(EvaluationOrder::of(&record), record.clone());
        self.filters.insert(record.id, record);
    }

    /// Unpublishes a filter; returns it.
    pub fn unpublish(&mut self, filter_id: u64) -> Option<Arc<FilterRecord>> {
        let record = self.filters.remove(&filter_id)?;
        if let Some(layer) = self.by_layer.get_mut(&record.layer_id) {
            layer.remove(&EvaluationOrder::of(&record));
        }
        Some(record)
    }

    /// The IRQL for the next notifyFn call.
    pub fn next_notify_irql(&self) -> u8 {
        self.notify_irql.unwrap_or_else(passive_or_dispatch)
    }

    /// The IRQL of the next classifyFn call (fixed by a test, or a coin).
    pub fn next_classify_irql(&self) -> u8 {
        self.classify_irql.unwrap_or_else(passive_or_dispatch)
    }

    /// The IRQL of the next flowDeleteFn call (fixed by a test, or a coin).
    pub fn next_flow_delete_irql(&self) -> u8 {
        self.flow_delete_irql.unwrap_or_else(passive_or_dispatch)
    }

    /// Whether this DELETE waits for the filter's classifications in
    /// flight (fixed by a test, or a coin).
    pub fn next_delete_waits(&self) -> bool {
        self.delete_waits_for_classifies.unwrap_or_else(crate::choice::coin)
    }

    /// Whether this reauthorization at ALE_AUTH_CONNECT (not a
    /// completion's) carries its packet as layerData (fixed by a test, or
    /// a coin).
    pub fn next_connect_reauthorization_packet(&self) -> bool {
        self.connect_reauthorization_packet.unwrap_or_else(crate::choice::coin)
    }

    /// Whether unregistering `callout_id` is refused now: only while one of
    /// its classifyFn calls runs, and then as fixed by a test or by a coin.
    pub fn unregister_refused_while_classifying(&self, callout_id: u32) -> bool {
        self.classifying.get(&callout_id).is_some_and(|&running| running > 0)
            && self.unregister_busy_while_classifying.unwrap_or_else(crate::choice::coin)
    }

    pub fn registered_by_id(&self, callout_id: u32) -> Option<RegisteredCallout> {
        self.registered.values().copied().find(|c| c.id == callout_id)
    }
}

struct Engine {
    state: Mutex<Option<EngineState>>,
    transaction_ended: Condvar,
}

static ENGINE: Engine = Engine { state: Mutex::new(None), transaction_ended: Condvar::new() };

/// Locks the engine state. A thread that has to wait is marked blocked
/// meanwhile, so a race test can tell "waits for the stopped operation"
/// from "ran in the gap" (`sync_points`).
pub(crate) fn lock() -> EngineGuard {
    let mut guard = match ENGINE.state.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            let _blocked = crate::sync_points::BlockedWait::begin();
            ENGINE.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    };
    if guard.is_none() {
        *guard = Some(EngineState::new());
    }
    EngineGuard { guard }
}

/// Locks the engine for a management call by `session` (0 = the test's
/// client): waits while another session's transaction holds the engine.
pub(crate) fn lock_for(session: usize) -> EngineGuard {
    let mut engine = lock();
    while engine.transaction_owner.is_some_and(|owner| owner != session) {
        let _blocked = crate::sync_points::BlockedWait::begin();
        engine.guard = ENGINE.transaction_ended.wait(engine.guard).unwrap_or_else(|e| e.into_inner());
    }
    engine
}

pub(crate) fn transaction_ended() {
    ENGINE.transaction_ended.notify_all();
}

/// The locked engine.
pub(crate) struct EngineGuard {
    guard: MutexGuard<'static, Option<EngineState>>,
}

impl std::ops::Deref for EngineGuard {
    type Target = EngineState;
    fn deref(&self) -> &EngineState {
        self.guard.as_ref().unwrap_or_else(|| unreachable!("initialized by lock()"))
    }
}

impl std::ops::DerefMut for EngineGuard {
    fn deref_mut(&mut self) -> &mut EngineState {
        self.guard.as_mut().unwrap_or_else(|| unreachable!("initialized by lock()"))
    }
}

/// A fresh engine (a boot): every table empty, waiters released.
pub(crate) fn reset() {
    let mut guard = ENGINE.state.lock().unwrap_or_else(|e| e.into_inner());
    *guard = Some(EngineState::new());
    drop(guard);
    transaction_ended();
}

/// PASSIVE_LEVEL or DISPATCH_LEVEL, at random: where a DDI says a callback
/// runs at IRQL <= DISPATCH_LEVEL.
fn passive_or_dispatch() -> u8 {
    if crate::choice::coin() { DISPATCH_LEVEL } else { PASSIVE_LEVEL }
}
