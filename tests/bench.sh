#!/usr/bin/env bash
# tests/bench.sh — benchmarks of dockfw against the real (namespaced) lab engine.
#
# Usage: tests/bench.sh [NAME…]             (as root)
#   NAME: selector_latency  burst_cpu  conn_rate  idle  policy_scale  scale  api_calls
#         (default: the first five, in that order; scale and api_calls run only when named)
#
# It prints distributions and figures, never a verdict on time: each result is a line
# `# bench: NAME …` naming the exact command and parameters, and a summary block at the end.
# A benchmark that could not measure says `# bench: NAME: not measured: why` (exit status 1).
#
# Env:  BENCH_N=30            selector_latency: containers started one after another
#       BENCH_BURST=30        burst_cpu: containers started in parallel
#       BENCH_CONN_SECS=10    conn_rate: seconds per load run
#       BENCH_CONN_C=8        conn_rate: ab concurrency
#       BENCH_CONN_ROUNDS=2   conn_rate: rounds (a b c d, then d c b a, …) to balance drift
#       BENCH_CONN_RULES=1000 conn_rate (c): non-matching allow entries before the match;
#                             (d): sources of one entry, as a set
#       BENCH_IDLE_SECS=30    idle: sampling window (twice: alone, then beside a foreign set)
#       BENCH_IDLE_FOREIGN=100000  idle: addresses in another tool's ipset made for the second
#                             window (hash:ip, in the lab namespace only); 0 skips that window
#       BENCH_SCALE_RUNS=5    policy_scale: runs of each command per policy
#       BENCH_SCALE_N=1000    scale: running containers of the full host
#       BENCH_SCALE_ROUNDS=20 scale: container start+remove rounds for the CPU figure
#       BENCH_SCALE_IDLE_SECS=10  scale: the idle window before them (background CPU)
#       BENCH_SCALE_BACKENDS="iptables nftables"   scale: dockfw's backends, each measured
#       DOCKFW_RESYNC_SECS    the daemon's periodic full check; 10 here (the daemon's
#                             default), not the 2 s tests/e2e.sh uses
#       DOCKFW=path           the binary (default target/release/dockfw; never built here)
#       LAB_DOCKERD_DIR, LAB_DOCKERD_FIREWALL   the lab's engine (see tests/lab.sh), e.g.
#                             target/engine-29.7.2/bin and nftables for Docker 29's
#                             nftables mode (BENCHMARKS.md, selector_latency on 28.5/29.7.2)
#
# The lab comes up once (tests/lab.sh) and is torn down on exit; between benchmarks
# lab_reset removes dockfw, its rules and every container. Traffic only flows between
# the lab's own namespaces (client A 198.51.100.2 -> docker host 198.51.100.1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DOCKFW_RESYNC_SECS="${DOCKFW_RESYNC_SECS:-10}"
# shellcheck source=tests/lab.sh
. "$HERE/lab.sh"

BENCH_N="${BENCH_N:-30}"
BENCH_BURST="${BENCH_BURST:-30}"
BENCH_CONN_SECS="${BENCH_CONN_SECS:-10}"
BENCH_CONN_C="${BENCH_CONN_C:-8}"
BENCH_CONN_ROUNDS="${BENCH_CONN_ROUNDS:-2}"
BENCH_CONN_RULES="${BENCH_CONN_RULES:-1000}"
BENCH_IDLE_SECS="${BENCH_IDLE_SECS:-30}"
BENCH_IDLE_FOREIGN="${BENCH_IDLE_FOREIGN:-100000}"
BENCH_SCALE_RUNS="${BENCH_SCALE_RUNS:-5}"
BENCH_SCALE_N="${BENCH_SCALE_N:-1000}"
BENCH_SCALE_ROUNDS="${BENCH_SCALE_ROUNDS:-20}"
BENCH_SCALE_IDLE_SECS="${BENCH_SCALE_IDLE_SECS:-10}"
BENCH_SCALE_BACKENDS="${BENCH_SCALE_BACKENDS:-iptables nftables}"
BENCHES=(selector_latency burst_cpu conn_rate idle policy_scale scale api_calls)
BENCH_DEFAULT=(selector_latency burst_cpu conn_rate idle policy_scale)
BENCH_SUMMARY=""          # file collecting every `# bench:` line (mktemp)
BENCH_HZ="$(getconf CLK_TCK)"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# bench_out TEXT… — one result line, on stdout and into the summary.
bench_out() {
    echo "# bench: $*"
    echo "# bench: $*" >>"$BENCH_SUMMARY"
}

# Microseconds since the epoch.
now_us() { local t="${EPOCHREALTIME//[.,]/}"; echo "$t"; }

# us_to_ms US — "12.3" (one decimal).
us_to_ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }

# dist V… — "n=N p50=… p90=… p99=… max=…" (nearest rank; values as given, one decimal).
dist() {
    (($# > 0)) || { echo "n=0"; return 0; }
    printf '%s\n' "$@" | sort -g | awk '
        { v[NR] = $1 }
        function rank(q,  r) { r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; return v[r] }
        END { printf "n=%d p50=%.1f p90=%.1f p99=%.1f max=%.1f", NR, rank(0.5), rank(0.9), rank(0.99), v[NR] }'
}

# Client A's namespace path; nsenter --net is cheaper than `ip netns exec` (no /sys
# remount), which keeps the probe loop tight.
client_a_net() { echo "/var/run/netns/$LAB_NS_A"; }

# fast_probe PORT — one HTTP GET from client A to the docker host's PORT, 50 ms to connect.
fast_probe() {
    nsenter --net="$(client_a_net)" curl -sf -o /dev/null --connect-timeout 0.05 -m 1 \
        "http://$LAB_A_GW4:$1/" 2>/dev/null
}

# first_open_start PORT OUT — start tests/first_open.py in client A's namespace, in the
# background, waiting; first_open_go starts it: a new connection to PORT every 2 ms (each
# closed after 300 ms unanswered) until one answers HTTP 200, 8 s at most; OUT gets
# "EPOCH_US STARTED" or "timeout N".
# 2 ms is the resolution: a dropped SYN is not retried for a second, so each probe is a
# new connection rather than a wait on one.
first_open_start() {
    : >"$2.err"
    FIRST_OPEN_WAIT=1 nsenter --net="$(client_a_net)" python3 "$HERE/first_open.py" \
        "$LAB_A_GW4" "$1" 8 2 >"$2" 2>"$2.err" &
    FIRST_OPEN_PID=$! FIRST_OPEN_ERR="$2.err"
    # Started and waiting for SIGUSR1 (1 s at most here; first_open_go waits longer).
    local i
    for ((i = 0; i < 100; i++)); do [[ -s "$2.err" ]] && return 0; sleep 0.01; done
}

# first_open_go — the prober starts probing now (nsenter execs: the pid is python's).
# SIGUSR1 is sent only once the prober said "ready" (it blocks the signal first): sent
# earlier, it kills python, which read as a timeout (3 of 30 samples of one loaded run).
# A prober still not ready after 10 s is killed and the sample reads as a timeout.
first_open_go() {
    local i
    for ((i = 0; i < 1000; i++)); do
        [[ -s "$FIRST_OPEN_ERR" ]] && { kill -USR1 "$FIRST_OPEN_PID"; return 0; }
        sleep 0.01
    done
    kill "$FIRST_OPEN_PID" 2>/dev/null || true
}

# cpu_ticks PID — utime+stime+cutime+cstime (clock ticks) of PID from /proc/PID/stat.
cpu_ticks() {
    local s f
    s="$(cat "/proc/$1/stat")" || return 1
    s="${s##*) }"        # fields after "pid (comm) ": state is f[0], utime f[11] … cstime f[14]
    read -ra f <<<"$s"
    echo $((f[11] + f[12] + f[13] + f[14]))
}

ticks_to_ms() { echo $(($1 * 1000 / BENCH_HZ)); }

# child_ticks PID — cutime+cstime alone: the reaped children (iptables-*, ipset, nft).
child_ticks() {
    local s f
    s="$(cat "/proc/$1/stat")" || return 1
    s="${s##*) }"
    read -ra f <<<"$s"
    echo $((f[13] + f[14]))
}

# rss_kb PID — VmRSS in kB.
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# The daemon's pid, checked to be dockfw itself (setsid/nsenter/env all exec).
bench_dfw_pid() {
    local pid; pid="$(dfw_pid)" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockfw ]] || {
        lab_log "pid $pid is $(cat "/proc/$pid/comm" 2>/dev/null), not dockfw"; return 1; }
    echo "$pid"
}

dfw_applies() { dfw_status | jq -r '.reconcile.applies'; }

# wait_quiet SECS LIMIT — until the daemon's applies counter has not moved for SECS
# (polled every 0.2 s), LIMIT s at most. 0 when quiet.
wait_quiet() {
    local quiet_us=$(($1 * 1000000)) deadline=$(($(now_us) + $2 * 1000000)) a last changed now
    last="$(dfw_applies)" || return 1
    changed="$(now_us)"
    while true; do
        sleep 0.2
        now="$(now_us)"
        a="$(dfw_applies)" || return 1
        if [[ "$a" != "$last" ]]; then last="$a"; changed="$now"; fi
        ((now - changed >= quiet_us)) && return 0
        ((now < deadline)) || return 1
    done
}

# Stop the daemon and remove its rules, keeping the containers.
dockfw_off() {
    dockfw_stop
    timeout 20 nsenter --net="$LAB_NSPATH" "$DOCKFW" uninstall >/dev/null 2>&1 || true
    lab_fw_scrub
    rm -rf "${DOCKFW_STATE_DIR:?}"
}

# bench_dockfw_start POLICY — dockfw_start, noting the running binary's sha256 (read from
# /proc/PID/exe: right even if target/release/dockfw is rebuilt meanwhile) and the backend
# it installed (`table inet dockfw` in nft, a DOCKFW jump in iptables).
bench_dockfw_start() {
    dockfw_start "$1" || return 1
    local pid; pid="$(bench_dfw_pid)" || return 1
    local backend=""
    if lab_ns nft list table inet dockfw >/dev/null 2>&1; then backend="nftables"; fi
    if [[ "$(lab_save4)" == *"-j DOCKFW"* ]]; then backend="${backend:+$backend+}iptables"; fi
    echo "$(sha256sum "/proc/$pid/exe" | cut -c1-16) (backend ${backend:-none found})" >>"$LAB_DIR/bench-shas"
}

# bench_nft — whether the running dockfw uses its nftables table (the nftables backend).
bench_nft() { lab_ns nft list table inet dockfw >/dev/null 2>&1; }

# bench_nft_inbound — the rules of chain inbound of dockfw's nftables table, one a line.
bench_nft_inbound() {
    lab_ns nft list chain inet dockfw inbound | awk '/^[[:space:]]*(chain|type|policy|})/ { next } NF { print }'
}

bench_policy() { local p="$LAB_DIR/bench-$1.toml"; cat >"$p"; echo "$p"; }

# not_measured NAME WHY — record that a benchmark produced no figure, and why.
not_measured() {
    bench_out "$1: not measured: $2"
    return 1
}

# ---------------------------------------------------------------------------
# 1. selector_latency
# ---------------------------------------------------------------------------

# latency_series LABEL — BENCH_N times: rm the previous sel-*, pause 0.5 s, docker run
# sel-$i -p 5432:80, start probing the moment it returns, and take the time from then to
# the start of the first connection that got HTTP 200. Prints the result line.
latency_series() {
    local label="$1" i prev="" t_start t_ret r att samples=() runs=() atts=() tmo=0
    local out="$LAB_DIR/first-open.out"
    for ((i = 1; i <= BENCH_N; i++)); do
        if [[ -n "$prev" ]]; then
            lab_docker rm -f "$prev" >/dev/null
        fi
        sleep 0.5     # the previous removal's reconcile is over before the next run
        first_open_start 5432 "$out"
        t_start="$(now_us)"
        lab_run "sel-$i" -p 5432:80
        t_ret="$(now_us)"
        first_open_go
        wait "$FIRST_OPEN_PID" || true
        read -r r att <"$out" || { r=timeout; att="?"; }
        runs+=("$(us_to_ms $((t_ret - t_start)))")
        atts+=("$att")
        if [[ "$r" == timeout || ! "$r" =~ ^[0-9]+$ ]]; then
            tmo=$((tmo + 1))
        else
            samples+=("$(us_to_ms $((r - t_ret)))")
        fi
        prev="sel-$i"
    done
    [[ -z "$prev" ]] || lab_docker rm -f "$prev" >/dev/null
    bench_out "selector_latency $label: ms from \`docker run -d --name sel-\$i -p 5432:80 $LAB_IMAGE\` returning" \
        "to the start of the first connection from client A that got HTTP 200 (tests/first_open.py, probing from" \
        "the moment docker run returns, a new connection every 2 ms), N=$BENCH_N: $(dist "${samples[@]}") timeouts=$tmo"
    bench_out "selector_latency $label: samples ms: ${samples[*]}"
    bench_out "selector_latency $label: docker run itself, ms: $(dist "${runs[@]}")"
}

bench_selector_latency() {
    local pol
    pol="$(bench_policy selector <<'EOF'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [5432]
containers = ["sel-*"]
EOF
)"
    latency_series "baseline (no dockfw)"
    bench_dockfw_start "$pol" || { not_measured selector_latency "dockfw did not start"; return 1; }
    wait_quiet 1 20 || true
    latency_series "dockfw (default deny; allow ports=[5432] containers=[\"sel-*\"])"
    bench_out "selector_latency dockfw: applies after $BENCH_N rounds: $(dfw_applies)"
}

# ---------------------------------------------------------------------------
# 2. burst_cpu
# ---------------------------------------------------------------------------

bench_burst_cpu() {
    local n="$BENCH_BURST" pol pid c0 c1 k0 k1 a0 a1 t0 t1 t2 i pids=() fails=0 opened
    pol="$(bench_policy burst <<EOF
[inbound]
default = "deny"

[[inbound.allow]]
ports = ["10001-$((10000 + n))"]
containers = ["burst-*"]
EOF
)"
    bench_dockfw_start "$pol" || { not_measured burst_cpu "dockfw did not start"; return 1; }
    wait_quiet 2 20 || true
    pid="$(bench_dfw_pid)" || { not_measured burst_cpu "no dockfw pid"; return 1; }
    c0="$(cpu_ticks "$pid")"; a0="$(dfw_applies)"; k0="$(child_ticks "$pid")"
    t0="$(now_us)"
    for ((i = 1; i <= n; i++)); do
        lab_run "burst-$i" -p "$((10000 + i)):80" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || fails=$((fails + 1)); done
    t1="$(now_us)"
    # Settled: every burst container shown open, then no apply for 3 s (60 s at most).
    local deadline=$((t1 + 60000000))
    while true; do
        opened="$(dfw_status | jq '[.ports[] | select(.container | startswith("burst-"))
            | select(.verdict == "open") | .container] | unique | length')"
        ((opened >= n - fails)) && break
        (($(now_us) < deadline)) || break
        sleep 0.2
    done
    wait_quiet 3 60 || true
    t2="$(now_us)"
    c1="$(cpu_ticks "$pid")"; a1="$(dfw_applies)"; k1="$(child_ticks "$pid")"
    local ms=$(( $(ticks_to_ms $((c1 - c0))) ))
    local ok=$((n - fails))
    local okport=no
    if wait_for 3 fast_probe 10001; then okport=yes; fi
    bench_out "burst_cpu: $n parallel \`docker run -d --name burst-\$i -p \$((10000+i)):80 $LAB_IMAGE\`" \
        "(policy: default deny; allow ports=[\"10001-$((10000 + n))\"] containers=[\"burst-*\"]; resync ${DOCKFW_RESYNC_SECS} s):" \
        "$ok started, $fails failed; all runs returned after $(us_to_ms $((t1 - t0))) ms;" \
        "settled (all shown open + 3 s without apply) after $(us_to_ms $((t2 - t0))) ms; $opened shown open; port 10001 open from A: $okport"
    bench_out "burst_cpu: dockfw CPU (utime+stime+cutime+cstime, ${BENCH_HZ} Hz ticks) over that window:" \
        "$ms ms total, $(awk -v m="$ms" -v n="$ok" 'BEGIN { printf "%.1f", (n ? m / n : 0) }') ms per container;" \
        "applies $a0 -> $a1 ($((a1 - a0)) for $ok containers); of it, children (firewall programs)" \
        "$(ticks_to_ms $((k1 - k0))) ms, the daemon itself $(ticks_to_ms $((c1 - c0 - k1 + k0))) ms"
}

# ---------------------------------------------------------------------------
# 3. conn_rate
# ---------------------------------------------------------------------------

CONN_URL=""

# ab_run LABEL — BENCH_CONN_SECS of ab from client A (new connection per request).
# Prints "RPS COMPLETE FAILED NON2XX".
ab_run() {
    local out rps done_ failed non2xx
    lab_ns conntrack -F >/dev/null 2>&1 || true
    # -t implies -n 50000; the -n after it lifts that cap so -t alone ends the run.
    out="$(nsenter --net="$(client_a_net)" ab -q -r -s 5 -c "$BENCH_CONN_C" \
        -t "$BENCH_CONN_SECS" -n 10000000 "$CONN_URL" 2>&1)" || true
    rps="$(awk -F': *' '/^Requests per second/ { split($2, a, " "); print a[1] }' <<<"$out")"
    done_="$(awk -F': *' '/^Complete requests/ { print $2 }' <<<"$out")"
    failed="$(awk -F': *' '/^Failed requests/ { print $2 }' <<<"$out")"
    non2xx="$(awk -F': *' '/^Non-2xx responses/ { print $2 }' <<<"$out")"
    if [[ -z "$rps" ]]; then
        lab_log "ab gave no rate: $(tail -n 5 <<<"$out")"
        echo "- - - -"
        return 0
    fi
    echo "$rps ${done_:-?} ${failed:-0} ${non2xx:-0}"
}

bench_conn_rate() {
    lab_pkg_installed apache2-utils || {
        lab_log "installing apache2-utils (ab)"
        apt-get -o DPkg::Lock::Timeout=300 update >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y apache2-utils >/dev/null
    } || { not_measured conn_rate "apache2-utils (ab) could not be installed"; return 1; }
    CONN_URL="http://$LAB_A_GW4:80/"
    lab_run web -p 80:80
    wait_for 5 fast_probe 80 || { not_measured conn_rate "web:80 not reachable without dockfw"; return 1; }
    local small big sets i x y rules="-" order_ok="-" elements="-"
    small="$(bench_policy small <<'EOF'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [80]
EOF
)"
    big="$LAB_DIR/bench-big.toml"
    {
        printf '[inbound]\ndefault = "deny"\n\n'
        # 10.0.0.1 … : never client A (198.51.100.2), so every new connection walks them all.
        for ((i = 0; i < BENCH_CONN_RULES; i++)); do
            x=$((i / 250)); y=$((i % 250 + 1))
            printf '[[inbound.allow]]\nports = [5432]\nfrom = ["10.%d.%d.%d/32"]\n\n' $((x / 256)) $((x % 256)) "$y"
        done
        printf '[[inbound.allow]]\nports = [80]\n'
    } >"$big"
    "$DOCKFW" check --config "$big" >/dev/null 2>&1 ||
        { not_measured conn_rate "the $BENCH_CONN_RULES-entry policy does not check: $("$DOCKFW" check --config "$big" 2>&1 | head -n 3)"; return 1; }
    # (d) the same number of sources as one entry's `from` list (a set), client A's
    # network last, and the container chosen by a selector (a set too).
    sets="$LAB_DIR/bench-sets.toml"
    {
        printf '[inbound]\ndefault = "deny"\n\n[[inbound.allow]]\nports = [80]\ncontainers = ["web*"]\nfrom = ['
        for ((i = 0; i < BENCH_CONN_RULES - 1; i++)); do
            x=$((i / 250)); y=$((i % 250 + 1))
            printf '"10.%d.%d.%d/32", ' $((x / 256)) $((x % 256)) "$y"
        done
        printf '"198.51.100.0/24"]\n'
    } >"$sets"
    "$DOCKFW" check --config "$sets" >/dev/null 2>&1 ||
        { not_measured conn_rate "the $BENCH_CONN_RULES-source policy does not check"; return 1; }

    declare -A sum=() cnt=() runs=()
    local r order cfg res rps comp failed non2xx
    for ((r = 1; r <= BENCH_CONN_ROUNDS; r++)); do
        if ((r % 2 == 1)); then order="a b c d"; else order="d c b a"; fi
        for cfg in $order; do
            case "$cfg" in
                a) dockfw_off ;;
                b) dockfw_off; bench_dockfw_start "$small" || { not_measured conn_rate "dockfw (small) did not start"; return 1; } ;;
                c)
                    dockfw_off
                    bench_dockfw_start "$big" || { not_measured conn_rate "dockfw (big) did not start"; return 1; }
                    if bench_nft; then
                        # The same shape in dockfw's own table: chain inbound.
                        rules="$(bench_nft_inbound | grep -c 'proto-dst 5432' || true)"
                        order_ok="$(bench_nft_inbound | awk '{ n++
                            if ($0 ~ /proto-dst 5432/) last5432 = n
                            if ($0 ~ /proto-dst 80( |$)/ && !first80) first80 = n }
                            END { print (first80 > last5432 ? "yes" : "no") }')"
                    else
                        rules="$(lab_save4 | grep -c '^-A DOCKFW-INBOUND .*--ctorigdstport 5432' || true)"
                        # The 80 allow must come after every 5432 rule in DOCKFW-INBOUND.
                        order_ok="$(lab_save4 | awk '/^-A DOCKFW-INBOUND / { n++
                            if ($0 ~ /--ctorigdstport 5432/) last5432 = n
                            if ($0 ~ /--ctorigdstport 80( |$)/ && !first80) first80 = n }
                            END { print (first80 > last5432 ? "yes" : "no") }')"
                    fi
                    ;;
                d)
                    dockfw_off
                    bench_dockfw_start "$sets" || { not_measured conn_rate "dockfw (sets) did not start"; return 1; }
                    if bench_nft; then
                        elements="$(lab_ns nft list set inet dockfw allow_1_src_v4 | tr ',{}' '\n\n\n' |
                            grep -cE '^[[:space:]]*[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' || true)"
                    else
                        elements="$(lab_ns ipset list dockfw-allow-1-src-v4 | grep -c '^[0-9]' || true)"
                    fi
                    ;;
            esac
            wait_for 5 fast_probe 80 || { not_measured conn_rate "web:80 not reachable in config $cfg"; return 1; }
            res="$(ab_run "$cfg")"
            read -r rps comp failed non2xx <<<"$res"
            runs[$cfg]="${runs[$cfg]:-}${runs[$cfg]:+ }$rps"
            if [[ "$rps" != - ]]; then
                sum[$cfg]="$(awk -v a="${sum[$cfg]:-0}" -v b="$rps" 'BEGIN { print a + b }')"
                cnt[$cfg]=$((${cnt[$cfg]:-0} + 1))
            fi
            bench_out "conn_rate run $r config $cfg: \`ab -q -r -s 5 -c $BENCH_CONN_C -t $BENCH_CONN_SECS -n 10000000 $CONN_URL\`" \
                "from client A: $rps req/s, complete=$comp failed=$failed non2xx=$non2xx"
        done
    done
    dockfw_off
    local mean_a=""
    [[ -n "${cnt[a]:-}" ]] && mean_a="$(awk -v s="${sum[a]}" -v n="${cnt[a]}" 'BEGIN { printf "%.2f", s / n }')"
    local desc mean ratio
    for cfg in a b c d; do
        case "$cfg" in
            a) desc="(a) no dockfw (Docker's rules only)" ;;
            b) desc="(b) dockfw, default deny + allow ports=[80]" ;;
            c) desc="(c) dockfw, default deny + $BENCH_CONN_RULES allow entries ports=[5432] from=[10.x.y.z/32] (not client A) before allow ports=[80]; $rules v4 DOCKFW-INBOUND rules on 5432, 80-allow after them: $order_ok" ;;
            d) desc="(d) dockfw, default deny + one allow entry ports=[80] containers=[\"web*\"] from=[$((BENCH_CONN_RULES - 1)) x 10.x.y.z/32, 198.51.100.0/24]: a source set of $elements elements and a selector set, one rule" ;;
        esac
        if [[ -n "${cnt[$cfg]:-}" ]]; then
            mean="$(awk -v s="${sum[$cfg]}" -v n="${cnt[$cfg]}" 'BEGIN { printf "%.2f", s / n }')"
            ratio="-"
            [[ -n "$mean_a" ]] && ratio="$(awk -v m="$mean" -v a="$mean_a" 'BEGIN { printf "%.3f", m / a }')"
            bench_out "conn_rate $desc: mean $mean req/s over ${cnt[$cfg]} runs (${runs[$cfg]}); ratio to (a) $ratio"
        else
            bench_out "conn_rate $desc: not measured: ab gave no rate"
        fi
    done
}

# ---------------------------------------------------------------------------
# 4. idle
# ---------------------------------------------------------------------------

# idle_window LABEL PID — BENCH_IDLE_SECS of the settled daemon PID: VmRSS every second,
# CPU over the window (and of it, the children: ipset, iptables-save). Prints the line.
idle_window() {
    local label="$1" pid="$2" c0 c1 k0 k1 a0 a1 t0 t1 i rss first="" last="" max=0 min=""
    c0="$(cpu_ticks "$pid")"; k0="$(child_ticks "$pid")"; a0="$(dfw_applies)"; t0="$(now_us)"
    for ((i = 0; i <= BENCH_IDLE_SECS; i++)); do
        rss="$(rss_kb "$pid")"
        [[ -n "$first" ]] || first="$rss"
        last="$rss"
        if ((rss > max)); then max="$rss"; fi
        if [[ -z "$min" ]] || ((rss < min)); then min="$rss"; fi
        ((i == BENCH_IDLE_SECS)) || sleep 1
    done
    t1="$(now_us)"
    c1="$(cpu_ticks "$pid")"; k1="$(child_ticks "$pid")"; a1="$(dfw_applies)"
    local ms; ms="$(ticks_to_ms $((c1 - c0)))"
    bench_out "idle$label: 3 containers (idle-web -p 80:80, idle-db -p 5432:80, idle-alt -p 8080:80)," \
        "policy default deny + allow 80 + allow 5432 containers=[\"idle-*\"], resync ${DOCKFW_RESYNC_SECS} s," \
        "after 3 s without apply; window $(us_to_ms $((t1 - t0))) ms:" \
        "VmRSS kB first=$first last=$last min=$min max=$max (sampled every 1 s);" \
        "CPU (utime+stime+cutime+cstime) $ms ms = $(awk -v m="$ms" -v w=$((t1 - t0)) 'BEGIN { printf "%.2f", m * 1000 / w * 100 }') %," \
        "of it children (ipset, iptables-save) $(ticks_to_ms $((k1 - k0))) ms;" \
        "applies $a0 -> $a1"
}

# foreign_set N — another tool's blocklist in the lab's namespace only: a `hash:ip` set
# `bench-foreign` of N addresses of 10.0.0.0/8 (never a target: set elements, no traffic),
# made by one `ipset restore`. Prints its entry count as ipset reports it.
foreign_set() {
    awk -v n="$1" 'BEGIN {
        printf "create bench-foreign hash:ip family inet hashsize 65536 maxelem %d\n", n < 65536 ? 65536 : n
        for (i = 1; i <= n; i++)
            printf "add bench-foreign 10.%d.%d.%d\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256
    }' | lab_ns ipset restore
    lab_ns ipset list -t bench-foreign | awk -F': ' '$1 == "Number of entries" { print $2 }'
}

bench_idle() {
    local pol pid entries
    pol="$(bench_policy idle <<'EOF'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [80]

[[inbound.allow]]
ports = [5432]
containers = ["idle-*"]
EOF
)"
    lab_run idle-web -p 80:80
    lab_run idle-db -p 5432:80
    lab_run idle-alt -p 8080:80
    bench_dockfw_start "$pol" || { not_measured idle "dockfw did not start"; return 1; }
    wait_quiet 3 30 || true
    pid="$(bench_dfw_pid)" || { not_measured idle "no dockfw pid"; return 1; }
    idle_window "" "$pid"
    ((BENCH_IDLE_FOREIGN > 0)) || return 0
    # The same daemon, now beside another tool's large set (nothing announces it: no pass).
    entries="$(foreign_set "$BENCH_IDLE_FOREIGN")" ||
        { not_measured idle "the foreign set could not be made"; return 1; }
    wait_quiet 3 30 || true
    idle_window " beside a foreign ipset (bench-foreign hash:ip, $entries entries of 10.0.0.0/8, made with ipset restore in the lab namespace)" "$pid"
}

# ---------------------------------------------------------------------------
# 5. policy_scale
# ---------------------------------------------------------------------------

# scale_runs LABEL CMD… — BENCH_SCALE_RUNS runs of CMD (output dropped; each must
# succeed), wall time of each in ms; prints the result line.
scale_runs() {
    local label="$1" i t0 t1 samples=(); shift
    for ((i = 0; i < BENCH_SCALE_RUNS; i++)); do
        t0="$(now_us)"
        "$@" >/dev/null
        t1="$(now_us)"
        samples+=("$(us_to_ms $((t1 - t0)))")
    done
    bench_out "policy_scale $label, ms: $(dist "${samples[@]}")"
}

# Policies at the limits, checked (`dockfw check`: parse and validate, the process
# included) and planned (`dockfw plan`: the lab engine's inventory of 10 containers read,
# the installed state observed, plan and transaction printed; nothing applied), on both
# backends: (1) 20,000 entries of one port and one source (20,000 rules, the e2e case
# fc_policy_limits' shape); (2) 66 entries of 300 ports x 300 IPv4 sources (19,800
# networks, at most 19,800 iptables rules: one per port range, none per source); then
# scale_sets.
bench_policy_scale() {
    local small="$LAB_DIR/bench-scale-small.toml" big="$LAB_DIR/bench-scale-big.toml" i e p
    {
        printf '[inbound]\ndefault = "deny"\n'
        for ((i = 0; i < 20000; i++)); do
            printf '[[inbound.deny]]\nports = [%d]\nfrom = ["10.%d.%d.0/24"]\n' \
                $((1000 + i % 5000)) $((i / 250 % 250)) $((i % 250))
        done
    } >"$small"
    local ports; ports="$(for ((p = 0; p < 300; p++)); do printf '%d, ' $((1000 + 7 * p)); done)"
    {
        printf '[inbound]\ndefault = "deny"\n'
        for ((e = 0; e < 66; e++)); do
            printf '[[inbound.allow]]\nports = [%s]\nfrom = [' "${ports%, }"
            for ((i = 0; i < 299; i++)); do printf '"10.%d.%d.%d", ' "$e" $((i / 250)) $((i % 250)); done
            printf '"10.%d.9.9"]\n' "$e"
        done
    } >"$big"
    for i in $(seq 1 10); do lab_run "scale-$i" -p "$((7000 + i)):80"; done
    local pol name
    for pol in "$small" "$big"; do
        name="$(basename "$pol" .toml)"
        dfw check --config "$pol" >/dev/null ||
            not_measured policy_scale "dockfw check refused $name: $(dfw check --config "$pol" 2>&1 | head -n 2)"
        bench_out "policy_scale $name: $(grep -c '^\[\[inbound' "$pol") entries, $(($(stat -c %s "$pol") / 1024)) KiB"
        scale_runs "$name: dockfw check --config $name.toml" dfw check --config "$pol"
        scale_runs "$name: dockfw plan --backend iptables --config $name.toml" \
            dfw plan --backend iptables --config "$pol"
        scale_runs "$name: dockfw plan --backend nftables --config $name.toml" \
            dfw plan --backend nftables --config "$pol"
    done
    scale_sets
}

# The set element limits: one allow entry of 5 ports and 65,536 IPv4 hosts (one entry's
# most, and the policy's most in all). Once per backend: the daemon started
# (the binary, with the lab engine's 10 containers) until its first reconcile is done,
# the one that writes those sets (one run each; then `dockfw uninstall`).
scale_sets() {
    local sets="$LAB_DIR/bench-scale-sets.toml" backend t0 t1
    awk 'BEGIN {
        print "[inbound]\ndefault = \"deny\""
        for (e = 0; e < 1; e++) {
            printf "[[inbound.allow]]\nports = [7001, 7003, 7005, 7007, 7009]\nfrom = ["
            for (i = 0; i < 65536; i++) printf "%s\"10.%d.%d.%d\"", (i ? ", " : ""), 10 + e, int(i / 256), i % 256
            print "]"
        }
    }' >"$sets"
    dfw check --config "$sets" >/dev/null ||
        { not_measured policy_scale "dockfw check refused the set limits: $(dfw check --config "$sets" 2>&1 | head -n 2)"; return 1; }
    for backend in iptables nftables; do
        t0="$(now_us)"
        DOCKFW_BACKEND="$backend" bench_dockfw_start "$sets" ||
            { not_measured policy_scale "the daemon did not settle with the set limits ($backend)"; return 1; }
        t1="$(now_us)"
        bench_out "policy_scale bench-scale-sets: 1 entry x 65,536 sources ($(($(stat -c %s "$sets") / 1024)) KiB)," \
            "DOCKFW_BACKEND=$backend: daemon start to first reconcile done, ms: $(us_to_ms $((t1 - t0)))"
        dockfw_stop
        DOCKFW_BACKEND="$backend" dfw uninstall >/dev/null
    done
}

# ---------------------------------------------------------------------------
# 6. scale
# ---------------------------------------------------------------------------

# scale_fill N — N more running containers `fill-$i` (no published port; chosen by the
# policy's selector, so their addresses are in its sets), 8 `docker run` at a time.
# Prints how many run.
scale_fill() {
    seq 1 "$1" | xargs -P 8 -I{} docker -H "unix://$LAB_SOCK" run -d --name "fill-{}" \
        "$LAB_IMAGE" >/dev/null 2>"$LAB_DIR/scale-fill.err" || true
    lab_docker ps -q --filter name=fill- | wc -l
}

# scale_cpu LABEL — dockfw's CPU (with its children) idle for BENCH_SCALE_IDLE_SECS (its
# background: the ipset poll of the iptables backend reads sets that grow with the
# host), then over BENCH_SCALE_ROUNDS times `docker run -d --name cpu-$i -p 5432:80` and
# `docker rm -f cpu-$i`, 0.3 s apart, until no apply for 2 s after the last: per round,
# as measured and net of the idle rate over the same window. Prints the result line.
scale_cpu() {
    local label="$1" pid c0 c1 k0 k1 a0 a1 t0 t1 i ms i0 i1 ti0 ti1 idle net
    pid="$(bench_dfw_pid)" || return 1
    i0="$(cpu_ticks "$pid")"; ti0="$(now_us)"
    sleep "$BENCH_SCALE_IDLE_SECS"
    i1="$(cpu_ticks "$pid")"; ti1="$(now_us)"
    idle="$(ticks_to_ms $((i1 - i0)))"
    c0="$(cpu_ticks "$pid")"; k0="$(child_ticks "$pid")"; a0="$(dfw_applies)"; t0="$(now_us)"
    for ((i = 1; i <= BENCH_SCALE_ROUNDS; i++)); do
        lab_run "cpu-$i" -p 5432:80
        sleep 0.3
        lab_docker rm -f "cpu-$i" >/dev/null
        sleep 0.3
    done
    wait_quiet 2 30 || true
    t1="$(now_us)"
    c1="$(cpu_ticks "$pid")"; k1="$(child_ticks "$pid")"; a1="$(dfw_applies)"
    ms="$(ticks_to_ms $((c1 - c0)))"
    net="$(awk -v m="$ms" -v i="$idle" -v w=$((t1 - t0)) -v iw=$((ti1 - ti0)) -v n="$BENCH_SCALE_ROUNDS" \
        'BEGIN { printf "%.1f", (m - i * w / iw) / n }')"
    bench_out "scale $label: dockfw CPU over $BENCH_SCALE_ROUNDS rounds of \`docker run -d --name cpu-\$i -p 5432:80\`" \
        "+ \`docker rm -f cpu-\$i\` (0.3 s apart; window $(us_to_ms $((t1 - t0))) ms, to 2 s without apply):" \
        "$ms ms, $(awk -v m="$ms" -v n="$BENCH_SCALE_ROUNDS" 'BEGIN { printf "%.1f", m / n }') ms per start+remove" \
        "(${BENCH_HZ} Hz ticks; children $(ticks_to_ms $((k1 - k0))) ms); applies $a0 -> $a1;" \
        "idle before: $idle ms in $(us_to_ms $((ti1 - ti0))) ms; net of that rate: $net ms per start+remove"
}

# scale_point LABEL POLICY — at the host's current container count: the engine's own
# readiness (no dockfw), then per backend of BENCH_SCALE_BACKENDS dockfw's CPU per
# start+remove and its selector latency, and what its inventory did.
scale_point() {
    local label="$1" pol="$2" backend running
    running="$(lab_docker ps -q | wc -l)"
    dockfw_off
    latency_series "$label, $running running, baseline (no dockfw)"
    for backend in $BENCH_SCALE_BACKENDS; do
        dockfw_off
        DOCKFW_BACKEND="$backend" bench_dockfw_start "$pol" ||
            { not_measured scale "dockfw ($backend) did not start at $label"; return 1; }
        wait_quiet 2 60 || true
        scale_cpu "$label, $running running, dockfw $backend" || return 1
        latency_series "$label, $running running, dockfw $backend"
        bench_out "scale $label, dockfw $backend: inventory $(dfw_status | jq -c '.inventory
            | {inspects, listings, repairs}'); passes $(dfw_status | jq -c '.reconcile.passes
            | {count, failures}')"
    done
    dockfw_off
}

bench_scale() {
    local pol n t0 t1
    # The periodic full check off (1 h): what is measured is the cost of events.
    local DOCKFW_RESYNC_SECS=3600
    pol="$(bench_policy scale <<'EOF'
[inbound]
default = "deny"

[[inbound.allow]]
ports = [5432]
containers = ["sel-*", "cpu-*", "fill-*"]
EOF
)"
    scale_point "empty host" "$pol" || return 1
    t0="$(now_us)"
    n="$(scale_fill "$BENCH_SCALE_N")"
    t1="$(now_us)"
    bench_out "scale: \`docker run -d --name fill-\$i $LAB_IMAGE\` x $BENCH_SCALE_N, 8 at a time:" \
        "$n running after $(us_to_ms $((t1 - t0))) ms; $(grep -c . "$LAB_DIR/scale-fill.err" || true) error lines" \
        "($(head -n 1 "$LAB_DIR/scale-fill.err" | cut -c1-160)); MemAvailable now $(awk '/MemAvailable/ { print $2 }' /proc/meminfo) kB"
    scale_point "full host" "$pol" || return 1
}

# ---------------------------------------------------------------------------
# 7. api_calls
# ---------------------------------------------------------------------------

# What the engine's API calls cost that dockfw makes: 20 of each, one container running
# (`api-1 -p 5432:80`), each a new `curl --unix-socket` request (connection included).
bench_api_calls() {
    local id path i ts shown
    lab_run api-1 -p 5432:80
    id="$(lab_docker inspect -f '{{.Id}}' api-1)"
    for path in /version /containers/json /networks "/containers/$id/json" /networks/bridge; do
        ts=()
        for ((i = 0; i < 20; i++)); do
            ts+=("$(curl -sf -o /dev/null -w '%{time_total}' --unix-socket "$LAB_SOCK" "http://docker$path" |
                awk '{ printf "%.2f", $1 * 1000 }')")
        done
        shown="${path/$id/\{id\}}"
        bench_out "api_calls: \`curl --unix-socket docker.sock http://docker$shown\` x 20, ms: $(dist "${ts[@]}")"
    done
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

run_bench() {
    local name="$1" log="$LAB_DIR/bench-$1.log" t0 rc=0 la0
    lab_reset >"$log" 2>&1 || true
    rm -f "$LAB_DIR/bench-shas"
    la0="$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "## $name" >&2
    t0="$SECONDS"
    # A subshell, so a failing step ends this benchmark only; results go out as they come.
    # Not under `||`: bash would ignore set -e inside the subshell then.
    set +e
    (set -euo pipefail; "bench_$name") 2>>"$log"
    rc=$?
    set -e
    if ((rc != 0)); then
        grep -q "^# bench: $name: not measured" "$BENCH_SUMMARY" ||
            bench_out "$name: not measured: failed (exit $rc); log tail: $(tail -n 3 "$log" | tr '\n' ' ')"
        BENCH_FAILED=$((BENCH_FAILED + 1))
    fi
    # Context: other work on the machine (load) and the daemon binary(ies) that ran.
    bench_out "$name: took $((SECONDS - t0)) s; load average (1/5/15 min) before $la0, after" \
        "$(cut -d' ' -f1-3 /proc/loadavg); dockfw binary sha256: $(sort -u "$LAB_DIR/bench-shas" 2>/dev/null | paste -sd, -)"
    lab_reset >>"$log" 2>&1 || true
}

main() {
    [[ "$(id -u)" == 0 ]] || { echo "bench.sh must run as root" >&2; exit 2; }
    local names=("$@") n b found
    ((${#names[@]} > 0)) || names=("${BENCH_DEFAULT[@]}")
    for n in "${names[@]}"; do
        found=no
        for b in "${BENCHES[@]}"; do [[ "$n" == "$b" ]] && found=yes; done
        [[ "$found" == yes ]] || { echo "unknown benchmark '$n' (one of: ${BENCHES[*]})" >&2; exit 2; }
    done
    # The binary is built elsewhere (cargo build --release); wait for it, never build it.
    local i
    for ((i = 0; i < 60; i++)); do
        [[ ! -x "$DOCKFW" ]] || break
        ((i > 0)) || lab_log "waiting for $DOCKFW"
        sleep 10
    done
    [[ -x "$DOCKFW" ]] || { echo "no dockfw binary at $DOCKFW" >&2; exit 2; }
    lab_install_deps
    BENCH_SUMMARY="$(mktemp /tmp/dockfw-bench.XXXXXX)"
    trap 'lab_down; rm -f "$BENCH_SUMMARY"' EXIT
    trap 'exit 130' INT TERM
    local t0=$SECONDS start
    start="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    lab_up
    local engine
    engine="$(lab_docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo '?')"
    BENCH_FAILED=0
    for n in "${names[@]}"; do
        run_bench "$n"
    done
    echo
    echo "=== dockfw bench summary ==="
    echo "# started $start, total $((SECONDS - t0)) s (lab up included)"
    echo "# machine: $(nproc) CPUs, kernel $(uname -r), $(awk '/MemTotal/ { print $2 " kB RAM" }' /proc/meminfo)"
    echo "# engine: Docker $engine; $(iptables -V); ab: $(ab -V 2>/dev/null | head -n 1 || echo 'not installed')"
    echo "# dockfw: $DOCKFW (at the end: $(stat -c '%y' "$DOCKFW" | cut -d. -f1), sha256 $(sha256sum "$DOCKFW" | cut -c1-16)); DOCKFW_RESYNC_SECS=$DOCKFW_RESYNC_SECS"
    cat "$BENCH_SUMMARY"
    ((BENCH_FAILED == 0))
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
