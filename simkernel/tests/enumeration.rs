//! Conformance: enumerating filters from the kernel (simkernel/CONFORMANCE.md,
//! rows M1-M3). Sources: DDI `nf-fwpmk-fwpmfiltercreateenumhandle0` (NULL
//! template: all filters; the enumerator is not "live"),
//! `nf-fwpmk-fwpmfilterenum0` (fewer entries than requested: exhausted; the
//! array, not the entries, freed with FwpmFreeMemory0; a snapshot taken
//! when the handle was created), SDK `ns-fwpmtypes-fwpm_filter_enum_template0`
//! (actionMask, calloutKey). Driven by probe callouts and static filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::fwp::{FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER0};
use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use wfpcallout_simkernel::engine::{self, FilterAction};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

/// `FwpmFilterCreateEnumHandle0` with `template` (None = NULL).
fn create(session: *mut c_void, template: Option<&FWPM_FILTER_ENUM_TEMPLATE0>) -> Result<*mut c_void, NTSTATUS> {
    let mut handle = std::ptr::null_mut();
    let template = template.map_or(std::ptr::null(), |t| t as *const _);
    // SAFETY: valid session, NULL or valid template, writable out pointer.
    let status = unsafe { engine::FwpmFilterCreateEnumHandle0(session, template, &mut handle) };
    if status == STATUS_SUCCESS { Ok(handle) } else { Err(status) }
}

/// One `FwpmFilterEnum0` call: the array (not freed) and the ids in it.
fn page(session: *mut c_void, handle: *mut c_void, requested: u32) -> (*mut *mut FWPM_FILTER0, Vec<u64>) {
    let mut entries: *mut *mut FWPM_FILTER0 = std::ptr::null_mut();
    let mut returned = 0u32;
    // SAFETY: valid handles and out pointers.
    let status = unsafe { engine::FwpmFilterEnum0(session, handle, requested, &mut entries, &mut returned) };
    assert_eq!(status, STATUS_SUCCESS);
    let ids = if returned == 0 {
        Vec::new()
    } else {
        // SAFETY: the engine returned an array of `returned` entries.
        let array = unsafe { std::slice::from_raw_parts(entries, returned as usize) };
        // SAFETY: each entry points to a valid FWPM_FILTER0.
        array.iter().map(|&entry| unsafe { (*entry).filterId }).collect()
    };
    (entries, ids)
}

/// `FwpmFreeMemory0` on `pointer`.
fn free(pointer: *mut c_void) {
    let mut memory = pointer;
    // SAFETY: `memory` is a writable local; the engine checks what it frees.
    unsafe { engine::FwpmFreeMemory0(&mut memory) };
    assert!(memory.is_null(), "FwpmFreeMemory0 sets the pointer to NULL");
}

/// Every id the enumeration returns, in pages of 64, each freed.
fn enumerate(session: *mut c_void, template: Option<&FWPM_FILTER_ENUM_TEMPLATE0>) -> Vec<u64> {
    let handle = create(session, template).unwrap();
    let mut all = Vec::new();
    loop {
        let (entries, ids) = page(session, handle, 64);
        free(entries.cast());
        let done = ids.len() < 64;
        all.extend(ids);
        if done {
            break;
        }
    }
    assert_eq!(engine::FwpmFilterDestroyEnumHandle0(session, handle), STATUS_SUCCESS);
    all.sort_unstable();
    all
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

/// M1: a NULL template returns every filter; a template returns the filters
/// of its layer whose action type shares a bit with `actionMask`
/// (0xFFFFFFFF: any action type) and, with a calloutKey, only the callout
/// filters naming that callout. `FWP_ACTION_FLAG_CALLOUT` without a
/// calloutKey is refused ("calloutKey must not be NULL").
#[test]
fn a_template_selects_by_layer_callout_key_and_action_mask() {
    let mut kernel = probe::boot();
    let a = Probe::add(131, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let b = Probe::add(132, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    let c = Probe::add(133, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    for probe in [&a, &b, &c] {
        assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    }
    let add = |spec: &engine::FilterSpec| engine::add_filter(spec).unwrap();
    let a_terminating = add(&a.filter());
    let a_inspection = add(&a.filter_with(FilterAction::CalloutInspection));
    let a_unknown = add(&a.filter_with(FilterAction::CalloutUnknown));
    let b_terminating = add(&b.filter());
    let static_block = add(&a.static_filter(FilterAction::Block, 1, 0));
    let c_terminating = add(&c.filter());
    let session = probe::session();
    assert_eq!(
        enumerate(session, None),
        sorted(vec![a_terminating, a_inspection, a_unknown, b_terminating, static_block, c_terminating]),
        "a NULL template returns every filter"
    );
    let mut a_key = a.key;
    let of_a = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        calloutKey: &mut a_key,
        actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
        ..Default::default()
    };
    assert_eq!(enumerate(session, Some(&of_a)), sorted(vec![a_terminating, a_inspection, a_unknown]));
    let terminating = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        actionMask: fwp::FWP_ACTION_FLAG_TERMINATING,
        ..Default::default()
    };
    assert_eq!(
        enumerate(session, Some(&terminating)),
        sorted(vec![a_terminating, b_terminating, static_block]),
        "only action types with the TERMINATING bit (not INSPECTION 0x6004, not UNKNOWN 0x4005)"
    );
    let everything = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
        actionMask: u32::MAX,
        ..Default::default()
    };
    assert_eq!(enumerate(session, Some(&everything)), vec![c_terminating], "the layer's filters only");
    let unnamed = FWPM_FILTER_ENUM_TEMPLATE0 {
        layerKey: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        actionMask: fwp::FWP_ACTION_FLAG_CALLOUT,
        ..Default::default()
    };
    assert_eq!(create(session, Some(&unnamed)).err(), Some(STATUS_FWP_INVALID_PARAMETER));
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    for probe in [&a, &b, &c] {
        assert_eq!(probe.unregister(), STATUS_SUCCESS);
    }
    kernel.assert_unloaded_clean();
}

/// M2: the enumeration works on a snapshot taken when its handle was
/// created: a filter added afterwards is not returned, one deleted
/// afterwards still is (with its own id).
#[test]
fn the_enumeration_is_a_snapshot_taken_at_handle_creation() {
    let mut kernel = probe::boot();
    let probe = Probe::add(134, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let kept = engine::add_filter(&probe.filter()).unwrap();
    let deleted = engine::add_filter(&probe.filter()).unwrap();
    let session = probe::session();
    let handle = create(session, None).unwrap();
    let added = engine::add_filter(&probe.filter()).unwrap();
    engine::delete_filter(deleted).unwrap();
    let (entries, ids) = page(session, handle, 64);
    free(entries.cast());
    assert_eq!(sorted(ids), sorted(vec![kept, deleted]), "not live: {added} added later is not there");
    assert_eq!(engine::FwpmFilterDestroyEnumHandle0(session, handle), STATUS_SUCCESS);
    assert_eq!(enumerate(session, None), sorted(vec![kept, added]), "a new handle sees the changes");
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// M3: results come in pages of at most the number requested, fewer meaning
/// the enumeration is exhausted; each page's array is freed with one
/// FwpmFreeMemory0 (not its entries): freeing an entry is reported (not
/// engine memory), and a page never freed is a leak at unload.
#[test]
fn pages_end_short_and_each_is_freed_once_as_an_array() {
    let mut kernel = probe::boot();
    let probe = Probe::add(135, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    let ids: Vec<u64> = (0..5).map(|_| engine::add_filter(&probe.filter()).unwrap()).collect();
    let session = probe::session();
    let handle = create(session, None).unwrap();
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (entries, page_ids) = page(session, handle, 2);
        sizes.push(page_ids.len());
        free(entries.cast());
        let done = page_ids.len() < 2;
        seen.extend(page_ids);
        if done {
            break;
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(sorted(seen), ids);
    assert_eq!(engine::FwpmFilterDestroyEnumHandle0(session, handle), STATUS_SUCCESS);
    kernel.assert_clean();

    // Freeing an entry instead of the array: not engine memory.
    let handle = create(session, None).unwrap();
    let (entries, _) = page(session, handle, 2);
    // SAFETY: the engine returned an array of two entries.
    let first = unsafe { *entries };
    free(first.cast());
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::DoubleFree);
    free(entries.cast());
    kernel.assert_clean();

    // A page never freed is a leak at unload.
    let (_leaked, _) = page(session, handle, 2);
    assert_eq!(engine::FwpmFilterDestroyEnumHandle0(session, handle), STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel.assert_unloaded_clean()));
    assert!(result.is_err(), "the unfreed page is reported");
    let violations = verifier::take();
    assert!(
        violations.iter().any(|v| v.kind == ViolationKind::Leak && v.message.contains("FwpmFreeMemory0")),
        "{violations:?}"
    );
}
