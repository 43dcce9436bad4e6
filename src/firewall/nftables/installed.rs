//! What is installed in dockfw's table, compared with what dockfw last
//! applied: whether the table has to be written again, and why.
//!
//! Pure. It does not parse nft's rule syntax: right after an apply, the
//! table as `nft list` prints it is kept, normalised ([`normalise`]), as
//! the expected listing ([`Applied`]); any later listing that differs is
//! drift. So the comparison is exact, needs no model of how nft prints a
//! rule, and follows nft across versions (a new nft that prints a rule
//! differently costs one extra apply). The limit: a change made by another
//! program between dockfw's apply and its listing becomes the expectation.

use crate::ruleset::Ruleset;

/// A listing of dockfw's table with what changes without a change of rules
/// taken out: counter values, rule and chain handles, blank lines and
/// indentation. One line per statement, single spaces between words.
pub fn normalise(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    for line in listing.lines() {
        let words = without_state(line.split_whitespace().collect());
        if words.is_empty() {
            continue;
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
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

/// What dockfw last applied, and how nft listed the table right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    ruleset: Ruleset,
    /// The normalised listing taken right after the apply.
    listing: String,
}

impl Applied {
    /// `ruleset` was applied and then the table was listed as `listing`.
    pub fn new(ruleset: Ruleset, listing: &str) -> Applied {
        Applied {
            ruleset,
            listing: normalise(listing),
        }
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
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
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstApply => "first apply",
            Reason::PlanChanged => "plan changed",
            Reason::TableMissing => "table missing",
            Reason::Drift => "table changed by someone else",
        }
    }
}

/// Whether, and why, `desired` has to be applied, given what was last
/// applied and the table's listing now (`None`: there is no table).
pub fn reason_to_apply(
    desired: &Ruleset,
    last: Option<&Applied>,
    installed: Option<&str>,
) -> Option<Reason> {
    let Some(last) = last else {
        return Some(Reason::FirstApply);
    };
    if last.ruleset != *desired {
        return Some(Reason::PlanChanged);
    }
    let Some(installed) = installed else {
        return Some(Reason::TableMissing);
    };
    (normalise(installed) != last.listing).then_some(Reason::Drift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Chain, ENTRY_CHAIN, FamilyRules, Rule, Target};

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
        };
        Ruleset {
            v4: family.clone(),
            v6: family,
        }
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
