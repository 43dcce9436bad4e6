//! Container-name globs (stub, to be implemented).

/// A validated container-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn matches(&self, name: &str) -> bool {
        self.0 == name
    }
}
