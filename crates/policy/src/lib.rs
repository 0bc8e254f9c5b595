//! The Conductor policy file, version 1: load, validate, compile.
//!
//! CONTRACT (used by `conductor-core` and the CLI; keep these signatures):
//! - [`load_file`], [`load_str`] → [`Policy`] or [`LoadError`]
//! - [`Policy::sha256`]
//! - [`LoadError::render`]: every problem as `file:line:col` with a caret

use std::path::Path;

/// A validated, compiled policy. Immutable; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    sha256: String,
}

impl Policy {
    /// `sha256:<hex>` of the policy file's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Every problem found in a policy file (all of them, not only the first).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid policy `{name}`: {} problem(s)", .count)]
pub struct LoadError {
    name: String,
    count: usize,
}

impl LoadError {
    /// Human rendering: one block per problem, `file:line:col`, the source line and a caret.
    pub fn render(&self, color: bool) -> String {
        let _ = color;
        format!("{self}")
    }
}

/// Load and compile the policy at `path` (files it references, such as gitleaks
/// rule files, are resolved relative to its directory).
pub fn load_file(path: &Path) -> Result<Policy, LoadError> {
    Err(LoadError {
        name: path.display().to_string(),
        count: 1,
    })
}

/// Load and compile policy text. `name` is used in diagnostics; `base_dir` resolves
/// referenced files (none allowed when `None`).
pub fn load_str(source: &str, name: &str, base_dir: Option<&Path>) -> Result<Policy, LoadError> {
    let _ = (source, base_dir);
    Err(LoadError {
        name: name.to_string(),
        count: 1,
    })
}
