//! Conformance: when an injected packet travels the stack, if its
//! injection's completion comes later (simkernel/CONFORMANCE.md, row I7).
//! An injection "can execute asynchronously" and its success only says
//! the injection "was initiated": whether the layers the packet passes
//! classify it before the injection call returns or after is not
//! documented, so each injection whose completion comes later takes a
//! reading at random. Either way the packet is classified (and recognised
//! as injected by the handle) before its completion runs, and
//! `FwpsInjectionHandleDestroy0` delivers packets not delivered yet.
//! Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::{Event, Probe};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;
use wfpcallout_simkernel::engine::packets::{self, InjectionCompletion, InjectionDelivery, TransportSendParams1};
use wfpcallout_simkernel::engine::{self, Connection, pending};
use wfpcallout_simkernel::verifier;

/// The injection handle the probe's hook asks about.
static HANDLE: AtomicUsize = AtomicUsize::new(0);
/// Each injected packet a probe classified: (injection state, thread).
static CLASSIFIED: Mutex<Vec<(i32, ThreadId)>> = Mutex::new(Vec::new());
/// Each completion: (list, thread).
static COMPLETED: Mutex<Vec<(usize, ThreadId)>> = Mutex::new(Vec::new());
/// A clone the hook made of a connect's first datagram, and the socket.
static CLONED: Mutex<Option<(usize, u64)>> = Mutex::new(None);

/// A lock that a failed test before did not poison (each test reports its
/// own failure, not the previous one's).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

const RETURNED: Event = Event::Mark("the injection returned");
const CLASSIFIED_INJECTED: Event = Event::Mark("the injected packet was classified");
const COMPLETION: Event = Event::Mark("the completion ran");

/// The probe's own packet handling: an injected packet is logged with its
/// injection state; a connect's first datagram (not injected) is cloned to
/// be sent.
fn hook(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    if layer_data.is_null() {
        return;
    }
    let handle = HANDLE.load(Ordering::SeqCst) as *mut c_void;
    let state = packets::FwpsQueryPacketInjectionState0(handle, layer_data, std::ptr::null_mut());
    if state == packets::FWPS_PACKET_NOT_INJECTED {
        let mut cloned = lock(&CLONED);
        if cloned.is_none() && metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE != 0
        {
            let clone = probe::clone_of(layer_data);
            *cloned = Some((clone as usize, metadata.transportEndpointHandle));
        }
        return;
    }
    probe::log(CLASSIFIED_INJECTED);
    lock(&CLASSIFIED).push((state, std::thread::current().id()));
}

unsafe extern "system" fn completed(_context: *mut c_void, clone: *mut c_void, _dispatch_level: u8) {
    probe::log(COMPLETION);
    lock(&COMPLETED).push((clone as usize, std::thread::current().id()));
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
}

fn setup(n: u128, layer: GUID) -> (wfpcallout_simkernel::Kernel, Probe, *mut c_void) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, layer);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    probe::on_layer_data(Some(hook));
    lock(&CLASSIFIED).clear();
    lock(&COMPLETED).clear();
    *lock(&CLONED) = None;
    let handle = probe::transport_injection_handle(0);
    HANDLE.store(handle as usize, Ordering::SeqCst);
    (kernel, probe, handle)
}

fn finish(kernel: wfpcallout_simkernel::Kernel, probe: Probe, handle: *mut c_void) {
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    let _ = packets::take_reinjected();
    let _ = packets::take_sent();
    let _ = pending::take_completions();
    probe::on_layer_data(None);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    let violations = verifier::take();
    assert!(violations.is_empty(), "{violations:?}");
    kernel.assert_unloaded_clean();
}

/// Receive-injects a clone of an inbound UDP packet (of a connection the
/// engine never presented, so no interface is expected), then logs that
/// the call returned.
fn inject_receive(handle: *mut c_void, port: u16) -> usize {
    let clone = packets::clone_for_test(&probe::inbound_udp(port));
    // SAFETY: the completion frees the clone once; the rest are plain values.
    let status = unsafe {
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
            Some(completed),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    probe::log(RETURNED);
    clone as usize
}

/// The marks of the log, in order.
fn marks() -> Vec<Event> {
    probe::events().into_iter().filter(|e| matches!(e, Event::Mark(_))).collect()
}

/// I7, the later reading: the injection returns before its packet is
/// classified; the classification (injected by self) comes just before the
/// completion, from the context that delivers it: the test's thread when
/// held, another thread otherwise; for completions at either level.
#[test]
fn under_the_later_reading_the_packet_is_classified_after_the_call_returned() {
    let (kernel, probe, handle) = setup(131, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    let me = std::thread::current().id();
    packets::set_injection_delivery(Some(InjectionDelivery::Later));
    for (round, completion) in
        [InjectionCompletion::LaterAtPassive, InjectionCompletion::LaterAtDispatch].into_iter().enumerate()
    {
        packets::set_injection_completion(Some(completion));
        // Held: the test delivers.
        probe::clear_log();
        packets::hold_injection_completions(true);
        inject_receive(handle, 51_100 + round as u16);
        assert_eq!(marks(), [RETURNED], "{completion:?}: not classified inside the call");
        assert!(packets::take_reinjected().is_empty(), "{completion:?}");
        assert_eq!(packets::undelivered_injected_packets(), 1, "{completion:?}");
        assert_eq!(packets::deliver_injection_completions(), 1);
        assert_eq!(marks(), [RETURNED, CLASSIFIED_INJECTED, COMPLETION], "{completion:?}");
        assert_eq!(packets::take_reinjected().len(), 1, "{completion:?}");
        let classified = std::mem::take(&mut *lock(&CLASSIFIED));
        assert_eq!(classified, [(packets::FWPS_PACKET_INJECTED_BY_SELF, me)], "{completion:?}");
        // Not held: another thread classifies it, then completes it.
        probe::clear_log();
        lock(&COMPLETED).clear();
        packets::hold_injection_completions(false);
        inject_receive(handle, 51_200 + round as u16);
        probe::wait_for_injection_completions();
        assert_eq!(marks(), [RETURNED, CLASSIFIED_INJECTED, COMPLETION], "{completion:?}");
        assert_eq!(packets::take_reinjected().len(), 1, "{completion:?}");
        let classified = std::mem::take(&mut *lock(&CLASSIFIED));
        assert_eq!(classified.len(), 1, "{completion:?}");
        assert_eq!(classified[0].0, packets::FWPS_PACKET_INJECTED_BY_SELF, "{completion:?}");
        assert_ne!(classified[0].1, me, "{completion:?}: from another thread");
        assert_eq!(classified[0].1, lock(&COMPLETED)[0].1, "{completion:?}: the completion's thread");
    }
    finish(kernel, probe, handle);
}

/// I7, the inside reading: the packet is classified before the injection
/// returns, and its completion still comes later; a completion inside the
/// call has its packet classified inside the call whatever the delivery
/// reading says.
#[test]
fn under_the_inside_reading_the_packet_is_classified_before_the_call_returns() {
    let (kernel, probe, handle) = setup(132, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    packets::set_injection_delivery(Some(InjectionDelivery::Inside));
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtDispatch));
    packets::hold_injection_completions(true);
    probe::clear_log();
    inject_receive(handle, 51_301);
    assert_eq!(marks(), [CLASSIFIED_INJECTED, RETURNED], "classified inside the call, completed later");
    assert_eq!(packets::take_reinjected().len(), 1);
    assert_eq!(packets::undelivered_injected_packets(), 0);
    assert_eq!(packets::deliver_injection_completions(), 1);
    assert_eq!(marks(), [CLASSIFIED_INJECTED, RETURNED, COMPLETION]);
    // A completion inside the call: its packet travelled inside it too.
    packets::set_injection_delivery(Some(InjectionDelivery::Later));
    packets::set_injection_completion(Some(InjectionCompletion::Inside));
    probe::clear_log();
    inject_receive(handle, 51_302);
    assert_eq!(marks(), [CLASSIFIED_INJECTED, COMPLETION, RETURNED]);
    let classified = std::mem::take(&mut *lock(&CLASSIFIED));
    assert!(classified.iter().all(|c| c.0 == packets::FWPS_PACKET_INJECTED_BY_SELF), "{classified:?}");
    finish(kernel, probe, handle);
}

/// I7: by default each injection whose completion comes later takes a
/// reading at random: over 64 injections, packets are classified inside
/// the call and later, each exactly once and before its completion.
#[test]
fn by_default_each_later_completion_takes_a_delivery_reading_at_random() {
    let (kernel, probe, handle) = setup(133, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtPassive));
    packets::hold_injection_completions(true);
    probe::clear_log();
    let mut inside = 0;
    for port in 0..64 {
        let before = lock(&CLASSIFIED).len();
        inject_receive(handle, 51_400 + port);
        inside += lock(&CLASSIFIED).len() - before;
    }
    let later = packets::undelivered_injected_packets();
    assert_eq!(inside + later, 64);
    assert!(inside > 0 && later > 0, "inside {inside}, later {later}");
    assert_eq!(packets::deliver_injection_completions(), 64);
    assert_eq!(lock(&CLASSIFIED).len(), 64, "each classified once");
    assert_eq!(packets::take_reinjected().len(), 64);
    // Every completion comes after a classification of its own.
    let mut classified = 0;
    for mark in marks() {
        match mark {
            m if m == CLASSIFIED_INJECTED => classified += 1,
            m if m == COMPLETION => {
                assert!(classified > 0, "a completion before its packet was classified");
                classified -= 1;
            }
            _ => {}
        }
    }
    finish(kernel, probe, handle);
}

/// I3 with I7: `FwpsInjectionHandleDestroy0` does not return until every
/// pending injection of the handle is completed, so a packet not delivered
/// yet is classified (as injected by the handle, still live) and then
/// completed before it returns.
#[test]
fn destroying_the_handle_delivers_its_packets_first() {
    let (kernel, probe, handle) = setup(134, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    packets::set_injection_delivery(Some(InjectionDelivery::Later));
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtPassive));
    packets::hold_injection_completions(true);
    probe::clear_log();
    inject_receive(handle, 51_501);
    inject_receive(handle, 51_502);
    assert_eq!(packets::undelivered_injected_packets(), 2);
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    assert_eq!(
        marks(),
        [RETURNED, RETURNED, CLASSIFIED_INJECTED, COMPLETION, CLASSIFIED_INJECTED, COMPLETION],
        "both delivered and completed before the destroy returned"
    );
    let classified = std::mem::take(&mut *lock(&CLASSIFIED));
    assert!(classified.iter().all(|c| c.0 == packets::FWPS_PACKET_INJECTED_BY_SELF), "{classified:?}");
    assert_eq!(packets::take_reinjected().len(), 2);
    assert_eq!(packets::outstanding_injection_completions(), 0);
    probe::on_layer_data(None);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// Sends the clone the hook made of the first datagram on its socket, then
/// logs that the call returned.
fn send_clone(handle: *mut c_void) {
    let (clone, endpoint) = lock(&CLONED).unwrap();
    let remote = [192u8, 0, 2, 10];
    let args = TransportSendParams1 {
        remote_address: remote.as_ptr(),
        remote_scope_id: 0,
        control_data: std::ptr::null(),
        control_data_length: 0,
        header_include_header: std::ptr::null(),
        header_include_header_length: 0,
    };
    // SAFETY: valid arguments; the completion frees the clone once.
    let status = unsafe {
        packets::FwpsInjectTransportSendAsync1(
            handle,
            std::ptr::null_mut(),
            endpoint,
            0,
            &args,
            2,
            1,
            clone as *mut c_void,
            Some(completed),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    probe::log(RETURNED);
}

/// I7 for send injection: a datagram sent before its connection is
/// authorized is classified at ALE_AUTH_CONNECT (injected by self) and
/// sent inside the call under the inside reading, after the call returned
/// and just before the completion under the later one.
#[test]
fn a_send_injection_travels_inside_the_call_or_later() {
    let (kernel, probe, handle) = setup(135, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    packets::set_injection_completion(Some(InjectionCompletion::LaterAtDispatch));
    packets::hold_injection_completions(true);
    pending::defer_completion_reauthorizations(true);
    for (port, reading) in [(53, InjectionDelivery::Inside), (54, InjectionDelivery::Later)] {
        packets::set_injection_delivery(Some(reading));
        *lock(&CLONED) = None;
        probe::pend_next(true);
        let pended = engine::classify(&Connection { protocol: 17, ..Connection::tcp_connect_v4(port) }).pended.unwrap();
        engine::pending::FwpsCompleteOperation0(pended as *mut c_void, std::ptr::null_mut());
        probe::clear_log();
        send_clone(handle);
        let expected_now: &[Event] =
            if reading == InjectionDelivery::Inside { &[CLASSIFIED_INJECTED, RETURNED] } else { &[RETURNED] };
        assert_eq!(marks(), expected_now, "{reading:?}");
        assert_eq!(packets::take_sent().len(), expected_now.len() - 1, "{reading:?}: sent with its classification");
        assert_eq!(packets::deliver_injection_completions(), 1);
        let sent = if reading == InjectionDelivery::Later { packets::take_sent() } else { Vec::new() };
        assert_eq!(marks().last(), Some(&COMPLETION), "{reading:?}");
        if reading == InjectionDelivery::Later {
            assert_eq!(marks(), [RETURNED, CLASSIFIED_INJECTED, COMPLETION]);
            assert_eq!(sent.len(), 1);
            assert!(sent[0].1.is_some_and(|r| r.permitted()), "classified at connect and permitted: {sent:?}");
        }
        let classified = std::mem::take(&mut *lock(&CLASSIFIED));
        assert_eq!(classified.len(), 1, "{reading:?}");
        assert_eq!(classified[0].0, packets::FWPS_PACKET_INJECTED_BY_SELF, "{reading:?}");
        assert!(packets::lost_datagrams().is_empty(), "{reading:?}");
    }
    pending::defer_completion_reauthorizations(false);
    let _ = pending::deliver_deferred_reauthorizations();
    finish(kernel, probe, handle);
}
