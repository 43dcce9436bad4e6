#!/usr/bin/env bash
# tests/run.sh — the whole test suite, as CI runs it (must be root: the e2e part builds
# network namespaces and runs its own dockerd).
#
# Steps: deps, cargo fmt --check, cargo clippy -D warnings, cargo test, cargo build
# --release, the package, the package under a real systemd (tests/systemd.sh), the
# engines (newer Debian suites' docker.io; Docker 29.7.2 when the lab's shared files are
# beside the clone, as in CI: ../shared/engines; a plain clone says that engine is skipped,
# and why), then tests/e2e.sh, two suites at a time (each in its own namespaces with its
# own engine): the whole suite on the default engine (Debian bookworm's Docker 20.10) beside
# the E2E_CORE cases on 26.1, then the Policy v2 cases on 28.5; the E2E_CORE cases on 28.5
# beside those on 29.7.2 in its iptables mode; the pre-28 and the Policy v2 cases with the
# nftables backend on 20.10; the whole suite with the
# nftables backend on 28.5 beside the whole suite on 29.7.2 in its nftables mode (dockfw's
# `auto` choosing its nftables backend there).
# Every step runs (e2e only if the build worked; an engine's e2e only if that engine was
# fetched); the script exits non-zero if any step failed. Nothing that needs root or an
# engine is skipped silently here: the root-only unit tests run in test-root, and
# tests/systemd.sh fails on a skip (SYSTEMD_NO_SKIP=1).
set -euo pipefail

# e2e cases run on every engine (patterns as tests/e2e.sh takes them: a case runs when its
# name contains one of them, or begins with what follows a "^"). Edit this one list to add
# cases. "fc_" selects every "fail
# closed" case (case_fc_*), so a new fc_* case runs on every engine without an edit here.
E2E_CORE="^default_deny user_networks from_restriction new_container ^reload uninstall jumps_restored proxy_guard docker_restart fc_ nft_backend observability gateway_modes drops_ drop_chain_length udp entry_sets"
# The Policy v2 cases (a container's outbound connections, to the host, between containers)
# run on both backends on Docker 20.10 and 28.5, and on 29.7.2 in its nftables mode (the
# engines and backends issue 15 names): in the three whole-suite steps (20.10 with the
# iptables backend, 28.5 with the nftables backend, 29.7.2 in its nftables mode) and in two
# steps of their own (28.5 with iptables, after the 26.1 core run in its place; 20.10 with
# the nftables backend, with the pre-28 cases); not in the core runs. Every case
# docs/guarantees.md names matches a pattern of E2E_CORE or E2E_V2 (tests/docs.rs checks).
E2E_V2="outbound_ to_host east_west_"
# The nftables backend (dockfw's own inet table in front of the engine's iptables rules)
# runs the whole suite on the newest engine; the cases about iptables mechanics (its
# jumps, its legacy variant) say "SKIP" there, the rest judge nftables with packets.
# The cases about engines before Docker 28 (they say SKIP on later ones), which the
# nftables backend also runs on the default engine (Docker 20.10).
E2E_PRE28="fc_duplicate_network_names fc_gateway_mode_ignored_before_28 fc_loopback_published"
# Newer engines: Debian suites whose docker.io runs on bookworm (fetched with the machine's
# own apt mirror into target/engine-SUITE): trixie = Docker 26.1, forky = Docker 28.5.
E2E_ENGINES="trixie forky"
# Docker 29.7.2, built from source (not in any reachable Debian suite): an archive in
# ENGINES_DIR (CI: ../shared/engines beside the clone; see ENGINES.md there), checked
# against this SHA256 (the one ENGINES.md gives) before it is extracted into target/.
ENGINES_DIR="${ENGINES_DIR:-../shared/engines}"
ENGINE29_ARCHIVE="docker-29.7.2.tar.xz"
ENGINE29_SHA256="9079055ffc9bf2bedc44753d3fc58f1e472706ee3286905a04fd002e2ae99ef8"

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
# The unit tests that need root (a private network namespace, nft, iptables-nft) are
# #[ignore]d, so a plain `cargo test` lists them as ignored instead of passing them
# unrun; here, as root, they run, and fail if they cannot. (The Docker source's live
# tests, tests/docker_source.rs, run in the e2e case docker_source_live against the lab
# engine; the measurement apply_times is left out.)
step test-root cargo test --lib -- --ignored --skip apply_times || true
# The Debian package: built from the release binary, with the files the README
# promises in the places the unit expects.
check_package() {
    local out deb listing
    out="$(mktemp -d)"
    # build-deb.sh needs dpkg-dev (dpkg-shlibdeps); lintian judges the result. Installed
    # here, not in lab_install_deps: only this step needs them.
    pkg_tool dpkg-shlibdeps dpkg-dev && pkg_tool lintian lintian || return 1
    deb="$(bash packaging/build-deb.sh "$out")" || return 1
    listing="$(dpkg-deb -c "$deb")" || return 1
    local want
    for want in ./usr/bin/dockfw ./etc/dockfw/policy.toml ./lib/systemd/system/dockfw.service \
        ./usr/share/doc/dockfw/README.md ./usr/share/doc/dockfw/docs/policy.md \
        ./usr/share/doc/dockfw/docs/guarantees.md ./usr/share/doc/dockfw/copyright \
        ./usr/share/doc/dockfw/changelog.gz ./usr/share/man/man1/dockfw.1.gz \
        ./usr/share/bash-completion/completions/dockfw ./usr/share/zsh/vendor-completions/_dockfw \
        ./usr/share/fish/vendor_completions.d/dockfw.fish; do
        grep -q " $want\$" <<<"$listing" || { echo "package lacks $want" >&2; return 1; }
    done
    dpkg-deb -f "$deb" Package Version Depends
    # The control area extracted to files, not `--ctrl-tarfile | tar -t | grep -q`: under
    # pipefail that fails whenever a reader exits before its producer is done (SIGPIPE).
    dpkg-deb -e "$deb" "$out/control" || return 1
    grep -qx /etc/dockfw/policy.toml "$out/control/conffiles" ||
        { echo "no conffiles entry for /etc/dockfw/policy.toml" >&2; return 1; }
    # No lintian error or warning; an override must be in the package, with its reason.
    lintian --fail-on error,warning "$deb" || { echo "lintian: $deb is not clean" >&2; return 1; }
    rm -rf "$out"
}

# pkg_tool CMD PACKAGE — install PACKAGE (apt) unless CMD is there; refresh the lists once
# if the install fails on stale or missing ones.
pkg_tool() {
    command -v "$1" >/dev/null && return 0
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y "$2" ||
        { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y "$2"; }
}

# engine_version DIR — the version of the dockerd the lab starts with LAB_DOCKERD_DIR=DIR
# ("" = the installed one), e.g. 20.10.24+dfsg1.
engine_version() {
    local v
    v="$(PATH="${1:+$1:}$PATH" dockerd --version)" || return 1
    v="${v#Docker version }"
    echo "${v%%,*}"
}

# e2e_on DIR [PATTERN…] — tests/e2e.sh against the dockerd in DIR ("" = the installed one);
# says which engine ran, before and after (the suite's own output is long).
e2e_on() {
    local dir="$1" v rc=0; shift
    v="$(engine_version "$dir")" || { echo "no dockerd${dir:+ in $dir}" >&2; return 1; }
    echo "--- engine: Docker $v${dir:+ ($dir)}${*:+, cases: $*}"
    LAB_DOCKERD_DIR="$dir" bash tests/e2e.sh "$@" || rc=$?
    echo "--- engine: Docker $v: e2e exit $rc"
    return "$rc"
}

# e2e_engine_nft DIR [PATTERN…] — e2e_on with the engine in its nftables mode (Docker 29)
# and dockfw's backend left to `auto` (which must choose nftables there).
e2e_engine_nft() {
    local LAB_DOCKERD_FIREWALL=nftables DOCKFW_BACKEND=auto
    export LAB_DOCKERD_FIREWALL DOCKFW_BACKEND
    echo "--- engine firewall mode: nftables (\"firewall-backend\": \"nftables\")"
    e2e_on "$@"
}

# e2e_nft DIR [PATTERN…] — e2e_on with dockfw driving its nftables backend.
e2e_nft() {
    local DOCKFW_BACKEND=nftables
    export DOCKFW_BACKEND
    e2e_on "$@"
}

# bg_step NAME [--after OTHER] CMD… — run one step in the background, its output kept for
# join_steps; with --after, once the background step OTHER of the same pair has ended (when
# OTHER runs at all), so that two shorter steps share one place beside a long one. The e2e
# steps run two at a time: each makes its own namespaces and engine (tests/lab.sh names them
# per run), and a suite spends most of its time waiting on packets and engines, not on the
# 2 cores. A step's time counts from its own start.
BG_STEPS=()
declare -A BG_PIDS=()
STEP_LOGS="$(mktemp -d /tmp/dockfw-ci-steps.XXXXXX)"
bg_step() {
    local name="$1" after="" after_pid=""; shift
    if [[ "${1:-}" == --after && $# -ge 2 ]]; then
        if [[ -n "$2" && -n "${BG_PIDS[$2]:-}" ]]; then
            after="$2" after_pid="${BG_PIDS[$2]}"
        fi
        shift 2
    fi
    echo "=== $name (in parallel${after:+, after $after}; its output follows when it ends): $*"
    (
        # Until the other step has ended: its .done written, or its process gone (a step
        # killed before it wrote one ends the wait too; join_steps reports it as lost).
        if [[ -n "$after" ]]; then
            while [[ ! -f "$STEP_LOGS/$after.done" ]] && kill -0 "$after_pid" 2>/dev/null; do
                sleep 1
            done
        fi
        t0=$SECONDS rc=0
        "$@" >"$STEP_LOGS/$name.log" 2>&1 || rc=$?
        echo "$((SECONDS - t0)) $rc" >"$STEP_LOGS/$name.done"
    ) &
    BG_PIDS[$name]=$!
    BG_STEPS+=("$name")
}

# join_steps — wait for the background steps; print each one's output, time and result.
join_steps() {
    wait
    local name secs rc
    for name in "${BG_STEPS[@]}"; do
        echo "=== $name: output"
        cat "$STEP_LOGS/$name.log" 2>/dev/null || true
        read -r secs rc <"$STEP_LOGS/$name.done" 2>/dev/null || { secs="?"; rc="lost"; }
        STEP_TIMES+=("$name ${secs}s rc=$rc (in parallel)")
        if [[ "$rc" != 0 ]]; then
            echo "=== $name FAILED (exit $rc)"
            FAILED_STEPS+=("$name")
        fi
    done
    BG_STEPS=()
    BG_PIDS=()
}

if step build cargo build --release; then
    echo "=== the Policy v2 cases ($E2E_V2) run in the whole-suite steps (20.10 iptables, 28.5 nftables backend, 29.7.2 nftables mode) and in two steps of their own: 28.5 with iptables, 20.10 with the nftables backend"
    step package check_package || true
    # The unit and the .deb under a real systemd as PID 1 (a bookworm container).
    step systemd env SYSTEMD_NO_SKIP=1 bash tests/systemd.sh || true
    # The engines first (a failed fetch skips only that engine's steps): Debian suites'
    # docker.io (trixie = 26.1 and forky = 28.5 make their own ip6tables DOCKER-USER; 28.5
    # adds DOCKER-FORWARD), and Docker 29.7.2 from the lab's shared files.
    fetched=()
    for suite in $E2E_ENGINES; do
        step "fetch-$suite" lab_fetch_engine "$PWD/target/engine-$suite" "$suite" && fetched+=("$suite")
    done
    engine29=""
    engines="$(cd "$ENGINES_DIR" 2>/dev/null && pwd)" || engines=""
    if [[ -n "$engines" && -f "$engines/$ENGINE29_ARCHIVE" ]]; then
        step "extract-29.7.2" lab_engine_extract "$engines/$ENGINE29_ARCHIVE" \
            "$ENGINE29_SHA256" "$PWD/target/engine-29.7.2" && engine29="$PWD/target/engine-29.7.2/bin"
    else
        echo "=== SKIP e2e on Docker 29.7.2: no $ENGINES_DIR/$ENGINE29_ARCHIVE (CI has ../shared beside the clone; set ENGINES_DIR)"
        STEP_TIMES+=("e2e-29.7.2 SKIP: no $ENGINES_DIR/$ENGINE29_ARCHIVE")
    fi
    has_engine() { [[ " ${fetched[*]} " == *" $1 "* ]]; }
    trixie_step=""
    # Pair 1: the whole suite on the default engine (Debian bookworm's 20.10), and the core
    # cases on 26.1.
    bg_step "e2e-$(. /etc/os-release; echo "${VERSION_CODENAME:-default}")-$(engine_version "" || echo unknown)" \
        e2e_on ""
    if has_engine trixie; then
        dir="$PWD/target/engine-trixie/usr/sbin"
        # shellcheck disable=SC2086  # E2E_CORE is a list of patterns
        trixie_step="e2e-trixie-$(engine_version "$dir" || echo unknown)"
        bg_step "$trixie_step" e2e_on "$dir" $E2E_CORE
    fi
    # Then, in the same place, the Policy v2 cases on 28.5 with the iptables backend (the
    # whole suite on 28.5 below drives nftables).
    if has_engine forky; then
        dir="$PWD/target/engine-forky/usr/sbin"
        # shellcheck disable=SC2086  # E2E_V2 is a list of patterns
        bg_step "e2e-forky-$(engine_version "$dir")-v2" --after "$trixie_step" \
            e2e_on "$dir" $E2E_V2
    fi
    join_steps
    # Pair 2: the core cases on 28.5, and on Docker 29.7.2 in its iptables mode (DOCKER-USER
    # as before).
    if has_engine forky; then
        dir="$PWD/target/engine-forky/usr/sbin"
        # shellcheck disable=SC2086  # E2E_CORE is a list of patterns
        bg_step "e2e-forky-$(engine_version "$dir")" e2e_on "$dir" $E2E_CORE
    fi
    # shellcheck disable=SC2086  # E2E_CORE is a list of patterns
    [[ -n "$engine29" ]] && bg_step "e2e-29.7.2-iptables-mode" e2e_on "$engine29" $E2E_CORE
    join_steps
    # The cases about engines before 28 (they say SKIP on 28.5 and later) and the Policy v2
    # cases with the nftables backend, on the default engine.
    # shellcheck disable=SC2086  # E2E_PRE28 and E2E_V2 are lists of patterns
    step "e2e-nftables-backend-$(engine_version "")-pre28-v2" e2e_nft "" $E2E_PRE28 $E2E_V2 || true
    # Pair 3: the whole suite with the nftables backend (dockfw's inet table in front of the
    # engine's own rules) on the newest Debian engine fetched, and the whole suite on Docker
    # 29.7.2 in its nftables mode (no DOCKER-USER; dockfw's `auto` must choose nftables; the
    # cases that cannot apply there say SKIP with their reason).
    nft_dir=""
    has_engine forky && nft_dir="$PWD/target/engine-forky/usr/sbin"
    bg_step "e2e-nftables-backend-$(engine_version "$nft_dir")" e2e_nft "$nft_dir"
    [[ -n "$engine29" ]] && bg_step "e2e-29.7.2-nftables-mode" e2e_engine_nft "$engine29"
    join_steps
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
