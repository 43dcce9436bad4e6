//! [`IncrementalPlan`]: the plan kept up to date one container at a time,
//! so that a container coming, changing or going costs what that container
//! contributes (its set elements) and not a plan of the whole host.
//!
//! [`super::plan`] stays the reference: this module only ever holds a
//! ruleset equal to `plan(policy, inventory)` of the same inventory. Per
//! container it keeps what the container puts into sets (its addresses in
//! `known-*`, in the sets of the entries that select it, in `ob-isolated-*`;
//! its host ports in the guard sets and a hairpin's port sets; its
//! published ports and endpoints in the drop sets), and per element how
//! many containers put it there, so a
//! change adds and removes elements in O(the container's size x the
//! policy's entries + log n). Anything else falls back to a whole plan: a
//! policy or a network (bridges, gateway modes, subnets, the kernel's word
//! on bridges) that is not the one the plan was made from, or a container
//! that (before or after the change) gives rules of its own and not only
//! elements: one off the verified bridges (judged by address), one with a
//! routed binding, a host-network container, a port a deny entry or an
//! allow entry with `from` covers, a port published on one address. Pure;
//! the property test at the bottom holds it to `plan()` after every step.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    address_in, allow_entries, covering, deny_entries, family_of, known_set, numbered, outbound,
    plan, proxy_port_rules, selects, verified_bridges, with_drop_logging,
};
use crate::inventory::{Bridge, Container, GatewayModes, Inventory};
use crate::policy::{Default, Policy, Sources};
use crate::ruleset::{
    DropEndpoint, ENDPOINTS, ElementChange, Family, FamilyRules, Iface, Ruleset, SetElement,
};

/// The plan of a policy and an inventory, and what each container
/// contributes to its sets.
#[derive(Debug, Clone)]
pub struct IncrementalPlan {
    /// The policy the plan was made from: another one is a whole plan.
    policy: Policy,
    /// The inventory's networks the plan was made from.
    networks: Networks,
    /// Whether each drop is logged ([`with_drop_logging`]).
    drop_logging: bool,
    ruleset: Ruleset,
    /// What each container (by id) puts into the sets.
    contributions: HashMap<String, Contribution>,
    /// Per set element, how many containers put it there.
    counts: HashMap<SetElement, usize>,
    /// The set elements written since the last [`IncrementalPlan::take_changes`]
    /// and whether each is in its set now (an element written back to what
    /// it was is not here); `None` when the whole host was planned since:
    /// then the changes are not known.
    pending: Option<HashMap<SetElement, bool>>,
}

/// What an inventory holds apart from its containers, as the plan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Networks {
    bridges: Vec<Bridge>,
    gateway_modes: BTreeMap<String, GatewayModes>,
    other_networks: BTreeMap<String, String>,
    subnets: BTreeMap<String, Vec<IpNet>>,
    unreadable_subnets: BTreeSet<String>,
    not_bridges: BTreeSet<String>,
}

impl Networks {
    fn of(inventory: &Inventory) -> Networks {
        Networks {
            bridges: inventory.bridges.clone(),
            gateway_modes: inventory.gateway_modes.clone(),
            other_networks: inventory.other_networks.clone(),
            subnets: inventory.subnets.clone(),
            unreadable_subnets: inventory.unreadable_subnets.clone(),
            not_bridges: inventory.not_bridges.clone(),
        }
    }

    /// Whether `inventory`'s networks are these, without copying them.
    fn same_as(&self, inventory: &Inventory) -> bool {
        self.bridges == inventory.bridges
            && self.gateway_modes == inventory.gateway_modes
            && self.other_networks == inventory.other_networks
            && self.subnets == inventory.subnets
            && self.unreadable_subnets == inventory.unreadable_subnets
            && self.not_bridges == inventory.not_bridges
    }
}

/// What one container puts into the sets, and whether that is all it
/// gives the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Contribution {
    elements: Vec<SetElement>,
    /// False when the container also gives rules of its own (or may):
    /// a change to it is a whole plan.
    elements_only: bool,
}

/// A container as an event found it.
#[derive(Debug, Clone, Copy)]
pub enum ContainerChange<'a> {
    /// Running, as it is now (new or changed).
    Put(&'a Container),
    /// Gone, by id.
    Removed(&'a str),
}

impl ContainerChange<'_> {
    fn id(&self) -> &str {
        match self {
            ContainerChange::Put(container) => &container.id,
            ContainerChange::Removed(id) => id,
        }
    }
}

/// What [`IncrementalPlan::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Only set elements changed: these sets, by family and name (the drop
    /// endpoints as [`ENDPOINTS`]).
    Elements(BTreeSet<(Family, String)>),
    /// The whole host was planned again, for this reason.
    Replanned(Replan),
}

/// Where `got` differs from `want`, in short: per family, the rules, or
/// the names of the sets whose elements differ. Empty when they are equal.
pub fn differences(got: &Ruleset, want: &Ruleset) -> String {
    let mut out = Vec::new();
    for family in Family::ALL {
        let (g, w) = (got.family(family), want.family(family));
        let tag = family.as_str();
        if !g.same_rules(w) {
            out.push(format!("{tag}: rules"));
            continue;
        }
        let sets = (g.sets.iter().zip(&w.sets)).filter(|(a, b)| a != b);
        out.extend(sets.map(|(a, _)| format!("{tag}: {}", a.name)));
        let ports = (g.port_sets.iter().chain(&g.drop_ports))
            .zip(w.port_sets.iter().chain(&w.drop_ports))
            .filter(|(a, b)| a != b);
        out.extend(ports.map(|(a, _)| format!("{tag}: {}", a.name)));
        if g.drop_endpoints != w.drop_endpoints {
            out.push(format!("{tag}: {ENDPOINTS}"));
        }
    }
    out.join(", ")
}

/// Why a change was a whole plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replan {
    /// Another policy than the plan's.
    Policy,
    /// Networks other than the plan's.
    Networks,
    /// The container gives (or gave) rules of its own.
    Rules,
}

impl IncrementalPlan {
    /// The plan of `policy` and `inventory` ([`plan`], with each drop
    /// logged when `drop_logging`), and what each container contributes.
    pub fn new(policy: &Policy, inventory: &Inventory, drop_logging: bool) -> IncrementalPlan {
        let mut ruleset = plan(policy, inventory);
        if drop_logging {
            ruleset = with_drop_logging(ruleset);
        }
        let verified = verified_bridges(inventory);
        let mut contributions = HashMap::with_capacity(inventory.containers.len());
        let mut counts = HashMap::new();
        for container in &inventory.containers {
            let contribution = contribution(policy, &verified, &ruleset, container);
            for element in &contribution.elements {
                *counts.entry(element.clone()).or_insert(0) += 1;
            }
            contributions.insert(container.id.clone(), contribution);
        }
        IncrementalPlan {
            policy: policy.clone(),
            networks: Networks::of(inventory),
            drop_logging,
            ruleset,
            contributions,
            counts,
            pending: None,
        }
    }

    /// The set elements that changed since the last call, each once, in a
    /// fixed order; `None` when the whole host was planned since (or this
    /// is the first call): then only a comparison of the two plans tells.
    /// The plan as it is now is the reference of the next call.
    pub fn take_changes(&mut self) -> Option<Vec<ElementChange>> {
        let pending = self.pending.replace(HashMap::new())?;
        let mut changes: Vec<ElementChange> = (pending.into_iter())
            .map(|(element, present)| ElementChange { element, present })
            .collect();
        changes.sort_unstable_by(|a, b| a.element.cmp(&b.element));
        Some(changes)
    }

    /// The plan: equal to [`plan`] of the inventory last given.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Whether the plan was made with each drop logged.
    pub fn drop_logging(&self) -> bool {
        self.drop_logging
    }

    /// Whether the plan was made from `policy` and `inventory`'s networks
    /// (its containers aside).
    pub fn made_from(&self, policy: &Policy, inventory: &Inventory) -> bool {
        *policy == self.policy && self.networks.same_as(inventory)
    }

    /// Plan the whole host again when `policy` or `inventory`'s networks
    /// are not the plan's: why, or `None` when they are.
    pub fn sync(&mut self, policy: &Policy, inventory: &Inventory) -> Option<Replan> {
        let why = if *policy != self.policy {
            Replan::Policy
        } else if !self.networks.same_as(inventory) {
            Replan::Networks
        } else {
            return None;
        };
        *self = IncrementalPlan::new(policy, inventory, self.drop_logging);
        Some(why)
    }

    /// Take one container's change into the plan. `inventory` is the one
    /// after the change (the container put or removed already); only its
    /// networks are read, unless the change needs a whole plan.
    pub fn apply(
        &mut self,
        policy: &Policy,
        inventory: &Inventory,
        change: ContainerChange<'_>,
    ) -> Applied {
        if let Some(why) = self.sync(policy, inventory) {
            return Applied::Replanned(why);
        }
        let before = self.contributions.get(change.id());
        let after = match change {
            ContainerChange::Put(container) => {
                let verified = verified_bridges(inventory);
                Some(contribution(policy, &verified, &self.ruleset, container))
            }
            ContainerChange::Removed(_) => None,
        };
        let local = |c: Option<&Contribution>| c.is_none_or(|c| c.elements_only);
        if !local(before) || !local(after.as_ref()) {
            return self.replan(policy, inventory, Replan::Rules);
        }
        let mut delta: HashMap<&SetElement, isize> = HashMap::new();
        for element in before.iter().flat_map(|c| &c.elements) {
            *delta.entry(element).or_insert(0) -= 1;
        }
        for element in after.iter().flat_map(|c| &c.elements) {
            *delta.entry(element).or_insert(0) += 1;
        }
        let mut touched = BTreeSet::new();
        for (element, by) in delta.into_iter().filter(|(_, by)| *by != 0) {
            let count = self.counts.entry(element.clone()).or_insert(0);
            let was = *count;
            *count = count.saturating_add_signed(by);
            let now = *count;
            if now == 0 {
                self.counts.remove(element);
            }
            if (was == 0) != (now == 0)
                && let Some(set) = self.ruleset.put(element, now > 0)
            {
                touched.insert(set);
                note(&mut self.pending, element, now > 0);
            }
        }
        match after {
            Some(after) => {
                self.contributions.insert(change.id().to_owned(), after);
            }
            None => {
                self.contributions.remove(change.id());
            }
        }
        Applied::Elements(touched)
    }

    fn replan(&mut self, policy: &Policy, inventory: &Inventory, why: Replan) -> Applied {
        *self = IncrementalPlan::new(policy, inventory, self.drop_logging);
        Applied::Replanned(why)
    }
}

/// `element` was just written, now `present` or not: kept in `pending`
/// ([`IncrementalPlan::take_changes`]).
fn note(pending: &mut Option<HashMap<SetElement, bool>>, element: &SetElement, present: bool) {
    if let Some(pending) = pending {
        // Written back to what it was at the last take: no change.
        if pending.remove(element).is_none() {
            pending.insert(element.clone(), present);
        }
    }
}

/// What `container` puts into the sets of `ruleset` (planned from
/// `policy`), read the way [`plan`] reads it, and whether that is all.
fn contribution(
    policy: &Policy,
    verified: &BTreeMap<&str, Iface>,
    ruleset: &Ruleset,
    container: &Container,
) -> Contribution {
    let on_verified =
        (container.attachments.iter()).all(|a| verified.contains_key(a.network_id.as_str()));
    let mut out = Contribution {
        elements: Vec::new(),
        elements_only: !container.host_network && on_verified,
    };
    for family in Family::ALL {
        let rules = ruleset.family(family);
        let addrs: Vec<IpAddr> = (container.attachments.iter())
            .filter_map(|a| address_in(a, family))
            .collect();
        for name in address_sets(policy, container, family) {
            if has_set(rules, &name) {
                let elements = addrs
                    .iter()
                    .map(|a| SetElement::Addr(family, name.clone(), (*a).into()));
                out.elements.extend(elements);
            }
        }
        if !container.host_network {
            if let Some(east_west) = &policy.east_west {
                let pairs = super::east_west_contributions(east_west, container, family);
                let elements = (pairs.into_iter())
                    .filter(|(name, _)| has_set(rules, name))
                    .map(|(name, net)| SetElement::Addr(family, name, net));
                out.elements.extend(elements);
            }
            ports(policy, container, family, &addrs, &mut out);
            let hairpin = super::hairpin::contributions(policy, container, family);
            let elements = (hairpin.into_iter())
                .filter(|(name, _)| rules.port_set(name).is_some())
                .map(|(name, port)| SetElement::Port(family, name, port));
            out.elements.extend(elements);
        }
    }
    out
}

/// The names of the address sets `container`'s addresses in `family` go
/// to, if the plan has them: `known-*`, each entry's that selects it,
/// `ob-isolated-*`.
fn address_sets(policy: &Policy, container: &Container, family: Family) -> Vec<String> {
    let mut names = vec![known_set(family)];
    let entries = allow_entries(policy).chain(deny_entries(policy));
    names.extend(
        (entries.filter(|(_, e)| selects(e, container))).map(|(id, _)| id.selected_set(family)),
    );
    if let Some(ob) = &policy.outbound {
        if ob.isolate.iter().any(|e| selects(e, container)) {
            names.push(outbound::isolated_set(family));
        }
        let entries = numbered(&ob.allow, "ob-allow").chain(numbered(&ob.deny, "ob-deny"));
        names.extend(
            (entries.filter(|(_, e)| selects(e, container))).map(|(id, _)| id.selected_set(family)),
        );
    }
    names
}

fn has_set(rules: &FamilyRules, name: &str) -> bool {
    (rules.sets)
        .binary_search_by(|s| s.name.as_str().cmp(name))
        .is_ok()
}

/// The elements `container`'s published ports of `family` give (as
/// [`super::drop_chain`] and [`super::proxy_chain`] read them); a port
/// with rules of its own clears [`Contribution::elements_only`].
fn ports(
    policy: &Policy,
    container: &Container,
    family: Family,
    addrs: &[IpAddr],
    out: &mut Contribution,
) {
    // A routed binding (on loopback too) may give its network rules.
    if container.ports.iter().any(|p| p.is_routed()) {
        out.elements_only = false;
    }
    let published = (container.ports.iter())
        .filter(|p| !p.host_ip.is_loopback() && family_of(p.host_ip) == family);
    for port in published {
        let addressed = port.addressed_port();
        out.elements
            .push(SetElement::Dropped(family, port.proto, addressed));
        out.elements.extend(addrs.iter().map(|addr| {
            let endpoint = DropEndpoint {
                proto: port.proto,
                addr: *addr,
                port: port.container_port,
                published: addressed,
            };
            SetElement::Endpoint(family, endpoint)
        }));
        if port.is_routed() {
            continue;
        }
        let plain = port.host_ip.is_unspecified()
            && covering(deny_entries(policy), container, port, family).is_empty();
        let allowed = covering(allow_entries(policy), container, port, family);
        if plain && allowed.is_empty() && policy.default == Default::Deny {
            out.elements
                .push(SetElement::Guard(family, port.proto, port.host_port));
        } else {
            let admitted = plain && allowed.iter().any(|(.., s)| *s == Sources::Anywhere);
            if !admitted && !proxy_port_rules(policy, container, port, family).is_empty() {
                out.elements_only = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::inventory::{Attachment, GatewayMode, Proto, PublishedPort};

    /// A seeded xorshift generator: the same cases at every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const NAMES: [&str; 6] = ["web-1", "web-2", "db-1", "api", "cache", "worker"];
    const SELECTORS: [&str; 5] = [
        "containers = [\"web-*\"]\n",
        "containers = [\"db-?\", \"api\"]\n",
        "labels = { tier = \"front\" }\n",
        "containers = [\"w*\"]\nlabels = { tier = \"back\" }\n",
        "",
    ];
    const PORTS: [&str; 6] = [
        "",
        "ports = [80]\n",
        "ports = [5432, 443]\n",
        "ports = [\"8000-8100\"]\n",
        "ports = [1, 2, 3, 4, 5, 6, 7, 8, 9, 80]\n",
        "ports = [80]\nproto = \"udp\"\n",
    ];
    const FROM: [&str; 5] = [
        "",
        "",
        "from = [\"10.0.0.0/8\"]\n",
        "from = [\"10.1.0.0/16\", \"fd00::/8\"]\n",
        "from = [\"10.1.0.0/16\", \"10.2.0.0/16\", \"10.3.0.0/16\", \"10.4.0.0/16\", \"10.5.0.0/16\", \"2001:db8::/32\"]\n",
    ];
    const TO: [&str; 4] = [
        "",
        "to = [\"192.0.2.0/24\"]\n",
        "to = [\"192.0.2.53\", \"2001:db8::53\"]\n",
        "to = [\"198.51.100.0/24\", \"198.51.101.0/24\", \"198.51.102.0/24\", \"198.51.103.0/24\", \"198.51.104.0/24\", \"198.51.105.0/24\"]\n",
    ];

    /// `[east_west]` destination selectors (with `networks`) and sources.
    const EW_DESTINATIONS: [&str; 5] = [
        "containers = [\"web-*\"]\n",
        "labels = { tier = \"back\" }\nnetworks = [\"n2\"]\n",
        "networks = [\"n1\", \"n3\"]\n",
        "containers = [\"db-?\", \"api\"]\nnetworks = [\"n*\"]\n",
        "",
    ];
    const EW_SOURCES: [&str; 4] = [
        "",
        "from_containers = [\"api\", \"web-*\"]\n",
        "from_labels = { tier = \"front\" }\n",
        "from_containers = [\"w*\"]\nfrom_labels = { tier = \"back\" }\n",
    ];

    fn entry(rng: &mut Rng, table: &str, peer: &[&str]) -> String {
        format!(
            "[[{table}]]\n{}{}{}",
            rng.pick(&SELECTORS),
            rng.pick(&PORTS),
            rng.pick(peer)
        )
    }

    /// A policy of random inbound (and sometimes outbound and east-west)
    /// entries.
    fn policy(rng: &mut Rng) -> Policy {
        let default = |rng: &mut Rng| *rng.pick(&["allow", "deny"]);
        let mut text = format!("[inbound]\ndefault = \"{}\"\n", default(rng));
        for _ in 0..rng.below(4) {
            text.push_str(&entry(rng, "inbound.allow", &FROM));
        }
        for _ in 0..rng.below(3) {
            text.push_str(&entry(rng, "inbound.deny", &FROM));
        }
        if rng.chance(50) {
            text.push_str(&format!(
                "[outbound]\ndefault = \"{}\"\nto_host = \"{}\"\n",
                default(rng),
                default(rng)
            ));
            for _ in 0..rng.below(2) {
                let selector = *rng.pick(&SELECTORS[..4]);
                text.push_str(&format!("[[outbound.isolate]]\n{selector}"));
            }
            for _ in 0..rng.below(3) {
                text.push_str(&entry(rng, "outbound.allow", &TO));
            }
            for _ in 0..rng.below(3) {
                text.push_str(&entry(rng, "outbound.deny", &TO));
            }
        }
        if rng.chance(40) {
            text.push_str(&format!("[east_west]\ndefault = \"{}\"\n", default(rng)));
            for _ in 0..rng.below(2) {
                let selector = *rng.pick(&EW_DESTINATIONS[..4]);
                text.push_str(&format!("[[east_west.isolate]]\n{selector}"));
            }
            for table in ["east_west.allow", "east_west.deny"] {
                for _ in 0..rng.below(3) {
                    text.push_str(&format!(
                        "[[{table}]]\n{}{}{}",
                        rng.pick(&EW_DESTINATIONS),
                        rng.pick(&EW_SOURCES),
                        rng.pick(&PORTS)
                    ));
                }
            }
        }
        crate::policy::parse_str(&text, Path::new("p.toml"))
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
    }

    fn bridge(id: &str, interface: &str) -> Bridge {
        Bridge {
            id: id.to_owned(),
            name: id.to_owned(),
            interface: interface.to_owned(),
        }
    }

    /// Three bridges, one of them routed in IPv4 now and then; one not a
    /// bridge now, or refused, now and then.
    fn networks(rng: &mut Rng) -> Inventory {
        let mut inventory = Inventory {
            bridges: vec![
                bridge("n1", "docker0"),
                bridge("n2", "br-two"),
                bridge("n3", if rng.chance(20) { "br+x" } else { "br-three" }),
            ],
            ..Inventory::default()
        };
        if rng.chance(30) {
            inventory.not_bridges.insert("br-two".to_owned());
        }
        if rng.chance(30) {
            let modes = GatewayModes {
                ipv4: GatewayMode::Routed,
                ipv6: GatewayMode::Nat,
            };
            inventory.gateway_modes.insert("n3".to_owned(), modes);
        }
        inventory
            .subnets
            .insert("n2".to_owned(), vec!["172.19.0.0/16".parse().expect("net")]);
        inventory
    }

    /// A container with a random name, labels, networks and ports;
    /// addresses from a small pool, so that containers share some.
    fn container(rng: &mut Rng, id: usize) -> Container {
        let mut labels = BTreeMap::new();
        if rng.chance(50) {
            let tier = *rng.pick(&["front", "back"]);
            labels.insert("tier".to_owned(), tier.to_owned());
        }
        let networks: &[&str] = if rng.chance(85) {
            &["n1"]
        } else {
            &["n1", "n2", "n3"]
        };
        let attachments = (0..1 + rng.below(2))
            .map(|_| {
                let network = *rng.pick(networks);
                let host = rng.below(12) + 2;
                Attachment {
                    network_id: network.to_owned(),
                    network: network.to_owned(),
                    ipv4: rng.chance(90).then(|| [172, 17, 0, host as u8].into()),
                    ipv6: rng
                        .chance(40)
                        .then(|| format!("fd00::{host}").parse().expect("addr")),
                }
            })
            .collect();
        let ports = (0..rng.below(3))
            .map(|_| {
                let host_ip = *rng.pick(&["0.0.0.0", "0.0.0.0", "::", "127.0.0.1", "192.0.2.9"]);
                let host_port = *rng.pick(&[80, 443, 5432, 8080, 8050, 0]);
                PublishedPort {
                    host_ip: host_ip.parse().expect("addr"),
                    host_port,
                    container_port: *rng.pick(&[80, 5432]),
                    proto: *rng.pick(&[Proto::Tcp, Proto::Tcp, Proto::Udp]),
                }
            })
            .collect();
        Container {
            id: format!("c{id}"),
            name: rng.pick(&NAMES).to_string(),
            labels,
            host_network: rng.chance(3),
            attachments,
            ports,
        }
    }

    /// Random adds, changes and removes over random policies and networks:
    /// after every step the incremental plan is `plan()` of the same
    /// inventory, and most steps (every step that could) wrote elements only.
    #[test]
    fn the_incremental_plan_is_the_plan_after_every_change() {
        let mut rng = Rng(0x5eed_d0c4_f00d);
        let (mut steps, mut elements_only, mut with_changes) = (0, 0, 0);
        for _ in 0..300 {
            let policy = policy(&mut rng);
            let mut inventory = networks(&mut rng);
            for id in 0..rng.below(6) {
                let container = container(&mut rng, id);
                inventory.put_container(container, Vec::new());
            }
            let logging = rng.chance(30);
            let mut incremental = IncrementalPlan::new(&policy, &inventory, logging);
            // What a daemon keeps in place: the plan of the last take, made
            // anew from the changes each step.
            assert_eq!(
                incremental.take_changes(),
                None,
                "a new plan's changes are unknown"
            );
            let mut in_place = incremental.ruleset().clone();
            let mut replanned = false;
            for step in 0..40 {
                let id = rng.below(10);
                let applied = if rng.chance(30) {
                    let id = format!("c{id}");
                    inventory.remove_container(&id);
                    incremental.apply(&policy, &inventory, ContainerChange::Removed(&id))
                } else {
                    let container = container(&mut rng, id);
                    inventory.put_container(container.clone(), Vec::new());
                    incremental.apply(&policy, &inventory, ContainerChange::Put(&container))
                };
                steps += 1;
                elements_only += usize::from(matches!(applied, Applied::Elements(_)));
                let mut expected = plan(&policy, &inventory);
                if logging {
                    expected = with_drop_logging(expected);
                }
                assert!(
                    *incremental.ruleset() == expected,
                    "step {step}: {applied:?}: {}\n{policy:?}\n{:?}",
                    differences(incremental.ruleset(), &expected),
                    inventory.containers
                );
                // A pass may take several containers' changes at once.
                if rng.chance(50) {
                    replanned |= matches!(applied, Applied::Replanned(_));
                    continue;
                }
                let replanned =
                    std::mem::take(&mut replanned) | matches!(applied, Applied::Replanned(_));
                match incremental.take_changes() {
                    Some(changes) => {
                        assert!(!replanned, "step {step}: changes after a whole plan");
                        assert_eq!(
                            changes,
                            incremental.ruleset().changes_from(&in_place),
                            "step {step}: the changes are the difference, each once"
                        );
                        in_place.apply_changes(&changes);
                        with_changes += usize::from(!changes.is_empty());
                    }
                    None => {
                        assert!(replanned, "step {step}: no changes without a whole plan");
                        in_place = incremental.ruleset().clone();
                    }
                }
                assert!(*incremental.ruleset() == in_place, "step {step}: in place");
            }
        }
        assert!(
            elements_only * 2 > steps,
            "the elements path is what is tested: {elements_only} of {steps}"
        );
        assert!(
            with_changes * 8 > steps,
            "changes that write elements are tested: {with_changes} of {steps}"
        );
    }
}
