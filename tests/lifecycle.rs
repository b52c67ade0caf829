//! Load and unload in the simulated kernel: registration, management
//! objects, rollback when any step fails, busy unregister, and unload
//! leaving nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fwps_types::*;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::platform::status::NtStatus;
use wfpcallout::wfp::callout_table::{CALLOUTS, SUBLAYER_KEY};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::{debug_print, engine, faults};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

fn assert_nothing_registered() {
    for spec in CALLOUTS.iter() {
        assert!(!engine::is_registered(&spec.key), "a callout stayed registered");
        assert!(!engine::has_managed_callout(&spec.key), "a management callout stayed");
    }
    assert!(!engine::has_sublayer(&SUBLAYER_KEY), "the sublayer stayed");
}

#[test]
fn load_registers_everything_and_unload_removes_it() {
    let mut harness = Harness::load();
    for spec in CALLOUTS.iter() {
        assert!(engine::is_registered(&spec.key));
        assert!(engine::has_managed_callout(&spec.key));
        // FwpmCalloutAdd0's id equals the run-time id from registration.
        let id = engine::callout_id(&spec.key).unwrap();
        assert!(STATE.callout_ids.iter().any(|slot| slot.load(std::sync::atomic::Ordering::Relaxed) == id));
    }
    assert!(engine::has_sublayer(&SUBLAYER_KEY));
    harness.unload();
    assert_nothing_registered();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn load_twice_is_refused_and_reload_works() {
    let mut harness = Harness::load();
    let device = wfpcallout_scenario::device_object(&mut harness.kernel).unwrap();
    assert_eq!(wfpcallout::control::lifecycle::initialize(device), Err(NtStatus::INVALID_DEVICE_STATE));
    harness.unload();
    harness.initialize().unwrap();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    assert!(harness.classify(Layer::ConnectV4, id, 80).permitted());
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

#[test]
fn registration_failure_at_each_callout_rolls_back() {
    for nth in 0..CALLOUTS.len() as u64 {
        let mut harness = Harness::boot();
        faults::fail_call("FwpsCalloutRegister2", nth, STATUS_FWP_ALREADY_EXISTS);
        assert_eq!(harness.initialize(), Err(NtStatus::from_raw(STATUS_FWP_ALREADY_EXISTS)), "at callout {nth}");
        assert_nothing_registered();
        harness.kernel.assert_unloaded_clean();
    }
}

#[test]
fn management_failure_at_each_step_rolls_back() {
    let steps: [(&str, u64); 9] = [
        ("FwpmEngineOpen0", 0),
        ("FwpmTransactionBegin0", 0),
        ("FwpmProviderAdd0", 0),
        ("FwpmSubLayerAdd0", 0),
        ("FwpmCalloutAdd0", 0),
        ("FwpmCalloutAdd0", 1),
        ("FwpmCalloutAdd0", 2),
        ("FwpmCalloutAdd0", 3),
        ("FwpmTransactionCommit0", 0),
    ];
    for (api, nth) in steps {
        let mut harness = Harness::boot();
        faults::fail_call(api, nth, STATUS_UNSUCCESSFUL);
        assert_eq!(harness.initialize(), Err(NtStatus::from_raw(STATUS_UNSUCCESSFUL)), "{api} #{nth}");
        assert_nothing_registered();
        harness.kernel.assert_unloaded_clean();
    }
}

#[test]
fn unregister_retries_while_busy() {
    let mut harness = Harness::load();
    faults::fail_calls("FwpsCalloutUnregisterById0", 0, 3, STATUS_DEVICE_BUSY);
    harness.unload();
    assert_nothing_registered();
    harness.kernel.assert_unloaded_clean();
}

/// "Unloading a Callout Driver": unload does not return while a callout is
/// registered (the engine would call into an unloaded image). However long
/// the engine says busy, unload keeps removing flow contexts and asking,
/// logs that it does, and returns only with every callout unregistered.
#[test]
fn unload_keeps_asking_while_unregister_is_busy_and_returns_only_when_done() {
    let mut harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    faults::fail_calls("FwpsCalloutUnregisterById0", 0, 300, STATUS_DEVICE_BUSY);
    harness.unload();
    assert!(
        debug_print::contains("callouts still registered (0x80000011) after 32 attempts"),
        "{:?}",
        debug_print::lines()
    );
    assert_eq!(faults::injected(), 300, "every busy answer was met with another attempt");
    for spec in CALLOUTS.iter() {
        assert!(!engine::is_registered(&spec.key), "unload returned with a callout registered");
    }
    harness.delete_filter(id).unwrap();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn objects_in_use_by_filters_survive_unload_and_are_reused() {
    let mut harness = Harness::load();
    let id = harness.add_filter(Layer::RecvAcceptV4, PolicySource::None).unwrap();
    harness.unload();
    // The filter still names our callout: the engine refuses to delete it.
    assert!(engine::has_managed_callout(&Layer::RecvAcceptV4.spec().key));
    assert!(debug_print::contains("kept the callout"));
    // Unregistered, a terminating callout filter blocks.
    assert!(!engine::classify(&Layer::RecvAcceptV4.connection(80)).permitted());
    harness.initialize().unwrap();
    assert_eq!(STATE.stats.filters_adopted.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(harness.classify(Layer::RecvAcceptV4, id, 80).permitted());
    harness.delete_filter(id).unwrap();
    harness.unload();
    assert_nothing_registered();
    harness.kernel.assert_unloaded_clean();
}

#[test]
fn allocation_failure_during_load_is_harmless() {
    // Load allocates the request table, then, with a filter to adopt, the
    // adopted context: fail each allocation in turn.
    let mut harness = Harness::load();
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::None).unwrap();
    harness.unload();
    for nth in 0..4 {
        faults::fail_allocation(nth);
        match harness.initialize() {
            Ok(()) => {
                assert!(harness.classify(Layer::ConnectV4, id, 80).permitted());
                harness.unload();
            }
            Err(status) => {
                assert_eq!(status, NtStatus::INSUFFICIENT_RESOURCES, "allocation #{nth}");
                assert_nothing_registered_but_the_kept_objects();
            }
        }
        faults::clear();
    }
    harness.delete_filter(id).unwrap();
    harness.kernel.assert_unloaded_clean();
}

fn assert_nothing_registered_but_the_kept_objects() {
    for spec in CALLOUTS.iter() {
        assert!(!engine::is_registered(&spec.key), "a callout stayed registered");
    }
}

/// Adds our FWPM callout for `layer` as an older install would have left
/// it: without FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT.
fn leave_callout_without_provider_contexts(layer: Layer) {
    let mut session = std::ptr::null_mut();
    // SAFETY: `session` is writable.
    let status = unsafe {
        engine::FwpmEngineOpen0(std::ptr::null(), RPC_C_AUTHN_WINNT, std::ptr::null(), std::ptr::null(), &mut session)
    };
    assert_eq!(status, STATUS_SUCCESS);
    let spec = layer.spec();
    let old = fwp::FWPM_CALLOUT0 { calloutKey: spec.key, applicableLayer: spec.layer_key, ..Default::default() };
    // SAFETY: valid session and callout.
    let status = unsafe { engine::FwpmCalloutAdd0(session, &old, std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(engine::FwpmEngineClose0(session), STATUS_SUCCESS);
}

/// An FWPM callout left without FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT
/// would hand notifyFn no provider context: every filter would get the
/// default policy (a block filter would permit). Unused, it is replaced at
/// load, and a block filter then blocks.
#[test]
fn an_old_callout_without_provider_contexts_is_replaced() {
    let mut harness = Harness::boot();
    leave_callout_without_provider_contexts(Layer::ConnectV4);
    harness.initialize().unwrap();
    assert!(debug_print::contains("replacing it"));
    let block = PolicyRepr { action: PolicyAction::Block, log_level: LogLevel::Off, label: Label::new("old").unwrap() };
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&block)).unwrap();
    assert!(!harness.classify(Layer::ConnectV4, id, 80).permitted(), "the policy reached notifyFn");
    harness.delete_filter(id).unwrap();
    harness.unload();
    assert_nothing_registered();
    harness.kernel.assert_unloaded_clean();
}

/// Still named by a filter, such a callout cannot be replaced: the load
/// fails with STATUS_FWP_IN_USE and says what to do, instead of running
/// with every policy silently lost.
#[test]
fn an_old_callout_still_in_use_fails_the_load_clearly() {
    let mut harness = Harness::boot();
    leave_callout_without_provider_contexts(Layer::ConnectV4);
    engine::add_sublayer(SUBLAYER_KEY, 0x100).unwrap();
    let filter = engine::add_filter(&Harness::filter_spec(Layer::ConnectV4)).unwrap();
    assert_eq!(harness.initialize(), Err(NtStatus::from_raw(STATUS_FWP_IN_USE)));
    assert!(debug_print::contains("delete those filters"));
    for spec in CALLOUTS.iter() {
        assert!(!engine::is_registered(&spec.key), "nothing stays registered after a failed load");
    }
    engine::delete_filter(filter).unwrap();
    harness.kernel.assert_unloaded_clean();
}

/// The base filtering engine is not running when the driver loads
/// (FwpmBfeStateGet0: "For a callout driver to open a session to the filter
/// engine, the filter engine must be currently running"): the load fails
/// with the status FwpmEngineOpen0 gave, says why in its log, and leaves
/// nothing registered or allocated; once BFE runs, a load works
/// (CONFORMANCE.md L4).
#[test]
fn load_without_bfe_fails_cleanly_and_says_why() {
    let mut harness = Harness::boot();
    engine::set_bfe_running(false);
    assert_eq!(harness.initialize(), Err(NtStatus::from_raw(engine::EPT_NT_NOT_REGISTERED)));
    assert!(debug_print::contains("the base filtering engine (BFE) is not running"), "{:?}", debug_print::lines());
    assert_nothing_registered();
    harness.kernel.assert_unloaded_clean();
    engine::set_bfe_running(true);
    harness.initialize().unwrap();
    harness.unload_and_check();
}
