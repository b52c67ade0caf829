//! How the user-mode tools write things for people: a verdict, a log level
//! and a policy action in words, NTSTATUS codes by name, and aligned text
//! tables.
//!
//! wfpctl and the scenario runner both print these (the scenario writes a
//! policy as `wfpctl filter list` does, so an engineer reads one wording),
//! and tests compare their output with exact text, so each word and each
//! layout rule is written here once rather than kept in step by hand. It lives in this crate, behind
//! `std`, because both tools already depend on it with `std` while the
//! scenario does not depend on wfpctl (the fuzz targets and the benchmark
//! use the scenario without wfpctl and its command-line parser): no other
//! crate had to be added to both. The driver builds without `std`, so none
//! of this is in its surface.
#![forbid(unsafe_code)]

use core::fmt::Write as _;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use crate::{LogLevel, PolicyAction, Verdict};

/// The action's command-line name: `permit`, `rate-limit`, ...
pub fn action_name(action: &PolicyAction) -> &'static str {
    match action {
        PolicyAction::Permit => "permit",
        PolicyAction::Block => "block",
        PolicyAction::Audit => "audit",
        PolicyAction::RateLimit { .. } => "rate-limit",
        PolicyAction::Ask { .. } => "ask",
    }
}

/// A verdict's name: `permit` or `block`.
pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Permit => "permit",
        Verdict::Block => "block",
    }
}

/// A log level's name: `off`, `error`, ...
pub fn log_level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Off => "off",
        LogLevel::Error => "error",
        LogLevel::Warning => "warning",
        LogLevel::Info => "info",
        LogLevel::Trace => "trace",
    }
}

/// The action with its parameters: `rate-limit 10/s burst 20`,
/// `ask 5000 ms, else block`.
pub fn describe_action(action: &PolicyAction) -> String {
    match action {
        PolicyAction::RateLimit { rate_per_sec, burst } => format!("rate-limit {rate_per_sec}/s burst {burst}"),
        PolicyAction::Ask { timeout_ms, default_verdict } => {
            format!("ask {timeout_ms} ms, else {}", verdict_name(*default_verdict))
        }
        other => action_name(other).to_string(),
    }
}

/// The NTSTATUS codes the driver and the (simulated) filter engine return,
/// with their `ntstatus.h` names.
pub const NTSTATUS_NAMES: [(u32, &str); 19] = [
    (0x0000_0000, "STATUS_SUCCESS"),
    (0xC000_0001, "STATUS_UNSUCCESSFUL"),
    (0xC000_000D, "STATUS_INVALID_PARAMETER"),
    (0xC000_0010, "STATUS_INVALID_DEVICE_REQUEST"),
    (0xC000_0023, "STATUS_BUFFER_TOO_SMALL"),
    (0xC000_0225, "STATUS_NOT_FOUND"),
    (0xC000_0206, "STATUS_INVALID_BUFFER_SIZE"),
    (0xC000_009A, "STATUS_INSUFFICIENT_RESOURCES"),
    (0xC000_0184, "STATUS_INVALID_DEVICE_STATE"),
    (0xC000_090B, "STATUS_BAD_DATA"),
    (0xC022_0001, "STATUS_FWP_CALLOUT_NOT_FOUND"),
    (0xC022_0003, "STATUS_FWP_FILTER_NOT_FOUND"),
    (0xC022_0004, "STATUS_FWP_LAYER_NOT_FOUND"),
    (0xC022_0005, "STATUS_FWP_PROVIDER_NOT_FOUND"),
    (0xC022_0006, "STATUS_FWP_PROVIDER_CONTEXT_NOT_FOUND"),
    (0xC022_0007, "STATUS_FWP_SUBLAYER_NOT_FOUND"),
    (0xC022_0009, "STATUS_FWP_ALREADY_EXISTS"),
    (0xC022_000A, "STATUS_FWP_IN_USE"),
    (0xC022_002C, "STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER"),
];

/// The name of an NTSTATUS code in [`NTSTATUS_NAMES`] (`STATUS_BAD_DATA`
/// for `0xC000090B`), or `None`.
pub fn ntstatus_name(code: u32) -> Option<&'static str> {
    NTSTATUS_NAMES.iter().find(|(value, _)| *value == code).map(|(_, name)| *name)
}

/// A plain text table: an optional header line, then one line per row;
/// columns separated by two spaces, each as wide as its widest cell (the
/// header's included), numbers right-aligned; no trailing spaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Each column's header (empty when there is no header line) and
    /// whether it is right-aligned.
    columns: Vec<(&'static str, bool)>,
    /// Whether [`Table::render`] writes the header line.
    header: bool,
    /// Written before every line.
    indent: &'static str,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header line: `columns` are (header, right-aligned).
    pub fn new(columns: &[(&'static str, bool)]) -> Table {
        Table { columns: columns.to_vec(), header: true, indent: "", rows: Vec::new() }
    }

    /// A table without a header line: `right[i]` right-aligns column `i`.
    pub fn without_header(right: &[bool]) -> Table {
        Table { columns: right.iter().map(|right| ("", *right)).collect(), header: false, indent: "", rows: Vec::new() }
    }

    /// Writes `indent` before every line (the scenario indents its report).
    pub fn indented(self, indent: &'static str) -> Table {
        Table { indent, ..self }
    }

    /// Adds a row; cells beyond the table's columns are not shown.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as text, every line ending in `\n`.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(name, _)| name.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|(name, _)| (*name).to_string()).collect();
        let header = if self.header { Some(&header) } else { None };
        let mut text = String::new();
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::from(self.indent);
            for (index, ((cell, width), (_, right))) in row.iter().zip(&widths).zip(&self.columns).enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                // Writing to a String cannot fail.
                let _ = if *right { write!(line, "{cell:>width$}") } else { write!(line, "{cell:<width$}") };
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn words() {
        assert_eq!(describe_action(&PolicyAction::Audit), "audit");
        assert_eq!(
            describe_action(&PolicyAction::RateLimit { rate_per_sec: 10, burst: 20 }),
            "rate-limit 10/s burst 20"
        );
        assert_eq!(
            describe_action(&PolicyAction::Ask { timeout_ms: 5_000, default_verdict: Verdict::Block }),
            "ask 5000 ms, else block"
        );
        assert_eq!(log_level_name(LogLevel::Warning), "warning");
        assert_eq!(verdict_name(Verdict::Permit), "permit");
    }

    #[test]
    fn ntstatus_names() {
        assert_eq!(ntstatus_name(0xC000_090B), Some("STATUS_BAD_DATA"));
        assert_eq!(ntstatus_name(0xC022_0005), Some("STATUS_FWP_PROVIDER_NOT_FOUND"));
        assert_eq!(ntstatus_name(0x0000_1234), None);
    }

    #[test]
    fn tables() {
        let mut table = Table::new(&[("NAME", false), ("N", true), ("NOTE", false)]);
        table.push(vec!["a".to_string(), "10".to_string(), String::new()]);
        table.push(vec!["longer".to_string(), "7".to_string(), "x".to_string()]);
        assert_eq!(table.render(), "NAME     N  NOTE\na       10\nlonger   7  x\n");
        let mut bare = Table::without_header(&[false, false]).indented("  ");
        bare.push(vec!["key".to_string(), "value".to_string()]);
        bare.push(vec!["k".to_string(), "v".to_string()]);
        assert_eq!(bare.render(), "  key  value\n  k    v\n");
    }
}
