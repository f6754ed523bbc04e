//! Errors of the core: a stable slug, the field at fault and a one-line message.

use std::fmt;

/// A user-facing error: never a panic. `code` is a stable slug such as `invalid_value`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopoError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl TopoError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    /// `field` must be at least `min`; `value` is what was given.
    pub fn too_small(field: &str, value: impl fmt::Display, min: impl fmt::Display) -> Self {
        Self::new(
            "invalid_value",
            field,
            format!("`{field}` must be at least {min}, got {value}"),
        )
    }

    pub fn too_large(field: &str, value: impl fmt::Display, max: impl fmt::Display) -> Self {
        Self::new(
            "invalid_value",
            field,
            format!("`{field}` must be at most {max}, got {value}"),
        )
    }

    pub fn not_finite(field: &str, value: f64) -> Self {
        Self::new(
            "invalid_value",
            field,
            format!("`{field}` must be a finite positive number, got {value}"),
        )
    }
}

impl fmt::Display for TopoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TopoError {}

pub type Result<T> = std::result::Result<T, TopoError>;
