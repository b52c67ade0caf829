//! Callout registration: the structure handed to `FwpsCalloutRegisterN` and
//! the three callback signatures.

use crate::{
    FWPS_CLASSIFY_OUT0, FWPS_FILTER0, FWPS_FILTER1, FWPS_FILTER2, FWPS_FILTER3, FWPS_INCOMING_METADATA_VALUES0,
    FWPS_INCOMING_VALUES0, GUID, NTSTATUS,
};
use core::ffi::c_void;

/// Why notifyFn is called (`FWPS_CALLOUT_NOTIFY_TYPE`, an `int`-sized enum).
pub type FWPS_CALLOUT_NOTIFY_TYPE = i32;

/// classifyFn for `FwpsCalloutRegister0` (no classify context).
pub type FWPS_CALLOUT_CLASSIFY_FN0 = Option<
    unsafe extern "system" fn(
        inFixedValues: *const FWPS_INCOMING_VALUES0,
        inMetaValues: *const FWPS_INCOMING_METADATA_VALUES0,
        layerData: *mut c_void,
        filter: *const FWPS_FILTER0,
        flowContext: u64,
        classifyOut: *mut FWPS_CLASSIFY_OUT0,
    ),
>;

macro_rules! classify_fn {
    ($(#[$doc:meta])* $name:ident, $filter:ty) => {
        $(#[$doc])*
        pub type $name = Option<
            unsafe extern "system" fn(
                inFixedValues: *const FWPS_INCOMING_VALUES0,
                inMetaValues: *const FWPS_INCOMING_METADATA_VALUES0,
                layerData: *mut c_void,
                classifyContext: *const c_void,
                filter: *const $filter,
                flowContext: u64,
                classifyOut: *mut FWPS_CLASSIFY_OUT0,
            ),
        >;
    };
}
classify_fn!(
    /// classifyFn for `FwpsCalloutRegister1`.
    FWPS_CALLOUT_CLASSIFY_FN1,
    FWPS_FILTER1
);
classify_fn!(
    /// classifyFn for `FwpsCalloutRegister2`, the version this driver uses.
    FWPS_CALLOUT_CLASSIFY_FN2,
    FWPS_FILTER2
);
classify_fn!(
    /// classifyFn for `FwpsCalloutRegister3`.
    FWPS_CALLOUT_CLASSIFY_FN3,
    FWPS_FILTER3
);

macro_rules! notify_fn {
    ($(#[$doc:meta])* $name:ident, $filter:ty) => {
        $(#[$doc])*
        pub type $name = Option<
            unsafe extern "system" fn(
                notifyType: FWPS_CALLOUT_NOTIFY_TYPE,
                filterKey: *const GUID,
                filter: *mut $filter,
            ) -> NTSTATUS,
        >;
    };
}
notify_fn!(
    /// notifyFn for `FwpsCalloutRegister0`.
    FWPS_CALLOUT_NOTIFY_FN0,
    FWPS_FILTER0
);
notify_fn!(
    /// notifyFn for `FwpsCalloutRegister1`.
    FWPS_CALLOUT_NOTIFY_FN1,
    FWPS_FILTER1
);
notify_fn!(
    /// notifyFn for `FwpsCalloutRegister2`: `filterKey` is NULL on DELETE.
    FWPS_CALLOUT_NOTIFY_FN2,
    FWPS_FILTER2
);
notify_fn!(
    /// notifyFn for `FwpsCalloutRegister3`.
    FWPS_CALLOUT_NOTIFY_FN3,
    FWPS_FILTER3
);

/// flowDeleteFn: the engine is done with a flow that carries our context.
pub type FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0 =
    Option<unsafe extern "system" fn(layerId: u16, calloutId: u32, flowContext: u64)>;

macro_rules! fwps_callout {
    ($(#[$doc:meta])* $name:ident, $classify:ty, $notify:ty) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct $name {
            /// Our key; filters name the callout by it.
            pub calloutKey: GUID,
            /// `FWP_CALLOUT_FLAG_*`.
            pub flags: u32,
            /// Called for every classification that reaches a filter naming us.
            pub classifyFn: $classify,
            /// Called when such a filter is added or deleted.
            pub notifyFn: $notify,
            /// Called when a flow carrying our context ends (may be None).
            pub flowDeleteFn: FWPS_CALLOUT_FLOW_DELETE_NOTIFY_FN0,
        }
    };
}
fwps_callout!(
    /// `FWPS_CALLOUT0`, for `FwpsCalloutRegister0`.
    FWPS_CALLOUT0,
    FWPS_CALLOUT_CLASSIFY_FN0,
    FWPS_CALLOUT_NOTIFY_FN0
);
fwps_callout!(
    /// `FWPS_CALLOUT1`, for `FwpsCalloutRegister1`.
    FWPS_CALLOUT1,
    FWPS_CALLOUT_CLASSIFY_FN1,
    FWPS_CALLOUT_NOTIFY_FN1
);
fwps_callout!(
    /// `FWPS_CALLOUT2`, for `FwpsCalloutRegister2` (Windows 8 and later).
    FWPS_CALLOUT2,
    FWPS_CALLOUT_CLASSIFY_FN2,
    FWPS_CALLOUT_NOTIFY_FN2
);
fwps_callout!(
    /// `FWPS_CALLOUT3`, for `FwpsCalloutRegister3`.
    FWPS_CALLOUT3,
    FWPS_CALLOUT_CLASSIFY_FN3,
    FWPS_CALLOUT_NOTIFY_FN3
);
