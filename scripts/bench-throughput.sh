#!/usr/bin/env bash
# bench-throughput.sh — single-stream iperf3 throughput, both directions, over three paths
# in the same run on the same two-namespace topology:
#   direct   kernel TCP over the veth
#   rawtun   through a rawtun TCP forward (fake TCP, KCP, AEAD), once per packet backend
#            (BACKENDS, default "afpacket pcap")
#   kcptun   through kcptun (UDP, crypt aes, mode fast3), if installed
# Prints a Markdown table (Mbit/s received). Needs root. Options:
#   --time SECONDS   length of each iperf3 run (default 10)
#   --no-build       use the existing target/release/rawtun
# (No delay/loss emulation yet: the kernel has no netem; see TESTBED.md.)
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/topology.sh"
need_root "$@"

DURATION=10
BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --time)
            DURATION=$2
            shift 2
            ;;
        --no-build)
            BUILD=0
            shift
            ;;
        *)
            echo "usage: $0 [--time SECONDS] [--no-build]" >&2
            exit 64
            ;;
    esac
done
trap topo_down EXIT
trap 'exit 130' INT TERM

cd "$REPO"
bash scripts/deps.sh >/dev/null
if ((BUILD)) && [[ -z ${RAWTUN_BIN:-} ]]; then
    cargo build --release --quiet
fi
BIN=${RAWTUN_BIN:-$REPO/target/release/rawtun} # RAWTUN_BIN: another build

topo_up
firewall_up
bg_in "$SERVER_NS" iperf3 -s -p 5201 >"$WORK/iperf3-server.log" 2>&1
wait_until 10 listening in_server 5201

# iperf3 JSON -> received Mbit/s.
mbps() {
    python3 -c "import json, sys; r = json.load(sys.stdin); print('%.0f' % (r['end']['sum_received']['bits_per_second'] / 1e6))"
}

# measure HOST PORT [-R]: one iperf3 run from the client namespace; "fail" on error.
measure() {
    local out
    if out=$(in_client iperf3 -c "$1" -p "$2" -t "$DURATION" -J "${@:3}" 2>/dev/null); then
        mbps <<<"$out" || echo fail
    else
        echo fail
    fi
}

rows=()
row() {
    rows+=("| $1 | $(measure "$2" "$3") | $(measure "$2" "$3" -R) |")
}

echo "direct path..." >&2
row "direct (kernel TCP over veth)" "$SERVER_IP" 5201

KEY=$("$BIN" secret 2>/dev/null || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for backend in ${BACKENDS:-afpacket pcap}; do
    echo "rawtun ($backend)..." >&2
    RAWTUN_BACKEND=$backend write_configs "$KEY" "127.0.0.1:15201 127.0.0.1:5201"
    if start_daemons "$BIN" 15201; then
        row "rawtun (forward, $backend)" 127.0.0.1 15201
        stop_daemons
    else
        rows+=("| rawtun (forward, $backend) | fail | fail |")
    fi
done

if command -v kcptun-server >/dev/null 2>&1 && command -v kcptun-client >/dev/null 2>&1; then
    echo "kcptun..." >&2
    KCP_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    bg_in "$SERVER_NS" kcptun-server -l ":29900" -t 127.0.0.1:5201 --key "$KCP_KEY" \
        --crypt aes --mode fast3 --quiet >"$WORK/kcptun-server.log" 2>&1
    bg_in "$CLIENT_NS" kcptun-client -l 127.0.0.1:25201 -r "$SERVER_IP:29900" --key "$KCP_KEY" \
        --crypt aes --mode fast3 --quiet >"$WORK/kcptun-client.log" 2>&1
    wait_until 10 listening in_client 25201
    row "kcptun (UDP, aes, fast3)" 127.0.0.1 25201
else
    rows+=("| kcptun (UDP, aes, fast3) | not installed | not installed |")
fi

echo
echo "iperf3, 1 stream, ${DURATION} s per run, Mbit/s received (veth offloads off, $(nproc) CPUs, $(uname -r))"
echo
echo "| path | client → server | server → client (-R) |"
echo "|---|---:|---:|"
printf '%s\n' "${rows[@]}"
