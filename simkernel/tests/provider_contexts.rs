//! Conformance: provider contexts and the filter's `context`
//! (simkernel/CONFORMANCE.md, rows V1-V2). Sources: SDK
//! `ns-fwpstypes-fwps_filter2` (providerContext: the filter's provider
//! context "if the filter uses a callout, and the callout has the
//! FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT flag set ... Otherwise ... NULL";
//! context: set by notifyFn when the filter is added, seen by classifyFn),
//! SDK `ns-fwpmtypes-fwpm_callout0` (USES_PROVIDER_CONTEXT: "the provider
//! context will be copied from the FWPM_FILTER0 structure to the
//! FWPS_FILTER0 structure"). Driven by a probe callout written here, which
//! records what its notifyFn and classifyFn see of the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::fwp::FWPM_CALLOUT0;
use fwps_types::*;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::{self, Connection, FilterSpec};

/// What the callout saw of a filter: (where, filter id, context, provider
/// context as (type, data) if non-NULL).
type Seen = (&'static str, u64, u64, Option<(i32, Vec<u8>)>);

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
/// What notifyFn ADD stores in `context` (0: leaves it).
static SET_CONTEXT: Mutex<u64> = Mutex::new(0);

fn record(at: &'static str, filter: &FWPS_FILTER2) {
    // SAFETY: the engine passes a NULL or valid provider context with the filter.
    let provider = unsafe { filter.providerContext.as_ref() }.map(|pc| {
        // SAFETY: the union holds dataBuffer for a general context.
        let blob = unsafe { pc.Anonymous.dataBuffer };
        // SAFETY: a general context carries a valid blob.
        let blob = unsafe { &*blob };
        // SAFETY: the blob describes `size` readable bytes.
        let data = unsafe { std::slice::from_raw_parts(blob.data, blob.size as usize) }.to_vec();
        (pc.r#type, data)
    });
    SEEN.lock().unwrap().push((at, filter.filterId, filter.context, provider));
}

unsafe extern "system" fn classify(
    _: *const FWPS_INCOMING_VALUES0,
    _: *const FWPS_INCOMING_METADATA_VALUES0,
    _: *mut c_void,
    _: *const c_void,
    filter: *const FWPS_FILTER2,
    _: u64,
    out: *mut FWPS_CLASSIFY_OUT0,
) {
    // SAFETY: the engine passes valid pointers for the call.
    record("classify", unsafe { &*filter });
    // SAFETY: as above.
    let out = unsafe { &mut *out };
    if out.rights & FWPS_RIGHT_ACTION_WRITE != 0 {
        out.actionType = fwp::FWP_ACTION_PERMIT;
    }
}

unsafe extern "system" fn notify(
    kind: FWPS_CALLOUT_NOTIFY_TYPE,
    _: *const GUID,
    filter: *mut FWPS_FILTER2,
) -> NTSTATUS {
    if kind == FWPS_CALLOUT_NOTIFY_ADD_FILTER {
        // SAFETY: the engine passes a valid filter, ours to write during ADD.
        let filter = unsafe { &mut *filter };
        record("add", filter);
        let set = *SET_CONTEXT.lock().unwrap();
        if set != 0 {
            filter.context = set;
        }
    }
    STATUS_SUCCESS
}

/// Adds an FWPM callout `n` at ALE_AUTH_CONNECT_V4 with `flags` and
/// registers it; returns its key.
fn callout(kernel: &mut wfpcallout_simkernel::Kernel, n: u128, flags: u32) -> GUID {
    let key = GUID::from_u128(0x9B0B_0000_0000_4000_8000_0000_0000_0000 | n);
    let session = probe::session();
    let managed = FWPM_CALLOUT0 {
        calloutKey: key,
        applicableLayer: fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4,
        flags,
        ..Default::default()
    };
    // SAFETY: valid session and callout.
    assert_eq!(unsafe { engine::FwpmCalloutAdd0(session, &managed, std::ptr::null(), std::ptr::null_mut()) }, 0);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    let registration = FWPS_CALLOUT2 {
        calloutKey: key,
        flags: 0,
        classifyFn: Some(classify),
        notifyFn: Some(notify),
        flowDeleteFn: None,
    };
    let mut id = 0;
    // SAFETY: valid device object, callout and out pointer.
    let status = unsafe { engine::FwpsCalloutRegister2(kernel.device_object(), &registration, &mut id) };
    assert_eq!(status, STATUS_SUCCESS);
    key
}

fn boot() -> (wfpcallout_simkernel::Kernel, GUID) {
    let kernel = probe::boot();
    SEEN.lock().unwrap().clear();
    *SET_CONTEXT.lock().unwrap() = 0;
    let sublayer = GUID::from_u128(0x9B0B_5B00_0000_4000_8000_0000_0000_0140);
    engine::add_sublayer(sublayer, 0x140).unwrap();
    (kernel, sublayer)
}

fn seen(at: &str, filter: u64) -> Vec<Seen> {
    SEEN.lock().unwrap().iter().filter(|s| s.0 == at && s.1 == filter).cloned().collect()
}

fn unregister(key: &GUID) {
    let id = engine::callout_id(key).unwrap();
    assert_eq!(engine::FwpsCalloutUnregisterById0(id), STATUS_SUCCESS);
}

/// V1: a filter's provider context reaches notifyFn and classifyFn (type
/// and data, as added) only when its FWPM callout was added with
/// `FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT`; otherwise `providerContext`
/// is NULL although the filter has one.
#[test]
fn the_provider_context_reaches_only_a_callout_that_uses_it() {
    let (mut kernel, sublayer) = boot();
    let uses = callout(&mut kernel, 141, fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT);
    let plain = callout(&mut kernel, 142, 0);
    let data = b"policy blob".to_vec();
    let context = engine::add_provider_context(&data);
    let filter = |callout_key: GUID| {
        let spec = FilterSpec {
            provider_context: Some(context),
            ..FilterSpec::callout(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, sublayer, callout_key)
        };
        engine::add_filter(&spec).unwrap()
    };
    let with = filter(uses);
    let without = filter(plain);
    for id in [with, without] {
        assert!(engine::classify_filter(id, &Connection::tcp_connect_v4(80)).unwrap().permitted());
    }
    let expected = Some((fwp::FWPM_GENERAL_CONTEXT, data));
    for at in ["add", "classify"] {
        let of_with = seen(at, with);
        assert!(!of_with.is_empty() && of_with.iter().all(|s| s.3 == expected), "{at}: {of_with:?}");
        let of_without = seen(at, without);
        assert!(!of_without.is_empty() && of_without.iter().all(|s| s.3.is_none()), "{at}: {of_without:?}");
    }
    engine::delete_filter(with).unwrap();
    engine::delete_filter(without).unwrap();
    unregister(&uses);
    unregister(&plain);
    kernel.assert_unloaded_clean();
}

/// V2: what notifyFn ADD stores in the filter's `context` is what
/// classifyFn sees. Before that, `context` starts as the provider context's
/// id for a filter with one and as the filter's `rawContext` otherwise (the
/// model's reading, WFP-SEMANTICS §6: the FWPS_FILTER2 page only says the
/// callout may set it).
#[test]
fn the_context_starts_from_the_provider_context_or_raw_context_and_keeps_what_notify_set() {
    let (mut kernel, sublayer) = boot();
    let key = callout(&mut kernel, 143, fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT);
    let context_key = engine::add_provider_context(b"x");
    let context_id = {
        let session = probe::session();
        let mut copy = std::ptr::null_mut();
        // SAFETY: valid session, key and out pointer.
        let status = unsafe { engine::FwpmProviderContextGetByKey2(session, &context_key, &mut copy) };
        assert_eq!(status, STATUS_SUCCESS);
        // SAFETY: the engine returned a valid provider context.
        let id = unsafe { (*copy).providerContextId };
        let mut memory = copy.cast::<c_void>();
        // SAFETY: engine memory from FwpmProviderContextGetByKey2.
        unsafe { engine::FwpmFreeMemory0(&mut memory) };
        assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
        id
    };
    let base = FilterSpec::callout(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, sublayer, key);
    let with_provider_context =
        engine::add_filter(&FilterSpec { provider_context: Some(context_key), ..base.clone() }).unwrap();
    let with_raw = engine::add_filter(&FilterSpec { raw_context: 0xABCD, ..base.clone() }).unwrap();
    assert_eq!(seen("add", with_provider_context)[0].2, context_id);
    assert_eq!(seen("add", with_raw)[0].2, 0xABCD);
    *SET_CONTEXT.lock().unwrap() = 0x5E7;
    let set_by_notify = engine::add_filter(&FilterSpec { raw_context: 0xABCD, ..base }).unwrap();
    assert_eq!(engine::filter_context(set_by_notify), Some(0x5E7));
    assert!(engine::classify_filter(set_by_notify, &Connection::tcp_connect_v4(80)).unwrap().permitted());
    let contexts: Vec<u64> = seen("classify", set_by_notify).iter().map(|s| s.2).collect();
    assert_eq!(contexts, vec![0x5E7], "classifyFn sees what notifyFn stored");
    for id in [with_provider_context, with_raw, set_by_notify] {
        engine::delete_filter(id).unwrap();
    }
    unregister(&key);
    kernel.assert_unloaded_clean();
}
