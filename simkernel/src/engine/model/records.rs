//! The engine's own records, and the Windows structures built from them
//! (the `FWPS_FILTER2` notify and classify receive, the `FWPM_FILTER0`s and
//! provider contexts enumeration returns).

use fwps_types::fwp::{
    FWP_BYTE_BLOB, FWP_CONDITION_VALUE0, FWP_CONDITION_VALUE0_0, FWP_VALUE0, FWP_VALUE0_0, FWPM_ACTION0,
    FWPM_ACTION0_0, FWPM_CALLOUT0, FWPM_FILTER0, FWPM_FILTER0_0, FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER_CONTEXT2_0,
    FWPM_PROVIDER0, FWPM_SUBLAYER0,
};
use fwps_types::*;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize};

/// What a filter does when it matches.
#[derive(Clone, Copy)]
pub enum FilterAction {
    /// `FWP_ACTION_PERMIT`.
    Permit,
    /// `FWP_ACTION_BLOCK`.
    Block,
    /// `FWP_ACTION_CALLOUT_TERMINATING` with this callout key.
    CalloutTerminating(GUID),
    /// `FWP_ACTION_CALLOUT_INSPECTION` with this callout key.
    CalloutInspection(GUID),
    /// `FWP_ACTION_CALLOUT_UNKNOWN` with this callout key.
    CalloutUnknown(GUID),
}

impl FilterAction {
    pub(crate) fn action_type(self) -> u32 {
        match self {
            FilterAction::Permit => fwp::FWP_ACTION_PERMIT,
            FilterAction::Block => fwp::FWP_ACTION_BLOCK,
            FilterAction::CalloutTerminating(_) => fwp::FWP_ACTION_CALLOUT_TERMINATING,
            FilterAction::CalloutInspection(_) => fwp::FWP_ACTION_CALLOUT_INSPECTION,
            FilterAction::CalloutUnknown(_) => fwp::FWP_ACTION_CALLOUT_UNKNOWN,
        }
    }

    pub(crate) fn callout_key(self) -> Option<GUID> {
        match self {
            FilterAction::CalloutTerminating(k)
            | FilterAction::CalloutInspection(k)
            | FilterAction::CalloutUnknown(k) => Some(k),
            FilterAction::Permit | FilterAction::Block => None,
        }
    }
}

/// A filter as a WFP client describes it to `FwpmFilterAdd0`.
#[derive(Clone)]
pub struct FilterSpec {
    /// Filter key (a random one if None).
    pub key: Option<GUID>,
    /// `FWPM_LAYER_*`.
    pub layer_key: GUID,
    /// Sublayer (must exist).
    pub sublayer_key: GUID,
    /// What it does.
    pub action: FilterAction,
    /// Weight within the sublayer.
    pub weight: u64,
    /// Conditions: (field index, value) compared with `FWP_MATCH_EQUAL`.
    pub conditions: Vec<(usize, u32)>,
    /// Provider context key (sets `FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT`).
    pub provider_context: Option<GUID>,
    /// `rawContext` when there is no provider context.
    pub raw_context: u64,
    /// Further `FWPM_FILTER_FLAG_*`.
    pub flags: u32,
}

impl FilterSpec {
    /// A terminating callout filter with no conditions.
    pub fn callout(layer_key: GUID, sublayer_key: GUID, callout_key: GUID) -> Self {
        Self {
            key: None,
            layer_key,
            sublayer_key,
            action: FilterAction::CalloutTerminating(callout_key),
            weight: 0,
            conditions: Vec::new(),
            provider_context: None,
            raw_context: 0,
            flags: 0,
        }
    }
}

/// A filter inside the engine.
///
/// # Invariants
/// `fwps` points into `conditions_fwps`, `weight_value` and
/// `provider_context` (all boxed, so their addresses are stable), and is
/// written only by notifyFn ADD before the record is published.
pub(crate) struct FilterRecord {
    pub id: u64,
    pub key: GUID,
    pub layer_id: u16,
    pub layer_key: GUID,
    pub sublayer_key: GUID,
    pub sublayer_weight: u16,
    pub weight: u64,
    pub action: FilterAction,
    pub callout_id: u32,
    pub conditions: Vec<(usize, u32)>,
    pub fwpm_flags: u32,
    pub provider_context_key: Option<GUID>,
    pub raw_context: u64,
    pub fwps: UnsafeCell<FWPS_FILTER2>,
    _conditions_fwps: Box<[FWPS_FILTER_CONDITION0]>,
    _weight_value: Box<u64>,
    _provider_context: Option<Box<ProviderContextCopy>>,
    /// Classifications using this filter right now (rundown protection).
    pub in_flight: AtomicUsize,
    /// Set when deletion starts: no new classification may use it.
    pub deleted: AtomicBool,
}

// SAFETY: the raw pointers inside point into the record's own boxes; after
// publication `fwps` is only read (invariant), and the counters are atomics.
unsafe impl Send for FilterRecord {}
// SAFETY: as above.
unsafe impl Sync for FilterRecord {}

/// A provider context as the engine hands it out: the structure, its blob
/// descriptor and the data, in one allocation with stable addresses.
pub(crate) struct ProviderContextCopy {
    pub context: FWPM_PROVIDER_CONTEXT2,
    _blob: Box<FWP_BYTE_BLOB>,
    _data: Box<[u8]>,
}

// SAFETY: the pointers inside refer to the copy's own boxes.
unsafe impl Send for ProviderContextCopy {}

impl ProviderContextCopy {
    pub fn new(record: &ProviderContextRecord) -> Box<Self> {
        let mut data: Box<[u8]> = record.data.clone().into_boxed_slice();
        let mut blob = Box::new(FWP_BYTE_BLOB { size: data.len() as u32, data: data.as_mut_ptr() });
        let context = FWPM_PROVIDER_CONTEXT2 {
            providerContextKey: record.key,
            r#type: record.context_type,
            Anonymous: FWPM_PROVIDER_CONTEXT2_0 { dataBuffer: &mut *blob },
            providerContextId: record.id,
            ..FWPM_PROVIDER_CONTEXT2::default()
        };
        Box::new(Self { context, _blob: blob, _data: data })
    }
}

/// Translates FWPM filter flags to the FWPS flags notify/classify see.
pub(crate) fn fwps_flags(fwpm_flags: u32) -> u16 {
    let mut flags = 0;
    if fwpm_flags & fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT != 0 {
        flags |= FWPS_FILTER_FLAG_CLEAR_ACTION_RIGHT;
    }
    if fwpm_flags & fwp::FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED != 0 {
        flags |= FWPS_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED;
    }
    flags
}

pub(crate) struct NewFilter<'a> {
    pub id: u64,
    pub key: GUID,
    pub layer_id: u16,
    pub sublayer_weight: u16,
    pub callout_id: u32,
    pub spec: &'a FilterSpec,
    /// The provider context, if the filter has one.
    pub provider_context: Option<&'a ProviderContextRecord>,
    /// Whether the FWPS filter carries it (FWPM callout flag).
    pub expose_provider_context: bool,
}

impl FilterRecord {
    pub fn build(new: NewFilter<'_>) -> Self {
        let spec = new.spec;
        let mut conditions_fwps: Box<[FWPS_FILTER_CONDITION0]> = spec
            .conditions
            .iter()
            .map(|&(field, value)| FWPS_FILTER_CONDITION0 {
                fieldId: field as u16,
                reserved: 0,
                matchType: fwp::FWP_MATCH_EQUAL,
                conditionValue: FWP_CONDITION_VALUE0 {
                    r#type: fwp::FWP_UINT32,
                    Anonymous: FWP_CONDITION_VALUE0_0 { uint32: value },
                },
            })
            .collect();
        let mut weight_value = Box::new(spec.weight);
        let mut provider_context =
            new.provider_context.filter(|_| new.expose_provider_context).map(ProviderContextCopy::new);
        let initial_context = match new.provider_context {
            Some(record) => record.id,
            None => spec.raw_context,
        };
        let fwps = FWPS_FILTER2 {
            filterId: new.id,
            weight: FWP_VALUE0 { r#type: fwp::FWP_UINT64, Anonymous: FWP_VALUE0_0 { uint64: &mut *weight_value } },
            subLayerWeight: new.sublayer_weight,
            flags: fwps_flags(spec.flags),
            numFilterConditions: conditions_fwps.len() as u32,
            filterCondition: if conditions_fwps.is_empty() {
                std::ptr::null_mut()
            } else {
                conditions_fwps.as_mut_ptr()
            },
            action: FWPS_ACTION0 { r#type: spec.action.action_type(), calloutId: new.callout_id },
            context: initial_context,
            providerContext: provider_context
                .as_mut()
                .map_or(std::ptr::null_mut(), |copy| &mut copy.context as *mut FWPM_PROVIDER_CONTEXT2),
        };
        Self {
            id: new.id,
            key: new.key,
            layer_id: new.layer_id,
            layer_key: spec.layer_key,
            sublayer_key: spec.sublayer_key,
            sublayer_weight: new.sublayer_weight,
            weight: spec.weight,
            action: spec.action,
            callout_id: new.callout_id,
            conditions: spec.conditions.clone(),
            fwpm_flags: spec.flags
                | if new.provider_context.is_some() { fwp::FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT } else { 0 },
            provider_context_key: new.provider_context.map(|r| r.key),
            raw_context: spec.raw_context,
            fwps: UnsafeCell::new(fwps),
            _conditions_fwps: conditions_fwps,
            _weight_value: weight_value,
            _provider_context: provider_context,
            in_flight: AtomicUsize::new(0),
            deleted: AtomicBool::new(false),
        }
    }

    /// The FWPS filter's current `context` value.
    pub fn context(&self) -> u64 {
        // SAFETY: after publication only notify (before publication) writes
        // it; reading a u64 is fine.
        unsafe { (*self.fwps.get()).context }
    }
}

/// Memory the engine handed out, freed by `FwpmFreeMemory0`.
pub(crate) enum EngineAllocation {
    /// A filter enumeration batch.
    FilterBatch(#[allow(dead_code)] Box<FilterBatch>),
    /// A provider context.
    ProviderContext(#[allow(dead_code)] Box<ProviderContextCopy>),
    /// A management callout.
    Callout(#[allow(dead_code)] Box<FWPM_CALLOUT0>),
    /// A provider.
    Provider(#[allow(dead_code)] Box<FWPM_PROVIDER0>),
    /// A sublayer and the provider key it points to.
    SubLayer(#[allow(dead_code)] Box<SubLayerCopy>),
}

/// A sublayer as `FwpmSubLayerGetByKey0` returns it: `sublayer.providerKey`
/// is NULL or points to `provider`, in the same allocation.
pub(crate) struct SubLayerCopy {
    pub sublayer: FWPM_SUBLAYER0,
    pub provider: GUID,
}

/// An array of `FWPM_FILTER0*` and what they point to.
pub(crate) struct FilterBatch {
    pub pointers: Box<[*mut FWPM_FILTER0]>,
    _filters: Box<[FWPM_FILTER0]>,
    _weights: Box<[u64]>,
}

// SAFETY: the pointers refer to the batch's own boxes.
unsafe impl Send for FilterBatch {}
// SAFETY: as above.
unsafe impl Send for EngineAllocation {}

impl FilterBatch {
    pub fn new(records: &[std::sync::Arc<FilterRecord>]) -> Box<Self> {
        let mut weights: Box<[u64]> = records.iter().map(|r| r.weight).collect();
        let mut filters: Box<[FWPM_FILTER0]> = records
            .iter()
            .zip(weights.iter_mut())
            .map(|(record, weight)| FWPM_FILTER0 {
                filterKey: record.key,
                flags: record.fwpm_flags,
                layerKey: record.layer_key,
                subLayerKey: record.sublayer_key,
                weight: FWP_VALUE0 { r#type: fwp::FWP_UINT64, Anonymous: FWP_VALUE0_0 { uint64: weight } },
                numFilterConditions: 0,
                action: FWPM_ACTION0 {
                    r#type: record.action.action_type(),
                    Anonymous: FWPM_ACTION0_0 { calloutKey: record.action.callout_key().unwrap_or(GUID::from_u128(0)) },
                },
                Anonymous: match record.provider_context_key {
                    Some(key) => FWPM_FILTER0_0 { providerContextKey: key },
                    None => FWPM_FILTER0_0 { rawContext: record.raw_context },
                },
                filterId: record.id,
                ..FWPM_FILTER0::default()
            })
            .collect();
        let pointers = filters.iter_mut().map(|f| f as *mut FWPM_FILTER0).collect();
        Box::new(Self { pointers, _filters: filters, _weights: weights })
    }
}

/// A provider context's contents.
#[derive(Clone)]
pub(crate) struct ProviderContextRecord {
    pub key: GUID,
    pub id: u64,
    pub context_type: i32,
    pub data: Vec<u8>,
}
