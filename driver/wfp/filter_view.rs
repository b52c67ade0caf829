//! Safe views over what the filter engine hands the callbacks: the run-time
//! filter (with its provider context), the classify output, values,
//! metadata and packet; the context word of the filter a classifyFn call
//! matched, turned into the context it names only with evidence that the
//! word is ours (`ClassifiedFilter`, `ContextWords`, `OwnWordGuard`, the
//! one caller of `HandleSlots::borrow_checked`); and over what it returns
//! to a management session, freed with `FwpmFreeMemory0` when dropped
//! (`EngineMemory`: objects read by key, provider contexts;
//! `FilterEnumeration` and its `FilterPage`s).
//! These are the only places that read or write those structures.
#![allow(unsafe_code)]

use crate::platform::pool::{Counted, HandleSlots, Tagged};
use crate::platform::rundown::{Rundown, RundownGuard};
use crate::platform::status::NtStatus;
use crate::wfp::ffi::{
    FWP_CONDITION_FLAG_IS_REAUTHORIZE, FWPS_CLASSIFY_OUT0, FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT, FWPS_FILTER2,
    FWPS_INCOMING_VALUES0, FWPS_RIGHT_ACTION_WRITE, GUID, NTSTATUS, fwp,
};

/// What a filter's provider context holds, as far as we care.
#[derive(Debug, PartialEq, Eq)]
pub enum ProviderBlob<'a> {
    /// No provider context: the default policy applies.
    Absent,
    /// A general context with this data buffer (engine-owned; copy it).
    General(&'a [u8]),
    /// A provider context of another type (`FWPM_PROVIDER_CONTEXT_TYPE`).
    WrongType(i32),
}

/// A borrowed run-time filter.
#[derive(Clone, Copy)]
pub struct FilterView<'a> {
    filter: &'a FWPS_FILTER2,
}

impl<'a> FilterView<'a> {
    /// Wraps the engine's filter.
    ///
    /// # Safety
    /// `filter` must be NULL or point to an `FWPS_FILTER2` that the engine
    /// keeps valid for `'a`, whose `providerContext` is NULL or valid for
    /// `'a` with a data buffer of `size` readable bytes.
    pub unsafe fn from_raw(filter: *const FWPS_FILTER2) -> Option<Self> {
        // SAFETY: the caller guarantees NULL or a filter valid for 'a.
        unsafe { filter.as_ref() }.map(|filter| Self { filter })
    }

    /// Run-time filter id.
    pub fn id(&self) -> u64 {
        self.filter.filterId
    }

    /// The filter's action type (`FWP_ACTION_CALLOUT_TERMINATING`,
    /// `_INSPECTION` or `_UNKNOWN` for filters that call us).
    pub fn action_type(&self) -> u32 {
        self.filter.action.r#type
    }

    /// Run-time id of the callout the filter's action calls.
    pub fn callout_id(&self) -> u32 {
        self.filter.action.calloutId
    }

    /// The `context` member: ours only if we wrote it on ADD.
    pub fn raw_context(&self) -> u64 {
        self.filter.context
    }

    /// Whether a PERMIT from this filter must clear the write right.
    pub fn clears_action_right(&self) -> bool {
        self.filter.flags & FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT != 0
    }

    /// The filter's provider context, classified.
    pub fn provider_blob(&self) -> ProviderBlob<'a> {
        // SAFETY: from_raw's contract: NULL or valid for 'a.
        let Some(context) = (unsafe { self.filter.providerContext.as_ref() }) else {
            return ProviderBlob::Absent;
        };
        // SAFETY: from_raw's contract: the provider context and the blob it
        // points to are valid for 'a, as the engine fills them.
        unsafe { blob_of(context) }
    }
}

/// The filter a classifyFn call matched: a [`FilterView`] (through
/// `Deref`) that also knows the word in its `context` stays as it is while
/// the call runs, which is what lets classify borrow the context its own
/// word names ([`ContextWords::own`]). notifyFn's views are plain
/// [`FilterView`]s.
///
/// Whether the engine can still run a classify of the filter once its
/// DELETE notify has been delivered is not documented, so nothing here
/// relies on it: the context the word names stays alive for the call
/// because the handle's slot keeps a reference until a grace period after
/// DELETE has passed (`HandleSlots::reclaim`), not because DELETE waits.
///
/// # Invariants
/// `view`'s filter is the filter the running classifyFn call matched, and
/// the call lasts at least `'a` (the engine keeps the filter structure
/// valid for it). Nobody writes the filter's `context` member during the
/// call (our ADD notify wrote it before classify could see the filter).
#[derive(Clone, Copy)]
pub struct ClassifiedFilter<'a> {
    view: FilterView<'a>,
}

impl<'a> ClassifiedFilter<'a> {
    /// Wraps the filter a classifyFn call matched.
    ///
    /// # Safety
    /// As [`FilterView::from_raw`], and `filter` is NULL or the filter the
    /// engine passed to the classifyFn call running now, which lasts at
    /// least `'a` and during which nobody writes the filter's `context`.
    #[inline(always)]
    pub unsafe fn from_raw(filter: *const FWPS_FILTER2) -> Option<Self> {
        // SAFETY: NULL or valid for 'a (the caller's promise, as
        // FilterView::from_raw needs).
        let view = unsafe { FilterView::from_raw(filter) };
        // INVARIANT: the matched filter of a call lasting 'a, its context
        // unchanged (the caller's promise).
        view.map(|view| Self { view })
    }
}

impl<'a> core::ops::Deref for ClassifiedFilter<'a> {
    type Target = FilterView<'a>;
    #[inline(always)]
    fn deref(&self) -> &FilterView<'a> {
        &self.view
    }
}

/// What the driver promises classify about context words: whether a
/// matched filter's `context` is the word our notifyFn ADD stored there (a
/// handle to `slots`) is decided by the rundown's lookup bit, which the
/// fast entry into the rundown reads ([`ContextWords::enter`]). The driver
/// has one, a static the classifyFn entry point passes by reference.
///
/// # Invariants
/// Whenever an entry into `rundown` through [`Rundown::enter_fast_on`]
/// succeeds (it read the lookup bit clear), every live filter that calls
/// our callouts holds in its `context` the word our notifyFn ADD stored, a
/// handle to a claim of `slots` whose slot keeps a reference to the
/// filter's context; `rundown` is the rundown every `HandleSlots::reclaim`
/// of `slots` is given (so a released claim's reference outlives every
/// lookup that matched it inside `rundown`, whenever the engine delivers
/// DELETE); `slots`' storage is released only once `rundown` has drained.
pub struct ContextWords<'a, T: Tagged> {
    slots: &'a HandleSlots<T>,
    rundown: &'a Rundown,
}

impl<'a, T: Tagged + Send + Sync> ContextWords<'a, T> {
    /// The driver's promise about its context words (const, for a static).
    ///
    /// # Safety
    /// For all of `'a`, whenever an entry into `rundown` through
    /// [`Rundown::enter_fast_on`] succeeds: every live filter that calls our
    /// callouts holds in its `context` the word our notifyFn ADD stored (a
    /// handle to a claim of `slots`, whose slot keeps a reference to its
    /// context); every `HandleSlots::reclaim` of `slots` is given
    /// `rundown`; and `slots`' storage is released only once `rundown` has
    /// drained.
    pub const unsafe fn new(slots: &'a HandleSlots<T>, rundown: &'a Rundown) -> Self {
        // INVARIANT: the caller's promise.
        Self { slots, rundown }
    }

    /// Enters the rundown that guards the slots, on `processor`'s counter,
    /// with the evidence that `filter`'s context word is ours: `None` while
    /// unload has closed the rundown, or in lookup mode (then the word may
    /// be a provider-context id, an earlier load's handle or random bits,
    /// and classify must look the filter up by id; [`Self::lookup_mode`]
    /// tells which). One interlocked add ([`Rundown::enter_fast_on`]).
    #[inline(always)]
    pub fn enter<'f>(&self, filter: &ClassifiedFilter<'f>, processor: usize) -> Option<OwnWordGuard<'f, T>>
    where
        'a: 'f,
    {
        // The word stays as it is for the call (ClassifiedFilter's
        // invariant), so reading it before or after the entry is the same.
        let word = filter.raw_context();
        let guard = self.rundown.enter_fast_on(processor)?;
        // INVARIANT: a guard of the rundown whose fast entry read the lookup
        // bit clear while `filter` was live (its call lasts 'f), so its word
        // is the one our ADD stored (our invariant, which also gives the
        // rundown and storage conditions).
        Some(OwnWordGuard { guard, slots: self.slots, word })
    }

    /// Whether lookup mode is on now: after a refused [`Self::enter`], it
    /// was refused for lookup mode if this says so, else for unload. (If
    /// the mode ended in between, the words are ours again.)
    pub fn lookup_mode(&self) -> bool {
        self.rundown.lookup_on()
    }
}

/// Inside the rundown that guards the slots our context word names,
/// entered through [`ContextWords::enter`], which read the lookup bit clear:
/// what [`OwnWordGuard::context`] borrows against. Leaves on drop.
///
/// # Invariants
/// `word` is the `context` our notifyFn ADD stored in the call's filter: a
/// handle to a claim of `slots` whose slot keeps a reference to the
/// filter's context until every line of the rundown `guard` belongs to has
/// been seen idle after the claim's release (every `HandleSlots::reclaim`
/// of `slots` is given that rundown); `slots`' storage is released only
/// once that rundown has drained; all for `'f`.
pub struct OwnWordGuard<'f, T: Tagged> {
    guard: RundownGuard<'f>,
    slots: &'f HandleSlots<T>,
    word: u64,
}

impl<T: Tagged + Send + Sync> OwnWordGuard<'_, T> {
    /// The context the filter's own word names, if the word names a live
    /// slot (`None` otherwise: the index is bounds-checked and the key
    /// compared, nothing is dereferenced).
    #[inline(always)]
    pub fn context(&self) -> Option<&Counted<T>> {
        // borrow_checked's contract, for this borrow of `self` (within 'f):
        // - `self.guard` is a guard of the rundown every reclaim of
        //   `slots` is given (OwnWordGuard's invariant), entered before
        //   this lookup and held for the borrow, so a claim released
        //   meanwhile (DELETE, even while this call runs) keeps its
        //   reference until after the borrow;
        // - the slots' storage is not released: only once that rundown has
        //   drained, and `self.guard` holds it entered.
        // SAFETY: borrow_checked's contract holds, as just listed.
        unsafe { self.slots.borrow_checked(self.word, &self.guard) }
    }

    /// [`Self::context`] for a word with a tag (the fast path's words all
    /// have one, its static bit): `None` for a word without, and a match
    /// needs no null test ([`HandleSlots::borrow_tagged`]).
    #[inline(always)]
    pub fn tagged_context(&self) -> Option<&Counted<T>> {
        // SAFETY: as in `context`: borrow_tagged's contract is
        // borrow_checked's.
        unsafe { self.slots.borrow_tagged(self.word, &self.guard) }
    }
}

/// The filter a notifyFn call is about: read through [`NotifiedFilter::view`]
/// and, during an ADD only, written once ([`NotifiedFilter::set_context`],
/// which consumes it, so no view of it is alive when it is written).
///
/// # Invariants
/// `filter` is valid for `'a`; when `adding`, it is writable and nobody
/// else reads it during `'a` (classify does not see a filter being added).
pub struct NotifiedFilter<'a> {
    filter: core::ptr::NonNull<FWPS_FILTER2>,
    adding: bool,
    _call: core::marker::PhantomData<&'a mut FWPS_FILTER2>,
}

impl<'a> NotifiedFilter<'a> {
    /// Wraps the engine's filter for a notification of `notify_type`.
    ///
    /// # Safety
    /// `filter` must be NULL or point to the `FWPS_FILTER2` the engine passed
    /// to this notifyFn call, valid for `'a` with its provider context (as
    /// [`FilterView::from_raw`] needs), and, when `notify_type` is
    /// `FWPS_CALLOUT_NOTIFY_ADD_FILTER`, writable and read by nobody else
    /// during `'a`.
    pub unsafe fn from_raw(
        filter: *mut FWPS_FILTER2,
        notify_type: crate::wfp::ffi::FWPS_CALLOUT_NOTIFY_TYPE,
    ) -> Option<Self> {
        let adding = notify_type == crate::wfp::ffi::FWPS_CALLOUT_NOTIFY_ADD_FILTER;
        // INVARIANT: the caller's promise, for the notification type given.
        core::ptr::NonNull::new(filter).map(|filter| Self { filter, adding, _call: core::marker::PhantomData })
    }

    /// A read-only view, for as long as this borrow.
    pub fn view(&self) -> FilterView<'_> {
        // SAFETY: valid for 'a (the type's invariant), which outlives this
        // borrow; no write happens while the view lives (`set_context`
        // takes `self`).
        FilterView { filter: unsafe { self.filter.as_ref() } }
    }

    /// Stores `context` in `filter->context` if this is an ADD notification
    /// (the only time the filter is ours to write); otherwise nothing.
    pub fn set_context(self, context: u64) {
        if self.adding {
            // SAFETY: during ADD the filter is writable and nobody else
            // reads it (the type's invariant); no view of it is alive (this
            // consumes `self`, which every view borrows).
            unsafe { (*self.filter.as_ptr()).context = context };
        }
    }
}

/// Why classify cannot write a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unwritable {
    /// The engine passed no classify output.
    Null,
    /// The write right is not ours: someone with higher priority decided.
    NoWriteRight,
}

/// The classify output while its write right is held: the type makes it
/// impossible to forget that check, and each verdict method consumes it, so
/// a classification is answered at most once.
pub struct ClassifyOut<'a> {
    out: &'a mut FWPS_CLASSIFY_OUT0,
}

impl<'a> ClassifyOut<'a> {
    /// Wraps classify's output if a verdict may be written to it.
    ///
    /// # Safety
    /// `out` must be NULL or point to the engine's classify output, valid
    /// and unaliased for `'a`.
    #[inline(always)]
    pub unsafe fn from_raw(out: *mut FWPS_CLASSIFY_OUT0) -> Result<Self, Unwritable> {
        // SAFETY: the caller guarantees NULL or a valid, unaliased pointer.
        let out = unsafe { out.as_mut() }.ok_or(Unwritable::Null)?;
        if out.rights & FWPS_RIGHT_ACTION_WRITE == 0 {
            return Err(Unwritable::NoWriteRight);
        }
        Ok(Self { out })
    }

    /// PERMIT; clears the write right if the filter demands it (hard permit).
    #[inline(always)]
    pub fn permit(self, clear_right: bool) {
        self.out.actionType = fwp::FWP_ACTION_PERMIT;
        if clear_right {
            self.out.rights &= !FWPS_RIGHT_ACTION_WRITE;
        }
    }

    /// BLOCK + ABSORB with the write right cleared: what a pended
    /// classification answers.
    pub fn block_absorb(self) {
        self.out.actionType = fwp::FWP_ACTION_BLOCK;
        self.out.flags |= crate::wfp::ffi::FWPS_CLASSIFY_OUT_FLAG_ABSORB;
        self.out.rights &= !FWPS_RIGHT_ACTION_WRITE;
    }

    /// CONTINUE: the decision passes to the next filter (what a filter at
    /// ALE_FLOW_ESTABLISHED, or an inspection callout, answers).
    #[inline(always)]
    pub fn continue_(self) {
        self.out.actionType = fwp::FWP_ACTION_CONTINUE;
    }

    /// BLOCK, which always clears the write right.
    #[inline(always)]
    pub fn block(self) {
        self.out.actionType = fwp::FWP_ACTION_BLOCK;
        self.out.rights &= !FWPS_RIGHT_ACTION_WRITE;
    }
}

/// Classify's metadata: each field read only when its presence bit is set,
/// and only from the Vista-stable prefix of the structure.
pub struct Metadata<'a> {
    metadata: &'a crate::wfp::ffi::FWPS_INCOMING_METADATA_VALUES0,
}

impl<'a> Metadata<'a> {
    /// Wraps classify's metadata.
    ///
    /// # Safety
    /// `metadata` must be NULL or valid for `'a`.
    pub unsafe fn from_raw(metadata: *const crate::wfp::ffi::FWPS_INCOMING_METADATA_VALUES0) -> Option<Self> {
        // SAFETY: the caller guarantees NULL or valid for 'a.
        unsafe { metadata.as_ref() }.map(|metadata| Self { metadata })
    }

    fn has(&self, field: u32) -> bool {
        self.metadata.currentMetadataValues & field != 0
    }

    /// The completion handle for `FwpsPendOperation0`, if present.
    pub fn completion_handle(&self) -> Option<CompletionHandle<'a>> {
        if !self.has(fwp::FWPS_METADATA_FIELD_COMPLETION_HANDLE) {
            return None;
        }
        let raw = core::ptr::NonNull::new(self.metadata.completionHandle)?;
        Some(CompletionHandle { raw, _call: core::marker::PhantomData })
    }

    /// The flow handle, for `FwpsFlowAssociateContext0`, if present.
    pub fn flow_handle(&self) -> Option<u64> {
        self.has(fwp::FWPS_METADATA_FIELD_FLOW_HANDLE).then_some(self.metadata.flowHandle)
    }

    /// IP + transport header sizes, if both are present.
    pub fn header_sizes(&self) -> Option<u32> {
        let both = fwp::FWPS_METADATA_FIELD_IP_HEADER_SIZE | fwp::FWPS_METADATA_FIELD_TRANSPORT_HEADER_SIZE;
        (self.metadata.currentMetadataValues & both == both)
            .then(|| self.metadata.ipHeaderSize.saturating_add(self.metadata.transportHeaderSize))
    }

    /// The compartment id, if present.
    pub fn compartment_id(&self) -> Option<u32> {
        self.has(fwp::FWPS_METADATA_FIELD_COMPARTMENT_ID).then_some(self.metadata.compartmentId)
    }

    /// The owning process id, if present.
    pub fn process_id(&self) -> Option<u64> {
        self.has(fwp::FWPS_METADATA_FIELD_PROCESS_ID).then_some(self.metadata.processId)
    }

    /// The sending socket, for send injection, if present.
    pub fn transport_endpoint_handle(&self) -> Option<u64> {
        self.has(fwp::FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE).then_some(self.metadata.transportEndpointHandle)
    }

    /// The remote address's scope id, if present.
    pub fn remote_scope_id(&self) -> Option<u32> {
        self.has(fwp::FWPS_METADATA_FIELD_REMOTE_SCOPE_ID).then_some(self.metadata.remoteScopeId)
    }

    /// The socket control data (`WSACMSGHDR`s: ancillary data such as
    /// `IP_PKTINFO`) the sending application gave with its datagram, if
    /// present and non-empty. Valid only during classify: a callout that
    /// sends the datagram later copies it.
    pub fn control_data(&self) -> Option<&'a [u8]> {
        let present = self.has(fwp::FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA);
        let (data, len) = (self.metadata.controlData, self.metadata.controlDataLength);
        if !present || data.is_null() || len == 0 {
            return None;
        }
        // SAFETY: with its presence bit set, the engine gives
        // `controlDataLength` readable bytes at `controlData`, valid for
        // the classification ('a, the metadata's lifetime).
        Some(unsafe { core::slice::from_raw_parts(data.cast::<u8>(), len as usize) })
    }
}

/// The incoming values at an ALE auth layer, read with index and type checks.
pub struct IncomingValues<'a> {
    values: &'a FWPS_INCOMING_VALUES0,
}

impl<'a> IncomingValues<'a> {
    /// Wraps classify's fixed values.
    ///
    /// # Safety
    /// `values` must be NULL or point to incoming values whose array holds
    /// `valueCount` entries, all valid for `'a`.
    pub unsafe fn from_raw(values: *const FWPS_INCOMING_VALUES0) -> Option<Self> {
        // SAFETY: the caller guarantees NULL or valid for 'a.
        unsafe { values.as_ref() }.map(|values| Self { values })
    }

    /// Run-time layer id.
    pub fn layer_id(&self) -> u16 {
        self.values.layerId
    }

    fn value(&self, index: usize) -> Option<&'a fwp::FWP_VALUE0> {
        if index >= self.values.valueCount as usize || self.values.incomingValue.is_null() {
            return None;
        }
        // SAFETY: index < valueCount and the array holds valueCount entries
        // (from_raw's contract), so the offset stays inside it.
        let entry = unsafe { self.values.incomingValue.add(index) };
        // SAFETY: as above, the entry is valid for 'a.
        Some(unsafe { &(*entry).value })
    }

    /// The `FWP_UINT32` at `index`, if present and of that type.
    pub fn uint32(&self, index: usize) -> Option<u32> {
        let value = self.value(index)?;
        if value.r#type != fwp::FWP_UINT32 {
            return None;
        }
        // SAFETY: the tag says the union holds uint32.
        Some(unsafe { value.Anonymous.uint32 })
    }

    /// The `FWP_UINT16` at `index`, if present and of that type.
    pub fn uint16(&self, index: usize) -> Option<u16> {
        let value = self.value(index)?;
        if value.r#type != fwp::FWP_UINT16 {
            return None;
        }
        // SAFETY: the tag says the union holds uint16.
        Some(unsafe { value.Anonymous.uint16 })
    }

    /// The `FWP_UINT8` at `index`, if present and of that type.
    pub fn uint8(&self, index: usize) -> Option<u8> {
        let value = self.value(index)?;
        if value.r#type != fwp::FWP_UINT8 {
            return None;
        }
        // SAFETY: the tag says the union holds uint8.
        Some(unsafe { value.Anonymous.uint8 })
    }

    /// An address field: IPv4 (`FWP_UINT32`, host order) or IPv6
    /// (`FWP_BYTE_ARRAY16_TYPE`).
    pub fn address(&self, index: usize) -> Option<core::net::IpAddr> {
        let value = self.value(index)?;
        match value.r#type {
            // SAFETY: the tag says the union holds uint32.
            fwp::FWP_UINT32 => Some(core::net::Ipv4Addr::from(unsafe { value.Anonymous.uint32 }).into()),
            fwp::FWP_BYTE_ARRAY16_TYPE => {
                // SAFETY: the tag says the union holds byteArray16.
                let array = unsafe { value.Anonymous.byteArray16 };
                // SAFETY: the engine's pointer is NULL or valid for 'a.
                let bytes = unsafe { array.as_ref() }?.byteArray16;
                Some(core::net::Ipv6Addr::from(bytes).into())
            }
            _ => None,
        }
    }

    /// The connection's protocol, local and remote address and port, as
    /// every ALE layer we serve gives them (unspecified and 0 where absent).
    pub fn connection(&self) -> ConnectionTuple {
        let unspecified = core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
        ConnectionTuple {
            protocol: self.uint8(crate::wfp::ffi::FWPS_FIELD_ALE_AUTH_IP_PROTOCOL).unwrap_or(0),
            local: (
                self.address(crate::wfp::ffi::FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS).unwrap_or(unspecified),
                self.uint16(crate::wfp::ffi::FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT).unwrap_or(0),
            ),
            remote: (
                self.address(crate::wfp::ffi::FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS).unwrap_or(unspecified),
                self.uint16(crate::wfp::ffi::FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT).unwrap_or(0),
            ),
        }
    }

    /// Whether this classification is a reauthorization (FLAGS field).
    pub fn is_reauthorization(&self, flags_index: usize) -> bool {
        self.uint32(flags_index).is_some_and(|flags| flags & FWP_CONDITION_FLAG_IS_REAUTHORIZE != 0)
    }
}

/// The completion handle a classification's metadata carries, valid for
/// the call: only [`Metadata::completion_handle`] makes one.
#[derive(Clone, Copy)]
pub struct CompletionHandle<'a> {
    raw: core::ptr::NonNull<core::ffi::c_void>,
    _call: core::marker::PhantomData<&'a ()>,
}

impl CompletionHandle<'_> {
    /// `FwpsPendOperation0`: pends the classification. The operation comes
    /// back owned, to be completed exactly once ([`PendedOperation`]).
    pub fn pend(self) -> crate::platform::status::Result<PendedOperation> {
        let mut completion_context: *mut core::ffi::c_void = core::ptr::null_mut();
        // SAFETY: the handle came from this classification's metadata (its
        // presence bit set) and is used during the call; the out-pointer is
        // valid for the call.
        let status = unsafe { crate::wfp::ffi::FwpsPendOperation0(self.raw.as_ptr(), &mut completion_context) };
        NtStatus::to_result(status)?;
        // INVARIANT: the engine just pended the operation this context
        // names; nothing has completed it.
        Ok(PendedOperation { completion_context })
    }
}

/// Pended operations dropped without being completed (each then completed
/// without its packet by [`PendedOperation`]'s drop).
static DROPPED_UNCOMPLETED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A classification pended with `FwpsPendOperation0`, owned until it is
/// completed: the engine holds the connection (or its packet) until
/// `FwpsCompleteOperation0` is called with this context, exactly once.
/// Only [`CompletionHandle::pend`] makes one (and, under `cfg(loom)`,
/// [`PendedOperation::from_test_value`]); it is neither `Copy` nor `Clone`
/// and [`PendedOperation::complete`] consumes it, so completing twice does
/// not compile:
///
/// ```compile_fail,E0382
/// # use wfpcallout::wfp::filter_view::PendedOperation;
/// fn complete_twice(operation: PendedOperation) {
///     operation.complete::<()>(None);
///     operation.complete::<()>(None);
/// }
/// ```
///
/// Dropping one that was never completed completes it without a packet,
/// so the engine never keeps a classification forever, and says so (an
/// error in the debug output and ETW, counted in
/// [`PendedOperation::dropped_uncompleted`]): the driver never means to
/// (its requests complete theirs explicitly), so a drop is a bug made
/// visible, not a way to finish. At ALE_AUTH_CONNECT the engine then
/// reauthorizes the connection and the filter's remembered or default
/// verdict answers; at ALE_AUTH_RECV_ACCEPT the absorbed packet is gone
/// and the peer retransmits. Like `complete`, the drop must not happen
/// under a lock classify takes.
///
/// # Invariants
/// `completion_context` is the context `FwpsPendOperation0` returned for
/// an operation it pended, not completed yet: only `complete` and the
/// drop complete it, and each ends this value.
pub struct PendedOperation {
    completion_context: crate::wfp::ffi::HANDLE,
}

// SAFETY: the completion context is an engine token we never dereference;
// the engine takes it back from any thread at <= DISPATCH_LEVEL (a worker,
// a DPC, an IOCTL), which is what sending the owner allows.
unsafe impl Send for PendedOperation {}
// SAFETY: a shared `&PendedOperation` can do nothing: every method takes
// it by value (`complete`) or is associated, so threads sharing one never
// touch the context.
unsafe impl Sync for PendedOperation {}

impl PendedOperation {
    /// `FwpsCompleteOperation0`: completes the operation, with `packet` (our
    /// copy of the packet, borrowed for the call) or without one. At
    /// ALE_AUTH_CONNECT the engine reauthorizes the connection before this
    /// returns, on this thread: call it with no lock held that classify
    /// takes. <= DISPATCH_LEVEL.
    pub fn complete<H>(self, packet: Option<&crate::wfp::ffi::PacketCopy<H>>) {
        let net_buffer_list = packet.map_or(core::ptr::null_mut(), crate::wfp::ffi::PacketCopy::net_buffer_list);
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: a pended, uncompleted operation (the type's invariant),
        // completed only here: `this` is consumed and never dropped; the
        // list is NULL or the live list of our copy, borrowed for the call.
        unsafe { complete_operation(this.completion_context, net_buffer_list) };
    }

    /// How many pended operations were dropped uncompleted (and completed
    /// without their packet) since the driver was built; 0 unless
    /// something lost one.
    pub fn dropped_uncompleted() -> u64 {
        DROPPED_UNCOMPLETED.load(core::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PendedOperation {
    fn drop(&mut self) {
        DROPPED_UNCOMPLETED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        crate::log!(
            crate::platform::log::Level::Error,
            "a pended operation was dropped uncompleted: completed without its packet"
        );
        crate::platform::etw::error("a pended operation dropped uncompleted (completed now)", NtStatus::INTERNAL_ERROR);
        // SAFETY: a pended, uncompleted operation (the type's invariant);
        // `complete` never lets its value drop, so this is its one
        // completion; no packet.
        unsafe { complete_operation(self.completion_context, core::ptr::null_mut()) };
    }
}

/// Hands one operation back to the engine: `FwpsCompleteOperation0`, or
/// under `cfg(loom)` the models' stand-in engine ([`loom_engine`]).
///
/// # Safety
/// `completion_context` names an operation `FwpsPendOperation0` pended and
/// nothing completed; the caller ensures this call is its one completion.
/// `net_buffer_list` is NULL or a live `NET_BUFFER_LIST` of ours, alive
/// for the call.
unsafe fn complete_operation(completion_context: crate::wfp::ffi::HANDLE, net_buffer_list: *mut core::ffi::c_void) {
    #[cfg(not(loom))]
    // SAFETY: this function's contract: a pended operation, completed once,
    // with NULL or our live list.
    unsafe {
        crate::wfp::ffi::FwpsCompleteOperation0(completion_context, net_buffer_list)
    };
    #[cfg(loom)]
    loom_engine::complete(completion_context.addr(), !net_buffer_list.is_null());
}

#[cfg(loom)]
impl PendedOperation {
    /// A stand-in operation for the loom models (`tests/loom_pending.rs`):
    /// `completion_context` is what [`loom_engine`] is told when it
    /// completes.
    pub fn from_test_value(completion_context: usize) -> Self {
        // INVARIANT: under loom no engine call is made; the stand-in
        // engine counts each completion of this value.
        Self { completion_context: core::ptr::without_provenance_mut(completion_context) }
    }
}

/// The engine's side of `FwpsCompleteOperation0` under `cfg(loom)`: the
/// loom tests (`tests/loom_pending.rs`) run the pended-request table
/// (`verdicts::pending`) over loom's threads and lock (`sync.rs`,
/// `spin_lock.rs`) and stand in for the engine here, where every
/// [`PendedOperation`] is completed, to count completions and run the
/// reauthorization that completing at ALE_AUTH_CONNECT starts.
#[cfg(loom)]
pub mod loom_engine {
    use std::sync::{Arc, Mutex, PoisonError};

    /// What completing an operation does: called with the completion
    /// context and whether a packet was passed.
    pub type Completion = Arc<dyn Fn(usize, bool) + Send + Sync>;

    static ENGINE: Mutex<Option<Completion>> = Mutex::new(None);

    /// Installs (or, with `None`, removes) the test's engine.
    pub fn set(engine: Option<Completion>) {
        *ENGINE.lock().unwrap_or_else(PoisonError::into_inner) = engine;
    }

    /// Completes one operation (called with no lock of the table held).
    pub(super) fn complete(completion_context: usize, with_packet: bool) {
        let engine = ENGINE.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(engine) = engine {
            engine(completion_context, with_packet);
        }
    }
}

/// A connection as the ALE layers describe it: what an agent is asked
/// about and what a flow context records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionTuple {
    /// IP protocol.
    pub protocol: u8,
    /// Local address and port.
    pub local: (core::net::IpAddr, u16),
    /// Remote address and port.
    pub remote: (core::net::IpAddr, u16),
}

/// `NET_BUFFER_LIST.FirstNetBuffer` (after `Next`) on x64: offset 8.
const NBL_FIRST_NET_BUFFER_OFFSET: usize = 8;
/// `NET_BUFFER.DataLength` (after `Next`, `CurrentMdl`, `CurrentMdlOffset`) on x64: offset 24.
const NB_DATA_LENGTH_OFFSET: usize = 24;

/// classifyFn's `layerData` at the ALE authorization layers: the packet
/// (a `NET_BUFFER_LIST`) that triggered the classification, lent for the
/// call (the first packet at recv-accept, a UDP connection's first
/// datagram at connect).
#[derive(Clone, Copy)]
pub struct LayerData<'a> {
    list: core::ptr::NonNull<core::ffi::c_void>,
    _call: core::marker::PhantomData<&'a ()>,
}

impl LayerData<'_> {
    /// # Safety
    /// `layer_data` is NULL or the `NET_BUFFER_LIST` the engine passed to
    /// this classifyFn call, whose first `NET_BUFFER` it does not change
    /// while the view lives (the call).
    pub unsafe fn from_raw(layer_data: *mut core::ffi::c_void) -> Option<Self> {
        core::ptr::NonNull::new(layer_data).map(|list| Self { list, _call: core::marker::PhantomData })
    }

    /// `FwpsQueryPacketInjectionState0`: whether (and how) `handle`
    /// injected this packet (`FWPS_PACKET_INJECTION_STATE`).
    pub fn injection_state(&self, handle: crate::wfp::ffi::InjectionHandle<'_>) -> i32 {
        // SAFETY: a live injection handle (`InjectionHandle`), and
        // classify's packet, valid for the call (the constructor); no
        // injection context is asked for.
        unsafe {
            crate::wfp::ffi::FwpsQueryPacketInjectionState0(handle.as_raw(), self.list.as_ptr(), core::ptr::null_mut())
        }
    }

    /// The first `NET_BUFFER`, or NULL.
    fn first_buffer(&self) -> *mut core::ffi::c_void {
        // SAFETY: the list is valid for the call (constructor) and at least
        // FirstNetBuffer's end long; on x64 that is a pointer at offset 8.
        let field = unsafe { self.list.as_ptr().cast::<u8>().add(NBL_FIRST_NET_BUFFER_OFFSET) };
        // SAFETY: as above: the field is readable.
        unsafe { field.cast::<*mut core::ffi::c_void>().read_unaligned() }
    }

    /// Bytes of the first packet from where its data starts now (the IP
    /// header at recv-accept's IP layer, the transport header at connect);
    /// `None` without a `NET_BUFFER`.
    pub fn data_length(&self) -> Option<usize> {
        let buffer = self.first_buffer();
        if buffer.is_null() {
            return None;
        }
        // SAFETY: the list's first NET_BUFFER, valid for the call; on x64
        // DataLength is a ULONG at offset 24.
        let field = unsafe { buffer.cast::<u8>().add(NB_DATA_LENGTH_OFFSET) };
        // SAFETY: as above: the field is readable.
        Some(unsafe { field.cast::<u32>().read_unaligned() } as usize)
    }

    /// Copies the first packet into `into` (all of it: its data plus the
    /// `headers` bytes before its data start, which the metadata says are
    /// there), leaving the packet where the engine put it. Fails without a
    /// `NET_BUFFER` or when NDIS cannot provide the bytes.
    pub fn copy_packet(&self, headers: u32, into: &mut [u8]) -> crate::platform::status::Result {
        let buffer = self.first_buffer();
        let unusable = Err(NtStatus::INVALID_PARAMETER);
        let Ok(len) = u32::try_from(into.len()) else { return unusable };
        if buffer.is_null() {
            return unusable;
        }
        if headers != 0 {
            // SAFETY: the packet's first NET_BUFFER, valid during classify;
            // the headers it is retreated over are in the buffer (the
            // caller read their size from the metadata).
            let status =
                unsafe { crate::wfp::ffi::NdisRetreatNetBufferDataStart(buffer, headers, 0, core::ptr::null_mut()) };
            if status != 0 {
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
        }
        let target = into.as_mut_ptr();
        // SAFETY: `target` has room for `len` bytes (it is `into`).
        let data = unsafe { crate::wfp::ffi::NdisGetDataBuffer(buffer, len, target.cast(), 1, 0) };
        if !data.is_null() && data.cast::<u8>() != target {
            // Contiguous: NDIS returned its own pointer and left `into` alone.
            // SAFETY: NDIS says `len` bytes are readable there; `into` is
            // ours and does not overlap the packet.
            unsafe { core::ptr::copy_nonoverlapping(data.cast::<u8>(), target, into.len()) };
        }
        if headers != 0 {
            // SAFETY: undoes the retreat above before the engine sees the packet.
            unsafe { crate::wfp::ffi::NdisAdvanceNetBufferDataStart(buffer, headers, 0, core::ptr::null_mut()) };
        }
        if data.is_null() { unusable } else { Ok(()) }
    }
}

/// The policy blob a provider context holds.
///
/// # Safety
/// `context` is a provider context as the engine fills it, valid for `'a`
/// together with what it points to: its union as its `type` says, and a
/// `dataBuffer` NULL or holding `size` readable bytes.
unsafe fn blob_of<'a>(context: &'a fwp::FWPM_PROVIDER_CONTEXT2) -> ProviderBlob<'a> {
    if context.r#type != fwp::FWPM_GENERAL_CONTEXT {
        return ProviderBlob::WrongType(context.r#type);
    }
    // SAFETY: for FWPM_GENERAL_CONTEXT the union holds `dataBuffer` (this
    // function's contract).
    let buffer = unsafe { context.Anonymous.dataBuffer };
    // SAFETY: NULL or a blob valid for 'a (this function's contract).
    let Some(blob) = (unsafe { buffer.as_ref() }) else {
        return ProviderBlob::General(&[]);
    };
    if blob.data.is_null() || blob.size == 0 {
        return ProviderBlob::General(&[]);
    }
    // SAFETY: `data` holds `size` readable bytes for 'a (this function's contract).
    ProviderBlob::General(unsafe { core::slice::from_raw_parts(blob.data, blob.size as usize) })
}

/// Memory the filter engine allocated for us (an object read by key, an
/// enumeration page), freed with `FwpmFreeMemory0` when dropped; derefs to
/// what it holds. Only the engine reads in this file make one.
///
/// # Invariants
/// `ptr` is memory an `Fwpm*` call returned to be freed with
/// `FwpmFreeMemory0`, holding a valid `T` (with everything it points to,
/// in the same allocation), freed only by this value's drop.
pub struct EngineMemory<T> {
    ptr: core::ptr::NonNull<T>,
}

impl<T> EngineMemory<T> {
    /// Makes the `Fwpm*` call `get` into an out-pointer and owns what it
    /// returned (`None` for success with NULL).
    ///
    /// # Safety
    /// On success `get` leaves NULL or memory the engine allocated for us,
    /// to be freed with `FwpmFreeMemory0`, holding a valid `T`.
    unsafe fn get(get: impl FnOnce(*mut *mut T) -> NTSTATUS) -> crate::platform::status::Result<Option<Self>> {
        let mut raw: *mut T = core::ptr::null_mut();
        NtStatus::to_result(get(&mut raw))?;
        // INVARIANT: what the call returned (this function's contract).
        Ok(core::ptr::NonNull::new(raw).map(|ptr| Self { ptr }))
    }
}

impl<T> core::ops::Deref for EngineMemory<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a valid T until this value drops (the type's invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for EngineMemory<T> {
    fn drop(&mut self) {
        let mut raw = self.ptr.as_ptr().cast::<core::ffi::c_void>();
        // SAFETY: engine memory for us, freed once, here (the type's
        // invariant); no reference into it outlives `self`.
        unsafe { crate::wfp::ffi::FwpmFreeMemory0(&mut raw) };
    }
}

impl EngineMemory<fwp::FWPM_PROVIDER_CONTEXT2> {
    /// The policy blob this provider context holds (as the engine keeps it).
    pub fn blob(&self) -> ProviderBlob<'_> {
        // SAFETY: the engine's provider context with everything it points
        // to, alive while `self` is (the type's invariant).
        unsafe { blob_of(self) }
    }
}

/// The shape of the `Fwpm*GetByKey*` functions: session, key, out-pointer.
type GetByKey<T> = unsafe extern "system" fn(crate::wfp::ffi::HANDLE, *const GUID, *mut *mut T) -> NTSTATUS;

impl crate::wfp::ffi::EngineHandle {
    /// Reads the object with `key` through `get` (an error when there is
    /// none).
    ///
    /// # Safety
    /// `get` is an `Fwpm*GetByKey*` function that on success leaves NULL or
    /// a `T` the engine allocated for us, to be freed with FwpmFreeMemory0.
    unsafe fn by_key<T>(
        &self,
        key: &GUID,
        get: GetByKey<T>,
    ) -> crate::platform::status::Result<Option<EngineMemory<T>>> {
        let call = |out| {
            // SAFETY: an open session (`EngineHandle`); the key and the
            // out-pointer are valid for the call; `get` is a GetByKey
            // function (this function's contract).
            unsafe { get(self.raw(), key, out) }
        };
        // SAFETY: what `get` returns on success (this function's contract).
        unsafe { EngineMemory::get(call) }
    }

    /// `FwpmProviderGetByKey0`: the provider with `key`.
    pub fn provider_by_key(
        &self,
        key: &GUID,
    ) -> crate::platform::status::Result<Option<EngineMemory<fwp::FWPM_PROVIDER0>>> {
        // SAFETY: FwpmProviderGetByKey0 leaves NULL or a provider allocated
        // for us, freed with FwpmFreeMemory0.
        unsafe { self.by_key(key, crate::wfp::ffi::FwpmProviderGetByKey0) }
    }

    /// `FwpmSubLayerGetByKey0`: the sublayer with `key`.
    pub fn sublayer_by_key(
        &self,
        key: &GUID,
    ) -> crate::platform::status::Result<Option<EngineMemory<fwp::FWPM_SUBLAYER0>>> {
        // SAFETY: FwpmSubLayerGetByKey0 leaves NULL or a sublayer allocated
        // for us, freed with FwpmFreeMemory0.
        unsafe { self.by_key(key, crate::wfp::ffi::FwpmSubLayerGetByKey0) }
    }

    /// `FwpmCalloutGetByKey0`: the management callout with `key`.
    pub fn callout_by_key(
        &self,
        key: &GUID,
    ) -> crate::platform::status::Result<Option<EngineMemory<fwp::FWPM_CALLOUT0>>> {
        // SAFETY: FwpmCalloutGetByKey0 leaves NULL or a callout allocated
        // for us, freed with FwpmFreeMemory0.
        unsafe { self.by_key(key, crate::wfp::ffi::FwpmCalloutGetByKey0) }
    }

    /// `FwpmProviderContextGetByKey2`: the provider context with `key`.
    pub fn provider_context_by_key(
        &self,
        key: &GUID,
    ) -> crate::platform::status::Result<Option<EngineMemory<fwp::FWPM_PROVIDER_CONTEXT2>>> {
        // SAFETY: FwpmProviderContextGetByKey2 leaves NULL or a provider
        // context allocated for us (its blob in the same allocation), freed
        // with FwpmFreeMemory0.
        unsafe { self.by_key(key, crate::wfp::ffi::FwpmProviderContextGetByKey2) }
    }

    /// `FwpmFilterCreateEnumHandle0`: an enumeration of the filters at
    /// `layer` whose action calls callout `callout` (overlapping
    /// enumeration), read a page at a time.
    pub fn enumerate_filters_calling(
        &self,
        layer: &GUID,
        callout: &GUID,
    ) -> crate::platform::status::Result<FilterEnumeration<'_>> {
        let template = fwp::FWPM_FILTER_ENUM_TEMPLATE0 {
            layerKey: *layer,
            enumType: fwp::FWP_FILTER_ENUM_OVERLAPPING,
            actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
            calloutKey: core::ptr::from_ref(callout).cast_mut(),
            ..fwp::FWPM_FILTER_ENUM_TEMPLATE0::default()
        };
        let mut handle: crate::wfp::ffi::HANDLE = core::ptr::null_mut();
        // SAFETY: an open session; the template (and the callout key it
        // points to) and the out-pointer are valid for the call, which only
        // reads the template.
        let status = unsafe { crate::wfp::ffi::FwpmFilterCreateEnumHandle0(self.raw(), &template, &mut handle) };
        NtStatus::to_result(status)?;
        // INVARIANT: an enumeration the engine just created on `self`.
        Ok(FilterEnumeration { engine: self, handle })
    }
}

/// A filter enumeration on a session, destroyed when dropped.
///
/// # Invariants
/// `handle` is an enumeration handle `FwpmFilterCreateEnumHandle0` created
/// on `engine`, not destroyed yet.
pub struct FilterEnumeration<'a> {
    engine: &'a crate::wfp::ffi::EngineHandle,
    handle: crate::wfp::ffi::HANDLE,
}

impl FilterEnumeration<'_> {
    /// `FwpmFilterEnum0`: the next page of at most `count` filters (fewer:
    /// the enumeration is done).
    pub fn next_page(&mut self, count: u32) -> crate::platform::status::Result<FilterPage> {
        let mut entries: *mut *mut fwp::FWPM_FILTER0 = core::ptr::null_mut();
        let mut returned = 0u32;
        // SAFETY: an open session and its live enumeration (the type's
        // invariant); the out-pointers are valid for the call.
        let status = unsafe {
            crate::wfp::ffi::FwpmFilterEnum0(self.engine.raw(), self.handle, count, &mut entries, &mut returned)
        };
        NtStatus::to_result(status)?;
        // INVARIANT: an array of `returned` filter pointers the engine
        // allocated for us (NULL when none).
        let entries = core::ptr::NonNull::new(entries).map(|ptr| EngineMemory { ptr });
        Ok(FilterPage { entries, returned: returned as usize })
    }
}

impl Drop for FilterEnumeration<'_> {
    fn drop(&mut self) {
        // SAFETY: the enumeration's handle on its session, destroyed once,
        // here (the type's invariant); its pages own their own memory.
        let _ = unsafe { crate::wfp::ffi::FwpmFilterDestroyEnumHandle0(self.engine.raw(), self.handle) };
    }
}

/// One page of a filter enumeration: the engine's array of filters, freed
/// when dropped.
///
/// # Invariants
/// `entries` is `None` (then `returned` is 0 as far as reads go) or an
/// array of `returned` pointers, each NULL or to a filter valid as long as
/// the array.
pub struct FilterPage {
    entries: Option<EngineMemory<*mut fwp::FWPM_FILTER0>>,
    returned: usize,
}

impl FilterPage {
    /// How many entries the engine returned.
    pub fn len(&self) -> usize {
        self.returned
    }

    /// Whether it returned none.
    pub fn is_empty(&self) -> bool {
        self.returned == 0
    }

    /// The page's filters in order; `None` for an entry the engine left
    /// NULL (or every entry, for a page without an array).
    pub fn filters(&self) -> impl Iterator<Item = Option<FilterEntry<'_>>> {
        (0..self.returned).map(move |index| {
            let array = self.entries.as_ref()?;
            // SAFETY: index < returned, the array's length (the type's
            // invariant), so the slot is inside it.
            let slot = unsafe { array.ptr.as_ptr().add(index) };
            // SAFETY: as above, the slot is readable while the page lives.
            let filter = unsafe { slot.read() };
            // SAFETY: NULL or a filter valid as long as the array, which
            // the returned view borrows (through `self`).
            unsafe { filter.as_ref() }.map(|filter| FilterEntry { filter })
        })
    }
}

/// A filter of an enumeration page, as the engine returned it.
#[derive(Clone, Copy)]
pub struct FilterEntry<'a> {
    filter: &'a fwp::FWPM_FILTER0,
}

impl FilterEntry<'_> {
    /// Its run-time id.
    pub fn id(&self) -> u64 {
        self.filter.filterId
    }

    /// The key of its provider context, if it has one
    /// (`FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT`).
    pub fn provider_context_key(&self) -> Option<GUID> {
        if self.filter.flags & fwp::FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT == 0 {
            return None;
        }
        // SAFETY: the engine's filter (only an enumeration page makes an
        // entry) with HAS_PROVIDER_CONTEXT: the union holds
        // providerContextKey.
        Some(unsafe { self.filter.Anonymous.providerContextKey })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wfp::ffi::{FWPS_ACTION0, FWPS_CALLOUT_NOTIFY_ADD_FILTER, FWPS_CALLOUT_NOTIFY_DELETE_FILTER};

    fn filter(context: u64) -> FWPS_FILTER2 {
        FWPS_FILTER2 {
            filterId: 5,
            weight: fwp::FWP_VALUE0 { r#type: fwp::FWP_EMPTY, Anonymous: fwp::FWP_VALUE0_0 { uint8: 0 } },
            subLayerWeight: 0,
            flags: 0,
            numFilterConditions: 0,
            filterCondition: core::ptr::null_mut(),
            action: FWPS_ACTION0 { r#type: fwp::FWP_ACTION_CALLOUT_TERMINATING, calloutId: 0 },
            context,
            providerContext: core::ptr::null_mut(),
        }
    }

    /// Stores `word` through a `NotifiedFilter` for `notify_type`; the
    /// context the filter has afterwards.
    fn store(notify_type: crate::wfp::ffi::FWPS_CALLOUT_NOTIFY_TYPE, word: u64) -> u64 {
        let mut raw = filter(1);
        // SAFETY: a local filter, valid, writable and ours alone while the
        // view lives.
        let notified = unsafe { NotifiedFilter::from_raw(&mut raw, notify_type) };
        if let Some(notified) = notified {
            assert_eq!(notified.view().id(), 5);
            notified.set_context(word);
        }
        raw.context
    }

    #[test]
    fn a_notified_filter_is_written_only_during_add() {
        assert_eq!(store(FWPS_CALLOUT_NOTIFY_ADD_FILTER, 7), 7);
        assert_eq!(store(FWPS_CALLOUT_NOTIFY_DELETE_FILTER, 7), 1);
        assert_eq!(store(99, 7), 1);
    }

    #[test]
    fn no_filter_is_no_view() {
        // SAFETY: NULL is allowed.
        let notified = unsafe { NotifiedFilter::from_raw(core::ptr::null_mut(), FWPS_CALLOUT_NOTIFY_ADD_FILTER) };
        assert!(notified.is_none());
    }
}
