//! Debug output on the IHVNETWORK component, so
//! `ed nt!Kd_IHVNETWORK_Mask 0xF` in WinDbg shows it by level. Messages are
//! formatted into a fixed stack buffer (no allocation, usable at
//! DISPATCH_LEVEL) and truncated if longer.
//!
//! The driver's own gate ([`set_max_level`]) is checked by `log!` before
//! anything is formatted: a message above it costs one relaxed load and a
//! compare, never the formatting or the `DbgPrintEx` call (which would
//! only drop it after the line was built). The gate starts fully open, so
//! what reaches `DbgPrintEx` is unchanged until someone lowers it.
#![forbid(unsafe_code)]

use crate::platform::kernel::{
    DPFLTR_ERROR_LEVEL, DPFLTR_IHVNETWORK_ID, DPFLTR_INFO_LEVEL, DPFLTR_TRACE_LEVEL, DPFLTR_WARNING_LEVEL,
};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

/// How loud a message is; maps onto the DbgPrintEx levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is off but handled.
    Warning,
    /// Lifecycle events.
    Info,
    /// Per-classify detail.
    Trace,
}

impl Level {
    const fn dpfltr(self) -> u32 {
        match self {
            Level::Error => DPFLTR_ERROR_LEVEL,
            Level::Warning => DPFLTR_WARNING_LEVEL,
            Level::Info => DPFLTR_INFO_LEVEL,
            Level::Trace => DPFLTR_TRACE_LEVEL,
        }
    }
}

/// `MAX_LEVEL` value that lets nothing through.
const GATE_CLOSED: u8 = 0;

/// The most verbose level printed, as `Level as u8 + 1`; `GATE_CLOSED`
/// prints nothing. Read on every `log!` (one relaxed load, no shared write).
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Trace as u8 + 1);

/// Sets the most verbose level the driver prints (`None`: nothing at all).
/// Callable at any IRQL; takes effect for the next `log!` on every
/// processor (relaxed: a message racing the change may go either way).
pub fn set_max_level(level: Option<Level>) {
    MAX_LEVEL.store(level.map_or(GATE_CLOSED, |level| level as u8 + 1), Ordering::Relaxed);
}

/// The most verbose level printed now (`None`: logging is off).
pub fn max_level() -> Option<Level> {
    match MAX_LEVEL.load(Ordering::Relaxed) {
        1 => Some(Level::Error),
        2 => Some(Level::Warning),
        3 => Some(Level::Info),
        4 => Some(Level::Trace),
        _ => None,
    }
}

/// Whether a `level` message would be printed: what `log!` checks before
/// it formats anything.
#[inline(always)]
pub fn enabled(level: Level) -> bool {
    (level as u8) < MAX_LEVEL.load(Ordering::Relaxed)
}

const LINE_CAPACITY: usize = 256;

/// One formatted debug-output line, NUL-terminated, truncated at
/// [`LINE_CAPACITY`] - 1 bytes.
struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep one byte for the terminating NUL; truncate silently.
        let room = LINE_CAPACITY - 1 - self.len;
        let take = s.len().min(room);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + take), s.as_bytes().get(..take)) {
            dst.copy_from_slice(src);
            self.len += take;
        }
        Ok(())
    }
}

/// Formats and prints one line, whatever the gate says. Use the `log!`
/// macro rather than this: it checks [`enabled`] first.
#[cold]
#[inline(never)]
pub fn print(level: Level, args: fmt::Arguments<'_>) {
    let mut line = LineBuffer { bytes: [0; LINE_CAPACITY], len: 0 };
    let _ = line.write_str("wfpcallout: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    emit(level.dpfltr(), &line);
}

fn emit(level: u32, line: &LineBuffer) {
    crate::platform::kernel::debug_print(DPFLTR_IHVNETWORK_ID, level, &line.bytes);
}

/// `log!(Level::Info, "registered {} callouts", n)`. The arguments are
/// neither evaluated nor formatted unless the level is [`enabled`].
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {{
        let level: $crate::platform::log::Level = $level;
        if $crate::platform::log::enabled(level) {
            $crate::platform::log::print(level, core::format_args!($($arg)*))
        }
    }};
}
