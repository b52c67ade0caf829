//! Layer 3 of the engine: the entry points the driver and the tests call
//! that drive the layers below: callout registration, the management API,
//! flows, completion of pended operations, packet injection and
//! reauthorization (the last four classify again).

pub mod callout_api;
pub mod completion;
pub mod flows;
pub mod injection;
pub mod management_api;
pub mod reauthorize;
