//! Conformance: when an injection's completion function runs
//! (simkernel/CONFORMANCE.md, rows I2-I4). The injection functions "can
//! execute asynchronously": the completion may run before the call returns
//! or later, from another thread, at PASSIVE_LEVEL (`dispatchLevel` FALSE)
//! or DISPATCH_LEVEL (TRUE); each injection takes a reading at random.
//! `FwpsInjectionHandleDestroy0` returns only once every pending injection
//! of the handle is completed, and until its completion the list is the
//! stack's. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use std::thread::ThreadId;
use wfpcallout_simkernel::engine;
use wfpcallout_simkernel::engine::packets::{self, InjectionCompletion};
use wfpcallout_simkernel::irql;
use wfpcallout_simkernel::verifier::{self, ViolationKind};

/// Each completion as it ran: (thread, IRQL, dispatchLevel).
static SEEN: Mutex<Vec<(ThreadId, u8, u8)>> = Mutex::new(Vec::new());

fn seen() -> Vec<(ThreadId, u8, u8)> {
    SEEN.lock().unwrap().clone()
}

unsafe extern "system" fn record(_context: *mut c_void, clone: *mut c_void, dispatch_level: u8) {
    SEEN.lock().unwrap().push((std::thread::current().id(), irql::current(), dispatch_level));
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
}

/// Receive-injects a clone (of a connection the engine never presented,
/// so no interface is expected) with the recording completion.
fn inject(handle: *mut c_void, clone: *mut c_void) -> NTSTATUS {
    // SAFETY: the completion frees the clone once; the rest are plain values.
    unsafe {
        packets::FwpsInjectTransportReceiveAsync0(
            handle,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            2,
            1,
            0,
            0,
            clone,
            Some(record),
            std::ptr::null_mut(),
        )
    }
}

fn setup(n: u128) -> (wfpcallout_simkernel::Kernel, Probe, *mut c_void) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    SEEN.lock().unwrap().clear();
    (kernel, probe, probe::transport_injection_handle(2))
}

fn finish(kernel: wfpcallout_simkernel::Kernel, probe: Probe, handle: *mut c_void) {
    let _ = packets::take_reinjected();
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// I2: fixed to each reading, the completion runs inside the call at
/// DISPATCH_LEVEL with TRUE, or after the call returned, from another
/// thread, at PASSIVE_LEVEL with FALSE or at DISPATCH_LEVEL with TRUE.
#[test]
fn the_completion_runs_inside_the_call_or_later_from_another_thread() {
    let (kernel, probe, handle) = setup(121);
    let me = std::thread::current().id();
    packets::set_injection_completion(Some(InjectionCompletion::Inside));
    assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_101))), STATUS_SUCCESS);
    assert_eq!(seen(), [(me, DISPATCH_LEVEL, 1)], "inside the call, at DISPATCH_LEVEL");
    for (reading, level, flag) in [
        (InjectionCompletion::LaterAtPassive, PASSIVE_LEVEL, 0),
        (InjectionCompletion::LaterAtDispatch, DISPATCH_LEVEL, 1),
    ] {
        SEEN.lock().unwrap().clear();
        packets::set_injection_completion(Some(reading));
        // Held: the call returns with the completion still to come.
        packets::hold_injection_completions(true);
        assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_102))), STATUS_SUCCESS);
        assert!(seen().is_empty(), "{reading:?}: not before the call returned");
        assert_eq!(packets::outstanding_injection_completions(), 1);
        assert_eq!(packets::deliver_injection_completions(), 1);
        assert_eq!(seen(), [(me, level, flag)], "{reading:?}");
        // Not held: another thread delivers it.
        SEEN.lock().unwrap().clear();
        packets::hold_injection_completions(false);
        assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_103))), STATUS_SUCCESS);
        probe::wait_for_injection_completions();
        let completions = seen();
        assert_eq!(completions.len(), 1, "{reading:?}");
        assert_ne!(completions[0].0, me, "{reading:?}: from another thread");
        assert_eq!((completions[0].1, completions[0].2), (level, flag), "{reading:?}");
    }
    finish(kernel, probe, handle);
}

/// I2: by default each injection takes a reading at random: over 64
/// injections, completions come inside the call and later, and the later
/// ones at both levels.
#[test]
fn by_default_each_injection_takes_a_reading_at_random() {
    let (kernel, probe, handle) = setup(122);
    packets::hold_injection_completions(true);
    let mut inside = 0;
    for port in 0..64 {
        let before = seen().len();
        assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_200 + port))), STATUS_SUCCESS);
        inside += seen().len() - before;
    }
    let later = packets::deliver_injection_completions();
    assert_eq!(inside + later, 64);
    assert!(inside > 0 && later > 0, "inside {inside}, later {later}");
    let flags: Vec<u8> = seen().iter().skip(inside).map(|s| s.2).collect();
    assert!(flags.contains(&0) && flags.contains(&1), "later completions at both levels: {flags:?}");
    finish(kernel, probe, handle);
}

/// I3: FwpsInjectionHandleDestroy0 does not return until every pending
/// injection of the handle is completed.
#[test]
fn destroying_the_handle_completes_its_pending_injections_first() {
    let (kernel, probe, handle) = setup(123);
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtPassive));
    packets::hold_injection_completions(true);
    assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_301))), STATUS_SUCCESS);
    assert_eq!(inject(handle, packets::clone_for_test(&probe::inbound_udp(50_302))), STATUS_SUCCESS);
    assert!(seen().is_empty());
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(seen().len(), 2, "both completed before the destroy returned");
    assert_eq!(packets::outstanding_injection_completions(), 0);
    let _ = packets::take_reinjected();
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// I4: until its completion the injected list is the stack's: freeing it,
/// injecting it again or completing an operation with it is reported (and
/// the free does not happen); after the completion it is the callout's.
#[test]
fn an_injected_list_is_the_stacks_until_its_completion() {
    let (kernel, probe, handle) = setup(124);
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtDispatch));
    packets::hold_injection_completions(true);
    let clone = packets::clone_for_test(&probe::inbound_udp(50_401));
    assert_eq!(inject(handle, clone), STATUS_SUCCESS);
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("in flight"), "{}", violations[0].message);
    assert_eq!(inject(handle, clone), STATUS_INVALID_PARAMETER);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("has not completed"), "{}", violations[0].message);
    probe::pend_next(true);
    let operation = engine::classify(&probe::inbound_udp(50_402)).pended.unwrap();
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, clone);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("not the callout's own live"), "{}", violations[0].message);
    // The completion frees it: no double free, nothing left.
    assert_eq!(packets::deliver_injection_completions(), 1);
    assert_eq!(seen().len(), 1);
    let _ = engine::pending::take_completions();
    finish(kernel, probe, handle);
}
