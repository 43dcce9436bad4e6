#!/usr/bin/env bash
# tests/lab.sh — a throw-away Docker lab for dockfw's end-to-end tests.
#
# Source it (`. tests/lab.sh`), then:
#   lab_install_deps        install the Debian packages the lab needs (skips what is there)
#   lab_up                  namespaces + veths + a private dockerd + the test image
#   lab_down                remove everything lab_up made (safe to call twice; use in a trap)
#   lab_docker ARGS…        docker CLI against the lab engine
#   lab_ns CMD…             run CMD in the docker-host network namespace
#   lab_client a|b CMD…     run CMD in client A's / client B's namespace
#   tcp_try CLIENT ADDR PORT [CONNECT_TIMEOUT]  one connection: http|open|refused|timeout
#   probe CLIENT ADDR PORT [CONNECT_TIMEOUT]   0 if an HTTP GET from CLIENT succeeds (IPv4)
#   probe6 CLIENT ADDR PORT [CONNECT_TIMEOUT]  the same as probe (kept for older callers)
#   udp_try CLIENT ADDR PORT [TIMEOUT]          one datagram to a UDP echo: echo|refused|silent
#   dockfw_start POLICY     start the daemon in the host namespace, wait until it reconciled
#   dockfw_stop             SIGTERM the daemon (rules stay installed)
#   dfw ARGS…               the dockfw CLI inside the host namespace (DOCKER_HOST set)
#   dfw_status              `dockfw status --json` against the running daemon
#   wait_for SECS CMD…      poll CMD every 0.2 s until it succeeds or SECS pass
#   prober_start NAME CLIENT FAM PORT   background connection attempts (log: prober-NAME.log)
#   prober_stop NAME        stop it, print "ATTEMPTS SUCCESSES"; prober_successes NAME
#   lab_engine_stop         stop dockerd as a shutdown would (containers stay defined)
#   lab_tables_wipe         firewall tables, bridges, veths, ip_forward as after a reboot
#   lab_fetch_engine DIR SUITE   another engine from Debian SUITE (trixie 26.1, forky 28.5)
#   lab_engine_extract ARCHIVE SHA256 DIR   an engine archive (Docker 29.7.2) into DIR/bin
#   LAB_DOCKERD_DIR=DIR         the lab's dockerd (and what it starts) from DIR, first on PATH
#   LAB_DOCKERD_FIREWALL=nftables   that engine in its nftables mode (Docker 29)
#   LAB_USERLAND_PROXY=false    the engine without its userland proxy (docker-proxy); default
#                               true, Docker's own default
#   lab_engine_userland_proxy true|false   restart the engine with (without) docker-proxy, for
#                               one case; lab_reset restarts it as LAB_USERLAND_PROXY says
#
# Addresses (documentation / ULA ranges only; nothing ever leaves the namespaces):
#   host ns  vha 198.51.100.1/24 fd10:a::1/64   <->  client A eth0 198.51.100.2 fd10:a::2
#   host ns  vhb 203.0.113.1/24  fd10:b::1/64   <->  client B eth0 203.0.113.2  fd10:b::2
#   docker0  172.17.0.0/16 + fd00:d0c:1::/64 (inside the host ns only)
#
# Bash style: every function returns non-zero on failure; the callers run with set -euo pipefail.

# ---------------------------------------------------------------------------
# Fixed facts and per-run names
# ---------------------------------------------------------------------------

LAB_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Short unique suffix: pid + 4 random hex digits, so parallel runs never collide.
LAB_ID="${LAB_ID:-$$$(printf '%04x' $((RANDOM % 65536)))}"
LAB_NS_H="dfw-h-$LAB_ID"
LAB_NS_A="dfw-a-$LAB_ID"
LAB_NS_B="dfw-b-$LAB_ID"
LAB_NSPATH="/var/run/netns/$LAB_NS_H"
LAB_DIR=""                       # set by lab_up (mktemp)
LAB_SOCK=""                      # docker socket of the lab engine
LAB_DFW_SOCK=""                  # dockfw control socket
LAB_DFW_PID=""                   # pid of the running dockfw daemon
LAB_DFW_LOG=""                   # its log file
LAB_DOCKERD_PID=""
LAB_IMAGE="dockfw-test"
LAB_V6_NET_SEQ=1                 # next fd00:d0c:N::/64 for lab_net_create

LAB_A_IP4="198.51.100.2"; LAB_A_GW4="198.51.100.1"
LAB_A_IP6="fd10:a::2";    LAB_A_GW6="fd10:a::1"
LAB_B_IP4="203.0.113.2";  LAB_B_GW4="203.0.113.1"
LAB_B_IP6="fd10:b::2";    LAB_B_GW6="fd10:b::1"

DOCKFW="${DOCKFW:-$LAB_REPO/target/release/dockfw}"
# How often the daemon re-checks its jumps/chains; short so tests stay fast.
export DOCKFW_RESYNC_SECS="${DOCKFW_RESYNC_SECS:-2}"

lab_log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

# True when the Debian package is installed.
lab_pkg_installed() {
    # No `| grep -q`: under pipefail an early-exiting grep can fail the producer (SIGPIPE).
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *'install ok installed'* ]]
}

# Install docker.io, iptables, … — but only run apt-get when something is missing.
lab_install_deps() {
    # gcc and libc6-dev: lab_image_up compiles tests/udp_echo.c statically. python3: udp_try,
    # tests/dns_answer.py (the DNS server of outbound_dns) and the other tests/*.py.
    local pkgs=(docker.io iptables ipset nftables busybox-static curl iproute2 conntrack jq xz-utils
        python3 python3-prometheus-client gcc libc6-dev)
    local missing=() p
    for p in "${pkgs[@]}"; do
        lab_pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    lab_log "installing: ${missing[*]}"
    # Lock timeout: another apt run (a parallel job, unattended upgrades) may hold dpkg.
    apt-get -o DPkg::Lock::Timeout=300 update
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}"
}

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

# wait_for SECS CMD… — run CMD every 0.2 s until it succeeds; non-zero after SECS.
wait_for() {
    local secs="$1"; shift
    local deadline=$(( $(date +%s%N) + secs * 1000000000 ))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if (( $(date +%s%N) >= deadline )); then
            return 1
        fi
        sleep 0.2
    done
}

# Run a command in the docker-host namespace. nsenter (not `ip netns exec`) so
# /sys and cgroups stay the host's.
lab_ns() { nsenter --net="$LAB_NSPATH" "$@"; }

# Namespace name of client a|b.
lab_client_ns() {
    case "$1" in
        a|A) echo "$LAB_NS_A" ;;
        b|B) echo "$LAB_NS_B" ;;
        *) echo "$1" ;;
    esac
}

# Run a command in a client namespace.
lab_client() {
    local ns; ns="$(lab_client_ns "$1")"; shift
    ip netns exec "$ns" "$@"
}

# docker CLI against the lab engine.
lab_docker() { docker -H "unix://$LAB_SOCK" "$@"; }

# iptables-save of the filter table inside the lab, without counters/comments.
lab_save4() { lab_ns iptables-save -t filter | grep -v '^[#:]' ; }
lab_save6() { lab_ns ip6tables-save -t filter | grep -v '^[#:]' ; }

# tcp_try CLIENT ADDR PORT [CONNECT_TIMEOUT] — one new TCP connection from client a|b to
# ADDR:PORT (an IPv6 ADDR without brackets) and an HTTP GET on it; prints what happened:
#   http     the handshake completed and an HTTP 2xx answer came
#   open     the handshake completed, no 2xx answer (another service, a reset after it, …)
#   refused  no handshake, the SYN was answered: a reset (nothing listens) or an ICMP error
#            (curl exit 7). Under a drop policy this means the SYN got through.
#   timeout  no handshake and no answer within CONNECT_TIMEOUT (default 2 s): dropped
#   error:N  anything else (curl exit N without a handshake)
# The handshake is curl's %{time_connect}: 0 unless the TCP handshake completed.
tcp_try() {
    local ns url tc rc=0
    ns="$(lab_client_ns "$1")"
    if [[ "$2" == *:* ]]; then url="http://[$2]:$3/"; else url="http://$2:$3/"; fi
    tc="$(ip netns exec "$ns" curl -g -sf -o /dev/null -w '%{time_connect}' \
        --connect-timeout "${4:-2}" -m "$(awk -v t="${4:-2}" 'BEGIN { print t + 1 }')" \
        "$url" 2>/dev/null)" || rc=$?
    if [[ -n "$tc" && "$tc" != 0.000000 ]]; then
        if ((rc == 0)); then echo http; else echo open; fi
    else
        case "$rc" in 7) echo refused ;; 28) echo timeout ;; *) echo "error:$rc" ;; esac
    fi
}

# probe CLIENT ADDR PORT [CONNECT_TIMEOUT] — 0 if HTTP GET http://ADDR:PORT/ works from CLIENT
# (a handshake and a 2xx answer: the service is reachable).
probe() { [[ "$(tcp_try "$@")" == http ]]; }

# probe6 — probe under its older name (probe takes IPv6 addresses, without brackets, too).
probe6() { probe "$@"; }

# udp_try CLIENT ADDR PORT [TIMEOUT] — one datagram from client a|b (a fresh socket, so a
# fresh source port and a new conntrack entry) to ADDR:PORT, where tests/udp_echo.c echoes;
# prints what came back within TIMEOUT seconds (default 1):
#   echo     the datagram came back unchanged
#   refused  an ICMP port unreachable (the datagram got through; nothing listens)
#   silent   nothing: dropped (or lost)
udp_try() {
    local ns; ns="$(lab_client_ns "$1")"
    ip netns exec "$ns" /usr/bin/python3 -I -c '
import os, socket, sys
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(timeout)
token = os.urandom(8).hex().encode()
try:
    s.connect((addr, port))
    s.send(token)
    print("echo" if s.recv(64) == token else "other")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("silent")
' "$2" "$3" "${4:-1}"
}

# Container's IPv4 / IPv6 address (on its first network).
# shellcheck disable=SC2016  # Go templates, not shell expansions
lab_cip4() {
    lab_docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" | awk '{print $1}'
}
# shellcheck disable=SC2016
lab_cip6() {
    lab_docker inspect -f '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{end}}' "$1" | awk '{print $1}'
}

# lab_net_create NAME [docker network create opts…] — user network with IPv4 and IPv6
# (its own fd00:d0c:N::/64) so published ports get ip6tables DNAT, not docker-proxy.
lab_net_create() {
    local name="$1"; shift
    LAB_V6_NET_SEQ=$((LAB_V6_NET_SEQ + 1))
    lab_docker network create --ipv6 --subnet "fd00:d0c:$LAB_V6_NET_SEQ::/64" "$@" "$name" >/dev/null
}

# lab_client_httpd a|b PORT — busybox httpd in a client namespace (killed by lab_reset).
# Serves "client-<a|b>" as its index page.
lab_client_httpd() {
    local client="$1" port="$2" ns www pid
    ns="$(lab_client_ns "$client")"
    www="$LAB_DIR/www-$client"
    mkdir -p "$www"
    echo "client-$client" >"$www/index.html"
    ip netns exec "$ns" busybox httpd -f -p "$port" -h "$www" >/dev/null 2>&1 &
    pid=$!
    disown "$pid"
    echo "$pid" >>"$LAB_DIR/client-httpd.pids"
    wait_for 5 ip netns exec "$ns" curl -sf -o /dev/null -m 2 "http://127.0.0.1:$port/"
}

# lab_cfetch CONTAINER ADDR PORT — HTTP GET from inside a container, body on stdout.
# (busybox wget segfaults on this kernel even inside containers; nc works.)
# shellcheck disable=SC2016  # $0/$1 expand in the container's sh
lab_cfetch() {
    lab_docker exec "$1" sh -c \
        'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 "$0" "$1"' "$2" "$3" | tr -d '\r' | tail -n 1
}

# Start a test container serving HTTP on 80: lab_run NAME [docker run opts…]
lab_run() {
    local name="$1"; shift
    lab_docker run -d --name "$name" "$@" "$LAB_IMAGE" >/dev/null
}

# ---------------------------------------------------------------------------
# Probers: a background loop of connection attempts from a client, for checks like
# "never reachable while …" or "reachable again within N s"
# ---------------------------------------------------------------------------

# lab_proc_start PID — the process's start time (clock ticks since boot), empty if it is
# gone or a zombie; with the pid it names one process for good (pids are reused).
lab_proc_start() {
    local s f
    s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    s="${s##*) }"               # after "pid (comm) ": state is field 0, starttime 19
    read -ra f <<<"$s"
    [[ "${f[0]}" == Z ]] || echo "${f[19]}"
}

# prober_start NAME CLIENT FAM PORT — from client a|b, a new HTTP connection to the docker
# host's address for that client and family 4|6 (A: LAB_A_GW4/6, B: LAB_B_GW4/6) on PORT,
# again and again: curl in the client namespace (as `probe`) with a 0.3 s connect timeout,
# 1 s in all, then a 0.05 s pause. Stops by itself after 120 s or 2000 attempts. One line
# per attempt in $LAB_DIR/prober-NAME.log: "MS ok" (the TCP handshake completed, whatever
# came next: a connection was made), "MS rst" (no handshake, the SYN was answered with a
# reset or an ICMP error) or "MS no" (no answer: dropped), MS = the attempt's start in Unix
# milliseconds. Only "ok" counts as a success. Its pid and start time go to
# $LAB_DIR/prober-NAME.pid; lab_reset and lab_down stop every prober. Restarting a NAME
# stops the old loop and starts a new log.
prober_start() {
    local name="$1" client="$2" fam="$3" port="$4" ns addr log pid
    case "$client$fam" in
        a4|A4) addr="$LAB_A_GW4" ;; a6|A6) addr="[$LAB_A_GW6]" ;;
        b4|B4) addr="$LAB_B_GW4" ;; b6|B6) addr="[$LAB_B_GW6]" ;;
        *) lab_log "prober_start: want CLIENT a|b and FAM 4|6, got '$client' '$fam'"; return 1 ;;
    esac
    ns="$(lab_client_ns "$client")"
    log="$LAB_DIR/prober-$name.log"
    prober_kill "$name"
    : >"$log"
    (
        trap - EXIT INT TERM HUP
        t="${EPOCHREALTIME//[.,]/}"; deadline=$((t / 1000 + 120000))
        for ((i = 0; i < 2000; i++)); do
            t="${EPOCHREALTIME//[.,]/}"; t=$((t / 1000))
            ((t < deadline)) || break
            rc=0
            tc="$(ip netns exec "$ns" curl -g -s -o /dev/null -w '%{time_connect}' \
                --connect-timeout 0.3 -m 1 "http://$addr:$port/")" || rc=$?
            if [[ -n "$tc" && "$tc" != 0.000000 ]]; then
                echo "$t ok" >>"$log"
            elif ((rc == 7)); then
                echo "$t rst" >>"$log"
            else
                echo "$t no" >>"$log"
            fi
            sleep 0.05
        done
    ) </dev/null >/dev/null 2>&1 &
    pid=$!
    disown "$pid"
    echo "$pid $(lab_proc_start "$pid")" >"$LAB_DIR/prober-$name.pid"
}

# prober_kill NAME — end prober NAME's loop (and its attempt in flight) if it still runs.
prober_kill() {
    local f="$LAB_DIR/prober-$1.pid" pid start i kids
    [[ -s "$f" ]] || return 0
    read -r pid start <"$f"
    if [[ -n "$start" && "$(lab_proc_start "$pid")" == "$start" ]]; then
        kids="$(pgrep -P "$pid" || true)"
        kill -TERM "$pid" 2>/dev/null || true
        # shellcheck disable=SC2086  # a list of pids
        [[ -z "$kids" ]] || kill -TERM $kids 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            [[ "$(lab_proc_start "$pid")" == "$start" ]] || break
            sleep 0.1
        done
    fi
    rm -f "$f"
}

# prober_counts NAME — "ATTEMPTS SUCCESSES" in prober NAME's log so far.
prober_counts() {
    local log="$LAB_DIR/prober-$1.log"
    [[ -f "$log" ]] || { lab_log "no prober $1"; return 1; }
    awk '{ n++ } $2 == "ok" { k++ } END { print n + 0, k + 0 }' "$log"
}

# prober_stop NAME — stop prober NAME; print "ATTEMPTS SUCCESSES".
prober_stop() {
    prober_kill "$1"
    prober_counts "$1"
}

# prober_successes NAME — successful attempts so far (the prober keeps running).
prober_successes() {
    local c
    c="$(prober_counts "$1")" || return 1
    echo "${c#* }"
}

# Stop every prober of this lab (lab_reset, lab_down).
prober_kill_all() {
    local f n
    [[ -n "$LAB_DIR" ]] || return 0
    for f in "$LAB_DIR"/prober-*.pid; do
        [[ -e "$f" ]] || continue
        n="${f##*/prober-}"
        prober_kill "${n%.pid}"
    done
}

# lab_apt_mirror — the URI of this machine's main Debian archive, read from its own apt
# configuration (no host name is written here): deb822 stanzas in sources.list.d/*.sources
# (Types/URIs/Suites/Enabled) and one-line `deb [opts] URI SUITE …` entries in sources.list
# and sources.list.d/*.list, in apt's order. The first entry whose suites include this
# machine's codename (e.g. bookworm) and that is not a security archive wins. A
# `mirror+file:` URI is resolved to the first entry of its list. LAB_APT_MIRROR overrides.
lab_apt_mirror() {
    if [[ -n "${LAB_APT_MIRROR:-}" ]]; then echo "${LAB_APT_MIRROR%/}"; return 0; fi
    local codename list=/etc/apt/sources.list parts=/etc/apt/sources.list.d f uri=""
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || { lab_log "no VERSION_CODENAME in /etc/os-release"; return 1; }
    if command -v apt-config >/dev/null; then
        eval "$(apt-config shell list Dir::Etc::sourcelist/f parts Dir::Etc::sourceparts/d)"
    fi
    for f in "$list" "${parts%/}"/*.list "${parts%/}"/*.sources; do
        [[ -f "$f" ]] || continue
        if [[ "$f" == *.sources ]]; then
            # shellcheck disable=SC2016
            uri="$(awk -v cn="$codename" '
                function norm(s) { gsub(/[ \t]+/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
                function flush(  t, u, s) {
                    t = " " norm(f["types"]) " "; s = " " norm(f["suites"]) " "
                    u = norm(f["uris"]); sub(/ .*/, "", u)
                    if (!found && index(t, " deb ") && tolower(norm(f["enabled"])) != "no" &&
                        index(s, " " cn " ") && u != "" && u !~ /security/ && s !~ /-security /) {
                        print u; found = 1
                    }
                    split("", f); key = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }
                { i = index($0, ":"); if (i == 0) next
                  key = tolower(substr($0, 1, i - 1)); f[key] = substr($0, i + 1) }
                END { flush() }' "$f")"
        else
            uri="$(awk -v cn="$codename" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == cn && $i !~ /security/ && !found) { print $i; found = 1 }
                }' "$f")"
        fi
        [[ -n "$uri" ]] && break
    done
    [[ -n "$uri" ]] || { lab_log "no apt source for suite $codename (not -security) found"; return 1; }
    if [[ "$uri" == mirror+file:* ]]; then
        f="${uri#mirror+file:}"; f="/${f#"${f%%[!/]*}"}"
        uri="$(awk '$1 !~ /^#/ && NF { print $1; exit }' "$f")"
        [[ -n "$uri" ]] || { lab_log "empty mirror list $f"; return 1; }
    fi
    [[ "$uri" == http://* || "$uri" == https://* ]] ||
        { lab_log "apt source '$uri' is not http(s); set LAB_APT_MIRROR"; return 1; }
    echo "${uri%/}"
}

# lab_fetch_engine DIR [SUITE] — put another engine's dockerd and docker-proxy in
# DIR/usr/sbin: the docker.io package of Debian SUITE (default trixie: Docker 26.1; forky:
# 28.5), which runs on bookworm's libc, containerd and runc. The package's current file
# name and SHA256 are read from SUITE's Packages index on the machine's own apt mirror
# (lab_apt_mirror), so point releases work. Kept in DIR for the next run (DIR/.suite).
# Prints the engine's `dockerd --version`.
lab_fetch_engine() {
    local dir="$1" suite="${2:-trixie}" mirror arch entries line best="" ver file sum
    if [[ -x "$dir/usr/sbin/dockerd" && "$(cat "$dir/.suite" 2>/dev/null)" == "$suite" ]]; then
        "$dir/usr/sbin/dockerd" --version
        return 0
    fi
    mirror="$(lab_apt_mirror)" || return 1
    arch="$(dpkg --print-architecture)"
    lab_log "fetching docker.io of $suite/$arch from $mirror"
    # awk reads the whole index (no early exit, so no SIGPIPE under pipefail).
    entries="$(curl -fsS -m 180 "$mirror/dists/$suite/main/binary-$arch/Packages.xz" | xz -dc |
        awk -v RS= -F '\n' '{
            p = v = fn = s = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^Package: /) p = substr($i, 10)
                else if ($i ~ /^Version: /) v = substr($i, 10)
                else if ($i ~ /^Filename: /) fn = substr($i, 11)
                else if ($i ~ /^SHA256: /) s = substr($i, 9)
            }
            if (p == "docker.io") print v, fn, s
        }')" || { lab_log "cannot read $suite's Packages index"; return 1; }
    # The highest version, should the index list more than one.
    while read -r ver file sum; do
        [[ -n "$ver" ]] || continue
        if [[ -z "$best" ]] || dpkg --compare-versions "$ver" gt "${best%% *}"; then
            best="$ver $file $sum"
        fi
    done <<<"$entries"
    [[ -n "$best" ]] || { lab_log "docker.io not found in $suite's index"; return 1; }
    read -r ver file sum <<<"$best"
    lab_log "docker.io $ver: $file"
    mkdir -p "$dir"
    curl -fsS -m 600 -o "$dir/docker.io.deb" "$mirror/$file" || return 1
    sha256sum -c --quiet - <<<"$sum  $dir/docker.io.deb" ||
        { lab_log "SHA256 mismatch for $file"; rm -f "$dir/docker.io.deb"; return 1; }
    rm -rf "$dir/usr" "$dir/etc" "$dir/lib" "$dir/.suite"
    dpkg-deb -x "$dir/docker.io.deb" "$dir" || return 1
    rm -f "$dir/docker.io.deb"
    [[ -x "$dir/usr/sbin/dockerd" ]] || { lab_log "no usr/sbin/dockerd in $file"; return 1; }
    echo "$suite" >"$dir/.suite"
    "$dir/usr/sbin/dockerd" --version
}

# lab_engine_extract ARCHIVE SHA256 DIR — an engine archive of ../shared/engines (see
# ENGINES.md there: Docker 29.7.2 with its own containerd and runc in bin/) extracted into
# DIR, after its SHA256 is checked; DIR/bin is then a LAB_DOCKERD_DIR. Kept in DIR for
# the next run (DIR/.sha256 names what it holds). Prints the engine's `dockerd --version`.
lab_engine_extract() {
    local archive="$1" sum="$2" dir="$3"
    if [[ -x "$dir/bin/dockerd" && "$(cat "$dir/.sha256" 2>/dev/null)" == "$sum" ]]; then
        "$dir/bin/dockerd" --version
        return 0
    fi
    [[ -f "$archive" ]] || { lab_log "no engine archive $archive"; return 1; }
    sha256sum -c --quiet - <<<"$sum  $archive" ||
        { lab_log "SHA256 mismatch for $archive (want $sum)"; return 1; }
    rm -rf "$dir"
    mkdir -p "$dir"
    # The archive holds one top directory (docker-29.7.2/bin/…).
    tar -xJf "$archive" -C "$dir" --strip-components=1 || return 1
    [[ -x "$dir/bin/dockerd" && -x "$dir/bin/containerd" && -x "$dir/bin/runc" ]] ||
        { lab_log "$archive has no bin/dockerd, bin/containerd and bin/runc"; return 1; }
    echo "$sum" >"$dir/.sha256"
    "$dir/bin/dockerd" --version
}

# ---------------------------------------------------------------------------
# Bring-up
# ---------------------------------------------------------------------------

# One veth pair between the host namespace and a client namespace, v4+v6 addresses.
lab_link_client() {
    local client_ns="$1" host_if="$2" gw4="$3" ip4="$4" gw6="$5" ip6="$6"
    ip -n "$LAB_NS_H" link add "$host_if" type veth peer name eth0 netns "$client_ns"
    ip -n "$LAB_NS_H" addr add "$gw4/24" dev "$host_if"
    ip -n "$LAB_NS_H" addr add "$gw6/64" dev "$host_if" nodad
    ip -n "$LAB_NS_H" link set "$host_if" up
    ip -n "$client_ns" link set lo up
    ip -n "$client_ns" addr add "$ip4/24" dev eth0
    ip -n "$client_ns" addr add "$ip6/64" dev eth0 nodad
    ip -n "$client_ns" link set eth0 up
    ip -n "$client_ns" route add default via "$gw4"
    ip -n "$client_ns" -6 route add default via "$gw6"
}

# Namespaces, links, forwarding.
lab_net_up() {
    ip netns add "$LAB_NS_H"
    ip netns add "$LAB_NS_A"
    ip netns add "$LAB_NS_B"
    ip -n "$LAB_NS_H" link set lo up
    lab_link_client "$LAB_NS_A" vha "$LAB_A_GW4" "$LAB_A_IP4" "$LAB_A_GW6" "$LAB_A_IP6"
    lab_link_client "$LAB_NS_B" vhb "$LAB_B_GW4" "$LAB_B_IP4" "$LAB_B_GW6" "$LAB_B_IP6"
    # IPv6 forwarding before dockerd; Docker 20.10 sets the ip6tables FORWARD policy to
    # DROP either way.
    lab_ns sysctl -qw net.ipv6.conf.all.forwarding=1
    # IPv4: by default let Docker switch net.ipv4.ip_forward on itself, as on a freshly
    # booted host: Docker then also sets the iptables FORWARD policy to DROP. With
    # LAB_PREFORWARD=1 it is on before dockerd starts and the policy stays ACCEPT (then
    # any container port is reachable by routing to the container's IPv4 address).
    if [[ "${LAB_PREFORWARD:-0}" == 1 ]]; then
        lab_ns sysctl -qw net.ipv4.ip_forward=1
    fi
}

# After dockerd is up: both kinds of forwarding must be on in the host namespace.
lab_forwarding_on() {
    lab_ns sysctl -qw net.ipv4.ip_forward=1
    lab_ns sysctl -qw net.ipv6.conf.all.forwarding=1
}

# Write the engine config and start dockerd inside the host namespace.
lab_dockerd_up() {
    local d="$LAB_DIR" firewall="" proxy=""
    mkdir -p "$d/data" "$d/exec"
    # LAB_DOCKERD_FIREWALL=nftables: Docker 29's nftables mode (no DOCKER-USER anywhere).
    # That dockerd does not switch net.ipv4.ip_forward on itself and refuses to start
    # without it, so it is set here first (as a host configured for it would boot).
    case "${LAB_DOCKERD_FIREWALL:-}" in
        "") ;;
        nftables)
            firewall=$',\n  "firewall-backend": "nftables"'
            lab_ns sysctl -qw net.ipv4.ip_forward=1 || return 1
            ;;
        *) lab_log "LAB_DOCKERD_FIREWALL: want nftables or nothing, got '$LAB_DOCKERD_FIREWALL'"; return 1 ;;
    esac
    # LAB_USERLAND_PROXY=false: no docker-proxy; every published port is DNAT-ed only
    # (a container's hairpin to a host address too). Written only when off, so the default
    # engine's configuration is Docker's default.
    case "${LAB_USERLAND_PROXY:-true}" in
        true) ;;
        false) proxy=$',\n  "userland-proxy": false' ;;
        *) lab_log "LAB_USERLAND_PROXY: want true or false, got '$LAB_USERLAND_PROXY'"; return 1 ;;
    esac
    cat >"$d/daemon.json" <<EOF
{
  "ipv6": true,
  "fixed-cidr-v6": "fd00:d0c:1::/64",
  "experimental": true,
  "ip6tables": true$firewall$proxy
}
EOF
    # setsid: own process group, so teardown can signal dockerd and only dockerd's group.
    # nsenter --net (not `ip netns exec`): the latter remounts /sys and breaks cgroups.
    # LAB_DOCKERD_DIR: a directory with another engine's dockerd and docker-proxy
    # (tests/run.sh uses Debian trixie's docker.io 26 there), found first on PATH; for
    # Docker 29.7.2 (lab_engine_extract) its bin/, whose containerd and runc dockerd
    # then starts too.
    PATH="${LAB_DOCKERD_DIR:+$LAB_DOCKERD_DIR:}$PATH" setsid nsenter --net="$LAB_NSPATH" dockerd \
        --data-root "$d/data" --exec-root "$d/exec" \
        -H "unix://$LAB_SOCK" --pidfile "$d/dockerd.pid" \
        --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1 &
    LAB_DOCKERD_PID=$!
    disown "$LAB_DOCKERD_PID"   # no "Terminated" job notice at teardown
    if ! wait_for 60 lab_docker version; then
        lab_log "dockerd did not answer; log tail:"
        tail -n 30 "$d/dockerd.log" >&2
        return 1
    fi
}

# lab_engine_proxy — what the running engine was started with: true (docker-proxy, Docker's
# default) or false (LAB_USERLAND_PROXY=false).
lab_engine_proxy() {
    if grep -q '"userland-proxy": false' "$LAB_DIR/daemon.json" 2>/dev/null; then
        echo false
    else
        echo true
    fi
}

# lab_engine_userland_proxy true|false — restart the lab engine with its userland proxy on
# (true) or off (false), unless it already runs so. For a case: the case's subshell keeps
# the setting, and the next lab_reset restarts the engine as the run's LAB_USERLAND_PROXY
# says, so later cases see the default again. Use before the case makes containers (those
# of a stopped engine are not restarted).
lab_engine_userland_proxy() {
    [[ "$1" == true || "$1" == false ]] || { lab_log "lab_engine_userland_proxy: want true or false"; return 1; }
    [[ "$(lab_engine_proxy)" != "$1" ]] || return 0
    lab_log "restarting the engine with userland-proxy $1"
    lab_engine_stop
    LAB_USERLAND_PROXY="$1" lab_dockerd_up || return 1
    lab_forwarding_on
}

# Build the busybox rootfs tarball once per run (cached in LAB_IMAGE_TAR), then import.
lab_image_up() {
    local tar="${LAB_IMAGE_TAR:-$LAB_DIR/image.tar}"
    if [[ ! -s "$tar" ]]; then
        local root="$LAB_DIR/rootfs" applet
        mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
        cp /bin/busybox "$root/bin/busybox"
        for applet in sh ash httpd nc wget sleep cat ls echo ip ifconfig ps kill true \
                      false env id hostname netstat ping ping6 route; do
            ln -sf busybox "$root/bin/$applet"
        done
        # A UDP echo server (busybox-static has none): /bin/udp_echo PORT.
        cc -static -O2 -o "$root/bin/udp_echo" "$LAB_REPO/tests/udp_echo.c" ||
            { lab_log "cannot build tests/udp_echo.c (cc -static; gcc, libc6-dev)"; return 1; }
        echo "dockfw-test ok" >"$root/www/index.html"
        echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
        tar -C "$root" -cf "$tar" .
        rm -rf "$root"
        LAB_IMAGE_TAR="$tar"
        export LAB_IMAGE_TAR
    fi
    lab_docker import -c 'CMD ["/bin/httpd","-f","-p","80","-h","/www"]' "$tar" "$LAB_IMAGE" >/dev/null
}

# Snapshot what Docker alone made, before dockfw ever runs (for uninstall/scrub checks).
# An engine in its nftables mode (Docker 29) makes no DOCKER-USER: the v4 baseline is then
# empty and baseline.v4.has-docker-user says no.
lab_baseline() {
    if lab_ns iptables -S DOCKER-USER >"$LAB_DIR/baseline.v4.docker-user" 2>/dev/null; then
        echo yes >"$LAB_DIR/baseline.v4.has-docker-user"
    else
        : >"$LAB_DIR/baseline.v4.docker-user"
        echo no >"$LAB_DIR/baseline.v4.has-docker-user"
    fi
    lab_ns iptables -S FORWARD >"$LAB_DIR/baseline.v4.forward"
    lab_ns ip6tables -S FORWARD >"$LAB_DIR/baseline.v6.forward"
    if lab_ns ip6tables -S DOCKER-USER >/dev/null 2>&1; then
        echo yes >"$LAB_DIR/baseline.v6.has-docker-user"
    else
        echo no >"$LAB_DIR/baseline.v6.has-docker-user"
    fi
}

# Everything: namespaces, engine, image, baseline.
lab_up() {
    LAB_DIR="$(mktemp -d /tmp/dockfw-lab.XXXXXX)"
    LAB_SOCK="$LAB_DIR/docker.sock"
    LAB_DFW_SOCK="$LAB_DIR/dockfw.sock"
    # The daemon's state (last good policy, bridges, lock) stays in the lab.
    export DOCKFW_STATE_DIR="$LAB_DIR/state"
    lab_log "up: id=$LAB_ID dir=$LAB_DIR"
    lab_net_up
    lab_dockerd_up
    lab_forwarding_on
    lab_image_up
    lab_baseline
}

# ---------------------------------------------------------------------------
# dockfw control
# ---------------------------------------------------------------------------

# The dockfw CLI inside the host namespace, talking to the lab engine.
dfw() {
    nsenter --net="$LAB_NSPATH" env DOCKER_HOST="unix://$LAB_SOCK" \
        DOCKFW_RESYNC_SECS="$DOCKFW_RESYNC_SECS" DOCKFW_BACKEND="${DOCKFW_BACKEND:-auto}" "$DOCKFW" "$@"
}

# Status document of the running daemon.
dfw_status() { "$DOCKFW" status --socket "$LAB_DFW_SOCK" --json; }

# True once the daemon finished a reconcile (applied or unchanged) from the engine's
# inventory (its first pass, before it asks the engine anything, plans from the policy
# and the saved bridges alone).
dfw_settled() {
    local r
    r="$(dfw_status 2>/dev/null | jq -r '"\(.reconcile.result) \(.reconcile.inventory)"')" || return 1
    [[ "$r" == "applied engine" || "$r" == "unchanged engine" ]]
}

# dockfw_start POLICY — start the daemon in the background; wait until it has reconciled.
dockfw_start() {
    dockfw_spawn "$1"
    local i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$LAB_DFW_PID" 2>/dev/null; then
            lab_log "dockfw exited at start; log:"; tail -n 20 "$LAB_DFW_LOG" >&2
            LAB_DFW_PID=""
            return 1
        fi
        if dfw_settled; then
            return 0
        fi
        sleep 0.2
    done
    lab_log "dockfw did not settle in 20 s; log:"; tail -n 20 "$LAB_DFW_LOG" >&2
    return 1
}

# dockfw_spawn POLICY — start the daemon in the background and return at once. LAB_DFW_WRAP
# (words, unquoted) runs it under another program (tests/trace_instructions.sh: valgrind).
dockfw_spawn() {
    local policy="$1"
    LAB_DFW_LOG="$LAB_DIR/dockfw.$(date +%s%N).log"
    rm -f "$LAB_DFW_SOCK"
    setsid nsenter --net="$LAB_NSPATH" env DOCKER_HOST="unix://$LAB_SOCK" \
        DOCKFW_RESYNC_SECS="$DOCKFW_RESYNC_SECS" RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1 \
        DOCKFW_BACKEND="${DOCKFW_BACKEND:-auto}" \
        ${LAB_DFW_WRAP:-} "$DOCKFW" daemon --config "$policy" --socket "$LAB_DFW_SOCK" \
        >"$LAB_DFW_LOG" 2>&1 &
    LAB_DFW_PID=$!
    disown "$LAB_DFW_PID"
    echo "$LAB_DFW_PID" >"$LAB_DIR/dockfw.pid"
    echo "$LAB_DFW_LOG" >"$LAB_DIR/dockfw.logname"
}

# term_and_wait PID SECS — SIGTERM, then wait up to SECS for PID to exit (0 if it did).
term_and_wait() {
    kill -TERM "$1" 2>/dev/null || true
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.2
    done
    return 1
}

# dockfw_stop — SIGTERM (rules stay), SIGKILL after 5 s.
dockfw_stop() {
    dfw_pid >/dev/null || return 0
    LAB_DFW_PID="$(dfw_pid)"
    term_and_wait "$LAB_DFW_PID" 5
    kill -KILL "$LAB_DFW_PID" 2>/dev/null || true
    rm -f "$LAB_DIR/dockfw.pid"
    LAB_DFW_PID=""
}

# Pid of the running daemon (from its pidfile; works from subshells). Non-zero if none.
dfw_pid() {
    [[ -n "$LAB_DIR" && -s "$LAB_DIR/dockfw.pid" ]] || return 1
    local pid; pid="$(cat "$LAB_DIR/dockfw.pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Log file of the most recent daemon.
dfw_log() { [[ -s "$LAB_DIR/dockfw.logname" ]] && cat "$(cat "$LAB_DIR/dockfw.logname")"; }

# Send SIGHUP to the daemon (re-read the policy).
dockfw_hup() { kill -HUP "$(dfw_pid)"; }

# ---------------------------------------------------------------------------
# Resetting between test cases
# ---------------------------------------------------------------------------

# lab_del_rules iptables|ip6tables CHAIN REGEX — delete the CHAIN rules (as printed by -S)
# matching REGEX, e.g. '-j DOCKER-USER$' (whatever matches or comments they carry).
lab_del_rules() {
    local cmd="$1" chain="$2" re="$3" rules rule
    # The chain is read whole, then grepped: `-S | grep -m1` under pipefail fails (and ends
    # the loop early) when grep exits before iptables has written everything (SIGPIPE).
    while rules="$(lab_ns "$cmd" -S "$chain" 2>/dev/null)" &&
        rule="$(grep -m1 -E -- "$re" <<<"$rules")"; do
        # "-A CHAIN args…" -> "-D CHAIN args…" (eval: -S output is shell-quoted)
        eval "lab_ns $cmd -D ${rule#-A }" || return 1
    done
}

# Remove every dockfw trace by hand (fallback when `dockfw uninstall` is broken) and
# put Docker's own jumps/chains back to the baseline.
lab_fw_scrub() {
    local fam cmd chain
    for fam in 4 6; do
        if [[ "$fam" == 4 ]]; then cmd=iptables; else cmd=ip6tables; fi
        # Drop any jump into a DOCKFW* chain from the built-in chains and DOCKER-USER.
        for chain in DOCKER-USER FORWARD INPUT OUTPUT; do
            lab_del_rules "$cmd" "$chain" '-j DOCKFW' || true
        done
        # Flush, then delete the DOCKFW* chains.
        for chain in $(lab_ns "$cmd" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKFW/ {print $2}'); do
            lab_ns "$cmd" -F "$chain" || true
        done
        for chain in $(lab_ns "$cmd" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKFW/ {print $2}'); do
            lab_ns "$cmd" -X "$chain" || true
        done
    done
    # dockfw's ipsets, now that no rule names them.
    local set
    for set in $(lab_ns ipset list -n 2>/dev/null | grep '^dockfw-' || true); do
        lab_ns ipset destroy "$set" || true
    done
    # v4: exactly Docker's plain FORWARD -> DOCKER-USER jump, first; Docker's DOCKER-USER.
    # An engine without one (Docker 29's nftables mode): none, as the engine left it.
    lab_del_rules iptables FORWARD '-j DOCKER-USER$' || true
    if [[ "$(cat "$LAB_DIR/baseline.v4.has-docker-user")" == yes ]]; then
        lab_ns iptables -I FORWARD 1 -j DOCKER-USER
        lab_ns iptables -F DOCKER-USER
        local rule
        while read -r rule; do
            eval "lab_ns iptables $rule"
        done < <(grep '^-A ' "$LAB_DIR/baseline.v4.docker-user")
    else
        lab_ns iptables -F DOCKER-USER 2>/dev/null || true
        lab_ns iptables -X DOCKER-USER 2>/dev/null || true
    fi
    # v6: Docker 20.10 makes no DOCKER-USER; remove the one dockfw made.
    if [[ "$(cat "$LAB_DIR/baseline.v6.has-docker-user")" == no ]]; then
        lab_del_rules ip6tables FORWARD '-j DOCKER-USER$' || true
        lab_ns ip6tables -F DOCKER-USER 2>/dev/null || true
        lab_ns ip6tables -X DOCKER-USER 2>/dev/null || true
    fi
}

# Remove all containers and user networks of the lab engine.
lab_docker_clean() {
    local ids
    ids="$(lab_docker ps -aq)"
    if [[ -n "$ids" ]]; then
        # shellcheck disable=SC2086
        lab_docker rm -f $ids >/dev/null 2>&1 || true
    fi
    lab_docker network prune -f >/dev/null 2>&1 || true
}

# Back to "engine up, no containers, no dockfw".
lab_reset() {
    dockfw_stop
    prober_kill_all
    # A case that failed while the engine was stopped (fc_reboot) left it down: start it
    # again, or every case after it fails for that.
    if [[ -n "$LAB_SOCK" ]] && ! lab_docker version >/dev/null 2>&1; then
        lab_log "the lab engine does not answer; starting it again"
        lab_engine_stop
        lab_dockerd_up || return 1
        lab_forwarding_on
    fi
    # A case that ran the engine with another userland-proxy setting
    # (lab_engine_userland_proxy): back to the run's.
    if [[ -n "$LAB_SOCK" ]] && [[ "$(lab_engine_proxy)" != "${LAB_USERLAND_PROXY:-true}" ]]; then
        lab_docker_clean
        lab_engine_userland_proxy "${LAB_USERLAND_PROXY:-true}" || return 1
    fi
    local pid
    if [[ -s "$LAB_DIR/client-httpd.pids" ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$LAB_DIR/client-httpd.pids"
        rm -f "$LAB_DIR/client-httpd.pids"
    fi
    if [[ -x "$DOCKFW" ]]; then
        timeout 20 nsenter --net="$LAB_NSPATH" "$DOCKFW" uninstall >/dev/null 2>&1 || true
    fi
    lab_docker_clean
    lab_fw_scrub
    rm -rf "${DOCKFW_STATE_DIR:?}"
}

# ---------------------------------------------------------------------------
# Teardown
# ---------------------------------------------------------------------------

# Kill every process still living in one of our namespaces (ids from `ip netns pids`:
# these namespaces were made by this run, so the processes are ours).
lab_kill_ns_procs() {
    local sig="$1" ns pid
    for ns in "$LAB_NS_H" "$LAB_NS_A" "$LAB_NS_B"; do
        [[ -e "/var/run/netns/$ns" ]] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "-$sig" "$pid" 2>/dev/null || true
        done
    done
}

# Stop dockerd (and the containerd it spawned) cleanly, then force.
lab_dockerd_down() {
    [[ -n "$LAB_DOCKERD_PID" ]] || return 0
    # Remove containers first so their shims and docker-proxies exit with them.
    if [[ -S "$LAB_SOCK" ]]; then
        local ids
        ids="$(timeout 10 docker -H "unix://$LAB_SOCK" ps -aq 2>/dev/null)" || true
        if [[ -n "$ids" ]]; then
            # shellcheck disable=SC2086
            timeout 30 docker -H "unix://$LAB_SOCK" rm -f $ids >/dev/null 2>&1 || true
        fi
    fi
    term_and_wait "$LAB_DOCKERD_PID" 15
    # An engine restarted inside a case's subshell (lab_engine_stop / lab_dockerd_up) is
    # not LAB_DOCKERD_PID here: its pid file names it. Let it stop cleanly too.
    local pid
    pid="$(cat "$LAB_DIR/dockerd.pid" 2>/dev/null)" || true
    if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
        term_and_wait "$pid" 15 || true
    fi
    # Anything left (dockerd itself, containerd, shims, docker-proxy, client servers).
    lab_kill_ns_procs TERM
    sleep 0.5
    lab_kill_ns_procs KILL
    kill -KILL -- "-$LAB_DOCKERD_PID" 2>/dev/null || true
    wait "$LAB_DOCKERD_PID" 2>/dev/null || true
    LAB_DOCKERD_PID=""
}

# lab_engine_stop — stop the lab's engine as a host shutdown would: SIGTERM to dockerd and
# wait (it stops the containers itself), but unlike lab_dockerd_down remove no container,
# so `--restart always` ones come back at the next lab_dockerd_up. Engine leftovers in the
# host namespace (dockerd, containerd, shims with their containers, docker-proxy) are
# killed afterwards; dockfw, probers and client servers are left alone.
lab_engine_stop() {
    local pid="" p comm killed=() i alive
    [[ -s "$LAB_DIR/dockerd.pid" ]] && pid="$(cat "$LAB_DIR/dockerd.pid")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || pid="$LAB_DOCKERD_PID"
    if [[ -n "$pid" ]] && ! term_and_wait "$pid" 45; then
        lab_log "dockerd $pid did not stop within 45 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for p in $(ip netns pids "$LAB_NS_H" 2>/dev/null); do
        comm="$(cat "/proc/$p/comm" 2>/dev/null)" || continue
        case "$comm" in
            dockerd|containerd|containerd-shim*|docker-proxy)
                lab_log "engine leftover after stop: $comm ($p); killing it"
                # A shim's children are the containers' init processes (other namespaces).
                # shellcheck disable=SC2207
                [[ "$comm" != containerd-shim* ]] || killed+=($(pgrep -P "$p"))
                killed+=("$p")
                ;;
        esac
    done
    if ((${#killed[@]} > 0)); then
        kill -KILL "${killed[@]}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do       # wait until gone (or zombies), 5 s at most
            alive=no
            for p in "${killed[@]}"; do
                [[ -z "$(lab_proc_start "$p")" ]] || { alive=yes; break; }
            done
            [[ "$alive" == yes ]] || break
            sleep 0.1
        done
    fi
    # The engine is down: drop pid files a killed dockerd/containerd left (a reboot empties
    # /run). Else the next dockerd finds a zombie or reused pid "still running" and waits
    # for a containerd that never answers.
    rm -f "$LAB_DIR/dockerd.pid" "$LAB_DIR/exec/containerd/containerd.pid"
    LAB_DOCKERD_PID=""
}

# lab_tables_wipe — the lab host's network state as a reboot leaves it: in iptables and
# ip6tables, nft and legacy variants, every table flushed, its chains deleted and its
# built-in policies ACCEPT; then `nft flush ruleset`; conntrack entries and ipsets gone;
# every bridge (docker0, br-*, custom-named Docker bridges) and every container veth
# deleted; net.ipv4.ip_forward back to its boot value (0, or 1 with LAB_PREFORWARD=1 as in
# lab_net_up). The lab's own links vha/vhb (to clients A and B) with their addresses and
# routes stay, and so does IPv6 forwarding (the lab's boot configuration, lab_net_up).
# Use with the engine stopped (lab_engine_stop); then lab_dockerd_up, lab_forwarding_on.
lab_tables_wipe() {
    local cmd fam table tables chain links link fwd=0
    for cmd in iptables-legacy ip6tables-legacy iptables-nft ip6tables-nft; do
        command -v "$cmd" >/dev/null || continue
        case "$cmd" in
            iptables-legacy) tables="$(lab_ns cat /proc/net/ip_tables_names 2>/dev/null)" ;;
            ip6tables-legacy) tables="$(lab_ns cat /proc/net/ip6_tables_names 2>/dev/null)" ;;
            *)
                if [[ "$cmd" == ip6* ]]; then fam=ip6; else fam=ip; fi
                tables="$(lab_ns nft list tables 2>/dev/null |
                    awk -v f="$fam" '$1 == "table" && $2 == f { print $3 }')"
                ;;
        esac
        for table in $tables; do
            lab_ns "$cmd" -t "$table" -F 2>/dev/null || true
            lab_ns "$cmd" -t "$table" -X 2>/dev/null || true
            for chain in $(lab_ns "$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-P" { print $2 }'); do
                lab_ns "$cmd" -t "$table" -P "$chain" ACCEPT 2>/dev/null || true
            done
        done
    done
    lab_ns nft flush ruleset
    lab_ns conntrack -F >/dev/null 2>&1 || true
    if command -v ipset >/dev/null; then lab_ns ipset destroy 2>/dev/null || true; fi
    links="$(lab_ns ip -o link show type bridge; lab_ns ip -o link show type veth)"
    for link in $(awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' <<<"$links"); do
        case "$link" in vha|vhb) continue ;; esac
        lab_ns ip link del "$link" 2>/dev/null || true
    done
    [[ "${LAB_PREFORWARD:-0}" == 1 ]] && fwd=1
    lab_ns sysctl -qw net.ipv4.ip_forward="$fwd"
}

# Unmount whatever dockerd left mounted below LAB_DIR, deepest first.
lab_umount_all() {
    local m
    findmnt -rn -o TARGET | grep -F "$LAB_DIR" | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

# Remove everything lab_up made. Idempotent; never fails.
lab_down() {
    set +e
    dockfw_stop
    prober_kill_all
    lab_dockerd_down
    lab_kill_ns_procs KILL      # e.g. client httpds, when dockerd never started
    local ns
    for ns in "$LAB_NS_A" "$LAB_NS_B" "$LAB_NS_H"; do
        [[ -e "/var/run/netns/$ns" ]] && ip netns del "$ns"
    done
    if [[ -n "$LAB_DIR" && -d "$LAB_DIR" ]]; then
        lab_umount_all
        if [[ -n "${LAB_KEEP_LOGS:-}" ]]; then
            mkdir -p "$LAB_KEEP_LOGS"
            cp "$LAB_DIR"/*.log "$LAB_KEEP_LOGS"/ 2>/dev/null
        fi
        rm -rf --one-file-system "$LAB_DIR"
    fi
    LAB_DIR=""
    set -e
    return 0
}
