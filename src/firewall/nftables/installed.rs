//! What is installed in dockfw's table, compared with what dockfw last
//! applied: whether the table has to be written again, whether only its
//! sets' elements have to change ([`Reason::SetElements`], [`changed_sets`]),
//! and why.
//!
//! Pure. It does not parse nft's rule syntax: right after an apply of the
//! whole table, the table as `nft list` prints it is kept, normalised and
//! without its sets' elements ([`normalise`]), as the expected listing
//! ([`Applied`]); any later listing that differs is drift. So the
//! comparison is exact, needs no model of how nft prints a rule, and
//! follows nft across versions (a new nft that prints a rule differently
//! costs one extra apply). The limit: a change made by another program
//! between dockfw's apply and its listing becomes the expectation. Set
//! elements, which change with every container, are read from the listing
//! ([`listed_elements`]) and compared, as addresses and ports, with the
//! plan last written, so that writing new elements needs no listing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::render::{DROP_CHAIN_NAME, range_text, set_name};
use crate::net::Proto;
use crate::ruleset::{AddrSet, ElementChange, Family, Origin, PortSet, Ruleset};

/// A listing of dockfw's table with what changes without a change of rules
/// taken out: counter values, rule and chain handles, set elements, blank
/// lines and indentation. One line per statement, single spaces between
/// words.
pub fn normalise(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    let mut in_elements = false;
    for line in listing.lines() {
        if in_elements || line.trim_start().starts_with("elements = {") {
            in_elements = !line.trim_end().ends_with('}');
            continue;
        }
        let words = without_state(line.split_whitespace().collect());
        if words.is_empty() {
            continue;
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// The elements of each set of a listing of dockfw's table that has any,
/// by the set's nft name, each in [`canonical`] form.
pub fn listed_elements(listing: &str) -> BTreeMap<String, BTreeSet<String>> {
    listed_items(listing)
        .into_iter()
        .map(|(set, items)| (set, items.iter().map(|i| canonical(i)).collect()))
        .collect()
}

/// The elements of each set of a listing that has any, by the set's nft
/// name, each as listed (with its counter, if the set counts).
fn listed_items(listing: &str) -> BTreeMap<String, Vec<String>> {
    let mut sets = BTreeMap::new();
    let mut set = "";
    let mut elements: Option<Vec<String>> = None;
    for line in listing.lines() {
        let line = line.trim();
        if elements.is_none() {
            if let Some(name) = line.strip_prefix("set ") {
                set = name.split_whitespace().next().unwrap_or_default();
                continue;
            }
            let Some(rest) = line.strip_prefix("elements = {") else {
                continue;
            };
            elements = Some(Vec::new());
            collect_elements(rest, set, &mut elements, &mut sets);
        } else {
            collect_elements(line, set, &mut elements, &mut sets);
        }
    }
    sets
}

/// Add the elements on one line of an `elements = { … }` block; at its
/// closing brace, file them under `set`.
fn collect_elements(
    line: &str,
    set: &str,
    elements: &mut Option<Vec<String>>,
    sets: &mut BTreeMap<String, Vec<String>>,
) {
    let (items, closed) = match line.split_once('}') {
        Some((items, _)) => (items, true),
        None => (line, false),
    };
    if let Some(elements) = elements.as_mut() {
        elements.extend(
            items
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned),
        );
    }
    if closed && let Some(done) = elements.take() {
        sets.insert(set.to_owned(), done);
    }
}

/// One set element as text that compares equal however it is spelled: a
/// network (an address is its /32 or /128) with its host bits cleared, a
/// port as a number, without its counter; anything else as it is.
fn canonical(item: &str) -> String {
    let item = element_counter(item).map_or(item, |(element, _)| element);
    if let Ok(net) = item.parse::<IpNet>() {
        return net.trunc().to_string();
    }
    if let Ok(addr) = item.parse::<IpAddr>() {
        return IpNet::from(addr).to_string();
    }
    item.to_owned()
}

/// The elements `ruleset` gives its non-empty sets, as
/// [`listed_elements`] reads them from a listing.
pub fn planned_elements(ruleset: &Ruleset) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets = BTreeMap::new();
    for family in Family::ALL {
        let rules = ruleset.family(family);
        for set in &rules.sets {
            let elements: BTreeSet<String> =
                set.elements.iter().map(|e| e.trunc().to_string()).collect();
            if !elements.is_empty() {
                sets.insert(set_name(&set.name), elements);
            }
        }
        for set in rules.port_sets.iter().chain(&rules.drop_ports) {
            let ports: BTreeSet<String> = set.ports.iter().map(u16::to_string).collect();
            if !ports.is_empty() {
                sets.insert(set_name(&set.name), ports);
            }
        }
        for set in &rules.orig_port_sets {
            let ranges: BTreeSet<String> = set.ranges.iter().map(|r| range_text(*r)).collect();
            if !ranges.is_empty() {
                sets.insert(set_name(&set.name), ranges);
            }
        }
    }
    sets
}

/// `words` without `packets N bytes M` after `counter` and without a
/// trailing `# handle N`.
fn without_state(mut words: Vec<&str>) -> Vec<&str> {
    if let [.., "#", "handle", _] = words.as_slice() {
        words.truncate(words.len() - 3);
    }
    let mut i = 0;
    while i < words.len() {
        if words[i] == "counter"
            && matches!(words.get(i + 1..i + 5), Some(["packets", _, "bytes", _]))
        {
            words.drain(i + 1..i + 5);
        }
        i += 1;
    }
    words
}

/// The counters of the drop rules in a listing of dockfw's table (as `nft
/// list table` prints it, with counter values) that name their origin in
/// a comment: each rule as `chain rule` with its state taken out, its
/// origin and its packets.
pub fn drop_counters(listing: &str) -> Vec<(String, Origin, u64)> {
    let mut chain = "";
    let mut counted = Vec::new();
    for line in listing.lines() {
        let line = line.split(" # handle ").next().unwrap_or_default().trim();
        if let Some(name) = line.strip_prefix("chain ") {
            chain = name.split_whitespace().next().unwrap_or_default();
            continue;
        }
        let Some((rule, comment)) = line.rsplit_once(" comment \"") else {
            continue;
        };
        let Some(origin) = comment.strip_suffix('"').and_then(Origin::from_comment) else {
            continue;
        };
        let words: Vec<&str> = rule.split_whitespace().collect();
        let dropped = |w: &[&str]| match w {
            ["counter", "packets", packets, "bytes", _, "drop"]
            | [
                "counter",
                "packets",
                packets,
                "bytes",
                _,
                "jump",
                DROP_CHAIN_NAME,
            ] => packets.parse::<u64>().ok(),
            _ => None,
        };
        let packets = words
            .windows(6)
            .find_map(dropped)
            .or_else(|| words.windows(7).find_map(dropped));
        if let Some(packets) = packets {
            let rule = without_state(line.split_whitespace().collect()).join(" ");
            counted.push((format!("{chain} {rule}"), origin, packets));
        }
    }
    counted
}

/// An element as nft lists it with its counter (`5432 counter packets 3
/// bytes 180`): the element and its packets.
fn element_counter(item: &str) -> Option<(&str, u64)> {
    let (element, counter) = item.split_once(" counter ")?;
    match counter.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["packets", packets, "bytes", _] => Some((element.trim(), packets.parse().ok()?)),
        _ => None,
    }
}

/// The per-element counters of the drop port sets (`dropped_tcp_v4`) in a
/// listing of dockfw's table: each element's family, protocol, port and
/// packets. An element written anew starts at zero, like a rule.
pub fn drop_port_counters(listing: &str) -> Vec<(Family, Proto, u16, u64)> {
    let mut counted = Vec::new();
    for (set, elements) in listed_items(listing) {
        let Some((family, proto)) = drop_port_set(&set) else {
            continue;
        };
        for item in elements {
            let Some((element, packets)) = element_counter(&item) else {
                continue;
            };
            let Ok(port) = element.parse::<u16>() else {
                continue;
            };
            counted.push((family, proto, port, packets));
        }
    }
    counted
}

/// The family and protocol of a drop port set by its nft name
/// (`dropped_udp_v6`).
fn drop_port_set(set: &str) -> Option<(Family, Proto)> {
    let rest = set.strip_prefix("dropped_")?;
    let (proto, family) = rest.split_once('_')?;
    let family = match family {
        "v4" => Family::V4,
        "v6" => Family::V6,
        _ => return None,
    };
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return None,
    };
    Some((family, proto))
}

/// What dockfw last applied, and how nft listed the table right after the
/// last apply of the whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    ruleset: Ruleset,
    /// The normalised listing (no elements) taken right after the last
    /// apply of the whole table.
    listing: String,
}

impl Applied {
    /// `ruleset` was applied whole and then the table was listed as
    /// `listing`.
    pub fn new(ruleset: Ruleset, listing: &str) -> Applied {
        Applied {
            ruleset,
            listing: normalise(listing),
        }
    }

    /// The sets were given `ruleset`'s elements ([`Reason::SetElements`]):
    /// the rest of the table, and so its listing, is as it was.
    pub fn with_elements_of(&self, ruleset: Ruleset) -> Applied {
        Applied {
            ruleset,
            listing: self.listing.clone(),
        }
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// The sets were given these element changes: the rest of the table,
    /// and so its listing, is as it was.
    pub fn apply_changes(&mut self, changes: &[ElementChange]) {
        self.ruleset.apply_changes(changes);
    }
}

/// Why dockfw's table has to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing has been applied yet by this process: what a previous run
    /// left has no listing to compare with, so it is rewritten once.
    FirstApply,
    /// The plan differs from the one last applied.
    PlanChanged,
    /// The table is gone (deleted by someone else, or a ruleset flush).
    TableMissing,
    /// The table differs from its listing right after the last apply.
    Drift,
    /// The plan differs from the one last applied in set elements only:
    /// the rules stay, the changed sets get their new elements.
    SetElements,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstApply => "first apply",
            Reason::PlanChanged => "plan changed",
            Reason::TableMissing => "table missing",
            Reason::Drift => "table changed by someone else",
            Reason::SetElements => "set elements changed",
        }
    }
}

/// Whether, and why, `desired` has to be applied, given what was last
/// applied and the table's listing now (`None`: there is no table). Only
/// [`Reason::SetElements`] allows less than writing the whole table: the
/// table is as last applied, and the plan differs in set elements only.
pub fn reason_to_apply(
    desired: &Ruleset,
    last: Option<&Applied>,
    installed: Option<&str>,
) -> Option<Reason> {
    let Some(last) = last else {
        return Some(Reason::FirstApply);
    };
    if !last.ruleset.same_rules(desired) {
        return Some(Reason::PlanChanged);
    }
    let Some(installed) = installed else {
        return Some(Reason::TableMissing);
    };
    if normalise(installed) != last.listing
        || listed_elements(installed) != planned_elements(&last.ruleset)
    {
        return Some(Reason::Drift);
    }
    (last.ruleset != *desired).then_some(Reason::SetElements)
}

/// The sets of `desired` whose elements differ from `before`'s set of the
/// same name (or that `before` lacks), address sets and port sets, with
/// how many elements they gain and lose in all.
pub fn changed_sets<'a>(desired: &'a Ruleset, before: Option<&Ruleset>) -> ChangedSets<'a> {
    let mut out = ChangedSets::default();
    for family in Family::ALL {
        let rules = desired.family(family);
        for set in &rules.sets {
            let old = before.and_then(|b| b.family(family).set(&set.name));
            let had = old.map(|o| &o.elements);
            if count(&set.elements, had, &mut out.added, &mut out.removed) {
                out.sets.push(set);
            }
        }
        for set in &rules.port_sets {
            let old = before.and_then(|b| b.family(family).port_set(&set.name));
            let had = old.map(|o| &o.ports);
            if count(&set.ports, had, &mut out.added, &mut out.removed) {
                out.port_sets.push(set);
            }
        }
        for set in &rules.drop_ports {
            let old = before.and_then(|b| b.family(family).drop_port_set(&set.name));
            let had = old.map(|o| &o.ports);
            if count(&set.ports, had, &mut out.added, &mut out.removed) {
                out.port_sets.push(set);
            }
        }
    }
    out
}

/// Count what `want` gains and loses against `had`; whether it differs.
fn count<T: Ord>(
    want: &BTreeSet<T>,
    had: Option<&BTreeSet<T>>,
    added: &mut usize,
    removed: &mut usize,
) -> bool {
    if had == Some(want) {
        return false;
    }
    *added += had.map_or(want.len(), |h| want.difference(h).count());
    *removed += had.map_or(0, |h| h.difference(want).count());
    true
}

/// What [`changed_sets`] finds.
#[derive(Debug, Default)]
pub struct ChangedSets<'a> {
    pub sets: Vec<&'a AddrSet>,
    pub port_sets: Vec<&'a PortSet>,
    pub added: usize,
    pub removed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::PortRange;
    use crate::ruleset::{Chain, ENTRY_CHAIN, FamilyRules, OrigPortSet, Rule, Target};

    const LISTED: &str = "table inet dockfw { # handle 7
\tchain forward { # handle 1
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tct state established,related counter packets 12 bytes 3400 accept # handle 5
\t\tiifname \"docker0\" counter packets 0 bytes 0 accept # handle 6
\t}

\tchain inbound { # handle 2
\t}
}
";

    const STATELESS: &str = "table inet dockfw {
\tchain forward {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tct state established,related counter accept
\t\tiifname \"docker0\" counter accept
\t}
\tchain inbound {
\t}
}
";

    fn ruleset(target: Target) -> Ruleset {
        let family = FamilyRules {
            chains: vec![Chain {
                name: ENTRY_CHAIN,
                rules: vec![Rule {
                    target,
                    ..Rule::default()
                }],
            }],
            sets: Vec::new(),
            port_sets: Vec::new(),
            drop_ports: Vec::new(),
            orig_port_sets: Vec::new(),
            drop_endpoints: Default::default(),
        };
        Ruleset {
            v4: family.clone(),
            v6: family,
        }
    }

    #[test]
    fn drop_counters_are_read_by_origin_from_a_listing() {
        let listing = "table inet dockfw { # handle 7
\tchain inbound { # handle 2
\t\tmeta l4proto tcp ct original proto-dst 5432 limit rate 10/minute counter packets 2 bytes 120 log prefix \"dockfw deny@3 \" comment \"dockfw deny@3\" # handle 9
\t\tmeta l4proto tcp ct original proto-dst 5432 counter packets 3 bytes 180 drop comment \"dockfw deny@3\" # handle 10
\t\tmeta l4proto tcp ct status dnat ct original proto-dst 80 counter packets 9 bytes 540 return comment \"dockfw allow@6\"
\t\tcounter packets 1204 bytes 72240 drop comment \"dockfw default\"
\t\tcounter packets 5 bytes 300 drop comment \"someone else\"
\t}
\tchain input {
\t\tmeta l4proto tcp tcp dport 5432 counter packets 4 bytes 240 drop comment \"dockfw deny@3\"
\t}
}
";
        assert_eq!(
            drop_counters(listing),
            [
                (
                    "inbound meta l4proto tcp ct original proto-dst 5432 counter drop comment \"dockfw deny@3\"".to_owned(),
                    Origin::Deny { line: 3 },
                    3
                ),
                (
                    "inbound counter drop comment \"dockfw default\"".to_owned(),
                    Origin::DefaultDeny,
                    1204
                ),
                (
                    "input meta l4proto tcp tcp dport 5432 counter drop comment \"dockfw deny@3\"".to_owned(),
                    Origin::Deny { line: 3 },
                    4
                ),
            ]
        );
        assert!(drop_counters(STATELESS).is_empty());
    }

    /// Drop port sets as nft 1.0.6 lists them: each element with its
    /// counter, a long list wrapped.
    const DROP_PORTS: &str = "table inet dockfw { # handle 7
\tset dropped_tcp_v4 { # handle 3
\t\ttype inet_service
\t\tcounter
\t\telements = { 53 counter packets 0 bytes 0, 5432 counter packets 2 bytes 120, 8080 counter packets 0 bytes 0,
\t\t\t     9000 counter packets 17 bytes 1020 }
\t}
\tset dropped_udp_v6 { # handle 4
\t\ttype inet_service
\t\tcounter
\t\telements = { 5353 counter packets 4 bytes 312 }
\t}
\tset dropped_sctp_v4 { # handle 5
\t\ttype inet_service
\t\tcounter
\t}
\tset guard_tcp_v4 { # handle 6
\t\ttype inet_service
\t\telements = { 22 }
\t}
\tchain dropped { # handle 8
\t\tmeta nfproto ipv4 meta l4proto tcp ct original proto-dst @dropped_tcp_v4 counter packets 19 bytes 1140 drop # handle 9
\t\tcounter packets 1 bytes 60 drop # handle 10
\t}
}
";

    #[test]
    fn drop_counters_per_port_are_read_from_the_set_elements() {
        let tcp = |port, packets| (Family::V4, Proto::Tcp, port, packets);
        let udp = (Family::V6, Proto::Udp, 5353, 4);
        assert_eq!(
            drop_port_counters(DROP_PORTS),
            [tcp(53, 0), tcp(5432, 2), tcp(8080, 0), tcp(9000, 17), udp]
        );
        assert!(
            drop_counters(DROP_PORTS).is_empty(),
            "no rule names an origin"
        );
        assert!(drop_port_counters(STATELESS).is_empty());
    }

    #[test]
    fn counted_elements_compare_without_their_counters() {
        let read = listed_elements(DROP_PORTS);
        assert_eq!(
            read["dropped_tcp_v4"],
            ["53", "5432", "8080", "9000"].map(str::to_owned).into()
        );
        assert_eq!(read["guard_tcp_v4"], ["22"].map(str::to_owned).into());
        let counted_again = DROP_PORTS.replace("packets 17 bytes 1020", "packets 18 bytes 1080");
        assert_eq!(normalise(DROP_PORTS), normalise(&counted_again));
        assert_eq!(element_counter("53 counter packets x bytes 0"), None);
        assert_eq!(element_counter("53"), None);
    }

    #[test]
    fn counters_handles_and_layout_are_normalised_away() {
        assert_eq!(normalise(LISTED), normalise(STATELESS));
        assert_eq!(
            normalise(STATELESS),
            "table inet dockfw {\nchain forward {\n\
             type filter hook forward priority filter - 10; policy accept;\n\
             ct state established,related counter accept\n\
             iifname \"docker0\" counter accept\n}\nchain inbound {\n}\n}\n"
        );
    }

    #[test]
    fn a_changed_rule_survives_normalisation() {
        let dropped = STATELESS.replace("\"docker0\" counter accept", "\"docker0\" counter drop");
        assert_ne!(normalise(&dropped), normalise(STATELESS));
        let added = STATELESS.replace("\t}\n\tchain inbound", "\t\tdrop\n\t}\n\tchain inbound");
        assert_ne!(normalise(&added), normalise(STATELESS));
    }

    #[test]
    fn an_incomplete_counter_is_kept_as_it_is() {
        assert_eq!(
            normalise("counter packets 1 accept\n"),
            "counter packets 1 accept\n"
        );
    }

    #[test]
    fn the_first_reconcile_always_applies() {
        let desired = ruleset(Target::Return);
        assert_eq!(
            reason_to_apply(&desired, None, Some(STATELESS)),
            Some(Reason::FirstApply)
        );
    }

    #[test]
    fn nothing_to_do_when_plan_and_table_are_as_applied() {
        let desired = ruleset(Target::Return);
        let last = Applied::new(desired.clone(), STATELESS);
        assert_eq!(reason_to_apply(&desired, Some(&last), Some(LISTED)), None);
    }

    fn with_known(elements: &[&str]) -> Ruleset {
        let mut desired = ruleset(Target::Return);
        desired.v4.chains[0].rules[0].dst_set = Some("known-v4".to_owned());
        let nets = elements.iter().map(|e| e.parse().expect("net"));
        desired.v4.sets = vec![AddrSet::new("known-v4".to_owned(), Family::V4, nets)];
        desired
    }

    /// [`STATELESS`] with the set `known_v4` holding `elements` (as nft
    /// lists them, one or two to a line).
    fn listed_with_known(elements: &[&str]) -> String {
        let block = if elements.is_empty() {
            String::new()
        } else {
            let lines: Vec<String> = elements.chunks(2).map(|c| c.join(", ")).collect();
            format!("\t\telements = {{ {} }}\n", lines.join(",\n\t\t\t     "))
        };
        STATELESS.replacen(
            "table inet dockfw {\n",
            &format!(
                "table inet dockfw {{ # handle 3\n\tset known_v4 {{ # handle 4\n\t\ttype ipv4_addr\n\t\tflags interval\n{block}\t}}\n\n"
            ),
            1,
        )
    }

    #[test]
    fn port_ranges_are_read_as_planned() {
        let mut desired = ruleset(Target::Return);
        desired.v4.chains[0].rules[0].orig_dport_ranges = Some("allow-1-ports-v4".to_owned());
        let range = |first, last| PortRange { first, last };
        desired.v4.orig_port_sets = vec![OrigPortSet::new(
            "allow-1-ports-v4".to_owned(),
            Family::V4,
            [
                range(22, 23),
                range(24, 30),
                range(80, 80),
                range(65535, 65535),
            ],
        )];
        // As nft 1.0.6 lists the set written from `render`.
        let listing = "\tset allow_1_ports_v4 {\n\t\ttype inet_service\n\t\tflags interval\n\
                       \t\telements = { 22-30, 80,\n\t\t\t     65535 }\n\t}\n";
        assert_eq!(listed_elements(listing), planned_elements(&desired));
    }

    #[test]
    fn elements_are_read_from_a_listing_as_addresses_and_ports() {
        let listing = listed_with_known(&["172.17.0.2", "10.0.0.0/8", "172.17.0.3"]);
        let read = listed_elements(&listing);
        let want: BTreeSet<String> = ["10.0.0.0/8", "172.17.0.2/32", "172.17.0.3/32"]
            .map(str::to_owned)
            .into();
        assert_eq!(read.get("known_v4"), Some(&want));
        assert_eq!(read.len(), 1);
        assert_eq!(normalise(&listing), normalise(&listed_with_known(&[])));
        // One line, ports, an IPv6 address spelled otherwise than Rust does.
        let one = "\tset guard_tcp_v4 {\n\t\ttype inet_service\n\t\telements = { 22, 80 }\n\t}\n\
                   \tset from_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\telements = { ::1.2.3.4, fd00::/64 }\n\t}\n";
        let read = listed_elements(one);
        assert_eq!(read["guard_tcp_v4"], ["22", "80"].map(str::to_owned).into());
        assert_eq!(
            read["from_v6"],
            ["::102:304/128", "fd00::/64"].map(str::to_owned).into()
        );
        assert_eq!(
            normalise(one)
                .lines()
                .filter(|l| l.contains("elements"))
                .count(),
            0
        );
    }

    #[test]
    fn only_set_elements_differ_needs_only_the_elements() {
        let listed = listed_with_known(&["172.17.0.2"]);
        let last = Applied::new(with_known(&["172.17.0.2/32"]), &listed);
        assert_eq!(
            reason_to_apply(&with_known(&["172.17.0.2/32"]), Some(&last), Some(&listed)),
            None
        );
        let more = with_known(&["172.17.0.2/32", "172.17.0.3/32"]);
        assert_eq!(
            reason_to_apply(&more, Some(&last), Some(&listed)),
            Some(Reason::SetElements)
        );
        // Written with no listing after: the next listing has the new
        // elements, and is as expected.
        let written = last.with_elements_of(more.clone());
        let relisted = listed_with_known(&["172.17.0.2", "172.17.0.3"]);
        assert_eq!(
            reason_to_apply(&more, Some(&written), Some(&relisted)),
            None
        );
        // An element taken out, or one added, by someone else is drift.
        assert_eq!(
            reason_to_apply(&more, Some(&written), Some(&listed)),
            Some(Reason::Drift)
        );
        let added = listed_with_known(&["172.17.0.2", "172.17.0.3", "192.0.2.1"]);
        assert_eq!(
            reason_to_apply(&more, Some(&written), Some(&added)),
            Some(Reason::Drift)
        );
        let changed = changed_sets(&more, Some(last.ruleset()));
        assert_eq!(
            changed.sets.iter().map(|s| &s.name).collect::<Vec<_>>(),
            ["known-v4"]
        );
        assert!(changed.port_sets.is_empty());
        assert_eq!((changed.added, changed.removed), (1, 0));
        let flushed = "table inet dockfw {\n\tchain forward {\n\t}\n}\n";
        assert_eq!(
            reason_to_apply(&more, Some(&last), Some(flushed)),
            Some(Reason::Drift),
            "a drifted table is written whole"
        );
        assert_eq!(
            reason_to_apply(&more, Some(&last), None),
            Some(Reason::TableMissing)
        );
        let mut other_rule = more.clone();
        other_rule.v4.chains[0].rules[0].target = Target::Drop;
        assert_eq!(
            reason_to_apply(&other_rule, Some(&last), Some(&listed)),
            Some(Reason::PlanChanged)
        );
        let mut renamed = more;
        renamed.v4.sets[0].name = "known-v6".to_owned();
        assert_eq!(
            reason_to_apply(&renamed, Some(&last), Some(&listed)),
            Some(Reason::PlanChanged)
        );
    }

    #[test]
    fn a_new_plan_a_missing_table_and_drift_each_need_an_apply() {
        let desired = ruleset(Target::Return);
        let last = Applied::new(desired.clone(), STATELESS);
        assert_eq!(
            reason_to_apply(&ruleset(Target::Drop), Some(&last), Some(STATELESS)),
            Some(Reason::PlanChanged)
        );
        assert_eq!(
            reason_to_apply(&desired, Some(&last), None),
            Some(Reason::TableMissing)
        );
        let flushed = "table inet dockfw {\n\tchain forward {\n\t}\n}\n";
        assert_eq!(
            reason_to_apply(&desired, Some(&last), Some(flushed)),
            Some(Reason::Drift)
        );
    }
}
