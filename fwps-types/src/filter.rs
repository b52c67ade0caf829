//! The run-time filter notifyFn and classifyFn receive, and classify's output.

use crate::FWPS_FILTER_CONDITION0;
use crate::fwp::{
    FWP_ACTION_TYPE, FWP_VALUE0, FWPM_PROVIDER_CONTEXT0, FWPM_PROVIDER_CONTEXT1, FWPM_PROVIDER_CONTEXT2,
    FWPM_PROVIDER_CONTEXT3,
};

/// A run-time filter action (`FWPS_ACTION0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FWPS_ACTION0 {
    /// `FWP_ACTION_*`, e.g. `FWP_ACTION_CALLOUT_TERMINATING`.
    pub r#type: FWP_ACTION_TYPE,
    /// Run-time id of the callout the action calls.
    pub calloutId: u32,
}

macro_rules! fwps_filter {
    ($(#[$doc:meta])* $name:ident, $provider_context:ty) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct $name {
            /// Run-time id of the filter, the key of our context table.
            pub filterId: u64,
            /// The filter's weight (`FWP_UINT64` pointer or `FWP_EMPTY`).
            pub weight: FWP_VALUE0,
            /// Weight of the filter's sublayer.
            pub subLayerWeight: u16,
            /// `FWPS_FILTER_FLAG_*` (note: not the `FWPM_FILTER_FLAG_*` values).
            pub flags: u16,
            /// Number of entries in `filterCondition`.
            pub numFilterConditions: u32,
            /// The filter's run-time conditions.
            pub filterCondition: *mut FWPS_FILTER_CONDITION0,
            /// The action, with the run-time id of the callout it calls.
            pub action: FWPS_ACTION0,
            /// Callout-owned: set by notifyFn on ADD, read by classifyFn.
            pub context: u64,
            /// The filter's provider context; filled in only when the FWPM
            /// callout carries `FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT`.
            pub providerContext: *mut $provider_context,
        }
    };
}

fwps_filter!(
    /// Run-time filter for callouts registered with `FwpsCalloutRegister0`.
    FWPS_FILTER0,
    FWPM_PROVIDER_CONTEXT0
);
fwps_filter!(
    /// Run-time filter for callouts registered with `FwpsCalloutRegister1`.
    FWPS_FILTER1,
    FWPM_PROVIDER_CONTEXT1
);
fwps_filter!(
    /// Run-time filter for callouts registered with `FwpsCalloutRegister2`,
    /// the version this driver uses.
    FWPS_FILTER2,
    FWPM_PROVIDER_CONTEXT2
);
fwps_filter!(
    /// Run-time filter for callouts registered with `FwpsCalloutRegister3`.
    FWPS_FILTER3,
    FWPM_PROVIDER_CONTEXT3
);

/// What classifyFn answers (`FWPS_CLASSIFY_OUT0`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FWPS_CLASSIFY_OUT0 {
    /// The verdict: `FWP_ACTION_BLOCK`, `FWP_ACTION_PERMIT`, `FWP_ACTION_CONTINUE`.
    pub actionType: FWP_ACTION_TYPE,
    /// Reserved for system use.
    pub outContext: u64,
    /// Reserved for system use.
    pub filterId: u64,
    /// `FWPS_RIGHT_ACTION_WRITE`: whether this callout may still write a verdict.
    pub rights: u32,
    /// `FWPS_CLASSIFY_OUT_FLAG_*`, e.g. ABSORB.
    pub flags: u32,
    /// Reserved for system use.
    pub reserved: u32,
}
