//! What is installed now in one family, parsed from `iptables-save` output:
//! in `filter`, the chains dockfw owns, Docker's `DOCKER-USER` chain and the
//! rules that jump to them; and, read apart with `ipset save`, dockfw's
//! ipsets of that family ([`super::sets`]).
//!
//! Pure: the firewall edge runs `iptables-save` and hands the text here.

use std::collections::{BTreeMap, BTreeSet};

use super::sets::SavedSet;
use crate::ruleset::{DOCKER_USER, DROP_CHAIN, HOOKS, Hook, OWNED_CHAINS, Origin};

/// Docker's jump from `FORWARD` to `DOCKER-USER`.
pub const FORWARD_JUMP: &str = "-j DOCKER-USER";
/// The same jump when dockfw made `DOCKER-USER` itself (old engines make
/// none in ip6tables); the comment tells `uninstall` both are dockfw's.
pub const CREATED_FORWARD_JUMP: &str = "-m comment --comment dockfw -j DOCKER-USER";
/// The same jump when dockfw put back a missing one of Docker's; marked so
/// dockfw keeps it on top, and `uninstall` hands it back unmarked.
pub const RESTORED_FORWARD_JUMP: &str = "-m comment --comment dockfw-restored -j DOCKER-USER";

/// The parts of a `filter` table that dockfw reads or writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Every chain in the table, built-in and user-defined.
    pub chains: BTreeSet<String>,
    /// Rule specs (the text after `-A CHAIN `) of the chains that matter
    /// here: `FORWARD`, `DOCKER-USER` and dockfw's own.
    pub rules: BTreeMap<String, Vec<String>>,
    /// dockfw's ipsets this family's transactions own, by name; not in
    /// `iptables-save` output, the driver adds them.
    pub sets: BTreeMap<String, SavedSet>,
    /// The packet counter (`iptables-save -c`) of each rule of dockfw's
    /// own chains that has one, by chain and rule spec.
    pub packets: BTreeMap<(String, String), u64>,
    /// Whether `FORWARD`'s policy is `ACCEPT` (what a `RETURN` there
    /// amounts to); false when it is `DROP` or not listed.
    pub forward_accepts: bool,
}

impl Installed {
    /// Parse `iptables-save` output: the `*filter` section; other tables
    /// and comments are skipped.
    pub fn parse(save: &str) -> Installed {
        let mut installed = Installed::default();
        let mut table = "";
        for line in save.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('*') {
                table = name;
            } else if line.starts_with('#') || table != "filter" {
                continue;
            } else if let Some(decl) = line.strip_prefix(':') {
                let mut words = decl.split_whitespace();
                if let Some(name) = words.next() {
                    installed.chains.insert(name.to_owned());
                    if name == "FORWARD" {
                        installed.forward_accepts = words.next() == Some("ACCEPT");
                    }
                }
            } else if let Some((packets, rest)) = counted_rule(line) {
                let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Some(packets) = packets
                    && OWNED_CHAINS.contains(&chain)
                {
                    let key = (chain.to_owned(), spec.to_owned());
                    installed.packets.insert(key, packets);
                }
                if is_tracked(chain) {
                    installed
                        .rules
                        .entry(chain.to_owned())
                        .or_default()
                        .push(spec.to_owned());
                }
            }
        }
        installed
    }

    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.contains(name)
    }

    /// The rule specs of `chain`; empty when it has none or does not exist.
    pub fn chain_rules(&self, chain: &str) -> &[String] {
        self.rules.get(chain).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The unconditional `FORWARD -> DOCKER-USER` jumps (Docker's plain one
    /// and dockfw's marked ones), and whether
    /// the first rule of `FORWARD` is one of them. Conditional jumps such as
    /// `-i eth0 -j DOCKER-USER` are someone else's and do not count.
    pub fn forward_jumps(&self) -> (Vec<&str>, bool) {
        let is_jump = |spec: &String| is_forward_jump(spec);
        let rules = self.chain_rules("FORWARD");
        let jumps = rules
            .iter()
            .filter(|s| is_jump(s))
            .map(String::as_str)
            .collect();
        (jumps, rules.first().is_some_and(is_jump))
    }

    /// The rules of `FORWARD` above Docker's own jump to `DOCKER-USER`
    /// that may let a connection through before `DOCKER-USER` (and so
    /// dockfw) sees it: another tool's `-i eth0 -j ACCEPT` inserted on top.
    /// Docker's unmarked jump is Docker's to place, so dockfw cannot repair
    /// that without taking over `FORWARD`; it reports it. A rule counts
    /// unless its target never ends the walk through `FORWARD` in an accept
    /// (see [`may_bypass`]). Empty when the first unconditional jump is one
    /// of dockfw's marked ones (dockfw moves it back on top) or there is
    /// none at all (dockfw restores one on top).
    pub fn forward_bypasses(&self) -> Vec<&str> {
        let rules = self.chain_rules("FORWARD");
        let Some(first) = rules.iter().position(|s| is_forward_jump(s)) else {
            return Vec::new();
        };
        if rules[first] != FORWARD_JUMP {
            return Vec::new();
        }
        rules[..first]
            .iter()
            .filter(|s| may_bypass(s, self.forward_accepts))
            .map(String::as_str)
            .collect()
    }

    /// How many rules of the hook's parent chain are its jump, and whether
    /// the first rule is one of them.
    pub fn hook_jumps(&self, hook: Hook) -> (usize, bool) {
        let spec = hook.spec();
        let rules = self.chain_rules(hook.parent);
        let count = rules.iter().filter(|s| **s == spec).count();
        (count, rules.first().is_some_and(|s| *s == spec))
    }

    /// The counters of dockfw's drop rules that name their origin.
    pub fn drop_counters(&self) -> Vec<(String, Origin, u64)> {
        self.packets
            .iter()
            .filter(|((_, spec), _)| {
                let drops = [" -j DROP".to_owned(), format!(" -j {DROP_CHAIN}")];
                drops
                    .iter()
                    .any(|d| spec.ends_with(d.as_str()) || spec == d.trim_start())
            })
            .filter_map(|((chain, spec), packets)| {
                let origin = Origin::from_comment(comment(spec)?)?;
                Some((format!("{chain} {spec}"), origin, *packets))
            })
            .collect()
    }

    /// Whether any dockfw chain, jump or set is present.
    pub fn has_anything_owned(&self) -> bool {
        OWNED_CHAINS.iter().any(|c| self.has_chain(c))
            || HOOKS.iter().any(|h| self.hook_jumps(*h).0 > 0)
            || !self.sets.is_empty()
    }
}

/// Whether a `FORWARD` rule spec is an unconditional jump to `DOCKER-USER`:
/// Docker's plain one or one of dockfw's marked ones.
fn is_forward_jump(spec: &str) -> bool {
    spec == FORWARD_JUMP || spec == CREATED_FORWARD_JUMP || spec == RESTORED_FORWARD_JUMP
}

/// Targets that never end a walk through `FORWARD` in an accept: they drop,
/// or they only note, log, mark or count and let the walk go on. A jump to
/// `DOCKER-USER` (a conditional one: someone else's) reaches dockfw too.
const HARMLESS_TARGETS: &[&str] = &[
    "DROP",
    "REJECT",
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "TRACE",
    "AUDIT",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TCPMSS",
    "SECMARK",
    "CONNSECMARK",
    "SET",
    DOCKER_USER,
];

/// Whether a rule placed above `FORWARD -> DOCKER-USER` may let a
/// connection through unjudged: a target that accepts (`ACCEPT`), ends the
/// chain where its policy accepts (`RETURN`, with `policy_accepts`), or
/// hands the packet to a chain or program that may (`-j CHAIN`, `-g CHAIN`,
/// `NFQUEUE`). A rule with no target (a counter) or a target in
/// [`HARMLESS_TARGETS`] does not. iptables-save writes the target last, so
/// the last `-j`/`-g` is it (a comment that reads `-j ACCEPT` only ever adds
/// a report, never hides one).
fn may_bypass(spec: &str, policy_accepts: bool) -> bool {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let target = words
        .windows(2)
        .rev()
        .find(|w| w[0] == "-j" || w[0] == "-g");
    match target {
        None => false,
        Some([flag, _]) if *flag == "-g" => true,
        Some([_, "RETURN"]) => policy_accepts,
        Some([_, target]) => !HARMLESS_TARGETS.contains(target),
        Some(_) => true,
    }
}

/// A rule line, `-A CHAIN spec` or with `iptables-save -c`'s counters in
/// front, `[packets:bytes] -A CHAIN spec`: the packets, if given, and
/// `CHAIN spec`.
fn counted_rule(line: &str) -> Option<(Option<u64>, &str)> {
    if let Some(rest) = line.strip_prefix("-A ") {
        return Some((None, rest));
    }
    let (counters, rest) = line.strip_prefix('[')?.split_once("] -A ")?;
    let (packets, _bytes) = counters.split_once(':')?;
    Some((packets.parse().ok(), rest))
}

/// The text of a rule's `--comment`, as iptables-save writes it: one word,
/// or in double quotes (dockfw's comments hold no quote or backslash).
fn comment(spec: &str) -> Option<&str> {
    let (_, after) = spec.split_once("-m comment --comment ")?;
    match after.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').map(|(text, _)| text),
        None => after.split_whitespace().next(),
    }
}

fn is_tracked(chain: &str) -> bool {
    chain == "FORWARD"
        || chain == DOCKER_USER
        || HOOKS.iter().any(|h| h.parent == chain)
        || OWNED_CHAINS.contains(&chain)
}

/// Whether a rule spec's target is a jump to `chain`.
pub fn jumps_to(spec: &str, chain: &str) -> bool {
    spec.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "-j" && w[1] == chain)
}

#[cfg(test)]
pub mod simulate {
    //! A tiny model of `iptables-restore --noflush` and `ipset restore` over
    //! [`Installed`], so the renderer and the reconcile loop can be tested
    //! without root.

    use super::Installed;
    use crate::firewall::iptables::{Step, Transaction};

    /// A transaction as the part of each family it writes: itself for a
    /// transaction of one family; for a sets-only one of both (`family:
    /// None`), each `ipset restore` line goes to the family whose set it
    /// names (see `sets::owner`).
    pub fn per_family(tx: &Transaction) -> Vec<(crate::net::Family, Transaction)> {
        use crate::net::Family;
        if let Some(family) = tx.family {
            return vec![(family, tx.clone())];
        }
        let mut parts = [String::new(), String::new()];
        for step in &tx.steps {
            let (Step::Sets(text) | Step::Rules(text)) = step;
            for line in text.lines() {
                let name = line.split_whitespace().nth(1).unwrap_or_default();
                let slot = match crate::firewall::iptables::sets::owner(name) {
                    Family::V4 => 0,
                    Family::V6 => 1,
                };
                parts[slot].push_str(line);
                parts[slot].push('\n');
            }
        }
        Family::ALL
            .into_iter()
            .zip(parts)
            .map(|(family, text)| {
                let part = Transaction {
                    family: None,
                    steps: vec![Step::Sets(text)],
                    ..tx.clone()
                };
                (family, part)
            })
            .collect()
    }

    /// Run a transaction's steps in order; the first that fails ends it.
    pub fn apply_transaction(installed: &mut Installed, tx: &Transaction) -> Result<(), String> {
        for step in &tx.steps {
            match step {
                Step::Sets(text) => apply_sets(installed, text)?,
                Step::Rules(text) => apply(installed, text)?,
            }
        }
        Ok(())
    }

    /// Apply restore text the way `iptables-restore --noflush` would, for
    /// the subset of commands dockfw emits.
    pub fn apply(installed: &mut Installed, text: &str) -> Result<(), String> {
        for line in text.lines() {
            apply_line(installed, line)?;
        }
        Ok(())
    }

    /// Apply `ipset restore` text, for the subset of commands dockfw
    /// emits; a set a rule names cannot be destroyed.
    pub fn apply_sets(st: &mut Installed, text: &str) -> Result<(), String> {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["create", name, kind @ .., "-exist"] => {
                    let kind = super::super::sets::saved_kind(kind);
                    let set = st.sets.entry((*name).to_owned()).or_default();
                    if !set.kind.is_empty() && set.kind != kind {
                        return Err(format!("{name} exists with another type"));
                    }
                    set.kind = kind;
                }
                ["flush", name] => set_of(st, name)?.elements_mut().clear(),
                ["add", name, element @ ..] => {
                    let exist = element.last() == Some(&"-exist");
                    let element = element[..element.len() - usize::from(exist)].join(" ");
                    let set = set_of(st, name)?;
                    let key = element.split(' ').next().unwrap_or_default();
                    let same_key = |e: &String| e.split(' ').next() == Some(key);
                    match set.elements.iter().find(|e| same_key(e)).cloned() {
                        // `-exist` takes the new options, keeps the counter.
                        Some(old) if exist => {
                            set.elements_mut().remove(&old);
                            if let Some(packets) = set.packets.remove(&old) {
                                set.packets.insert(element.clone(), packets);
                            }
                        }
                        Some(_) => return Err(format!("{key} is already in {name}")),
                        None => {}
                    }
                    set.elements_mut().insert(element);
                }
                ["del", name, key, rest @ ..] => {
                    let exist = rest == ["-exist"];
                    let set = set_of(st, name)?;
                    let found = set
                        .elements
                        .iter()
                        .find(|e| e.split(' ').next() == Some(key));
                    match found.cloned() {
                        Some(old) => {
                            set.elements_mut().remove(&old);
                            set.packets.remove(&old);
                        }
                        None if exist => {}
                        None => return Err(format!("{key} is not in {name}")),
                    }
                }
                ["swap", from, to] => {
                    let a = set_of(st, from)?.clone();
                    let b = set_of(st, to)?.clone();
                    st.sets.insert((*from).to_owned(), b);
                    st.sets.insert((*to).to_owned(), a);
                }
                ["destroy", name] => {
                    let pattern = format!("--match-set {name} ");
                    if st.rules.values().flatten().any(|r| r.contains(&pattern)) {
                        return Err(format!("{name} is in use"));
                    }
                    st.sets.remove(*name).ok_or(format!("no set {name}"))?;
                }
                _ => return Err(format!("unknown ipset command {line}")),
            }
        }
        Ok(())
    }

    fn set_of<'a>(st: &'a mut Installed, name: &str) -> Result<&'a mut super::SavedSet, String> {
        st.sets.get_mut(name).ok_or(format!("no set {name}"))
    }

    fn apply_line(st: &mut Installed, line: &str) -> Result<(), String> {
        if line == "*filter" || line == "COMMIT" || line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().ok_or("empty chain line")?;
            st.chains.insert(name.to_owned());
            st.rules.insert(name.to_owned(), Vec::new());
            st.packets.retain(|(chain, _), _| chain != name);
            return Ok(());
        }
        if let Some(name) = line.strip_prefix("-N ") {
            if !st.chains.insert(name.to_owned()) {
                return Err(format!("chain {name} already exists"));
            }
            return Ok(());
        }
        let (cmd, rest) = line.split_once(' ').ok_or(format!("bad line {line}"))?;
        let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
        if !st.has_chain(chain) {
            return Err(format!("no chain {chain} for {line}"));
        }
        let words: Vec<&str> = spec.split_whitespace().collect();
        for pair in words.windows(2).filter(|w| w[0] == "--match-set") {
            if matches!(cmd, "-A" | "-I") && !st.sets.contains_key(pair[1]) {
                return Err(format!("set {} does not exist for {line}", pair[1]));
            }
        }
        let rules = st.rules.entry(chain.to_owned()).or_default();
        match cmd {
            "-A" => rules.push(spec.to_owned()),
            "-I" => {
                let (pos, spec) = spec.split_once(' ').ok_or("bad -I")?;
                let pos: usize = pos.parse().map_err(|_| "bad -I position")?;
                rules.insert(pos - 1, spec.to_owned());
            }
            "-D" => {
                let i = rules
                    .iter()
                    .position(|r| r == spec)
                    .ok_or(format!("no rule {line}"))?;
                rules.remove(i);
            }
            "-F" => {
                rules.clear();
                st.packets.retain(|(c, _), _| c != chain);
            }
            "-X" => {
                st.rules.remove(chain);
                st.chains.remove(chain);
            }
            _ => return Err(format!("unknown command {line}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "# Generated by iptables-nft-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKFW - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-USER -j DOCKFW
-A DOCKER-USER -j RETURN
-A DOCKFW -i docker0 -j RETURN
COMMIT
";

    #[test]
    fn parses_filter_table_only() {
        let st = Installed::parse(SAVE);
        assert!(st.has_chain("DOCKER-USER"));
        assert!(!st.has_chain("PREROUTING"));
        assert_eq!(st.chain_rules("DOCKFW"), ["-i docker0 -j RETURN"]);
        assert_eq!(
            st.chain_rules("DOCKER"),
            [] as [String; 0],
            "untracked chain"
        );
        assert_eq!(st.forward_jumps(), (vec!["-j DOCKER-USER"], true));
        assert_eq!(st.hook_jumps(HOOKS[0]), (1, true));
        assert!(st.has_anything_owned());
    }

    #[test]
    fn drop_counters_of_dockfw_chains_are_read_by_origin() {
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:DOCKFW-INBOUND - [0:0]\n:DOCKFW-PROXY - [0:0]\n\
            [7:420] -A INPUT -m comment --comment \"dockfw deny@3\" -j DROP\n\
            [2:120] -A DOCKFW-INBOUND -p tcp -m conntrack --ctorigdstport 5432 -m limit --limit 10/min -m comment --comment \"dockfw deny@3\" -j LOG --log-prefix \"dockfw deny@3 \"\n\
            [3:180] -A DOCKFW-INBOUND -p tcp -m conntrack --ctorigdstport 5432 -m comment --comment \"dockfw deny@3\" -j DROP\n\
            [9:540] -A DOCKFW-INBOUND -p tcp -m conntrack --ctstate DNAT --ctorigdstport 80 -m comment --comment \"dockfw allow@6\" -j RETURN\n\
            [1204:72240] -A DOCKFW-INBOUND -m comment --comment \"dockfw default\" -j DROP\n\
            [5:300] -A DOCKFW-PROXY -m comment --comment someone-else -j DROP\n\
            [4:240] -A DOCKFW-PROXY -p tcp -m tcp --dport 5432 -m comment --comment \"dockfw deny@3\" -j DROP\n\
            COMMIT\n";
        let st = Installed::parse(save);
        assert_eq!(
            st.chain_rules("DOCKFW-INBOUND").last().map(String::as_str),
            Some("-m comment --comment \"dockfw default\" -j DROP"),
            "the counters are not part of the spec"
        );
        let counted: Vec<(Origin, u64)> = st
            .drop_counters()
            .into_iter()
            .map(|(_, origin, packets)| (origin, packets))
            .collect();
        assert_eq!(
            counted,
            [
                (Origin::DefaultDeny, 1204),
                (Origin::Deny { line: 3 }, 3),
                (Origin::Deny { line: 3 }, 4),
            ],
            "drop rules of dockfw's chains only, by chain and spec"
        );
    }

    #[test]
    fn empty_table_has_nothing() {
        let st = Installed::parse("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
        assert_eq!(st.forward_jumps(), (vec![], false));
        assert_eq!(st.hook_jumps(HOOKS[0]), (0, false));
        assert!(!st.has_anything_owned());
    }

    #[test]
    fn jump_detection_needs_the_exact_target() {
        assert!(jumps_to(
            "-m comment --comment dockfw -j DOCKER-USER",
            "DOCKER-USER"
        ));
        assert!(!jumps_to("-j DOCKER-USER-X", "DOCKER-USER"));
        assert!(!jumps_to("-i DOCKER-USER -j RETURN", "DOCKER-USER"));
    }

    #[test]
    fn simulated_restore_follows_noflush_semantics() {
        let mut st = Installed::parse(SAVE);
        let text = "*filter\n:DOCKFW - [0:0]\n-A DOCKFW -j RETURN\n-D DOCKER-USER -j DOCKFW\n-I DOCKER-USER 1 -j DOCKFW\nCOMMIT\n";
        simulate::apply(&mut st, text).expect("applies");
        assert_eq!(st.chain_rules("DOCKFW"), ["-j RETURN"]);
        assert_eq!(st.chain_rules("DOCKER-USER"), ["-j DOCKFW", "-j RETURN"]);
    }

    #[test]
    fn rules_above_forward_to_docker_user_that_may_accept_are_bypasses() {
        let save = |forward: &str| {
            Installed::parse(&format!(
                "*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n{forward}COMMIT\n"
            ))
        };
        let st = save(
            "-A FORWARD -i eth0 -j ACCEPT\n\
             -A FORWARD -m comment --comment \"count it\"\n\
             -A FORWARD -j LOG --log-prefix \"fwd \"\n\
             -A FORWARD -s 192.0.2.0/24 -j DROP\n\
             -A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n\
             -A FORWARD -i eth1 -j DOCKER-USER\n\
             -A FORWARD -i eth2 -j RETURN\n\
             -A FORWARD -i eth3 -j f2b-sshd\n\
             -A FORWARD -i eth4 -g ufw-forward\n\
             -A FORWARD -i eth5 -j NFQUEUE --queue-num 1\n\
             -A FORWARD -j DOCKER-USER\n\
             -A FORWARD -i eth6 -j ACCEPT\n",
        );
        assert_eq!(
            st.forward_bypasses(),
            [
                "-i eth0 -j ACCEPT",
                "-i eth3 -j f2b-sshd",
                "-i eth4 -g ufw-forward",
                "-i eth5 -j NFQUEUE --queue-num 1",
            ],
            "RETURN under a DROP policy drops; below the jump, -i eth6 is DOCKER-USER's business"
        );
        // Docker's jump on top, or dockfw's marked one (which dockfw moves
        // back on top of anything): nothing bypasses.
        assert!(
            save("-A FORWARD -j DOCKER-USER\n-A FORWARD -j ACCEPT\n")
                .forward_bypasses()
                .is_empty()
        );
        for jump in [RESTORED_FORWARD_JUMP, CREATED_FORWARD_JUMP] {
            let marked = format!(
                "-A FORWARD -i eth0 -j ACCEPT\n-A FORWARD {jump}\n-A FORWARD -j DOCKER-USER\n"
            );
            assert!(save(&marked).forward_bypasses().is_empty(), "{marked}");
        }
        // RETURN from FORWARD is its policy: a bypass only where that accepts.
        let accepting = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -i eth2 -j RETURN\n\
                         -A FORWARD -j DOCKER-USER\nCOMMIT\n";
        assert_eq!(
            Installed::parse(accepting).forward_bypasses(),
            ["-i eth2 -j RETURN"]
        );
        // No unconditional jump at all: dockfw restores one on top.
        assert!(save("-A FORWARD -j ACCEPT\n").forward_bypasses().is_empty());
    }
}
