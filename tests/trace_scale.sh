#!/usr/bin/env bash
# tests/trace_scale.sh — where dockfw's CPU goes at scale: on a host with N running
# containers that the policy selects (`fill-*`, as `tests/bench.sh scale`), per binary
# given, `perf record` (sampling, children followed) of the daemon idle for 10 s, then
# over 20 rounds of `docker run -d --name cpu-$i -p 5432:80` + `docker rm -f cpu-$i`
# (0.3 s apart, as bench.sh scale). Prints the CPU (utime+stime, children included) of
# each window from /proc, the samples per program (dockfw, ipset, iptables-*; at 997 Hz
# one sample is about 1 ms of CPU), and the
# daemon's own hottest functions.
#
# Usage: sudo TRACE_N=1000 tests/trace_scale.sh DIR/dockfw…   (each binary named dockfw, as
#        bench.sh checks; its directory's name labels its windows)
# Env:   TRACE_N=1000  running containers;  TRACE_OUT=dir  where the run is kept (default a
#        new /tmp/dockfw-trace-scale.XXXXXX); DOCKFW_BACKEND (default iptables); the lab
#        engine as in tests/lab.sh (LAB_DOCKERD_DIR).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ "$(id -u)" == 0 ]] || { echo "trace_scale.sh must run as root" >&2; exit 2; }
(($# > 0)) || { echo "usage: trace_scale.sh BINARY…" >&2; exit 2; }
command -v perf >/dev/null || { echo "trace_scale.sh needs perf" >&2; exit 2; }
# shellcheck source=tests/bench.sh
. "$HERE/bench.sh"
OUT="${TRACE_OUT:-$(mktemp -d /tmp/dockfw-trace-scale.XXXXXX)}"
mkdir -p "$OUT"
N="${TRACE_N:-1000}"
export DOCKFW_BACKEND="${DOCKFW_BACKEND:-iptables}"
# The periodic full check off, as in bench.sh scale: what is traced is the cost of events.
export DOCKFW_RESYNC_SECS=3600
lab_install_deps
trap 'lab_down' EXIT
lab_up
pol="$(bench_policy trace <<'P'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [5432]
containers = ["sel-*", "cpu-*", "fill-*"]
P
)"
say() { echo "# trace: $*" | tee -a "$OUT/summary"; }

# window NAME PID CMD… — perf record of PID (and the children it starts) while CMD runs;
# then the CPU of PID over the window, and the report.
window() {
    local name="$1" pid="$2" c0 c1 t0 t1 perf_pid
    shift 2
    perf record -F 997 -p "$pid" -o "$OUT/$name.data" 2>"$OUT/$name.perf.err" &
    perf_pid=$!
    sleep 0.5
    c0="$(cpu_ticks "$pid")"; t0="$(now_us)"
    "$@"
    c1="$(cpu_ticks "$pid")"; t1="$(now_us)"
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    say "$name: dockfw CPU (children included) $(ticks_to_ms $((c1 - c0))) ms in $(us_to_ms $((t1 - t0))) ms"
    perf report -i "$OUT/$name.data" -n --sort comm --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ { print "#   " $0 }' | tee -a "$OUT/summary" || true
    say "$name: the daemon's own hottest (self) functions:"
    perf report -i "$OUT/$name.data" -n --comms dockfw,tokio-rt-worker --sort dso,sym --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ && n++ < 25 { print "#   " substr($0, 1, 150) }' | tee -a "$OUT/summary" || true
}

rounds() {
    local i
    for ((i = 1; i <= 20; i++)); do
        lab_run "cpu-$i" -p 5432:80
        sleep 0.3
        lab_docker rm -f "cpu-$i" >/dev/null
        sleep 0.3
    done
    wait_quiet 2 30 || true
}

seq 1 "$N" | xargs -P 8 -I{} docker -H "unix://$LAB_SOCK" run -d --name "fill-{}" \
    "$LAB_IMAGE" >/dev/null 2>"$OUT/fill.err" || true
say "$(lab_docker ps -q | wc -l) running; backend $DOCKFW_BACKEND"
for bin in "$@"; do
    dockfw_off
    DOCKFW="$bin"
    dockfw_start "$pol"
    wait_quiet 2 60 || true
    pid="$(bench_dfw_pid)"
    tag="$(basename "$(dirname "$bin")")"
    say "binary $bin (sha256 $(sha256sum "/proc/$pid/exe" | cut -c1-16))"
    window "idle-$tag" "$pid" sleep 10
    say "status before the rounds: $(dfw_status | jq -c '{reconcile: (.reconcile | {passes, applies}), inventory: (.inventory | {inspects, listings})}')"
    window "rounds-$tag" "$pid" rounds
    say "status after the rounds: $(dfw_status | jq -c '{reconcile: (.reconcile | {passes, applies}), inventory: (.inventory | {inspects, listings})}')"
    cp "$LAB_DFW_LOG" "$OUT/dockfw-$tag.log"
done
dockfw_off
say "load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg); kept in $OUT"
