//! The [`Backend`] on Windows: the filter engine through fwpuclnt.dll, the
//! driver's control device through `DeviceIoControl`, and the service
//! manager, all with windows-sys.
//!
//! The only module of wfpctl with `unsafe`: every block makes one call or
//! one read and says why it is sound.
#![allow(unsafe_code)]

mod device;
mod engine;
mod footprint;
mod service;
mod uninstall;
mod wide;

use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
    FWPM_CONDITION_IP_LOCAL_ADDRESS, FWPM_CONDITION_IP_LOCAL_PORT, FWPM_CONDITION_IP_PROTOCOL,
    FWPM_CONDITION_IP_REMOTE_ADDRESS, FWPM_CONDITION_IP_REMOTE_PORT, FWPM_LAYER_ALE_AUTH_CONNECT_V4,
    FWPM_LAYER_ALE_AUTH_CONNECT_V6, FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6,
    FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4, FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6,
};

use self::device::Device;
use self::engine::Engine;
use self::wide::same;
use crate::backend::{Backend, BackendError, EngineFilter, ServiceState};
use crate::filter_spec::FilterSpec;
use crate::footprint::EngineObjects;
use crate::keys::{condition, layer};
use crate::uninstall::Removal;

// The portable keys are Microsoft's: checked here, where windows-sys is.
const _: () = assert!(same(FWPM_LAYER_ALE_AUTH_CONNECT_V4, layer::ALE_AUTH_CONNECT_V4));
const _: () = assert!(same(FWPM_LAYER_ALE_AUTH_CONNECT_V6, layer::ALE_AUTH_CONNECT_V6));
const _: () = assert!(same(FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4, layer::ALE_AUTH_RECV_ACCEPT_V4));
const _: () = assert!(same(FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6, layer::ALE_AUTH_RECV_ACCEPT_V6));
const _: () = assert!(same(FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4, layer::ALE_FLOW_ESTABLISHED_V4));
const _: () = assert!(same(FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6, layer::ALE_FLOW_ESTABLISHED_V6));
const _: () = assert!(same(FWPM_CONDITION_IP_LOCAL_ADDRESS, condition::IP_LOCAL_ADDRESS));
const _: () = assert!(same(FWPM_CONDITION_IP_LOCAL_PORT, condition::IP_LOCAL_PORT));
const _: () = assert!(same(FWPM_CONDITION_IP_PROTOCOL, condition::IP_PROTOCOL));
const _: () = assert!(same(FWPM_CONDITION_IP_REMOTE_ADDRESS, condition::IP_REMOTE_ADDRESS));
const _: () = assert!(same(FWPM_CONDITION_IP_REMOTE_PORT, condition::IP_REMOTE_PORT));

/// The system, opened as needed: one engine session and one control-device
/// handle for the life of the process (the driver tells agents apart by
/// handle, so the agent must keep its handle).
#[derive(Default)]
pub struct WindowsBackend {
    engine: Option<Engine>,
    device: Option<Device>,
}

impl WindowsBackend {
    /// Nothing opened yet.
    pub fn new() -> WindowsBackend {
        WindowsBackend::default()
    }

    fn engine(&mut self) -> Result<&Engine, BackendError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::open()?);
        }
        self.engine.as_ref().ok_or_else(|| BackendError::message("FwpmEngineOpen0", "no session"))
    }

    fn device(&mut self) -> Result<&Device, BackendError> {
        if self.device.is_none() {
            self.device = Some(Device::open()?);
        }
        self.device.as_ref().ok_or_else(|| BackendError::message("open the control device", "no handle"))
    }
}

impl Backend for WindowsBackend {
    fn open_engine(&mut self) -> Result<(), BackendError> {
        self.engine().map(|_| ())
    }

    fn add_filter(&mut self, spec: &FilterSpec, policy_blob: &[u8]) -> Result<u64, BackendError> {
        self.engine()?.add_filter(spec, policy_blob)
    }

    fn delete_filter(&mut self, filter_id: u64) -> Result<(), BackendError> {
        self.engine()?.delete_filter(filter_id)
    }

    fn list_our_filters(&mut self) -> Result<Vec<EngineFilter>, BackendError> {
        self.engine()?.list_our_filters()
    }

    fn ioctl(&mut self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError> {
        self.device()?.ioctl(code, input, output_len)
    }

    fn service_state(&mut self, service: &str) -> Result<ServiceState, BackendError> {
        service::service_state(service)
    }

    fn engine_objects(&mut self) -> Result<EngineObjects, BackendError> {
        self.engine()?.engine_objects()
    }

    fn delete_our_objects(&mut self) -> Result<Removal, BackendError> {
        self.engine()?.delete_our_objects()
    }
}
