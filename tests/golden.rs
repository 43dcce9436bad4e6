//! Golden tests of the pure core: for each `tests/golden/<case>/`, parse
//! `policy.toml`, read `inventory.json`, plan, and compare the rendered rules
//! of each family and the per-port verdicts with the `expected.*` files.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate
//! change; review the diff before committing it.

use std::fs;
use std::path::{Path, PathBuf};

use dockfw::firewall::iptables::render::rules_text;
use dockfw::inventory::Inventory;
use dockfw::plan::{exposures, plan};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/golden exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    cases
}

fn verdict_lines(case: &Path) -> String {
    let policy = dockfw::policy::parse(&case.join("policy.toml")).expect("valid policy");
    let inventory = load_inventory(case);
    exposures(&policy, &inventory)
        .iter()
        .map(|p| {
            format!(
                "{} {} {}:{}->{}/{} {:?} {} ({})\n",
                p.container,
                p.network,
                p.host_ip,
                p.host_port,
                p.container_port,
                p.proto,
                p.verdict,
                p.detail,
                p.why
            )
        })
        .collect()
}

fn load_inventory(case: &Path) -> Inventory {
    let text = fs::read_to_string(case.join("inventory.json")).expect("inventory.json");
    serde_json::from_str(&text).expect("inventory.json parses")
}

fn check(case: &Path, file: &str, actual: &str, failures: &mut Vec<String>) {
    let path = case.join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{}:\n--- expected\n{expected}--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn golden_cases_match() {
    let mut failures = Vec::new();
    for case in cases() {
        let policy = dockfw::policy::parse(&case.join("policy.toml")).expect("valid policy");
        let ruleset = plan(&policy, &load_inventory(&case));
        check(
            &case,
            "expected.v4",
            &rules_text(&ruleset.v4),
            &mut failures,
        );
        check(
            &case,
            "expected.v6",
            &rules_text(&ruleset.v6),
            &mut failures,
        );
        check(
            &case,
            "expected.verdicts",
            &verdict_lines(&case),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A policy without container selectors must not grow with the containers.
#[test]
fn selector_free_rules_do_not_grow_with_containers() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/default-deny-web");
    let policy = dockfw::policy::parse(&case.join("policy.toml")).expect("valid policy");
    let small = load_inventory(&case);
    let mut large = small.clone();
    let template = small.containers[0].clone();
    for i in 0..1000 {
        let mut c = template.clone();
        c.name = format!("clone-{i}");
        c.id = format!("{i:064x}");
        large.containers.push(c);
    }
    let (a, b) = (plan(&policy, &small), plan(&policy, &large));
    assert_eq!(a, b);
}
