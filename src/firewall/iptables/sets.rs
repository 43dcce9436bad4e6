//! dockfw's address and port sets as ipsets (`hash:net`, `hash:net,port`):
//! their names, which of the host's sets are dockfw's (`ipset list -n`),
//! the `ipset restore` text that saves those alone, the parser of what
//! it prints (`ipset save`'s format), and the `ipset restore` text that
//! takes the installed sets of one family to the desired ones.
//!
//! The drop sets (`dockfw-dropped-tcp-v4`) count, per element
//! (`counters`), the connections `DOCKFW-DROP` drops, and each element
//! names in its `comment` the published ports it counts for
//! ([`drop_elements`]). A swap would start every counter again at zero, so
//! they are only ever edited element by element (`add`, `del`) and an
//! element is touched only when its comment changes; no verdict depends
//! on them: every rule naming them drops, as the rule after them does.
//!
//! Pure: the parent module runs `ipset`. A set that is new, or installed
//! with another type or with elements dockfw does not write (options such
//! as `timeout 5`), is filled under a temporary name and swapped in
//! (`swap`, one kernel operation), so a rule never sees it half-filled. A
//! set installed as dockfw makes it is edited in place: one `add` or `del`
//! per element that changes (each atomic), so a container coming or going
//! writes its own addresses, not the thousand others beside it. Neither a
//! change of several sets nor one of several elements is atomic; so every
//! changed set first passes through the stricter of its old and new
//! contents (the union for a set whose rules drop, the common part for one
//! whose rules admit: an admitting set's removals and a dropping set's
//! additions), all of those edits before any that loosens, and when the
//! rules change too, they change in between. The verdict of dockfw's
//! chains only tightens as a drop set grows or an admit set shrinks, so no
//! moment admits what neither the old nor the new plan admits. Sets no
//! rule names any more are destroyed last.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::firewall::DropCounter;
use crate::net::{Family, Proto};
use crate::ruleset::{
    AddrSet, DropEndpoint, ElementChange, FamilyRules, Origin, PortSet, SetElement, Target,
};

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

/// The type, family and options of the ipset of a drop set, as `ipset save`
/// prints them ([`saved_kind`]): a port set's type whose every element
/// has a packet counter and a comment.
pub fn drop_kind(family: Family) -> &'static str {
    match family {
        Family::V4 => "hash:net,port family inet counters comment",
        Family::V6 => "hash:net,port family inet6 counters comment",
    }
}

/// The most published ports one element's comment names (ipset keeps 255
/// characters of a comment; `65535 ` is 6): ports beyond them that lead
/// to the same container endpoint are not counted by it.
const MAX_PORTS_PER_ELEMENT: usize = 40;

/// The elements of the ipset of the drop set `set`, as `ipset save` prints
/// them without their counters, each with the published ports it counts
/// for as its comment. Matched `dst,dst`, so on the packet as it is when
/// dropped:
///
/// - every address of the family and each port of `set`
///   ([`port_elements`]): connections whose port nothing rewrote, to
///   docker-proxy on the host or routed to a container, count for the port
///   they were sent to, as with nftables;
/// - each container endpoint of `rules` of the set's protocol
///   (`172.17.0.2,tcp:80`, a single address: more specific, so it is the
///   element that counts a connection Docker DNAT-ed to it), for every port
///   published on it: those ports share its count.
pub fn drop_elements(rules: &FamilyRules, set: &PortSet) -> BTreeSet<String> {
    let any = set.ports.iter().flat_map(|&port| {
        let comment = format!(" comment \"{port}\"");
        let halves = port_elements(set.family, set.proto, port);
        halves.map(|half| half + &comment)
    });
    let mut endpoints: BTreeMap<(IpAddr, u16), Vec<u16>> = BTreeMap::new();
    for e in rules.drop_endpoints.iter().filter(|e| e.proto == set.proto) {
        endpoints
            .entry((e.addr, e.port))
            .or_default()
            .push(e.published);
    }
    let endpoints = endpoints.into_iter().map(|((addr, port), published)| {
        let named: Vec<String> = (published.iter().take(MAX_PORTS_PER_ELEMENT))
            .map(u16::to_string)
            .collect();
        let addr = element_text(&IpNet::from(addr));
        let proto = set.proto.as_str();
        format!("{addr},{proto}:{port} comment \"{}\"", named.join(" "))
    });
    any.chain(endpoints).collect()
}

/// The family and protocol of the drop set whose ipset is `name`
/// (`dockfw-dropped-udp-v6`).
fn drop_set(name: &str) -> Option<(Family, Proto)> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix("dropped-")?;
    let (proto, family) = rest.split_once('-')?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "sctp" => Proto::Sctp,
        _ => return None,
    };
    let family = match family {
        "v4" => Family::V4,
        "v6" => Family::V6,
        _ => return None,
    };
    Some((family, proto))
}

/// The counters of the elements of dockfw's drop sets among `installed`,
/// one per published port an element counts for, named as the daemon
/// names them from a plan ([`DropCounter::element_rule`] for every address
/// and a port, both halves together; [`DropCounter::endpoint_rule`] for a
/// container endpoint). ipset has no families: their scope is `None`, and
/// no rules' restore resets them.
pub fn drop_counters(installed: &BTreeMap<String, SavedSet>) -> Vec<DropCounter> {
    let mut counted: BTreeMap<String, DropCounter> = BTreeMap::new();
    for (name, set) in installed {
        let Some((family, proto)) = drop_set(name) else {
            continue;
        };
        for element in set.elements.iter() {
            let Some((net, port, published)) = drop_element(element) else {
                continue;
            };
            let packets = set.packets.get(element).copied().unwrap_or(0);
            for &each in &published {
                let rule = if net.prefix_len() == 1 {
                    DropCounter::element_rule(family, proto, each)
                } else {
                    let endpoint = DropEndpoint {
                        proto,
                        addr: net.addr(),
                        port,
                        published: each,
                    };
                    DropCounter::endpoint_rule(family, &endpoint)
                };
                let counter = counted.entry(rule.clone()).or_insert(DropCounter {
                    scope: None,
                    rule,
                    origin: Origin::Port { proto, port: each },
                    packets: 0,
                    shared_with: published.iter().copied().filter(|p| *p != each).collect(),
                });
                counter.packets = counter.packets.saturating_add(packets);
            }
        }
    }
    counted.into_values().collect()
}

/// A drop set element as [`drop_elements`] writes it: its network, its
/// port, and the published ports of its comment.
fn drop_element(element: &str) -> Option<(IpNet, u16, Vec<u16>)> {
    let (key, comment) = element.split_once(" comment ")?;
    let (address, port) = key.split_once(',')?;
    let net = (address.parse::<IpNet>().ok())
        .or_else(|| address.parse::<IpAddr>().ok().map(IpNet::from))?;
    let port = port.split_once(':')?.1.parse().ok()?;
    let published = comment.trim_matches('"').split(' ');
    let published: Option<Vec<u16>> = published.map(|p| p.parse().ok()).collect();
    Some((net, port, published?))
}

/// One of the plan's sets as the ipset dockfw makes of it: address sets
/// are `hash:net`, port sets `hash:net,port` ([`port_kind`]), drop sets
/// the same with counters ([`drop_kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// The ipset's name (`dockfw-known-v4`).
    pub name: String,
    /// Its type as `ipset save` prints it, compared with what is installed.
    pub kind: &'static str,
    /// What `create` takes after the name.
    pub create: &'static str,
    /// Elements as `ipset save` prints them (an address set's borrowed
    /// from [`Texts`] where one is kept).
    pub elements: Cow<'a, BTreeSet<String>>,
    /// Whether a rule naming it drops or judges rather than admits: more
    /// elements are then the stricter contents.
    pub drops: bool,
    /// Whether its elements count (a drop set): edited in place, never
    /// swapped.
    pub counts: bool,
}

/// Every set of `rules`, address sets, port sets, then drop sets, as
/// ipsets, each element made text.
pub fn wanted(rules: &FamilyRules) -> Vec<Wanted<'static>> {
    wanted_from(rules, |set| {
        Cow::Owned(set.elements.iter().map(element_text).collect())
    })
}

/// [`wanted`], the address sets' elements as `texts` keeps them (brought
/// up to date first): what an observing pass compares with the installed
/// sets, at the cost of the elements that changed since the last one
/// rather than of all of them.
pub fn wanted_with<'a>(rules: &FamilyRules, texts: &'a mut Texts) -> Vec<Wanted<'a>> {
    texts.follow(rules);
    let texts: &'a Texts = texts;
    wanted_from(rules, |set| match texts.sets.get(&set.name) {
        Some(memo) => Cow::Borrowed(&memo.text),
        None => Cow::Owned(set.elements.iter().map(element_text).collect()),
    })
}

/// The sets of `rules` as ipsets, an address set's elements as `text`
/// gives them.
fn wanted_from<'a>(
    rules: &FamilyRules,
    text: impl Fn(&AddrSet) -> Cow<'a, BTreeSet<String>>,
) -> Vec<Wanted<'a>> {
    let addresses = rules.sets.iter().map(|set| Wanted {
        name: ipset_name(&set.name),
        kind: kind(set.family),
        create: kind(set.family),
        elements: text(set),
        drops: drops(rules, &set.name),
        counts: false,
    });
    let ports = rules.port_sets.iter().map(|set| Wanted {
        name: ipset_name(&set.name),
        kind: port_kind(set.family),
        create: port_kind(set.family),
        elements: Cow::Owned(
            (set.ports.iter())
                .flat_map(|port| port_elements(set.family, set.proto, *port))
                .collect(),
        ),
        drops: drops(rules, &set.name),
        counts: false,
    });
    addresses.chain(ports).chain(counting(rules)).collect()
}

/// The text of the plan's address set elements as ipset prints them
/// ([`element_text`]), kept per set from one observing pass to the next:
/// a pass makes text of the elements that joined or left each set since
/// the last, and compares the rest as they are (an address set of 1,000
/// containers that gains one costs one [`element_text`], not 1,000).
/// Keyed by the plan's set name; a set the plan of its family no longer
/// has is forgotten while that plan has some address set (one that has
/// none keeps the text until it has one again: memory only, since a set's
/// text is brought up to date before it is used).
#[derive(Debug, Default)]
pub struct Texts {
    sets: HashMap<String, Memo>,
}

/// One address set's elements and their text.
#[derive(Debug, Default)]
struct Memo {
    planned: BTreeSet<IpNet>,
    text: BTreeSet<String>,
}

impl Texts {
    /// Bring the text of `rules`' address sets up to date; forget the sets
    /// of its family it no longer has.
    fn follow(&mut self, rules: &FamilyRules) {
        for set in &rules.sets {
            let memo = match self.sets.get_mut(&set.name) {
                Some(memo) => memo,
                None => self.sets.entry(set.name.clone()).or_default(),
            };
            memo.follow(&set.elements);
        }
        if let Some(family) = rules.sets.first().map(|s| s.family) {
            let named: BTreeSet<&str> = rules.sets.iter().map(|s| s.name.as_str()).collect();
            self.sets.retain(|name, _| {
                named.contains(name.as_str()) || owner(&ipset_name(name)) != family
            });
        }
    }
}

impl Memo {
    /// Make text of what joined `planned` since the last call, and drop
    /// the text of what left it ([`element_text`] is one text per network,
    /// no two alike). Unchanged: one walk of both, nothing made.
    fn follow(&mut self, planned: &BTreeSet<IpNet>) {
        if self.planned == *planned {
            return;
        }
        let gone: Vec<IpNet> = self.planned.difference(planned).copied().collect();
        let new: Vec<IpNet> = planned.difference(&self.planned).copied().collect();
        for net in gone {
            self.text.remove(&element_text(&net));
            self.planned.remove(&net);
        }
        for net in new {
            self.text.insert(element_text(&net));
            self.planned.insert(net);
        }
    }
}

/// The drop sets of `rules`, as ipsets.
fn counting<'a>(rules: &FamilyRules) -> impl Iterator<Item = Wanted<'a>> + '_ {
    rules.drop_ports.iter().map(|set| Wanted {
        name: ipset_name(&set.name),
        kind: drop_kind(set.family),
        create: drop_kind(set.family),
        elements: Cow::Owned(drop_elements(rules, set)),
        drops: true,
        counts: true,
    })
}

/// What [`update`] writes, with no rules step, from sets installed exactly
/// as `had` plans them to `desired`'s, when both plan the same sets (names
/// and types; [`crate::ruleset::Ruleset::same_rules`]): computed from the
/// two plans, so that only the elements that change are ever made text
/// (a set of 1,000 addresses that gains one costs one, not 2,000). All of
/// it is in `before`. Pure.
pub fn edits(desired: &FamilyRules, had: &FamilyRules) -> SetUpdate {
    let mut out = SetUpdate::default();
    let (mut tighten, mut loosen) = (String::new(), String::new());
    for (want, old) in desired.sets.iter().zip(&had.sets) {
        if want.elements != old.elements {
            let name = ipset_name(&want.name);
            let added = want.elements.difference(&old.elements).map(element_text);
            let removed = old.elements.difference(&want.elements).map(element_text);
            let changed = Changed {
                added: added.collect(),
                removed: removed.collect(),
            };
            changed.write(&mut tighten, &mut loosen, &name, drops(desired, &want.name));
            changed.count(&mut out);
        }
    }
    for (want, old) in desired.port_sets.iter().zip(&had.port_sets) {
        if want.ports != old.ports {
            let name = ipset_name(&want.name);
            let elements = |ports: std::collections::btree_set::Difference<'_, u16>| {
                ports
                    .flat_map(|port| port_elements(want.family, want.proto, *port))
                    .collect()
            };
            let changed = Changed {
                added: elements(want.ports.difference(&old.ports)),
                removed: elements(old.ports.difference(&want.ports)),
            };
            changed.write(&mut tighten, &mut loosen, &name, drops(desired, &want.name));
            changed.count(&mut out);
        }
    }
    drop_set_edits(desired, had, &mut tighten, &mut out);
    let before = tighten + &loosen;
    out.before = (!before.is_empty()).then_some(before);
    out
}

/// What [`edits`] writes, computed from the element changes of the family
/// alone (each element once; `desired` is `had` with them made): the
/// address and port sets' edits cost what the changes are. The drop sets,
/// whose elements (per published port and per endpoint, with comments
/// naming the ports each counts) several changes shape together, are
/// compared whole when a change touches them: they hold what is
/// published, not every container. Pure.
pub fn change_edits(
    changes: &[&ElementChange],
    desired: &FamilyRules,
    had: &FamilyRules,
) -> SetUpdate {
    let mut out = SetUpdate::default();
    let (mut tighten, mut loosen) = (String::new(), String::new());
    let mut by_set: BTreeMap<&str, Changed> = BTreeMap::new();
    let mut drop_sets = false;
    for change in changes {
        let (name, texts) = match &change.element {
            SetElement::Addr(_, name, net) => (name.as_str(), vec![element_text(net)]),
            SetElement::Guard(family, _, port) | SetElement::Port(family, _, port) => {
                let Some(set) = desired.port_set_of(&change.element) else {
                    continue;
                };
                (
                    set.name.as_str(),
                    port_elements(*family, set.proto, *port).to_vec(),
                )
            }
            SetElement::Dropped(..) | SetElement::Endpoint(..) => {
                drop_sets = true;
                continue;
            }
        };
        let changed = by_set.entry(name).or_default();
        match change.present {
            true => changed.added.extend(texts),
            false => changed.removed.extend(texts),
        }
    }
    for (name, changed) in &by_set {
        changed.write(
            &mut tighten,
            &mut loosen,
            &ipset_name(name),
            drops(desired, name),
        );
        changed.count(&mut out);
    }
    if drop_sets {
        drop_set_edits(desired, had, &mut tighten, &mut out);
    }
    let before = tighten + &loosen;
    out.before = (!before.is_empty()).then_some(before);
    out
}

/// The edits of the drop sets from `had`'s elements to `desired`'s, into
/// `tighten` (they only ever count: edited in place).
fn drop_set_edits(
    desired: &FamilyRules,
    had: &FamilyRules,
    tighten: &mut String,
    out: &mut SetUpdate,
) {
    for (want, old) in counting(desired).zip(counting(had)) {
        if want.elements != old.elements {
            let saved = SavedSet {
                kind: old.kind.to_owned(),
                elements: Arc::new(old.elements.into_owned()),
                packets: BTreeMap::new(),
            };
            edit_in_place(tighten, &want, Some(&saved), out);
        }
    }
}

/// The elements of one set that change, as `ipset save` prints them.
#[derive(Default)]
struct Changed {
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
}

impl Changed {
    /// One `add`/`del` (`-exist`: what is already so is no error) per
    /// element: the edits that tighten (an admitting set's removals, a
    /// dropping set's additions) into `tighten`, the ones that loosen into
    /// `loosen`.
    fn write(&self, tighten: &mut String, loosen: &mut String, name: &str, drops: bool) {
        let (grow, shrink) = if drops {
            (tighten, loosen)
        } else {
            (loosen, tighten)
        };
        for element in &self.removed {
            let _ = writeln!(shrink, "del {name} {element} -exist");
        }
        for element in &self.added {
            let _ = writeln!(grow, "add {name} {element} -exist");
        }
    }

    fn count(&self, out: &mut SetUpdate) {
        out.added += self.added.len();
        out.removed += self.removed.len();
    }
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
/// Only an address written with both `:` and `.` (an IPv6 address with an
/// IPv4 part) is read and spelled again: ipset (`inet_ntop`) and Rust
/// write every other IPv4 and IPv6 address alike (RFC 5952: lowercase, no
/// leading zeros, the first longest run of two or more zero groups as
/// `::`), so the 1.5 s check's reading of 1,000 elements makes no text
/// anew.
fn canonical(element: &str) -> String {
    let (address, rest) = match element.split_once(',') {
        Some((address, rest)) => (address, Some(rest)),
        None => (element, None),
    };
    if !(address.contains(':') && address.contains('.')) {
        return element.to_owned();
    }
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
/// and its family where it has one (`hash:net family inet`), then the
/// extensions its elements carry (`counters`, `comment`) where it has
/// them, without the options dockfw leaves to their defaults.
pub fn saved_kind(words: &[&str]) -> String {
    let mut kind = match words {
        [kind, "family", family, ..] => format!("{kind} family {family}"),
        [kind, ..] => (*kind).to_owned(),
        [] => String::new(),
    };
    for extension in ["counters", "comment"] {
        if words.contains(&extension) {
            kind = format!("{kind} {extension}");
        }
    }
    kind
}

/// One of dockfw's ipsets as `ipset save` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedSet {
    /// Type and family (`hash:net family inet`), without the options
    /// dockfw leaves to their defaults.
    pub kind: String,
    /// Each `add` line's text after the set's name, as ipset prints it
    /// (`172.17.0.2`, `10.0.0.0/8`; options such as `timeout 5` or
    /// `comment "80"` included), without its counters. Shared: an
    /// observation takes the sets this process knows without copying
    /// their elements (edited, they are copied first if still shared).
    pub elements: Arc<BTreeSet<String>>,
    /// The packet counter of each element that has one (a set made with
    /// `counters`), by its text in `elements`.
    pub packets: BTreeMap<String, u64>,
}

impl SavedSet {
    /// The elements to edit (copied first if an observation still shares
    /// them).
    pub fn elements_mut(&mut self) -> &mut BTreeSet<String> {
        Arc::make_mut(&mut self.elements)
    }
}

/// The names of every set of `rules`, address sets, port sets, then drop
/// sets, as ipsets: what [`wanted`] names, without building the elements.
pub fn names(rules: &FamilyRules) -> impl Iterator<Item = String> + '_ {
    let addresses = rules.sets.iter().map(|set| ipset_name(&set.name));
    let ports = rules.port_sets.iter().chain(&rules.drop_ports);
    addresses.chain(ports.map(|set| ipset_name(&set.name)))
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

/// The `ipset restore` input that prints the headers of the sets `names`
/// (`list NAME -t`: type, options, number of entries, and no element, so
/// reading it costs the same whatever the sets hold); as
/// [`save_script`] otherwise.
pub fn header_script<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let text: String = names
        .into_iter()
        .filter(|n| is_own(n))
        .map(|name| format!("list {name} -t\n"))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// One of dockfw's ipsets as `ipset list -t` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetHeader {
    /// As [`SavedSet::kind`].
    pub kind: String,
    /// Its `Number of entries`.
    pub entries: usize,
}

/// dockfw's ipsets in `ipset list -t` output (blocks of `Name:`, `Type:`,
/// `Header:`, …, `Number of entries:` lines), by name; other sets are
/// skipped.
pub fn parse_headers(list: &str) -> BTreeMap<String, SetHeader> {
    let mut headers = BTreeMap::new();
    let mut name: Option<&str> = None;
    let mut header = SetHeader::default();
    let mut kind = String::new();
    for line in list.lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field {
            "Name" => name = Some(value).filter(|n| n.starts_with(PREFIX)),
            "Type" => kind = value.to_owned(),
            "Header" => {
                let words: Vec<&str> = [kind.as_str()]
                    .into_iter()
                    .chain(value.split_whitespace())
                    .collect();
                header.kind = saved_kind(&words);
            }
            "Number of entries" => {
                header.entries = value.parse().unwrap_or(usize::MAX);
                if let Some(name) = name.take() {
                    headers.insert(name.to_owned(), std::mem::take(&mut header));
                }
            }
            _ => {}
        }
    }
    headers
}

/// The header every set of `rules` has when installed as planned ([`wanted`]'s
/// names, types and element counts), without building the elements of any
/// but the drop sets (a few per published port).
pub fn headers(rules: &FamilyRules) -> Vec<(String, SetHeader)> {
    let header = |kind: &str, entries| SetHeader {
        kind: kind.to_owned(),
        entries,
    };
    let addresses = (rules.sets.iter()).map(|set| {
        (
            ipset_name(&set.name),
            header(kind(set.family), set.elements.len()),
        )
    });
    let ports = rules.port_sets.iter().map(|set| {
        let entries = set.ports.len() * port_elements(set.family, set.proto, 0).len();
        (
            ipset_name(&set.name),
            header(port_kind(set.family), entries),
        )
    });
    let counting = rules.drop_ports.iter().map(|set| {
        let entries = drop_elements(rules, set).len();
        (
            ipset_name(&set.name),
            header(drop_kind(set.family), entries),
        )
    });
    addresses.chain(ports).chain(counting).collect()
}

/// Whether the ipset `name` is one of the drop sets, whose counters only
/// a read shows.
pub fn is_drop_set(name: &str) -> bool {
    drop_set(name).is_some()
}

/// `known` (sets as this process last read them) after `ipset restore`
/// ran `script` to its end: the `add`/`del` of one plain element with
/// `-exist` (what [`update`] and [`edits`] write to edit a set in place)
/// done to a set it holds, and every other command's sets (`create`,
/// `flush`, `swap`, `destroy`, an element with options) forgotten.
pub fn remember_edits(known: &mut BTreeMap<String, SavedSet>, script: &str) {
    for line in script.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["add", name, element, "-exist"] if is_plain(element) => {
                if let Some(set) = known.get_mut(*name) {
                    set.elements_mut().insert((*element).to_owned());
                }
            }
            ["del", name, element, "-exist"] if is_plain(element) => {
                if let Some(set) = known.get_mut(*name) {
                    set.elements_mut().remove(*element);
                }
            }
            [_, names @ ..] => {
                for name in names.iter().take(2) {
                    known.remove(*name);
                }
            }
            [] => {}
        }
    }
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
                let (text, packets) = without_counters(words.collect());
                let element = canonical(&text);
                let set = sets.entry(name.to_owned()).or_default();
                if let Some(packets) = packets {
                    set.packets.insert(element.clone(), packets);
                }
                set.elements_mut().insert(element);
            }
            _ => {}
        }
    }
    sets
}

/// An element's words without the counters `ipset save` prints for a set
/// made with `counters` (`packets 5 bytes 300`), joined again, and its
/// packets.
fn without_counters(words: Vec<&str>) -> (String, Option<u64>) {
    let mut kept = Vec::with_capacity(words.len());
    let mut packets = None;
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word {
            "packets" => packets = words.next().and_then(|n| n.parse().ok()),
            "bytes" => {
                words.next();
            }
            _ => kept.push(word),
        }
    }
    (kept.join(" "), packets)
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
    update_with(desired, installed, rules_change, &mut Texts::default())
}

/// [`update`], the plan's address set elements made text as `texts` keeps
/// them ([`wanted_with`]): the same update, at the cost of the elements
/// that changed since `texts` last followed the family's plan.
pub fn update_with(
    desired: &FamilyRules,
    installed: &BTreeMap<String, SavedSet>,
    rules_change: bool,
    texts: &mut Texts,
) -> SetUpdate {
    let mut out = SetUpdate::default();
    let (mut tighten, mut loosen, mut destroy) = (String::new(), String::new(), String::new());
    let mut kept = BTreeSet::new();
    for set in wanted_with(desired, texts) {
        let name = set.name.clone();
        kept.insert(name.clone());
        let want: &BTreeSet<String> = &set.elements;
        let have = installed.get(&name);
        let same_kind = have.is_some_and(|h| h.kind == set.kind);
        if same_kind && have.is_some_and(|h| *h.elements == *want) {
            continue;
        }
        if have.is_some() && !same_kind {
            // Made by someone else with another type: swap would refuse it.
            let _ = writeln!(tighten, "destroy {name}");
        }
        if set.counts {
            edit_in_place(&mut tighten, &set, have.filter(|_| same_kind), &mut out);
            continue;
        }
        let had = have.map(|h| &h.elements);
        out.added += want
            .iter()
            .filter(|e| had.is_none_or(|h| !h.contains(*e)))
            .count();
        out.removed += had.map_or(0, |h| h.difference(want).count());
        match had.filter(|_| same_kind) {
            Some(had) if had.iter().all(|e| is_plain(e)) => {
                edit(&mut tighten, &mut loosen, &set, had);
            }
            Some(had) => {
                kept.insert(format!("{name}{TEMPORARY}"));
                let interim = stricter(had, want, set.drops);
                if interim != **had {
                    replace(&mut tighten, &set, &interim);
                }
                if interim != *want {
                    replace(&mut loosen, &set, want);
                }
            }
            // New: no rule in place names it yet.
            None => {
                kept.insert(format!("{name}{TEMPORARY}"));
                replace(&mut tighten, &set, want);
            }
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
    if drops {
        let plain = had.iter().filter(|e| is_plain(e));
        plain.chain(want).cloned().collect()
    } else {
        had.intersection(want).cloned().collect()
    }
}

/// Whether an installed element is as dockfw writes it: an address or
/// network, with a port set's `,proto:port`, and no options (`timeout 5`).
fn is_plain(element: &str) -> bool {
    let net = |n: &str| n.parse::<IpNet>().is_ok() || n.parse::<IpAddr>().is_ok();
    match element.split_once(',') {
        // A port set's `net,proto:port`.
        Some((n, port)) => {
            net(n)
                && port
                    .split_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        }
        None => net(element),
    }
}

/// The set `set`, installed with the right type and with `had` (plain
/// elements only), to its wanted elements one `add`/`del` at a time
/// ([`Changed::write`]). Between the tightening and the loosening edits
/// the set holds the stricter contents a swap would have passed through,
/// and no single edit ever admits what neither plan admits; only the
/// elements that change are written, whatever the set holds.
fn edit(tighten: &mut String, loosen: &mut String, set: &Wanted, had: &BTreeSet<String>) {
    let changed = Changed {
        added: set.elements.difference(had).cloned().collect(),
        removed: had.difference(&set.elements).cloned().collect(),
    };
    changed.write(tighten, loosen, &set.name, set.drops);
}

/// The drop set `set` from `have` (`None`: missing, or of another type and
/// then destroyed first; it is never in use then) to its wanted elements,
/// element by element so that the others keep their counters: what is no
/// longer wanted removed, what is new or has another comment (re)added.
fn edit_in_place(out: &mut String, set: &Wanted, have: Option<&SavedSet>, count: &mut SetUpdate) {
    let name = &set.name;
    let key = |element: &String| element.split(' ').next().unwrap_or_default().to_owned();
    let had: BTreeMap<String, &String> = have
        .map(|h| h.elements.iter().map(|e| (key(e), e)).collect())
        .unwrap_or_default();
    if have.is_none() {
        let _ = writeln!(out, "create {name} {} -exist", set.create);
    }
    let wanted: BTreeMap<String, &String> = set.elements.iter().map(|e| (key(e), e)).collect();
    for (element, _) in had.iter().filter(|(k, _)| !wanted.contains_key(*k)) {
        count.removed += 1;
        let _ = writeln!(out, "del {name} {element} -exist");
    }
    for (element, text) in &wanted {
        match had.get(element) {
            Some(old) if old == text => continue,
            Some(_) => {
                count.removed += 1;
                let _ = writeln!(out, "del {name} {element} -exist");
            }
            None => {}
        }
        count.added += 1;
        let _ = writeln!(out, "add {name} {text} -exist");
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
    use crate::ruleset::{AddrSet, Chain, INBOUND_CHAIN, Rule, UNCLASSIFIED_CHAIN};

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
            drop_endpoints: Default::default(),
        }
    }

    #[test]
    fn kept_texts_give_what_fresh_ones_give_and_forget_sets_gone() {
        let steps: [(&[&str], &[&str]); 5] = [
            (&["172.17.0.2/32", "172.17.0.3/32"], &[]),
            (
                &["172.17.0.2/32", "172.17.0.3/32", "172.17.0.4/32"],
                &["10.0.0.0/8"],
            ),
            (&["172.17.0.3/32"], &["10.0.0.0/8"]),
            (&[], &[]),
            (&["172.17.0.2/32", "172.17.0.4/32"], &["10.1.0.0/16"]),
        ];
        let mut texts = Texts::default();
        let mut installed = saved(&rules(&["172.17.0.9/32"], &[]));
        for (known, denied) in steps {
            let desired = rules(known, denied);
            let fresh = update(&desired, &installed, false);
            assert_eq!(update_with(&desired, &installed, false, &mut texts), fresh);
            assert_eq!(wanted_with(&desired, &mut texts), wanted(&desired));
            installed = saved(&desired);
            let none = update_with(&desired, &installed, false, &mut texts);
            assert_eq!(none, SetUpdate::default(), "{known:?} {denied:?}");
        }
        let other = FamilyRules {
            sets: vec![set("known-v6", Family::V6, &["fd00::2/128"])],
            ..rules(&[], &[])
        };
        wanted_with(&other, &mut texts);
        let fewer = FamilyRules {
            sets: vec![set("known-v4", Family::V4, &["172.17.0.2/32"])],
            ..rules(&[], &[])
        };
        wanted_with(&fewer, &mut texts);
        let kept: BTreeSet<&str> = texts.sets.keys().map(String::as_str).collect();
        assert_eq!(kept, BTreeSet::from(["known-v4", "known-v6"]));
    }

    #[test]
    fn only_an_address_with_an_ipv4_part_is_spelled_again() {
        assert_eq!(canonical("::1.2.3.4"), "::102:304");
        assert_eq!(canonical("::ffff:1.2.3.4,tcp:80"), "::ffff:1.2.3.4,tcp:80");
        for plain in [
            "172.17.0.2",
            "10.0.0.0/8",
            "2001:db8::/64",
            "fd00::2,tcp:80",
        ] {
            assert_eq!(canonical(plain), plain);
        }
    }

    /// IPv6 networks whose spelling differs most between writers: zero
    /// runs of equal length, a single zero group, IPv4 parts, and a spread
    /// of others from a fixed sequence.
    fn spellings() -> Vec<IpNet> {
        let fixed = [
            "::1/128",
            "1::/128",
            "1::1/128",
            "2001:db8::/64",
            "2001:db8:0:1::/64",
            "2001:db8:0:0:1:0:0:1/128",
            "1:0:0:2:0:0:0:3/128",
            "1:0:2:3:4:5:6:7/128",
            "1:2:3:4:5:6:7:8/128",
            "fe80::a:b:c:d/128",
            "abcd:ef01::/32",
            "::ffff:1.2.3.4/128",
            "::1.2.3.4/128",
            "fd00:d0c:1::3e8/128",
        ];
        let mut nets: Vec<IpNet> = fixed.iter().map(|n| n.parse().expect("net")).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..300 {
            let mut groups = [0u16; 8];
            for g in &mut groups {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Half the groups zero, so that runs of every length occur.
                *g = if x >> 63 == 0 { 0 } else { (x >> 40) as u16 };
            }
            // ipset refuses the zero address.
            groups[7] |= u16::from(groups == [0; 8]);
            nets.push(IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(groups))));
        }
        nets
    }

    #[test]
    #[ignore = "needs root: a private network namespace and ipset (tests/run.sh runs it)"]
    fn ipset_spells_every_element_as_dockfw_reads_it() {
        use crate::firewall::programs::IPSET;
        crate::testns::in_private_netns(&[IPSET], || {
            let nets = spellings();
            let mut script = String::from("create dockfw-spell-v6 hash:net family inet6\n");
            for net in &nets {
                script.push_str(&format!(
                    "add dockfw-spell-v6 {} -exist\n",
                    element_text(net)
                ));
            }
            let run = |args: &[&str], input: Option<&str>| {
                use std::io::Write as _;
                let mut child = std::process::Command::new(IPSET)
                    .args(args)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("ipset");
                let mut stdin = child.stdin.take().expect("stdin");
                stdin
                    .write_all(input.unwrap_or("").as_bytes())
                    .expect("write");
                drop(stdin);
                let out = child.wait_with_output().expect("ipset");
                assert!(out.status.success(), "ipset {args:?}");
                String::from_utf8(out.stdout).expect("utf-8")
            };
            run(&["restore"], Some(&script));
            let saved = parse_save(&run(&["save", "dockfw-spell-v6"], None));
            let want: BTreeSet<String> = nets.iter().map(element_text).collect();
            assert_eq!(*saved["dockfw-spell-v6"].elements, want);
        });
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
            Arc::new([element_text(&compat), "2001:db8::/64".to_owned()].into())
        );
        assert_eq!(
            sets["dockfw-guard-tcp-v6"].elements,
            Arc::new(["::/1,tcp:80".to_owned()].into())
        );
    }

    #[test]
    fn set_headers_are_read_for_dockfws_sets_and_match_the_plans() {
        let list = "Name: f2b-sshd\nType: hash:ip\nRevision: 6\n\
            Header: family inet hashsize 1024 maxelem 65536\nSize in memory: 200\n\
            References: 1\nNumber of entries: 7\n\
            Name: dockfw-known-v4\nType: hash:net\nRevision: 7\n\
            Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x5\n\
            Size in memory: 600\nReferences: 1\nNumber of entries: 2\n\
            Name: dockfw-dropped-tcp-v4\nType: hash:net,port\nRevision: 8\n\
            Header: family inet hashsize 1024 maxelem 65536 counters comment bucketsize 12\n\
            Size in memory: 456\nReferences: 1\nNumber of entries: 5\n";
        let read = parse_headers(list);
        let header = |kind: &str, entries| SetHeader {
            kind: kind.to_owned(),
            entries,
        };
        assert_eq!(
            read,
            BTreeMap::from([
                (
                    "dockfw-dropped-tcp-v4".to_owned(),
                    header("hash:net,port family inet counters comment", 5)
                ),
                (
                    "dockfw-known-v4".to_owned(),
                    header("hash:net family inet", 2)
                ),
            ])
        );
        let planned = rules(&["172.17.0.2/32", "10.0.0.0/8"], &[]);
        assert_eq!(
            headers(&planned),
            [
                (
                    "dockfw-deny-1-v4".to_owned(),
                    header("hash:net family inet", 0)
                ),
                (
                    "dockfw-known-v4".to_owned(),
                    header("hash:net family inet", 2)
                ),
            ]
        );
        let drops = dropping(&[("172.17.0.2", 80, 8080), ("172.17.0.2", 80, 8081)]);
        assert_eq!(
            headers(&drops),
            [(
                "dockfw-dropped-tcp-v4".to_owned(),
                header("hash:net,port family inet counters comment", 5)
            )],
            "as many as its elements: {:?}",
            wanted(&drops)[0].elements
        );
    }

    #[test]
    fn what_a_script_does_to_known_sets_is_followed_or_forgotten() {
        let mut known = saved(&rules(&["172.17.0.2/32", "172.17.0.3/32"], &[]));
        let desired = rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.9/32"]);
        let up = update(&desired, &known, false);
        remember_edits(&mut known, &up.before.expect("edits"));
        assert_eq!(known, saved(&desired));
        let script = "swap dockfw-known-v4-tmp dockfw-known-v4\n\
            add dockfw-deny-1-v4 172.17.0.7 comment \"x\" -exist\n";
        remember_edits(&mut known, script);
        assert!(known.is_empty(), "{known:?}");
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
    fn a_new_element_is_one_add_and_the_others_are_not_written() {
        let before = rules(&["172.17.0.2/32"], &[]);
        let desired = rules(&["172.17.0.2/32", "172.17.0.3/32"], &[]);
        let up = update(&desired, &saved(&before), false);
        assert_eq!(
            up.before.as_deref(),
            Some("add dockfw-known-v4 172.17.0.3 -exist\n")
        );
        assert_eq!((up.after, up.added, up.removed), (None, 1, 0));
        let up = update(&before, &saved(&desired), false);
        assert_eq!(
            up.before.as_deref(),
            Some("del dockfw-known-v4 172.17.0.3 -exist\n")
        );
        assert_eq!((up.after, up.added, up.removed), (None, 0, 1));
    }

    #[test]
    fn a_new_set_is_filled_and_swapped_in_whole() {
        let desired = rules(&["172.17.0.2/32", "172.17.0.3/32"], &[]);
        let up = update(&desired, &BTreeMap::new(), false);
        let text = up.before.expect("made");
        assert!(
            text.starts_with(
                "create dockfw-deny-1-v4 hash:net family inet -exist\n\
                 create dockfw-deny-1-v4-tmp hash:net family inet -exist\n\
                 flush dockfw-deny-1-v4-tmp\n\
                 swap dockfw-deny-1-v4-tmp dockfw-deny-1-v4\n\
                 destroy dockfw-deny-1-v4-tmp\n\
                 create dockfw-known-v4 hash:net family inet -exist\n\
                 create dockfw-known-v4-tmp hash:net family inet -exist\n\
                 flush dockfw-known-v4-tmp\n\
                 add dockfw-known-v4-tmp 172.17.0.2\n\
                 add dockfw-known-v4-tmp 172.17.0.3\n\
                 swap dockfw-known-v4-tmp dockfw-known-v4\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_set_holding_elements_dockfw_does_not_write_is_swapped_in_whole() {
        let desired = rules(&["172.17.0.2/32", "172.17.0.3/32"], &[]);
        let mut installed = saved(&rules(&["172.17.0.2/32"], &[]));
        let known = installed.get_mut("dockfw-known-v4").unwrap();
        known
            .elements_mut()
            .insert("172.17.0.9 timeout 5".to_owned());
        let text = update(&desired, &installed, false).before.expect("swapped");
        assert!(
            text.contains("add dockfw-known-v4-tmp 172.17.0.2\n")
                && text.contains("swap dockfw-known-v4-tmp dockfw-known-v4\n"),
            "{text}"
        );
    }

    /// The `add` and `del` lines of `text`, in order: (command, set,
    /// element).
    fn edits(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    [command @ ("add" | "del"), set, element, "-exist"] => {
                        Some((command.to_owned(), set.to_owned(), element.to_owned()))
                    }
                    _ => None,
                },
            )
            .collect()
    }

    fn edit(command: &str, set: &str, element: &str) -> (String, String, String) {
        (command.to_owned(), set.to_owned(), element.to_owned())
    }

    #[test]
    fn with_a_rules_change_the_sets_are_stricter_until_the_rules_are_in() {
        let before = rules(&["172.17.0.2/32", "172.17.0.3/32"], &["172.17.0.2/32"]);
        let desired = rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.4/32"]);
        let up = update(&desired, &saved(&before), true);
        let before_step = up.before.expect("before the rules");
        let after_step = up.after.expect("after the rules");
        assert_eq!(
            edits(&before_step),
            [
                edit("add", "dockfw-deny-1-v4", "172.17.0.4"),
                edit("del", "dockfw-known-v4", "172.17.0.2"),
            ],
            "a dropping set gains what either plan drops, an admitting set keeps only what both admit"
        );
        assert_eq!(
            edits(&after_step),
            [
                edit("del", "dockfw-deny-1-v4", "172.17.0.2"),
                edit("add", "dockfw-known-v4", "172.17.0.4"),
            ]
        );
        assert_eq!((up.added, up.removed), (2, 2));
    }

    #[test]
    fn every_edit_that_tightens_comes_before_any_that_loosens() {
        let before = rules(&["172.17.0.2/32", "172.17.0.3/32"], &["172.17.0.2/32"]);
        let desired = rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.4/32"]);
        let up = update(&desired, &saved(&before), false);
        assert_eq!(up.after, None, "no rules step: one ipset restore");
        let text = up.before.expect("sets change");
        assert_eq!(
            edits(&text),
            [
                edit("add", "dockfw-deny-1-v4", "172.17.0.4"),
                edit("del", "dockfw-known-v4", "172.17.0.2"),
                edit("del", "dockfw-deny-1-v4", "172.17.0.2"),
                edit("add", "dockfw-known-v4", "172.17.0.4"),
            ]
        );
        assert!(!text.contains("swap"), "{text}");
    }

    /// Whether the sets `now` admit no more than `plan`'s: its admitting
    /// set no larger, its dropping set no smaller.
    fn within(now: &BTreeMap<String, SavedSet>, plan: &FamilyRules) -> bool {
        let plan = saved(plan);
        let elements = |sets: &BTreeMap<String, SavedSet>, name: &str| sets[name].elements.clone();
        elements(now, "dockfw-known-v4").is_subset(&elements(&plan, "dockfw-known-v4"))
            && elements(now, "dockfw-deny-1-v4").is_superset(&elements(&plan, "dockfw-deny-1-v4"))
    }

    /// Fail closed between two plans whatever they are: after every single
    /// line of the update, the sets admit no more than the old plan's or
    /// no more than the new plan's.
    #[test]
    fn no_moment_of_an_element_update_admits_what_neither_plan_admits() {
        let plans = [
            rules(&["172.17.0.2/32", "172.17.0.3/32"], &["172.17.0.2/32"]),
            rules(&["172.17.0.3/32", "172.17.0.4/32"], &["172.17.0.4/32"]),
            rules(
                &["10.0.0.0/8", "172.17.0.5/32"],
                &["172.17.0.3/32", "172.17.0.5/32"],
            ),
            rules(&[], &[]),
        ];
        for old in &plans {
            for new in &plans {
                let mut st = super::super::installed::Installed {
                    sets: saved(old),
                    ..Default::default()
                };
                let text = update(new, &st.sets, false).before.unwrap_or_default();
                assert!(!text.contains("swap"), "edited in place: {text}");
                for line in text.lines() {
                    super::super::installed::simulate::apply_sets(&mut st, line).expect("applies");
                    assert!(
                        within(&st.sets, old) || within(&st.sets, new),
                        "after {line:?} of\n{text}"
                    );
                }
                assert_eq!(st.sets, saved(new));
            }
        }
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

    /// `rules` installed exactly as planned, every set of it.
    fn installed_as(rules: &FamilyRules) -> BTreeMap<String, SavedSet> {
        let each = wanted(rules).into_iter().map(|set| {
            let saved = SavedSet {
                kind: set.kind.to_owned(),
                elements: Arc::new(set.elements.into_owned()),
                packets: BTreeMap::new(),
            };
            (set.name, saved)
        });
        each.collect()
    }

    #[test]
    fn edits_from_two_plans_are_what_update_writes_from_the_installed_sets() {
        let with_drops = |known: &[&str], denied: &[&str], endpoints: &[(&str, u16, u16)]| {
            let drops = dropping(endpoints);
            let mut plan = rules(known, denied);
            plan.port_sets = vec![PortSet {
                name: "guard-tcp-v4".to_owned(),
                family: Family::V4,
                proto: Proto::Tcp,
                ports: endpoints.iter().map(|e| e.1).collect(),
            }];
            plan.drop_ports = drops.drop_ports;
            plan.drop_endpoints = drops.drop_endpoints;
            plan
        };
        let plans = [
            with_drops(
                &["172.17.0.2/32", "172.17.0.10/32"],
                &["172.17.0.9/32"],
                &[],
            ),
            with_drops(
                &["172.17.0.3/32", "172.17.0.9/32"],
                &["172.17.0.2/32"],
                &[("172.17.0.2", 80, 8080), ("172.17.0.3", 81, 8081)],
            ),
            with_drops(
                &["10.0.0.0/8"],
                &[],
                &[("172.17.0.2", 80, 8080), ("172.17.0.2", 80, 9090)],
            ),
        ];
        for had in &plans {
            for desired in &plans {
                let from_plans = super::edits(desired, had);
                let from_installed = update(desired, &installed_as(had), false);
                assert_eq!(from_plans, from_installed, "{had:?} -> {desired:?}");
            }
        }
    }

    #[test]
    fn a_leftover_temporary_set_is_destroyed_after_the_edits() {
        let before = rules(&["172.17.0.2/32"], &[]);
        let mut installed = saved(&before);
        installed.insert(
            "dockfw-known-v4-tmp".to_owned(),
            SavedSet {
                kind: kind(Family::V4).to_owned(),
                elements: Arc::new(["10.9.9.9".to_owned()].into()),
                packets: BTreeMap::new(),
            },
        );
        let desired = rules(&["172.17.0.3/32"], &[]);
        let up = update(&desired, &installed, false);
        assert_eq!(
            edits(&up.before.expect("edits")),
            [
                edit("del", "dockfw-known-v4", "172.17.0.2"),
                edit("add", "dockfw-known-v4", "172.17.0.3"),
            ]
        );
        assert_eq!(up.after.as_deref(), Some("destroy dockfw-known-v4-tmp\n"));
        let same = update(&before, &installed, false);
        assert_eq!(
            same.after.as_deref(),
            Some("destroy dockfw-known-v4-tmp\n"),
            "left over beside a set in place: destroyed"
        );
        let mut swapped = installed.clone();
        swapped.get_mut("dockfw-known-v4").unwrap().kind = "hash:ip family inet".to_owned();
        let up = update(&desired, &swapped, false);
        assert!(
            up.before
                .expect("made anew")
                .contains("flush dockfw-known-v4-tmp\n"),
            "a swap reuses it"
        );
        assert_eq!(up.after, None, "the swap's own destroy removes it");
    }

    /// The drop set of tcp in v4 for `endpoints` (address, container port,
    /// published port), every published port in `drop_ports` too.
    fn dropping(endpoints: &[(&str, u16, u16)]) -> FamilyRules {
        let drop_endpoints = endpoints
            .iter()
            .map(|(addr, port, published)| DropEndpoint {
                proto: Proto::Tcp,
                addr: addr.parse().unwrap(),
                port: *port,
                published: *published,
            })
            .collect();
        FamilyRules {
            drop_ports: vec![PortSet {
                name: "dropped-tcp-v4".to_owned(),
                family: Family::V4,
                proto: Proto::Tcp,
                ports: endpoints.iter().map(|e| e.2).collect(),
            }],
            drop_endpoints,
            ..FamilyRules::default()
        }
    }

    #[test]
    fn a_drop_set_counts_for_every_address_and_at_each_endpoint_its_ports_share() {
        let rules = dropping(&[("172.17.0.2", 80, 8080), ("172.17.0.2", 80, 8081)]);
        let set = &wanted(&rules)[0];
        assert_eq!(
            (set.name.as_str(), set.kind, set.counts),
            (
                "dockfw-dropped-tcp-v4",
                "hash:net,port family inet counters comment",
                true
            )
        );
        assert_eq!(
            set.elements.iter().collect::<Vec<_>>(),
            [
                "0.0.0.0/1,tcp:8080 comment \"8080\"",
                "0.0.0.0/1,tcp:8081 comment \"8081\"",
                "128.0.0.0/1,tcp:8080 comment \"8080\"",
                "128.0.0.0/1,tcp:8081 comment \"8081\"",
                "172.17.0.2,tcp:80 comment \"8080 8081\"",
            ]
        );
    }

    #[test]
    fn drop_set_counters_are_read_per_port_and_named_as_the_plan_names_them() {
        let save = "create dockfw-dropped-tcp-v4 hash:net,port family inet hashsize 1024 maxelem 65536 counters comment bucketsize 12 initval 0x1\n\
            add dockfw-dropped-tcp-v4 0.0.0.0/1,tcp:8080 packets 2 bytes 120 comment \"8080\"\n\
            add dockfw-dropped-tcp-v4 128.0.0.0/1,tcp:8080 packets 1 bytes 60 comment \"8080\"\n\
            add dockfw-dropped-tcp-v4 172.17.0.2,tcp:80 packets 7 bytes 420 comment \"8080 8081\"\n\
            create dockfw-dropped-udp-v6 hash:net,port family inet6 hashsize 1024 maxelem 65536 counters comment bucketsize 12 initval 0x2\n\
            add dockfw-dropped-udp-v6 fd00::2,udp:53 packets 4 bytes 240 comment \"5353\"\n\
            create dockfw-guard-tcp-v4 hash:net,port family inet\n\
            add dockfw-guard-tcp-v4 0.0.0.0/1,tcp:8080\n";
        let installed = parse_save(save);
        let set = &installed["dockfw-dropped-tcp-v4"];
        assert_eq!(set.kind, "hash:net,port family inet counters comment");
        assert!(
            set.elements
                .contains("172.17.0.2,tcp:80 comment \"8080 8081\""),
            "counters are not part of the element: {set:?}"
        );
        let counters = drop_counters(&installed);
        let read: Vec<(&str, Origin, u64, &[u16])> = counters
            .iter()
            .map(|c| {
                (
                    c.rule.as_str(),
                    c.origin,
                    c.packets,
                    c.shared_with.as_slice(),
                )
            })
            .collect();
        let port = |proto, port| Origin::Port { proto, port };
        assert_eq!(
            read,
            [
                ("element ipv4 tcp/8080", port(Proto::Tcp, 8080), 3, &[][..]),
                (
                    "element ipv4 tcp/8080 at 172.17.0.2:80",
                    port(Proto::Tcp, 8080),
                    7,
                    &[8081][..]
                ),
                (
                    "element ipv4 tcp/8081 at 172.17.0.2:80",
                    port(Proto::Tcp, 8081),
                    7,
                    &[8080][..]
                ),
                (
                    "element ipv6 udp/5353 at [fd00::2]:53",
                    port(Proto::Udp, 5353),
                    4,
                    &[][..]
                ),
            ],
            "both halves together; the guard set counts nothing"
        );
        assert!(counters.iter().all(|c| c.scope.is_none()));
        let rules = dropping(&[("172.17.0.2", 80, 8080), ("172.17.0.2", 80, 8081)]);
        let endpoint = rules.drop_endpoints.first().unwrap();
        assert_eq!(
            DropCounter::endpoint_rule(Family::V4, endpoint),
            "element ipv4 tcp/8080 at 172.17.0.2:80"
        );
    }

    #[test]
    fn a_drop_set_is_edited_in_place_so_other_elements_keep_their_counts() {
        let before = dropping(&[("172.17.0.2", 80, 8080), ("172.17.0.3", 80, 9090)]);
        let mut installed = BTreeMap::new();
        let text: String = wanted(&before)
            .iter()
            .map(|w| {
                let mut out = format!("create {} {}\n", w.name, w.create);
                for e in w.elements.iter() {
                    out.push_str(&format!("add {} {e} packets 5 bytes 300\n", w.name));
                }
                out
            })
            .collect();
        installed.extend(parse_save(&text));
        // 9090 goes, 8081 comes to the endpoint of 8080, 7070 is new.
        let after = dropping(&[
            ("172.17.0.2", 80, 8080),
            ("172.17.0.2", 80, 8081),
            ("172.17.0.4", 80, 7070),
        ]);
        let up = update(&after, &installed, true);
        assert_eq!(up.after, None, "nothing waits for the rules");
        let text = up.before.expect("edits");
        assert!(!text.contains("swap") && !text.contains("create"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"del dockfw-dropped-tcp-v4 0.0.0.0/1,tcp:9090 -exist"));
        assert!(lines.contains(&"del dockfw-dropped-tcp-v4 172.17.0.3,tcp:80 -exist"));
        let shared = lines
            .iter()
            .position(|l| *l == "del dockfw-dropped-tcp-v4 172.17.0.2,tcp:80 -exist")
            .expect("its comment changes: removed, then added");
        assert_eq!(
            lines[shared + 1],
            "add dockfw-dropped-tcp-v4 172.17.0.2,tcp:80 comment \"8080 8081\" -exist"
        );
        assert!(
            lines.contains(&"add dockfw-dropped-tcp-v4 172.17.0.4,tcp:80 comment \"7070\" -exist")
        );
        assert!(
            !text.contains("tcp:8080 comment"),
            "the elements of 8080 for every address keep their counts: {text}"
        );
        let mut st = super::super::installed::Installed {
            sets: installed,
            ..Default::default()
        };
        super::super::installed::simulate::apply_sets(&mut st, &text).expect("applies");
        assert_eq!(
            st.sets["dockfw-dropped-tcp-v4"].elements,
            Arc::new(wanted(&after)[0].elements.clone().into_owned())
        );
        assert_eq!(
            st.sets["dockfw-dropped-tcp-v4"].packets["0.0.0.0/1,tcp:8080 comment \"8080\""],
            5
        );
        assert_eq!(update(&after, &st.sets, false), SetUpdate::default());
        let new = update(&after, &BTreeMap::new(), true).before.expect("made");
        assert!(
            new.starts_with(
                "create dockfw-dropped-tcp-v4 hash:net,port family inet counters comment -exist\n"
            ),
            "{new}"
        );
    }
}
