//! Conformance: the IRQL of classifyFn and flowDeleteFn
//! (simkernel/CONFORMANCE.md, rows J1 and J2). Both DDIs say "IRQL <=
//! DISPATCH_LEVEL", so the simulated engine calls them at PASSIVE_LEVEL or
//! DISPATCH_LEVEL, at random per call, never below its caller's IRQL; a
//! test can fix the level.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use wfpcallout_simkernel::engine::{self, Connection, FilterAction, flows};
use wfpcallout_simkernel::irql;

const FLOW_LAYER: u16 = FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4;

/// J1: from a PASSIVE_LEVEL caller, classifyFn runs at PASSIVE or DISPATCH,
/// chosen per call; from a DISPATCH_LEVEL caller, at DISPATCH.
#[test]
fn classify_runs_at_passive_or_dispatch_chosen_per_call() {
    let (kernel, _probe, _filter) = probe::boot_with_filter(91, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    for port in 0..64 {
        let _ = engine::classify(&Connection::tcp_connect_v4(1000 + port));
    }
    let levels = probe::classify_irqls();
    assert_eq!(levels.len(), 64);
    assert!(levels.contains(&PASSIVE_LEVEL) && levels.contains(&DISPATCH_LEVEL), "{levels:?}");
    for port in 0..16 {
        let _ = irql::at_dispatch(|| engine::classify(&Connection::tcp_connect_v4(2000 + port)));
    }
    let from_dispatch = &probe::classify_irqls()[64..];
    assert!(from_dispatch.len() == 16 && from_dispatch.iter().all(|&l| l == DISPATCH_LEVEL), "{from_dispatch:?}");
    kernel.assert_clean();
}

/// J1: a test can fix the classifyFn IRQL; a fixed PASSIVE_LEVEL still
/// does not lower a DISPATCH_LEVEL caller.
#[test]
fn classify_irql_can_be_fixed() {
    let (kernel, _probe, _filter) = probe::boot_with_filter(92, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    engine::set_classify_irql(Some(PASSIVE_LEVEL));
    let _ = engine::classify(&Connection::tcp_connect_v4(443));
    let _ = irql::at_dispatch(|| engine::classify(&Connection::tcp_connect_v4(444)));
    engine::set_classify_irql(Some(DISPATCH_LEVEL));
    let _ = engine::classify(&Connection::tcp_connect_v4(445));
    assert_eq!(probe::classify_irqls(), vec![PASSIVE_LEVEL, DISPATCH_LEVEL, DISPATCH_LEVEL]);
    kernel.assert_clean();
}

/// J2: flowDeleteFn runs at PASSIVE or DISPATCH, chosen per call, or at the
/// level a test fixes.
#[test]
fn flow_delete_runs_at_passive_or_dispatch_chosen_per_call() {
    let mut kernel = probe::boot();
    let probe = probe::Probe::add(93, fwp::FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter_with(FilterAction::CalloutInspection)).unwrap();
    let flow_delete = |port: u16| {
        let connection = Connection { layer_id: FLOW_LAYER, ..Connection::tcp_connect_v4(port) };
        let (handle, result) = flows::establish_flow(&connection);
        assert!(result.permitted());
        assert_eq!(flows::FwpsFlowAssociateContext0(handle, FLOW_LAYER, probe.id, u64::from(port)), STATUS_SUCCESS);
        flows::end_flow(handle);
    };
    for port in 0..64 {
        flow_delete(3000 + port);
    }
    let levels = probe::flow_delete_irqls();
    assert_eq!(levels.len(), 64);
    assert!(levels.contains(&PASSIVE_LEVEL) && levels.contains(&DISPATCH_LEVEL), "{levels:?}");
    engine::set_flow_delete_irql(Some(DISPATCH_LEVEL));
    flow_delete(4000);
    engine::set_flow_delete_irql(Some(PASSIVE_LEVEL));
    flow_delete(4001);
    assert_eq!(probe::flow_delete_irqls()[64..], [DISPATCH_LEVEL, PASSIVE_LEVEL]);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
