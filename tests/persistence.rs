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
use wfpcallout::wfp::management::{self, KeptNonPersistent};
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
    assert!(wfpcallout_simkernel::debug_print::contains(
        "the existing callout is not persistent and is in use: kept as it is"
    ));
    engine::delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// Leaves what an install from before persistence left: our provider, our
/// sublayer (naming the provider) and the connect-v4 callout (right, naming
/// the provider), none of them persistent.
fn leave_non_persistent_objects() {
    let session = open_session();
    let provider = fwp::FWPM_PROVIDER0 { providerKey: PROVIDER_KEY, ..Default::default() };
    // SAFETY: valid session and provider.
    assert_eq!(unsafe { engine::FwpmProviderAdd0(session, &provider, std::ptr::null()) }, STATUS_SUCCESS);
    let mut provider_key = PROVIDER_KEY;
    let sublayer = fwp::FWPM_SUBLAYER0 {
        subLayerKey: SUBLAYER_KEY,
        providerKey: &mut provider_key,
        weight: 0x100,
        ..Default::default()
    };
    // SAFETY: valid session and sublayer.
    assert_eq!(unsafe { engine::FwpmSubLayerAdd0(session, &sublayer, std::ptr::null()) }, STATUS_SUCCESS);
    let spec = Layer::ConnectV4.spec();
    let callout = fwp::FWPM_CALLOUT0 {
        calloutKey: spec.key,
        applicableLayer: spec.layer_key,
        providerKey: &mut provider_key,
        flags: fwp::FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT,
        ..Default::default()
    };
    // SAFETY: valid session and callout.
    let status = unsafe { engine::FwpmCalloutAdd0(session, &callout, std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
}

/// Whether our provider and sublayer are persistent, as a management client
/// reads them (FwpmProviderGetByKey0, FwpmSubLayerGetByKey0).
fn provider_and_sublayer_persistent() -> (bool, bool) {
    let session = open_session();
    let mut provider: *mut fwp::FWPM_PROVIDER0 = std::ptr::null_mut();
    let mut sublayer: *mut fwp::FWPM_SUBLAYER0 = std::ptr::null_mut();
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmProviderGetByKey0(session, &PROVIDER_KEY, &mut provider) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: valid session, key and out-pointer.
    let status = unsafe { engine::FwpmSubLayerGetByKey0(session, &SUBLAYER_KEY, &mut sublayer) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: the engine returned a valid provider, freed below.
    let provider_flags = unsafe { (*provider).flags };
    // SAFETY: the engine returned a valid sublayer, freed below.
    let flags = (provider_flags, unsafe { (*sublayer).flags });
    for memory in [provider.cast::<core::ffi::c_void>(), sublayer.cast()] {
        let mut memory = memory;
        // SAFETY: engine memory, freed once.
        unsafe { engine::FwpmFreeMemory0(&mut memory) };
    }
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
    (flags.0 & fwp::FWPM_PROVIDER_FLAG_PERSISTENT != 0, flags.1 & fwp::FWPM_SUBLAYER_FLAG_PERSISTENT != 0)
}

/// An older install's provider and sublayer that nothing uses are replaced
/// by persistent ones (the callout naming the provider too), so a
/// persistent filter added afterwards outlives a reboot. Accepted as they
/// were, the provider would vanish at the reboot and take the sublayer and
/// callouts with it (CONFORMANCE.md L5).
#[test]
fn an_earlier_non_persistent_provider_and_sublayer_are_replaced_when_unused() {
    let mut harness = Harness::boot();
    leave_non_persistent_objects();
    harness.initialize().unwrap();
    assert_eq!(provider_and_sublayer_persistent(), (true, true), "replaced by persistent ones");
    let callout_flags = engine::managed_callout_flags(&Layer::ConnectV4.spec().key).unwrap();
    assert_ne!(callout_flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT, 0);
    assert!(debug_print::contains("replaced the existing non-persistent provider by a persistent one"));
    let id = add_persistent_block();
    harness.unload();
    engine::restart_bfe().unwrap();
    assert!(engine::filter_ids().contains(&id), "the persistent filter outlived the reboot");
    harness.initialize().unwrap();
    assert!(!harness.classify(Layer::ConnectV4, id, 80).permitted(), "adopted, with its policy");
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

/// Still used by a filter, they are kept as they are (the filter works; it
/// just will not outlive a reboot), the load goes on, a warning names each
/// kept object, and `add_objects` reports what it kept.
#[test]
fn earlier_non_persistent_objects_in_use_are_kept_and_reported() {
    let mut harness = Harness::boot();
    leave_non_persistent_objects();
    let filter = engine::add_filter(&Harness::filter_spec(Layer::ConnectV4)).unwrap();
    harness.initialize().unwrap();
    assert_eq!(provider_and_sublayer_persistent(), (false, false), "kept as they were");
    for what in ["provider", "sublayer", "callout"] {
        let line = format!("the existing {what} is not persistent and is in use: kept as it is");
        assert!(debug_print::contains(&line), "{line}");
    }
    // The outcome, as a second pass over the objects sees it.
    let session = management::open_engine().unwrap();
    let kept = management::add_objects(&session).unwrap();
    management::close_engine(session);
    assert_eq!(kept, KeptNonPersistent { provider: true, sublayer: true, callouts: 1 });
    assert!(kept.any());
    engine::delete_filter(filter).unwrap();
    harness.unload_and_check();
}
