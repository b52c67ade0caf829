//! The driver's own unload rundown (`driver/platform/rundown.rs`) under the
//! interleavings of loom: a callback that got in (its guard) is done with
//! what it uses before `close_and_wait` returns and unload frees it, and a
//! callback that comes after the close does not get in. The memory a
//! callback reads stands for a filter context: loom reports a free that is
//! not ordered after the last read.
//!
//! Built only with `--cfg loom`, which switches the rundown's counters to
//! loom's (`driver/platform/sync.rs`). Run optimised:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p wfpcallout --release --test loom_rundown -- --test-threads 1
//! ```
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use wfpcallout::platform::rundown::Rundown;

/// What a callback reads while inside, and unload frees after the close.
struct Context(UnsafeCell<u64>);

// SAFETY: access is ordered by the rundown under test; loom checks it.
unsafe impl Sync for Context {}

/// A callback on `processor`: reads the context if the rundown lets it in.
fn callback(rundown: &Rundown, context: &Context, processor: usize) -> bool {
    let Some(inside) = rundown.enter_on(processor) else { return false };
    // SAFETY: loom checks this read against unload's write below.
    let value = context.0.with(|value| unsafe { *value });
    assert_eq!(value, 1, "a callback inside the rundown saw the context freed");
    drop(inside);
    true
}

#[test]
fn unload_frees_only_after_every_callback_inside_has_left() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loom::model(|| {
        let rundown = Arc::new(Rundown::new());
        // Every counter is created before it is shared (sync.rs: first use).
        rundown.reopen();
        let context = Arc::new(Context(UnsafeCell::new(1)));
        let callbacks: Vec<_> = [0, 1]
            .into_iter()
            .map(|processor| {
                let (rundown, context) = (rundown.clone(), context.clone());
                thread::spawn(move || callback(&rundown, &context, processor))
            })
            .collect();
        let _drained = rundown.close_and_wait();
        // Unload frees the context: loom reports it if a callback's read is
        // not ordered before this write.
        // SAFETY: loom checks this write against the callbacks' reads.
        context.0.with_mut(|value| unsafe { *value = 0 });
        for callback in callbacks {
            callback.join().unwrap();
        }
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    println!("loom test rundown: {} interleavings", RUNS.load(std::sync::atomic::Ordering::Relaxed));
}

#[test]
fn a_callback_after_the_close_does_not_get_in_until_reopen() {
    loom::model(|| {
        let rundown = Arc::new(Rundown::new());
        rundown.reopen();
        let context = Arc::new(Context(UnsafeCell::new(1)));
        let _drained = rundown.close_and_wait();
        let late = {
            let (rundown, context) = (rundown.clone(), context.clone());
            thread::spawn(move || callback(&rundown, &context, 3))
        };
        assert!(!late.join().unwrap(), "a callback got in after the close");
        rundown.reopen();
        assert!(callback(&rundown, &context, 3), "reopened: callbacks get in again");
    });
}

/// Lookup mode ending while unload closes the rundown: whatever the
/// interleaving, the gate stays closed for the fast path and every other
/// entry (clearing one reason never clears the sign bit the other still
/// needs).
#[test]
fn lookup_mode_ending_during_unload_never_reopens_the_fast_path() {
    loom::model(|| {
        let rundown = Arc::new(Rundown::new());
        rundown.reopen();
        rundown.set_lookup(true);
        let lookup = {
            let rundown = rundown.clone();
            thread::spawn(move || rundown.set_lookup(false))
        };
        let drained = rundown.close_and_wait();
        lookup.join().unwrap();
        assert!(drained.proves(&rundown), "still closed");
        assert!(!rundown.lookup_on());
        assert!(rundown.enter_fast_on(0).is_none(), "the fast path stays refused once closed");
        assert!(rundown.enter_on(1).is_none(), "and every other entry");
    });
}
