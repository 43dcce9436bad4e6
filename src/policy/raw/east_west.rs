//! The `[east_west]` table of `policy.toml`: `default`, and the
//! `[[east_west.isolate]]`, `[[east_west.allow]]` and `[[east_west.deny]]`
//! entries, validated with the same walk (and the same diagnostics) as the
//! `[inbound]` and `[outbound]` tables.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::DeTable;

use super::{
    MAX_ENTRY_RULES, Report, Value, array_of_tables, glob, labels, labels_under, list, port_range,
    proto, verdict,
};
use crate::policy::{Default, EastWest, EastWestEntry, Entry, ProtoMatch};

/// The `[east_west]` table, which starts on `line`.
pub(super) fn table(report: &mut Report<'_>, table: &DeTable<'_>, line: usize) -> EastWest {
    let mut east_west = EastWest {
        default: Default::Allow,
        isolate: Vec::new(),
        allow: Vec::new(),
        deny: Vec::new(),
        line,
    };
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "default" => {
                if let Some(default) = verdict(report, "default", value) {
                    east_west.default = default;
                }
            }
            "isolate" => east_west.isolate = entries(report, Kind::Isolate, value),
            "allow" => east_west.allow = entries(report, Kind::Allow, value),
            "deny" => east_west.deny = entries(report, Kind::Deny, value),
            _ => report.unknown_key(key, "in [east_west]"),
        }
    }
    east_west
}

/// Which array of tables an entry is in: isolate entries take only the
/// destination selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Isolate,
    Allow,
    Deny,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Isolate => "isolate",
            Kind::Allow => "allow",
            Kind::Deny => "deny",
        }
    }
}

/// The `[[east_west.<kind>]]` tables.
fn entries(report: &mut Report<'_>, kind: Kind, value: &Value<'_>) -> Vec<EastWestEntry> {
    array_of_tables(
        report,
        "east_west",
        kind.name(),
        value,
        |report, table, span| entry(report, kind, table, span),
    )
}

/// One entry; `span` is its header (or its inline table).
fn entry(
    report: &mut Report<'_>,
    kind: Kind,
    table: &DeTable<'_>,
    span: &Range<usize>,
) -> EastWestEntry {
    let mut entry = EastWestEntry {
        to: Entry {
            ports: None,
            proto: match kind {
                Kind::Isolate => ProtoMatch::Any,
                Kind::Allow | Kind::Deny => ProtoMatch::Tcp,
            },
            from: None,
            containers: Vec::new(),
            labels: BTreeMap::new(),
            line: report.position(span.start).0,
        },
        from_containers: Vec::new(),
        from_labels: BTreeMap::new(),
        networks: Vec::new(),
    };
    let every = "every container";
    for (key, value) in table.iter() {
        match (key.get_ref().as_ref(), kind) {
            ("containers", _) => {
                entry.to.containers =
                    list(report, "containers", value, every, glob).unwrap_or_default();
            }
            ("labels", _) => entry.to.labels = labels(report, value),
            ("networks", _) => {
                let networks = list(report, "networks", value, "every network", glob);
                entry.networks = networks.unwrap_or_default();
            }
            ("from_containers", Kind::Allow | Kind::Deny) => {
                let globs = list(report, "from_containers", value, every, glob);
                entry.from_containers = globs.unwrap_or_default();
            }
            ("from_labels", Kind::Allow | Kind::Deny) => {
                entry.from_labels = labels_under(report, "from_labels", value);
            }
            ("ports", Kind::Allow | Kind::Deny) => {
                entry.to.ports = list(report, "ports", value, "every port", port_range);
            }
            ("proto", Kind::Allow | Kind::Deny) => {
                if let Some(proto) = proto(report, value) {
                    entry.to.proto = proto;
                }
            }
            _ => report.unknown_key(key, &format!("in [[east_west.{}]]", kind.name())),
        }
    }
    let rules = entry.to.expansion();
    if rules > MAX_ENTRY_RULES {
        report.error(
            span,
            format!(
                "{} entry expands to {rules} rules (protocols x port ranges), more than \
                 {MAX_ENTRY_RULES}: split it, or list fewer port ranges",
                kind.name()
            ),
        );
    }
    entry
}

#[cfg(test)]
mod tests {
    use crate::policy::{Default, ProtoMatch};

    use super::super::tests::{errors, valid};

    #[test]
    fn a_missing_east_west_table_is_none() {
        let policy = valid("[inbound]\n[outbound]\ndefault = \"deny\"\n");
        assert_eq!(policy.east_west, None);
    }

    #[test]
    fn the_east_west_table_with_every_key() {
        let text = r#"[inbound]

[east_west]
default = "deny"

[[east_west.isolate]]
networks = ["backend"]

[[east_west.allow]]
from_containers = ["traefik"]
from_labels = { role = "proxy" }
networks = ["backend", "web-*"]
containers = ["api-*"]
labels = { tier = "api" }
ports = [8080, "9000-9100"]
proto = "any"

[[east_west.deny]]
containers = ["db"]
"#;
        let east_west = valid(text).east_west.expect("east_west");
        assert_eq!(east_west.line, 3);
        assert_eq!(east_west.default, Default::Deny);
        assert_eq!(east_west.isolate.len(), 1);
        assert_eq!(east_west.isolate[0].to.line, 6);
        assert!(east_west.isolate[0].selects_destinations());
        assert!(!east_west.isolate[0].selects_sources());
        let allow = &east_west.allow[0];
        assert_eq!(allow.to.line, 9);
        assert_eq!(allow.networks.len(), 2);
        assert_eq!(allow.from_containers.len(), 1);
        assert_eq!(allow.from_labels.len(), 1);
        assert_eq!(allow.to.proto, ProtoMatch::Any);
        assert_eq!(allow.to.ports.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            east_west.deny[0].to.proto,
            ProtoMatch::Tcp,
            "tcp unless said"
        );
        assert!(east_west.restricts() && east_west.judged());
    }

    #[test]
    fn an_empty_east_west_table_judges_nothing() {
        let east_west = valid("[east_west]\n").east_west.expect("east_west");
        assert_eq!(east_west.default, Default::Allow);
        assert!(!east_west.judged());
        let allow_only = "[east_west]\n[[east_west.allow]]\nports = [80]\n";
        assert!(!valid(allow_only).east_west.expect("east_west").judged());
    }

    #[test]
    fn every_east_west_error_is_reported_at_its_place() {
        let text = r#"[east_west]
default = "open"
icc = false

[[east_west.isolate]]
ports = [80]
from_containers = ["x"]

[[east_west.allow]]
from = ["10.0.0.0/8"]
networks = []
ports = [0]

[[east_west.deny]]
from_labels = 3
proto = "icmp"
containers = ["["]
"#;
        assert_eq!(
            errors(text),
            [
                r#"2:11: default: "open" is not "deny" or "allow""#,
                r#"3:1: unknown key "icc" in [east_west]"#,
                r#"6:1: unknown key "ports" in [[east_west.isolate]]"#,
                r#"7:1: unknown key "from_containers" in [[east_west.isolate]]"#,
                r#"10:1: unknown key "from" in [[east_west.allow]]"#,
                "11:12: networks: empty list; omit the key to mean every network",
                "12:10: ports: port 0 is out of range 1-65535",
                "15:15: from_labels: expected a table of strings, found 3",
                r#"16:9: proto: "icmp" is not "tcp", "udp" or "any""#,
                r#"17:15: containers: "[" is not a valid glob: '[' at character 1 is never closed"#,
            ]
        );
        assert_eq!(
            errors("east_west = 1\n"),
            ["1:13: east_west: expected a table, found 1"]
        );
        assert_eq!(
            errors("[east_west]\nallow = 1\n"),
            ["2:9: allow: expected an array of tables ([[east_west.allow]]), found 1"]
        );
    }
}
