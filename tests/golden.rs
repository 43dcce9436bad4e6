//! Golden tests of the pure core: for each `tests/golden/<case>/`, parse
//! `policy.toml`, read `inventory.json`, plan, and compare the rendered sets
//! and rules of each family (as the iptables driver writes them) and the
//! per-port verdicts with the `expected.*` files. The cases are loaded by
//! `tests/support/golden_cases.rs`, the loader the nftables runner
//! (`tests/golden-nft`, in `src/firewall/nftables/render.rs`) and `tests/cli.rs`
//! share.
//!
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files after a deliberate
//! change; review the diff before committing it.

use std::fs;
use std::path::Path;

use dockfw::firewall::iptables::render::{listing, rules_text};
use dockfw::inventory::Inventory;
use dockfw::plan::{exposures, plan};
use dockfw::policy::{Policy, parse as parse_policy};

#[path = "support/golden_cases.rs"]
mod golden_cases;

use golden_cases::{golden_cases, load};

fn verdict_lines(policy: &Policy, inventory: &Inventory) -> String {
    exposures(policy, inventory)
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

/// The directory of the golden case `name`.
fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn golden_cases_match() {
    let mut failures = Vec::new();
    for case in golden_cases() {
        let (policy, inventory) = load(&case);
        let ruleset = plan(&policy, &inventory);
        check(&case, "expected.v4", &listing(&ruleset.v4), &mut failures);
        check(&case, "expected.v6", &listing(&ruleset.v6), &mut failures);
        let verdicts = verdict_lines(&policy, &inventory);
        check(&case, "expected.verdicts", &verdicts, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A policy without container selectors must not grow with the containers.
#[test]
fn selector_free_rules_do_not_grow_with_containers() {
    let (policy, small) = load(&golden("default-deny-web"));
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

/// Selected containers are set elements: 5 or 500 of them give the same
/// rules and sets, only the sets' elements differ.
#[test]
fn selector_rules_do_not_grow_with_containers() {
    let (policy, base) = load(&golden("sets"));
    let template = base
        .containers
        .iter()
        .find(|c| c.name == "db-1")
        .expect("db-1 in the case")
        .clone();
    let with_selected = |n: usize| {
        let mut inventory = base.clone();
        for i in 0..n {
            let mut c = template.clone();
            c.name = format!("db-clone-{i}");
            c.id = format!("{i:064x}");
            let attachment = &mut c.attachments[0];
            attachment.ipv4 = Some([172, 18, (i / 250) as u8, (i % 250 + 2) as u8].into());
            attachment.ipv6 = Some(format!("fd00:18::{i:x}").parse().expect("v6"));
            inventory.containers.push(c);
        }
        inventory
    };
    let (few, many) = (
        plan(&policy, &with_selected(5)),
        plan(&policy, &with_selected(500)),
    );
    assert!(few.same_rules(&many), "only set elements may differ");
    assert_eq!(rules_text(&few.v4), rules_text(&many.v4));
    assert_eq!(rules_text(&few.v6), rules_text(&many.v6));
    for (set, base_count) in [("allow-1-v4", 2), ("known-v4", 4), ("allow-1-v6", 2)] {
        let count = |r: &dockfw::ruleset::Ruleset| {
            let family = if set.ends_with("v4") { &r.v4 } else { &r.v6 };
            family.set(set).expect("set planned").elements.len()
        };
        assert_eq!(
            (count(&few), count(&many)),
            (base_count + 5, base_count + 500),
            "{set}"
        );
    }
}

/// Published ports are elements of the drop port sets: 5 or 60 of them give
/// the same rules on both backends (nftables walks the same `dropped` chain
/// for every drop, iptables the same `DOCKFW-DROP`), and set elements count
/// per port.
#[test]
fn drop_rules_do_not_grow_with_published_ports() {
    let (policy, base) = load(&golden("default-deny-web"));
    let template = base.containers[0].clone();
    let with_published = |n: u16| {
        let mut inventory = base.clone();
        for i in 0..n {
            let mut c = template.clone();
            c.name = format!("web-clone-{i}");
            c.id = format!("{i:064x}");
            c.attachments[0].ipv4 = Some([172, 18, 0, (i + 2) as u8].into());
            c.ports[0].host_port = 20000 + i;
            inventory.containers.push(c);
        }
        inventory
    };
    let (few, many) = (
        plan(&policy, &with_published(5)),
        plan(&policy, &with_published(60)),
    );
    assert!(few.same_rules(&many), "only set elements may differ");
    let tcp_ports = |r: &dockfw::ruleset::Ruleset| {
        r.v4.drop_port_set("dropped-tcp-v4")
            .expect("drop port set planned")
            .ports
            .len()
    };
    let base_ports = tcp_ports(&plan(&policy, &base));
    assert_eq!(
        (tcp_ports(&few), tcp_ports(&many)),
        (base_ports + 5, base_ports + 60)
    );
    let dropped_chain = |r: &dockfw::ruleset::Ruleset| {
        let text = dockfw::firewall::nftables::render::render(r).expect("renders");
        let start = text.find("\tchain dropped {").expect("chain dropped");
        let end = start + text[start..].find("\t}").expect("chain end");
        text[start..end].to_owned()
    };
    assert_eq!(dropped_chain(&few), dropped_chain(&many));
    let iptables_drop_rules = |r: &dockfw::ruleset::Ruleset| {
        let text = rules_text(&r.v4);
        let drop: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A DOCKFW-DROP "))
            .collect();
        drop.join("\n")
    };
    assert_eq!(
        iptables_drop_rules(&few),
        iptables_drop_rules(&many),
        "iptables counts per port in ipset elements too"
    );
    assert_eq!(iptables_drop_rules(&many).lines().count(), 4);
    // The elements of the drop set that count them: for every address and
    // at each container endpoint.
    let counting = |r: &dockfw::ruleset::Ruleset, port: u16| {
        let text = dockfw::firewall::iptables::render::listing(&r.v4);
        let comment = format!(" comment \"{port}\"");
        (text.lines())
            .filter(|l| l.starts_with("add dockfw-dropped-tcp-v4 ") && l.ends_with(&comment))
            .map(|l| l.split(' ').nth(2).unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counting(&many, 20059),
        [
            "0.0.0.0/1,tcp:20059",
            "128.0.0.0/1,tcp:20059",
            "172.18.0.61,tcp:80"
        ]
    );
    // Status counts the rules each driver writes.
    use dockfw::firewall::Backend;
    let iptables = dockfw::firewall::iptables::Iptables::new();
    let nftables = dockfw::firewall::nftables::Nftables::new();
    for ruleset in [&few, &many] {
        let lines = rules_text(&ruleset.v4).lines().count();
        assert_eq!(iptables.rule_count(&ruleset.v4), lines);
    }
    assert_eq!(iptables.rule_count(&few.v4), iptables.rule_count(&many.v4));
    assert_eq!(nftables.rule_count(&few.v4), nftables.rule_count(&many.v4));
}
