//! Conformance: packets a callout keeps while a pended operation waits
//! (simkernel/CONFORMANCE.md, rows C1-C6). A shallow clone held past the
//! limit (default 1 s) while its operation waits is a reported violation;
//! a deep copy (NdisGetDataBuffer into the callout's non-paged buffer, an
//! MDL over it, FwpsAllocateNetBufferAndNetBufferList0 from an
//! NdisAllocateNetBufferListPool pool) may wait, is injected as the
//! connection its bytes name, and every piece of it is leak-checked.
//! Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::packets::{self, NetBufferListPoolParameters};
use wfpcallout_simkernel::engine::{self, Connection, pending};
use wfpcallout_simkernel::verifier::{self, ViolationKind};
use wfpcallout_simkernel::{clock, mdl, pool};

fn inbound(port: u16) -> Connection {
    Connection { layer_id: FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, ..Connection::tcp_connect_v4(port) }
}

fn pend_one(probe: &Probe, connection: &Connection) -> usize {
    probe::pend_next(true);
    let result = engine::classify(connection);
    let _ = probe;
    result.pended.expect("the probe pended")
}

fn setup(n: u128) -> (wfpcallout_simkernel::Kernel, Probe) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    (kernel, probe)
}

/// C1: a shallow clone kept while the operation waits longer than 1 s.
#[test]
fn a_shallow_clone_held_while_its_operation_waits_is_a_violation() {
    let (kernel, probe) = setup(91);
    let connection = inbound(50_001);
    let clone = packets::clone_for_test(&connection);
    let operation = pend_one(&probe, &connection);
    clock::advance_ms(999);
    assert!(verifier::take().is_empty(), "within the limit");
    clock::advance_ms(2);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].kind, ViolationKind::ApiMisuse);
    assert!(violations[0].message.contains("deep copy"), "{}", violations[0].message);
    clock::advance_ms(5_000);
    assert!(verifier::take().is_empty(), "reported once per clone");
    // A deny: completed with NULL, the clone freed (a list passed to the
    // completion at recv-accept is one to inject, I6).
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, std::ptr::null_mut());
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// C2: the rule is about waiting: a clone freed in time, a clone of a
/// connection with nothing pended, and a longer configured limit are clean;
/// the check also runs at completion.
#[test]
fn clones_not_held_across_a_wait_are_clean() {
    let (kernel, probe) = setup(92);
    let connection = inbound(50_002);
    // Nothing pended for it: a clone may live (e.g. queued for injection).
    let unrelated = packets::clone_for_test(&inbound(50_003));
    let clone = packets::clone_for_test(&connection);
    let operation = pend_one(&probe, &connection);
    clock::advance_ms(500);
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    clock::advance_ms(5_000);
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, std::ptr::null_mut());
    packets::FwpsFreeCloneNetBufferList0(unrelated, 0);
    assert!(verifier::take().is_empty());
    // A limit of 10 s allows 5 s; a completion after 11 s is caught by the
    // check completion runs, even if the clock jumped without a check.
    packets::set_clone_hold_limit_ms(10_000);
    let clone = packets::clone_for_test(&connection);
    let operation = pend_one(&probe, &connection);
    clock::advance_ms(5_000);
    assert!(verifier::take().is_empty());
    clock::advance_ms(6_000);
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, std::ptr::null_mut());
    assert_eq!(verifier::take().len(), 1);
    packets::FwpsFreeCloneNetBufferList0(clone, 0);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// What the layerData hook copied: (list, MDL, buffer address, length).
static COPY: Mutex<Option<(usize, usize, usize, usize)>> = Mutex::new(None);
static LIST_POOL: Mutex<usize> = Mutex::new(0);
const TAG: u32 = u32::from_le_bytes(*b"PrCp");

fn list_pool() -> *mut c_void {
    let parameters = NetBufferListPoolParameters {
        header_type: packets::NDIS_OBJECT_TYPE_DEFAULT,
        header_revision: packets::NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
        header_size: packets::NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
        allocate_net_buffer: 1,
        pool_tag: TAG,
        ..Default::default()
    };
    // SAFETY: valid parameters.
    unsafe { packets::NdisAllocateNetBufferListPool(std::ptr::null_mut(), &parameters) }
}

/// Deep-copies layerData from `skip` bytes before its data start (the IP
/// header when `skip` is the header sizes), as a callout does at pend time.
fn deep_copy(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0, skip: u32) {
    let headers = metadata.ipHeaderSize + metadata.transportHeaderSize;
    // SAFETY: layerData is a NET_BUFFER_LIST; FirstNetBuffer at offset 8.
    let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
    // SAFETY: DataLength (ULONG) at offset 24 of the NET_BUFFER.
    let length = unsafe { buffer.cast::<u8>().wrapping_add(24).cast::<u32>().read() } + skip;
    assert_eq!(packets::NdisRetreatNetBufferDataStart(buffer, skip, 0, std::ptr::null_mut()), 0);
    let memory = pool::ExAllocatePool2(POOL_FLAG_NON_PAGED, length as usize, TAG).cast::<u8>();
    // SAFETY: `memory` holds `length` bytes.
    let data = unsafe { packets::NdisGetDataBuffer(buffer, length, memory.cast(), 1, 0) }.cast::<u8>();
    assert!(!data.is_null());
    if data != memory {
        // SAFETY: NDIS returned `length` readable bytes.
        unsafe { std::ptr::copy_nonoverlapping(data, memory, length as usize) };
    }
    packets::NdisAdvanceNetBufferDataStart(buffer, skip, 0, std::ptr::null_mut());
    let _ = headers;
    let mdl = mdl::IoAllocateMdl(memory.cast(), length, 0, 0, std::ptr::null_mut());
    mdl::MmBuildMdlForNonPagedPool(mdl);
    let mut list = std::ptr::null_mut();
    let pool = *LIST_POOL.lock().unwrap() as *mut c_void;
    // SAFETY: valid pool, MDL and out-pointer.
    let status =
        unsafe { packets::FwpsAllocateNetBufferAndNetBufferList0(pool, 0, 0, mdl, 0, length as usize, &mut list) };
    assert_eq!(status, STATUS_SUCCESS);
    *COPY.lock().unwrap() = Some((list as usize, mdl as usize, memory as usize, length as usize));
}

fn copy_from_ip_header(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    deep_copy(layer_data, metadata, metadata.ipHeaderSize + metadata.transportHeaderSize);
}

fn copy_from_payload(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    deep_copy(layer_data, metadata, 0);
}

unsafe extern "system" fn free_copy(_context: *mut c_void, list: *mut c_void, _dispatch: u8) {
    let (copied, mdl, memory, _) = COPY.lock().unwrap().take().unwrap();
    assert_eq!(copied, list as usize);
    packets::FwpsFreeNetBufferList0(list);
    mdl::IoFreeMdl(mdl as *mut c_void);
    // SAFETY: the block the hook allocated with TAG.
    unsafe { pool::ExFreePoolWithTag(memory as *mut c_void, TAG) };
}

/// Injects `list`, a copy of a packet of `connection`, on the interface
/// its classification named.
fn inject(handle: *mut c_void, list: *mut c_void, connection: &Connection) -> NTSTATUS {
    let (interface, sub_interface) = packets::interfaces_of(connection);
    // SAFETY: the completion frees the copy once.
    unsafe {
        packets::FwpsInjectTransportReceiveAsync0(
            handle,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            2,
            1,
            interface,
            sub_interface,
            list,
            Some(free_copy),
            std::ptr::null_mut(),
        )
    }
}

/// C3: a deep copy may wait for minutes; completed with it and injected,
/// it is classified again as the connection its bytes name, and the
/// injector recognises its own packet.
#[test]
fn a_deep_copy_may_wait_and_is_injected_as_its_connection() {
    let (kernel, probe) = setup(93);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    probe::on_layer_data(Some(copy_from_ip_header));
    let connection = Connection { process_id: 77, ..inbound(50_004) };
    let operation = pend_one(&probe, &connection);
    probe::on_layer_data(None);
    clock::advance_ms(300_000);
    assert!(verifier::take().is_empty(), "a deep copy is not a clone");
    let (list, _, _, length) = COPY.lock().unwrap().unwrap();
    assert_eq!(length, 20 + 20 + 32, "IP + TCP + payload");
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, list as *mut c_void);
    assert!(pending::take_completions()[0].with_packet);
    let handle = probe::transport_injection_handle(2);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    assert_eq!(inject(handle, list as *mut c_void, &connection), STATUS_SUCCESS);
    // The completion may run after the injection returned (I2), and the
    // packet be classified then, just before it (I7).
    packets::deliver_injection_completions();
    let reinjected = packets::take_reinjected();
    assert_eq!(reinjected.len(), 1);
    assert_eq!(reinjected[0].0.process_id, 77, "the connection the bytes name, as the engine knew it");
    assert_eq!((reinjected[0].0.remote_port, reinjected[0].0.local_port), (50_004, 49_152));
    assert!(COPY.lock().unwrap().is_none(), "the completion freed the copy");
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// C4: a copy that does not start at the IP header is not a packet the
/// stack can take: injecting it is a reported violation.
#[test]
fn a_copy_from_the_wrong_offset_is_refused() {
    let (kernel, probe) = setup(94);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    probe::on_layer_data(Some(copy_from_payload));
    let operation = pend_one(&probe, &inbound(50_005));
    probe::on_layer_data(None);
    let (list, _, _, _) = COPY.lock().unwrap().unwrap();
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, list as *mut c_void);
    let handle = probe::transport_injection_handle(2);
    assert_eq!(inject(handle, list as *mut c_void, &inbound(50_005)), STATUS_INVALID_PARAMETER);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("IPv4/IPv6"), "{}", violations[0].message);
    // SAFETY: the injection failed: the completion did not run.
    unsafe { free_copy(std::ptr::null_mut(), list as *mut c_void, 0) };
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// C5: every piece of a copy is leak-checked: the list, its MDL, the pool
/// (and freeing a pool with lists still out is misuse).
#[test]
fn lists_mdls_and_pools_left_behind_are_leaks() {
    let (kernel, probe) = setup(95);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    probe::on_layer_data(Some(copy_from_ip_header));
    let operation = pend_one(&probe, &inbound(50_006));
    probe::on_layer_data(None);
    engine::pending::FwpsCompleteOperation0(operation as *mut c_void, std::ptr::null_mut());
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("still allocated"), "{}", violations[0].message);
    // A second pool, never freed.
    let _ = list_pool();
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    // The list, its MDL, the second pool and the copied bytes are leaks.
    let leaks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel.assert_unloaded_clean()))
        .expect_err("leaks are reported")
        .downcast::<String>()
        .unwrap();
    assert!(leaks.contains("allocated NET_BUFFER_LIST(s) never freed"), "{leaks}");
    assert!(leaks.contains("MDL(s) never freed"), "{leaks}");
    assert!(leaks.contains("NET_BUFFER_LIST pool(s) never freed"), "{leaks}");
    assert!(leaks.contains("'PrCp'"), "{leaks}");
}

/// C6: NdisGetDataBuffer gives NULL when the buffer holds fewer bytes than
/// asked, and an MDL must describe live non-paged pool.
#[test]
fn data_buffer_and_mdl_rules() {
    let (kernel, probe) = setup(96);
    fn ask_too_much(layer_data: *mut c_void, _: &FWPS_INCOMING_METADATA_VALUES0) {
        // SAFETY: FirstNetBuffer at offset 8 of the list.
        let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
        let mut storage = [0u8; 64];
        // SAFETY: `storage` has 64 bytes; 33 are asked of a 32-byte payload.
        let data = unsafe { packets::NdisGetDataBuffer(buffer, 33, storage.as_mut_ptr().cast(), 1, 0) };
        assert!(data.is_null());
        // SAFETY: as above, 32 bytes.
        let data = unsafe { packets::NdisGetDataBuffer(buffer, 32, storage.as_mut_ptr().cast(), 1, 0) };
        assert!(!data.is_null());
    }
    probe::on_layer_data(Some(ask_too_much));
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let _ = engine::classify(&inbound(50_007));
    probe::on_layer_data(None);
    assert!(probe::events().iter().any(|e| matches!(e, probe::Event::Classify(_))));
    let paged = pool::ExAllocatePool2(POOL_FLAG_PAGED, 64, TAG);
    let mdl = mdl::IoAllocateMdl(paged, 64, 0, 0, std::ptr::null_mut());
    mdl::MmBuildMdlForNonPagedPool(mdl);
    let violations = verifier::take();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].message.contains("paged pool"), "{}", violations[0].message);
    mdl::IoFreeMdl(mdl);
    mdl::IoFreeMdl(mdl);
    assert_eq!(verifier::take()[0].kind, ViolationKind::DoubleFree);
    // SAFETY: the block allocated above.
    unsafe { pool::ExFreePoolWithTag(paged, TAG) };
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
