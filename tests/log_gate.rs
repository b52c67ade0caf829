//! Logging costs nothing when off: `log!` checks the driver's level gate
//! before it evaluates or formats its arguments, so a message the gate
//! drops is never built (and never reaches `DbgPrintEx`). Its own test
//! binary, because the gate is global.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use core::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use wfpcallout::platform::log::{self, Level};
use wfpcallout_scenario::{Harness, Layer, PolicySource};
use wfpcallout_simkernel::debug_print;
use wfpcallout_wire::{Label, LogLevel, PolicyAction, PolicyRepr};

/// Counts how often it is formatted.
struct Probe<'a>(&'a AtomicUsize);

impl fmt::Display for Probe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fetch_add(1, Ordering::Relaxed);
        f.write_str("probe")
    }
}

/// The gate and the debug output are global: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Lines containing `needle`. Each test uses its own markers, none a part
/// of another's (the lines are one record for the whole binary, and the
/// tests run in any order).
fn lines_with(needle: &str) -> usize {
    debug_print::lines().iter().filter(|l| l.text.contains(needle)).count()
}

#[test]
fn messages_above_the_gate_are_neither_formatted_nor_printed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let formatted = AtomicUsize::new(0);
    let evaluated = AtomicUsize::new(0);
    let argument = || {
        evaluated.fetch_add(1, Ordering::Relaxed);
        Probe(&formatted)
    };
    log::set_max_level(None);
    assert_eq!(log::max_level(), None);
    for level in [Level::Error, Level::Warning, Level::Info, Level::Trace] {
        wfpcallout::log!(level, "gate-closed {}", argument());
    }
    assert_eq!((evaluated.load(Ordering::Relaxed), formatted.load(Ordering::Relaxed)), (0, 0));
    assert_eq!(lines_with("gate-closed"), 0);

    log::set_max_level(Some(Level::Warning));
    assert_eq!(log::max_level(), Some(Level::Warning));
    for level in [Level::Error, Level::Warning, Level::Info, Level::Trace] {
        wfpcallout::log!(level, "gate-warning {}", argument());
    }
    assert_eq!(formatted.load(Ordering::Relaxed), 2, "Error and Warning pass, Info and Trace do not");
    assert_eq!(evaluated.load(Ordering::Relaxed), 2);
    assert_eq!(lines_with("gate-warning probe"), 2);

    log::set_max_level(Some(Level::Trace));
    wfpcallout::log!(Level::Trace, "gate-open {}", argument());
    assert_eq!(formatted.load(Ordering::Relaxed), 3);
    assert_eq!(lines_with("gate-open probe"), 1);
}

/// The per-classify case the gate exists for: an audit filter whose policy
/// asks for a log line per connection prints it only while the gate lets
/// Info through, and counts the audit either way.
#[test]
fn an_audit_filter_logs_only_through_an_open_gate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let harness = Harness::load();
    let policy =
        PolicyRepr { action: PolicyAction::Audit, log_level: LogLevel::Info, label: Label::new("gate-audit").unwrap() };
    let id = harness.add_filter(Layer::ConnectV4, PolicySource::Policy(&policy)).unwrap();
    let marker = "(gate-audit) permitted";

    log::set_max_level(Some(Level::Warning));
    assert!(harness.classify(Layer::ConnectV4, id, 443).permitted());
    assert_eq!(lines_with(marker), 0, "Info is above the gate");

    log::set_max_level(Some(Level::Info));
    assert!(harness.classify(Layer::ConnectV4, id, 443).permitted());
    assert_eq!(lines_with(marker), 1);

    assert_eq!(harness.counters(id).unwrap().audited, 2, "counted whether logged or not");
    log::set_max_level(Some(Level::Trace));
    harness.delete_filter(id).unwrap();
    harness.unload_and_check();
}

/// The gate as an administrator sets it: the control device's log-level
/// IOCTL decodes its input strictly (a refused buffer leaves the gate as
/// it was) and the level it sets is the one `log!` checks.
#[test]
fn the_log_level_ioctl_sets_the_gate() {
    use wfpcallout::control::ioctls::{SET_LOG_LEVEL, dispatch_ioctl};
    use wfpcallout::platform::status::NtStatus;
    use wfpcallout_wire::LogGateRepr;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let set = |level: LogLevel| dispatch_ioctl(SET_LOG_LEVEL, &LogGateRepr { max_level: level }.to_bytes(), &mut []);
    log::set_max_level(Some(Level::Trace));
    for bad in [&[][..], &[1, 0, 0], &[1, 0, 0, 0, 0], &[1, 0, 1, 0], &[5, 0, 0, 0], &[0xFF, 0, 0, 0]] {
        assert_eq!(dispatch_ioctl(SET_LOG_LEVEL, bad, &mut []), Err(NtStatus::INVALID_PARAMETER), "{bad:?}");
        assert_eq!(log::max_level(), Some(Level::Trace), "refused: the gate is unchanged");
    }

    let formatted = AtomicUsize::new(0);
    assert_eq!(set(LogLevel::Warning), Ok(0));
    assert_eq!(log::max_level(), Some(Level::Warning));
    wfpcallout::log!(Level::Info, "ioctl-level-info {}", Probe(&formatted));
    wfpcallout::log!(Level::Warning, "ioctl-level-warning {}", Probe(&formatted));
    assert_eq!(formatted.load(Ordering::Relaxed), 1, "the Info line was not formatted");
    assert_eq!((lines_with("ioctl-level-info"), lines_with("ioctl-level-warning probe")), (0, 1));

    assert_eq!(set(LogLevel::Off), Ok(0));
    assert_eq!(log::max_level(), None);
    wfpcallout::log!(Level::Error, "ioctl-level-off {}", Probe(&formatted));
    assert_eq!((formatted.load(Ordering::Relaxed), lines_with("ioctl-level-off")), (1, 0));

    for (level, expected) in
        [(LogLevel::Error, Level::Error), (LogLevel::Info, Level::Info), (LogLevel::Trace, Level::Trace)]
    {
        assert_eq!(set(level), Ok(0));
        assert_eq!(log::max_level(), Some(expected));
    }
}
