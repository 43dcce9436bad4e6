//! The `[outbound]` table of `policy.toml`: `default`, `to_host`, and the
//! `[[outbound.isolate]]`, `[[outbound.allow]]` and `[[outbound.deny]]`
//! entries, validated with the same walk (and the same diagnostics) as the
//! `[inbound]` table in the parent module.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::DeTable;

use super::{Report, Section, Value, array_of_tables, entries, glob, labels, list, verdict};
use crate::policy::{Default, Entry, Outbound, ProtoMatch};

/// The `[outbound]` table, which starts on `line`.
pub(super) fn table(report: &mut Report<'_>, table: &DeTable<'_>, line: usize) -> Outbound {
    let mut outbound = Outbound {
        default: Default::Allow,
        to_host: Default::Allow,
        isolate: Vec::new(),
        allow: Vec::new(),
        deny: Vec::new(),
        line,
    };
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "default" => {
                if let Some(default) = verdict(report, "default", value) {
                    outbound.default = default;
                }
            }
            "to_host" => {
                if let Some(to_host) = verdict(report, "to_host", value) {
                    outbound.to_host = to_host;
                }
            }
            "isolate" => outbound.isolate = isolates(report, value),
            "allow" => outbound.allow = entries(report, Section::Outbound, "allow", value),
            "deny" => outbound.deny = entries(report, Section::Outbound, "deny", value),
            _ => report.unknown_key(key, "in [outbound]"),
        }
    }
    outbound
}

/// The `[[outbound.isolate]]` tables.
fn isolates(report: &mut Report<'_>, value: &Value<'_>) -> Vec<Entry> {
    array_of_tables(report, "outbound", "isolate", value, isolate)
}

/// One isolate entry: only selectors; none selects every container.
fn isolate(report: &mut Report<'_>, table: &DeTable<'_>, span: &Range<usize>) -> Entry {
    let mut entry = Entry {
        ports: None,
        proto: ProtoMatch::Any,
        from: None,
        containers: Vec::new(),
        labels: BTreeMap::new(),
        line: report.position(span.start).0,
    };
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "containers" => {
                let globs = list(report, "containers", value, "every container", glob);
                entry.containers = globs.unwrap_or_default();
            }
            "labels" => entry.labels = labels(report, value),
            _ => report.unknown_key(key, "in [[outbound.isolate]]"),
        }
    }
    entry
}

#[cfg(test)]
mod tests {
    use crate::net::Family;
    use crate::policy::{Default, Sources, warnings};

    use super::super::tests::{errors, valid};

    #[test]
    fn a_missing_outbound_table_is_none_and_v1_files_keep_their_meaning() {
        let policy = valid("[inbound]\ndefault = \"allow\"\n[[inbound.deny]]\nports = [22]\n");
        assert_eq!(policy.outbound, None);
        assert!(warnings(&policy).is_empty());
    }

    #[test]
    fn the_outbound_table_with_every_key() {
        let text = r#"[inbound]

[outbound]
default = "deny"
to_host = "deny"

[[outbound.isolate]]
labels = { "com.docker.compose.project" = "shop" }

[[outbound.allow]]
containers = ["api-*"]
to = ["192.0.2.10", "2001:db8:5::/48"]
ports = [443, "8000-8100"]

[[outbound.allow]]
ports = [53]
proto = "any"

[[outbound.deny]]
to = ["169.254.169.254"]
proto = "any"
"#;
        let policy = valid(text);
        let outbound = policy.outbound.expect("outbound");
        assert_eq!(outbound.line, 3);
        assert_eq!(outbound.default, Default::Deny);
        assert_eq!(outbound.to_host, Default::Deny);
        assert_eq!(outbound.isolate.len(), 1);
        assert_eq!(outbound.isolate[0].line, 7);
        assert_eq!(outbound.allow.len(), 2);
        assert_eq!(outbound.allow[0].line, 10);
        let to = outbound.allow[0].sources(Family::V4);
        assert!(matches!(to, Some(Sources::Nets(n)) if n.len() == 1));
        assert_eq!(outbound.deny[0].sources(Family::V6), None, "v4 only");
        assert!(outbound.restricts());
    }

    #[test]
    fn an_empty_outbound_table_allows_everything_out() {
        let outbound = valid("[outbound]\n").outbound.expect("outbound");
        assert_eq!(outbound.default, Default::Allow);
        assert_eq!(outbound.to_host, Default::Allow);
        assert!(!outbound.restricts());
    }

    #[test]
    fn an_ipv4_mapped_destination_is_refused_as_a_destination_not_a_source() {
        assert_eq!(
            errors("[outbound]\n[[outbound.deny]]\nto = [\"::ffff:169.254.169.254\"]\n"),
            [
                "3:7: to: \"::ffff:169.254.169.254\" is an IPv4-mapped IPv6 network, which no \
                 IPv6 packet carries as its destination; write the IPv4 network \"169.254.169.254/32\""
            ]
        );
    }

    #[test]
    fn every_outbound_error_is_reported_at_its_place() {
        let text = r#"[outbound]
default = "block"
to_host = 1
egress = true

[[outbound.isolate]]
ports = [80]

[[outbound.allow]]
from = ["10.0.0.0/8"]
to = ["10.0.0.1/8"]
proto = "icmp"

[[outbound.deny]]
to = []
"#;
        assert_eq!(
            errors(text),
            [
                r#"2:11: default: "block" is not "deny" or "allow""#,
                r#"3:11: to_host: expected "deny" or "allow", found 1"#,
                r#"4:1: unknown key "egress" in [outbound]"#,
                r#"7:1: unknown key "ports" in [[outbound.isolate]]"#,
                r#"10:1: unknown key "from" in [[outbound.allow]]"#,
                r#"11:7: to: "10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8" (or "10.0.0.1/32" for one address)?"#,
                r#"12:9: proto: "icmp" is not "tcp", "udp" or "any""#,
                "15:6: to: empty list; omit the key to mean anywhere",
            ]
        );
        assert_eq!(
            errors("outbound = 1\n"),
            ["1:12: outbound: expected a table, found 1"]
        );
        assert_eq!(
            errors("[outbound]\nisolate = 1\n"),
            ["2:11: isolate: expected an array of tables ([[outbound.isolate]]), found 1"]
        );
    }

    #[test]
    fn check_warns_when_outbound_is_restricted_and_nothing_admits_dns() {
        let warned = |text: &str| {
            let policy = valid(text);
            warnings(&policy).iter().map(|w| w.line).collect::<Vec<_>>()
        };
        assert_eq!(warned("[inbound]\n\n[outbound]\ndefault = \"deny\"\n"), [3]);
        assert_eq!(
            warned("[outbound]\n[[outbound.isolate]]\ncontainers = [\"x\"]\n"),
            [1]
        );
        let dns = "[outbound]\ndefault = \"deny\"\n[[outbound.allow]]\nports = [\"50-60\"]\n";
        assert!(warned(dns).is_empty());
        let all = "[outbound]\ndefault = \"deny\"\n[[outbound.allow]]\nto = [\"10.0.0.1\"]\n";
        assert!(warned(all).is_empty(), "every port of 10.0.0.1 admits dns");
        assert!(warned("[outbound]\ndefault = \"allow\"\n").is_empty());
        assert!(warned("[outbound]\nto_host = \"deny\"\n").is_empty());
    }
}
