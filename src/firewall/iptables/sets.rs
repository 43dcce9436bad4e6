//! dockfw's address and port sets as ipsets (`hash:net`, `hash:net,port`):
//! their names, which of the host's sets are dockfw's (`ipset list -n`),
//! the `ipset restore` text that saves those alone, the parser of what
//! it prints (`ipset save`'s format), and the `ipset restore` text that
//! takes the installed sets of one family to the desired ones.
//!
//! Pure: the parent module runs `ipset`. A set is never edited element by
//! element: it is filled under a temporary name and swapped in (`swap`, one
//! kernel operation), so a rule never sees it half-filled. One swap per set
//! is atomic, a change of several sets or of sets and rules is not; so
//! every changed set first passes through the stricter of its old and new
//! contents (the union for a set whose rules drop, the common part for one
//! whose rules admit), all of those swaps before any that loosens, and
//! when the rules change too, they change in between. The verdict of
//! dockfw's chains only tightens as a drop set grows or an admit set
//! shrinks, so no moment admits what neither the old nor the new plan
//! admits. Sets no rule names any more are destroyed last.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::net::{Family, Proto};
use crate::ruleset::{FamilyRules, Target};

/// What every ipset of dockfw's is named with first; no other set is read
/// or written.
pub const PREFIX: &str = "dockfw-";

/// The suffix of the name a set is filled under before it is swapped in.
const TEMPORARY: &str = "-tmp";

/// The family whose transactions own the ipset `name`: by the plan's
/// name (`…-v6`, `…-v6-tmp`), so that each of dockfw's ipsets belongs to
/// exactly one family whatever its header says.
pub fn owner(name: &str) -> Family {
    let plain = name.strip_suffix(TEMPORARY).unwrap_or(name);
    if plain.ends_with("-v6") {
        Family::V6
    } else {
        Family::V4
    }
}

/// The ipset of the plan's set `name`: `dockfw-known-v4`.
pub fn ipset_name(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The type and family of the ipsets dockfw makes, as `ipset save` prints
/// them after the name.
pub fn kind(family: Family) -> &'static str {
    match family {
        Family::V4 => "hash:net family inet",
        Family::V6 => "hash:net family inet6",
    }
}

/// The type and family of the ipset of a port set, as `ipset save` prints
/// them: `hash:net,port`, each port with both halves of the family's
/// addresses (a zero-length prefix is refused), matched `dst,dst`. Listing
/// it costs what it holds; a `bitmap:port` over every port would be
/// scanned whole at every `ipset save`.
pub fn port_kind(family: Family) -> &'static str {
    match family {
        Family::V4 => "hash:net,port family inet",
        Family::V6 => "hash:net,port family inet6",
    }
}

/// The elements of the ipset of a port set holding `port` of `proto`, as
/// `ipset save` prints them: every address of the family, and the port.
pub fn port_elements(family: Family, proto: Proto, port: u16) -> [String; 2] {
    let halves = match family {
        Family::V4 => ["0.0.0.0/1", "128.0.0.0/1"],
        Family::V6 => ["::/1", "8000::/1"],
    };
    halves.map(|half| format!("{half},{}:{port}", proto.as_str()))
}

/// One of the plan's sets as the ipset dockfw makes of it: address sets
/// are `hash:net`, port sets `hash:net,port` ([`port_kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The ipset's name (`dockfw-known-v4`).
    pub name: String,
    /// Its type as `ipset save` prints it, compared with what is installed.
    pub kind: &'static str,
    /// What `create` takes after the name.
    pub create: &'static str,
    /// Elements as `ipset save` prints them.
    pub elements: BTreeSet<String>,
    /// Whether a rule naming it drops or judges rather than admits: more
    /// elements are then the stricter contents.
    pub drops: bool,
}

/// Every set of `rules`, address sets then port sets, as ipsets.
pub fn wanted(rules: &FamilyRules) -> Vec<Wanted> {
    let addresses = rules.sets.iter().map(|set| Wanted {
        name: ipset_name(&set.name),
        kind: kind(set.family),
        create: kind(set.family),
        elements: set.elements.iter().map(element_text).collect(),
        drops: drops(rules, &set.name),
    });
    let ports = rules.port_sets.iter().map(|set| Wanted {
        name: ipset_name(&set.name),
        kind: port_kind(set.family),
        create: port_kind(set.family),
        elements: (set.ports.iter())
            .flat_map(|port| port_elements(set.family, set.proto, *port))
            .collect(),
        drops: drops(rules, &set.name),
    });
    addresses.chain(ports).collect()
}

/// One element as `ipset save` prints it: a host without its length.
pub fn element_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// A saved element spelled as [`element_text`] spells it: ipset prints an
/// IPv4-compatible IPv6 address as `::1.2.3.4`, Rust as `::102:304`. The
/// part after a comma (`,tcp:80`) stays as it is; what is no address too.
fn canonical(element: &str) -> String {
    let (address, rest) = match element.split_once(',') {
        Some((address, rest)) => (address, Some(rest)),
        None => (element, None),
    };
    let net = address
        .parse::<IpNet>()
        .ok()
        .or_else(|| address.parse::<std::net::IpAddr>().ok().map(IpNet::from));
    let Some(net) = net else {
        return element.to_owned();
    };
    match rest {
        Some(rest) => format!("{},{rest}", element_text(&net)),
        None => element_text(&net),
    }
}

/// The type of a set from the words after its name in `create`: the type,
/// and its family where it has one (`hash:net family inet`), without the
/// options dockfw leaves to their defaults.
pub fn saved_kind(words: &[&str]) -> String {
    match words {
        [kind, "family", family, ..] => format!("{kind} family {family}"),
        [kind, ..] => (*kind).to_owned(),
        [] => String::new(),
    }
}

/// One of dockfw's ipsets as `ipset save` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedSet {
    /// Type and family (`hash:net family inet`), without the options
    /// dockfw leaves to their defaults.
    pub kind: String,
    /// Each `add` line's text after the set's name, as ipset prints it
    /// (`172.17.0.2`, `10.0.0.0/8`; options such as `timeout 5` included).
    pub elements: BTreeSet<String>,
}

/// The names of every set of `rules`, address sets then port sets, as
/// ipsets: what [`wanted`] names, without building the elements.
pub fn names(rules: &FamilyRules) -> impl Iterator<Item = String> + '_ {
    let addresses = rules.sets.iter().map(|set| ipset_name(&set.name));
    addresses.chain(rules.port_sets.iter().map(|set| ipset_name(&set.name)))
}

/// Whether `name` could be one of dockfw's ipsets: named `dockfw-…`, and
/// nothing ipset would read as two words or a quote (ipset accepts
/// `"dockfw-x y"` as a name; dockfw never makes one).
fn is_own(name: &str) -> bool {
    name.starts_with(PREFIX) && name.chars().all(|c| c.is_ascii_graphic() && c != '"')
}

/// dockfw's ipsets among the names `ipset list -n` prints, one a line
/// (that listing reads no set's elements, whatever their number).
pub fn own_names(list: &str) -> Vec<&str> {
    list.lines().map(str::trim).filter(|n| is_own(n)).collect()
}

/// The `ipset restore` input that prints the sets `names` as `ipset save`
/// would, in one process: restore mode runs any command but `restore`,
/// `help` and `version`, and `save NAME` lists that set alone. A name that
/// is not one of dockfw's is left out; `None` when none is left. A named
/// set that does not exist fails the run (there: "The set with the given
/// name does not exist").
pub fn save_script<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let text: String = names
        .into_iter()
        .filter(|n| is_own(n))
        .map(|name| format!("save {name}\n"))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// dockfw's ipsets (named `dockfw-…`) in `ipset save` output, by name;
/// every other line is skipped.
pub fn parse_save(save: &str) -> BTreeMap<String, SavedSet> {
    let mut sets: BTreeMap<String, SavedSet> = BTreeMap::new();
    for line in save.lines() {
        let mut words = line.split_whitespace();
        let (Some(command), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        match command {
            "create" => {
                let kind = saved_kind(&words.collect::<Vec<_>>());
                sets.entry(name.to_owned()).or_default().kind = kind;
            }
            "add" => {
                let element = canonical(&words.collect::<Vec<_>>().join(" "));
                sets.entry(name.to_owned())
                    .or_default()
                    .elements
                    .insert(element);
            }
            _ => {}
        }
    }
    sets
}

/// The `ipset restore` inputs that take the installed sets of one family to
/// `desired`'s, and what they change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetUpdate {
    /// Run before the rules: makes and fills the sets they will name, and
    /// every swap that tightens (with no rules step, all the swaps).
    pub before: Option<String>,
    /// Run after the rules: the swaps that loosen, and the destruction of
    /// sets no rule names any more.
    pub after: Option<String>,
    pub added: usize,
    pub removed: usize,
}

/// What takes `installed` (dockfw's ipsets of this family) to `desired`'s
/// sets; `rules_change` says whether a rules step runs between the two.
pub fn update(
    desired: &FamilyRules,
    installed: &BTreeMap<String, SavedSet>,
    rules_change: bool,
) -> SetUpdate {
    let mut out = SetUpdate::default();
    let (mut tighten, mut loosen, mut destroy) = (String::new(), String::new(), String::new());
    let mut kept = BTreeSet::new();
    for set in wanted(desired) {
        let name = set.name.clone();
        kept.insert(name.clone());
        let want = &set.elements;
        let have = installed.get(&name);
        let same_kind = have.is_some_and(|h| h.kind == set.kind);
        if same_kind && have.is_some_and(|h| h.elements == *want) {
            continue;
        }
        let had = have.map(|h| &h.elements);
        out.added += want
            .iter()
            .filter(|e| had.is_none_or(|h| !h.contains(*e)))
            .count();
        out.removed += had.map_or(0, |h| h.difference(want).count());
        kept.insert(format!("{name}{TEMPORARY}"));
        if have.is_some() && !same_kind {
            // Made by someone else with another type: swap would refuse it.
            let _ = writeln!(tighten, "destroy {name}");
        }
        match had.filter(|_| same_kind) {
            Some(had) => {
                let interim = stricter(had, want, set.drops);
                if interim != *had {
                    replace(&mut tighten, &set, &interim);
                }
                if interim != *want {
                    replace(&mut loosen, &set, want);
                }
            }
            // New: no rule in place names it yet.
            None => replace(&mut tighten, &set, want),
        }
    }
    for name in installed.keys().filter(|n| !kept.contains(*n)) {
        let _ = writeln!(destroy, "destroy {name}");
    }
    let (before, after) = if rules_change {
        (tighten, loosen + &destroy)
    } else {
        (tighten + &loosen, destroy)
    };
    out.before = (!before.is_empty()).then_some(before);
    out.after = (!after.is_empty()).then_some(after);
    out
}

/// The `ipset restore` input that destroys every one of `installed`; run
/// after the rules naming them are gone (a set in use cannot be destroyed).
pub fn uninstall(installed: &BTreeMap<String, SavedSet>) -> Option<String> {
    let text: String = installed
        .keys()
        .map(|name| format!("destroy {name}\n"))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// Whether a rule naming the set `set` drops or judges rather than admits:
/// more elements are then the stricter contents.
fn drops(desired: &FamilyRules, set: &str) -> bool {
    let names = |rule: &crate::ruleset::Rule| {
        [&rule.src_set, &rule.dst_set, &rule.dport_set]
            .into_iter()
            .any(|n| n.as_deref() == Some(set))
    };
    desired
        .chains
        .iter()
        .flat_map(|c| c.rules.iter())
        .any(|rule| names(rule) && rule.target != Target::Return)
}

/// The contents that admit no more than either `had` or `want` would: both
/// together where a match drops, only what both have where it admits. Of
/// what was installed only plain elements are kept.
fn stricter(had: &BTreeSet<String>, want: &BTreeSet<String>, drops: bool) -> BTreeSet<String> {
    let plain = |e: &&String| {
        let net = |n: &str| n.parse::<IpNet>().is_ok() || n.parse::<IpAddr>().is_ok();
        match e.split_once(',') {
            // A port set's `net,proto:port`.
            Some((n, port)) => {
                net(n)
                    && port
                        .split_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            }
            None => net(e),
        }
    };
    if drops {
        had.iter().filter(plain).chain(want).cloned().collect()
    } else {
        had.intersection(want).cloned().collect()
    }
}

/// `name` with exactly `elements`, in one swap: made if missing, filled
/// under the temporary name (emptied first, should one be left over), and
/// swapped in.
fn replace(out: &mut String, set: &Wanted, elements: &BTreeSet<String>) {
    let (name, kind) = (&set.name, set.create);
    let temporary = format!("{name}{TEMPORARY}");
    let _ = writeln!(out, "create {name} {kind} -exist");
    let _ = writeln!(out, "create {temporary} {kind} -exist");
    let _ = writeln!(out, "flush {temporary}");
    for element in elements {
        let _ = writeln!(out, "add {temporary} {element}");
    }
    let _ = writeln!(out, "swap {temporary} {name}");
    let _ = writeln!(out, "destroy {temporary}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{AddrSet, Chain, INBOUND_CHAIN, PortSet, Rule, UNCLASSIFIED_CHAIN};

    const SAVE: &str = "create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1
add f2b-sshd 203.0.113.9
create dockfw-known-v4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x96854638
add dockfw-known-v4 172.17.0.3
add dockfw-known-v4 172.17.0.2
create dockfw-allow-1-src-v6 hash:net family inet6 hashsize 1024 maxelem 65536
add dockfw-allow-1-src-v6 2001:db8::/64
create dockfw-odd list:set size 8
";

    fn set(name: &str, family: Family, elements: &[&str]) -> AddrSet {
        let nets = elements.iter().map(|e| e.parse().expect("net"));
        AddrSet::new(name.to_owned(), family, nets)
    }

    /// Rules naming `known-v4` (admits) and `deny-1-v4` (drops).
    fn rules(known: &[&str], denied: &[&str]) -> FamilyRules {
        FamilyRules {
            chains: vec![
                Chain {
                    name: INBOUND_CHAIN,
                    rules: vec![Rule {
                        dst_set: Some("deny-1-v4".to_owned()),
                        target: Target::Drop,
                        ..Rule::default()
                    }],
                },
                Chain {
                    name: UNCLASSIFIED_CHAIN,
                    rules: vec![Rule {
                        dst_set: Some("known-v4".to_owned()),
                        ..Rule::default()
                    }],
                },
            ],
            sets: vec![
                set("deny-1-v4", Family::V4, denied),
                set("known-v4", Family::V4, known),
            ],
            port_sets: Vec::new(),
            drop_ports: Vec::new(),
            orig_port_sets: Vec::new(),
        }
    }

    fn saved(rules: &FamilyRules) -> BTreeMap<String, SavedSet> {
        let text: String = rules
            .sets
            .iter()
            .map(|s| {
                let name = ipset_name(&s.name);
                let mut out = format!("create {name} {} hashsize 1024\n", kind(s.family));
                for e in &s.elements {
                    out.push_str(&format!("add {name} {}\n", element_text(e)));
                }
                out
            })
            .collect();
        parse_save(&text)
    }

    #[test]
    fn ipset_save_is_parsed_for_dockfws_sets_only() {
        let sets = parse_save(SAVE);
        assert_eq!(
            sets.keys().collect::<Vec<_>>(),
            ["dockfw-allow-1-src-v6", "dockfw-known-v4", "dockfw-odd"]
        );
        let known = &sets["dockfw-known-v4"];
        assert_eq!(known.kind, "hash:net family inet");
        assert_eq!(
            known.elements.iter().collect::<Vec<_>>(),
            ["172.17.0.2", "172.17.0.3"]
        );
        assert_eq!(sets["dockfw-allow-1-src-v6"].kind, "hash:net family inet6");
        assert_eq!(sets["dockfw-odd"].kind, "list:set");
        let owners: Vec<Family> = sets.keys().map(|n| owner(n)).collect();
        assert_eq!(owners, [Family::V6, Family::V4, Family::V4]);
        assert_eq!(owner("dockfw-deny-2-src-v6-tmp"), Family::V6);
    }

    #[test]
    fn only_dockfws_sets_are_listed_by_name_and_saved() {
        let list = "f2b-sshd\ncrowdsec-blocklist\ndockfw-known-v4\n\
                    dockfw-x y\ndockfw-\"q\ndockfw-guard-tcp-v6\n";
        let own = own_names(list);
        assert_eq!(
            own,
            ["dockfw-known-v4", "dockfw-guard-tcp-v6"],
            "other tools' sets and names ipset would read as two words are not read"
        );
        assert_eq!(
            save_script(own).as_deref(),
            Some("save dockfw-known-v4\nsave dockfw-guard-tcp-v6\n")
        );
        assert_eq!(save_script(own_names("f2b-sshd\n")), None);
        assert_eq!(save_script(["f2b-sshd", "dockfw-a b"]), None);
        let rules = FamilyRules {
            sets: vec![set("known-v4", Family::V4, &[])],
            port_sets: vec![PortSet {
                name: "guard-tcp-v4".to_owned(),
                family: Family::V4,
                proto: Proto::Tcp,
                ports: [80].into(),
            }],
            ..FamilyRules::default()
        };
        let wanted_names: Vec<String> = wanted(&rules).into_iter().map(|w| w.name).collect();
        assert_eq!(names(&rules).collect::<Vec<_>>(), wanted_names);
    }

    #[test]
    fn elements_are_written_as_ipset_prints_them() {
        let host: IpNet = "172.17.0.2/32".parse().unwrap();
        let net: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(element_text(&host), "172.17.0.2");
        assert_eq!(element_text(&net), "2001:db8::/64");
    }

    #[test]
    fn saved_elements_are_read_as_they_are_written() {
        let save = "create dockfw-allow-1-src-v6 hash:net family inet6\n\
                    add dockfw-allow-1-src-v6 ::1.2.3.4\n\
                    add dockfw-allow-1-src-v6 2001:db8::/64\n\
                    create dockfw-guard-tcp-v6 hash:net,port family inet6\n\
                    add dockfw-guard-tcp-v6 ::/1,tcp:80\n";
        let sets = parse_save(save);
        let compat: IpNet = "::1.2.3.4/128".parse().unwrap();
        assert_eq!(
            sets["dockfw-allow-1-src-v6"].elements,
            [element_text(&compat), "2001:db8::/64".to_owned()].into()
        );
        assert_eq!(
            sets["dockfw-guard-tcp-v6"].elements,
            ["::/1,tcp:80".to_owned()].into()
        );
    }

    #[test]
    fn sets_in_place_need_nothing() {
        let desired = rules(&["172.17.0.2/32"], &[]);
        assert_eq!(
            update(&desired, &saved(&desired), false),
            SetUpdate::default()
        );
    }

    #[test]
    fn a_new_element_is_one_swap_of_the_whole_set() {
        let before = rules(&["172.17.0.2/32"], &[]);
        let desired = rules(&["172.17.0.2/32", "172.17.0.3/32"], &[]);
        let up = update(&desired, &saved(&before), false);
        assert_eq!(
            up.before.as_deref(),
            Some(
                "create dockfw-known-v4 hash:net family inet -exist\n\
                 create dockfw-known-v4-tmp hash:net family inet -exist\n\
                 flush dockfw-known-v4-tmp\n\
                 add dockfw-known-v4-tmp 172.17.0.2\n\
                 add dockfw-known-v4-tmp 172.17.0.3\n\
                 swap dockfw-known-v4-tmp dockfw-known-v4\n\
                 destroy dockfw-known-v4-tmp\n"
            )
        );
        assert_eq!((up.after, up.added, up.removed), (None, 1, 0));
    }

    #[test]
    fn with_a_rules_change_the_sets_are_stricter_until_the_rules_are_in() {
        let before = rules(&["172.17.0.2/32", "172.17.0.3/32"], &["172.17.0.2/32"]);
        let desired = rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.4/32"]);
        let up = update(&desired, &saved(&before), true);
        let before_step = up.before.expect("before the rules");
        let after_step = up.after.expect("after the rules");
        let elements = |text: &str, set: &str| -> Vec<String> {
            let prefix = format!("add {set}-tmp ");
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        };
        assert_eq!(
            elements(&before_step, "dockfw-known-v4"),
            ["172.17.0.3"],
            "an admitting set holds only what both plans admit"
        );
        assert_eq!(
            elements(&before_step, "dockfw-deny-1-v4"),
            ["172.17.0.2", "172.17.0.4"],
            "a dropping set holds what either plan drops"
        );
        assert_eq!(
            elements(&after_step, "dockfw-known-v4"),
            ["172.17.0.3", "172.17.0.4"]
        );
        assert_eq!(elements(&after_step, "dockfw-deny-1-v4"), ["172.17.0.4"]);
        assert_eq!((up.added, up.removed), (2, 2));
    }

    /// The sets swapped in by `text`, in order, each with its elements.
    fn swaps(text: &str) -> Vec<(String, Vec<String>)> {
        let (mut out, mut filling) = (Vec::new(), Vec::new());
        for words in text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            match words.as_slice() {
                ["add", _, element] => filling.push((*element).to_owned()),
                ["swap", _, set] => out.push(((*set).to_owned(), std::mem::take(&mut filling))),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn every_swap_that_tightens_comes_before_any_that_loosens() {
        let before = rules(&["172.17.0.2/32", "172.17.0.3/32"], &["172.17.0.2/32"]);
        let desired = rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.4/32"]);
        let up = update(&desired, &saved(&before), false);
        assert_eq!(up.after, None, "no rules step: one ipset restore");
        let owned = |set: &str, elements: &[&str]| {
            let elements = elements.iter().map(|e| (*e).to_owned()).collect();
            (set.to_owned(), elements)
        };
        assert_eq!(
            swaps(&up.before.expect("sets change")),
            [
                owned("dockfw-deny-1-v4", &["172.17.0.2", "172.17.0.4"]),
                owned("dockfw-known-v4", &["172.17.0.3"]),
                owned("dockfw-deny-1-v4", &["172.17.0.4"]),
                owned("dockfw-known-v4", &["172.17.0.3", "172.17.0.4"]),
            ]
        );
        let grown = rules(&["172.17.0.2/32", "172.17.0.3/32", "172.17.0.9/32"], &[]);
        let old = rules(&["172.17.0.2/32"], &["172.17.0.2/32"]);
        let up = update(&grown, &saved(&old), false);
        assert_eq!(
            swaps(&up.before.expect("sets change")),
            [
                owned("dockfw-deny-1-v4", &[]),
                owned(
                    "dockfw-known-v4",
                    &["172.17.0.2", "172.17.0.3", "172.17.0.9"]
                ),
            ],
            "what only grows or only shrinks is swapped once"
        );
    }

    #[test]
    fn sets_no_rule_names_are_destroyed_after_the_rules() {
        let installed = parse_save(SAVE);
        let desired = FamilyRules::default();
        let up = update(&desired, &installed, true);
        assert_eq!(up.before, None);
        assert_eq!(
            up.after.as_deref(),
            Some("destroy dockfw-allow-1-src-v6\ndestroy dockfw-known-v4\ndestroy dockfw-odd\n")
        );
        assert_eq!(uninstall(&installed), up.after);
        assert_eq!(uninstall(&BTreeMap::new()), None);
    }

    #[test]
    fn a_set_of_another_type_under_dockfws_name_is_made_anew() {
        let desired = rules(&["172.17.0.2/32"], &[]);
        let mut installed = saved(&desired);
        installed.get_mut("dockfw-known-v4").unwrap().kind = "hash:ip family inet".to_owned();
        let up = update(&desired, &installed, false);
        let text = up.before.expect("made anew");
        assert!(
            text.starts_with("destroy dockfw-known-v4\ncreate dockfw-known-v4 "),
            "{text}"
        );
    }

    #[test]
    fn a_leftover_temporary_set_is_reused_not_destroyed_twice() {
        let before = rules(&["172.17.0.2/32"], &[]);
        let mut installed = saved(&before);
        installed.insert(
            "dockfw-known-v4-tmp".to_owned(),
            SavedSet {
                kind: kind(Family::V4).to_owned(),
                elements: ["10.9.9.9".to_owned()].into(),
            },
        );
        let desired = rules(&["172.17.0.3/32"], &[]);
        let up = update(&desired, &installed, false);
        assert!(
            up.before
                .expect("swap")
                .contains("flush dockfw-known-v4-tmp\n")
        );
        assert_eq!(up.after, None, "the swap's own destroy removes it");
        let same = update(&before, &installed, false);
        assert_eq!(
            same.after.as_deref(),
            Some("destroy dockfw-known-v4-tmp\n"),
            "left over beside a set in place: destroyed"
        );
    }
}
