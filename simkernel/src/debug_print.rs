//! The debugger's output window: the driver's `DbgPrintEx` lines, kept for
//! tests to read and echoed to stderr when `WFPSIM_LOG` is set.

use std::collections::VecDeque;
use std::sync::Mutex;

/// One line the driver printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugLine {
    /// DbgPrintEx component id.
    pub component: u32,
    /// DbgPrintEx level.
    pub level: u32,
    /// The text, without the trailing newline.
    pub text: String,
}

static LINES: Mutex<VecDeque<DebugLine>> = Mutex::new(VecDeque::new());
/// Lines kept at most (oldest dropped), so storms cannot eat memory.
const MAX_LINES: usize = 10_000;

/// `DbgPrintEx(component, level, "%s", message)` without a C variadic.
///
/// # Safety
/// `message` must point to `length` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WfpSimDbgPrint(component: u32, level: u32, message: *const u8, length: usize) {
    let bytes = if message.is_null() {
        &[][..]
    } else {
        // SAFETY: the caller guarantees `length` readable bytes.
        unsafe { std::slice::from_raw_parts(message, length) }
    };
    let text = String::from_utf8_lossy(bytes).trim_end().to_string();
    if std::env::var_os("WFPSIM_LOG").is_some() {
        eprintln!("[dbg {component}/{level}] {text}");
    }
    let mut lines = LINES.lock().unwrap_or_else(|e| e.into_inner());
    if lines.len() >= MAX_LINES {
        lines.pop_front();
    }
    lines.push_back(DebugLine { component, level, text });
}

/// Every line printed since boot.
pub fn lines() -> Vec<DebugLine> {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
}

/// Whether any line contains `needle`.
pub fn contains(needle: &str) -> bool {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.text.contains(needle))
}

pub(crate) fn reset() {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
