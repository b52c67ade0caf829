//! The packet injection entry points (`FwpsInjectTransportReceiveAsync0`,
//! `FwpsInjectTransportSendAsync1`). An injected packet is classified
//! again, so these sit above classification; the packet rules and
//! bookkeeping are in `state/packets.rs`, which gets the classification
//! as a parameter. Public as `engine::packets::*`.

use crate::engine::classification::client::classify_with_packet;
use crate::engine::state::packets::{self, InjectComplete, TransportSendParams1};
use crate::engine::state::pending;
use fwps_types::*;
use std::ffi::c_void;

/// `FwpsInjectTransportReceiveAsync0`: the engine classifies the injected
/// packet (a clone, or a list over the callout's copy, which the stack
/// parses to find its connection) at ALE_AUTH_RECV_ACCEPT again, then calls
/// the completion function, inside this call or later
/// (`packets::InjectionCompletion`); a later completion may have the
/// classification come later too, just before it
/// (`packets::InjectionDelivery`). The pending table tells whether the
/// packet's connection still waits for `FwpsCompleteOperation0`.
///
/// # Safety
/// `completion` must be safe to call with `completion_context` and the list.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "system" fn FwpsInjectTransportReceiveAsync0(
    handle: *mut c_void,
    injection_context: *mut c_void,
    reserved: *mut c_void,
    flags: u32,
    family: u16,
    compartment: u32,
    interface_index: u32,
    sub_interface_index: u32,
    net_buffer_list: *mut c_void,
    completion: InjectComplete,
    completion_context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the same contract as this function's, passed on unchanged.
    unsafe {
        packets::inject_transport_receive(
            classify_with_packet,
            pending::has_pended,
            handle,
            injection_context,
            reserved,
            flags,
            family,
            compartment,
            interface_index,
            sub_interface_index,
            net_buffer_list,
            completion,
            completion_context,
        )
    }
}

/// `FwpsInjectTransportSendAsync1`: sends a datagram of the socket
/// `endpoint_handle` (the list starts at its transport header; `send_args`
/// names the remote address). A connection already authorized sends it at
/// once; otherwise the engine classifies it at ALE_AUTH_CONNECT first (the
/// injector must recognise its own packet there). Then the completion runs,
/// inside this call or later (`packets::InjectionCompletion`), and a later
/// completion may have the datagram travel later too, just before it
/// (`packets::InjectionDelivery`).
///
/// # Safety
/// `send_args` must be NULL or readable (with its remote address);
/// `completion` must be safe to call with `completion_context` and the list.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "system" fn FwpsInjectTransportSendAsync1(
    handle: *mut c_void,
    injection_context: *mut c_void,
    endpoint_handle: u64,
    flags: u32,
    send_args: *const TransportSendParams1,
    family: u16,
    compartment: u32,
    net_buffer_list: *mut c_void,
    completion: InjectComplete,
    completion_context: *mut c_void,
) -> NTSTATUS {
    // SAFETY: the same contract as this function's, passed on unchanged.
    unsafe {
        packets::inject_transport_send(
            classify_with_packet,
            handle,
            injection_context,
            endpoint_handle,
            flags,
            send_args,
            family,
            compartment,
            net_buffer_list,
            completion,
            completion_context,
        )
    }
}
