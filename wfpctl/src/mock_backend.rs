//! A [`Backend`] for tests: it records every call, keeps a small filter
//! engine (a list) and answers the driver's IOCTLs from a scripted driver
//! state, encoding every reply with the wire crate as the driver does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, VecDeque};

use wfpcallout_wire::{
    AskRequestRepr, FilterStatsEntryRepr, GlobalStatsRepr, IOCTL_WFPCALLOUT_AGENT_GET_REQUEST,
    IOCTL_WFPCALLOUT_AGENT_SET_VERDICT, IOCTL_WFPCALLOUT_GET_STATS, IOCTL_WFPCALLOUT_GET_VERSION,
    IOCTL_WFPCALLOUT_SET_LOG_LEVEL, StatsHeaderRepr, StatsQueryRepr, StatsReply, VERSION_FLAG_ADOPTION_COMPLETE,
    VERSION_FLAG_LOADED, VerdictMessageRepr, VersionInfoRepr, driver_version,
};

use crate::backend::{Backend, BackendError, EngineFilter, ServiceState};
use crate::filter_spec::{CalloutTarget, FilterSpec};
use crate::footprint::{CalloutFilter, CalloutObject, EngineObjects, ManagementObject, ProviderContextObject};
use crate::keys::Guid;
use crate::uninstall::{Fate, Removal};

/// One call the code under test made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    OpenEngine,
    AddFilter { spec: FilterSpec, blob: Vec<u8> },
    DeleteFilter(u64),
    ListOurFilters,
    Ioctl { code: u32, input: Vec<u8>, output_len: usize },
    ServiceState(String),
    EngineObjects,
    DeleteOurObjects,
}

/// The scripted driver behind the control device.
pub struct MockDriver {
    pub version: VersionInfoRepr,
    /// Per-filter entries, in ascending id order.
    pub stats: Vec<FilterStatsEntryRepr>,
    pub global: GlobalStatsRepr,
    /// At most this many entries per GET_STATS reply.
    pub page_size: u32,
    /// What GET_REQUEST hands out, in order (empty: the IOCTL fails, where
    /// the real driver would park it).
    pub requests: VecDeque<AskRequestRepr>,
    /// Verdicts received.
    pub verdicts: Vec<VerdictMessageRepr>,
    /// Request ids whose verdicts are refused (as late ones are).
    pub refuse_verdicts_for: Vec<u64>,
}

impl Default for MockDriver {
    fn default() -> MockDriver {
        MockDriver {
            version: VersionInfoRepr {
                abi_version: wfpcallout_wire::CONTROL_ABI_VERSION,
                driver_version: driver_version(0, 1, 0),
                flags: VERSION_FLAG_LOADED | VERSION_FLAG_ADOPTION_COMPLETE,
            },
            stats: Vec::new(),
            global: GlobalStatsRepr::default(),
            page_size: wfpcallout_wire::STATS_MAX_ENTRIES,
            requests: VecDeque::new(),
            verdicts: Vec::new(),
            refuse_verdicts_for: Vec::new(),
        }
    }
}

pub struct MockBackend {
    pub calls: Vec<Call>,
    pub filters: Vec<EngineFilter>,
    pub next_filter_id: u64,
    /// `None`: the control device cannot be opened (driver not started).
    pub driver: Option<MockDriver>,
    pub services: HashMap<String, ServiceState>,
    /// Filter ids whose deletion fails.
    pub undeletable: Vec<u64>,
    /// The policy blob of each filter's provider context, by filter id
    /// (the context key is the filter id).
    pub blobs: Vec<(u64, Vec<u8>)>,
    /// Whether the driver's provider, sublayer and callouts exist.
    pub objects_present: bool,
    /// The sublayer cannot be deleted (`FWP_E_IN_USE`: a filter at another
    /// layer is in it).
    pub sublayer_in_use: bool,
}

impl Default for MockBackend {
    fn default() -> MockBackend {
        MockBackend {
            calls: Vec::new(),
            filters: Vec::new(),
            next_filter_id: 66_017,
            driver: Some(MockDriver::default()),
            services: HashMap::from([
                ("BFE".to_string(), ServiceState::Running),
                ("WfpCallout".to_string(), ServiceState::Running),
            ]),
            undeletable: Vec::new(),
            blobs: Vec::new(),
            objects_present: true,
            sublayer_in_use: false,
        }
    }
}

impl MockBackend {
    pub fn driver(&mut self) -> &mut MockDriver {
        self.driver.as_mut().expect("the mock has a driver")
    }

    /// The IOCTL calls made, as (code, input).
    pub fn ioctls(&self) -> Vec<(u32, Vec<u8>)> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                Call::Ioctl { code, input, .. } => Some((*code, input.clone())),
                _ => None,
            })
            .collect()
    }

    /// The statistics queries made, decoded.
    pub fn stats_queries(&self) -> Vec<StatsQueryRepr> {
        self.ioctls()
            .into_iter()
            .filter(|(code, _)| *code == IOCTL_WFPCALLOUT_GET_STATS)
            .map(|(_, input)| StatsQueryRepr::parse(&input).unwrap())
            .collect()
    }
}

fn stats_reply(driver: &MockDriver, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError> {
    let query = StatsQueryRepr::parse(input).map_err(|_| BackendError::code("DeviceIoControl", 87))?;
    let after: Vec<&FilterStatsEntryRepr> =
        driver.stats.iter().filter(|entry| entry.filter_id > query.after_filter_id).collect();
    let take = after.len().min(driver.page_size.min(query.max_entries) as usize);
    let header = StatsHeaderRepr {
        global: driver.global,
        total_filters: u32::try_from(driver.stats.len()).unwrap(),
        returned: u32::try_from(take).unwrap(),
        more: after.len() > take,
    };
    let mut buffer = vec![0u8; output_len];
    let len = StatsReply::emit_header(&header, &mut buffer).map_err(|_| BackendError::code("DeviceIoControl", 122))?;
    for (index, entry) in after.iter().take(take).enumerate() {
        StatsReply::emit_entry(u32::try_from(index).unwrap(), entry, &mut buffer).unwrap();
    }
    buffer.truncate(len);
    Ok(buffer)
}

impl Backend for MockBackend {
    fn open_engine(&mut self) -> Result<(), BackendError> {
        self.calls.push(Call::OpenEngine);
        Ok(())
    }

    fn add_filter(&mut self, spec: &FilterSpec, policy_blob: &[u8]) -> Result<u64, BackendError> {
        self.calls.push(Call::AddFilter { spec: spec.clone(), blob: policy_blob.to_vec() });
        if !self.objects_present {
            // FWP_E_PROVIDER_NOT_FOUND: the filter names our provider.
            return Err(BackendError::code("FwpmFilterAdd0", 0x8032_0005));
        }
        let id = self.next_filter_id;
        self.blobs.push((id, policy_blob.to_vec()));
        self.next_filter_id += 1;
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
        self.calls.push(Call::DeleteFilter(filter_id));
        if self.undeletable.contains(&filter_id) {
            return Err(BackendError::code("FwpmFilterDeleteById0", 0x8032_000A));
        }
        let before = self.filters.len();
        self.filters.retain(|filter| filter.id != filter_id);
        self.blobs.retain(|(id, _)| *id != filter_id);
        if self.filters.len() == before {
            return Err(BackendError::code("FwpmFilterGetById0", 0x8032_0003));
        }
        Ok(())
    }

    fn list_our_filters(&mut self) -> Result<Vec<EngineFilter>, BackendError> {
        self.calls.push(Call::ListOurFilters);
        Ok(self.filters.clone())
    }

    fn ioctl(&mut self, code: u32, input: &[u8], output_len: usize) -> Result<Vec<u8>, BackendError> {
        self.calls.push(Call::Ioctl { code, input: input.to_vec(), output_len });
        let Some(driver) = self.driver.as_mut() else {
            return Err(BackendError::code(r"open \\.\WfpCallout", 2));
        };
        match code {
            IOCTL_WFPCALLOUT_GET_VERSION => {
                assert!(input.is_empty());
                Ok(driver.version.to_bytes())
            }
            IOCTL_WFPCALLOUT_GET_STATS => stats_reply(driver, input, output_len),
            IOCTL_WFPCALLOUT_AGENT_GET_REQUEST => match driver.requests.pop_front() {
                Some(request) => Ok(request.to_bytes()),
                None => Err(BackendError::message("DeviceIoControl", "the mock has no more requests")),
            },
            IOCTL_WFPCALLOUT_AGENT_SET_VERDICT => {
                assert_eq!(output_len, 0);
                let verdict = VerdictMessageRepr::parse(input).unwrap();
                if driver.refuse_verdicts_for.contains(&verdict.request_id) {
                    return Err(BackendError::code("DeviceIoControl", 1168));
                }
                driver.verdicts.push(verdict);
                Ok(Vec::new())
            }
            IOCTL_WFPCALLOUT_SET_LOG_LEVEL => Ok(Vec::new()),
            _ => Err(BackendError::code("DeviceIoControl", 1)),
        }
    }

    fn service_state(&mut self, service: &str) -> Result<ServiceState, BackendError> {
        self.calls.push(Call::ServiceState(service.to_string()));
        Ok(self.services.get(service).copied().unwrap_or(ServiceState::NotInstalled))
    }

    /// The driver's objects exist; its callouts are registered while the
    /// scripted driver says it is loaded.
    fn engine_objects(&mut self) -> Result<EngineObjects, BackendError> {
        self.calls.push(Call::EngineObjects);
        let registered = self.driver.as_ref().is_some_and(|driver| driver.version.flags & VERSION_FLAG_LOADED != 0);
        let present = self.objects_present;
        Ok(EngineObjects {
            provider: present.then(|| ManagementObject { name: "wfpcallout".into(), persistent: true, weight: None }),
            sublayer: (present || self.sublayer_in_use).then(|| ManagementObject {
                name: "wfpcallout".into(),
                persistent: true,
                weight: Some(0x7000),
            }),
            callouts: CalloutTarget::ALL
                .iter()
                .zip(301..)
                .map(|(target, id)| (*target, present.then_some(CalloutObject { id, registered, persistent: true })))
                .collect(),
            filters: self
                .filters
                .iter()
                .filter_map(|filter| {
                    Some(CalloutFilter {
                        id: filter.id,
                        name: filter.name.clone(),
                        target: filter.target?,
                        ours: true,
                        weight: filter.effective_weight,
                        action_type: filter.target?.action().action_type(),
                        persistent: false,
                        conditions: filter.conditions.clone(),
                        provider_context: Some(Guid(u128::from(filter.id))),
                    })
                })
                .collect(),
            provider_contexts: self
                .blobs
                .iter()
                .map(|(id, blob)| ProviderContextObject {
                    key: Guid(u128::from(*id)),
                    id: *id,
                    data: Some(blob.clone()),
                    persistent: false,
                })
                .collect(),
        })
    }

    /// As the Windows backend's transaction: a filter that cannot be
    /// deleted fails the whole uninstall, nothing deleted.
    fn delete_our_objects(&mut self) -> Result<Removal, BackendError> {
        self.calls.push(Call::DeleteOurObjects);
        if let Some(id) = self.filters.iter().map(|filter| filter.id).find(|id| self.undeletable.contains(id)) {
            return Err(BackendError::code("FwpmFilterDeleteById0", 0x8032_000A).with_detail(format!("filter {id}")));
        }
        let registered = self.objects_present
            && self.driver.as_ref().is_some_and(|driver| driver.version.flags & VERSION_FLAG_LOADED != 0);
        let filters = std::mem::take(&mut self.filters)
            .into_iter()
            .filter_map(|filter| Some((filter.id, filter.target?)))
            .collect();
        let provider_contexts = std::mem::take(&mut self.blobs).len();
        let fate = |present: bool| if present { Fate::Deleted } else { Fate::Absent };
        let in_use = "FwpmSubLayerDeleteByKey0 failed: 0x8032000a (FWP_E_IN_USE: the object is still referenced by \
                      another object)";
        let removal = Removal {
            filters,
            provider_contexts,
            callouts: CalloutTarget::ALL.iter().map(|target| (*target, fate(self.objects_present))).collect(),
            sublayer: if self.sublayer_in_use { Fate::Kept(in_use.to_string()) } else { fate(self.objects_present) },
            provider: if self.sublayer_in_use {
                Fate::Kept(in_use.replace("SubLayer", "Provider"))
            } else {
                fate(self.objects_present)
            },
            registered,
        };
        self.objects_present = false;
        Ok(removal)
    }
}
