//! A small JSON value and its text, for `--json`: scripts read wfpctl's
//! output with any JSON parser instead of splitting columns.
//!
//! Each command prints one JSON document on one line (the agent prints one
//! per request: JSON Lines). Object members keep the order they were
//! built in, so the output is stable; the field names of each command are
//! documented in `docs/WALKTHROUGH.md` ("Scripting with --json").
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};

/// A JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`: unknown or not applicable.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer (every number wfpctl prints is one).
    Number(u64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; members in insertion order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An empty object, to fill with [`Json::with`].
    pub fn object() -> Json {
        Json::Object(Vec::new())
    }

    /// Adds a member to an object (does nothing to other values).
    pub fn with(mut self, name: &str, value: impl Into<Json>) -> Json {
        if let Json::Object(members) = &mut self {
            members.push((name.to_string(), value.into()));
        }
        self
    }

    /// A string value.
    pub fn string(text: impl Into<String>) -> Json {
        Json::String(text.into())
    }

    /// The member `name` of an object, if any (for tests and callers that
    /// build on a value).
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(key, _)| key == name).map(|(_, value)| value),
            _ => None,
        }
    }
}

impl From<bool> for Json {
    fn from(value: bool) -> Json {
        Json::Bool(value)
    }
}

impl From<u64> for Json {
    fn from(value: u64) -> Json {
        Json::Number(value)
    }
}

impl From<u32> for Json {
    fn from(value: u32) -> Json {
        Json::Number(u64::from(value))
    }
}

impl From<u16> for Json {
    fn from(value: u16) -> Json {
        Json::Number(u64::from(value))
    }
}

impl From<u8> for Json {
    fn from(value: u8) -> Json {
        Json::Number(u64::from(value))
    }
}

impl From<usize> for Json {
    fn from(value: usize) -> Json {
        Json::Number(u64::try_from(value).unwrap_or(u64::MAX))
    }
}

impl From<&str> for Json {
    fn from(value: &str) -> Json {
        Json::String(value.to_string())
    }
}

impl From<String> for Json {
    fn from(value: String) -> Json {
        Json::String(value)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(value: Option<T>) -> Json {
        value.map_or(Json::Null, Into::into)
    }
}

impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(values: Vec<T>) -> Json {
        Json::Array(values.into_iter().map(Into::into).collect())
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for character in text.chars() {
        match character {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            control if u32::from(control) < 0x20 => write!(f, "\\u{:04x}", u32::from(control))?,
            other => f.write_char(other)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Json {
    /// Compact JSON text (no spaces, no newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(value) => write!(f, "{value}"),
            Json::Number(value) => write!(f, "{value}"),
            Json::String(text) => write_string(f, text),
            Json::Array(values) => {
                f.write_char('[')?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{value}")?;
                }
                f.write_char(']')
            }
            Json::Object(members) => {
                f.write_char('{')?;
                for (index, (name, value)) in members.iter().enumerate() {
                    if index > 0 {
                        f.write_char(',')?;
                    }
                    write_string(f, name)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text() {
        let value = Json::object()
            .with("id", 70_001u64)
            .with("name", "wfpcallout: \"web\"\\\n\u{1}é")
            .with("none", Option::<u64>::None)
            .with("ok", true)
            .with("list", vec![1u32, 2])
            .with("empty", Json::Array(Vec::new()))
            .with("nested", Json::object().with("a", false));
        assert_eq!(
            value.to_string(),
            r#"{"id":70001,"name":"wfpcallout: \"web\"\\\n\u0001é","none":null,"ok":true,"list":[1,2],"empty":[],"nested":{"a":false}}"#
        );
        assert_eq!(value.get("ok"), Some(&Json::Bool(true)));
        assert_eq!(value.get("missing"), None);
        assert_eq!(Json::Number(1).with("x", 1u8), Json::Number(1));
        assert_eq!(Json::object().to_string(), "{}");
        assert_eq!(Json::from(u64::MAX).to_string(), "18446744073709551615");
    }
}
