//! The command line's contracts that need no root and no engine, run against the built
//! binary: `dockfw check`'s exit codes and messages, `status` and `reload` with no daemon,
//! usage errors, `--version`, and the shape of `dockfw plan --json` on the golden cases.
//!
//! (What needs a namespace, an engine or a daemon is in `tests/e2e.sh`.)

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dockfw::firewall::Backend as _;
use dockfw::firewall::iptables::Iptables;
use dockfw::firewall::nftables::Nftables;
use dockfw::inventory::Inventory;
use dockfw::plan::plan;
use dockfw::policy::{Policy, parse as parse_policy};

#[path = "support/golden_cases.rs"]
mod golden_cases;

use golden_cases::{golden_cases, load};

const DOCKFW: &str = env!("CARGO_BIN_EXE_dockfw");

/// A directory of this test's own under the system's temporary directory, removed
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("dockfw-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run dockfw with `args` (and `stdin`), with none of the environment variables that
/// would give its options other defaults.
fn dockfw(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(DOCKFW)
        .args(args)
        .env_remove("DOCKFW_STATE_DIR")
        .env_remove("DOCKFW_BACKEND")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dockfw runs");
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("dockfw ends")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Two errors, on lines 5 and 6: a port out of range and a network with host bits.
const BROKEN: &str = "[inbound]\ndefault = \"deny\"\n\n[[inbound.allow]]\n\
    ports = [80, 99999]\nfrom = [\"10.0.0.1/8\"]\n";

#[test]
fn check_accepts_a_valid_policy_with_exit_0_and_a_summary() {
    let scratch = Scratch::new("check-ok");
    let policy = scratch.write(
        "policy.toml",
        "[inbound]\ndefault = \"deny\"\n\n[[inbound.allow]]\nports = [80, 443]\n",
    );
    let state = scratch.0.join("state");
    let out = dockfw(
        &["check", "--state-dir", path_str(&state), path_str(&policy)],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: ok (default deny, 1 allow and 0 deny entries)\n",
            policy.display()
        )
    );
}

#[test]
fn check_of_a_broken_policy_exits_1_with_every_error_at_its_line_and_column_and_deny_all() {
    let scratch = Scratch::new("check-broken");
    let policy = scratch.write("policy.toml", BROKEN);
    let state = scratch.0.join("state");
    for args in [
        vec!["check", "--state-dir", path_str(&state), path_str(&policy)],
        vec![
            "check",
            "--state-dir",
            path_str(&state),
            "--config",
            path_str(&policy),
        ],
    ] {
        let out = dockfw(&args, "");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let p = policy.display();
        assert!(
            err.contains(&format!("{p}:5:14: ports: port 99999 is out of range")),
            "{err}"
        );
        assert!(
            err.contains(&format!("{p}:6:9: from: \"10.0.0.1/8\" has host bits set")),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "dockfw: {p} is INVALID; the daemon would be enforcing deny all"
            )),
            "{err}"
        );
    }
}

#[test]
fn check_of_a_broken_policy_names_the_last_good_policy_when_one_is_kept() {
    let scratch = Scratch::new("check-last-good");
    let policy = scratch.write("policy.toml", BROKEN);
    let state = scratch.0.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let kept = state.join("last-good-policy.toml");
    std::fs::write(&kept, "[inbound]\ndefault = \"deny\"\n").expect("keep a policy");
    let out = dockfw(
        &["check", "--state-dir", path_str(&state), path_str(&policy)],
        "",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "is INVALID; the daemon would be enforcing the last good policy, kept in {}",
            kept.display()
        )),
        "{err}"
    );
}

#[test]
fn check_warns_when_outbound_is_restricted_and_nothing_admits_dns_and_still_exits_0() {
    let scratch = Scratch::new("check-dns");
    let state = scratch.0.join("state");
    let policy = "[inbound]\n\n[outbound]\ndefault = \"deny\"\nto_host = \"deny\"\n";
    let out = dockfw(&["check", "--state-dir", path_str(&state), "-"], policy);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with("<stdin>:3:1: warning: outbound connections are restricted"),
        "{err}"
    );
    assert_eq!(
        text(&out.stdout),
        "<stdin>: ok (default deny, 0 allow and 0 deny entries; outbound default deny, \
         to_host deny, 0 isolate, 0 allow and 0 deny entries)\n"
    );
    let dns = format!("{policy}[[outbound.allow]]\nports = [53]\nproto = \"any\"\n");
    let out = dockfw(&["check", "--state-dir", path_str(&state), "-"], &dns);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_summarises_the_east_west_table() {
    let scratch = Scratch::new("check-east-west");
    let state = scratch.0.join("state");
    let policy =
        "[east_west]\ndefault = \"deny\"\n[[east_west.allow]]\nfrom_containers = [\"traefik\"]\n";
    let out = dockfw(&["check", "--state-dir", path_str(&state), "-"], policy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "<stdin>: ok (default deny, 0 allow and 0 deny entries; east_west default deny, \
         0 isolate, 1 allow and 0 deny entries)\n"
    );
}

#[test]
fn check_reads_standard_input_for_a_dash_and_names_it_stdin() {
    let scratch = Scratch::new("check-stdin");
    let state = scratch.0.join("state");
    let out = dockfw(&["check", "--state-dir", path_str(&state), "-"], BROKEN);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("<stdin>:5:14: ports: "), "{err}");
    assert!(err.contains("dockfw: <stdin> is INVALID"), "{err}");
    let good = "[inbound]\ndefault = \"allow\"\n";
    let out = dockfw(&["check", "--state-dir", path_str(&state), "-"], good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("<stdin>: ok (default allow"));
}

#[test]
fn check_takes_300_ports_by_300_sources_and_refuses_700_port_ranges_naming_the_entry() {
    let scratch = Scratch::new("check-huge");
    let from: Vec<String> = (0..300)
        .map(|i| format!("\"10.0.{}.{}\"", i / 250, i % 250))
        .collect();
    let entry = |ports: Vec<String>| {
        format!(
            "[inbound]\n\n[[inbound.allow]]\nports = [{}]\nfrom = [{}]\nproto = \"any\"\n",
            ports.join(","),
            from.join(",")
        )
    };
    let state = scratch.0.join("state");
    // 300 ports x 300 sources x 3 protocols: sources and ports are sets.
    let big = scratch.write(
        "big.toml",
        &entry((1..=300).map(|p| p.to_string()).collect()),
    );
    let out = dockfw(
        &["check", "--state-dir", path_str(&state), path_str(&big)],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // 700 separate port ranges x 3 protocols: iptables writes one rule per
    // range, 2,100 > the 2,048 of one entry.
    let ranges = (1..=700).map(|p| (2 * p).to_string()).collect();
    let huge = scratch.write("huge.toml", &entry(ranges));
    let out = dockfw(
        &["check", "--state-dir", path_str(&state), path_str(&huge)],
        "",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:1: allow entry expands to 2100 rules",
            huge.display()
        )),
        "{err}"
    );
}

#[test]
fn status_and_reload_without_a_daemon_exit_3_and_say_so() {
    let scratch = Scratch::new("no-daemon");
    let socket = scratch.0.join("nobody.sock");
    let said = format!(
        "dockfw: the daemon is not running (no answer on {})\n",
        socket.display()
    );
    for args in [
        vec!["status", "--socket", path_str(&socket)],
        vec!["status", "--socket", path_str(&socket), "--json"],
        vec!["reload", "--socket", path_str(&socket)],
    ] {
        let out = dockfw(&args, "");
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(text(&out.stderr), said, "{args:?}");
    }
}

#[test]
fn a_usage_error_exits_2() {
    for args in [
        vec!["status", "--bogus"],
        vec!["check", "a.toml", "--config", "b.toml"],
        vec!["plan", "--backend", "pf"],
        vec!["explain", "--from", "not-an-address"],
        vec!["explain"],
        vec!["explain", "--from-container", "web"],
        vec!["explain", "--to", "192.0.2.1"],
        vec![
            "explain",
            "--from",
            "192.0.2.1",
            "--from-container",
            "web",
            "--to",
            "192.0.2.2",
        ],
        vec![
            "explain",
            "--from-container",
            "web",
            "--to",
            "192.0.2.1",
            "--proto",
            "icmp",
        ],
        vec!["explain", "--from", "192.0.2.1", "--proto", "udp"],
        vec![
            "explain",
            "--from",
            "172.17.0.9",
            "--to",
            "192.0.2.1",
            "web",
        ],
        vec!["explain", "--from", "172.17.0.9", "--to-container", "web"],
    ] {
        let out = dockfw(&args, "");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("error: "), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn version_names_the_package_version_and_a_commit() {
    let out = dockfw(&["--version"], "");
    assert_eq!(out.status.code(), Some(0));
    let version = text(&out.stdout);
    let prefix = format!("dockfw {} (", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&prefix), "{version}");
    assert!(version.ends_with(")\n"), "{version}");
}

/// `dockfw plan --inventory FILE --json` for a golden case and a backend.
fn plan_json(case: &Path, backend: &str) -> serde_json::Value {
    let policy = case.join("policy.toml");
    let inventory = case.join("inventory.json");
    let args = [
        "plan",
        "--config",
        path_str(&policy),
        "--inventory",
        path_str(&inventory),
        "--backend",
        backend,
        "--json",
    ];
    let out = dockfw(&args, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("plan --json prints JSON")
}

fn lines(value: &serde_json::Value) -> String {
    let rules = value.as_array().expect("rules is an array");
    let mut text = String::new();
    for line in rules {
        text.push_str(line.as_str().expect("each rule is a string"));
        text.push('\n');
    }
    text
}

/// The keys a `plan --json` document and its parts have, and no others.
fn assert_shape(doc: &serde_json::Value, backend: &str, case: &Path) {
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(doc),
        ["backend", "families", "transactions"],
        "{case:?}"
    );
    assert_eq!(doc["backend"], backend, "{case:?}");
    let families = doc["families"].as_array().expect("families");
    let names: Vec<&str> = families
        .iter()
        .map(|f| f["family"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["ipv4", "ipv6"], "{case:?}");
    for family in families {
        assert_eq!(
            keys(family),
            ["available", "family", "rule_count", "rules", "variant"],
            "{case:?}"
        );
        assert_eq!(family["available"], true, "{case:?}");
        assert!(family["rule_count"].is_u64(), "{case:?}");
    }
    let transactions = doc["transactions"].as_array().expect("transactions");
    assert!(
        !transactions.is_empty(),
        "{case:?}: nothing is installed, so something to do"
    );
    for tx in transactions {
        assert_eq!(keys(tx), ["changes", "scope", "text"], "{case:?}");
        assert_eq!(
            keys(&tx["changes"]),
            [
                "elements_added",
                "elements_removed",
                "rules_added",
                "rules_removed",
                "summary"
            ],
            "{case:?}"
        );
        assert_eq!(tx["changes"]["rules_removed"], 0, "{case:?}");
        assert_eq!(tx["changes"]["elements_removed"], 0, "{case:?}");
        assert!(tx["text"].is_string(), "{case:?}");
    }
}

#[test]
fn plan_json_on_each_golden_case_with_iptables_gives_its_listings_and_one_transaction_per_family() {
    let iptables = Iptables::new();
    for case in golden_cases() {
        let doc = plan_json(&case, "iptables");
        assert_shape(&doc, "iptables", &case);
        let (policy, inventory): (Policy, Inventory) = load(&case);
        let ruleset = plan(&policy, &inventory);
        for (i, (expected, family)) in [("expected.v4", &ruleset.v4), ("expected.v6", &ruleset.v6)]
            .into_iter()
            .enumerate()
        {
            let listing = std::fs::read_to_string(case.join(expected)).expect("golden listing");
            let part = &doc["families"][i];
            assert_eq!(lines(&part["rules"]), listing, "{case:?} {expected}");
            assert_eq!(part["rule_count"], iptables.rule_count(family), "{case:?}");
            assert_eq!(
                part["variant"],
                serde_json::Value::Null,
                "{case:?}: nothing read"
            );
        }
        let scopes: Vec<&str> = doc["transactions"]
            .as_array()
            .expect("transactions")
            .iter()
            .map(|t| t["scope"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(scopes, ["ipv4", "ipv6"], "{case:?}");
        let added = &doc["transactions"][0]["changes"]["rules_added"];
        assert_eq!(added, &doc["families"][0]["rule_count"], "{case:?}");
    }
}

#[test]
fn plan_json_on_each_golden_case_with_nftables_runs_its_golden_table() {
    let nftables = Nftables::new();
    let goldens = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-nft");
    for case in golden_cases() {
        let doc = plan_json(&case, "nftables");
        assert_shape(&doc, "nftables", &case);
        let (policy, inventory) = load(&case);
        let ruleset = plan(&policy, &inventory);
        assert_eq!(
            doc["families"][0]["rule_count"],
            nftables.rule_count(&ruleset.v4)
        );
        assert_eq!(
            doc["families"][1]["rule_count"],
            nftables.rule_count(&ruleset.v6)
        );
        let transactions = doc["transactions"].as_array().expect("transactions");
        assert_eq!(
            transactions.len(),
            1,
            "{case:?}: one table, one transaction"
        );
        let name = case.file_name().expect("case name").to_string_lossy();
        let table = std::fs::read_to_string(goldens.join(format!("{name}.nft"))).expect("golden");
        assert_eq!(transactions[0]["text"], table.as_str(), "{case:?}");
    }
}

#[test]
fn plan_with_an_inventory_and_auto_plans_for_iptables_without_asking_an_engine() {
    // DOCKER_HOST names no engine (see dockfw()): were one asked, this would fail.
    let case = golden_cases().into_iter().next().expect("a golden case");
    let auto = plan_json(&case, "auto");
    assert_eq!(auto, plan_json(&case, "iptables"), "{case:?}");
}

#[test]
fn plan_with_an_inventory_that_does_not_parse_fails_naming_the_file() {
    let scratch = Scratch::new("plan-bad-inventory");
    let case = golden_cases().into_iter().next().expect("a golden case");
    let inventory = scratch.write("inventory.json", "{\"containers\": 7}");
    let policy = case.join("policy.toml");
    let args = [
        "plan",
        "--config",
        path_str(&policy),
        "--inventory",
        path_str(&inventory),
    ];
    let out = dockfw(&args, "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.starts_with(&format!(
            "dockfw: {} is not an inventory",
            inventory.display()
        )),
        "{err}"
    );
}
