#!/usr/bin/env bash
# tests/trace_start.sh — where a selector container's first connection waits: per
# `docker run`, the engine's `container start` event, `docker run` returning, dockfw's
# pass (its debug log) and the first connection that got HTTP 200.
#
# Usage: sudo tests/trace_start.sh             (lab engine as in tests/lab.sh: LAB_DOCKERD_DIR,
#                                              LAB_DOCKERD_FIREWALL, DOCKFW_BACKEND apply)
#        tests/trace_start.sh --analyse DIR    (print the table again from a kept run)
# Env:   TRACE_N=10     rounds;  TRACE_OUT=dir  where the run is kept (default a new
#                       /tmp/dockfw-trace.XXXXXX); DOCKFW (default target/release/dockfw)
#
# Per round it prints: the ms from the engine's `container start` event (its own
# timestamp, `docker events`) to `docker run` returning, the `duration_ms` of dockfw's
# first `rules updated` line after the event arrived (the pass that opened the
# container), and the ms from `docker run` returning to the first HTTP 200 (2 ms
# resolution, tests/first_open.py): what the pass takes past the first figure is latency.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# analyse DIR — the table of a kept run.
analyse() {
    local dir="$1" name start ret open ev pass
    while read -r name start ret open; do
        ev="$(awk -v n="$name" '$3 == "start" && $4 == n { print $1 }' "$dir/events")"
        # The first `rules updated` after the event's arrival line in dockfw's log.
        pass="$(awk -v n="$name" '
            index($0, "docker event") && index($0, "container start " n "\"") || index($0, "container start " n "\n") { seen = 1 }
            index($0, "docker event") && $0 ~ ("container start " n "$") { seen = 1 }
            seen && /rules updated/ { sub(/.*duration_ms=/, ""); print; exit }' "$dir/dockfw.log")"
        awk -v n="$name" -v e="$ev" -v r="$ret" -v o="$open" -v p="${pass:-?}" 'BEGIN {
            printf "%s: start event -> docker run returned %.1f ms; dockfw pass %s ms; docker run returned -> first HTTP 200 %s ms\n",
                n, (r * 1000 - e) / 1e6, p, (o ~ /^[0-9]+$/ ? sprintf("%.1f", (o - r) / 1000) : o) }'
    done <"$dir/rounds"
}

if [[ "${1:-}" == --analyse ]]; then
    analyse "$2"
    exit 0
fi

[[ "$(id -u)" == 0 ]] || { echo "trace_start.sh must run as root" >&2; exit 2; }
# shellcheck source=tests/bench.sh
. "$HERE/bench.sh"
OUT="${TRACE_OUT:-$(mktemp -d /tmp/dockfw-trace.XXXXXX)}"
mkdir -p "$OUT"
lab_install_deps
BENCH_SUMMARY="$OUT/summary"
EV_PID=""
trap '[[ -z "$EV_PID" ]] || kill "$EV_PID" 2>/dev/null; lab_down' EXIT
lab_up
pol="$(bench_policy trace <<'P'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [5432]
containers = ["sel-*"]
P
)"
RUST_LOG=dockfw=debug bench_dockfw_start "$pol"
wait_quiet 1 20 || true
lab_docker events --format '{{.TimeNano}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}}' >"$OUT/events" &
EV_PID=$!
: >"$OUT/rounds"
out="$LAB_DIR/first-open.out" prev=""
for ((i = 1; i <= ${TRACE_N:-10}; i++)); do
    [[ -z "$prev" ]] || lab_docker rm -f "$prev" >/dev/null
    sleep 0.5
    first_open_start 5432 "$out"
    t_start="$(now_us)"
    lab_run "sel-$i" -p 5432:80
    t_ret="$(now_us)"
    first_open_go
    wait "$FIRST_OPEN_PID" || true
    read -r r _ <"$out" || r=timeout
    echo "sel-$i $t_start $t_ret $r" >>"$OUT/rounds"
    prev="sel-$i"
done
sleep 0.5
cp "$(cat "$LAB_DIR/dockfw.logname")" "$OUT/dockfw.log"
echo "# trace: engine $(lab_docker version --format '{{.Server.Version}}'), dockfw sha256 $(sha256sum "$DOCKFW" | cut -c1-16), kept in $OUT"
analyse "$OUT"
