//! Persistent filters (README "Late registration"; adoption.rs): a filter
//! added with FWPM_FILTER_FLAG_PERSISTENT outlives a reboot only if the
//! objects it names are persistent too (FWPM_CALLOUT0: a persistent callout
//! "can be referenced by boot-time and other persistent filters";
//! CONFORMANCE.md L5). The driver adds its provider, sublayer and callouts
//! persistent, so such filters are there to adopt after a reboot, and
//! `management::uninstall` removes them and the objects for good.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::callout_table::{CALLOUTS, SUBLAYER_KEY};
use wfpcallout::wfp::management;
use wfpcallout_scenario::{Harness, Layer};
use wfpcallout_simkernel::engine;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

fn block() -> PolicyRepr {
    PolicyRepr { action: PolicyAction::Block, log_level: LogLevel::Off, label: Label::new("kept").unwrap() }
}

/// A persistent block filter calling our callout, with a persistent policy.
fn add_persistent_block() -> u64 {
    let mut spec = Harness::filter_spec(Layer::ConnectV4);
    spec.flags |= fwp::FWPM_FILTER_FLAG_PERSISTENT;
    spec.provider_context = Some(engine::add_persistent_provider_context(&block().to_bytes()));
    engine::add_filter(&spec).unwrap()
}

#[test]
fn persistent_filters_survive_a_reboot_and_are_adopted() {
    let mut harness = Harness::load();
    let id = add_persistent_block();
    assert!(!harness.classify(Layer::ConnectV4, id, 80).permitted());
    harness.unload();
    // The filter names our callouts: unload kept them.
    engine::restart_bfe().unwrap();
    assert!(engine::filter_ids().contains(&id), "the persistent filter outlived the reboot");
    assert!(engine::has_sublayer(&SUBLAYER_KEY));
    harness.initialize().unwrap();
    assert!(STATE.table.get(id).is_some(), "adopted");
    assert!(!harness.classify(Layer::ConnectV4, id, 80).permitted(), "with its policy");
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn uninstall_removes_our_filters_and_objects() {
    let mut harness = Harness::load();
    let persistent = add_persistent_block();
    let plain = harness.add_filter(Layer::RecvAcceptV4, wfpcallout_scenario::PolicySource::None).unwrap();
    let engine_handle = management::open_engine().unwrap();
    assert_eq!(management::uninstall(engine_handle), Ok(2));
    management::close_engine(engine_handle);
    let ids = engine::filter_ids();
    assert!(!ids.contains(&persistent) && !ids.contains(&plain));
    assert_eq!(harness.context_count(), 0, "their DELETEs freed our contexts");
    harness.unload();
    for spec in CALLOUTS.iter() {
        assert!(!engine::has_managed_callout(&spec.key), "callout left after uninstall");
    }
    assert!(!engine::has_sublayer(&SUBLAYER_KEY));
    engine::restart_bfe().unwrap();
    assert!(engine::filter_ids().is_empty());
    harness.kernel.assert_unloaded_clean();
}

/// Adds our FWPM callout for `layer` as an install from before persistence
/// left it: right (USES_PROVIDER_CONTEXT, same layer) but not persistent.
fn leave_non_persistent_callout(layer: Layer) {
    let mut session = std::ptr::null_mut();
    // SAFETY: `session` is writable.
    let status = unsafe {
        engine::FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_WINNT, std::ptr::null(), std::ptr::null(), &mut session)
    };
    assert_eq!(status, STATUS_SUCCESS);
    let spec = layer.spec();
    let old = fwp::FWPM_CALLOUT0 {
        calloutKey: spec.key,
        applicableLayer: spec.layer_key,
        flags: fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT,
        ..Default::default()
    };
    // SAFETY: valid session and callout.
    let status = unsafe { engine::FwpmCalloutAdd0(session, &old, std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
}

/// Unused, it is replaced by a persistent one; still named by a filter, it
/// is kept (its policies work; the filter just will not outlive a reboot)
/// and the load goes on.
#[test]
fn an_earlier_non_persistent_callout_is_made_persistent_when_unused() {
    let key = Layer::ConnectV4.spec().key;
    let mut harness = Harness::boot();
    leave_non_persistent_callout(Layer::ConnectV4);
    harness.initialize().unwrap();
    let flags = engine::managed_callout_flags(&key).unwrap();
    assert_ne!(flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT, 0, "replaced by a persistent callout");
    harness.unload();
    harness.kernel.assert_unloaded_clean();
    // One kernel at a time: the next boot waits for this one to go.
    drop(harness);

    let mut harness = Harness::boot();
    leave_non_persistent_callout(Layer::ConnectV4);
    engine::add_sublayer(SUBLAYER_KEY, 0x100).unwrap();
    let filter = engine::add_filter(&Harness::filter_spec(Layer::ConnectV4)).unwrap();
    harness.initialize().unwrap();
    assert_eq!(engine::managed_callout_flags(&key), Some(fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT), "kept");
    assert!(wfpcallout_simkernel::debug_print::contains("not persistent and filters name it"));
    engine::delete_filter(filter).unwrap();
    harness.unload_and_check();
}
