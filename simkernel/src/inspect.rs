//! Read-only views of the simulated engine's management objects, as a
//! management client sees them with `FwpmProviderGetByKey0`,
//! `FwpmSubLayerGetByKey0`, `FwpmCalloutGetByKey0`, `FwpmFilterEnum0` and
//! `FwpmProviderContextEnum2`: for tools that report what a driver left in
//! the engine (wfpctl's `state`), not for the driver. Keys are given as
//! one number, the one `GUID::from_u128` takes.

use crate::engine::{self, key_of};
use fwps_types::*;

/// A filter as enumeration shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterView {
    /// Run-time filter id.
    pub id: u64,
    /// `FWPM_LAYER_*` key.
    pub layer_key: u128,
    /// The weight given at add (the engine's ordering within the sublayer).
    pub weight: u64,
    /// `FWP_ACTION_*`.
    pub action_type: u32,
    /// The callout the action names, if it is a callout action.
    pub callout_key: Option<u128>,
    /// The provider context the filter carries, if any.
    pub provider_context_key: Option<u128>,
    /// `FWPM_FILTER_FLAG_*` given at add.
    pub flags: u32,
}

/// A provider context: its key, run-time id and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderContextView {
    /// Its key.
    pub key: u128,
    /// Its run-time id.
    pub id: u64,
    /// `FWPM_GENERAL_CONTEXT`'s data buffer.
    pub data: Vec<u8>,
}

/// Whether a provider exists.
pub fn has_provider(key: &GUID) -> bool {
    engine::lock().providers.contains_key(&key_of(key))
}

/// A sublayer's weight, if it exists.
pub fn sublayer_weight(key: &GUID) -> Option<u16> {
    engine::lock().sublayers.get(&key_of(key)).map(|(weight, _)| *weight)
}

/// Whether a provider, sublayer or provider context was added with its
/// `FWPM_*_FLAG_PERSISTENT` (what `GetByKey` reports in its flags).
pub fn is_persistent(key: &GUID) -> bool {
    engine::lock().persistent.contains(&key_of(key))
}

/// Every filter, by id.
pub fn filters() -> Vec<FilterView> {
    engine::lock()
        .filters
        .values()
        .map(|record| FilterView {
            id: record.id,
            layer_key: key_of(&record.layer_key),
            weight: record.weight,
            action_type: record.action.action_type(),
            callout_key: record.action.callout_key().as_ref().map(key_of),
            provider_context_key: record.provider_context_key.as_ref().map(key_of),
            flags: record.fwpm_flags,
        })
        .collect()
}

/// Every provider context. (The simulated engine does not record which
/// provider a context belongs to: clients add them without one.)
pub fn provider_contexts() -> Vec<ProviderContextView> {
    let mut contexts: Vec<ProviderContextView> = engine::lock()
        .provider_contexts
        .values()
        .map(|record| ProviderContextView { key: key_of(&record.key), id: record.id, data: record.data.clone() })
        .collect();
    contexts.sort_by_key(|context| context.id);
    contexts
}

/// Deletes a provider context (`FwpmProviderContextDeleteByKey0`); false
/// if there was none.
pub fn delete_provider_context(key: &GUID) -> bool {
    engine::lock().provider_contexts.remove(&key_of(key)).is_some()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Kernel;

    #[test]
    fn views_follow_the_engine() {
        let _kernel = Kernel::boot();
        let sublayer = GUID::from_u128(0x5111);
        assert_eq!(sublayer_weight(&sublayer), None);
        engine::add_sublayer(sublayer, 7).unwrap();
        assert_eq!(sublayer_weight(&sublayer), Some(7));
        assert!(!has_provider(&GUID::from_u128(0x9999)));
        let context = engine::add_provider_context(b"blob");
        let mut spec = engine::FilterSpec::callout(fwp::FWPM_LAYER_ALE_AUTH_CONNECT_V4, sublayer, GUID::from_u128(1));
        spec.action = engine::FilterAction::Block;
        spec.provider_context = Some(context);
        spec.weight = 3;
        let id = engine::add_filter(&spec).unwrap();
        let views = filters();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].id, id);
        assert_eq!(views[0].action_type, fwp::FWP_ACTION_BLOCK);
        assert_eq!(views[0].callout_key, None);
        assert_eq!(views[0].provider_context_key, Some(key_of(&context)));
        assert_eq!(views[0].weight, 3);
        assert_eq!(provider_contexts().len(), 1);
        assert_eq!(provider_contexts()[0].data, b"blob");
        engine::delete_filter(id).unwrap();
        assert!(filters().is_empty());
        assert!(delete_provider_context(&context));
        assert!(!delete_provider_context(&context));
        assert!(provider_contexts().is_empty());
    }
}
