//! The entry points the filter engine calls with raw pointers: classifyFn
//! and notifyFn. Each turns the engine's pointers into the views of
//! `wfp::filter_view` (whose unsafe constructors state what the engine
//! promises) and calls the safe logic in `classify` and `notify`. The one
//! thing classifyFn adds is the driver's own promise: outside lookup mode
//! (read by its entry into the rundown) the filter's context word is ours
//! (`ContextWords`), which is what
//! lets classify borrow the context the word names without `unsafe`.
//! flowDeleteFn takes plain values and needs no trampoline
//! (`flow_delete`).
#![allow(unsafe_code)]

use crate::callbacks::classify;
use crate::callbacks::notify;
use crate::callbacks::state::STATE;
use crate::filters::filter_context::FilterContextData;
use crate::wfp::ffi::{
    FWPS_CALLOUT_NOTIFY_TYPE, FWPS_CLASSIFY_OUT0, FWPS_FILTER2, FWPS_INCOMING_METADATA_VALUES0, FWPS_INCOMING_VALUES0,
    GUID, NTSTATUS,
};
use crate::wfp::filter_view::{
    ClassifiedFilter, ClassifyOut, ContextWords, IncomingValues, LayerData, Metadata, NotifiedFilter,
};
use core::ffi::c_void;

/// What classify may assume about `filter->context`: whenever its fast
/// entry into the rundown reads the lookup bit clear, the word our ADD
/// stored (see [`ContextWords`]). A static, so classify gets it as one
/// constant address.
// SAFETY: `STATE.rundown`'s lookup bit is clear only while `STATE.lookup_mode`
// is 0 (every change of the word is mirrored into the bit under one lock
// before it returns, the bit set before the word's change that makes it
// nonzero returns: `DriverState::lookup_mode`'s invariant), and the word
// is 0 only while every live filter that calls our callouts was added
// through our notifyFn, whose ADD stored in its `context` a handle to a
// claim of `STATE.table`'s slots, whose slot keeps a reference to its
// context. Every reclaim of those slots is given `STATE.rundown` (the
// DELETE notify's `notify::on_delete` and `lifecycle::on_timer`, through
// `ContextTable::reclaim`), and the slots' storage is released only once
// `STATE.rundown` has drained (`ContextTable::release_storage`, which
// `lifecycle::release_contexts` gives `STATE.rundown`, asks for the proof
// that rundown's `close_and_wait` returns, and refuses it once reopened).
static CONTEXT_WORDS: ContextWords<'static, FilterContextData> =
    // SAFETY: `ContextWords::new`'s promise, kept as argued above.
    unsafe { ContextWords::new(STATE.table.slots(), &STATE.rundown) };

/// The classifyFn we register (`FWPS_CALLOUT_CLASSIFY_FN2`): see
/// [`classify::classify`]. Each view is its pointer (`Option<&T>` or
/// `Option<NonNull<T>>`), so building them costs the fast path nothing.
///
/// # Safety
/// Called by the filter engine at IRQL <= DISPATCH_LEVEL with every pointer
/// NULL or valid for the call: `classify_out` ours alone, `filter` the
/// matched filter (whose `context` nobody writes meanwhile; a DELETE
/// notify delivered meanwhile frees nothing the call uses),
/// `in_fixed_values` holding `valueCount` values,
/// `layer_data` the classification's packet (a `NET_BUFFER_LIST`).
pub unsafe extern "system" fn classify_fn(
    in_fixed_values: *const FWPS_INCOMING_VALUES0,
    in_meta_values: *const FWPS_INCOMING_METADATA_VALUES0,
    layer_data: *mut c_void,
    _classify_context: *const c_void,
    filter: *const FWPS_FILTER2,
    _flow_context: u64,
    classify_out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine passes NULL or its classify output, ours alone for
    // the duration of the call (this function's contract).
    let out = unsafe { ClassifyOut::from_raw(classify_out) };
    // SAFETY: the engine passes NULL or the matched filter of this call,
    // valid with its provider context for the call, not deleted before the
    // call returns, its `context` unchanged (this function's contract); the
    // view's lifetime is classify's, which ends with the call.
    let view = unsafe { ClassifiedFilter::from_raw(filter) };
    // SAFETY: the engine passes NULL or its incoming values, with
    // `valueCount` entries, valid for the call (this function's contract).
    let values = unsafe { IncomingValues::from_raw(in_fixed_values) };
    // SAFETY: the engine passes NULL or its metadata, valid for the call.
    let metadata = unsafe { Metadata::from_raw(in_meta_values) };
    // SAFETY: the engine passes NULL or this classification's packet, which
    // it does not change during the call.
    let layer_data = unsafe { LayerData::from_raw(layer_data) };
    classify::classify(out, view, &CONTEXT_WORDS, values, metadata, layer_data)
}

/// The notifyFn we register (`FWPS_CALLOUT_NOTIFY_FN2`): see
/// [`notify::notify`].
///
/// # Safety
/// Called by the filter engine at IRQL <= DISPATCH_LEVEL with `filter`
/// NULL or the filter the notification is about, valid for the call and,
/// for an ADD, writable and not yet seen by classifyFn.
pub unsafe extern "system" fn notify_fn(
    notify_type: FWPS_CALLOUT_NOTIFY_TYPE,
    _filter_key: *const GUID,
    filter: *mut FWPS_FILTER2,
) -> NTSTATUS {
    // SAFETY: NULL or the engine's filter, valid for the call and writable
    // during its ADD notification (this function's contract).
    let filter = unsafe { NotifiedFilter::from_raw(filter, notify_type) };
    notify::notify(notify_type, filter)
}
