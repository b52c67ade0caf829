//! The outcome of one classification, as the engine reports it to a test
//! and keeps it for pended operations and reinjections.

use fwps_types::*;

/// The outcome of one classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifyResult {
    /// `FWP_ACTION_PERMIT` or `FWP_ACTION_BLOCK`.
    pub action: u32,
    /// Whether the write right ended cleared (a hard decision).
    pub hard: bool,
    /// Whether ABSORB was set with the BLOCK.
    pub absorbed: bool,
    /// The filter that decided, if any matched.
    pub decided_by: Option<u64>,
    /// How many callouts were invoked.
    pub callouts_invoked: u32,
    /// The pended operation, if a callout pended this classification.
    pub pended: Option<usize>,
    /// Whether a callout vetoed a hard permit (BLOCK written without the
    /// write right, "Filter Arbitration").
    pub vetoed: bool,
}

impl ClassifyResult {
    /// What no matching filter gives: PERMIT.
    pub const NO_MATCH: Self = Self {
        action: fwp::FWP_ACTION_PERMIT,
        hard: false,
        absorbed: false,
        decided_by: None,
        callouts_invoked: 0,
        pended: None,
        vetoed: false,
    };

    /// True for PERMIT.
    pub fn permitted(&self) -> bool {
        self.action == fwp::FWP_ACTION_PERMIT
    }
}
