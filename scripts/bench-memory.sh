#!/usr/bin/env bash
# bench-memory.sh — memory of a busy session (issue 11: "≤ 32 MiB per busy session on a
# 50 ms / 2 % / 50 Mbit/s link"). Three namespaces, the link emulated by rawtun-linkemu
# (--delay 25ms each way, --loss 2%, --rate 50mbit). For each case the daemons start fresh;
# their RSS is read once idle (session up, no stream) and their peak (VmHWM) after the load:
#   fetches    one stream at a time: repeated 20 MB iperf3 downloads (-R -n 20M), as a
#              user fetching files does, for --secs seconds
#   8 streams  one iperf3 -R -P 8 run of --secs seconds
#   32 streams one iperf3 -R -P 32 run of --secs seconds
# Prints a Markdown table: Mbit/s received, idle and peak RSS (MiB) of each daemon and the
# server's rise over idle. Needs root. Options:
#   --secs N       length of each case (default 60)
#   --cases LIST   comma-separated subset of fetches,8,32 (default all)
#   --no-build     use the existing target/release binaries
# RAWTUN_BIN=PATH runs another build (e.g. an older commit's, for a before/after in one
# run); RAWTUN_BACKEND=pcap the pcap backend.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/topology.sh"
# shellcheck source=SCRIPTDIR/lib/wan.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/wan.sh"
need_root "$@"

SECS=60
CASES=fetches,8,32
BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --secs)
            SECS=$2
            shift 2
            ;;
        --cases)
            CASES=$2
            shift 2
            ;;
        --no-build)
            BUILD=0
            shift
            ;;
        *)
            echo "usage: $0 [--secs N] [--cases fetches,8,32] [--no-build]" >&2
            exit 64
            ;;
    esac
done
trap wan_down EXIT
trap 'exit 130' INT TERM

cd "$REPO"
bash scripts/deps.sh >/dev/null
if ((BUILD)); then
    cargo build --release --quiet --bins
fi
BIN=${RAWTUN_BIN:-$REPO/target/release/rawtun}
[[ -x $LINKEMU ]] || { echo "$LINKEMU is missing: the link cannot be emulated" >&2; exit 1; }

wan_up
firewall_up
link_start --seed 1 --delay 25ms --loss 2% --rate 50mbit
bg_in "$SERVER_NS" iperf3 -s -p 5201 >"$WORK/iperf3-server.log" 2>&1
wait_until 10 listening in_server 5201
write_configs "$("$BIN" secret)" "127.0.0.1:15201 127.0.0.1:5201"

# kib FIELD PID: a /proc/PID/status field in KiB ("n/a" if the process is gone).
kib() { awk -v f="$1:" '$1 == f { print $2; found = 1 } END { if (!found) print "n/a" }' "/proc/$2/status" 2>/dev/null || echo n/a; }
mib() { [[ $1 == n/a ]] && echo n/a || awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
session_up() { grep -q '"sessions_active": *[1-9]' "$WORK/server-stats.json" 2>/dev/null; }

# iperf3 JSON on stdin -> received Mbit/s, "fail" if unreadable.
mbps() {
    python3 -c "import json, sys
try: print('%.1f' % (json.load(sys.stdin)['end']['sum_received']['bits_per_second'] / 1e6))
except Exception: print('fail')"
}

# load CASE: the traffic of one case; prints the mean Mbit/s.
load() {
    local end=$((SECONDS + SECS)) rates=() out
    case $1 in
        fetches)
            while ((SECONDS < end)); do
                out=$(in_client timeout 120 iperf3 -c 127.0.0.1 -p 15201 -R -n 20M -J 2>/dev/null || true)
                rates+=("$(mbps <<<"$out")")
            done
            printf '%s\n' "${rates[@]}" | awk '$1 != "fail" { s += $1; n++ } END { if (n) printf "%.1f (%d fetches)", s / n, n; else print "fail" }'
            ;;
        *)
            in_client timeout $((SECS + 60)) iperf3 -c 127.0.0.1 -p 15201 -R -t "$SECS" -P "$1" -J 2>/dev/null | mbps || echo fail
            ;;
    esac
}

echo "link: $LINK_MODE; binary: $BIN; backend: ${RAWTUN_BACKEND:-afpacket}; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) CPUs"
echo
echo "| case | Mbit/s | client idle → peak MiB | server idle → peak MiB | server rise MiB |"
echo "|---|---|---|---|---|"
IFS=, read -ra cases <<<"$CASES"
for c in "${cases[@]}"; do
    start_daemons "$BIN" 15201
    S=${TOPO_PIDS[-2]}
    C=${TOPO_PIDS[-1]}
    # The session is up once a first stream has crossed; a 1-byte run brings it up.
    in_client timeout 30 iperf3 -c 127.0.0.1 -p 15201 -n 1 >/dev/null 2>&1 || true
    wait_until 10 session_up || true
    ci=$(kib VmRSS "$C") si=$(kib VmRSS "$S")
    rate=$(load "$c")
    cp=$(kib VmHWM "$C") sp=$(kib VmHWM "$S")
    rise=n/a
    [[ $si != n/a && $sp != n/a ]] && rise=$(mib $((sp - si)))
    label=$c
    [[ $c == fetches ]] || label="$c streams"
    echo "| $label | $rate | $(mib "$ci") → $(mib "$cp") | $(mib "$si") → $(mib "$sp") | $rise |"
    stop_daemons
done
