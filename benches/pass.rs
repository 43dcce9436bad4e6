//! What one event pass of the daemon's fast path (set elements only, the
//! nftables backend) costs in its pure steps, beside N running containers:
//! the scale benchmark's policy (`tests/bench.sh scale`), N containers
//! selected by it with no published port, and one container started with
//! `-p 5432:80`. Prints microseconds per step (run with `cargo bench
//! --bench pass`); it asserts nothing about time. `fast_pass` plans the
//! whole host (as before the incremental plan), `incremental_pass` is the
//! daemon's pass now: the same steps with the plan brought up to date by
//! the one container. Under callgrind (`--toggle-collect='pass::fast_pass'`
//! or `'pass::incremental_pass'`) each counts the instructions of its
//! PASS_N calls.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use dockfw::firewall::nftables::Transaction;
use dockfw::firewall::nftables::installed::changed_sets;
use dockfw::firewall::nftables::{netlink, render};
use dockfw::inventory::{Attachment, Bridge, Container, Inventory, Proto, PublishedPort};
use dockfw::plan::{ContainerChange, IncrementalPlan, exposures, plan};
use dockfw::ruleset::Ruleset;

const POLICY: &str = "[inbound]\ndefault = \"deny\"\n[[inbound.allow]]\nports = [5432]\n\
    containers = [\"sel-*\", \"cpu-*\", \"fill-*\"]\n";

fn container(name: String, i: usize, published: bool) -> Container {
    Container {
        id: format!("{i:064x}"),
        name,
        labels: BTreeMap::new(),
        host_network: false,
        attachments: vec![Attachment {
            network_id: format!("{:064x}", 0),
            network: "bridge".to_owned(),
            ipv4: Some([172, 17, (i / 250) as u8, (i % 250 + 2) as u8].into()),
            ipv6: None,
        }],
        ports: if published {
            vec![PublishedPort {
                host_ip: [0, 0, 0, 0].into(),
                host_port: 5432,
                container_port: 80,
                proto: Proto::Tcp,
            }]
        } else {
            Vec::new()
        },
    }
}

fn inventory(fill: usize) -> Inventory {
    Inventory {
        bridges: vec![Bridge {
            id: format!("{:064x}", 0),
            name: "bridge".to_owned(),
            interface: "docker0".to_owned(),
        }],
        containers: (0..fill)
            .map(|i| container(format!("fill-{i}"), i, false))
            .collect(),
        ..Inventory::default()
    }
}

fn time<T>(iterations: u32, mut f: impl FnMut() -> T) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed() / iterations
}

/// The pure steps of one fast-path pass after a container started, in the
/// daemon's order (`src/daemon/pass.rs`, `Nftables::element_update` and
/// `apply`): plan, the status's verdicts, the checks against the plan in
/// place, the elements transaction (counts, nft's script as the way back,
/// the plans it carries), the netlink changes, the plan kept as in place.
#[inline(never)]
fn fast_pass(
    policy: &dockfw::policy::Policy,
    inventory: &Inventory,
    in_place: &Ruleset,
) -> Ruleset {
    let planned = plan(policy, inventory);
    after_plan(policy, inventory, &planned, in_place);
    planned.clone()
}

/// The steps of a fast-path pass after its plan: exposures, the
/// comparisons with the plan in place, the elements to write.
fn after_plan(
    policy: &dockfw::policy::Policy,
    inventory: &Inventory,
    planned: &Ruleset,
    in_place: &Ruleset,
) {
    black_box(exposures(policy, inventory));
    assert!(planned.same_rules(in_place));
    black_box(*in_place == in_place.clone());
    black_box(planned == in_place);
    let tx = Transaction::set_elements(planned, in_place).ok();
    black_box(netlink::changes(planned, in_place).map(|c| c.len()).ok());
    black_box(tx);
}

/// [`fast_pass`] as the daemon runs it now: the plan in place brought up
/// to date by the container that started ([`IncrementalPlan::apply`]) and
/// copied out, then the same steps, and the plan moved into place.
#[inline(never)]
fn incremental_pass(
    policy: &dockfw::policy::Policy,
    inventory: &Inventory,
    incremental: &mut IncrementalPlan,
    started: &Container,
    in_place: &Ruleset,
) -> Ruleset {
    incremental.apply(policy, inventory, ContainerChange::Put(started));
    let planned = incremental.ruleset().clone();
    after_plan(policy, inventory, &planned, in_place);
    // The daemon moves the plan written into place.
    planned
}

fn main() {
    let policy = dockfw::policy::parse_str(POLICY, Path::new("bench.toml")).expect("policy");
    let only: Option<usize> = std::env::var("PASS_FILL").ok().and_then(|v| v.parse().ok());
    let n: u32 = (std::env::var("PASS_N").ok().and_then(|v| v.parse().ok())).unwrap_or(200);
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "fill",
        "put",
        "plan",
        "apply",
        "expose",
        "eq",
        "clone",
        "changed",
        "text",
        "netlink",
        "pass",
        "incr-pass"
    );
    for fill in [0, 100, 1000]
        .into_iter()
        .filter(|f| only.is_none_or(|o| o == *f))
    {
        let before_inv = inventory(fill);
        let mut after_inv = before_inv.clone();
        after_inv.put_container(container("cpu-1".to_owned(), 5000, true), Vec::new());
        let t_put = time(n, || {
            let mut inv = before_inv.clone();
            inv.put_container(container("cpu-1".to_owned(), 5000, true), Vec::new());
            inv
        })
        .saturating_sub(time(n, || before_inv.clone()));
        let before = plan(&policy, &before_inv);
        let after = plan(&policy, &after_inv);
        let t_plan = time(n, || plan(&policy, &after_inv));
        let t_expose = time(n, || exposures(&policy, &after_inv));
        let t_eq = time(n, || after == after.clone());
        let t_clone = time(n, || after.clone());
        let t_changed = time(n, || changed_sets(&after, Some(&before)).sets.len());
        let changed = changed_sets(&after, Some(&before));
        let t_text = time(n, || {
            render::elements_text(&changed.sets, &changed.port_sets)
        });
        let t_netlink = time(n, || netlink::changes(&after, &before).map(|c| c.len()));
        let t_pass = time(n, || fast_pass(&policy, &after_inv, &before));
        let started = container("cpu-1".to_owned(), 5000, true);
        let kept = IncrementalPlan::new(&policy, &before_inv, false);
        let t_kept = time(n, || kept.clone());
        let t_apply = time(n, || {
            let mut incremental = kept.clone();
            incremental.apply(&policy, &after_inv, ContainerChange::Put(&started));
            incremental
        })
        .saturating_sub(t_kept);
        let t_incremental = time(n, || {
            let mut incremental = kept.clone();
            incremental_pass(&policy, &after_inv, &mut incremental, &started, &before)
        })
        .saturating_sub(t_kept);
        let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
        println!(
            "{fill:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            us(t_put),
            us(t_plan),
            us(t_apply),
            us(t_expose),
            us(t_eq),
            us(t_clone),
            us(t_changed),
            us(t_text),
            us(t_netlink),
            us(t_pass),
            us(t_incremental)
        );
    }
    println!(
        "microseconds per call, {n} calls each; `eq` compares two equal plans; \
         `apply` and `incr-pass` without the copy of the kept plan each call needs"
    );
}
