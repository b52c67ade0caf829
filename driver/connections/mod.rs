//! Layer 3, state per connection: flow contexts at ALE_FLOW_ESTABLISHED
//! (`flows`) and the verdicts kept for connections an agent decided
//! (`connection_verdicts`).

pub mod connection_verdicts;
pub mod flows;
