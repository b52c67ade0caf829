//! The filter engine (fwpuclnt.dll): a session, transactions, adding a
//! provider context and a filter that uses it, deleting them, and
//! enumerating our filters.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr;

use windows_sys::Win32::Foundation::{FWP_E_IN_USE, FWP_E_PROVIDER_CONTEXT_NOT_FOUND, HANDLE};
use windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::{
    FWP_ACTION_CALLOUT_TERMINATING, FWP_BYTE_ARRAY16, FWP_BYTE_ARRAY16_TYPE, FWP_BYTE_BLOB, FWP_CONDITION_VALUE0,
    FWP_CONDITION_VALUE0_0, FWP_EMPTY, FWP_FILTER_ENUM_OVERLAPPING, FWP_MATCH_EQUAL, FWP_MATCH_RANGE, FWP_RANGE_TYPE,
    FWP_RANGE0, FWP_UINT8, FWP_UINT16, FWP_UINT32, FWP_UINT64, FWP_V4_ADDR_AND_MASK, FWP_V4_ADDR_MASK,
    FWP_V6_ADDR_AND_MASK, FWP_V6_ADDR_MASK, FWP_VALUE0, FWP_VALUE0_0, FWPM_ACTION0, FWPM_ACTION0_0, FWPM_DISPLAY_DATA0,
    FWPM_FILTER_CONDITION0, FWPM_FILTER_ENUM_TEMPLATE0, FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT,
    FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED, FWPM_FILTER0, FWPM_FILTER0_0, FWPM_GENERAL_CONTEXT,
    FWPM_PROVIDER_CONTEXT2, FWPM_PROVIDER_CONTEXT2_0, FWPM_SESSION0, FwpmEngineClose0, FwpmEngineOpen0, FwpmFilterAdd0,
    FwpmFilterCreateEnumHandle0, FwpmFilterDeleteById0, FwpmFilterDestroyEnumHandle0, FwpmFilterEnum0,
    FwpmFilterGetById0, FwpmFreeMemory0, FwpmProviderContextAdd2, FwpmProviderContextDeleteByKey0,
    FwpmTransactionAbort0, FwpmTransactionBegin0, FwpmTransactionCommit0,
};
use windows_sys::Win32::System::Rpc::{RPC_C_AUTHN_WINNT, RPC_S_OK, RPC_S_UUID_LOCAL_ONLY, UuidCreate};
use windows_sys::core::GUID;

// The portable action types are the SDK's.
const _: () = assert!(crate::filter_spec::CalloutAction::Terminating.action_type() == FWP_ACTION_CALLOUT_TERMINATING);
const _: () = assert!(
    crate::filter_spec::CalloutAction::Inspection.action_type()
        == windows_sys::Win32::NetworkManagement::WindowsFilteringPlatform::FWP_ACTION_CALLOUT_INSPECTION
);

use super::wide::{from_guid, from_wide_ptr, guid, to_wide};
use crate::backend::{BackendError, EngineFilter};
use crate::filter_spec::{CalloutTarget, Condition, ConditionField, ConditionValue, FilterSpec, Weight};
use crate::keys;

/// Filters fetched per `FwpmFilterEnum0` call.
const ENUM_BATCH: u32 = 64;

/// `Ok` for `ERROR_SUCCESS`, the code otherwise.
pub(super) fn check(operation: &str, status: u32) -> Result<(), BackendError> {
    if status == 0 { Ok(()) } else { Err(BackendError::code(operation, status)) }
}

/// The display data of an object; the strings must outlive its use (the
/// engine copies them).
fn display(name: &[u16], description: &[u16]) -> FWPM_DISPLAY_DATA0 {
    FWPM_DISPLAY_DATA0 { name: name.as_ptr().cast_mut(), description: description.as_ptr().cast_mut() }
}

/// A session with the filter engine.
///
/// # Invariants
/// `handle` is an open engine handle from `FwpmEngineOpen0`, owned by this
/// value and closed once, on drop.
pub struct Engine {
    pub(super) handle: HANDLE,
}

impl Engine {
    /// Opens a session. Not dynamic (`FWPM_SESSION_FLAG_DYNAMIC` is not
    /// set), so the provider contexts and filters added through it stay
    /// after wfpctl exits: until they are deleted, BFE restarts or the
    /// machine reboots (they are not persistent).
    pub fn open() -> Result<Engine, BackendError> {
        let name = to_wide("wfpctl");
        let description = to_wide("wfpcallout control tool");
        let session = FWPM_SESSION0 { displayData: display(&name, &description), flags: 0, ..FWPM_SESSION0::default() };
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: local engine (NULL server name), Windows authentication,
        // default identity; `session` and the strings it points to and the
        // out-pointer are valid for the call.
        let status = unsafe { FwpmEngineOpen0(ptr::null(), RPC_C_AUTHN_WINNT, ptr::null(), &session, &mut handle) };
        check("FwpmEngineOpen0", status)?;
        if handle.is_null() {
            return Err(BackendError::message("FwpmEngineOpen0", "the engine returned no handle"));
        }
        // INVARIANT: an open handle, owned from here on.
        Ok(Engine { handle })
    }

    /// Adds a provider context carrying `blob` and a filter calling our
    /// callout with it, in one transaction. Returns the filter's id.
    pub fn add_filter(&self, spec: &FilterSpec, blob: &[u8]) -> Result<u64, BackendError> {
        let transaction = Transaction::begin(self)?;
        let context_key = new_guid()?;
        let mut provider_key = guid(keys::PROVIDER_KEY);
        let provider_key_ptr = ptr::from_mut(&mut provider_key);

        // The provider context: FWPM_GENERAL_CONTEXT, its data buffer the
        // policy blob the driver's notifyFn decodes.
        let mut blob_copy = blob.to_vec();
        let mut data = FWP_BYTE_BLOB {
            size: u32::try_from(blob_copy.len())
                .map_err(|_| BackendError::message("FwpmProviderContextAdd2", "policy blob too large"))?,
            data: blob_copy.as_mut_ptr(),
        };
        let context_name = to_wide(&format!("{} (policy)", spec.name));
        let context_description = to_wide("wfpcallout policy blob, added by wfpctl");
        let context = FWPM_PROVIDER_CONTEXT2 {
            providerContextKey: context_key,
            displayData: display(&context_name, &context_description),
            flags: 0,
            providerKey: provider_key_ptr,
            providerData: FWP_BYTE_BLOB::default(),
            r#type: FWPM_GENERAL_CONTEXT,
            Anonymous: FWPM_PROVIDER_CONTEXT2_0 { dataBuffer: ptr::from_mut(&mut data) },
            providerContextId: 0,
        };
        let mut context_id = 0u64;
        // SAFETY: the engine handle is open (invariant); `context` and
        // everything it points to (strings, provider key, blob descriptor
        // and bytes) are alive for the call, which copies them; no security
        // descriptor.
        let status = unsafe { FwpmProviderContextAdd2(self.handle, &context, ptr::null_mut(), &mut context_id) };
        check("FwpmProviderContextAdd2", status)?;

        // The filter: terminating callout action naming our callout, in our
        // sublayer, with the provider context and the conditions. Values
        // the engine takes by pointer (16-byte addresses, subnets, ranges)
        // live in `storage`, complete before any pointer into it is taken.
        let mut storage = ConditionStorage::for_conditions(&spec.conditions);
        let mut slots = storage.slots();
        let mut conditions = spec
            .conditions
            .iter()
            .map(|condition| filter_condition(condition, &mut slots))
            .collect::<Result<Vec<_>, _>>()?;
        // FWP_UINT64 values are passed by pointer: this one must outlive the call.
        let mut exact_weight = match spec.weight {
            Weight::Exact(value) => value,
            Weight::Auto | Weight::Range(_) => 0,
        };
        let weight = match spec.weight {
            Weight::Auto => FWP_VALUE0 { r#type: FWP_EMPTY, Anonymous: FWP_VALUE0_0::default() },
            Weight::Range(range) => FWP_VALUE0 { r#type: FWP_UINT8, Anonymous: FWP_VALUE0_0 { uint8: range } },
            Weight::Exact(_) => {
                FWP_VALUE0 { r#type: FWP_UINT64, Anonymous: FWP_VALUE0_0 { uint64: ptr::from_mut(&mut exact_weight) } }
            }
        };
        let filter_name = to_wide(&spec.name);
        let filter_description = to_wide(&spec.description);
        let filter = FWPM_FILTER0 {
            displayData: display(&filter_name, &filter_description),
            // A terminating callout (authorization layers) gets
            // PERMIT_IF_CALLOUT_UNREGISTERED: with the driver unloaded the
            // filter permits instead of blocking (the terminating callout's
            // default), and the network keeps working. An inspection callout
            // (flow-established) is ignored while unregistered, and the
            // engine refuses the flag on it.
            flags: if spec.target.action().permits_if_unregistered() {
                FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT | FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED
            } else {
                FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT
            },
            providerKey: provider_key_ptr,
            layerKey: guid(spec.layer_key()),
            subLayerKey: guid(keys::SUBLAYER_KEY),
            weight,
            numFilterConditions: u32::try_from(conditions.len())
                .map_err(|_| BackendError::message("FwpmFilterAdd0", "too many conditions"))?,
            filterCondition: if conditions.is_empty() { ptr::null_mut() } else { conditions.as_mut_ptr() },
            action: FWPM_ACTION0 {
                r#type: spec.target.action().action_type(),
                Anonymous: FWPM_ACTION0_0 { calloutKey: guid(spec.callout_key()) },
            },
            Anonymous: FWPM_FILTER0_0 { providerContextKey: context_key },
            ..FWPM_FILTER0::default()
        };
        let mut filter_id = 0u64;
        // SAFETY: the engine handle is open; `filter` and everything it
        // points to (strings, provider key, conditions and the values in
        // `storage`, the exact weight) are alive for the call, which copies
        // them; no security descriptor. The driver's notifyFn runs inside
        // this call (or the commit) and may veto the filter.
        let status = unsafe { FwpmFilterAdd0(self.handle, &filter, ptr::null_mut(), &mut filter_id) };
        check("FwpmFilterAdd0", status)?;
        transaction.commit()?;
        Ok(filter_id)
    }

    /// Deletes one of our filters and its provider context, in one
    /// transaction. A filter of another provider is refused.
    pub fn delete_filter(&self, filter_id: u64) -> Result<(), BackendError> {
        let transaction = Transaction::begin(self)?;
        let mut raw: *mut FWPM_FILTER0 = ptr::null_mut();
        // SAFETY: the engine handle is open; the out-pointer is valid; the
        // engine allocates the filter, freed by `EngineMemory`.
        let status = unsafe { FwpmFilterGetById0(self.handle, filter_id, &mut raw) };
        check("FwpmFilterGetById0", status)?;
        let memory = EngineMemory(raw.cast());
        // SAFETY: on success the engine returned a filter, valid until
        // `memory` frees it.
        let filter = unsafe { raw.as_ref() }
            .ok_or_else(|| BackendError::message("FwpmFilterGetById0", "the engine returned no filter"))?;
        // SAFETY: providerKey is NULL or points into the same allocation.
        let provider = unsafe { filter.providerKey.as_ref() }.map(from_guid);
        if provider != Some(keys::PROVIDER_KEY) {
            return Err(BackendError::message(
                "filter delete",
                format!("filter {filter_id} does not belong to the wfpcallout provider: wfpctl deletes only its own"),
            ));
        }
        let context_key = if filter.flags & FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT != 0 {
            // SAFETY: with HAS_PROVIDER_CONTEXT set the union holds
            // providerContextKey.
            Some(unsafe { filter.Anonymous.providerContextKey })
        } else {
            None
        };
        drop(memory);
        // SAFETY: the engine handle is open. The driver's DELETE notify runs
        // inside this call (or the commit).
        let status = unsafe { FwpmFilterDeleteById0(self.handle, filter_id) };
        check("FwpmFilterDeleteById0", status)?;
        if let Some(key) = context_key {
            // SAFETY: the engine handle is open; `key` is valid for the call.
            let status = unsafe { FwpmProviderContextDeleteByKey0(self.handle, &key) };
            // Shared with another filter, or gone already: keep it / fine.
            let tolerated = [FWP_E_IN_USE as u32, FWP_E_PROVIDER_CONTEXT_NOT_FOUND as u32];
            if !tolerated.contains(&status) {
                check("FwpmProviderContextDeleteByKey0", status)?;
            }
        }
        transaction.commit()
    }

    /// Every filter of our provider at the layers of our callouts.
    pub fn list_our_filters(&self) -> Result<Vec<EngineFilter>, BackendError> {
        let mut provider_key = guid(keys::PROVIDER_KEY);
        let mut filters = Vec::new();
        for target in CalloutTarget::ALL {
            let template = FWPM_FILTER_ENUM_TEMPLATE0 {
                providerKey: ptr::from_mut(&mut provider_key),
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
            // SAFETY: the engine handle is open; `template` and the key it
            // points to are alive for the call; the out-pointer is valid.
            let status = unsafe { FwpmFilterCreateEnumHandle0(self.handle, &template, &mut handle) };
            check("FwpmFilterCreateEnumHandle0", status)?;
            // INVARIANT: an open enumeration of this session.
            let enumeration = Enumeration { engine: self, handle };
            enumeration.read_all(target, &mut filters)?;
        }
        filters.sort_by_key(|filter| filter.id);
        Ok(filters)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle is open and owned (invariant), closed only here.
        let _ = unsafe { FwpmEngineClose0(self.handle) };
    }
}

/// A fresh GUID for a provider context (so the filter can name it).
fn new_guid() -> Result<GUID, BackendError> {
    let mut value = GUID::from_u128(0);
    // SAFETY: the out-pointer is valid for the call.
    let status = unsafe { UuidCreate(&mut value) };
    // RPC_S_UUID_LOCAL_ONLY: unique on this machine, which is all a
    // provider context key needs.
    if status == RPC_S_OK || status == RPC_S_UUID_LOCAL_ONLY {
        Ok(value)
    } else {
        Err(BackendError::code("UuidCreate", status as u32))
    }
}

/// The values of a filter's conditions that `FWP_CONDITION_VALUE0` holds
/// by pointer, one slot per condition that needs one.
struct ConditionStorage {
    v6_addresses: Vec<FWP_BYTE_ARRAY16>,
    v4_subnets: Vec<FWP_V4_ADDR_AND_MASK>,
    v6_subnets: Vec<FWP_V6_ADDR_AND_MASK>,
    ranges: Vec<FWP_RANGE0>,
}

impl ConditionStorage {
    fn for_conditions(conditions: &[Condition]) -> ConditionStorage {
        let mut storage = ConditionStorage {
            v6_addresses: Vec::new(),
            v4_subnets: Vec::new(),
            v6_subnets: Vec::new(),
            ranges: Vec::new(),
        };
        for condition in conditions {
            match condition.value {
                ConditionValue::V6Address(octets) => {
                    storage.v6_addresses.push(FWP_BYTE_ARRAY16 { byteArray16: octets })
                }
                ConditionValue::V4Subnet { address, mask } => {
                    storage.v4_subnets.push(FWP_V4_ADDR_AND_MASK { addr: address, mask });
                }
                ConditionValue::V6Subnet { address, prefix } => {
                    storage.v6_subnets.push(FWP_V6_ADDR_AND_MASK { addr: address, prefixLength: prefix });
                }
                ConditionValue::Uint16Range(low, high) => storage.ranges.push(FWP_RANGE0 {
                    valueLow: FWP_VALUE0 { r#type: FWP_UINT16, Anonymous: FWP_VALUE0_0 { uint16: low } },
                    valueHigh: FWP_VALUE0 { r#type: FWP_UINT16, Anonymous: FWP_VALUE0_0 { uint16: high } },
                }),
                ConditionValue::Uint8(_) | ConditionValue::Uint16(_) | ConditionValue::V4Address(_) => {}
            }
        }
        storage
    }

    /// Iterators over the slots, in condition order. The vectors are not
    /// touched again, so pointers into them stay valid while `self` lives.
    fn slots(&mut self) -> ConditionSlots<'_> {
        ConditionSlots {
            v6_addresses: self.v6_addresses.iter_mut(),
            v4_subnets: self.v4_subnets.iter_mut(),
            v6_subnets: self.v6_subnets.iter_mut(),
            ranges: self.ranges.iter_mut(),
        }
    }
}

/// The next free slot of each kind in a [`ConditionStorage`].
struct ConditionSlots<'a> {
    v6_addresses: core::slice::IterMut<'a, FWP_BYTE_ARRAY16>,
    v4_subnets: core::slice::IterMut<'a, FWP_V4_ADDR_AND_MASK>,
    v6_subnets: core::slice::IterMut<'a, FWP_V6_ADDR_AND_MASK>,
    ranges: core::slice::IterMut<'a, FWP_RANGE0>,
}

fn no_slot() -> BackendError {
    BackendError::message("FwpmFilterAdd0", "internal error: no room for a condition value")
}

/// One condition: `FWP_MATCH_EQUAL` on a value or a subnet
/// (`FWP_V4_ADDR_MASK`, `FWP_V6_ADDR_MASK`), `FWP_MATCH_RANGE` on an
/// `FWP_RANGE0` of ports. Values held by pointer point into `slots`.
fn filter_condition(
    condition: &Condition,
    slots: &mut ConditionSlots<'_>,
) -> Result<FWPM_FILTER_CONDITION0, BackendError> {
    let value = match condition.value {
        ConditionValue::Uint8(value) => {
            FWP_CONDITION_VALUE0 { r#type: FWP_UINT8, Anonymous: FWP_CONDITION_VALUE0_0 { uint8: value } }
        }
        ConditionValue::Uint16(value) => {
            FWP_CONDITION_VALUE0 { r#type: FWP_UINT16, Anonymous: FWP_CONDITION_VALUE0_0 { uint16: value } }
        }
        // IPv4 addresses at the _V4 layers: FWP_UINT32 in host byte order.
        ConditionValue::V4Address(value) => {
            FWP_CONDITION_VALUE0 { r#type: FWP_UINT32, Anonymous: FWP_CONDITION_VALUE0_0 { uint32: value } }
        }
        ConditionValue::V6Address(_) => {
            let slot = slots.v6_addresses.next().ok_or_else(no_slot)?;
            FWP_CONDITION_VALUE0 {
                r#type: FWP_BYTE_ARRAY16_TYPE,
                Anonymous: FWP_CONDITION_VALUE0_0 { byteArray16: ptr::from_mut(slot) },
            }
        }
        ConditionValue::V4Subnet { .. } => {
            let slot = slots.v4_subnets.next().ok_or_else(no_slot)?;
            FWP_CONDITION_VALUE0 {
                r#type: FWP_V4_ADDR_MASK,
                Anonymous: FWP_CONDITION_VALUE0_0 { v4AddrMask: ptr::from_mut(slot) },
            }
        }
        ConditionValue::V6Subnet { .. } => {
            let slot = slots.v6_subnets.next().ok_or_else(no_slot)?;
            FWP_CONDITION_VALUE0 {
                r#type: FWP_V6_ADDR_MASK,
                Anonymous: FWP_CONDITION_VALUE0_0 { v6AddrMask: ptr::from_mut(slot) },
            }
        }
        ConditionValue::Uint16Range(..) => {
            let slot = slots.ranges.next().ok_or_else(no_slot)?;
            FWP_CONDITION_VALUE0 {
                r#type: FWP_RANGE_TYPE,
                Anonymous: FWP_CONDITION_VALUE0_0 { rangeValue: ptr::from_mut(slot) },
            }
        }
    };
    Ok(FWPM_FILTER_CONDITION0 {
        fieldKey: guid(condition.field.key()),
        matchType: if condition.value.is_range() { FWP_MATCH_RANGE } else { FWP_MATCH_EQUAL },
        conditionValue: value,
    })
}

/// Memory the engine allocated (`FwpmFreeMemory0` frees it).
///
/// # Invariants
/// `0` is NULL or memory returned by the engine, owned by this value.
pub(super) struct EngineMemory(pub(super) *mut c_void);

impl Drop for EngineMemory {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        let mut memory = self.0;
        // SAFETY: engine memory owned by us (invariant), freed only here.
        unsafe { FwpmFreeMemory0(&mut memory) };
    }
}

/// An open filter enumeration.
///
/// # Invariants
/// `handle` is an enumeration handle of `engine`'s session, destroyed once,
/// on drop.
pub(super) struct Enumeration<'a> {
    pub(super) engine: &'a Engine,
    pub(super) handle: HANDLE,
}

impl Enumeration<'_> {
    /// Reads every filter of the enumeration into `filters`.
    fn read_all(&self, target: CalloutTarget, filters: &mut Vec<EngineFilter>) -> Result<(), BackendError> {
        self.for_each(|filter| filters.push(describe(filter, target)))
    }

    /// Calls `visit` with every filter of the enumeration.
    pub(super) fn for_each(&self, mut visit: impl FnMut(&FWPM_FILTER0)) -> Result<(), BackendError> {
        loop {
            let mut entries: *mut *mut FWPM_FILTER0 = ptr::null_mut();
            let mut returned = 0u32;
            // SAFETY: both handles are open (invariants); the out-pointers
            // are valid; the engine allocates the array, freed below.
            let status =
                unsafe { FwpmFilterEnum0(self.engine.handle, self.handle, ENUM_BATCH, &mut entries, &mut returned) };
            check("FwpmFilterEnum0", status)?;
            let memory = EngineMemory(entries.cast());
            for index in 0..usize::try_from(returned).unwrap_or(0) {
                if entries.is_null() {
                    break;
                }
                // SAFETY: the array holds `returned` pointers and
                // index < returned.
                let slot = unsafe { entries.add(index) };
                // SAFETY: `slot` is inside the array, which is alive.
                let entry = unsafe { slot.read() };
                // SAFETY: each entry is NULL or a filter alive until the
                // array is freed.
                if let Some(filter) = unsafe { entry.as_ref() } {
                    visit(filter);
                }
            }
            drop(memory);
            if returned < ENUM_BATCH {
                return Ok(());
            }
        }
    }
}

impl Drop for Enumeration<'_> {
    fn drop(&mut self) {
        // SAFETY: both handles are open; the enumeration is destroyed only here.
        let _ = unsafe { FwpmFilterDestroyEnumHandle0(self.engine.handle, self.handle) };
    }
}

/// The portable description of a filter the engine returned.
pub(super) fn describe(filter: &FWPM_FILTER0, target: CalloutTarget) -> EngineFilter {
    // SAFETY: the name is NULL or a NUL-terminated string inside the
    // engine's allocation, alive while `filter` is.
    let name = unsafe { from_wide_ptr(filter.displayData.name) };
    let mut conditions = Vec::new();
    let mut other_conditions = 0u32;
    let count = usize::try_from(filter.numFilterConditions).unwrap_or(0);
    for index in 0..count {
        if filter.filterCondition.is_null() {
            other_conditions += 1;
            continue;
        }
        // SAFETY: the array holds numFilterConditions entries, index is
        // below that, and it lives as long as `filter`.
        let slot = unsafe { filter.filterCondition.add(index) };
        // SAFETY: as above: `slot` is a valid condition.
        let raw = unsafe { &*slot };
        match read_condition(raw) {
            Some(condition) => conditions.push(condition),
            None => other_conditions += 1,
        }
    }
    let effective_weight = if filter.effectiveWeight.r#type == FWP_UINT64 {
        // SAFETY: the tag says the union holds the uint64 pointer.
        let value = unsafe { filter.effectiveWeight.Anonymous.uint64 };
        // SAFETY: NULL or a u64 inside the engine's allocation.
        unsafe { value.as_ref() }.copied()
    } else {
        None
    };
    let layer = CalloutTarget::from_layer_key(from_guid(&filter.layerKey)).unwrap_or(target);
    EngineFilter { id: filter.filterId, name, target: Some(layer), conditions, other_conditions, effective_weight }
}

/// A condition wfpctl understands (an equality on one of its fields, of
/// the type that field has, a subnet, or a port range), or `None`.
fn read_condition(raw: &FWPM_FILTER_CONDITION0) -> Option<Condition> {
    let field = ConditionField::from_key(from_guid(&raw.fieldKey))?;
    let value = &raw.conditionValue;
    let port_field = matches!(field, ConditionField::RemotePort | ConditionField::LocalPort);
    let address_field = matches!(field, ConditionField::RemoteAddress | ConditionField::LocalAddress);
    if raw.matchType == FWP_MATCH_RANGE {
        if !(port_field && value.r#type == FWP_RANGE_TYPE) {
            return None;
        }
        // SAFETY: the tag says the union holds the range pointer.
        let range = unsafe { value.Anonymous.rangeValue };
        // SAFETY: NULL or a range inside the engine's allocation.
        let range = unsafe { range.as_ref() }?;
        if range.valueLow.r#type != FWP_UINT16 || range.valueHigh.r#type != FWP_UINT16 {
            return None;
        }
        // SAFETY: both tags say the unions hold uint16.
        let (low, high) = unsafe { (range.valueLow.Anonymous.uint16, range.valueHigh.Anonymous.uint16) };
        return Some(Condition { field, value: ConditionValue::Uint16Range(low, high) });
    }
    if raw.matchType != FWP_MATCH_EQUAL {
        return None;
    }
    let value = match value.r#type {
        FWP_UINT8 if field == ConditionField::Protocol => {
            // SAFETY: the tag says the union holds uint8.
            ConditionValue::Uint8(unsafe { value.Anonymous.uint8 })
        }
        FWP_UINT16 if port_field => {
            // SAFETY: the tag says the union holds uint16.
            ConditionValue::Uint16(unsafe { value.Anonymous.uint16 })
        }
        FWP_UINT32 if address_field => {
            // SAFETY: the tag says the union holds uint32.
            ConditionValue::V4Address(unsafe { value.Anonymous.uint32 })
        }
        FWP_BYTE_ARRAY16_TYPE if address_field => {
            // SAFETY: the tag says the union holds the byteArray16 pointer.
            let array = unsafe { value.Anonymous.byteArray16 };
            // SAFETY: NULL or 16 bytes inside the engine's allocation.
            ConditionValue::V6Address(unsafe { array.as_ref() }?.byteArray16)
        }
        FWP_V4_ADDR_MASK if address_field => {
            // SAFETY: the tag says the union holds the v4AddrMask pointer.
            let subnet = unsafe { value.Anonymous.v4AddrMask };
            // SAFETY: NULL or an address and mask inside the engine's allocation.
            let subnet = unsafe { subnet.as_ref() }?;
            ConditionValue::V4Subnet { address: subnet.addr, mask: subnet.mask }
        }
        FWP_V6_ADDR_MASK if address_field => {
            // SAFETY: the tag says the union holds the v6AddrMask pointer.
            let subnet = unsafe { value.Anonymous.v6AddrMask };
            // SAFETY: NULL or an address and prefix inside the engine's allocation.
            let subnet = unsafe { subnet.as_ref() }?;
            ConditionValue::V6Subnet { address: subnet.addr, prefix: subnet.prefixLength }
        }
        _ => return None,
    };
    Some(Condition { field, value })
}

/// A transaction: committed explicitly, aborted if dropped before.
///
/// # Invariants
/// A transaction is in progress on `engine`'s session until `commit` or
/// drop ends it.
pub(super) struct Transaction<'a> {
    engine: &'a Engine,
    open: bool,
}

impl<'a> Transaction<'a> {
    pub(super) fn begin(engine: &'a Engine) -> Result<Transaction<'a>, BackendError> {
        // SAFETY: the engine handle is open.
        let status = unsafe { FwpmTransactionBegin0(engine.handle, 0) };
        check("FwpmTransactionBegin0", status)?;
        // INVARIANT: the transaction just began.
        Ok(Transaction { engine, open: true })
    }

    pub(super) fn commit(mut self) -> Result<(), BackendError> {
        // SAFETY: the engine handle is open, with our transaction in progress.
        let status = unsafe { FwpmTransactionCommit0(self.engine.handle) };
        // INVARIANT: a successful commit ends the transaction. Whether a
        // failed one does is not documented: then drop aborts it (harmless
        // if it is gone already).
        self.open = status != 0;
        check("FwpmTransactionCommit0", status)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // SAFETY: the engine handle is open, with our transaction in
            // progress (invariant).
            let _ = unsafe { FwpmTransactionAbort0(self.engine.handle) };
        }
    }
}
