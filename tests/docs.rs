//! The documents keep their promises about the tree: the README's two commands are the
//! ones that exist (and `.ci/run` runs the test one), every relative link resolves, and
//! every case the guarantees table names is a case the suites run, and every policy they
//! show validates.
//!
//! Plain file reads: no build of dockfw, no root, no engine.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// README.md and every Markdown file in docs/, as (path relative to the repo, text).
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_string(), read("README.md"))];
    let mut names: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| {
            e.expect("a readable docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for name in names {
        let rel = format!("docs/{name}");
        let text = read(&rel);
        docs.push((rel, text));
    }
    docs
}

/// The lines of the first fenced code block of `text`.
fn first_code_block(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect()
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        match after.find(')') {
            Some(end) => {
                targets.push(&after[..end]);
                rest = &after[end..];
            }
            None => break,
        }
    }
    targets
}

/// The backquoted spans of `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_readme_is_a_front_page() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 150,
        "README.md has {lines} lines; the rest belongs in docs/"
    );
}

#[test]
fn the_readme_commands_run_as_root_without_sudo_and_ci_runs_the_test_one() {
    let readme = read("README.md");
    let commands: Vec<&str> = first_code_block(&readme)
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        ["tests/demo.sh", "tests/run.sh"],
        "the README's first block"
    );
    for command in &commands {
        let path = repo().join(command);
        assert!(path.is_file(), "{command} does not exist");
    }
    let ci = read(".ci/run");
    let exec = ci
        .lines()
        .find(|l| l.trim_start().starts_with("exec "))
        .expect(".ci/run execs the suite");
    assert!(
        exec.trim_end().ends_with(" tests/run.sh"),
        ".ci/run must run the README's test command, tests/run.sh: {exec}"
    );
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let mut broken = Vec::new();
    for (rel, text) in documents() {
        let dir = Path::new(&rel).parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            if !repo().join(dir).join(file).exists() {
                broken.push(format!("{rel}: {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn every_case_the_guarantees_table_names_exists() {
    let guarantees = read("docs/guarantees.md");
    let e2e = read("tests/e2e.sh");
    let systemd = read("tests/systemd.sh");
    let run = read("tests/run.sh");
    let mut rows = 0;
    let mut missing = Vec::new();
    for row in guarantees.lines().filter(|l| l.starts_with("| ")).skip(2) {
        rows += 1;
        let cases = row.trim_end_matches('|').rsplit('|').next().unwrap_or("");
        let spans = code_spans(cases);
        assert!(!spans.is_empty(), "a guarantee without a case: {row}");
        for span in spans {
            let found = if span.ends_with(".sh") || span.ends_with(".rs") {
                repo().join(span).is_file()
            } else if span.starts_with("e2e-") {
                // A step of tests/run.sh; "…" stands for the engine's version.
                span.split('…').all(|part| run.contains(part))
            } else if span.starts_with("t_") {
                systemd.contains(&format!("\n{span}() {{"))
            } else {
                e2e.contains(&format!("\ncase_{span}() {{"))
            };
            if !found {
                missing.push(span.to_string());
            }
        }
    }
    assert!(rows >= 20, "the guarantees table has {rows} rows");
    assert!(
        missing.is_empty(),
        "named in docs/guarantees.md, found nowhere: {missing:?}"
    );
}

/// Whether tests/e2e.sh runs case `name` for `pattern`: the name contains it, or begins
/// with what follows a leading `^`.
fn selects(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('^') {
        Some(prefix) => name.starts_with(prefix),
        None => name.contains(pattern),
    }
}

#[test]
fn every_case_the_guarantees_table_names_runs_on_every_engine() {
    // docs/guarantees.md: "on 26.1, 28.5 and 29.7.2 with iptables every case named here
    // but `variant_legacy` … and the Policy v2 cases (`outbound_*`, `to_host`,
    // `east_west_*`)": each such case matches a pattern of tests/run.sh's E2E_CORE or
    // E2E_V2, and the E2E_V2 ones are those.
    let guarantees = read("docs/guarantees.md");
    let run = read("tests/run.sh");
    let patterns_of = |var: &str| -> Vec<String> {
        let prefix = format!("{var}=\"");
        let line = run
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("tests/run.sh sets {var}"));
        line.trim_start_matches(prefix.as_str())
            .trim_end_matches('"')
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let core = patterns_of("E2E_CORE");
    let v2 = patterns_of("E2E_V2");
    for p in &v2 {
        assert!(
            p.starts_with("outbound") || p.starts_with("to_host") || p.starts_with("east_west"),
            "E2E_V2 holds {p}, which docs/guarantees.md does not name as a Policy v2 case"
        );
    }
    // The core runs leave the Policy v2 cases to the whole suites: no E2E_CORE pattern
    // selects one (`reload` would select `outbound_reload_narrows`; `^reload` does not).
    let e2e = read("tests/e2e.sh");
    let v2_cases = e2e
        .lines()
        .filter_map(|l| l.strip_prefix("case_")?.strip_suffix("() {"))
        .filter(|name| {
            name.starts_with("outbound")
                || name.starts_with("to_host")
                || name.starts_with("east_west")
        });
    for name in v2_cases {
        let by: Vec<&String> = core.iter().filter(|p| selects(p, name)).collect();
        assert!(
            by.is_empty(),
            "E2E_CORE selects the Policy v2 case {name} by {by:?}"
        );
    }
    let mut outside = Vec::new();
    for row in guarantees.lines().filter(|l| l.starts_with("| ")).skip(2) {
        let cases = row.trim_end_matches('|').rsplit('|').next().unwrap_or("");
        for span in code_spans(cases) {
            let is_case = span
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !span.starts_with("t_");
            let runs = core.iter().chain(&v2).any(|p| selects(p, span));
            if is_case && span != "variant_legacy" && !runs {
                outside.push(span.to_string());
            }
        }
    }
    assert!(
        outside.is_empty(),
        "guarantee cases E2E_CORE and E2E_V2 leave out: {outside:?}"
    );
}

#[test]
fn every_policy_the_documents_show_validates() {
    let mut shown = 0;
    for (rel, text) in documents() {
        let mut block: Option<String> = None;
        for line in text.lines() {
            match &mut block {
                None if line.starts_with("```toml") => block = Some(String::new()),
                None => {}
                Some(toml) if line.starts_with("```") => {
                    let label = Path::new(&rel);
                    if let Err(e) = dockfw::policy::parse_str(toml, label) {
                        panic!("a policy in {rel} does not validate:\n{e}\n{toml}");
                    }
                    shown += 1;
                    block = None;
                }
                Some(toml) => {
                    toml.push_str(line);
                    toml.push('\n');
                }
            }
        }
    }
    assert!(
        shown >= 2,
        "{shown} policies shown: the README's and the reference's"
    );
}
