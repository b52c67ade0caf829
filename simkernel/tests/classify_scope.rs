//! Conformance: what classifyFn is lent lives for the call only
//! (simkernel/CONFORMANCE.md, rows S1-S2). The engine overwrites its copy of
//! the incoming values, their IPv6 addresses, the metadata and the filter
//! when classifyFn returns, and frees it: a pointer kept past the call is
//! caught (garbage in a plain run, use-after-free under AddressSanitizer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::classify_scope::{take_poisoned, trace_poisoned};
use wfpcallout_simkernel::engine::{self, Connection, packets};
use wfpcallout_simkernel::verifier::{self, ViolationKind};

/// S1: every parameter block classifyFn received is poisoned when it
/// returns, and each call gets blocks of its own.
#[test]
fn classify_parameters_are_poisoned_when_classify_returns() {
    let mut kernel = probe::boot();
    let probe = Probe::add(51, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V6);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    probe::keep_parameters(true);
    trace_poisoned(true);
    let connection = Connection {
        layer_id: FWPS_LAYER_ALE_AUTH_CONNECT_V6,
        local_address: "2001:db8::2".parse().unwrap(),
        remote_address: "2001:db8::10".parse().unwrap(),
        ..Connection::tcp_connect_v4(443)
    };
    assert!(engine::classify(&connection).permitted());
    let poisoned = take_poisoned();
    trace_poisoned(false);
    let kept = probe::kept_parameters();
    assert_eq!(kept.len(), 1);
    let (values, metadata, filter, remote_v6) = kept[0];
    let covered = |address: usize| poisoned.iter().any(|b| b.address <= address && address < b.address + b.len);
    for (name, address) in [("values", values), ("metadata", metadata), ("filter", filter), ("IPv6 address", remote_v6)]
    {
        assert!(covered(address), "{name} at {address:#x} was not poisoned: {poisoned:?}");
    }
    assert!(poisoned.iter().all(|b| b.poisoned), "every byte overwritten: {poisoned:?}");
    kernel.assert_clean();
}

/// The layerData pointers classifyFn saw, and whether cloning it there
/// (from its IP header, advancing back after) succeeded.
static LAYER_DATA: Mutex<Vec<(usize, NTSTATUS)>> = Mutex::new(Vec::new());

fn clone_during_classify(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    let headers = metadata.ipHeaderSize + metadata.transportHeaderSize;
    // SAFETY: layerData is a NET_BUFFER_LIST for the call; FirstNetBuffer at offset 8.
    let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
    assert_eq!(packets::NdisRetreatNetBufferDataStart(buffer, headers, 0, std::ptr::null_mut()), 0);
    let mut clone = std::ptr::null_mut();
    // SAFETY: `clone` is writable.
    let status = unsafe {
        packets::FwpsAllocateCloneNetBufferList0(layer_data, std::ptr::null_mut(), std::ptr::null_mut(), 0, &mut clone)
    };
    packets::NdisAdvanceNetBufferDataStart(buffer, headers, 0, std::ptr::null_mut());
    if status == STATUS_SUCCESS {
        packets::FwpsFreeCloneNetBufferList0(clone, 0);
    }
    LAYER_DATA.lock().unwrap().push((layer_data as usize, status));
}

/// S2: layerData (the packet at ALE_AUTH_RECV_ACCEPT) is the engine's for
/// the classification: every callout of that classification gets the same
/// packet and may clone it then; once the classification is over the
/// engine has released it, and a callout that kept the pointer and clones
/// it later is reported (the packet is unknown to the stack).
#[test]
fn layer_data_is_the_engines_for_the_classification_only() {
    let mut kernel = probe::boot();
    let high = Probe::add_weighted(52, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, 0x8000);
    let low = Probe::add_weighted(53, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, 0x10);
    for probe in [&high, &low] {
        assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
        engine::add_filter(&probe.filter_with(engine::FilterAction::CalloutInspection)).unwrap();
    }
    LAYER_DATA.lock().unwrap().clear();
    probe::on_layer_data(Some(clone_during_classify));
    let connection = Connection { layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, ..Connection::tcp_connect_v4(443) };
    assert!(engine::classify(&connection).permitted());
    probe::on_layer_data(None);
    let seen = LAYER_DATA.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "both callouts saw the packet");
    assert!(seen[0].0 != 0 && seen[0].0 == seen[1].0, "one packet for the whole classification: {seen:?}");
    assert!(seen.iter().all(|s| s.1 == STATUS_SUCCESS), "clonable during classify: {seen:?}");
    kernel.assert_clean();
    let kept = seen[0].0 as *mut c_void;
    let mut clone = std::ptr::null_mut();
    // SAFETY: `clone` is writable; the engine only looks the address up.
    let status = unsafe {
        packets::FwpsAllocateCloneNetBufferList0(kept, std::ptr::null_mut(), std::ptr::null_mut(), 0, &mut clone)
    };
    assert_ne!(status, STATUS_SUCCESS);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("unknown NET_BUFFER_LIST"), "{}", violations[0].message);
    for probe in [&high, &low] {
        assert_eq!(probe.unregister(), STATUS_SUCCESS);
    }
}
