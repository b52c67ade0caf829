//! The verdict a policy reached, before classify writes it out.
#![forbid(unsafe_code)]

use wfpcallout_wire::Verdict;

/// The verdict a policy reached, before it is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let the connection through.
    Permit,
    /// Refuse it.
    Block,
    /// Pended: BLOCK + ABSORB now, the real verdict at completion.
    Pended,
}

impl From<Verdict> for Decision {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Permit => Decision::Permit,
            Verdict::Block => Decision::Block,
        }
    }
}
