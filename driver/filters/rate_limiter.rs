//! The rate-limit policy's token bucket, as GCRA (the generic cell rate
//! algorithm): one atomic "theoretical arrival time" per filter, updated
//! with compare-and-swap, so classify never takes a lock and never needs
//! fractional tokens.
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

/// 100-ns ticks per second (the unit of `KeQueryUnbiasedInterruptTime`).
pub const TICKS_PER_SECOND: u64 = 10_000_000;

/// A token bucket of `burst` tokens refilled at `rate` tokens per second.
///
/// # Invariants
/// `interval >= 1` and `tolerance = interval * (burst - 1)`.
#[derive(Debug)]
pub struct RateLimiter {
    theoretical_arrival: AtomicU64,
    interval: u64,
    tolerance: u64,
}

impl RateLimiter {
    /// A bucket that starts full. `rate` and `burst` of 0 are treated as 1.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let interval = (TICKS_PER_SECOND / u64::from(rate_per_sec.max(1))).max(1);
        let tolerance = interval.saturating_mul(u64::from(burst.max(1)) - 1);
        Self { theoretical_arrival: AtomicU64::new(0), interval, tolerance }
    }

    /// Takes one token at time `now` (100-ns ticks); false when the bucket is
    /// empty.
    pub fn try_acquire(&self, now: u64) -> bool {
        let mut current = self.theoretical_arrival.load(Ordering::Relaxed);
        loop {
            let start = current.max(now);
            if start - now > self.tolerance {
                return false;
            }
            let next = start.saturating_add(self.interval);
            match self.theoretical_arrival.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let bucket = RateLimiter::new(10, 3);
        let t0 = 1_000 * TICKS_PER_SECOND;
        assert!(bucket.try_acquire(t0));
        assert!(bucket.try_acquire(t0));
        assert!(bucket.try_acquire(t0));
        assert!(!bucket.try_acquire(t0), "burst of 3 exhausted");
        // One token every 100 ms.
        assert!(!bucket.try_acquire(t0 + TICKS_PER_SECOND / 20));
        assert!(bucket.try_acquire(t0 + TICKS_PER_SECOND / 10));
        assert!(!bucket.try_acquire(t0 + TICKS_PER_SECOND / 10));
        // After a long idle the bucket is full again, never fuller.
        let later = t0 + 100 * TICKS_PER_SECOND;
        let passed = (0..10).filter(|_| bucket.try_acquire(later)).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn degenerate_parameters_do_not_panic() {
        let bucket = RateLimiter::new(0, 0);
        assert!(bucket.try_acquire(0));
        assert!(!bucket.try_acquire(0));
        let fast = RateLimiter::new(u32::MAX, u32::MAX);
        assert!(fast.try_acquire(u64::MAX));
    }
}
