//! Debug output on the IHVNETWORK component, so
//! `ed nt!Kd_IHVNETWORK_Mask 0xF` in WinDbg shows it by level. Messages are
//! formatted into a fixed stack buffer (no allocation, usable at
//! DISPATCH_LEVEL) and truncated if longer.
#![allow(unsafe_code)]

use crate::ffi::{
    DPFLTR_ERROR_LEVEL, DPFLTR_IHVNETWORK_ID, DPFLTR_INFO_LEVEL, DPFLTR_TRACE_LEVEL, DPFLTR_WARNING_LEVEL,
};
use core::fmt::{self, Write};

/// How loud a message is; maps onto the DbgPrintEx levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

const LINE_CAPACITY: usize = 256;

struct Line {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl Write for Line {
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

/// Formats and prints one line. Use the `log!` macro rather than this.
pub fn print(level: Level, args: fmt::Arguments<'_>) {
    let mut line = Line { bytes: [0; LINE_CAPACITY], len: 0 };
    let _ = line.write_str("wfpcallout: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    emit(level.dpfltr(), &line);
}

#[cfg(windows)]
fn emit(level: u32, line: &Line) {
    // SAFETY: "%s" consumes exactly one NUL-terminated string argument, and
    // line.bytes is NUL-terminated (write_str always leaves the last byte 0).
    unsafe { crate::ffi::DbgPrintEx(DPFLTR_IHVNETWORK_ID, level, c"%s".as_ptr().cast(), line.bytes.as_ptr()) };
}

#[cfg(not(windows))]
fn emit(level: u32, line: &Line) {
    // SAFETY: the pointer and length describe initialized bytes of `line`.
    unsafe { crate::ffi::WfpSimDbgPrint(DPFLTR_IHVNETWORK_ID, level, line.bytes.as_ptr(), line.len) };
}

/// `log!(Level::Info, "registered {} callouts", n)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        $crate::log::print($level, core::format_args!($($arg)*))
    };
}
