//! Conformance: the first datagram of a UDP connection at ALE_AUTH_CONNECT
//! (simkernel/CONFORMANCE.md, rows D1-D4). The engine presents it as
//! layerData (positioned at its transport header, with the socket's
//! transport endpoint handle in the metadata); completing a pended connect
//! flushes it, and a connection then authorized without the callout
//! sending it again has lost it; FwpsInjectTransportSendAsync1 sends a
//! copy on the socket. Driven by probes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod probe;

use fwps_types::*;
use probe::Probe;
use std::ffi::c_void;
use std::sync::Mutex;
use wfpcallout_simkernel::engine::packets::{self, NetBufferListPoolParameters, TransportSendParams1};
use wfpcallout_simkernel::engine::{self, Connection, pending, reauthorization};
use wfpcallout_simkernel::verifier;
use wfpcallout_simkernel::{mdl, pool};

fn udp(port: u16) -> Connection {
    Connection { protocol: 17, ..Connection::tcp_connect_v4(port) }
}

fn setup(n: u128) -> (wfpcallout_simkernel::Kernel, Probe) {
    let mut kernel = probe::boot();
    let probe = Probe::add(n, fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4);
    assert_eq!(probe.register(kernel.device_object()), STATUS_SUCCESS);
    engine::add_filter(&probe.filter()).unwrap();
    (kernel, probe)
}

/// What the hook saw: (layerData, first 4 bytes at its data start, endpoint handle).
static SEEN: Mutex<Vec<(usize, [u8; 4], u64)>> = Mutex::new(Vec::new());

fn record(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    let mut first = [0u8; 4];
    if !layer_data.is_null() {
        // SAFETY: layerData is a NET_BUFFER_LIST; FirstNetBuffer at offset 8.
        let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
        // SAFETY: `first` holds 4 bytes.
        let data = unsafe { packets::NdisGetDataBuffer(buffer, 4, first.as_mut_ptr().cast(), 1, 0) };
        // SAFETY: NDIS returned 4 readable bytes (a pointer into the packet or `first`).
        first.copy_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), 4) });
    }
    let endpoint = if metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE != 0 {
        metadata.transportEndpointHandle
    } else {
        0
    };
    SEEN.lock().unwrap().push((layer_data as usize, first, endpoint));
}

/// D1: UDP's first classification at connect carries the datagram from its
/// transport header (source port = local port); TCP's carries none, nor
/// does the completion's reauthorization (other reauthorizations: Z9); the
/// metadata names the socket.
#[test]
fn a_udp_connect_presents_its_first_datagram() {
    let (kernel, probe) = setup(101);
    SEEN.lock().unwrap().clear();
    probe::on_layer_data(Some(record));
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let _ = engine::classify(&udp(53));
    let _ = engine::classify(&Connection::tcp_connect_v4(443));
    let _ = reauthorization::reauthorize(&udp(53), fwp::FWP_CONDITION_REAUTHORIZE_REASON_CLASSIFY_COMPLETION);
    probe::on_layer_data(None);
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_ne!(seen[0].0, 0, "UDP: the first datagram");
    assert_eq!(seen[0].1, [0xC0, 0x00, 0x00, 53], "its UDP header: 49152 -> 53");
    assert_ne!(seen[0].2, 0, "the transport endpoint handle");
    assert_eq!(seen[1].0, 0, "TCP: no data at connect");
    assert_eq!(seen[2].0, 0, "the completion's reauthorization carries no datagram (others: Z9)");
    assert_eq!(seen[2].2, seen[0].2, "the same socket");
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// D2: completing flushes the datagram: once the connection is authorized
/// it is reported lost unless the callout sent it; a blocked connection
/// loses nothing.
#[test]
fn a_completion_flushes_the_datagram() {
    let (kernel, probe) = setup(102);
    probe::pend_next(true);
    let pended = engine::classify(&udp(53)).pended.unwrap();
    probe::answer(fwp::FWP_ACTION_PERMIT);
    engine::pending::FwpsCompleteOperation0(pended as *mut c_void, std::ptr::null_mut());
    assert!(pending::take_completions()[0].reauthorization.unwrap().permitted());
    let lost = packets::lost_datagrams();
    assert_eq!(lost.len(), 1, "flushed and never sent");
    assert_eq!(lost[0].remote_port, 53);
    probe::pend_next(true);
    let pended = engine::classify(&udp(54)).pended.unwrap();
    probe::answer(fwp::FWP_ACTION_BLOCK);
    engine::pending::FwpsCompleteOperation0(pended as *mut c_void, std::ptr::null_mut());
    assert_eq!(packets::lost_datagrams().len(), 1, "the blocked one is not lost");
    let _ = pending::take_completions();
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

const TAG: u32 = u32::from_le_bytes(*b"PrDg");
/// The copy: (list, MDL, memory).
static COPY: Mutex<Option<(usize, usize, usize)>> = Mutex::new(None);
static LIST_POOL: Mutex<usize> = Mutex::new(0);
static ENDPOINT: Mutex<u64> = Mutex::new(0);

fn copy_datagram(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    *ENDPOINT.lock().unwrap() = metadata.transportEndpointHandle;
    // SAFETY: FirstNetBuffer at offset 8 of the list.
    let buffer = unsafe { layer_data.cast::<u8>().wrapping_add(8).cast::<*mut c_void>().read() };
    // SAFETY: DataLength (ULONG) at offset 24 of the NET_BUFFER.
    let length = unsafe { buffer.cast::<u8>().wrapping_add(24).cast::<u32>().read() };
    let memory = pool::ExAllocatePool2(POOL_FLAG_NON_PAGED, length as usize, TAG).cast::<u8>();
    // SAFETY: `memory` holds `length` bytes.
    let data = unsafe { packets::NdisGetDataBuffer(buffer, length, memory.cast(), 1, 0) }.cast::<u8>();
    if data != memory {
        // SAFETY: NDIS returned `length` readable bytes.
        unsafe { std::ptr::copy_nonoverlapping(data, memory, length as usize) };
    }
    let mdl = mdl::IoAllocateMdl(memory.cast(), length, 0, 0, std::ptr::null_mut());
    mdl::MmBuildMdlForNonPagedPool(mdl);
    let mut list = std::ptr::null_mut();
    let pool = *LIST_POOL.lock().unwrap() as *mut c_void;
    // SAFETY: valid pool, MDL and out-pointer.
    let status =
        unsafe { packets::FwpsAllocateNetBufferAndNetBufferList0(pool, 0, 0, mdl, 0, length as usize, &mut list) };
    assert_eq!(status, STATUS_SUCCESS);
    *COPY.lock().unwrap() = Some((list as usize, mdl as usize, memory as usize));
}

unsafe extern "system" fn free_copy(_context: *mut c_void, list: *mut c_void, _dispatch: u8) {
    let (copied, mdl, memory) = COPY.lock().unwrap().take().unwrap();
    assert_eq!(copied, list as usize);
    packets::FwpsFreeNetBufferList0(list);
    mdl::IoFreeMdl(mdl as *mut c_void);
    // SAFETY: the block the hook allocated with TAG.
    unsafe { pool::ExFreePoolWithTag(memory as *mut c_void, TAG) };
}

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

fn send(handle: *mut c_void, endpoint: u64, remote: Option<&[u8; 4]>, list: usize) -> NTSTATUS {
    let args = remote.map(|address| TransportSendParams1 {
        remote_address: address.as_ptr(),
        remote_scope_id: 0,
        control_data: std::ptr::null(),
        control_data_length: 0,
        header_include_header: std::ptr::null(),
        header_include_header_length: 0,
    });
    let args_ptr = args.as_ref().map_or(std::ptr::null(), |a| a as *const TransportSendParams1);
    // SAFETY: valid arguments; the completion frees the copy once.
    unsafe {
        packets::FwpsInjectTransportSendAsync1(
            handle,
            std::ptr::null_mut(),
            endpoint,
            0,
            args_ptr,
            2,
            1,
            list as *mut c_void,
            Some(free_copy),
            std::ptr::null_mut(),
        )
    }
}

/// D3: a copy sent on its socket after the connection was authorized is
/// delivered without another classification, and nothing is lost; sent
/// before, it is classified at ALE_AUTH_CONNECT as an injected packet.
#[test]
fn a_sent_copy_is_delivered_and_not_lost() {
    let (kernel, probe) = setup(103);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    let handle = probe::transport_injection_handle(0);
    let remote = [192, 0, 2, 10];
    for (port, send_first) in [(53, false), (54, true)] {
        probe::on_layer_data(Some(copy_datagram));
        probe::pend_next(true);
        let pended = engine::classify(&udp(port)).pended.unwrap();
        probe::on_layer_data(None);
        probe::answer(fwp::FWP_ACTION_PERMIT);
        let (list, _, _) = COPY.lock().unwrap().unwrap();
        let endpoint = *ENDPOINT.lock().unwrap();
        if send_first {
            pending::defer_completion_reauthorizations(true);
        }
        engine::pending::FwpsCompleteOperation0(pended as *mut c_void, std::ptr::null_mut());
        assert_eq!(send(handle, endpoint, Some(&remote), list), STATUS_SUCCESS);
        // The completion may run after the send returned (I2), and the
        // datagram travel then, just before it (I7).
        packets::deliver_injection_completions();
        let sent = packets::take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.remote_port, port);
        assert_eq!(sent[0].1.is_some(), send_first, "classified only when not yet authorized");
        if send_first {
            pending::defer_completion_reauthorizations(false);
            assert!(pending::deliver_deferred_reauthorizations()[0].1.permitted());
        }
        assert!(packets::lost_datagrams().is_empty());
        assert!(COPY.lock().unwrap().is_none(), "the completion ran");
    }
    let _ = pending::take_completions();
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// D4: send injection names a socket the metadata gave, gives the remote
/// address (the list has no IP header), and its datagram's source port is
/// the socket's.
#[test]
fn send_injection_checks_its_arguments() {
    let (kernel, probe) = setup(104);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    let handle = probe::transport_injection_handle(0);
    probe::on_layer_data(Some(copy_datagram));
    probe::answer(fwp::FWP_ACTION_PERMIT);
    let _ = engine::classify(&udp(53));
    probe::on_layer_data(None);
    let (list, _, _) = COPY.lock().unwrap().unwrap();
    let endpoint = *ENDPOINT.lock().unwrap();
    let remote = [192, 0, 2, 10];
    assert_eq!(send(handle, endpoint + 1, Some(&remote), list), STATUS_INVALID_PARAMETER);
    assert!(verifier::take()[0].message.contains("endpoint handle"));
    assert_eq!(send(handle, endpoint, None, list), STATUS_INVALID_PARAMETER);
    assert!(verifier::take()[0].message.contains("sendArgs"));
    // Another socket's datagram (the endpoint of a second connection).
    probe::on_layer_data(Some(record));
    let _ = engine::classify(&Connection { local_port: 50_000, ..udp(53) });
    probe::on_layer_data(None);
    let other = SEEN.lock().unwrap().last().unwrap().2;
    assert_ne!(other, endpoint);
    assert_eq!(send(handle, other, Some(&remote), list), STATUS_INVALID_PARAMETER);
    assert!(verifier::take()[0].message.contains("source port"));
    assert_eq!(send(handle, endpoint, Some(&remote), list), STATUS_SUCCESS);
    // The datagram may travel after the send returned, before its
    // completion (I2, I7).
    packets::deliver_injection_completions();
    assert_eq!(packets::take_sent().len(), 1);
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}

/// The datagram's control data as classify saw it: (the metadata's
/// `controlData`, the hook's pool copy, length).
static CONTROL: Mutex<Option<(usize, usize, u32)>> = Mutex::new(None);

fn copy_datagram_and_control(layer_data: *mut c_void, metadata: &FWPS_INCOMING_METADATA_VALUES0) {
    copy_datagram(layer_data, metadata);
    assert_ne!(metadata.currentMetadataValues & fwp::FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA, 0);
    let length = metadata.controlDataLength;
    let memory = pool::ExAllocatePool2(POOL_FLAG_NON_PAGED, length as usize, TAG).cast::<u8>();
    // SAFETY: the metadata's `length` bytes, valid during classify; `memory` holds as many.
    unsafe { std::ptr::copy_nonoverlapping(metadata.controlData.cast::<u8>(), memory, length as usize) };
    *CONTROL.lock().unwrap() = Some((metadata.controlData as usize, memory as usize, length));
}

fn send_with_control(handle: *mut c_void, endpoint: u64, list: usize, control: Option<(usize, u32)>) -> NTSTATUS {
    let remote = [192u8, 0, 2, 10];
    let (control_data, control_data_length) =
        control.map_or((std::ptr::null(), 0), |(at, len)| (at as *const c_void, len));
    let args = TransportSendParams1 {
        remote_address: remote.as_ptr(),
        remote_scope_id: 0,
        control_data,
        control_data_length,
        header_include_header: std::ptr::null(),
        header_include_header_length: 0,
    };
    // SAFETY: valid arguments; the completion frees the copy once.
    unsafe {
        packets::FwpsInjectTransportSendAsync1(
            handle,
            std::ptr::null_mut(),
            endpoint,
            0,
            &args,
            2,
            1,
            list as *mut c_void,
            Some(free_copy),
            std::ptr::null_mut(),
        )
    }
}

/// D4: the socket control data the datagram carried at classify
/// (FWPS_METADATA_FIELD_TRANSPORT_CONTROL_DATA) must go with the send, in
/// the callout's own copy: none, or classify's buffer (valid only during
/// classifyFn), is reported; the copy arrives with the datagram.
#[test]
fn send_injection_carries_the_datagrams_control_data() {
    let (kernel, probe) = setup(105);
    *LIST_POOL.lock().unwrap() = list_pool() as usize;
    let handle = probe::transport_injection_handle(0);
    // IP_PKTINFO-like ancillary data: a WSACMSGHDR and its payload.
    let ancillary: Vec<u8> = (1..=28).collect();
    packets::set_control_data(&udp(53), &ancillary);
    probe::answer(fwp::FWP_ACTION_PERMIT);
    for round in ["none", "classify's buffer", "a copy"] {
        probe::on_layer_data(Some(copy_datagram_and_control));
        let _ = engine::classify(&udp(53));
        probe::on_layer_data(None);
        let (list, _, _) = COPY.lock().unwrap().unwrap();
        let endpoint = *ENDPOINT.lock().unwrap();
        let (engine_buffer, copy, length) = CONTROL.lock().unwrap().take().unwrap();
        assert_eq!(length, 28);
        let control = match round {
            "none" => None,
            "classify's buffer" => Some((engine_buffer, length)),
            _ => Some((copy, length)),
        };
        // The send goes through either way (Windows sends it without).
        assert_eq!(send_with_control(handle, endpoint, list, control), STATUS_SUCCESS, "{round}");
        // The control data must stay valid until the completion, which may
        // run after the send returned (I2), as may the send itself (I7).
        packets::deliver_injection_completions();
        let violations = verifier::take();
        let sent = packets::take_sent_control_data();
        match round {
            "none" => assert!(violations[0].message.contains("passes none in sendArgs.controlData"), "{violations:?}"),
            "classify's buffer" => {
                assert!(violations[0].message.contains("valid only during classifyFn"), "{violations:?}");
            }
            _ => {
                assert!(violations.is_empty(), "{violations:?}");
                assert_eq!(sent, std::slice::from_ref(&ancillary), "the control data arrived with the datagram");
            }
        }
        // SAFETY: the block the hook allocated with TAG.
        unsafe { pool::ExFreePoolWithTag(copy as *mut c_void, TAG) };
    }
    packets::set_control_data(&udp(53), &[]);
    assert_eq!(packets::FwpsInjectionHandleDestroy0(handle), STATUS_SUCCESS);
    packets::NdisFreeNetBufferListPool(*LIST_POOL.lock().unwrap() as *mut c_void);
    assert_eq!(probe.unregister(), STATUS_SUCCESS);
    kernel.assert_unloaded_clean();
}
