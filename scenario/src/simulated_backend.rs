//! A [`Backend`] over the simulated kernel, in this process: the real
//! driver code (notifyFn, classifyFn, the control IOCTLs) loaded into the
//! simulated filter engine. It stands where the Windows backend calls
//! `FwpmFilterAdd0` and `DeviceIoControl`: the same [`FilterSpec`] and
//! policy blob go to the simulated engine, the same IOCTL buffers to the
//! driver's control dispatch.
//!
//! `wfpctl-sim` (the try-out) drives it, and so do wfpctl's tests that
//! keep wfpctl and the driver in step.
//!
//! `uninstall` deletes the provider, sublayer and callouts through the
//! simulated engine's management functions (`Fwpm*DeleteByKey0`) on a
//! session of its own, as the Windows backend does: the only `unsafe`
//! here, at that FFI boundary.
#![deny(unsafe_code)]

use fwps_types::{
    FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS, FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT, FWPS_FIELD_ALE_AUTH_IP_PROTOCOL,
    FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS, FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT, GUID, NTSTATUS, RPC_C_AUTHN_WINNT,
    STATUS_FWP_CALLOUT_NOT_FOUND, STATUS_FWP_IN_USE, STATUS_FWP_PROVIDER_NOT_FOUND, STATUS_FWP_SUBLAYER_NOT_FOUND,
    STATUS_SUCCESS, fwp,
};
use wfpcallout_simkernel::engine;
use wfpcallout_simkernel::inspect;
use wfpcallout_wire::IOCTL_WFPCALLOUT_AGENT_GET_REQUEST;
use wfpctl::backend::{Backend, BackendError, EngineFilter, ServiceState};
use wfpctl::filter_spec::{
    CalloutAction, CalloutTarget, Condition, ConditionField, ConditionValue, FilterSpec, Weight,
};
use wfpctl::footprint::{CalloutFilter, CalloutObject, EngineObjects, ManagementObject, ProviderContextObject};
use wfpctl::keys::{self, Guid};
use wfpctl::uninstall::{Fate, Removal};

use crate::Harness;

/// The token the simulated control device knows wfpctl's handle by (it
/// stands for the file object of `\\.\WfpCallout`).
pub const HANDLE_TOKEN: u64 = 0x00F1_1E00;

/// A Windows GUID for a portable key.
pub fn windows_guid(key: Guid) -> GUID {
    GUID::from_u128(key.to_u128())
}

/// A portable key for a Windows GUID.
pub fn portable_key(guid: &GUID) -> Guid {
    Guid::from_fields(guid.data1, guid.data2, guid.data3, guid.data4)
}

fn status_error(operation: &str, status: NTSTATUS) -> BackendError {
    // An NTSTATUS is printed as its 32 bits.
    BackendError::code(operation, u32::from_ne_bytes(status.to_ne_bytes()))
}

/// The simulated engine compares each condition field with one value
/// (`FWP_MATCH_EQUAL` on a number): the run-time field index and the value.
fn simulated_condition(condition: &Condition) -> Result<(usize, u32), BackendError> {
    let field = match condition.field {
        ConditionField::Protocol => FWPS_FIELD_ALE_AUTH_IP_PROTOCOL,
        ConditionField::RemoteAddress => FWPS_FIELD_ALE_AUTH_IP_REMOTE_ADDRESS,
        ConditionField::RemotePort => FWPS_FIELD_ALE_AUTH_IP_REMOTE_PORT,
        ConditionField::LocalAddress => FWPS_FIELD_ALE_AUTH_IP_LOCAL_ADDRESS,
        ConditionField::LocalPort => FWPS_FIELD_ALE_AUTH_IP_LOCAL_PORT,
    };
    let value = match condition.value {
        ConditionValue::Uint8(value) => u32::from(value),
        ConditionValue::Uint16(value) => u32::from(value),
        ConditionValue::V4Address(value) => value,
        ConditionValue::Uint16Range(..)
        | ConditionValue::V4Subnet { .. }
        | ConditionValue::V6Address(_)
        | ConditionValue::V6Subnet { .. } => {
            return Err(BackendError::message(
                "FwpmFilterAdd0",
                format!(
                    "{condition}: the simulated engine matches single ports, protocols and IPv4 addresses only \
                     (ranges, subnets and IPv6 addresses are for the Windows backend)"
                ),
            ));
        }
    };
    Ok((field, value))
}

/// A management session of wfpctl's own with the simulated engine (the
/// driver has its own): opened on creation, closed on drop.
///
/// # Invariants
/// `handle` is a session `FwpmEngineOpen0` opened, closed once, on drop.
struct ManagementSession {
    handle: *mut core::ffi::c_void,
}

#[allow(unsafe_code)]
impl ManagementSession {
    fn open() -> Result<ManagementSession, BackendError> {
        let mut handle = core::ptr::null_mut();
        // SAFETY: `handle` is writable for the call; NULL server, identity
        // and session are allowed.
        let status = unsafe {
            engine::FwpmEngineOpen0(
                core::ptr::null(),
                RPC_C_AUTHN_WINNT,
                core::ptr::null(),
                core::ptr::null(),
                &mut handle,
            )
        };
        if status != STATUS_SUCCESS {
            return Err(status_error("FwpmEngineOpen0", status));
        }
        Ok(ManagementSession { handle })
    }

    fn call(&self, operation: &str, status: NTSTATUS) -> Result<(), BackendError> {
        if status == STATUS_SUCCESS { Ok(()) } else { Err(status_error(operation, status)) }
    }

    fn begin(&self) -> Result<(), BackendError> {
        self.call("FwpmTransactionBegin0", engine::FwpmTransactionBegin0(self.handle, 0))
    }

    fn commit(&self) -> Result<(), BackendError> {
        self.call("FwpmTransactionCommit0", engine::FwpmTransactionCommit0(self.handle))
    }

    fn abort(&self) {
        let _ = engine::FwpmTransactionAbort0(self.handle);
    }

    /// `Fwpm*DeleteByKey0` as wfpctl's Windows backend reads its status.
    fn delete(&self, what: Deletable, key: Guid) -> Result<Fate, BackendError> {
        let key = windows_guid(key);
        let (operation, not_found, status) = match what {
            // SAFETY: the session is open (invariant); `key` is valid for the call.
            Deletable::Callout => ("FwpmCalloutDeleteByKey0", STATUS_FWP_CALLOUT_NOT_FOUND, unsafe {
                engine::FwpmCalloutDeleteByKey0(self.handle, &key)
            }),
            // SAFETY: as above.
            Deletable::SubLayer => ("FwpmSubLayerDeleteByKey0", STATUS_FWP_SUBLAYER_NOT_FOUND, unsafe {
                engine::FwpmSubLayerDeleteByKey0(self.handle, &key)
            }),
            // SAFETY: as above.
            Deletable::Provider => ("FwpmProviderDeleteByKey0", STATUS_FWP_PROVIDER_NOT_FOUND, unsafe {
                engine::FwpmProviderDeleteByKey0(self.handle, &key)
            }),
        };
        match status {
            STATUS_SUCCESS => Ok(Fate::Deleted),
            status if status == not_found => Ok(Fate::Absent),
            STATUS_FWP_IN_USE => Ok(Fate::Kept(status_error(operation, status).to_string())),
            status => Err(status_error(operation, status)),
        }
    }
}

impl Drop for ManagementSession {
    fn drop(&mut self) {
        let _ = engine::FwpmEngineClose0(self.handle);
    }
}

/// What [`ManagementSession::delete`] deletes.
#[derive(Clone, Copy)]
enum Deletable {
    Callout,
    SubLayer,
    Provider,
}

/// The simulated system: a booted simulated kernel with the driver loaded,
/// the filters wfpctl added to its engine, and wfpctl's control-device
/// handle.
pub struct SimulatedBackend {
    harness: Harness,
    filters: Vec<EngineFilter>,
    /// Whether the driver is loaded: its control device exists.
    driver_loaded: bool,
}

impl SimulatedBackend {
    /// Boots the simulated kernel and loads the driver (its DriverEntry:
    /// callouts registered, provider, sublayer and callouts added).
    pub fn load() -> Result<SimulatedBackend, BackendError> {
        let mut harness = Harness::boot();
        harness.initialize().map_err(|status| status_error("DriverEntry", status.raw()))?;
        Ok(SimulatedBackend { harness, filters: Vec::new(), driver_loaded: true })
    }

    /// A booted simulated kernel whose driver is not loaded (not started):
    /// no provider, sublayer or callouts, no control device.
    pub fn booted() -> SimulatedBackend {
        SimulatedBackend { harness: Harness::boot(), filters: Vec::new(), driver_loaded: false }
    }

    /// The harness, to run traffic and look at the driver.
    pub fn harness(&self) -> &Harness {
        &self.harness
    }

    /// Stops the driver as `sc.exe stop` would: wfpctl's handle closed,
    /// the driver unloaded; the engine keeps everything else (the filters
    /// wfpctl added, and the persistent objects they name), as BFE does.
    pub fn stop_driver(&mut self) {
        wfpcallout::control::ioctls::file_cleanup(HANDLE_TOKEN);
        self.harness.unload();
        self.driver_loaded = false;
    }

    /// Closes wfpctl's handle (the driver's file cleanup completes what
    /// the agent left with the default verdict), unloads the driver and
    /// reports what the simulated kernel's verifier saw: `Ok` with the
    /// number of pool allocations when everything was freed and no rule
    /// was broken, the problems otherwise.
    pub fn unload(mut self) -> Result<u64, Vec<String>> {
        wfpcallout::control::ioctls::file_cleanup(HANDLE_TOKEN);
        for filter in std::mem::take(&mut self.filters) {
            // Filters outlive a driver on Windows; here the engine goes away
            // with the session, so delete them while the driver is loaded.
            let _ = engine::delete_filter(filter.id);
        }
        if self.driver_loaded {
            self.harness.unload();
        }
        let mut problems: Vec<String> = wfpcallout_simkernel::verifier::violations()
            .iter()
            .map(|violation| format!("verifier: {violation}"))
            .collect();
        let live = wfpcallout_simkernel::pool::live_blocks();
        if live != 0 {
            problems.push(format!("{live} pool blocks still allocated after unload"));
        }
        let (allocations, _) = wfpcallout_simkernel::pool::totals();
        if problems.is_empty() { Ok(allocations) } else { Err(problems) }
    }
}

impl Backend for SimulatedBackend {
    fn open_engine(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    fn add_filter(&mut self, spec: &FilterSpec, policy_blob: &[u8]) -> Result<u64, BackendError> {
        let conditions = spec.conditions.iter().map(simulated_condition).collect::<Result<Vec<_>, _>>()?;
        let callout = windows_guid(spec.callout_key());
        let mut filter =
            engine::FilterSpec::callout(windows_guid(spec.layer_key()), windows_guid(keys::SUBLAYER_KEY), callout);
        filter.provider_context = Some(engine::add_provider_context(policy_blob));
        // As the Windows backend builds it: the action and flags the
        // portable spec chooses for the layer.
        filter.action = match spec.target.action() {
            CalloutAction::Terminating => engine::FilterAction::CalloutTerminating(callout),
            CalloutAction::Inspection => engine::FilterAction::CalloutInspection(callout),
        };
        filter.flags = if spec.target.action().permits_if_unregistered() {
            fwp::FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED
        } else {
            0
        };
        filter.weight = match spec.weight {
            Weight::Exact(weight) => weight,
            Weight::Auto | Weight::Range(_) => 0,
        };
        filter.conditions = conditions;
        let id = engine::add_filter(&filter).map_err(|status| status_error("FwpmFilterAdd0", status))?;
        self.filters.push(EngineFilter {
            id,
            name: spec.name.clone(),
            target: Some(spec.target),
            conditions: spec.conditions.clone(),
            other_conditions: 0,
            effective_weight: None,
        });
        Ok(id)
    }

    fn delete_filter(&mut self, filter_id: u64) -> Result<(), BackendError> {
        // As the Windows backend does: the filter, then its provider context.
        let context =
            inspect::filters().into_iter().find(|view| view.id == filter_id).and_then(|v| v.provider_context_key);
        engine::delete_filter(filter_id).map_err(|status| status_error("FwpmFilterDeleteById0", status))?;
        if let Some(key) = context {
            inspect::delete_provider_context(&GUID::from_u128(key));
        }
        self.filters.retain(|filter| filter.id != filter_id);
        Ok(())
    }

    fn list_our_filters(&mut self) -> Result<Vec<EngineFilter>, BackendError> {
        let mut filters = self.filters.clone();
        filters.sort_by_key(|filter| filter.id);
        Ok(filters)
    }

    fn ioctl(&mut self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError> {
        if !self.driver_loaded {
            // ERROR_FILE_NOT_FOUND, as opening `\\.\WfpCallout` fails
            // without the driver.
            return Err(BackendError::code(r"open \\.\WfpCallout", 2));
        }
        let mut output = vec![0u8; output_len];
        let written = if code == IOCTL_WFPCALLOUT_AGENT_GET_REQUEST {
            wfpcallout::control::ioctls::agent_get_request(HANDLE_TOKEN, input, &mut output)
                .map_err(|status| status_error("DeviceIoControl", status.raw()))?
                // The real driver parks the IOCTL until a connection is
                // pended; in the simulation nothing else runs meanwhile.
                .ok_or_else(|| BackendError::message("DeviceIoControl", "no ask request is waiting"))?
        } else {
            wfpcallout::control::ioctls::dispatch_ioctl(code, input, &mut output)
                .map_err(|status| status_error("DeviceIoControl", status.raw()))?
        };
        output.truncate(written);
        Ok(output)
    }

    fn service_state(&mut self, _service: &str) -> Result<ServiceState, BackendError> {
        // BFE and the driver run for as long as the simulation does.
        Ok(ServiceState::Running)
    }

    /// From the simulated engine's own records. It keeps no provider per
    /// provider context (clients add them without one): every context
    /// counts as ours, as every context a wfpctl session adds is.
    fn engine_objects(&mut self) -> Result<EngineObjects, BackendError> {
        // The simulated engine keeps no display names: these are the ones
        // the driver gives its provider and sublayer (driver/wfp/management.rs).
        let present = |key, weight| ManagementObject {
            name: "wfpcallout".to_string(),
            persistent: inspect::is_persistent(&windows_guid(key)),
            weight,
        };
        let provider =
            inspect::has_provider(&windows_guid(keys::PROVIDER_KEY)).then(|| present(keys::PROVIDER_KEY, None));
        let sublayer = inspect::sublayer_weight(&windows_guid(keys::SUBLAYER_KEY))
            .map(|weight| present(keys::SUBLAYER_KEY, Some(weight)));
        let callouts = CalloutTarget::ALL
            .iter()
            .map(|target| {
                let key = windows_guid(target.callout_key());
                let object = engine::has_managed_callout(&key).then(|| CalloutObject {
                    id: engine::callout_id(&key).unwrap_or(0),
                    registered: engine::is_registered(&key),
                    persistent: engine::managed_callout_flags(&key)
                        .is_some_and(|flags| flags & fwp::FWPM_CALLOUT_FLAG_PERSISTENT != 0),
                });
                (*target, object)
            })
            .collect();
        let filters = inspect::filters()
            .into_iter()
            .filter_map(|view| {
                let target = CalloutTarget::ALL
                    .into_iter()
                    .find(|target| Some(target.callout_key().to_u128()) == view.callout_key)?;
                let known = self.filters.iter().find(|filter| filter.id == view.id);
                Some(CalloutFilter {
                    id: view.id,
                    name: known.map_or_else(String::new, |filter| filter.name.clone()),
                    target,
                    // wfpctl's filters are the ones this backend added.
                    ours: known.is_some(),
                    weight: Some(view.weight),
                    action_type: view.action_type,
                    persistent: view.flags & fwp::FWPM_FILTER_FLAG_PERSISTENT != 0,
                    conditions: known.map_or_else(Vec::new, |filter| filter.conditions.clone()),
                    provider_context: view.provider_context_key.map(Guid),
                })
            })
            .collect();
        let provider_contexts = inspect::provider_contexts()
            .into_iter()
            .map(|context| ProviderContextObject {
                key: Guid(context.key),
                id: context.id,
                data: Some(context.data),
                persistent: inspect::is_persistent(&GUID::from_u128(context.key)),
            })
            .collect();
        Ok(EngineObjects { provider, sublayer, callouts, filters, provider_contexts })
    }

    /// As the Windows backend, with one difference the model imposes: the
    /// filters go through the engine's client deletion (the DELETE reaches
    /// the driver if it is registered) before the management transaction
    /// that deletes the objects, as the simulated engine does not delete
    /// filters inside a transaction. Every provider context no remaining
    /// filter uses counts as ours (see [`Backend::engine_objects`] here).
    fn delete_our_objects(&mut self) -> Result<Removal, BackendError> {
        let session = ManagementSession::open()?;
        let registered = CalloutTarget::ALL.iter().any(|target| {
            let key = windows_guid(target.callout_key());
            engine::has_managed_callout(&key) && engine::is_registered(&key)
        });
        let mut filters = Vec::new();
        for view in inspect::filters() {
            let Some(target) =
                CalloutTarget::ALL.into_iter().find(|target| Some(target.callout_key().to_u128()) == view.callout_key)
            else {
                continue;
            };
            engine::delete_filter(view.id).map_err(|status| status_error("FwpmFilterDeleteById0", status))?;
            self.filters.retain(|filter| filter.id != view.id);
            filters.push((view.id, target));
        }
        let used: Vec<u128> = inspect::filters().iter().filter_map(|view| view.provider_context_key).collect();
        let mut provider_contexts = 0;
        for context in inspect::provider_contexts() {
            if !used.contains(&context.key) && inspect::delete_provider_context(&GUID::from_u128(context.key)) {
                provider_contexts += 1;
            }
        }
        session.begin()?;
        let objects = (|| {
            let callouts = CalloutTarget::ALL
                .iter()
                .map(|target| Ok((*target, session.delete(Deletable::Callout, target.callout_key())?)))
                .collect::<Result<Vec<_>, BackendError>>()?;
            let sublayer = session.delete(Deletable::SubLayer, keys::SUBLAYER_KEY)?;
            let provider = session.delete(Deletable::Provider, keys::PROVIDER_KEY)?;
            Ok((callouts, sublayer, provider))
        })();
        let (callouts, sublayer, provider) = match objects {
            Ok(objects) => objects,
            Err(error) => {
                // The model undoes additions only: what was deleted stays
                // deleted here (on Windows the abort restores it).
                session.abort();
                return Err(error);
            }
        };
        session.commit()?;
        Ok(Removal { filters, provider_contexts, callouts, sublayer, provider, registered })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use wfpcallout::callbacks::state::STATE;
    use wfpcallout_simkernel::debug_print;
    use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};
    use wfpctl::filter_spec::{FilterOptions, IpVersion, Layer};
    use wfpctl::run::{Io, Outcome, RunError, run_as};
    use wfpctl::vocabulary::PortRange;

    fn spec(port: u16) -> FilterSpec {
        FilterSpec::build(&FilterOptions {
            layer: Layer::Connect,
            ip: IpVersion::V4,
            remote_address: None,
            remote_port: Some(PortRange::single(port)),
            local_address: None,
            local_port: None,
            protocol: None,
            weight: Weight::Auto,
            policy: wfpcallout_wire::PolicyRepr::DEFAULT,
        })
        .unwrap()
    }

    #[test]
    fn a_deleted_filter_takes_its_provider_context_along() {
        let mut backend = SimulatedBackend::load().unwrap();
        let blob = wfpcallout_wire::PolicyRepr::DEFAULT.to_bytes();
        let kept = backend.add_filter(&spec(443), &blob).unwrap();
        let deleted = backend.add_filter(&spec(80), &blob).unwrap();
        assert_eq!(inspect::provider_contexts().len(), 2);
        backend.delete_filter(deleted).unwrap();
        let left: Vec<u128> = inspect::provider_contexts().iter().map(|context| context.key).collect();
        let kept_context = inspect::filters().iter().find(|view| view.id == kept).unwrap().provider_context_key;
        assert_eq!(left, [kept_context.unwrap()], "only the deleted filter's context is gone");
        assert_eq!(backend.list_our_filters().unwrap().iter().map(|f| f.id).collect::<Vec<_>>(), [kept]);
        let allocations = wfpcallout_simkernel::pool::totals().0;
        assert!(allocations > 2, "{allocations}");
        assert_eq!(backend.unload(), Ok(allocations), "unload frees everything and counts every allocation");
    }

    #[test]
    fn ranges_are_refused_with_a_reason() {
        let mut backend = SimulatedBackend::load().unwrap();
        let mut ranged = spec(1);
        ranged.conditions[0].value = ConditionValue::Uint16Range(5000, 5100);
        let error = backend.add_filter(&ranged, &wfpcallout_wire::PolicyRepr::DEFAULT.to_bytes()).unwrap_err();
        assert!(error.to_string().contains("remote-port=5000-5100: the simulated engine matches single ports"));
        assert!(inspect::filters().is_empty());
        assert!(backend.unload().is_ok());
    }

    /// Runs a wfpctl command line; returns its result, standard output and
    /// standard error.
    fn wfpctl(backend: &mut SimulatedBackend, line: &str) -> (Result<Outcome, RunError>, String, String) {
        let invocation = wfpctl::cli::parse_from(std::iter::once("wfpctl").chain(line.split_whitespace())).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = Cursor::new(Vec::new());
        let result = run_as(
            &invocation.command,
            invocation.format,
            backend,
            &mut Io { out: &mut out, err: &mut err, input: &mut input },
        );
        (result, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    /// A persistent block filter naming our connect callout, added by
    /// another management client (not through wfpctl), with a persistent
    /// policy: it outlives a reboot, and the uninstall still removes it.
    fn add_foreign_persistent_filter() -> u64 {
        let policy = PolicyRepr { action: PolicyAction::Block, log_level: LogLevel::Off, label: Label::EMPTY };
        let mut filter = crate::Harness::filter_spec(crate::Layer::ConnectV4);
        filter.flags |= fwp::FWPM_FILTER_FLAG_PERSISTENT;
        filter.provider_context = Some(engine::add_persistent_provider_context(&policy.to_bytes()));
        engine::add_filter(&filter).unwrap()
    }

    fn callout_keys() -> Vec<GUID> {
        CalloutTarget::ALL.iter().map(|target| windows_guid(target.callout_key())).collect()
    }

    /// What of ours is in the engine: filters naming one of our callouts,
    /// provider contexts, callouts, the sublayer, the provider.
    fn what_is_left() -> Vec<String> {
        let ours: Vec<u128> = CalloutTarget::ALL.iter().map(|target| target.callout_key().to_u128()).collect();
        let mut left: Vec<String> = inspect::filters()
            .iter()
            .filter(|view| view.callout_key.is_some_and(|key| ours.contains(&key)))
            .map(|view| format!("filter {}", view.id))
            .collect();
        left.extend(inspect::provider_contexts().iter().map(|context| format!("provider context {:x}", context.key)));
        for (target, key) in CalloutTarget::ALL.iter().zip(callout_keys()) {
            if engine::has_managed_callout(&key) {
                left.push(format!("callout {target}"));
            }
        }
        if engine::has_sublayer(&windows_guid(keys::SUBLAYER_KEY)) {
            left.push("sublayer".to_string());
        }
        if inspect::has_provider(&windows_guid(keys::PROVIDER_KEY)) {
            left.push("provider".to_string());
        }
        left
    }

    /// The driver stopped (never to start again): the persistent objects
    /// stay in the engine, as do the filters naming them; `uninstall`
    /// removes all of it, for good (a reboot brings nothing back), and a
    /// second run finds nothing.
    #[test]
    fn uninstall_after_the_driver_stopped_leaves_nothing_of_ours() {
        let mut backend = SimulatedBackend::load().unwrap();
        let (added, web, _) =
            wfpctl(&mut backend, "filter add --layer connect --ip v4 --remote-port 443 --action audit");
        assert_eq!(added.unwrap(), Outcome::Success);
        let (added, _, _) =
            wfpctl(&mut backend, "filter add --layer recv-accept --ip v4 --local-port 80 --action block");
        assert_eq!(added.unwrap(), Outcome::Success);
        let foreign = add_foreign_persistent_filter();
        backend.stop_driver();
        // The unload kept what filters name (two callouts, the sublayer,
        // the provider) and deleted the callouts no filter uses.
        assert_eq!(
            what_is_left()[6..],
            ["callout connect-v4", "callout recv-accept-v4", "sublayer", "provider"],
            "{:?}",
            what_is_left()
        );
        assert!(callout_keys().iter().all(|key| !engine::is_registered(key)));

        let (result, out, err) = wfpctl(&mut backend, "uninstall");
        assert_eq!(result.unwrap(), Outcome::Success, "{out}{err}");
        assert_eq!(err, "", "the driver is stopped: nothing to say about it");
        assert!(out.starts_with(&format!("deleted filter {} at connect-v4\n", web.trim())), "{out}");
        assert!(out.contains(&format!("deleted filter {foreign} at connect-v4\n")), "{out}");
        assert!(out.contains("deleted 3 provider contexts\n"), "{out}");
        assert!(out.contains("deleted callout recv-accept-v4 {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0012}\n"), "{out}");
        assert!(!out.contains("flow-v6"), "absent objects are not listed: {out}");
        assert!(
            out.ends_with(
                "deleted the provider {5c0f1e7a-2b3d-4e8f-9a61-7d2c4b8e0001}\nwfpcallout is gone from the filter engine\n"
            ),
            "{out}"
        );
        assert_eq!(what_is_left(), Vec::<String>::new());
        // Persistent objects come back after a reboot: none is left to.
        engine::restart_bfe().unwrap();
        assert_eq!(what_is_left(), Vec::<String>::new());

        let (again, out, _) = wfpctl(&mut backend, "uninstall");
        assert_eq!(again.unwrap(), Outcome::Success);
        assert_eq!(out, "nothing of wfpcallout was left in the filter engine\n");
        let (again, out, _) = wfpctl(&mut backend, "uninstall --json");
        assert_eq!(again.unwrap(), Outcome::Success);
        assert!(out.starts_with(r#"{"filters_deleted":[],"provider_contexts_deleted":0,"#), "{out}");
        assert!(out.ends_with("\"complete\":true,\"driver_loaded\":false}\n"), "{out}");
        backend.harness().kernel.assert_unloaded_clean();
    }

    /// With the driver loaded: each filter's DELETE reaches notifyFn, the
    /// objects go (the engine refuses a callout only while filters name
    /// it), the registrations stay the driver's until it stops, and its
    /// unload finds the objects gone without complaint.
    #[test]
    fn uninstall_with_the_driver_loaded_deletes_everything_and_says_to_stop_it() {
        let mut backend = SimulatedBackend::load().unwrap();
        let (added, _, _) = wfpctl(&mut backend, "filter add --layer connect --ip v4 --remote-port 443 --action audit");
        assert_eq!(added.unwrap(), Outcome::Success);
        add_foreign_persistent_filter();
        assert_eq!(STATE.table.len(), 2);

        let (result, out, err) = wfpctl(&mut backend, "uninstall");
        assert_eq!(result.unwrap(), Outcome::DriverLoaded, "{out}{err}");
        assert!(err.contains("the driver is still loaded: its callouts stay registered until it stops"), "{err}");
        assert!(out.ends_with("wfpcallout is gone from the filter engine\n"), "{out}");
        assert_eq!(STATE.table.len(), 0, "each filter's DELETE reached notifyFn, which freed its context");
        assert_eq!(what_is_left(), Vec::<String>::new());
        assert!(callout_keys().iter().all(engine::is_registered), "the registrations are the driver's own");
        let (again, out, _) = wfpctl(&mut backend, "uninstall");
        assert_eq!(again.unwrap(), Outcome::DriverLoaded, "still loaded, though nothing is left");
        assert_eq!(out, "nothing of wfpcallout was left in the filter engine\n");

        assert!(backend.unload().is_ok(), "unload clean");
        assert!(!debug_print::contains("kept the"), "no noise about objects wfpctl deleted");
    }

    /// BFE stopped: no session, nothing deleted, and the error says what
    /// to do.
    #[test]
    fn uninstall_without_bfe_says_to_start_it() {
        let mut backend = SimulatedBackend::load().unwrap();
        let (added, _, _) = wfpctl(&mut backend, "filter add --layer connect --ip v4 --remote-port 443 --action audit");
        assert_eq!(added.unwrap(), Outcome::Success);
        engine::set_bfe_running(false);
        let (result, out, _) = wfpctl(&mut backend, "uninstall");
        let error = result.unwrap_err().to_string();
        assert_eq!(
            error,
            "FwpmEngineOpen0 failed: 0xc0020036 (EPT_NT_NOT_REGISTERED: the base filtering engine (BFE) is not \
             running: start it (sc.exe start BFE))"
        );
        assert_eq!(out, "");
        assert_eq!(inspect::filters().len(), 1, "nothing deleted");
        engine::set_bfe_running(true);
        assert!(backend.unload().is_ok());
    }
}
