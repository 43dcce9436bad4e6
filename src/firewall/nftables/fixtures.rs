//! Plans for the nftables driver's tests: those of the shared fixtures in
//! `tests/golden/<case>/` (`policy.toml` + `inventory.json`, loaded by the one
//! loader all golden runners share, `tests/support/golden_cases.rs`), and
//! synthetic ones of any size for measurements.

use std::collections::BTreeMap;
use std::path::Path;

use crate::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
use crate::plan::plan;
use crate::policy::{Policy, parse as parse_policy};
use crate::ruleset::Ruleset;

#[path = "../../../tests/support/golden_cases.rs"]
mod golden_cases;

pub use golden_cases::golden_cases;

/// The plan of one golden case.
pub fn planned(case: &Path) -> Ruleset {
    let (policy, inventory) = golden_cases::load(case);
    plan(&policy, &inventory)
}

const SELECTORS: &str = "[inbound]\ndefault = \"deny\"\n\
    [[inbound.allow]]\nports = [80, 443]\n\
    [[inbound.allow]]\nports = [5432]\nfrom = [\"192.0.2.0/24\", \"2001:db8::/64\"]\n\
    containers = [\"db-*\"]\n";

/// The plan, under a default-deny policy with a container selector, of
/// `containers` containers with one published port each on `networks`
/// networks: its rules grow with both.
pub fn synthetic(containers: usize, networks: usize) -> Ruleset {
    let policy =
        crate::policy::parse_str(SELECTORS, Path::new("synthetic.toml")).expect("valid policy");
    let bridges = (0..networks)
        .map(|n| Bridge {
            id: format!("{n:064x}"),
            name: format!("net{n}"),
            interface: format!("br-{n:012x}"),
        })
        .collect();
    let containers = (0..containers)
        .map(|i| Container {
            id: format!("{i:064x}"),
            name: format!("{}-{i}", if i % 2 == 0 { "db" } else { "web" }),
            labels: BTreeMap::new(),
            host_network: false,
            attachments: vec![Attachment {
                network_id: format!("{:064x}", i % networks),
                network: format!("net{}", i % networks),
                ipv4: Some([172, 18, (i / 250) as u8, (i % 250 + 2) as u8].into()),
                ipv6: Some(format!("fd00::{i:x}").parse().expect("v6")),
            }],
            ports: vec![PublishedPort {
                host_ip: [0, 0, 0, 0].into(),
                host_port: 10000 + i as u16,
                container_port: 5432,
                proto: Proto::Tcp,
            }],
        })
        .collect();
    let inventory = Inventory {
        bridges,
        containers,
        ..Inventory::default()
    };
    plan(&policy, &inventory)
}
