//! An inbound ask waits for a person: the packet it keeps must be a deep
//! copy, never a shallow clone of the stack's buffers
//! (FwpsAllocateCloneNetBufferList0 remarks: "must not hold cloned packets
//! while ... waiting for user input"; simkernel/CONFORMANCE.md C1). The
//! copies' memory is bounded and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::Ordering;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::wfp::injection::{COPIES, MAX_COPY_BYTES_HELD, MAX_PACKET_COPY};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::engine::{packet_data, packets, pending};
use wfpcallout_simkernel::{clock, verifier};
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr, Verdict};

const AGENT: u64 = 0xC0FE;

fn load_with_ask(layer: Layer) -> (Harness, u64) {
    let harness = Harness::load();
    let ask = PolicyRepr {
        action: PolicyAction::Ask { timeout_ms: 600_000, default_verdict: Verdict::Block },
        log_level: LogLevel::Off,
        label: Label::new("ask").unwrap(),
    };
    let id = harness.add_filter(layer, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);
    (harness, id)
}

fn held() -> u64 {
    COPIES.bytes_held.load(Ordering::Relaxed)
}

/// The agent takes minutes; the packet waits as our own copy, and a permit
/// injects exactly that packet, which classify recognises as ours.
#[test]
fn an_inbound_ask_waiting_for_a_person_holds_no_shallow_clone() {
    for (layer, ip) in [(Layer::RecvAcceptV4, 20), (Layer::RecvAcceptV6, 40)] {
        let (harness, filter) = load_with_ask(layer);
        let first = harness.classify_layer(layer, 22);
        assert!(first.pended.is_some(), "pended at {layer:?}");
        assert_eq!(held(), ip + 20 + 32, "IP + TCP headers + payload copied");
        // A person takes two minutes to answer.
        clock::advance_ms(120_000);
        let violations = verifier::take();
        assert!(violations.is_empty(), "nothing held that may not wait: {violations:?}");
        let request = STATE.pending.take_next().unwrap();
        STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
        let completions = pending::take_completions();
        assert!(completions[0].with_packet, "completed with the copy");
        // The injection's completion may come after the injection returned
        // (CONFORMANCE I2), and the copy be classified then, just before it (I7).
        packets::deliver_injection_completions();
        let reinjected = packets::take_reinjected();
        assert_eq!(reinjected.len(), 1, "the copy was injected");
        assert_eq!(reinjected[0].0.remote_port, 22, "and parsed as the same connection");
        assert!(reinjected[0].1.permitted(), "and recognised as ours: {:?}", reinjected[0].1);
        assert_eq!(held(), 0, "the injection's completion freed the copy");
        harness.delete_filter(filter).unwrap();
        // Leaked lists, MDLs, pools or pool blocks fail this.
        harness.unload_and_check();
    }
}

#[test]
fn a_denied_or_timed_out_copy_is_freed() {
    let (harness, filter) = load_with_ask(Layer::RecvAcceptV4);
    // A process-wide counter: other tests in this binary count too.
    let copied = COPIES.copied.load(Ordering::Relaxed);
    harness.classify_layer(Layer::RecvAcceptV4, 1);
    harness.classify_layer(Layer::RecvAcceptV4, 2);
    assert_eq!(held(), 2 * 72);
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Block).unwrap();
    assert_eq!(held(), 72, "the denied copy is freed at once");
    clock::advance_ms(600_001);
    wfpcallout::control::lifecycle::on_timer();
    packets::deliver_injection_completions();
    assert!(packets::take_reinjected().is_empty(), "default block: nothing injected");
    assert_eq!(held(), 0, "the timed-out copy is freed");
    assert_eq!(COPIES.copied.load(Ordering::Relaxed), copied + 2);
    harness.delete_filter(filter).unwrap();
    harness.unload_and_check();
}

/// Past either bound the ask does not pend: the filter's default applies
/// at once, counted, and nothing is held for it.
#[test]
fn copies_are_bounded_and_counted() {
    let (harness, filter) = load_with_ask(Layer::RecvAcceptV4);
    let refused = COPIES.refused.load(Ordering::Relaxed);
    // One packet larger than a copy may be.
    packet_data::set_payload_len(MAX_PACKET_COPY);
    let too_big = harness.classify_layer(Layer::RecvAcceptV4, 1);
    assert!(too_big.pended.is_none() && !too_big.permitted(), "default verdict (block) at once");
    assert_eq!(COPIES.refused.load(Ordering::Relaxed), refused + 1);
    assert_eq!(held(), 0);
    // Large packets until the budget is spent.
    let size = 40 + 60_000;
    packet_data::set_payload_len(60_000);
    let fit = (MAX_COPY_BYTES_HELD / size) as u16;
    for port in 0..fit {
        assert!(harness.classify_layer(Layer::RecvAcceptV4, 100 + port).pended.is_some(), "copy {port} fits");
    }
    assert_eq!(held(), u64::from(fit) * size);
    let over = harness.classify_layer(Layer::RecvAcceptV4, 9);
    assert!(over.pended.is_none(), "over the budget: not pended");
    assert_eq!(COPIES.refused.load(Ordering::Relaxed), refused + 2);
    assert!(held() <= MAX_COPY_BYTES_HELD);
    // Unload finishes every request with its default and frees every copy.
    harness.delete_filter(filter).unwrap();
    wfpcallout::control::lifecycle::on_timer();
    assert_eq!(held(), 0);
    harness.unload_and_check();
}

/// An injection's completion may come after the injection returned, and
/// `FwpsInjectionHandleDestroy0` can fail (then it waits for nothing): the
/// list pool must not be freed while a copy's list is still the stack's.
/// Unload waits for the copies' lists to be freed (here the completion
/// comes from another thread while unload runs) before freeing the pool;
/// the handle that could not be destroyed is the only thing left behind.
#[test]
fn unload_frees_the_list_pool_only_after_the_injections_complete() {
    let (mut harness, filter) = load_with_ask(Layer::RecvAcceptV4);
    assert!(harness.classify_layer(Layer::RecvAcceptV4, 22).pended.is_some());
    packets::set_injection_completion(Some(packets::InjectionCompletion::LaterAtPassive));
    packets::hold_injection_completions(true);
    let request = STATE.pending.take_next().unwrap();
    STATE.pending.answer(request.request_id, Verdict::Permit).unwrap();
    assert_eq!(packets::outstanding_injection_completions(), 1, "the stack still holds the copy");
    harness.delete_filter(filter).unwrap();
    wfpcallout_simkernel::faults::fail_calls("FwpsInjectionHandleDestroy0", 0, 100, -1_073_741_823);
    // The stack completes the injection a little later, from another thread.
    let stack = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        packets::deliver_injection_completions()
    });
    harness.unload();
    assert_eq!(stack.join().unwrap(), 1);
    // Classified inside the injection or by the stack's thread just before
    // the completion (CONFORMANCE I7).
    assert_eq!(packets::take_reinjected().len(), 1);
    wfpcallout_simkernel::faults::clear();
    let leaks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.kernel.assert_unloaded_clean()))
        .expect_err("the handle that could not be destroyed is left")
        .downcast::<String>()
        .unwrap();
    assert!(leaks.contains("1 verifier violation"), "{leaks}");
    assert!(leaks.contains("injection handle(s) never destroyed"), "{leaks}");
}

/// At unload a connection still waiting for an answer gets its default
/// verdict; a permit injects its packet, which may travel the stack after
/// the injection returned (CONFORMANCE I7). It must meet our ask filter
/// while its callout is still registered: after unregistration the filter
/// (terminating, without PERMIT_IF_CALLOUT_UNREGISTERED) blocks it, and the
/// default permit is lost. So unload waits for its injections first.
#[test]
fn a_default_permit_at_unload_reaches_our_filters_before_the_callouts_go() {
    let harness = Harness::load();
    let ask = PolicyRepr {
        action: PolicyAction::Ask { timeout_ms: 600_000, default_verdict: Verdict::Permit },
        log_level: LogLevel::Off,
        label: Label::new("ask").unwrap(),
    };
    let _filter = harness.add_filter(Layer::RecvAcceptV4, PolicySource::Policy(&ask)).unwrap();
    harness.connect_agent(AGENT);
    assert!(harness.classify_layer(Layer::RecvAcceptV4, 22).pended.is_some());
    packets::set_injection_completion(Some(packets::InjectionCompletion::LaterAtPassive));
    packets::set_injection_delivery(Some(packets::InjectionDelivery::Later));
    packets::hold_injection_completions(true);
    // The stack delivers the packet, then completes, a little later.
    let stack = std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        packets::deliver_injection_completions()
    });
    let mut harness = harness;
    harness.unload();
    let delivered_by_the_stack = stack.join().unwrap();
    let reinjected = packets::take_reinjected();
    assert_eq!(reinjected.len(), 1, "the copy was injected");
    assert!(reinjected[0].1.permitted(), "and met our filter while its callout was registered: {:?}", reinjected[0].1);
    assert_eq!(delivered_by_the_stack, 1, "unload waited for the stack, not for the handle's destruction");
    harness.kernel.assert_unloaded_clean();
}
