//! Raw serde form of policy.toml (stub, to be implemented).

use std::path::Path;

use super::{Diagnostic, Policy};

pub(super) fn parse(_text: &str, _path: &Path) -> Result<Policy, Vec<Diagnostic>> {
    Err(Vec::new())
}
