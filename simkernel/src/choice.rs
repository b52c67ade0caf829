//! Choices the engine makes where Microsoft's documentation allows more
//! than one behaviour (notifyFn at PASSIVE_LEVEL or DISPATCH_LEVEL, ...):
//! each is made at random, so over many runs the driver meets every
//! reading. The sequence is seeded once per process, from
//! `WFPCALLOUT_SIM_SEED` when set (to replay a run) or from the clock; the
//! seed is printed the first time a choice is made.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static STATE: AtomicU64 = AtomicU64::new(0);
static SEEDED: Once = Once::new();

fn seed_once() {
    SEEDED.call_once(|| {
        let seed = std::env::var("WFPCALLOUT_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("simulated kernel: choices seeded with {seed} (WFPCALLOUT_SIM_SEED={seed} replays them)");
        STATE.store(seed, Ordering::SeqCst);
    });
}

/// The next number of the sequence (splitmix64).
fn next() -> u64 {
    seed_once();
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fair coin.
pub(crate) fn coin() -> bool {
    next() & 1 == 1
}
