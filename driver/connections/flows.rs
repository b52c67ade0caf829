//! Flow contexts: at ALE_FLOW_ESTABLISHED, connections that our filters
//! permitted or audited get a context holding its own reference on the
//! filter's context plus the 5-tuple and start time, so per-filter live
//! connection counts are exact. flowDeleteFn releases it at whatever IRQL
//! the engine calls it, also after the filter itself was deleted (the
//! filter context then lives until its last flow ends).
//!
//! The table is keyed by the flow context's own address: flowDeleteFn finds
//! the entry by the value the engine hands back, without dereferencing it,
//! so a context we do not own is never touched.
#![forbid(unsafe_code)]

use crate::filters::filter_context::{ContextRef, FilterContext};
use crate::platform::id_table::IdTable;
use crate::platform::log::Level;
use crate::platform::pool::{PoolTag, Tagged, TaggedBox};
use crate::platform::status::NtStatus;
use crate::wfp::filter_view::{IncomingValues, Metadata};
use core::net::IpAddr;
use core::sync::atomic::{AtomicU8, Ordering};

/// Flow contexts (`FlowContext`).
pub const TAG_FLOW_CONTEXT: PoolTag = PoolTag::new(*b"WfFl");
/// The flow table's slot array.
pub const TAG_FLOW_TABLE: PoolTag = PoolTag::new(*b"WfFt");

/// One tracked connection.
pub struct FlowContext {
    flow_handle: u64,
    layer_id: u16,
    callout_id: u32,
    filter: ContextRef,
    /// IP protocol.
    pub protocol: u8,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// Interrupt time when the flow was established.
    pub started: u64,
    /// Where unload's removal stands: [`ASSOCIATING`], [`NOT_ASKED`],
    /// [`ASKED`], [`FAILED`].
    removal: AtomicU8,
}

impl Drop for FlowContext {
    fn drop(&mut self) {
        // The filter reference goes with the context: count the flow ended.
        self.filter.flow_ended();
    }
}

impl Tagged for FlowContext {
    const TAG: PoolTag = TAG_FLOW_CONTEXT;
}

/// A flow context owned by the flow table.
pub type FlowBox = TaggedBox<FlowContext>;

/// Live flow contexts, keyed by their own address.
pub type FlowTable = IdTable<FlowBox>;

crate::counter_set! {
    /// Flow counters that are not per filter.
    pub struct FlowStats {
        /// Flow contexts associated.
        associated,
        /// Associations the engine refused, or that had no flow handle.
        associate_failures,
        /// Flows another of our filters at the layer tracks already (one
        /// context per flow and callout).
        already_tracked,
        /// flowDeleteFn calls for a context we do not hold (ignored).
        delete_unknown,
    }
}

/// The driver's flow contexts and their counters.
pub struct Flows {
    /// Live flow contexts, keyed by their own address.
    pub table: FlowTable,
    /// Counters that are not per filter.
    pub stats: FlowStats,
}

impl Flows {
    /// An empty set (const: it lives in the driver's static state).
    pub const fn new() -> Self {
        Self { table: FlowTable::new(TAG_FLOW_TABLE), stats: FlowStats::new() }
    }

    /// Flow contexts alive.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no flow context is alive.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Starts tracking a flow permitted by `context`'s filter. Any failure
    /// just leaves the flow untracked (and counted). The caller checks that
    /// the driver is not unloading (unload removes flow contexts and must not
    /// see new ones).
    pub fn track(
        &self,
        context: &FilterContext,
        callout_id: u32,
        values: &IncomingValues<'_>,
        metadata: Option<&Metadata<'_>>,
    ) {
        let Some(flow_handle) = metadata.and_then(Metadata::flow_handle) else {
            self.stats.associate_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let connection = values.connection();
        let build = || {
            // Counted here, uncounted in FlowContext's drop: always balanced.
            context.flow_started();
            FlowContext {
                flow_handle,
                layer_id: values.layer_id(),
                callout_id,
                filter: context.acquire(),
                protocol: connection.protocol,
                local: connection.local,
                remote: connection.remote,
                started: crate::platform::kernel::now_ticks(),
                removal: AtomicU8::new(ASSOCIATING),
            }
        };
        let Ok(entry) = FlowBox::try_new_with(build) else {
            self.stats.associate_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let key = core::ptr::from_ref::<FlowContext>(&*entry).addr() as u64;
        let layer_id = entry.layer_id;
        if let Err((_, entry)) = self.table.insert(key, entry) {
            self.stats.associate_failures.fetch_add(1, Ordering::Relaxed);
            drop(entry);
            return;
        }
        match associate(flow_handle, layer_id, callout_id, key) {
            Ok(()) => {
                self.stats.associated.fetch_add(1, Ordering::Relaxed);
                // INVARIANT: from now on the engine holds the context, so
                // unload may ask for its removal (it skipped it until now: a
                // removal asked before the association would find nothing and
                // the context would then stay with the engine for good).
                // (Matched on the flow handle too: if the flow has already
                // ended, the address may hold another flow's context.)
                self.table.with(key, |flow| {
                    if flow.flow_handle == flow_handle {
                        let _ =
                            flow.removal.compare_exchange(ASSOCIATING, NOT_ASKED, Ordering::AcqRel, Ordering::Acquire);
                    }
                });
            }
            Err(status) if status.raw() == fwps_types::STATUS_OBJECT_NAME_EXISTS => {
                // Tracked already by another of our filters at this layer.
                self.stats.already_tracked.fetch_add(1, Ordering::Relaxed);
                context.flow_not_tracked();
                drop(self.table.remove(key));
            }
            Err(status) => {
                self.stats.associate_failures.fetch_add(1, Ordering::Relaxed);
                crate::log!(Level::Warning, "FwpsFlowAssociateContext0 failed: {}", status);
                context.flow_not_tracked();
                drop(self.table.remove(key));
            }
        }
    }
}

/// `FwpsFlowAssociateContext0`. `STATUS_OBJECT_NAME_EXISTS` (the flow
/// carries a context of this callout already, e.g. from another of our
/// filters at the layer) is a success code by severity, but nothing was
/// associated: it is a failure here.
fn associate(flow_handle: u64, layer_id: u16, callout_id: u32, context: u64) -> crate::platform::status::Result {
    let status = crate::wfp::ffi::flow_associate_context(flow_handle, layer_id, callout_id, context);
    if status == fwps_types::STATUS_OBJECT_NAME_EXISTS {
        return Err(NtStatus::from_raw(status));
    }
    NtStatus::to_result(status)
}

impl Flows {
    /// flowDeleteFn's work: the engine is done with the flow. Runs at up to
    /// DISPATCH_LEVEL, possibly after the filter was deleted.
    pub fn deleted(&self, flow_context: u64) {
        match self.table.remove(flow_context) {
            Some(entry) => drop(entry),
            None => {
                self.stats.delete_unknown.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How many times unload waits for PENDING removals, and how long each wait
/// is (10 ms in 100-ns units).
const REMOVAL_WAITS: u32 = 100;
const REMOVAL_WAIT_INTERVAL: i64 = 100_000;

/// Being associated: the engine may not hold the context yet, so unload
/// does not ask for its removal until the association has returned.
const ASSOCIATING: u8 = 3;
/// Unload has not asked the engine to remove the flow's context yet.
const NOT_ASKED: u8 = 0;
/// Asked, and the engine agreed (SUCCESS or PENDING): flowDeleteFn frees it.
const ASKED: u8 = 1;
/// Asked, and the engine failed: asked again after the next wait.
const FAILED: u8 = 2;

impl Flows {
    /// Unload: asks the engine to remove every flow context (honouring
    /// `STATUS_PENDING`: such a context is freed only in flowDeleteFn, and
    /// asking again after a failure), then waits, bounded, until the table is
    /// empty. Returns what is left.
    pub fn remove_all(&self) -> usize {
        let mut waits = 0;
        loop {
            self.ask_removals();
            if self.table.is_empty() || waits >= REMOVAL_WAITS {
                break;
            }
            crate::platform::kernel::sleep_100ns(REMOVAL_WAIT_INTERVAL);
            waits += 1;
            self.table.for_each(|_, flow| {
                let _ = flow.removal.compare_exchange(FAILED, NOT_ASKED, Ordering::AcqRel, Ordering::Acquire);
            });
        }
        let left = self.table.len();
        if left != 0 {
            crate::log!(Level::Error, "unload: {} flow contexts still pending removal after {} waits", left, waits);
        }
        left
    }

    /// Asks for the removal of every flow context not asked for yet.
    fn ask_removals(&self) {
        let not_asked = |flow: &FlowContext| {
            flow.removal.compare_exchange(NOT_ASKED, ASKED, Ordering::AcqRel, Ordering::Acquire).is_ok()
        };
        while let Some(key) = self.table.find_id(not_asked) {
            let Some((handle, layer_id, callout_id)) =
                self.table.with(key, |flow| (flow.flow_handle, flow.layer_id, flow.callout_id))
            else {
                continue;
            };
            let status = remove_context(handle, layer_id, callout_id);
            if status == NtStatus::from_raw(fwps_types::STATUS_UNSUCCESSFUL) {
                // The engine holds no context for it: flowDeleteFn will not come.
                drop(self.table.remove(key));
            } else if !status.is_success() {
                crate::log!(Level::Warning, "unload: FwpsFlowRemoveContext0 failed ({}): asking again", status);
                self.table.with(key, |flow| flow.removal.store(FAILED, Ordering::Release));
            }
        }
    }
}

fn remove_context(handle: u64, layer_id: u16, callout_id: u32) -> NtStatus {
    // flowDeleteFn may run inside this call: no lock of ours is held here.
    NtStatus::from_raw(crate::wfp::ffi::flow_remove_context(handle, layer_id, callout_id))
}

impl Flows {
    /// Frees whatever is left after every callout is unregistered (no
    /// flowDeleteFn can come any more) and the table's storage.
    pub fn release_all(&self) {
        while let Some(entry) = self.table.pop_any() {
            drop(entry);
        }
        self.table.release_storage();
    }
}

impl Default for Flows {
    fn default() -> Self {
        Self::new()
    }
}
