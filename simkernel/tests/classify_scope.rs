//! Conformance: what classifyFn is lent lives for the call only
//! (simkernel/CONFORMANCE.md, row S1). The engine overwrites its copy of
//! the incoming values, their IPv6 addresses, the metadata and the filter
//! when classifyFn returns, and frees it: a pointer kept past the call is
//! caught (garbage in a plain run, use-after-free under AddressSanitizer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use wfpcallout_simkernel::engine::classify_scope::{take_poisoned, trace_poisoned};
use wfpcallout_simkernel::engine::{self, Connection};

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
