//! The golden cases, `tests/golden/<case>/` (`policy.toml` + `inventory.json`), loaded
//! one way for every runner that plans them: `tests/golden.rs` (the iptables listings and
//! the verdicts), `tests/cli.rs` (`dockfw plan --json` on them) and the nftables driver's
//! tests (`tests/golden-nft/<case>.nft`, and applying each plan in a namespace).
//!
//! Included with `#[path]` by each: inside the crate and outside it the library has other
//! paths, so the includer brings `Policy`, `Inventory` and `parse_policy` into scope.

use std::path::{Path, PathBuf};

use super::{Inventory, Policy, parse_policy};

/// Every `tests/golden/<case>/` directory, sorted by name.
pub fn golden_cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    cases
}

/// A case's validated policy and its inventory.
pub fn load(case: &Path) -> (Policy, Inventory) {
    let policy = parse_policy(&case.join("policy.toml")).expect("valid policy");
    let text = std::fs::read_to_string(case.join("inventory.json")).expect("inventory.json");
    let inventory = serde_json::from_str(&text).expect("inventory.json parses");
    (policy, inventory)
}
