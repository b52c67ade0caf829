//! Layer 2, per-filter state and policy: the context notifyFn attaches to
//! each filter, the fast-path word stored in `filter->context`, the rate
//! limiter, and the policies that decide from a context alone.

pub mod context_slots;
pub mod decision;
pub mod fast_path;
pub mod filter_context;
pub mod filter_counters;
pub mod policy;
pub mod rate_limiter;
