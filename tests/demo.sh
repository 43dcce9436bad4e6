#!/usr/bin/env bash
# tests/demo.sh — see dockfw work, in one command (as root, on Debian bookworm).
#
#   tests/demo.sh            install deps, build, bring up the lab, run four containers and
#                            the daemon, show `dockfw status` and who can reach what; tear down
#   tests/demo.sh --keep     same, but keep everything up until you press Enter / Ctrl-C,
#                            printing the commands to poke at it
#   tests/demo.sh --no-build use the existing target/release/dockfw (or $DOCKFW)
#
# The lab: a "docker host" network namespace running its own dockerd, and two clients,
# A (198.51.100.2, fd10:a::2) and B (203.0.113.2, fd10:b::2), routed through it.
# Containers: web (-p 80:80), api (-p 8080:80), db (-p 5432:80), cache (-p 127.0.0.1:6379:80).
# Policy: config/policy.toml (allows 80/443) plus one lab entry: 5432 only from client A.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/lab.sh
. "$HERE/lab.sh"

KEEP=no
BUILD=yes

# Parse the few flags.
parse_args() {
    local a
    for a in "$@"; do
        case "$a" in
            --keep) KEEP=yes ;;
            --no-build) BUILD=no ;;
            -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) echo "unknown argument: $a" >&2; exit 2 ;;
        esac
    done
}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Build the release binary (cargo may live in ~/.cargo/bin).
build() {
    if ! command -v cargo >/dev/null && [[ -f "${HOME:-/root}/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        . "${HOME:-/root}/.cargo/env"
    fi
    (cd "$LAB_REPO" && cargo build --release)
}

# The demo policy: the project's example policy plus a lab-specific entry for db.
demo_policy() {
    local path="$LAB_DIR/policy.toml"
    if [[ -f "$LAB_REPO/config/policy.toml" ]]; then
        cp "$LAB_REPO/config/policy.toml" "$path"
    else
        # Fallback when the example policy is missing: the same two rules it starts with.
        printf '[inbound]\ndefault = "deny"\n\n[[inbound.allow]]\nports = [80, 443]\n' >"$path"
    fi
    cat >>"$path" <<EOF

# --- added by tests/demo.sh: the database only for client A (both families) ---
[[inbound.allow]]
ports = [5432]
from = ["$LAB_A_IP4/32", "$LAB_A_IP6/128"]
containers = ["db"]
EOF
    echo "$path"
}

# The four demo containers.
start_containers() {
    lab_run web -p 80:80
    lab_run api -p 8080:80
    lab_run db -p 5432:80
    lab_run cache -p 127.0.0.1:6379:80
    # Let the servers start listening, so "before" shows Docker's real exposure.
    wait_for 5 probe6 a "$LAB_A_GW6" 80 || true
    lab_docker ps --format 'table {{.Names}}\t{{.Ports}}'
}

# yes/no for one probe.
yn() { if "$@"; then echo yes; else echo no; fi; }

# Who can reach what: one row per service, columns client A/B × IPv4/IPv6.
reach_table() {
    local row name port
    printf '%-14s %-8s %-8s %-8s %-8s\n' "service" "A v4" "A v6" "B v4" "B v6"
    for row in web:80 api:8080 db:5432 cache:6379; do
        name="${row%%:*}"; port="${row#*:}"
        printf '%-14s %-8s %-8s %-8s %-8s\n' "$name :$port" \
            "$(yn probe a "$LAB_A_GW4" "$port" 1)" "$(yn probe6 a "$LAB_A_GW6" "$port" 1)" \
            "$(yn probe b "$LAB_B_GW4" "$port" 1)" "$(yn probe6 b "$LAB_B_GW6" "$port" 1)"
    done
}

# How to poke at a kept lab.
print_poke_help() {
    cat <<EOF

The lab stays up. Try, in another shell (as root):
  ip netns exec $LAB_NS_A curl -m 3 http://$LAB_A_GW4:80/            # client A -> web
  ip netns exec $LAB_NS_B curl -m 3 http://$LAB_B_GW4:5432/          # client B -> db (dropped)
  ip netns exec $LAB_NS_A curl -g -m 3 'http://[$LAB_A_GW6]:5432/'   # client A -> db over IPv6
  docker -H unix://$LAB_SOCK ps                                 # the lab's engine
  $DOCKFW status --socket $LAB_DFW_SOCK                         # the daemon's view
  nsenter --net=$LAB_NSPATH iptables-save -t filter             # the rules (ip6tables-save too)
  vi $LAB_DIR/policy.toml && kill -HUP $(dfw_pid || echo PID)   # change the policy live
  daemon log: $(cat "$LAB_DIR/dockfw.logname" 2>/dev/null || echo none)

Press Enter (or Ctrl-C) to tear everything down.
EOF
}

main() {
    parse_args "$@"
    [[ "$(id -u)" == 0 ]] || { echo "demo.sh must run as root" >&2; exit 2; }
    say "Installing dependencies (skipped when present)"
    lab_install_deps
    if [[ "$BUILD" == yes ]]; then
        say "Building dockfw (cargo build --release)"
        build
    fi
    [[ -x "$DOCKFW" ]] || { echo "no dockfw binary at $DOCKFW" >&2; exit 1; }

    trap lab_down EXIT
    trap 'exit 130' INT TERM
    say "Bringing up the lab (namespaces, dockerd, test image)"
    lab_up
    say "Starting containers"
    start_containers

    say "Reachability before dockfw"
    reach_table

    local policy; policy="$(demo_policy)"
    say "Policy ($policy): checking it"
    dfw check --config "$policy"
    say "Starting dockfw daemon"
    dockfw_start "$policy"

    say "dockfw status"
    "$DOCKFW" status --socket "$LAB_DFW_SOCK" || true

    say "Reachability with dockfw (web open, api blocked, db client A only, cache local)"
    reach_table

    if [[ "$KEEP" == yes ]]; then
        print_poke_help
        read -r _ || true
    fi
    say "Tearing down"
}

main "$@"
