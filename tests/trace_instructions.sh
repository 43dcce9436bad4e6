#!/usr/bin/env bash
# tests/trace_instructions.sh — what a container's start and removal cost the daemon, in
# instructions: callgrind counts them (a count, not a time, so the machine's load does not
# move it), on an empty host and then with N running containers the policy selects
# (`fill-*`, as `tests/bench.sh scale`), per backend. The daemon runs under valgrind with
# its instrumentation off until it has settled; then, per window, instrumentation on and
# counters zeroed, ROUNDS rounds of `docker run -d --name cpu-$i -p 5432:80` +
# `docker rm -f cpu-$i` (GAP s apart, longer than bench.sh's 0.3 s: under valgrind a pass
# is some 50 times slower, and a gap that lets each event have its own pass keeps the
# passes per round what they are natively), a dump. Prints per window the instructions per
# round, the daemon's passes/applies/inspects, and the functions of dockfw with the most
# inclusive instructions. The firewall programs the daemon starts (nft, iptables-restore,
# ipset) are not counted (their CPU is in bench.sh's "children").
#
# Usage: sudo tests/trace_instructions.sh [BACKEND…]   (default: nftables iptables)
# Env:   TRACE_N=1000 running containers in the full window; TRACE_ROUNDS=10; TRACE_GAP=1;
#        TRACE_OUT=dir where the dumps and the summary are kept (default a new
#        /tmp/dockfw-trace-instr.XXXXXX); DOCKFW (default target/release/dockfw); the lab
#        engine as in tests/lab.sh (LAB_DOCKERD_DIR).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ "$(id -u)" == 0 ]] || { echo "trace_instructions.sh must run as root" >&2; exit 2; }
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
    { echo "trace_instructions.sh needs valgrind (callgrind_control)" >&2; exit 2; }
# shellcheck source=tests/bench.sh
. "$HERE/bench.sh"
OUT="${TRACE_OUT:-$(mktemp -d /tmp/dockfw-trace-instr.XXXXXX)}"
mkdir -p "$OUT"
N="${TRACE_N:-1000}"
ROUNDS="${TRACE_ROUNDS:-10}"
GAP="${TRACE_GAP:-1}"
BACKENDS=("$@")
((${#BACKENDS[@]} > 0)) || BACKENDS=(nftables iptables)
# The periodic full check off, as in bench.sh scale: what is counted is the cost of events.
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
counters() {
    dfw_status | jq -c '{passes: .reconcile.passes, applies: .reconcile.applies, inspects: .inventory.inspects, listings: .inventory.listings}'
}

rounds() {
    local i
    for ((i = 1; i <= ROUNDS; i++)); do
        lab_run "cpu-$i" -p 5432:80
        sleep "$GAP"
        lab_docker rm -f "cpu-$i" >/dev/null
        sleep "$GAP"
    done
}

# settled SECS — until the daemon answers status and its applies stay put for 3 s.
settled() {
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        dfw_settled 2>/dev/null && wait_quiet 3 "$1" && return 0
        sleep 0.2
    done
    return 1
}

# window TAG — the daemon under callgrind, ROUNDS rounds counted.
window() {
    local tag="$1" pid dump total before after
    dockfw_off
    LAB_DFW_WRAP="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT/cg-$tag.%p" \
        dockfw_spawn "$pol"
    settled 600 || { say "$tag: the daemon did not settle under valgrind in 600 s"; return 1; }
    pid="$(dfw_pid)"
    before="$(counters)"
    callgrind_control -i on "$pid" >/dev/null
    callgrind_control -z "$pid" >/dev/null
    rounds
    wait_quiet 3 300 || true
    after="$(counters)"
    callgrind_control -d "$pid" >/dev/null
    dump="$(ls -t "$OUT/cg-$tag.$pid".* | head -n 1)"
    # The dump is written after callgrind_control returns: read it once whole.
    local i
    for ((i = 0; i < 50; i++)); do
        callgrind_annotate "$dump" 2>/dev/null | grep -q "PROGRAM TOTALS" && break
        sleep 0.2
    done
    total="$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
    say "$tag: $(lab_docker ps -q | wc -l) running, backend $DOCKFW_BACKEND: $total instructions over $ROUNDS rounds, $((total / ROUNDS)) per start+remove; counters before $before, after $after"
    say "$tag: dockfw's functions with the most inclusive instructions per round (callgrind_annotate --inclusive=yes $dump):"
    callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null |
        awk -v r="$ROUNDS" '/^ *[0-9,]+ .*(dockfw|serde_json|bollard|tokio::runtime::task|hyper)/ && n++ < 40 {
            c = $1; gsub(",", "", c); $1 = ""; printf "#   %12d %s\n", c / r, substr($0, 2, 140) }' |
        tee -a "$OUT/summary"
    dockfw_off
}

say "dockfw $DOCKFW (sha256 $(sha256sum "$DOCKFW" | cut -c1-16)); $ROUNDS rounds, ${GAP}s apart"
for backend in "${BACKENDS[@]}"; do
    DOCKFW_BACKEND="$backend" window "empty-$backend"
done
seq 1 "$N" | xargs -P 8 -I{} docker -H "unix://$LAB_SOCK" run -d --name "fill-{}" \
    "$LAB_IMAGE" >/dev/null 2>"$OUT/fill.err" || true
say "$(lab_docker ps -q | wc -l) running after the fill"
for backend in "${BACKENDS[@]}"; do
    DOCKFW_BACKEND="$backend" window "full-$backend"
done
say "load average (1/5/15 min) at the end: $(cut -d' ' -f1-3 /proc/loadavg); kept in $OUT"
