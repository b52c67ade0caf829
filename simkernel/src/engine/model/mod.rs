//! Layer 0 of the engine: plain data and pure functions (layers, filter
//! and provider-context records, connections, classification outcomes,
//! packet bytes). Nothing here holds engine state or calls upwards.

pub mod classify_result;
pub mod connection;
pub mod layers;
pub mod packet_data;
pub mod records;
