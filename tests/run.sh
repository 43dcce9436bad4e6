#!/usr/bin/env bash
# tests/run.sh — the whole test suite, as CI runs it (must be root: the e2e part builds
# network namespaces and runs its own dockerd).
#
# Steps: deps, cargo fmt --check, cargo clippy -D warnings, cargo test, cargo build
# --release, tests/e2e.sh. Every step runs (e2e only if the build worked); the script
# exits non-zero if any step failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/lab.sh
. tests/lab.sh

if [[ "$(id -u)" != 0 ]]; then
    echo "tests/run.sh must run as root (network namespaces, dockerd)" >&2
    exit 2
fi

# cargo from rustup may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null && [[ -f "${HOME:-/root}/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "${HOME:-/root}/.cargo/env"
fi

FAILED_STEPS=()
STEP_TIMES=()

# step NAME CMD… — run one step, record its time and whether it failed.
step() {
    local name="$1"; shift
    local t0=$SECONDS rc=0
    echo "=== $name: $*"
    "$@" || rc=$?
    STEP_TIMES+=("$name $((SECONDS - t0))s rc=$rc")
    if ((rc != 0)); then
        echo "=== $name FAILED (exit $rc)"
        FAILED_STEPS+=("$name")
        return 1
    fi
}

step deps lab_install_deps || true
step fmt cargo fmt --check || true
step clippy cargo clippy --all-targets -- -D warnings || true
step test cargo test || true
# The Debian package: built from the release binary, with the files the README
# promises in the places the unit expects.
check_package() {
    local out deb listing
    out="$(mktemp -d)"
    deb="$(bash packaging/build-deb.sh "$out")" || return 1
    listing="$(dpkg-deb -c "$deb")" || return 1
    local want
    for want in ./usr/bin/dockfw ./etc/dockfw/policy.toml ./lib/systemd/system/dockfw.service \
        ./usr/share/doc/dockfw/README.md; do
        grep -q " $want\$" <<<"$listing" || { echo "package lacks $want" >&2; return 1; }
    done
    dpkg-deb -f "$deb" Package Version Depends
    dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -q conffiles || { echo "no conffiles" >&2; return 1; }
    rm -rf "$out"
}

if step build cargo build --release; then
    step package check_package || true
    step e2e bash tests/e2e.sh || true
    # The same suite against a current engine (Docker 26, which makes its own
    # ip6tables DOCKER-USER), fetched from Debian trixie.
    engine_dir="$PWD/target/engine-trixie"
    if step fetch-engine lab_fetch_engine "$engine_dir"; then
        step e2e-docker26 env LAB_DOCKERD_DIR="$engine_dir/usr/sbin" bash tests/e2e.sh || true
    fi
else
    FAILED_STEPS+=("e2e(skipped: no build)")
fi

echo "=== summary"
printf '  %s\n' "${STEP_TIMES[@]}"
if ((${#FAILED_STEPS[@]} > 0)); then
    echo "FAILED: ${FAILED_STEPS[*]}"
    exit 1
fi
echo "all steps passed"
