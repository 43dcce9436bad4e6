//! What the iptables backend's set work costs the daemon itself as the
//! host fills up: per container start, the fast path's element edits
//! (`element_update`), an observing pass's set comparison (`sets::update`
//! against sets installed as planned, each element made text; and as the
//! backend runs it, with the text kept from the pass before), the parse
//! of dockfw's sets saved whole (`sets::parse_save`), and the 1.5 s ipset
//! check (headers, or every element). Every container is chosen by a
//! selector, as in `tests/bench.sh scale`. Prints numbers (run with `cargo
//! bench --bench iptables_sets`); it asserts nothing about time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use dockfw::firewall::iptables::sets::{self, SavedSet, SetHeader};
use dockfw::firewall::iptables::{element_update, headers_differ, sets_differ};
use dockfw::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
use dockfw::net::Family;
use dockfw::plan::plan;
use dockfw::ruleset::Ruleset;

const POLICY: &str = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [5432]\n\
    containers = [\"sel-*\", \"cpu-*\", \"fill-*\"]\n";

/// `fill` containers `fill-N` without published ports, and `cpu` ones
/// `cpu-N` publishing 5432, on the default bridge with both families.
fn inventory(fill: usize, cpu: usize) -> Inventory {
    let container = |i: usize, name: String, ports: Vec<PublishedPort>| Container {
        id: format!("{i:064x}"),
        name,
        labels: BTreeMap::new(),
        host_network: false,
        attachments: vec![Attachment {
            network_id: "b".to_owned(),
            network: "bridge".to_owned(),
            ipv4: Some([172, 17, (i / 250) as u8, (i % 250 + 2) as u8].into()),
            ipv6: Some(format!("fd00:d0c:1::{:x}", i + 2).parse().expect("v6")),
        }],
        ports,
    };
    let published = || {
        vec![PublishedPort {
            host_ip: [0, 0, 0, 0].into(),
            host_port: 5432,
            container_port: 80,
            proto: Proto::Tcp,
        }]
    };
    let fills = (0..fill).map(|i| container(i, format!("fill-{i}"), Vec::new()));
    let cpus = (0..cpu).map(|i| container(fill + i, format!("cpu-{i}"), published()));
    Inventory {
        bridges: vec![Bridge {
            id: "b".to_owned(),
            name: "bridge".to_owned(),
            interface: "docker0".to_owned(),
        }],
        containers: fills.chain(cpus).collect(),
        ..Inventory::default()
    }
}

/// dockfw's sets of `ruleset` as `ipset save` prints them when installed
/// as planned.
fn save_text(ruleset: &Ruleset) -> String {
    let mut text = String::new();
    for family in Family::ALL {
        for set in sets::wanted(ruleset.family(family)) {
            let _ = writeln!(text, "create {} {} hashsize 1024", set.name, set.create);
            for element in set.elements.iter() {
                let _ = writeln!(text, "add {} {element}", set.name);
            }
        }
    }
    text
}

fn time<T>(iterations: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed() / iterations
}

fn main() {
    let policy = dockfw::policy::parse_str(POLICY, Path::new("bench.toml")).expect("valid");
    println!(
        "{:>10} {:>10} {:>12} {:>14} {:>12} {:>14} {:>14} {:>12}",
        "containers",
        "elements",
        "plan",
        "element_update",
        "parse_save",
        "observed sets",
        "kept text",
        "check"
    );
    for fill in [0, 100, 1000] {
        let (before, after) = (inventory(fill, 0), inventory(fill, 1));
        let (had, more) = (plan(&policy, &before), plan(&policy, &after));
        let text = save_text(&had);
        let installed: BTreeMap<String, SavedSet> = sets::parse_save(&text);
        let headers: BTreeMap<String, SetHeader> = (Family::ALL.iter())
            .flat_map(|&f| sets::headers(had.family(f)))
            .collect();
        let iterations = 200;
        let t_plan = time(iterations, || plan(&policy, &after));
        let t_fast = time(iterations, || element_update(&more, &had, &Family::ALL));
        let t_parse = time(iterations, || sets::parse_save(&text));
        let t_observed = time(iterations, || {
            Family::ALL.map(|f| {
                let own = installed.iter().filter(|(n, _)| sets::owner(n) == f);
                let own: BTreeMap<String, SavedSet> =
                    own.map(|(n, s)| (n.clone(), s.clone())).collect();
                sets::update(more.family(f), &own, false)
            })
        });
        // As the backend runs it: the text kept from the pass before, whose
        // plan had one container less or more.
        let mut texts = sets::Texts::default();
        let mut turn = 0;
        let t_kept = time(iterations, || {
            turn += 1;
            let plan = if turn % 2 == 0 { &had } else { &more };
            Family::ALL.map(|f| {
                let own = installed.iter().filter(|(n, _)| sets::owner(n) == f);
                let own: BTreeMap<String, SavedSet> =
                    own.map(|(n, s)| (n.clone(), s.clone())).collect();
                sets::update_with(plan.family(f), &own, false, &mut texts)
            })
        });
        let t_headers = time(iterations, || headers_differ(&had, &Family::ALL, &headers));
        let t_contents = time(iterations, || sets_differ(&had, &Family::ALL, &installed));
        println!(
            "{:>10} {:>10} {:>12?} {:>14?} {:>12?} {:>14?} {:>14?} {:>12}",
            fill + 1,
            installed.values().map(|s| s.elements.len()).sum::<usize>(),
            t_plan,
            t_fast,
            t_parse,
            t_observed,
            t_kept,
            format!("{t_headers:?} / {t_contents:?}"),
        );
    }
    println!(
        "plan: the plan with one more container; element_update: the fast path's edits for it; \
         parse_save: dockfw's sets saved whole, parsed; observed sets: sets::update against the \
         sets as parsed (an observing pass; cloned as the read does), each element made text; \
         kept text: the same with the text kept from the pass before (sets::update_with, as the \
         backend runs it; one container more or less than that pass); check: the ipset check's \
         comparison, headers / every element"
    );
}
