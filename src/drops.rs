//! Running totals of the connections dockfw's rules dropped since the
//! daemon started, per policy entry ([`Origin`]), from the drop rules'
//! counters as each reconcile reads them ([`DropCounter`]), and per port
//! from the per-element counters of the drop sets (nftables: per port;
//! iptables: per port, and per container endpoint, whose count the ports
//! published on it share); a "rule" here is either.
//!
//! The firewall's counters start again at zero whenever a rule is written
//! anew (nftables rewrites the whole table on any change of rules, iptables
//! the chains it re-declares), a set element is removed and added again
//! (a port unpublished, then published again: no rewrite is reported, the
//! counter just reads lower), and a counter someone zeroed (`iptables
//! -Z`) goes backwards: either way, what the rule had counted when last
//! read is carried into the total. Drops between that last read and the
//! rewrite (the few milliseconds of one reconcile) are not counted. What
//! the rules had counted before the daemon started is left out.
//!
//! Pure: the daemon hands in readings and rewrites, and reads totals.

use std::collections::{BTreeMap, BTreeSet};

use crate::firewall::DropCounter;
use crate::net::Family;
use crate::ruleset::Origin;

/// Where a rule is written, and which rule: [`DropCounter::scope`] and
/// [`DropCounter::rule`].
type RuleKey = (Option<Family>, String);

/// One rule's counter at its last read.
#[derive(Debug, Clone)]
struct Reading {
    origin: Origin,
    packets: u64,
    /// What it had counted before the daemon started (at the first read).
    before_start: u64,
    /// The other ports it counts for too ([`DropCounter::shared_with`]).
    shared_with: Vec<u16>,
}

impl Reading {
    fn since_start(&self) -> u64 {
        self.packets.saturating_sub(self.before_start)
    }
}

/// Drops per origin since the daemon started.
#[derive(Debug, Clone, Default)]
pub struct DropTotals {
    /// What rules since rewritten or reset had counted, per origin.
    carried: BTreeMap<Origin, u64>,
    /// Each rule's counter at its last read.
    last: BTreeMap<RuleKey, Reading>,
    /// Whether a read was taken: the first one is the baseline.
    read_once: bool,
}

impl DropTotals {
    /// Take a fresh read of the counters. A rule not in it keeps its last
    /// reading (its family may just have been unreadable).
    pub fn observe(&mut self, counters: Vec<DropCounter>) {
        let first = !self.read_once;
        self.read_once = true;
        for counter in counters {
            let key = (counter.scope, counter.rule);
            let mut before_start = if first { counter.packets } else { 0 };
            if let Some(last) = self.last.get(&key).cloned() {
                before_start = last.before_start;
                if counter.packets < last.packets {
                    // Zeroed by someone: what it had counted stays counted.
                    self.carry(&last);
                    before_start = 0;
                }
            }
            let reading = Reading {
                origin: counter.origin,
                packets: counter.packets,
                before_start,
                shared_with: counter.shared_with,
            };
            self.last.insert(key, reading);
        }
    }

    /// dockfw's rules of `scope` (a family, or `None`: the one table of
    /// both) were just written anew: their counters start again at zero.
    pub fn rewritten(&mut self, scope: Option<Family>) {
        let replaced: Vec<RuleKey> = self
            .last
            .keys()
            .filter(|(s, _)| *s == scope)
            .cloned()
            .collect();
        for key in replaced {
            if let Some(reading) = self.last.remove(&key) {
                self.carry(&reading);
            }
        }
    }

    /// The set element that counted as `rule` ([`DropCounter::element_rule`])
    /// was just removed: what it had counted stays counted, and an element
    /// added again later counts from zero.
    pub fn removed(&mut self, rule: &str) {
        let gone: Vec<RuleKey> = self
            .last
            .keys()
            .filter(|(_, r)| r == rule)
            .cloned()
            .collect();
        for key in gone {
            if let Some(reading) = self.last.remove(&key) {
                self.carry(&reading);
            }
        }
    }

    fn carry(&mut self, reading: &Reading) {
        let total = self.carried.entry(reading.origin).or_default();
        *total = total.saturating_add(reading.since_start());
    }

    /// Drops since the start per origin: every origin a drop rule has had,
    /// with nothing dropped too.
    pub fn totals(&self) -> BTreeMap<Origin, u64> {
        let mut totals = self.carried.clone();
        for reading in self.last.values() {
            let total = totals.entry(reading.origin).or_default();
            *total = total.saturating_add(reading.since_start());
        }
        totals
    }

    /// The other ports each port's count includes drops to, per the
    /// counters last read: those sharing a counter with it. Empty for most.
    pub fn shared(&self) -> BTreeMap<Origin, BTreeSet<u16>> {
        let mut shared: BTreeMap<Origin, BTreeSet<u16>> = BTreeMap::new();
        for reading in self.last.values().filter(|r| !r.shared_with.is_empty()) {
            let ports = shared.entry(reading.origin).or_default();
            ports.extend(reading.shared_with.iter().copied());
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: Origin = Origin::Deny { line: 33 };

    fn counter(scope: Option<Family>, rule: &str, origin: Origin, packets: u64) -> DropCounter {
        DropCounter {
            scope,
            rule: rule.to_owned(),
            origin,
            packets,
            shared_with: Vec::new(),
        }
    }

    fn read(totals: &mut DropTotals, v4: u64, v6: u64) {
        totals.observe(vec![
            counter(Some(Family::V4), "INBOUND deny", DENY, v4),
            counter(Some(Family::V6), "INBOUND deny", DENY, v6),
        ]);
    }

    #[test]
    fn the_total_runs_on_across_a_rewrite_of_one_family() {
        let mut totals = DropTotals::default();
        read(&mut totals, 0, 0);
        read(&mut totals, 5, 1);
        assert_eq!(totals.totals()[&DENY], 6);
        totals.rewritten(Some(Family::V4));
        assert_eq!(totals.totals()[&DENY], 6, "carried, not lost");
        read(&mut totals, 2, 3);
        assert_eq!(totals.totals()[&DENY], 5 + 2 + 3);
    }

    #[test]
    fn what_was_counted_before_the_start_is_left_out() {
        let mut totals = DropTotals::default();
        read(&mut totals, 100, 0);
        assert_eq!(totals.totals()[&DENY], 0);
        read(&mut totals, 104, 0);
        assert_eq!(totals.totals()[&DENY], 4);
        totals.rewritten(Some(Family::V4));
        read(&mut totals, 1, 0);
        assert_eq!(totals.totals()[&DENY], 5);
    }

    #[test]
    fn a_counter_that_went_backwards_was_reset_and_keeps_what_it_counted() {
        let mut totals = DropTotals::default();
        read(&mut totals, 0, 0);
        read(&mut totals, 7, 0);
        read(&mut totals, 2, 0);
        assert_eq!(totals.totals()[&DENY], 9);
    }

    #[test]
    fn an_element_removed_and_added_again_keeps_what_it_counted_before() {
        let port = Origin::Port {
            proto: crate::net::Proto::Tcp,
            port: 5432,
        };
        let v4 = DropCounter::element_rule(Family::V4, crate::net::Proto::Tcp, 5432);
        let v6 = DropCounter::element_rule(Family::V6, crate::net::Proto::Tcp, 5432);
        let mut totals = DropTotals::default();
        totals.observe(vec![
            counter(None, &v4, port, 0),
            counter(None, &v6, port, 0),
        ]);
        totals.observe(vec![
            counter(None, &v4, port, 5),
            counter(None, &v6, port, 2),
        ]);
        // The container restarts: its port's element goes, and comes back
        // to count more than before by the next read.
        totals.removed(&v4);
        totals.observe(vec![
            counter(None, &v4, port, 6),
            counter(None, &v6, port, 2),
        ]);
        assert_eq!(totals.totals()[&port], 5 + 6 + 2);
    }

    #[test]
    fn a_rule_missing_from_a_read_keeps_its_count_and_one_table_is_one_scope() {
        let mut totals = DropTotals::default();
        totals.observe(vec![counter(None, "inbound drop", Origin::DefaultDeny, 0)]);
        totals.observe(vec![counter(None, "inbound drop", Origin::DefaultDeny, 3)]);
        totals.observe(Vec::new());
        assert_eq!(totals.totals()[&Origin::DefaultDeny], 3);
        totals.rewritten(Some(Family::V4));
        totals.observe(vec![counter(None, "inbound drop", Origin::DefaultDeny, 4)]);
        assert_eq!(totals.totals()[&Origin::DefaultDeny], 4, "not that scope");
        totals.rewritten(None);
        totals.observe(vec![counter(None, "inbound drop", Origin::DefaultDeny, 1)]);
        assert_eq!(totals.totals()[&Origin::DefaultDeny], 5);
    }
}
