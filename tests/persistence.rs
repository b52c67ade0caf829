//! Persistent filters (README "Late registration"; adoption.rs): a filter
//! added with FWPM_FILTER_FLAG_PERSISTENT outlives a reboot only if the
//! objects it names are persistent too (FWPM_CALLOUT0: a persistent callout
//! "can be referenced by boot-time and other persistent filters";
//! CONFORMANCE.md L5). The driver adds its provider, sublayer and callouts
//! persistent, so such filters are there to adopt after a reboot; `wfpctl
//! uninstall` removes them and the objects for good (its end-to-end tests
//! are the simulated backend's, in the scenario crate), even while the
//! driver is loaded, whose unload then finds the objects gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::callout_table::{CALLOUTS, PROVIDER_KEY, SUBLAYER_KEY};
use wfpcallout_scenario::{Harness, Layer};
use wfpcallout_simkernel::{debug_print, engine};
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

/// Deletes our callouts, sublayer and provider from a management session
/// of its own, as `wfpctl uninstall` does while the driver is loaded.
fn delete_objects_from_user_mode() {
    let session = open_session();
    for spec in CALLOUTS.iter() {
        // SAFETY: valid session and key.
        assert_eq!(unsafe { engine::FwpmCalloutDeleteByKey0(session, &spec.key) }, STATUS_SUCCESS);
    }
    // SAFETY: valid session and key.
    assert_eq!(unsafe { engine::FwpmSubLayerDeleteByKey0(session, &SUBLAYER_KEY) }, STATUS_SUCCESS);
    // SAFETY: valid session and key.
    assert_eq!(unsafe { engine::FwpmProviderDeleteByKey0(session, &PROVIDER_KEY) }, STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
}

/// Objects a management client deleted while the driver was loaded are
/// what its unload wanted gone: no failure, nothing logged about keeping
/// them; the next load adds them back.
#[test]
fn unload_finds_objects_deleted_by_wfpctl_uninstall_without_complaint() {
    let mut harness = Harness::load();
    delete_objects_from_user_mode();
    harness.unload();
    assert!(!debug_print::contains("kept the"), "not-found is not worth a line");
    assert!(!debug_print::contains("failed"));
    harness.kernel.assert_unloaded_clean();
    harness.initialize().unwrap();
    assert!(CALLOUTS.iter().all(|spec| engine::has_managed_callout(&spec.key)), "added back");
    assert!(engine::has_sublayer(&SUBLAYER_KEY));
    harness.unload_and_check();
}

fn open_session() -> *mut core::ffi::c_void {
    let mut session = std::ptr::null_mut();
    // SAFETY: `session` is writable.
    let status = unsafe {
        engine::FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_WINNT, std::ptr::null(), std::ptr::null(), &mut session)
    };
    assert_eq!(status, STATUS_SUCCESS);
    session
}

/// Adds our FWPM callout for `layer` as an install from before persistence
/// left it: right (USES_PROVIDER_CONTEXT, same layer) but not persistent.
fn leave_non_persistent_callout(layer: Layer) {
    let session = open_session();
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
