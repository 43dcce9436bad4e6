//! Records the git commit the binary is built from, for `dockfw --version`
//! (`dockfw 0.1.0 (abc1234)`): `DOCKFW_GIT_COMMIT` if set (a build from a
//! tarball can say), else `git rev-parse --short HEAD`, else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DOCKFW_GIT_COMMIT");
    let commit = std::env::var("DOCKFW_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DOCKFW_GIT_COMMIT={}", commit.trim());
}

/// The short commit of HEAD, after asking cargo to run this again when
/// HEAD moves: a checkout rewrites `HEAD`, a commit the branch's ref (or
/// creates it, when it was packed: then its folder changes), a `git gc`
/// `packed-refs`. Only paths that exist are named: cargo reruns a script
/// on every build for a path that does not.
fn git_commit() -> Option<String> {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let watch = |path: &Path| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    let git_path = |name: &str| git(&["rev-parse", "--git-path", name]).map(|p| root.join(p));
    if let Some(head) = git_path("HEAD") {
        watch(&head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git_path(&r)) {
        match branch.exists() {
            true => watch(&branch),
            false => branch.parent().into_iter().for_each(watch),
        }
    }
    if let Some(packed) = git_path("packed-refs") {
        watch(&packed);
    }
    git(&["rev-parse", "--short", "HEAD"])
}
