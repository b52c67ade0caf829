//! Layer 0, the platform: kernel services with no knowledge of WFP or of
//! policy (ntoskrnl's declarations, pool, locks, the
//! unload rundown, clock, logging, status codes, the ETW provider, a
//! generic id table). Imports nothing from the layers above.

pub mod counter_set;
pub mod etw;
pub mod id_table;
pub mod kernel;
pub mod log;
pub mod pool;
pub mod rundown;
pub mod spin_lock;
pub mod status;
pub mod sync;
pub mod wide;
