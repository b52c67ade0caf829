//! Layer 1, the filter engine's boundary: its functions and types (`ffi`),
//! classify-scoped views over the structures it lends (`filter_view`), our
//! callouts' identities (`callout_table`), packet copies and injection
//! (`injection`) and the management objects (`management`). Knows WFP,
//! not our policies; imports only `platform`.

pub mod callout_table;
pub mod ffi;
pub mod filter_view;
pub mod injection;
pub mod management;
