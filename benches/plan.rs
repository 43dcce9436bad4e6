//! Speed and size of the pure core: `plan` + `render` for growing
//! inventories, with and without container selectors and with an
//! `[east_west]` table, and `check` (parse and validate) + `plan` + render
//! for policies at the limits (20,000 entries; entries of 300 ports x 300
//! sources). Prints numbers (run with `cargo bench --bench plan`); it
//! asserts nothing about time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use dockfw::firewall::iptables::installed::Installed;
use dockfw::firewall::iptables::render::{chain_specs, rules_text, transaction};
use dockfw::firewall::nftables::render::render;
use dockfw::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
use dockfw::plan::{exposures, plan};

const PLAIN: &str = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [80, 443]\n";
const SELECTORS: &str = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [80, 443]\n\
    [[inbound.allow]]\nports = [5432]\nfrom = [\"192.0.2.0/24\", \"2001:db8::/64\"]\ncontainers = [\"db-*\"]\n";

/// `[east_west]` under default deny: the web containers reach the databases
/// on 5432 (both sides selected, so both sets follow every container), and a
/// label deny (an empty set here, its rules all the same).
const EAST_WEST: &str = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [80, 443]\n\
    [east_west]\ndefault = \"deny\"\n[[east_west.allow]]\nfrom_containers = [\"web-*\"]\n\
    containers = [\"db-*\"]\nports = [5432]\n[[east_west.deny]]\nlabels = { tier = \"x\" }\n";

fn inventory(containers: usize, networks: usize) -> Inventory {
    let bridges = (0..networks)
        .map(|n| Bridge {
            id: format!("{n:064x}"),
            name: format!("net{n}"),
            interface: format!("br-{n:012x}"),
        })
        .collect();
    let containers = (0..containers)
        .map(|i| {
            let net = i % networks;
            Container {
                id: format!("{i:064x}"),
                name: if i % 2 == 0 {
                    format!("db-{i}")
                } else {
                    format!("web-{i}")
                },
                labels: BTreeMap::new(),
                host_network: false,
                attachments: vec![Attachment {
                    network_id: format!("{net:064x}"),
                    network: format!("net{net}"),
                    ipv4: Some(
                        [
                            172,
                            18 + (net % 200) as u8,
                            (i / 250 % 256) as u8,
                            (i % 250 + 2) as u8,
                        ]
                        .into(),
                    ),
                    ipv6: Some(format!("fd00:{net:x}::{i:x}").parse().expect("v6")),
                }],
                ports: vec![PublishedPort {
                    host_ip: [0, 0, 0, 0].into(),
                    host_port: 10000 + (i % 50000) as u16,
                    container_port: 80,
                    proto: Proto::Tcp,
                }],
            }
        })
        .collect();
    Inventory {
        bridges,
        containers,
        ..Inventory::default()
    }
}

/// 20,000 entries of one port and one source each (the shape of the e2e
/// case `fc_policy_limits`): 20,000 rules.
fn many_entries() -> String {
    let mut text = String::from("[inbound]\ndefault = \"deny\"\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "[[inbound.deny]]\nports = [{}]\nfrom = [\"10.{}.{}.0/24\"]\n",
            1000 + i % 5000,
            i / 250 % 250,
            i % 250
        ));
    }
    text
}

/// `entries` allow entries of 300 ports and 300 IPv4 sources each.
fn big_entries(entries: usize) -> String {
    let mut text = String::from("[inbound]\ndefault = \"deny\"\n");
    let ports: Vec<String> = (0..300).map(|p| (1000 + 7 * p).to_string()).collect();
    for e in 0..entries {
        let from: Vec<String> = (0..300)
            .map(|i| format!("\"10.{}.{}.{}\"", e, i / 250, i % 250))
            .collect();
        text.push_str(&format!(
            "[[inbound.allow]]\nports = [{}]\nfrom = [{}]\n",
            ports.join(", "),
            from.join(", ")
        ));
    }
    text
}

/// Policies at the limits: `check`'s core (parse and validate), `plan`
/// with 100 containers, the rules each backend writes and its render.
fn policy_scale() {
    println!();
    println!(
        "{:<22} {:>8} {:>12} {:>12} {:>9} {:>9} {:>12} {:>12}",
        "policy", "KiB", "check", "plan", "plan v4", "ipt v4", "ipt render", "nft render"
    );
    let inv = inventory(100, 10);
    let empty = Installed::parse(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n",
    );
    for (name, text) in [
        ("20000 x (1 port, 1 src)", many_entries()),
        ("1 x (300 ports, 300 src)", big_entries(1)),
        ("66 x (300 ports, 300 src)", big_entries(66)),
    ] {
        let path = Path::new("bench.toml");
        let policy = dockfw::policy::parse_str(&text, path).expect("valid policy");
        let t_check = time(5, || dockfw::policy::parse_str(&text, path).is_ok());
        let ruleset = plan(&policy, &inv);
        let t_plan = time(5, || plan(&policy, &inv));
        let v4 = &ruleset.v4;
        let ipt_rules: usize = v4.chains.iter().map(|c| chain_specs(v4, c).len()).sum();
        let t_ipt = time(5, || transaction(v4, &empty));
        let t_nft = time(5, || render(&ruleset));
        println!(
            "{name:<22} {:>8} {t_check:>12?} {t_plan:>12?} {:>9} {ipt_rules:>9} {t_ipt:>12?} {t_nft:>12?}",
            text.len() / 1024,
            v4.rule_count(),
        );
    }
}

fn time<T>(iterations: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed() / iterations
}

fn main() {
    let empty = Installed::parse(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\nCOMMIT\n",
    );
    println!(
        "{:<10} {:>10} {:>8} {:>10} {:>12} {:>12} {:>12}",
        "policy", "containers", "networks", "rules v4", "plan", "render+tx", "verdicts"
    );
    let policies = [
        ("plain", PLAIN),
        ("selectors", SELECTORS),
        ("east-west", EAST_WEST),
    ];
    for (name, text) in policies {
        let policy =
            dockfw::policy::parse_str(text, Path::new("bench.toml")).expect("valid policy");
        for (containers, networks) in [(10, 2), (100, 10), (1000, 50), (10000, 200)] {
            let inv = inventory(containers, networks);
            let iterations = (20_000 / containers as u32).max(3);
            let ruleset = plan(&policy, &inv);
            let t_plan = time(iterations, || plan(&policy, &inv));
            let t_render = time(iterations, || {
                (rules_text(&ruleset.v4), transaction(&ruleset.v4, &empty))
            });
            let t_verdicts = time(iterations, || exposures(&policy, &inv));
            println!(
                "{name:<10} {containers:>10} {networks:>8} {:>10} {:>12?} {:>12?} {:>12?}",
                ruleset.v4.rule_count(),
                t_plan,
                t_render,
                t_verdicts
            );
        }
    }
    policy_scale();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let peak = status
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap_or("VmHWM: ?");
        println!(
            "peak resident memory of this benchmark process: {}",
            peak.trim_start_matches("VmHWM:").trim()
        );
    }
}
