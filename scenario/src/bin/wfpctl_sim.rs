//! `wfpctl-sim`: the try-out (placeholder while the session is written).
fn main() {}
