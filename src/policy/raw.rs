//! The raw side of `policy.toml`: walk the spanned TOML tree and validate it
//! into a [`Policy`], collecting a [`Diagnostic`] for every problem.
//!
//! Serde's `deny_unknown_fields` stops at the first error, and the file should
//! be fixable in one pass, so this walks `toml`'s spanned `DeTable` by hand:
//! every unknown key, wrong type and bad value is reported at its own line and
//! column (a key for unknown keys, the value or list element otherwise). A
//! TOML syntax error is reported alone, at its span. Nothing raw leaves this
//! module; the rest of dockfw only sees the validated [`Policy`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::Path;

use ipnet::IpNet;
use toml::Spanned;
use toml::de::{DeInteger, DeTable, DeValue};

use super::{
    Default, Diagnostic, Entry, Glob, MAX_ENTRY_NETWORKS, MAX_ENTRY_RULES, MAX_POLICY_NETWORKS,
    MAX_POLICY_RULES, Policy, PortRange, ProtoMatch,
};

mod east_west;
mod outbound;

type Value<'i> = Spanned<DeValue<'i>>;

/// Parse and validate policy text; `path` only labels the diagnostics.
pub(super) fn parse(text: &str, path: &Path) -> Result<Policy, Vec<Diagnostic>> {
    let mut report = Report {
        text,
        path,
        line_starts: line_starts(text),
        diagnostics: Vec::new(),
    };
    let policy = match DeTable::parse(text) {
        Ok(root) => document(&mut report, root.get_ref()),
        Err(err) => {
            let message = format!("invalid toml: {}", err.message());
            report.error(&err.span().unwrap_or(0..0), message);
            return Err(report.diagnostics);
        }
    };
    if report.diagnostics.is_empty() {
        policy_size(&mut report, &policy);
    }
    if report.diagnostics.is_empty() {
        Ok(policy)
    } else {
        // Tables iterate in key order; report in file order instead.
        report.diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(report.diagnostics)
    }
}

/// Refuse a policy whose entries together expand to more than
/// [`MAX_POLICY_RULES`], or list more than [`MAX_POLICY_NETWORKS`]
/// networks, naming the entry where the total goes over.
fn policy_size(report: &mut Report<'_>, policy: &Policy) {
    let (mut rules, mut networks) = (0, 0);
    let outbound = policy
        .outbound
        .iter()
        .flat_map(|o| o.deny.iter().chain(&o.allow));
    let east_west = (policy.east_west.iter())
        .flat_map(|e| e.deny.iter().chain(&e.allow))
        .map(|e| &e.to);
    let entries = policy.deny.iter().chain(&policy.allow).chain(outbound);
    for entry in entries.chain(east_west) {
        rules += entry.expansion();
        networks += entry.networks();
        let message = if rules > MAX_POLICY_RULES {
            format!(
                "the entries up to this one expand to {rules} rules, more than {MAX_POLICY_RULES} \
                 in all: merge entries, or list fewer port ranges"
            )
        } else if networks > MAX_POLICY_NETWORKS {
            format!(
                "the entries up to this one list {networks} networks, more than \
                 {MAX_POLICY_NETWORKS} in all: list fewer sources, or wider networks"
            )
        } else {
            continue;
        };
        let start = report.line_starts[entry.line.saturating_sub(1)];
        report.error(&(start..start), message);
        return;
    }
}

/// The diagnostics collected so far, and what is needed to place them.
struct Report<'a> {
    text: &'a str,
    path: &'a Path,
    /// Byte offset of the start of every line, so that placing a span is a
    /// binary search, not a scan of the file (which made checking a policy
    /// of many entries quadratic).
    line_starts: Vec<usize>,
    diagnostics: Vec<Diagnostic>,
}

/// Byte offsets where each line of `text` starts; the first is 0.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

impl Report<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.diagnostics.push(Diagnostic {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(line_start..offset)
            .unwrap_or_default()
            .chars()
            .count();
        (line, column + 1)
    }

    fn unknown_key(&mut self, key: &Spanned<std::borrow::Cow<'_, str>>, place: &str) {
        self.error(
            &key.span(),
            format!("unknown key {:?} {place}", key.get_ref()),
        );
    }

    /// Report that `key`'s value is not what was `expected`.
    fn wrong_type(&mut self, key: &str, expected: &str, value: &Value<'_>) {
        let found = describe(value.get_ref());
        self.error(
            &value.span(),
            format!("{key}: expected {expected}, found {found}"),
        );
    }
}

fn document(report: &mut Report<'_>, root: &DeTable<'_>) -> Policy {
    let mut policy = Policy {
        default: Default::Deny,
        allow: Vec::new(),
        deny: Vec::new(),
        outbound: None,
        east_west: None,
    };
    for (key, value) in root.iter() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("inbound", DeValue::Table(table)) => inbound(report, table, &mut policy),
            ("inbound", _) => report.wrong_type("inbound", "a table", value),
            ("outbound", DeValue::Table(table)) => {
                let line = report.position(key.span().start).0;
                policy.outbound = Some(outbound::table(report, table, line));
            }
            ("outbound", _) => report.wrong_type("outbound", "a table", value),
            ("east_west", DeValue::Table(table)) => {
                let line = report.position(key.span().start).0;
                policy.east_west = Some(east_west::table(report, table, line));
            }
            ("east_west", _) => report.wrong_type("east_west", "a table", value),
            _ => report.unknown_key(key, "at top level"),
        }
    }
    policy
}

fn inbound(report: &mut Report<'_>, table: &DeTable<'_>, policy: &mut Policy) {
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "default" => {
                if let Some(default) = verdict(report, "default", value) {
                    policy.default = default;
                }
            }
            "allow" => policy.allow = entries(report, Section::Inbound, "allow", value),
            "deny" => policy.deny = entries(report, Section::Inbound, "deny", value),
            _ => report.unknown_key(key, "in [inbound]"),
        }
    }
}

/// A `"deny"` or `"allow"` value of `key` (`default`, `to_host`).
fn verdict(report: &mut Report<'_>, key: &str, value: &Value<'_>) -> Option<Default> {
    match value.get_ref() {
        DeValue::String(s) if s == "deny" => Some(Default::Deny),
        DeValue::String(s) if s == "allow" => Some(Default::Allow),
        DeValue::String(s) => {
            let message = format!("{key}: {s:?} is not \"deny\" or \"allow\"");
            report.error(&value.span(), message);
            None
        }
        _ => {
            report.wrong_type(key, "\"deny\" or \"allow\"", value);
            None
        }
    }
}

/// Which table an entry is in: `[inbound]` entries list sources (`from`),
/// `[outbound]` entries destinations (`to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Inbound,
    Outbound,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Inbound => "inbound",
            Section::Outbound => "outbound",
        }
    }

    /// The key of an entry's networks.
    fn networks_key(self) -> &'static str {
        match self {
            Section::Inbound => "from",
            Section::Outbound => "to",
        }
    }
}

/// The `[[inbound.allow]]` or `[[inbound.deny]]` tables (`kind` says which),
/// or those of `[outbound]`.
fn entries(report: &mut Report<'_>, section: Section, kind: &str, value: &Value<'_>) -> Vec<Entry> {
    array_of_tables(
        report,
        section.name(),
        kind,
        value,
        |report, table, span| entry(report, section, kind, table, span),
    )
}

/// The tables `[[table_name.kind]]` of `value`, each read by `read` with its
/// header's span (or its inline table's); anything else is reported where
/// it stands, and skipped.
fn array_of_tables<T>(
    report: &mut Report<'_>,
    table_name: &str,
    kind: &str,
    value: &Value<'_>,
    mut read: impl FnMut(&mut Report<'_>, &DeTable<'_>, &Range<usize>) -> T,
) -> Vec<T> {
    let DeValue::Array(items) = value.get_ref() else {
        let expected = format!("an array of tables ([[{table_name}.{kind}]])");
        report.wrong_type(kind, &expected, value);
        return Vec::new();
    };
    let mut read_tables = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::Table(table) => read_tables.push(read(report, table, &item.span())),
            _ => report.wrong_type(kind, "a table", item),
        }
    }
    read_tables
}

/// One entry; `span` is its header (or its inline table).
fn entry(
    report: &mut Report<'_>,
    section: Section,
    kind: &str,
    table: &DeTable<'_>,
    span: &Range<usize>,
) -> Entry {
    let mut entry = Entry {
        ports: None,
        proto: ProtoMatch::Tcp,
        from: None,
        containers: Vec::new(),
        labels: BTreeMap::new(),
        line: report.position(span.start).0,
    };
    for (key, value) in table.iter() {
        match key.get_ref().as_ref() {
            "ports" => entry.ports = list(report, "ports", value, "every port", port_range),
            "proto" => {
                if let Some(proto) = proto(report, value) {
                    entry.proto = proto;
                }
            }
            name if name == section.networks_key() => {
                let item = match section {
                    Section::Inbound => source_network,
                    Section::Outbound => destination_network,
                };
                entry.from = list(report, name, value, "anywhere", item);
            }
            "containers" => {
                let globs = list(report, "containers", value, "every container", glob);
                entry.containers = globs.unwrap_or_default();
            }
            "labels" => entry.labels = labels(report, value),
            _ => report.unknown_key(key, &format!("in [[{}.{kind}]]", section.name())),
        }
    }
    let rules = entry.expansion();
    if rules > MAX_ENTRY_RULES {
        report.error(
            span,
            format!(
                "{kind} entry expands to {rules} rules (protocols x port ranges, times the \
                 networks of a short from list), more than {MAX_ENTRY_RULES}: split it, or list \
                 fewer port ranges"
            ),
        );
    }
    let networks = entry.networks();
    if networks > MAX_ENTRY_NETWORKS {
        report.error(
            span,
            format!(
                "{kind} entry lists {networks} networks of one family, more than \
                 {MAX_ENTRY_NETWORKS} (what one set holds): split it"
            ),
        );
    }
    entry
}

fn proto(report: &mut Report<'_>, value: &Value<'_>) -> Option<ProtoMatch> {
    let expected = "\"tcp\", \"udp\" or \"any\"";
    match value.get_ref() {
        DeValue::String(s) if s == "tcp" => Some(ProtoMatch::Tcp),
        DeValue::String(s) if s == "udp" => Some(ProtoMatch::Udp),
        DeValue::String(s) if s == "any" => Some(ProtoMatch::Any),
        DeValue::String(s) => {
            report.error(&value.span(), format!("proto: {s:?} is not {expected}"));
            None
        }
        _ => {
            report.wrong_type("proto", expected, value);
            None
        }
    }
}

/// A non-empty list under `key`, each element checked by `item`; `omitted`
/// says what leaving the key out means. `None` if the key is unusable.
fn list<T>(
    report: &mut Report<'_>,
    key: &str,
    value: &Value<'_>,
    omitted: &str,
    item: fn(&DeValue<'_>) -> Result<T, String>,
) -> Option<Vec<T>> {
    let DeValue::Array(elements) = value.get_ref() else {
        report.wrong_type(key, "a list", value);
        return None;
    };
    if elements.is_empty() {
        let message = format!("{key}: empty list; omit the key to mean {omitted}");
        report.error(&value.span(), message);
        return None;
    }
    let mut items = Vec::new();
    for element in elements.iter() {
        match item(element.get_ref()) {
            Ok(t) => items.push(t),
            Err(why) => report.error(&element.span(), format!("{key}: {why}")),
        }
    }
    Some(items)
}

/// A `ports` element: an integer port or a `"first-last"` range string.
fn port_range(value: &DeValue<'_>) -> Result<PortRange, String> {
    match value {
        DeValue::Integer(int) => {
            let port = integer_port(int)?;
            Ok(PortRange {
                first: port,
                last: port,
            })
        }
        DeValue::String(s) => range_string(s),
        other => Err(format!(
            "{} is not a port (expected an integer or a \"first-last\" range string)",
            describe(other)
        )),
    }
}

fn integer_port(int: &DeInteger<'_>) -> Result<u16, String> {
    i64::from_str_radix(int.as_str(), int.radix())
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&port| port != 0)
        .ok_or_else(|| format!("port {int} is out of range 1-65535"))
}

/// A `"first-last"` range, e.g. `"8000-8100"`.
fn range_string(text: &str) -> Result<PortRange, String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((first, last)) = text.split_once('-').filter(|(f, l)| digits(f) && digits(l)) else {
        if digits(text) {
            return Err(format!(
                "{text:?} is not a range; write a single port as the integer {text}"
            ));
        }
        return Err(format!(
            "{text:?} is not a port range (expected \"first-last\", e.g. \"8000-8100\")"
        ));
    };
    let port = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("port {s} in {text:?} is out of range 1-65535"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first > last {
        return Err(format!(
            "range {text:?} is reversed (the first port must not exceed the last)"
        ));
    }
    Ok(PortRange { first, last })
}

/// A `from` element (an inbound entry's sources).
fn source_network(value: &DeValue<'_>) -> Result<IpNet, String> {
    network(value, "source")
}

/// A `to` element (an outbound entry's destinations).
fn destination_network(value: &DeValue<'_>) -> Result<IpNet, String> {
    network(value, "destination")
}

/// A network the entry matches as `role` (`source`, `destination`): a
/// CIDR network, or a plain address meaning /32 or /128.
fn network(value: &DeValue<'_>, role: &str) -> Result<IpNet, String> {
    let DeValue::String(text) = value else {
        return Err(format!("expected a string, found {}", describe(value)));
    };
    if let Ok(addr) = text.parse::<IpAddr>() {
        let net = IpNet::from(addr);
        return ipv4_in_ipv6(text, &net, role).map_or(Ok(net), Err);
    }
    let Ok(net) = text.parse::<IpNet>() else {
        return Err(format!(
            "{text:?} is not a network ({})",
            why_not_network(text)
        ));
    };
    let network = net.trunc();
    if network != net {
        return Err(format!(
            "{text:?} has host bits set; did you mean {:?} (or {:?} for one address)?",
            network.to_string(),
            IpNet::from(net.addr()).to_string(),
        ));
    }
    ipv4_in_ipv6(text, &net, role).map_or(Ok(net), Err)
}

/// The error for an IPv6 network that spells IPv4 addresses: IPv4-mapped
/// (inside `::ffff:0:0/96`) or IPv4-compatible (inside `::/96`, apart from
/// `::` and `::1`). No IPv6 packet from a neighbour carries such a source
/// (an IPv4 client is matched by the IPv4 rules), so the entry would
/// silently never match: the IPv4 form is what was meant. Networks wider
/// than /96 (`::/0`) only contain such addresses and are left alone.
fn ipv4_in_ipv6(text: &str, net: &IpNet, role: &str) -> Option<String> {
    let IpNet::V6(net) = net else {
        return None;
    };
    let prefix = net.prefix_len().checked_sub(96)?;
    let bits = u128::from(net.network());
    let (kind, v4) = match bits >> 32 {
        0xffff => ("IPv4-mapped", bits as u32),
        0 if bits > 1 || prefix < 32 => ("IPv4-compatible", bits as u32),
        _ => return None,
    };
    let meant = ipnet::Ipv4Net::new(Ipv4Addr::from(v4), prefix).ok()?;
    Some(format!(
        "{text:?} is an {kind} IPv6 network, which no IPv6 packet carries as its {role}; \
         write the IPv4 network {:?}",
        meant.to_string()
    ))
}

/// Why `text`, which does not parse as a network, is wrong.
fn why_not_network(text: &str) -> String {
    let Some((addr, prefix)) = text.split_once('/') else {
        return "expected an address or a cidr like 192.0.2.0/24".to_owned();
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return format!("{addr:?} is not an ip address");
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(len) if len > max => format!("prefix length {len} exceeds {max}"),
        _ => format!("prefix length {prefix:?} is not a number 0-{max}"),
    }
}

/// A `containers` element.
fn glob(value: &DeValue<'_>) -> Result<Glob, String> {
    let DeValue::String(pattern) = value else {
        return Err(format!("expected a string, found {}", describe(value)));
    };
    Glob::new(pattern).map_err(|err| format!("{pattern:?} is not a valid glob: {err}"))
}

fn labels(report: &mut Report<'_>, value: &Value<'_>) -> BTreeMap<String, String> {
    labels_under(report, "labels", value)
}

/// A table of label values under `key` (`labels`, `from_labels`).
fn labels_under(report: &mut Report<'_>, key: &str, value: &Value<'_>) -> BTreeMap<String, String> {
    let DeValue::Table(table) = value.get_ref() else {
        report.wrong_type(key, "a table of strings", value);
        return BTreeMap::new();
    };
    if table.is_empty() {
        report.error(
            &value.span(),
            format!("{key}: empty table; omit the key to mean every container"),
        );
    }
    let mut labels = BTreeMap::new();
    for (label, value) in table.iter() {
        let label = label.get_ref();
        match value.get_ref() {
            DeValue::String(s) => {
                labels.insert(label.to_string(), s.to_string());
            }
            other => {
                let found = describe(other);
                let mut message =
                    format!("{key}: value of {label:?} must be a string, found {found}");
                if let DeValue::Table(_) = other {
                    message.push_str(" (quote a label key that contains dots)");
                }
                report.error(&value.span(), message);
            }
        }
    }
    labels
}

/// A short rendering of a value for messages: scalars as written, else a type.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(int) => int.to_string(),
        DeValue::Float(float) => float.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(dt) => dt.to_string(),
        DeValue::Array(_) => "an array".to_owned(),
        DeValue::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use ipnet::IpNet;

    use super::super::{Default, Entry, Glob, Policy, PolicyError, PortRange, ProtoMatch};

    // Shared with the tests of the table modules (raw::outbound, raw::east_west).
    pub(super) fn parse(text: &str) -> Result<Policy, PolicyError> {
        crate::policy::parse_str(text, Path::new("/etc/dockfw/policy.toml"))
    }

    pub(super) fn valid(text: &str) -> Policy {
        match parse(text) {
            Ok(policy) => policy,
            Err(err) => panic!("policy should be valid:\n{err}"),
        }
    }

    /// Every diagnostic as `line:column: message`.
    pub(super) fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(policy) => panic!("policy should be invalid, got {policy:?}"),
            Err(PolicyError::Invalid(diagnostics)) => diagnostics
                .iter()
                .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
                .collect(),
            Err(err) => panic!("unexpected error {err}"),
        }
    }

    /// The only diagnostic of a file, as in `errors`.
    fn error(text: &str) -> String {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.concat()
    }

    /// The only diagnostic of an allow entry whose body (line 2) is `body`.
    fn entry_error(body: &str) -> String {
        error(&format!("[[inbound.allow]]\n{body}\n"))
    }

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("test network")
    }

    fn glob(pattern: &str) -> Glob {
        Glob::new(pattern).expect("test glob")
    }

    fn any_entry(line: usize) -> Entry {
        Entry {
            ports: None,
            proto: ProtoMatch::Tcp,
            from: None,
            containers: Vec::new(),
            labels: BTreeMap::new(),
            line,
        }
    }

    #[test]
    fn example_config_parses() {
        let policy = valid(include_str!("../../config/policy.toml"));
        assert_eq!(policy.default, Default::Deny);
        assert_eq!(policy.allow.len(), 1);
        assert_eq!(
            policy.allow[0].ports,
            Some(vec![range(80, 80), range(443, 443)])
        );
        assert_eq!(policy.allow[0].proto, ProtoMatch::Tcp);
        assert!(policy.deny.is_empty());
    }

    #[test]
    fn example_config_examples_parse_when_uncommented() {
        let text: String = include_str!("../../config/policy.toml")
            .lines()
            .filter_map(|line| line.strip_prefix("# "))
            .filter(|line| {
                line.starts_with("[[")
                    || line.starts_with(|c: char| c.is_ascii_lowercase()) && line.contains(" = ")
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let policy = valid(&text);
        assert_eq!((policy.allow.len(), policy.deny.len()), (2, 1), "{text}");
    }

    #[test]
    fn missing_inbound_means_default_deny_and_no_entries() {
        let want = Policy {
            default: Default::Deny,
            allow: Vec::new(),
            deny: Vec::new(),
            outbound: None,
            east_west: None,
        };
        assert_eq!(valid(""), want);
        assert_eq!(valid("# nothing here\n"), want);
        assert_eq!(valid("[inbound]\n"), want);
    }

    #[test]
    fn default_allow_and_deny() {
        assert_eq!(
            valid("[inbound]\ndefault = \"allow\"\n").default,
            Default::Allow
        );
        assert_eq!(
            valid("[inbound]\ndefault = \"deny\"\n").default,
            Default::Deny
        );
    }

    #[test]
    fn omitted_entry_keys_mean_everything() {
        let policy = valid("[inbound]\n\n[[inbound.deny]]\n");
        assert_eq!(policy.deny, vec![any_entry(3)]);
        assert!(!policy.deny[0].has_selector());
    }

    #[test]
    fn full_policy_with_ranges_families_and_selectors() {
        let text = r#"[inbound]
default = "allow"

[[inbound.allow]]
ports = [80, "8000-8100", 0x1F90, "22-22"]
proto = "udp"

[[inbound.allow]]
from = ["192.0.2.16/28", "2001:db8:2::/64", "198.51.100.7", "2001:db8::1"]
containers = ["db", "pg-*"]
labels = { "com.docker.compose.project" = "shop", tier = "db" }
proto = "any"

[[inbound.deny]]
from = ["203.0.113.0/24"]
"#;
        let labels = [("com.docker.compose.project", "shop"), ("tier", "db")];
        let want = Policy {
            default: Default::Allow,
            allow: vec![
                Entry {
                    ports: Some(vec![
                        range(80, 80),
                        range(8000, 8100),
                        range(8080, 8080),
                        range(22, 22),
                    ]),
                    proto: ProtoMatch::Udp,
                    ..any_entry(4)
                },
                Entry {
                    proto: ProtoMatch::Any,
                    from: Some(
                        [
                            "192.0.2.16/28",
                            "2001:db8:2::/64",
                            "198.51.100.7/32",
                            "2001:db8::1/128",
                        ]
                        .map(net)
                        .to_vec(),
                    ),
                    containers: vec![glob("db"), glob("pg-*")],
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..any_entry(8)
                },
            ],
            deny: vec![Entry {
                from: Some(vec![net("203.0.113.0/24")]),
                ..any_entry(14)
            }],
            outbound: None,
            east_west: None,
        };
        assert_eq!(valid(text), want);
    }

    #[test]
    fn inline_entries_take_the_line_of_their_table() {
        let policy = valid("\ninbound = { deny = [\n  { from = [\"203.0.113.0/24\"] },\n] }\n");
        assert_eq!(policy.deny[0].line, 3);
        assert_eq!(policy.deny[0].from, Some(vec![net("203.0.113.0/24")]));
    }

    #[test]
    fn toml_syntax_error_is_one_diagnostic_at_its_span() {
        let err = error("[inbound]\ndefault = \n");
        assert!(err.starts_with("2:11: invalid toml: "), "{err}");
        let err = error("[inbound]\ndefault = \"deny\"\ndefault = \"allow\"\n");
        assert_eq!(err, "3:1: invalid toml: duplicate key");
    }

    #[test]
    fn unknown_keys_are_reported_everywhere() {
        assert_eq!(
            error("version = 1\n"),
            r#"1:1: unknown key "version" at top level"#
        );
        assert_eq!(
            error("[inbound]\ndefualt = \"deny\"\n"),
            r#"2:1: unknown key "defualt" in [inbound]"#
        );
        assert_eq!(
            entry_error("prot = \"tcp\""),
            r#"2:1: unknown key "prot" in [[inbound.allow]]"#
        );
        assert_eq!(
            error("[[inbound.deny]]\n  source = [\"10.0.0.0/8\"]\n"),
            r#"2:3: unknown key "source" in [[inbound.deny]]"#
        );
        assert_eq!(
            error("inbound = { allow = [{ port = 80 }] }\n"),
            r#"1:24: unknown key "port" in [[inbound.allow]]"#
        );
    }

    #[test]
    fn wrong_types_name_the_key_and_the_value() {
        assert_eq!(
            error("inbound = \"deny\"\n"),
            r#"1:11: inbound: expected a table, found "deny""#
        );
        assert_eq!(
            error("[inbound]\ndefault = false\n"),
            r#"2:11: default: expected "deny" or "allow", found false"#
        );
        assert_eq!(
            error("[inbound.allow]\nports = [80]\n"),
            "1:1: allow: expected an array of tables ([[inbound.allow]]), found a table"
        );
        assert_eq!(
            error("inbound = { deny = [1] }\n"),
            "1:21: deny: expected a table, found 1"
        );
        assert_eq!(
            entry_error("ports = 80"),
            "2:9: ports: expected a list, found 80"
        );
        assert_eq!(
            entry_error("proto = 6"),
            r#"2:9: proto: expected "tcp", "udp" or "any", found 6"#
        );
        assert_eq!(
            entry_error("from = \"10.0.0.0/8\""),
            r#"2:8: from: expected a list, found "10.0.0.0/8""#
        );
        assert_eq!(
            entry_error("from = [10]"),
            "2:9: from: expected a string, found 10"
        );
        assert_eq!(
            entry_error("containers = [\"web\", 1]"),
            "2:22: containers: expected a string, found 1"
        );
        assert_eq!(
            entry_error("labels = [\"app=web\"]"),
            "2:10: labels: expected a table of strings, found an array"
        );
    }

    #[test]
    fn ports_out_of_range_as_integers() {
        assert_eq!(
            entry_error("ports = [0]"),
            "2:10: ports: port 0 is out of range 1-65535"
        );
        assert_eq!(
            entry_error("ports = [80, 65536]"),
            "2:14: ports: port 65536 is out of range 1-65535"
        );
        assert_eq!(
            entry_error("ports = [-22]"),
            "2:10: ports: port -22 is out of range 1-65535"
        );
        assert_eq!(
            entry_error("ports = [99999999999999999999]"),
            "2:10: ports: port 99999999999999999999 is out of range 1-65535"
        );
    }

    #[test]
    fn ports_that_are_not_integers_or_ranges() {
        let why = r#"is not a port (expected an integer or a "first-last" range string)"#;
        assert_eq!(
            entry_error("ports = [80.5]"),
            format!("2:10: ports: 80.5 {why}")
        );
        assert_eq!(
            entry_error("ports = [true]"),
            format!("2:10: ports: true {why}")
        );
        assert_eq!(
            entry_error("ports = [[80]]"),
            format!("2:10: ports: an array {why}")
        );
    }

    #[test]
    fn port_ranges_out_of_range_or_reversed() {
        assert_eq!(
            entry_error("ports = [\"0-10\"]"),
            r#"2:10: ports: port 0 in "0-10" is out of range 1-65535"#
        );
        assert_eq!(
            entry_error("ports = [\"8000-70000\"]"),
            r#"2:10: ports: port 70000 in "8000-70000" is out of range 1-65535"#
        );
        assert_eq!(
            entry_error("ports = [\"8100-8000\"]"),
            r#"2:10: ports: range "8100-8000" is reversed (the first port must not exceed the last)"#
        );
    }

    #[test]
    fn malformed_port_range_strings() {
        for bad in ["80-", "-80", "a-b", "80 - 90", "1-2-3", "", "http"] {
            assert_eq!(
                entry_error(&format!("ports = [{bad:?}]")),
                format!(
                    r#"2:10: ports: {bad:?} is not a port range (expected "first-last", e.g. "8000-8100")"#
                )
            );
        }
        assert_eq!(
            entry_error("ports = [\"80\"]"),
            r#"2:10: ports: "80" is not a range; write a single port as the integer 80"#
        );
    }

    #[test]
    fn bad_networks() {
        let cases = [
            (
                "10.0.0.0/33",
                r#""10.0.0.0/33" is not a network (prefix length 33 exceeds 32)"#,
            ),
            (
                "2001:db8::/129",
                r#""2001:db8::/129" is not a network (prefix length 129 exceeds 128)"#,
            ),
            (
                "10.0.0.0/x",
                r#""10.0.0.0/x" is not a network (prefix length "x" is not a number 0-32)"#,
            ),
            (
                "example.com/24",
                r#""example.com/24" is not a network ("example.com" is not an ip address)"#,
            ),
            (
                "10.0.0",
                r#""10.0.0" is not a network (expected an address or a cidr like 192.0.2.0/24)"#,
            ),
        ];
        for (bad, want) in cases {
            assert_eq!(
                entry_error(&format!("from = [{bad:?}]")),
                format!("2:9: from: {want}")
            );
        }
    }

    #[test]
    fn networks_with_host_bits_set_name_the_network_meant() {
        assert_eq!(
            entry_error("from = [\"10.0.0.1/8\"]"),
            r#"2:9: from: "10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8" (or "10.0.0.1/32" for one address)?"#
        );
        assert_eq!(
            entry_error("from = [\"2001:db8::1/64\"]"),
            r#"2:9: from: "2001:db8::1/64" has host bits set; did you mean "2001:db8::/64" (or "2001:db8::1/128" for one address)?"#
        );
    }

    #[test]
    fn ipv6_networks_spelling_ipv4_are_refused_with_the_ipv4_form() {
        let refused = [
            ("::ffff:203.0.113.0/120", "IPv4-mapped", "203.0.113.0/24"),
            ("::ffff:198.51.100.7", "IPv4-mapped", "198.51.100.7/32"),
            ("::ffff:0:0/96", "IPv4-mapped", "0.0.0.0/0"),
            ("::203.0.113.0/120", "IPv4-compatible", "203.0.113.0/24"),
            ("::198.51.100.7", "IPv4-compatible", "198.51.100.7/32"),
            ("::/96", "IPv4-compatible", "0.0.0.0/0"),
        ];
        for (bad, kind, meant) in refused {
            assert_eq!(
                entry_error(&format!("from = [{bad:?}]")),
                format!(
                    "2:9: from: {bad:?} is an {kind} IPv6 network, which no IPv6 packet \
                     carries as its source; write the IPv4 network {meant:?}"
                )
            );
        }
        for fine in [
            "::/0",
            "::/64",
            "::1",
            "::",
            "::1/128",
            "2001:db8::/64",
            "::/95",
        ] {
            let text = format!("[inbound]\n[[inbound.allow]]\nfrom = [{fine:?}]\n");
            assert!(
                super::super::parse_str(&text, std::path::Path::new("p.toml")).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn bad_globs() {
        assert_eq!(
            entry_error("containers = [\"web/1\"]"),
            r#"2:15: containers: "web/1" is not a valid glob: '/' cannot occur in a container name"#
        );
        assert_eq!(
            entry_error("containers = [\"db\", \"pg-[0-9\"]"),
            r#"2:21: containers: "pg-[0-9" is not a valid glob: '[' at character 4 is never closed"#
        );
        assert_eq!(
            entry_error("containers = [\"\"]"),
            r#"2:15: containers: "" is not a valid glob: empty pattern"#
        );
    }

    #[test]
    fn unknown_proto_and_default() {
        assert_eq!(
            entry_error("proto = \"icmp\""),
            r#"2:9: proto: "icmp" is not "tcp", "udp" or "any""#
        );
        assert_eq!(
            entry_error("proto = \"TCP\""),
            r#"2:9: proto: "TCP" is not "tcp", "udp" or "any""#
        );
        assert_eq!(
            error("[inbound]\ndefault = \"reject\"\n"),
            r#"2:11: default: "reject" is not "deny" or "allow""#
        );
    }

    #[test]
    fn empty_lists_say_to_omit_the_key() {
        assert_eq!(
            entry_error("ports = []"),
            "2:9: ports: empty list; omit the key to mean every port"
        );
        assert_eq!(
            entry_error("from = []"),
            "2:8: from: empty list; omit the key to mean anywhere"
        );
        assert_eq!(
            entry_error("containers = []"),
            "2:14: containers: empty list; omit the key to mean every container"
        );
        assert_eq!(
            entry_error("labels = {}"),
            "2:10: labels: empty table; omit the key to mean every container"
        );
    }

    #[test]
    fn label_values_must_be_strings() {
        assert_eq!(
            entry_error("labels = { app = 1, tier = \"web\" }"),
            r#"2:18: labels: value of "app" must be a string, found 1"#
        );
        assert_eq!(
            entry_error("labels = { com.example.app = \"web\" }"),
            r#"2:12: labels: value of "com" must be a string, found a table (quote a label key that contains dots)"#
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            entry_error("labels = { \"é\" = 1 }"),
            r#"2:18: labels: value of "é" must be a string, found 1"#
        );
    }

    #[test]
    fn every_error_in_a_file_is_reported_in_file_order() {
        let text = r#"version = 1
[inbound]
default = "maybe"

[[inbound.allow]]
ports = [0, "9-8"]
prot = "tcp"

[[inbound.allow]]
ports = [443]

[[inbound.deny]]
from = ["10.0.0.1/8", "bogus"]
containers = []
"#;
        let want = [
            r#"1:1: unknown key "version" at top level"#,
            r#"3:11: default: "maybe" is not "deny" or "allow""#,
            "6:10: ports: port 0 is out of range 1-65535",
            r#"6:13: ports: range "9-8" is reversed (the first port must not exceed the last)"#,
            r#"7:1: unknown key "prot" in [[inbound.allow]]"#,
            r#"13:9: from: "10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8" (or "10.0.0.1/32" for one address)?"#,
            r#"13:23: from: "bogus" is not a network (expected an address or a cidr like 192.0.2.0/24)"#,
            "14:14: containers: empty list; omit the key to mean every container",
        ];
        assert_eq!(errors(text), want);
    }

    /// `n` distinct IPv4 hosts, quoted, comma-separated.
    fn hosts(n: usize) -> String {
        let from: Vec<String> = (0..n)
            .map(|i| format!("\"10.{}.{}.{}\"", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        from.join(", ")
    }

    #[test]
    fn sources_in_a_set_do_not_multiply_an_entrys_rules() {
        let ports: Vec<String> = (0..300).map(|p| (1000 + 7 * p).to_string()).collect();
        let text = format!(
            "[inbound]\n\n[[inbound.allow]]\nports = [{}]\nfrom = [{}]\nproto = \"any\"\n",
            ports.join(", "),
            hosts(300)
        );
        let policy = valid(&text);
        assert_eq!(policy.allow[0].expansion(), 900, "3 protocols x 300 ranges");
        let small =
            valid("[[inbound.allow]]\nports = [1, 2]\nfrom = [\"10.0.0.1\", \"10.0.0.2\"]\n");
        assert_eq!(
            small.allow[0].expansion(),
            4,
            "a short list is a rule per network"
        );
    }

    #[test]
    fn an_entry_that_expands_too_far_is_refused_by_name() {
        let ports: Vec<String> = (1..=700).map(|p| (2 * p).to_string()).collect();
        let text = format!(
            "[inbound]\n\n[[inbound.allow]]\nports = [{}]\nfrom = [{}]\nproto = \"any\"\n",
            ports.join(", "),
            hosts(300)
        );
        assert_eq!(
            error(&text),
            "3:1: allow entry expands to 2100 rules (protocols x port ranges, times the \
             networks of a short from list), more than 2048: split it, or list fewer port ranges"
        );
    }

    #[test]
    fn an_entry_listing_more_networks_than_a_set_holds_is_refused_by_name() {
        let text = format!("[[inbound.deny]]\nfrom = [{}]\n", hosts(65_537));
        assert_eq!(
            error(&text),
            "1:1: deny entry lists 65537 networks of one family, more than 65536 \
             (what one set holds): split it"
        );
        let entry = format!("[[inbound.deny]]\nfrom = [{}]\n", hosts(40_000));
        let err = error(&entry.repeat(2));
        assert!(
            err.starts_with("3:1: the entries up to this one list 80000 networks, more than 65536"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_that_expands_too_far_in_all_names_the_entry_that_tips_it() {
        let entry = "[[inbound.deny]]\nports = [1000]\nfrom = [\"10.0.0.0/8\"]\n";
        let text = entry.repeat(20_001);
        let err = error(&text);
        assert!(
            err.starts_with("60001:1: the entries up to this one expand to 20001 rules"),
            "{err}"
        );
    }

    #[test]
    fn many_small_entries_are_placed_on_their_own_lines() {
        let entry = "[[inbound.deny]]\nports = [1000]\nfrom = [\"10.0.0.0/8\"]\n";
        let text = format!("{}[[inbound.deny]]\nports = [0]\n", entry.repeat(5_000));
        assert_eq!(
            error(&text),
            "15002:10: ports: port 0 is out of range 1-65535"
        );
        let policy = valid(&entry.repeat(5_000));
        assert_eq!(policy.deny[4_999].line, 14_998);
    }

    #[test]
    fn a_zero_length_network_means_anywhere_in_its_family_only() {
        use crate::net::Family;
        use crate::policy::Sources;
        let policy = valid("[[inbound.allow]]\nfrom = [\"0.0.0.0/0\", \"10.0.0.0/8\"]\n");
        assert_eq!(policy.allow[0].sources(Family::V4), Some(Sources::Anywhere));
        assert_eq!(policy.allow[0].sources(Family::V6), None);
        let policy = valid("[[inbound.allow]]\nfrom = [\"::/0\"]\n");
        assert_eq!(policy.allow[0].sources(Family::V6), Some(Sources::Anywhere));
        assert_eq!(policy.allow[0].sources(Family::V4), None);
    }

    #[test]
    fn diagnostics_carry_the_path() {
        let Err(PolicyError::Invalid(diagnostics)) = parse("x = 1\n") else {
            panic!("policy should be invalid");
        };
        assert_eq!(
            diagnostics[0].to_string(),
            r#"/etc/dockfw/policy.toml:1:1: unknown key "x" at top level"#
        );
    }
}
