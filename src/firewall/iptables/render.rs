//! Turns a [`FamilyRules`] into `iptables-restore --noflush` text.
//!
//! Pure functions: [`rules_text`] is the canonical listing of dockfw's chains
//! (the same form `iptables-save` prints, so it compares with what is
//! installed), and [`transaction`] is the smallest atomic restore input that
//! takes the installed rules to the desired ones, or `None` when nothing
//! differs. A rule matches a set by its ipset name (`-m set --match-set
//! dockfw-known-v4 dst`); the sets themselves are [`super::sets`]' job, and
//! running the restore is the firewall edge's.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::firewall::{Changes, Notice};

use super::installed::{
    CREATED_FORWARD_JUMP, FORWARD_JUMP, Installed, RESTORED_FORWARD_JUMP, jumps_to,
};
use super::sets::{self, ipset_name};
use crate::ruleset::{
    Chain, Conntrack, DOCKER_USER, ENTRY_CHAIN, FamilyRules, HOOKS, Hook, LOG_LIMIT_PER_MINUTE,
    ORIGIN_PREFIX, OWNED_CHAINS, Rule, Target,
};

/// One rule as `iptables-save` prints it, without `-A CHAIN`.
pub fn rule_spec(rule: &Rule) -> String {
    let mut out = String::new();
    if let Some(src) = &rule.src {
        let _ = write!(out, "-s {src} ");
    }
    if let Some(dst) = &rule.dst {
        let _ = write!(out, "-d {dst} ");
    }
    if let Some(iface) = &rule.in_iface {
        let _ = write!(out, "-i {iface} ");
    }
    if let Some(iface) = &rule.out_iface {
        let _ = write!(out, "-o {iface} ");
    }
    if let Some(icmpv6_type) = rule.icmpv6_type {
        let _ = write!(out, "-p ipv6-icmp -m icmp6 --icmpv6-type {icmpv6_type} ");
    }
    if let Some(proto) = rule.proto {
        let _ = write!(out, "-p {} ", proto.as_str());
        match rule.dport {
            Some(ports) if ports.first == ports.last => {
                let _ = write!(out, "-m {} --dport {} ", proto.as_str(), ports.first);
            }
            Some(ports) => {
                let (first, last) = (ports.first, ports.last);
                let _ = write!(out, "-m {} --dport {first}:{last} ", proto.as_str());
            }
            None => {}
        }
    }
    if let Some(set) = &rule.src_set {
        let _ = write!(out, "-m set --match-set {} src ", ipset_name(set));
    }
    if let Some(set) = &rule.dst_set {
        let _ = write!(out, "-m set --match-set {} dst ", ipset_name(set));
    }
    if let Some(set) = &rule.dport_set {
        // Any address of the family, and the destination port.
        let _ = write!(out, "-m set --match-set {} dst,dst ", ipset_name(set));
    }
    if let Some(set) = &rule.orig_dport_set {
        // The packet as it is here, after DNAT: its elements are the
        // ports for every address, and the container endpoints they lead
        // to (see `sets::drop_elements`).
        let _ = write!(out, "-m set --match-set {} dst,dst ", ipset_name(set));
    }
    match rule.conntrack {
        Some(Conntrack::Established) => out.push_str("-m conntrack --ctstate RELATED,ESTABLISHED "),
        Some(Conntrack::Dnat) => out.push_str("-m conntrack --ctstate DNAT "),
        Some(Conntrack::OrigDstPort { ports, dnat }) => {
            out.push_str(if dnat {
                "-m conntrack --ctstate DNAT "
            } else {
                "-m conntrack "
            });
            if ports.first == ports.last {
                let _ = write!(out, "--ctorigdstport {} ", ports.first);
            } else {
                let _ = write!(out, "--ctorigdstport {}:{} ", ports.first, ports.last);
            }
        }
        Some(Conntrack::OrigDst(net)) => {
            // As iptables-save prints it: a host without its length.
            let net = net.trunc();
            if net.prefix_len() == net.max_prefix_len() {
                let _ = write!(out, "-m conntrack --ctorigdst {} ", net.addr());
            } else {
                let _ = write!(out, "-m conntrack --ctorigdst {net} ");
            }
        }
        None => {}
    }
    if rule.target == Target::Log {
        let _ = write!(out, "-m limit --limit {LOG_LIMIT_PER_MINUTE}/min ");
    }
    // Fixed words and numbers only ([`Origin`]); quoted as iptables-save
    // quotes a comment with a space.
    if let Some(origin) = rule.origin {
        let _ = write!(out, "-m comment --comment \"{}\" ", origin.comment());
    }
    match &rule.target {
        Target::Return => out.push_str("-j RETURN"),
        Target::Drop => out.push_str("-j DROP"),
        Target::Jump(chain) => {
            let _ = write!(out, "-j {chain}");
        }
        Target::Log => {
            let prefix = rule
                .origin
                .map_or_else(|| ORIGIN_PREFIX.to_owned(), |origin| origin.log_prefix());
            let _ = write!(out, "-j LOG --log-prefix \"{prefix}\"");
        }
    }
    out
}

/// dockfw's chains as `-A CHAIN spec` lines, one per rule.
pub fn rules_text(rules: &FamilyRules) -> String {
    let mut out = String::new();
    for chain in &rules.chains {
        for spec in chain_specs(rules, chain) {
            let _ = writeln!(out, "-A {} {spec}", chain.name);
        }
    }
    out
}

/// The rule specs of `chain`. A match of an entry's set of port ranges is
/// one rule per range ([`ranges_specs`]); every other rule is one spec (the
/// drop sets are ipsets, matched as they are: see `sets::drop_elements`).
pub fn chain_specs(rules: &FamilyRules, chain: &Chain) -> Vec<String> {
    let mut specs = Vec::with_capacity(chain.rules.len());
    for rule in &chain.rules {
        match &rule.orig_dport_ranges {
            Some(set) => specs.extend(ranges_specs(rules, rule, set)),
            None => specs.push(rule_spec(rule)),
        }
    }
    specs
}

/// A rule matching the port before DNAT in the set of port ranges `set`,
/// as one rule per range: `--ctorigdstport` takes one range, and an ipset
/// match reads the packet's own port, which after Docker's DNAT is the
/// container's, not the published one. So the rules grow with an entry's
/// port ranges, never with its sources (a set of their own). A set the
/// plan lacks is written as a match of an ipset that does not exist,
/// which fails the restore (as a missing address set does) rather than
/// drop the rule's condition or the rule.
fn ranges_specs(rules: &FamilyRules, rule: &Rule, set: &str) -> Vec<String> {
    let Some(ports) = rules.orig_port_set(set) else {
        let missing = format!("-m set --match-set {} dst ", ipset_name(set));
        return vec![format!("{missing}{}", rule_spec(rule))];
    };
    let dnat = rule.conntrack == Some(Conntrack::Dnat);
    ports
        .ranges
        .iter()
        .map(|&ports| {
            rule_spec(&Rule {
                orig_dport_ranges: None,
                conntrack: Some(Conntrack::OrigDstPort { ports, dnat }),
                ..rule.clone()
            })
        })
        .collect()
}

/// dockfw's sets, as `ipset save` lists them, then its chains as
/// [`rules_text`]: all of one family's desired state, for `dockfw plan` and
/// the golden files.
pub fn listing(rules: &FamilyRules) -> String {
    let mut out = String::new();
    for set in sets::wanted(rules) {
        let name = &set.name;
        let _ = writeln!(out, "create {name} {}", set.create);
        for element in set.elements.iter() {
            let _ = writeln!(out, "add {name} {element}");
        }
    }
    out + &rules_text(rules)
}

/// An atomic restore input and a summary of what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub text: String,
    pub changes: Changes,
    pub jumps: Jumps,
}

/// What a restore does to the way packets reach dockfw's chains:
/// `DOCKER-USER`, the `FORWARD` jump to it, dockfw's own jumps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Jumps {
    /// `DOCKER-USER` did not exist and is created (with its `FORWARD` jump).
    pub created_docker_user: bool,
    /// `DOCKER-USER` existed but `FORWARD` no longer jumped to it.
    pub restored_forward_jump: bool,
    /// The `FORWARD -> DOCKER-USER` jump was not first (or not alone).
    pub moved_forward_jump: bool,
    /// One of dockfw's jumps was missing, duplicated or not first.
    pub placed_jumps: bool,
    /// The engine now jumps to a `DOCKER-USER` dockfw made; dockfw's own
    /// `FORWARD` jump to it went.
    pub handed_over_docker_user: bool,
}

impl Jumps {
    /// What the log says of them on lines of their own once applied.
    pub fn notices(self) -> Vec<Notice> {
        [
            (
                self.restored_forward_jump,
                Notice::Warning("FORWARD no longer jumped to DOCKER-USER; restored the jump"),
            ),
            (
                self.moved_forward_jump,
                Notice::Warning(
                    "rules were inserted above FORWARD -> DOCKER-USER; moved the jump back on top",
                ),
            ),
            (
                self.created_docker_user,
                Notice::Info("no DOCKER-USER chain (yet); created it and its FORWARD jump"),
            ),
        ]
        .into_iter()
        .filter_map(|(set, notice)| set.then_some(notice))
        .collect()
    }
}

/// The summary's words for them, each after a comma.
impl std::fmt::Display for Jumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let notes = [
            (
                self.created_docker_user,
                ", created DOCKER-USER and its FORWARD jump",
            ),
            (
                self.restored_forward_jump,
                ", restored the missing FORWARD -> DOCKER-USER jump",
            ),
            (
                self.moved_forward_jump,
                ", moved the FORWARD -> DOCKER-USER jump back to the top",
            ),
            (self.placed_jumps, ", put dockfw's jumps first"),
            (
                self.handed_over_docker_user,
                ", left DOCKER-USER to the engine's own FORWARD jump",
            ),
        ];
        for (set, note) in notes {
            if set {
                f.write_str(note)?;
            }
        }
        Ok(())
    }
}

/// The restore text that takes `installed` to `desired`, or `None` when
/// they already agree. Only dockfw's chains are declared (and so flushed);
/// `DOCKER-USER` is declared only when it does not exist.
pub fn transaction(desired: &FamilyRules, installed: &Installed) -> Option<Restore> {
    let mut changes = Changes::default();
    let mut jumps = Jumps::default();
    let mut head = String::from("*filter\n");
    let mut body = String::new();

    if !installed.has_chain(DOCKER_USER) {
        jumps.created_docker_user = true;
        // `-N`, not a `:` line: should the chain appear between our read and
        // this restore, `-N` fails the whole transaction (retried), where a
        // `:` line would flush whatever Docker or others put in it.
        let _ = writeln!(body, "-N {DOCKER_USER}\n-A {DOCKER_USER} -j RETURN");
    }
    let wanted: Vec<(&str, Vec<String>)> = desired
        .chains
        .iter()
        .map(|chain| (chain.name, chain_specs(desired, chain)))
        .collect();
    if chains_differ(&wanted, installed) {
        changes.rewrote_rules = true;
        count_rule_changes(&wanted, installed, &mut changes);
        for (name, specs) in &wanted {
            let _ = writeln!(head, ":{name} - [0:0]");
            for spec in specs {
                let _ = writeln!(body, "-A {name} {spec}");
            }
        }
    }
    let planned = |hook: &Hook| desired.chains.iter().any(|c| c.name == hook.chain);
    for hook in HOOKS.into_iter().filter(planned) {
        let (count, first) = installed.hook_jumps(hook);
        if count != 1 || !first {
            jumps.placed_jumps = true;
            for _ in 0..count {
                let _ = writeln!(body, "-D {} {}", hook.parent, hook.spec());
            }
            let _ = writeln!(body, "-I {} 1 {}", hook.parent, hook.spec());
        }
    }
    forward_jump(installed, &mut jumps, &mut body);
    remove_unplanned_chains(desired, installed, &mut changes, &mut body);
    if body.is_empty() {
        return None;
    }
    Some(Restore {
        text: format!("{head}{body}COMMIT\n"),
        changes,
        jumps,
    })
}

/// Remove chains of dockfw's that are installed but no longer planned (the
/// `[outbound]` chains after a reload without that table). Every jump to
/// them is in a chain of dockfw's that this restore declares again, so
/// they are unreferenced by the time they are flushed and deleted.
fn remove_unplanned_chains(
    desired: &FamilyRules,
    installed: &Installed,
    changes: &mut Changes,
    body: &mut String,
) {
    let unplanned: Vec<&str> = OWNED_CHAINS
        .iter()
        .copied()
        .filter(|c| installed.has_chain(c) && !desired.chains.iter().any(|d| d.name == *c))
        .collect();
    for chain in &unplanned {
        changes.rewrote_rules = true;
        changes.removed += installed.chain_rules(chain).len();
        let _ = writeln!(body, "-F {chain}");
    }
    for chain in &unplanned {
        let _ = writeln!(body, "-X {chain}");
    }
}

/// Keep a `FORWARD -> DOCKER-USER` jump. dockfw's own jump carries a mark:
/// it is made with the chain, or to restore a missing jump, and it is moved
/// back on top when something was inserted above it (Docker 20.10 does, for
/// a new network's ip6tables rules, because it does not manage DOCKER-USER
/// there). Docker's own jump is Docker's to place; other tools'
/// conditional jumps are left alone.
fn forward_jump(installed: &Installed, jumps: &mut Jumps, body: &mut String) {
    let (forward, first) = installed.forward_jumps();
    if first && forward.contains(&FORWARD_JUMP) && forward.contains(&CREATED_FORWARD_JUMP) {
        // dockfw made DOCKER-USER before the engine (at boot); the engine
        // has since adopted the chain and jumps to it itself, first.
        jumps.handed_over_docker_user = true;
        for _ in forward.iter().filter(|j| **j == CREATED_FORWARD_JUMP) {
            let _ = writeln!(body, "-D FORWARD {CREATED_FORWARD_JUMP}");
        }
    } else if jumps.created_docker_user {
        let _ = writeln!(body, "-I FORWARD 1 {CREATED_FORWARD_JUMP}");
    } else if forward.is_empty() {
        jumps.restored_forward_jump = true;
        let _ = writeln!(body, "-I FORWARD 1 {RESTORED_FORWARD_JUMP}");
    } else if !first {
        let ours: Vec<&&str> = forward.iter().filter(|j| **j != FORWARD_JUMP).collect();
        if let Some(keep) = ours.first() {
            jumps.moved_forward_jump = true;
            for spec in &ours {
                let _ = writeln!(body, "-D FORWARD {spec}");
            }
            let _ = writeln!(body, "-I FORWARD 1 {keep}");
        }
    }
}

/// Whether any chain, with its rule specs rendered, differs from what is
/// installed.
fn chains_differ(wanted: &[(&str, Vec<String>)], installed: &Installed) -> bool {
    wanted.iter().any(|(name, want)| {
        !installed.has_chain(name) || installed.chain_rules(name) != want.as_slice()
    })
}

fn count_rule_changes(
    wanted: &[(&str, Vec<String>)],
    installed: &Installed,
    changes: &mut Changes,
) {
    for (name, want) in wanted {
        let have = installed.chain_rules(name);
        let want_set: HashSet<&String> = want.iter().collect();
        let have_set: HashSet<&String> = have.iter().collect();
        changes.added += want.iter().filter(|w| !have_set.contains(w)).count();
        changes.removed += have.iter().filter(|h| !want_set.contains(h)).count();
    }
}

/// The restore text that removes every rule and chain dockfw owns, or
/// `None` when nothing of dockfw's is installed. A `DOCKER-USER` chain
/// dockfw created itself goes too, once nothing but `RETURN` is left in it.
pub fn uninstall(installed: &Installed) -> Option<String> {
    let mut body = String::new();
    let forward = installed.chain_rules("FORWARD");
    let count = |spec: &str| forward.iter().filter(|s| *s == spec).count();
    let remove_chain = created_chain_is_ours(installed);
    // dockfw's creation jump goes with its chain, or when another
    // unconditional jump keeps the chain reachable.
    let others_jump = count(FORWARD_JUMP) + count(RESTORED_FORWARD_JUMP) > 0;
    if remove_chain || others_jump {
        for _ in 0..count(CREATED_FORWARD_JUMP) {
            let _ = writeln!(body, "-D FORWARD {CREATED_FORWARD_JUMP}");
        }
    }
    if remove_chain {
        // Flushing the chain removes our jump in it; deleting that rule too
        // in the same nft batch makes the chain deletion fail.
        let _ = writeln!(body, "-F {DOCKER_USER}");
    }
    // A jump dockfw restored is Docker's again: unmarked, unless Docker's
    // own came back meanwhile.
    for _ in 0..count(RESTORED_FORWARD_JUMP) {
        let _ = writeln!(body, "-D FORWARD {RESTORED_FORWARD_JUMP}");
    }
    if count(RESTORED_FORWARD_JUMP) > 0 && count(FORWARD_JUMP) == 0 {
        let _ = writeln!(body, "-I FORWARD 1 {FORWARD_JUMP}");
    }
    for hook in HOOKS {
        if remove_chain && hook.parent == DOCKER_USER {
            continue;
        }
        for _ in 0..installed.hook_jumps(hook).0 {
            let _ = writeln!(body, "-D {} {}", hook.parent, hook.spec());
        }
    }
    let owned: Vec<&str> = OWNED_CHAINS
        .iter()
        .copied()
        .filter(|c| installed.has_chain(c))
        .collect();
    for chain in &owned {
        let _ = writeln!(body, "-F {chain}");
    }
    for chain in &owned {
        let _ = writeln!(body, "-X {chain}");
    }
    if remove_chain {
        let _ = writeln!(body, "-X {DOCKER_USER}");
    }
    (!body.is_empty()).then(|| format!("*filter\n{body}COMMIT\n"))
}

/// Whether `DOCKER-USER` is dockfw's creation and nothing else's: only
/// dockfw's creation-marked jump leads to it, and it holds nothing but
/// `RETURN` and dockfw's jump.
fn created_chain_is_ours(installed: &Installed) -> bool {
    let forward = installed.chain_rules("FORWARD");
    let created = forward.iter().any(|s| s == CREATED_FORWARD_JUMP);
    let others = forward
        .iter()
        .any(|s| s != CREATED_FORWARD_JUMP && jumps_to(s, DOCKER_USER));
    let only_ours = installed
        .chain_rules(DOCKER_USER)
        .iter()
        .all(|s| s == "-j RETURN" || *s == format!("-j {ENTRY_CHAIN}"));
    created && !others && only_ours
}

#[cfg(test)]
mod tests {
    use super::super::installed::simulate;
    use super::*;
    use crate::net::{Iface, PortRange, Proto};
    use crate::ruleset::{Chain, ENTRY_CHAIN, INBOUND_CHAIN};

    fn sample() -> FamilyRules {
        FamilyRules {
            chains: vec![
                Chain {
                    name: ENTRY_CHAIN,
                    rules: vec![
                        Rule {
                            conntrack: Some(Conntrack::Established),
                            ..Rule::default()
                        },
                        Rule {
                            out_iface: Iface::new("docker0").ok(),
                            target: Target::Jump(INBOUND_CHAIN),
                            ..Rule::default()
                        },
                    ],
                },
                Chain {
                    name: INBOUND_CHAIN,
                    rules: vec![
                        Rule {
                            src: Some("192.0.2.16/28".parse().unwrap()),
                            dst: Some("172.17.0.2/32".parse().unwrap()),
                            proto: Some(Proto::Tcp),
                            conntrack: Some(Conntrack::OrigDstPort {
                                ports: PortRange {
                                    first: 8000,
                                    last: 8100,
                                },
                                dnat: true,
                            }),
                            ..Rule::default()
                        },
                        Rule {
                            target: Target::Drop,
                            ..Rule::default()
                        },
                    ],
                },
            ],
            sets: Vec::new(),
            port_sets: Vec::new(),
            drop_ports: Vec::new(),
            orig_port_sets: Vec::new(),
            drop_endpoints: Default::default(),
        }
    }

    const DOCKER_MADE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n";

    fn install(installed: &mut Installed) {
        let tx = transaction(&sample(), installed).expect("changes");
        simulate::apply(installed, &tx.text).expect("applies");
    }

    #[test]
    fn outbound_chains_no_longer_planned_are_flushed_and_deleted() {
        use crate::ruleset::{OUTBOUND_CHAIN, TO_HOST_CHAIN};
        let mut installed = Installed::parse(DOCKER_MADE);
        let mut with_outbound = sample();
        with_outbound.chains[0].rules.insert(
            1,
            Rule {
                in_iface: Iface::new("docker0").ok(),
                target: Target::Jump(OUTBOUND_CHAIN),
                ..Rule::default()
            },
        );
        let drop = |name| Chain {
            name,
            rules: vec![Rule {
                target: Target::Drop,
                ..Rule::default()
            }],
        };
        with_outbound
            .chains
            .extend([drop(OUTBOUND_CHAIN), drop(TO_HOST_CHAIN)]);
        let tx = transaction(&with_outbound, &installed).expect("changes");
        simulate::apply(&mut installed, &tx.text).expect("applies");
        assert!(installed.has_chain(OUTBOUND_CHAIN) && installed.has_chain(TO_HOST_CHAIN));
        let tx = transaction(&sample(), &installed).expect("the chains go");
        assert!(
            tx.text.ends_with(
                "-F DOCKFW-OUTBOUND\n-F DOCKFW-TO-HOST\n-X DOCKFW-OUTBOUND\n-X DOCKFW-TO-HOST\nCOMMIT\n"
            ),
            "{}",
            tx.text
        );
        assert_eq!(tx.changes.removed, 3, "the jump and both drops");
        simulate::apply(&mut installed, &tx.text).expect("applies");
        assert!(!installed.has_chain(OUTBOUND_CHAIN) && !installed.has_chain(TO_HOST_CHAIN));
        assert_eq!(transaction(&sample(), &installed), None);
    }

    #[test]
    fn rule_specs_are_in_iptables_save_order() {
        let text = rules_text(&sample());
        assert_eq!(
            text,
            "-A DOCKFW -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
             -A DOCKFW -o docker0 -j DOCKFW-INBOUND\n\
             -A DOCKFW-INBOUND -s 192.0.2.16/28 -d 172.17.0.2/32 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 8000:8100 -j RETURN\n\
             -A DOCKFW-INBOUND -j DROP\n"
        );
    }

    #[test]
    fn origins_are_comments_and_a_logged_drop_is_rate_limited_with_its_prefix() {
        let drop = Rule {
            proto: Some(Proto::Tcp),
            conntrack: Some(Conntrack::OrigDstPort {
                ports: PortRange {
                    first: 5432,
                    last: 5432,
                },
                dnat: false,
            }),
            target: Target::Drop,
            origin: Some(crate::ruleset::Origin::Deny { line: 33 }),
            ..Rule::default()
        };
        let log = Rule {
            target: Target::Log,
            ..drop.clone()
        };
        // As iptables-save prints them (the burst of 5 is its default).
        assert_eq!(
            rule_spec(&drop),
            "-p tcp -m conntrack --ctorigdstport 5432 -m comment --comment \"dockfw deny@33\" -j DROP"
        );
        assert_eq!(
            rule_spec(&log),
            "-p tcp -m conntrack --ctorigdstport 5432 -m limit --limit 10/min \
             -m comment --comment \"dockfw deny@33\" -j LOG --log-prefix \"dockfw deny@33 \""
        );
    }

    #[test]
    fn a_set_of_port_ranges_is_a_rule_per_range_and_a_missing_one_fails_the_restore() {
        let rule = |dnat: bool| Rule {
            src_set: Some("allow-1-src-v4".to_owned()),
            proto: Some(Proto::Udp),
            orig_dport_ranges: Some("allow-1-ports-v4".to_owned()),
            conntrack: dnat.then_some(Conntrack::Dnat),
            ..Rule::default()
        };
        let range = |first, last| PortRange { first, last };
        let mut rules = FamilyRules {
            chains: vec![Chain {
                name: INBOUND_CHAIN,
                rules: vec![rule(true), rule(false)],
            }],
            orig_port_sets: vec![crate::ruleset::OrigPortSet::new(
                "allow-1-ports-v4".to_owned(),
                crate::net::Family::V4,
                [range(53, 53), range(60000, 60010)],
            )],
            ..FamilyRules::default()
        };
        let set = "-p udp -m set --match-set dockfw-allow-1-src-v4 src -m conntrack";
        assert_eq!(
            chain_specs(&rules, &rules.chains[0]),
            [
                format!("{set} --ctstate DNAT --ctorigdstport 53 -j RETURN"),
                format!("{set} --ctstate DNAT --ctorigdstport 60000:60010 -j RETURN"),
                format!("{set} --ctorigdstport 53 -j RETURN"),
                format!("{set} --ctorigdstport 60000:60010 -j RETURN"),
            ]
        );
        rules.orig_port_sets.clear();
        let specs = chain_specs(&rules, &rules.chains[0]);
        assert!(
            specs
                .iter()
                .all(|s| s.starts_with("-m set --match-set dockfw-allow-1-ports-v4 dst ")),
            "no rule loses its port condition: {specs:?}"
        );
    }

    #[test]
    fn sets_are_matched_by_ipset_name_after_the_port() {
        let rule = Rule {
            src_set: Some("allow-1-src-v4".to_owned()),
            dst_set: Some("allow-1-v4".to_owned()),
            proto: Some(Proto::Tcp),
            dport: Some(PortRange::single(5432)),
            conntrack: Some(Conntrack::Dnat),
            ..Rule::default()
        };
        assert_eq!(
            rule_spec(&rule),
            "-p tcp -m tcp --dport 5432 -m set --match-set dockfw-allow-1-src-v4 src \
             -m set --match-set dockfw-allow-1-v4 dst -m conntrack --ctstate DNAT -j RETURN"
        );
    }

    #[test]
    fn first_install_declares_chains_and_one_jump() {
        let installed = Installed::parse(DOCKER_MADE);
        let tx = transaction(&sample(), &installed).expect("changes");
        assert_eq!(
            tx.text,
            format!(
                "*filter\n:DOCKFW - [0:0]\n:DOCKFW-INBOUND - [0:0]\n{}-I DOCKER-USER 1 -j DOCKFW\nCOMMIT\n",
                rules_text(&sample())
            )
        );
        assert_eq!(tx.changes.added, 4);
        assert!(tx.jumps.placed_jumps);
        assert!(!tx.jumps.created_docker_user && !tx.jumps.restored_forward_jump);
    }

    #[test]
    fn applying_the_transaction_converges() {
        let mut installed = Installed::parse(DOCKER_MADE);
        let tx = transaction(&sample(), &installed).expect("changes");
        simulate::apply(&mut installed, &tx.text).expect("applies");
        assert_eq!(
            transaction(&sample(), &installed),
            None,
            "second run changes nothing"
        );
        assert_eq!(
            installed.chain_rules(DOCKER_USER),
            ["-j DOCKFW", "-j RETURN"]
        );
    }

    #[test]
    fn misplaced_and_duplicate_jumps_are_fixed_without_touching_chains() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        let extra = "*filter\n-I DOCKER-USER 1 -j CROWDSEC\n-A DOCKER-USER -j DOCKFW\nCOMMIT\n";
        simulate::apply(&mut installed, extra).unwrap();
        let tx = transaction(&sample(), &installed).expect("jump fix");
        assert_eq!(
            tx.text,
            "*filter\n-D DOCKER-USER -j DOCKFW\n-D DOCKER-USER -j DOCKFW\n-I DOCKER-USER 1 -j DOCKFW\nCOMMIT\n"
        );
        simulate::apply(&mut installed, &tx.text).unwrap();
        assert_eq!(
            installed.chain_rules(DOCKER_USER),
            ["-j DOCKFW", "-j CROWDSEC", "-j RETURN"]
        );
    }

    #[test]
    fn missing_forward_jump_is_restored_and_reported() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(&mut installed, "-D FORWARD -j DOCKER-USER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("restore");
        assert!(tx.jumps.restored_forward_jump);
        assert_eq!(
            tx.text,
            format!("*filter\n-I FORWARD 1 {RESTORED_FORWARD_JUMP}\nCOMMIT\n")
        );
    }

    #[test]
    fn forward_jump_dockfw_made_is_moved_back_on_top_when_pushed_down() {
        let mut installed =
            Installed::parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n");
        install(&mut installed);
        simulate::apply(&mut installed, "-I FORWARD 1 -o br-new -j DOCKER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("move");
        assert!(tx.jumps.moved_forward_jump);
        assert_eq!(
            tx.text,
            format!(
                "*filter\n-D FORWARD {CREATED_FORWARD_JUMP}\n-I FORWARD 1 {CREATED_FORWARD_JUMP}\nCOMMIT\n"
            )
        );
        simulate::apply(&mut installed, &tx.text).unwrap();
        assert_eq!(
            installed.chain_rules("FORWARD"),
            [CREATED_FORWARD_JUMP, "-o br-new -j DOCKER"]
        );
        assert_eq!(transaction(&sample(), &installed), None);
    }

    #[test]
    fn a_restored_jump_is_kept_on_top_and_handed_back_unmarked_on_uninstall() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(&mut installed, "-D FORWARD -j DOCKER-USER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("restore");
        simulate::apply(&mut installed, &tx.text).unwrap();
        simulate::apply(&mut installed, "-I FORWARD 1 -o br-new -j DOCKER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("move");
        assert!(
            tx.jumps.moved_forward_jump,
            "a jump dockfw put there is dockfw's to keep on top"
        );
        simulate::apply(&mut installed, &tx.text).unwrap();
        assert_eq!(installed.chain_rules("FORWARD")[0], RESTORED_FORWARD_JUMP);

        let text = uninstall(&installed).expect("uninstall");
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(
            installed.chain_rules("FORWARD"),
            ["-j DOCKER-USER", "-o br-new -j DOCKER"]
        );
        assert_eq!(
            installed.chain_rules(DOCKER_USER),
            ["-j RETURN"],
            "Docker's chain stays"
        );
    }

    #[test]
    fn a_restored_jump_goes_on_uninstall_when_dockers_came_back() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(&mut installed, "-D FORWARD -j DOCKER-USER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("restore");
        simulate::apply(&mut installed, &tx.text).unwrap();
        simulate::apply(&mut installed, "-I FORWARD 1 -j DOCKER-USER\n").unwrap();
        assert_eq!(
            transaction(&sample(), &installed),
            None,
            "Docker's jump first is fine"
        );
        let text = uninstall(&installed).expect("uninstall");
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(installed.chain_rules("FORWARD"), ["-j DOCKER-USER"]);
    }

    #[test]
    fn dockers_own_forward_jump_is_not_reordered() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(&mut installed, "-I FORWARD 1 -j LIBVIRT_FWI\n").unwrap();
        assert_eq!(
            transaction(&sample(), &installed),
            None,
            "Docker's jump is Docker's to place"
        );
    }

    #[test]
    fn a_conditional_jump_to_docker_user_is_not_the_jump() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(
            &mut installed,
            "-I FORWARD 1 -i eth0 -j DOCKER-USER\n-D FORWARD -j DOCKER-USER\n",
        )
        .unwrap();
        let tx = transaction(&sample(), &installed).expect("restore");
        assert!(tx.jumps.restored_forward_jump);
        assert_eq!(
            tx.text,
            format!("*filter\n-I FORWARD 1 {RESTORED_FORWARD_JUMP}\nCOMMIT\n"),
            "the operator's rule stays"
        );
    }

    #[test]
    fn an_existing_docker_user_is_never_declared_so_never_flushed() {
        let installed = Installed::parse(DOCKER_MADE);
        let tx = transaction(&sample(), &installed).expect("install");
        assert!(!tx.text.contains(":DOCKER-USER") && !tx.text.contains("-N DOCKER-USER"));
        let mut empty =
            Installed::parse("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
        let tx = transaction(&sample(), &empty).expect("create");
        assert!(tx.text.contains("-N DOCKER-USER\n") && !tx.text.contains(":DOCKER-USER"));
        simulate::apply(&mut empty, "-N DOCKER-USER\n").unwrap();
        assert!(
            simulate::apply(&mut empty, &tx.text).is_err(),
            "a chain that appeared meanwhile fails the restore"
        );
    }

    #[test]
    fn missing_docker_user_is_created_with_a_marked_jump_and_uninstalled_again() {
        let empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        let mut installed = Installed::parse(empty);
        let tx = transaction(&sample(), &installed).expect("create");
        assert!(tx.jumps.created_docker_user);
        assert!(!tx.jumps.restored_forward_jump);
        simulate::apply(&mut installed, &tx.text).unwrap();
        assert!(installed.forward_jumps().1);
        assert_eq!(transaction(&sample(), &installed), None);

        let text = uninstall(&installed).expect("something to remove");
        assert!(
            !text.contains("-D DOCKER-USER"),
            "iptables-nft refuses to delete DOCKFW when the batch also deletes its jump before flushing DOCKER-USER"
        );
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(installed.chains, Installed::parse(empty).chains);
        assert!(installed.chain_rules("FORWARD").is_empty());
    }

    #[test]
    fn a_chain_made_at_boot_is_handed_to_the_engine_once_it_jumps_there() {
        let empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        let mut installed = Installed::parse(empty);
        install(&mut installed);
        // The engine starts, keeps the chain, and puts its own jump first.
        simulate::apply(&mut installed, "-I FORWARD 1 -j DOCKER-USER\n").unwrap();
        let tx = transaction(&sample(), &installed).expect("hand over");
        assert!(tx.jumps.handed_over_docker_user);
        assert_eq!(
            tx.text,
            format!("*filter\n-D FORWARD {CREATED_FORWARD_JUMP}\nCOMMIT\n")
        );
        simulate::apply(&mut installed, &tx.text).unwrap();
        assert_eq!(installed.chain_rules("FORWARD"), ["-j DOCKER-USER"]);
        assert_eq!(transaction(&sample(), &installed), None);
        let text = uninstall(&installed).expect("uninstall");
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(installed.chain_rules(DOCKER_USER), ["-j RETURN"]);
        assert_eq!(installed.chain_rules("FORWARD"), ["-j DOCKER-USER"]);
    }

    #[test]
    fn uninstall_takes_the_creation_jump_when_the_engine_jumps_there_too() {
        let empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n";
        let mut installed = Installed::parse(empty);
        install(&mut installed);
        simulate::apply(&mut installed, "-A FORWARD -j DOCKER-USER\n").unwrap();
        let text = uninstall(&installed).expect("uninstall");
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(installed.chain_rules("FORWARD"), ["-j DOCKER-USER"]);
        assert!(installed.has_chain(DOCKER_USER), "the engine's now");
        assert!(!installed.has_anything_owned());
    }

    #[test]
    fn uninstall_leaves_docker_user_as_docker_made_it() {
        let mut installed = Installed::parse(DOCKER_MADE);
        install(&mut installed);
        simulate::apply(&mut installed, "-I DOCKER-USER 2 -j CROWDSEC\n").unwrap();
        let text = uninstall(&installed).expect("something to remove");
        simulate::apply(&mut installed, &text).unwrap();
        assert_eq!(
            installed.chain_rules(DOCKER_USER),
            ["-j CROWDSEC", "-j RETURN"]
        );
        assert!(!installed.has_anything_owned());
        assert_eq!(uninstall(&installed), None);
    }
}
