//! `wfpctl state` on Windows: our provider, sublayer and callouts by key,
//! every filter at our callouts' layers whose action names one of them,
//! and our provider's provider contexts, read from the filter engine.
//! Only the reading is here; what it means is decided by the portable
//! [`crate::footprint`].
#![allow(unsafe_code)]

use core::ptr;

use windows_sys::Win32::Foundation::{
    FWP_E_CALLOUT_NOT_FOUND, FWP_E_PROVIDER_NOT_FOUND, FWP_E_SUBLAYER_NOT_FOUND, HANDLE,
};
use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
    FWP_ACTION_FLAG_CALLOUT, FWP_FILTER_ENUM_OVERLAPPING, FWP_UINT64, FWPM_CALLOUT_FLAG_PERSISTENT,
    FWPM_CALLOUT_FLAG_REGISTERED, FWPM_CALLOUT0, FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT,
    FWPM_FILTER_FLAG_PERSISTENT, FWPM_FILTER0, FWPM_GENERAL_CONTEXT, FWPM_PROVIDER_CONTEXT_ENUM_TEMPLATE0,
    FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT, FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER_FLAG_PERSISTENT, FWPM_PROVIDER0,
    FWPM_SUBLAYER_FLAG_PERSISTENT, FWPM_SUBLAYER0, FwpmCalloutGetByKey0, FwpmFilterCreateEnumHandle0,
    FwpmProviderContextCreateEnumHandle0, FwpmProviderContextDestroyEnumHandle0, FwpmProviderContextEnum2,
    FwpmProviderGetByKey0, FwpmSubLayerGetByKey0,
};

use super::engine::{Engine, EngineMemory, Enumeration, check, describe};
use super::wide::{from_guid, from_wide_ptr, guid};
use crate::backend::BackendError;
use crate::filter_spec::CalloutTarget;
use crate::footprint::{CalloutFilter, CalloutObject, EngineObjects, ManagementObject, ProviderContextObject};
use crate::keys;

/// Provider contexts fetched per `FwpmProviderContextEnum2` call.
const ENUM_BATCH: u32 = 64;

/// `Ok(false)` for the given "not found" code, `Ok(true)` for success.
fn found(operation: &str, status: u32, not_found: i32) -> Result<bool, BackendError> {
    if status == u32::from_ne_bytes(not_found.to_ne_bytes()) {
        return Ok(false);
    }
    check(operation, status).map(|()| true)
}

impl Engine {
    /// Everything `wfpctl state` reports.
    pub fn engine_objects(&self) -> Result<EngineObjects, BackendError> {
        Ok(EngineObjects {
            provider: self.provider()?,
            sublayer: self.sublayer()?,
            callouts: CalloutTarget::ALL
                .iter()
                .map(|target| Ok((*target, self.callout(*target)?)))
                .collect::<Result<_, BackendError>>()?,
            filters: self.callout_filters()?,
            provider_contexts: self.provider_contexts()?,
        })
    }

    fn provider(&self) -> Result<Option<ManagementObject>, BackendError> {
        let key = guid(keys::PROVIDER_KEY);
        let mut raw: *mut FWPM_PROVIDER0 = ptr::null_mut();
        // SAFETY: the engine handle is open; key and out-pointer are valid
        // for the call; the engine allocates the result, freed by `memory`.
        let status = unsafe { FwpmProviderGetByKey0(self.handle, &key, &mut raw) };
        if !found("FwpmProviderGetByKey0", status, FWP_E_PROVIDER_NOT_FOUND)? {
            return Ok(None);
        }
        let memory = EngineMemory(raw.cast());
        // SAFETY: on success the engine returned a provider, alive until
        // `memory` is dropped at the end of this function.
        let Some(provider) = (unsafe { raw.as_ref() }) else { return Ok(None) };
        // SAFETY: NULL or a NUL-terminated string in the same allocation.
        let name = unsafe { from_wide_ptr(provider.displayData.name) };
        let object =
            ManagementObject { name, persistent: provider.flags & FWPM_PROVIDER_FLAG_PERSISTENT != 0, weight: None };
        drop(memory);
        Ok(Some(object))
    }

    fn sublayer(&self) -> Result<Option<ManagementObject>, BackendError> {
        let key = guid(keys::SUBLAYER_KEY);
        let mut raw: *mut FWPM_SUBLAYER0 = ptr::null_mut();
        // SAFETY: as in `provider`.
        let status = unsafe { FwpmSubLayerGetByKey0(self.handle, &key, &mut raw) };
        if !found("FwpmSubLayerGetByKey0", status, FWP_E_SUBLAYER_NOT_FOUND)? {
            return Ok(None);
        }
        let memory = EngineMemory(raw.cast());
        // SAFETY: on success a sublayer, alive until `memory` is dropped.
        let Some(sublayer) = (unsafe { raw.as_ref() }) else { return Ok(None) };
        // SAFETY: NULL or a NUL-terminated string in the same allocation.
        let name = unsafe { from_wide_ptr(sublayer.displayData.name) };
        let object = ManagementObject {
            name,
            persistent: sublayer.flags & FWPM_SUBLAYER_FLAG_PERSISTENT != 0,
            weight: Some(sublayer.weight),
        };
        drop(memory);
        Ok(Some(object))
    }

    pub(super) fn callout(&self, target: CalloutTarget) -> Result<Option<CalloutObject>, BackendError> {
        let key = guid(target.callout_key());
        let mut raw: *mut FWPM_CALLOUT0 = ptr::null_mut();
        // SAFETY: as in `provider`.
        let status = unsafe { FwpmCalloutGetByKey0(self.handle, &key, &mut raw) };
        if !found("FwpmCalloutGetByKey0", status, FWP_E_CALLOUT_NOT_FOUND)? {
            return Ok(None);
        }
        let memory = EngineMemory(raw.cast());
        // SAFETY: on success a callout, alive until `memory` is dropped.
        let object = unsafe { raw.as_ref() }.map(|callout| CalloutObject {
            id: callout.calloutId,
            registered: callout.flags & FWPM_CALLOUT_FLAG_REGISTERED != 0,
            persistent: callout.flags & FWPM_CALLOUT_FLAG_PERSISTENT != 0,
        });
        drop(memory);
        Ok(object)
    }

    /// Every filter, of any provider, at our callouts' layers whose action
    /// is a callout action naming one of our callouts.
    pub(super) fn callout_filters(&self) -> Result<Vec<CalloutFilter>, BackendError> {
        let mut filters = Vec::new();
        for target in CalloutTarget::ALL {
            let template = FWPM_FILTER_ENUM_TEMPLATE0 {
                providerKey: ptr::null_mut(),
                layerKey: guid(target.layer_key()),
                enumType: FWP_FILTER_ENUM_OVERLAPPING,
                flags: 0,
                providerContextTemplate: ptr::null_mut(),
                numFilterConditions: 0,
                filterCondition: ptr::null_mut(),
                actionMask: u32::MAX,
                calloutKey: ptr::null_mut(),
            };
            let mut handle: HANDLE = ptr::null_mut();
            // SAFETY: the engine handle is open; `template` is alive for the
            // call; the out-pointer is valid.
            let status = unsafe { FwpmFilterCreateEnumHandle0(self.handle, &template, &mut handle) };
            check("FwpmFilterCreateEnumHandle0", status)?;
            // INVARIANT: an open enumeration of this session.
            let enumeration = Enumeration { engine: self, handle };
            enumeration.for_each(|filter| {
                if let Some(found) = callout_filter(filter) {
                    filters.push(found);
                }
            })?;
        }
        filters.sort_by_key(|filter| filter.id);
        Ok(filters)
    }

    /// Our provider's `FWPM_GENERAL_CONTEXT`s (wfpctl adds no other kind).
    pub(super) fn provider_contexts(&self) -> Result<Vec<ProviderContextObject>, BackendError> {
        let mut provider_key = guid(keys::PROVIDER_KEY);
        let template = FWPM_PROVIDER_CONTEXT_ENUM_TEMPLATE0 {
            providerKey: ptr::from_mut(&mut provider_key),
            providerContextType: FWPM_GENERAL_CONTEXT,
        };
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: the engine handle is open; the template and the key it
        // points to are alive for the call; the out-pointer is valid.
        let status = unsafe { FwpmProviderContextCreateEnumHandle0(self.handle, &template, &mut handle) };
        check("FwpmProviderContextCreateEnumHandle0", status)?;
        let result = self.read_provider_contexts(handle);
        // SAFETY: the enumeration was created above and is destroyed once.
        let _ = unsafe { FwpmProviderContextDestroyEnumHandle0(self.handle, handle) };
        result
    }

    fn read_provider_contexts(&self, handle: HANDLE) -> Result<Vec<ProviderContextObject>, BackendError> {
        let mut contexts = Vec::new();
        loop {
            let mut entries: *mut *mut FWPM_PROVIDER_CONTEXT2 = ptr::null_mut();
            let mut returned = 0u32;
            // SAFETY: both handles are open; the out-pointers are valid; the
            // engine allocates the array, freed by `memory`.
            let status =
                unsafe { FwpmProviderContextEnum2(self.handle, handle, ENUM_BATCH, &mut entries, &mut returned) };
            check("FwpmProviderContextEnum2", status)?;
            let memory = EngineMemory(entries.cast());
            for index in 0..usize::try_from(returned).unwrap_or(0) {
                if entries.is_null() {
                    break;
                }
                // SAFETY: the array holds `returned` pointers, index < returned.
                let slot = unsafe { entries.add(index) };
                // SAFETY: `slot` is inside the array, which is alive.
                let entry = unsafe { slot.read() };
                // SAFETY: each entry is NULL or a context alive with the array.
                if let Some(context) = unsafe { entry.as_ref() } {
                    contexts.push(provider_context(context));
                }
            }
            drop(memory);
            if returned < ENUM_BATCH {
                return Ok(contexts);
            }
        }
    }
}

/// A filter whose action names one of our callouts, or `None`.
fn callout_filter(filter: &FWPM_FILTER0) -> Option<CalloutFilter> {
    if filter.action.r#type & FWP_ACTION_FLAG_CALLOUT == 0 {
        return None;
    }
    // SAFETY: a callout action's union holds calloutKey.
    let callout = from_guid(&unsafe { filter.action.Anonymous.calloutKey });
    let target = CalloutTarget::ALL.into_iter().find(|target| target.callout_key() == callout)?;
    // SAFETY: providerKey is NULL or points into the filter's allocation.
    let provider = unsafe { filter.providerKey.as_ref() }.map(from_guid);
    let provider_context = if filter.flags & FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT != 0 {
        // SAFETY: with HAS_PROVIDER_CONTEXT set the union holds providerContextKey.
        Some(from_guid(&unsafe { filter.Anonymous.providerContextKey }))
    } else {
        None
    };
    let weight = if filter.effectiveWeight.r#type == FWP_UINT64 {
        // SAFETY: the tag says the union holds the uint64 pointer.
        let value = unsafe { filter.effectiveWeight.Anonymous.uint64 };
        // SAFETY: NULL or a u64 inside the engine's allocation.
        unsafe { value.as_ref() }.copied()
    } else {
        None
    };
    let portable = describe(filter, target);
    Some(CalloutFilter {
        id: filter.filterId,
        name: portable.name,
        target,
        ours: provider == Some(keys::PROVIDER_KEY),
        weight,
        action_type: filter.action.r#type,
        persistent: filter.flags & FWPM_FILTER_FLAG_PERSISTENT != 0,
        conditions: portable.conditions,
        provider_context,
    })
}

/// A provider context's key, id and, for a general context, its data.
fn provider_context(context: &FWPM_PROVIDER_CONTEXT2) -> ProviderContextObject {
    let data = if context.r#type == FWPM_GENERAL_CONTEXT {
        // SAFETY: a general context's union holds dataBuffer.
        let blob = unsafe { context.Anonymous.dataBuffer };
        // SAFETY: NULL or a blob descriptor inside the engine's allocation.
        unsafe { blob.as_ref() }.map(|blob| {
            if blob.data.is_null() {
                return Vec::new();
            }
            let len = usize::try_from(blob.size).unwrap_or(0);
            // SAFETY: the descriptor says `data` holds `size` bytes, alive
            // with the context.
            unsafe { core::slice::from_raw_parts(blob.data, len) }.to_vec()
        })
    } else {
        None
    };
    ProviderContextObject {
        key: from_guid(&context.providerContextKey),
        id: context.providerContextId,
        data,
        persistent: context.flags & FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT != 0,
    }
}
