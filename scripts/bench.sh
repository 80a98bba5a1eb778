#!/usr/bin/env bash
# bench.sh — THE end-to-end benchmark: rawtun beside the direct kernel path and kcptun, in the
# same run, on the same three-namespace link (client ⇄ link ⇄ server, lib/wan.sh):
#
#   rows      direct      kernel TCP across the link (no tunnel)
#             rawtun      rawtun TCP forwards + SOCKS5 (fake TCP, KCP, AEAD), AF_PACKET backend
#             rawtun-pcap the same with network.backend: pcap
#             rawtun-bypass  AF_PACKET with network.afpacket.qdisc_bypass
#             kcptun      kcptun over UDP (--crypt aes --mode fast3 --nocomp), its defaults
#             kcptun-tcp  the same with --tcp (its fake-TCP mode, tcpraw)
#             kcptun-tuned, kcptun-tcp-tuned  the same two with --sndwnd 4096 --rcvwnd 4096
#                         (the windows a kcptun user tunes for a fast link)
#   profiles  clean       kernel bridge in the link namespace, no impairment
#             wan         rawtun-linkemu --delay 50ms (each way: 100 ms RTT) --loss 1% --rate 100mbit
#   measures  iperf3 1 and 8 streams, both directions; 1-byte echo p50/p99 (examples/loadgen);
#             HTTP requests/s through SOCKS5 with a concurrency ramp (rawtun, direct); daemon
#             CPU seconds per GiB and peak RSS; a loss sweep (0..10% at 50 ms RTT, 100 mbit);
#             rawtun rows on the clean link: RSS per idle stream, from 10,000 streams held
#             open through one session (examples/loadgen idle-client), on fresh daemons
#
# Writes bench-results/<timestamp>/{results.json,results.md,loss.svg,raw.jsonl,logs/} and
# copies results.{json,md} and loss.svg to docs/bench/ (full runs only). Needs root. Options:
#   --quick                  short runs and a reduced ramp/sweep (for testing this script)
#   --profile clean|wan|all  which profiles to run (default all); the sweep runs with wan/all
#   --no-sweep               skip the loss sweep
#   --no-build               use the binaries already in target/release
#   --rows a,b,...           measure only these rows (default: all)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/topology.sh
source "$HERE/lib/topology.sh"
# shellcheck source=SCRIPTDIR/lib/wan.sh
source "$HERE/lib/wan.sh"
need_root "$@"

QUICK=0
ROWS_ARG=
PROFILES=all
SWEEP=1
BUILD=1
usage() {
    echo "usage: $0 [--quick] [--profile clean|wan|all] [--no-sweep] [--no-build] [--rows a,b,...]" >&2
    exit 64
}
while (($#)); do
    case $1 in
        --quick) QUICK=1 && shift ;;
        --profile)
            [[ $# -ge 2 ]] || usage
            PROFILES=$2 && shift 2
            ;;
        --no-sweep) SWEEP=0 && shift ;;
        --no-build) BUILD=0 && shift ;;
        --rows)
            [[ $# -ge 2 ]] || usage
            ROWS_ARG=$2 && shift 2
            ;;
        *) usage ;;
    esac
done
case $PROFILES in clean) PROFILE_LIST=(clean) ;; wan) PROFILE_LIST=(wan) ;; all) PROFILE_LIST=(clean wan) ;; *) usage ;; esac
[[ $PROFILES == clean ]] && SWEEP=0

if ((QUICK)); then
    T=2 SWEEP_T=2 HTTP_T=2 ECHO_COUNT=200 ECHO_MAX=10
    RAMP=(20 200) LOSSES=(0 5) IDLE_STREAMS=${IDLE_STREAMS:-1000}
else
    T=5 SWEEP_T=3 HTTP_T=4 ECHO_COUNT=1000 ECHO_MAX=30
    RAMP=(20 100 500 1000) LOSSES=(0 1 2 5 10) IDLE_STREAMS=${IDLE_STREAMS:-10000}
fi
WAN_ARGS=(--seed 1 --delay 50ms --loss 1% --rate 100mbit)
ROWS=(direct rawtun rawtun-bypass rawtun-pcap kcptun kcptun-tcp kcptun-tuned kcptun-tcp-tuned)
if [[ -n $ROWS_ARG ]]; then
    IFS=, read -r -a ROWS <<<"$ROWS_ARG"
    for row in "${ROWS[@]}"; do
        case $row in
            direct | rawtun | rawtun-pcap | rawtun-bypass | kcptun | kcptun-tcp | kcptun-tuned | kcptun-tcp-tuned) ;;
            *) echo "unknown row: $row" >&2 && usage ;;
        esac
    done
fi
IPERF_PORT=5201 ECHO_PORT=7000 HTTP_PORT=8080
KCP_PORT=29900 KCP_TCP_PORT=29910 # kcptun's echo pair uses +1; the tuned rows +20

trap wan_down EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true
cd "$REPO"
started=$SECONDS

echo "== dependencies"
bash scripts/deps.sh
command -v kcptun-server >/dev/null && command -v kcptun-client >/dev/null ||
    echo "kcptun is not installed: its rows will say n/a" >&2
if ((BUILD)); then
    echo "== cargo build --release --bins && --example loadgen"
    cargo build --release --quiet --bins
    cargo build --release --quiet --example loadgen
fi
BIN=$REPO/target/release/rawtun
LOADGEN=$REPO/target/release/examples/loadgen
for b in "$BIN" "$LOADGEN"; do [[ -x $b ]] || { echo "missing $b" >&2 && exit 1; }; done
if [[ ! -x $LINKEMU ]]; then
    echo "!! $LINKEMU not built: the wan profile and the sweep use the FALLBACK link" >&2
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$REPO/bench-results/$STAMP
mkdir -p "$OUT/logs"
RAW=$OUT/raw.jsonl
: >"$RAW"

# record JSON_OBJECT [JSON_OBJECT...]: merges the objects and appends one line to raw.jsonl.
record() {
    python3 -c 'import json, sys
d = {}
for a in sys.argv[2:]:
    d.update(json.loads(a))
open(sys.argv[1], "a").write(json.dumps(d) + "\n")' "$RAW" "$@"
}

# cpu_ticks PID / hwm_kib PID: utime+stime (clock ticks) and VmHWM of a live process.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# idle_streams PROFILE ROW: the daemons' RSS before and while IDLE_STREAMS streams (each
# proven with a 1-byte echo) are held open and idle through one session; run first on
# fresh daemons, so memory freed by the bulk runs cannot hide the streams' cost.
idle_streams() {
    local profile=$1 row=$2 c0 s0 c1 s1 out pid file=$WORK/idle-client.out
    c0=$(rss_kib "${DAEMONS[0]}") s0=$(rss_kib "${DAEMONS[1]}")
    : >"$file"
    in_client timeout 150 "$LOADGEN" idle-client "$ECHO_TO" --count "$IDLE_STREAMS" --parallel 100 \
        --hold 5 --timeout 90 >"$file" 2>>"$OUT/logs/idle-client.log" &
    pid=$!
    if wait_until 120 test -s "$file"; then
        c1=$(rss_kib "${DAEMONS[0]}") s1=$(rss_kib "${DAEMONS[1]}")
        out=$(head -n 1 "$file")
    fi
    wait "$pid" || true
    # A daemon that died leaves no VmRSS line: say so instead of writing broken JSON.
    if [[ -z ${out:-} || -z $c0 || -z $s0 || -z ${c1:-} || -z ${s1:-} ]]; then
        echo "   idle streams: n/a (see logs/idle-client.log and the daemons' logs)"
        return 0
    fi
    echo "   idle streams: $out; RSS client $c0 -> $c1 KiB, server $s0 -> $s1 KiB"
    record "{\"kind\": \"idle-streams\", \"profile\": \"$profile\", \"row\": \"$row\",
        \"client_rss0_kib\": $c0, \"client_rss1_kib\": $c1, \"server_rss0_kib\": $s0, \"server_rss1_kib\": $s1}" "$out"
    # The daemons close the streams after loadgen exits: the CPU and throughput runs that
    # follow start once both report none open (their stats files are rewritten every second).
    wait_until 60 no_streams_open || echo "   (streams still open after 60 s)"
}
no_streams_open() {
    local side
    for side in client server; do
        python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("streams_active", 1) != 0)' \
            "$WORK/$side-stats.json" || return 1
    done
}
CLK_TCK=$(getconf CLK_TCK)

# stop_pids PID...: SIGTERM, then SIGKILL after 5 s.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait_until 5 all_gone "$@" || for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

echo "== topology: $CLIENT_NS ($CLIENT_IP) <-> $LINK_NS <-> $SERVER_NS ($SERVER_IP)"
wan_up

# Backends in the server namespace, up for the whole run.
IPERF_PID=""
iperf_server_up() {
    [[ -n $IPERF_PID ]] && stop_pids "$IPERF_PID"
    bg_in "$SERVER_NS" iperf3 -s -p "$IPERF_PORT" >>"$OUT/logs/iperf3-server.log" 2>&1
    IPERF_PID=${TOPO_PIDS[-1]}
    wait_until 10 listening in_server "$IPERF_PORT"
}
iperf_server_up
bg_in "$SERVER_NS" "$LOADGEN" echo-server "0.0.0.0:$ECHO_PORT" >"$OUT/logs/echo-server.log" 2>&1
bg_in "$SERVER_NS" "$LOADGEN" http-server "0.0.0.0:$HTTP_PORT" >"$OUT/logs/http-server.log" 2>&1
wait_until 10 listening in_server "$ECHO_PORT"
wait_until 10 listening in_server "$HTTP_PORT"

# iperf HOST PORT SECONDS [ARGS...]: one iperf3 run from the client; prints a JSON object
# {"mbps","bytes"} or {"error"}. A failed run restarts the iperf3 server (it may be stuck).
iperf() {
    local host=$1 port=$2 secs=$3 out
    shift 3
    if out=$(in_client timeout $((secs + 30)) iperf3 -c "$host" -p "$port" -t "$secs" -J "$@" 2>&1); then
        python3 -c 'import json, sys
r = json.load(sys.stdin)["end"]
print(json.dumps({"mbps": round(r["sum_received"]["bits_per_second"] / 1e6, 1),
                  "bytes": r["sum_sent"]["bytes"]}))' <<<"$out" && return 0
    fi
    echo "$out" >>"$OUT/logs/iperf3-client-errors.log"
    iperf_server_up >/dev/null 2>&1 || true
    echo '{"error": "iperf3 failed"}'
}

# Row set-up. row_up ROW sets IPERF_HOST/IPERF_TO, ECHO_TO, HTTP_URL, SOCKS (empty for none)
# and DAEMONS (client pid, server pid) or returns 1 with NA_REASON.
DAEMONS=()
EXTRA_PIDS=()
NA_REASON=""
kcptun_pair() { # kcptun_pair NAME UDP_OR_TCP_PORT TARGET_PORT CLIENT_PORT [--tcp]
    local name=$1 kport=$2 target=$3 cport=$4
    shift 4
    bg_in "$SERVER_NS" kcptun-server -l ":$kport" -t "127.0.0.1:$target" --key "$KCP_KEY" \
        --crypt aes --mode fast3 --nocomp --quiet "$@" >>"$OUT/logs/$name-server.log" 2>&1
    local spid=${TOPO_PIDS[-1]}
    bg_in "$CLIENT_NS" kcptun-client -l "127.0.0.1:$cport" -r "$SERVER_IP:$kport" --key "$KCP_KEY" \
        --crypt aes --mode fast3 --nocomp --quiet "$@" >>"$OUT/logs/$name-client.log" 2>&1
    local cpid=${TOPO_PIDS[-1]}
    wait_until 10 listening in_client "$cport" || return 1
    PAIR=("$cpid" "$spid")
}
row_up() {
    local row=$1
    DAEMONS=() EXTRA_PIDS=() SOCKS="" NA_REASON=""
    case $row in
        direct)
            IPERF_HOST=$SERVER_IP IPERF_TO=$IPERF_PORT ECHO_TO=$SERVER_IP:$ECHO_PORT
            HTTP_URL=http://$SERVER_IP:$HTTP_PORT/
            ;;
        rawtun | rawtun-pcap | rawtun-bypass)
            local backend=afpacket bypass=
            [[ $row == rawtun-pcap ]] && backend=pcap
            [[ $row == rawtun-bypass ]] && bypass=true
            RAWTUN_BACKEND=$backend RAWTUN_QDISC_BYPASS=$bypass RAWTUN_STREAM_LIMIT=$((IDLE_STREAMS * 2 > 1024 ? IDLE_STREAMS * 2 : 0)) write_configs "$RAWTUN_KEY" \
                "127.0.0.1:15201 127.0.0.1:$IPERF_PORT" "127.0.0.1:17000 127.0.0.1:$ECHO_PORT"
            rm -f "$WORK"/*-stats.json
            if ! start_daemons "$BIN" 1080 15201 17000; then
                NA_REASON="rawtun did not start (see logs)"
                return 1
            fi
            DAEMONS=("${TOPO_PIDS[-1]}" "${TOPO_PIDS[-2]}")
            IPERF_HOST=127.0.0.1 IPERF_TO=15201 ECHO_TO=127.0.0.1:17000
            HTTP_URL=http://127.0.0.1:$HTTP_PORT/ SOCKS=127.0.0.1:1080
            ;;
        kcptun | kcptun-tcp | kcptun-tuned | kcptun-tcp-tuned)
            if ! command -v kcptun-server >/dev/null; then
                NA_REASON="kcptun not installed"
                return 1
            fi
            local base=$KCP_PORT flag=()
            [[ $row == kcptun-tcp* ]] && base=$KCP_TCP_PORT flag=(--tcp)
            [[ $row == *-tuned ]] && base=$((base + 20)) flag+=(--sndwnd 4096 --rcvwnd 4096)
            if ! kcptun_pair "$row" "$base" "$IPERF_PORT" 25201 "${flag[@]}"; then
                NA_REASON="$row did not start: $(tail -c 300 "$OUT/logs/$row-client.log" | tr '\n"' ' ')"
                return 1
            fi
            DAEMONS=("${PAIR[@]}")
            kcptun_pair "$row-echo" $((base + 1)) "$ECHO_PORT" 27000 "${flag[@]}" || true
            EXTRA_PIDS=("${PAIR[@]}")
            IPERF_HOST=127.0.0.1 IPERF_TO=25201 ECHO_TO=127.0.0.1:27000
            ;;
    esac
}
row_down() {
    local row=$1 profile=$2
    ((${#DAEMONS[@]} + ${#EXTRA_PIDS[@]} == 0)) || stop_pids "${DAEMONS[@]}" "${EXTRA_PIDS[@]}"
    if [[ $row == rawtun* ]]; then # final counters and log lines are written on SIGTERM
        for side in client server; do
            [[ -f $WORK/$side.log ]] && cp "$WORK/$side.log" "$OUT/logs/$row-$profile-$side.log"
            [[ -f $WORK/$side-stats.json ]] && record "{\"kind\": \"rawtun-stats\", \"profile\": \"$profile\", \"row\": \"$row\", \"side\": \"$side\"}" \
                "{\"stats\": $(cat "$WORK/$side-stats.json")}"
        done
    fi
}

http_ramp() { # http_ramp PROFILE ROW NS URL [SOCKS]
    local profile=$1 row=$2 ns=$3 url=$4 socks=${5:-} c out args
    for c in "${RAMP[@]}"; do
        args=(http-client --url "$url" --concurrency "$c" --duration "$HTTP_T" --timeout 5)
        [[ -n $socks ]] && args+=(--socks5 "$socks")
        out=$(ip netns exec "$ns" timeout $((HTTP_T + 30)) "$LOADGEN" "${args[@]}" 2>>"$OUT/logs/http-client.log") ||
            out='{"error": "http-client failed"}'
        echo "   http c=$c: $out"
        record "{\"kind\": \"http\", \"profile\": \"$profile\", \"row\": \"$row\", \"concurrency\": $c}" "$out"
    done
}

measure_row() { # measure_row PROFILE ROW
    local profile=$1 row=$2 ticks0=() ticks1=() bytes=0 r pid streams dir out
    echo "-- $profile / $row"
    if ! row_up "$row"; then
        echo "   n/a: $NA_REASON"
        record "{\"kind\": \"na\", \"profile\": \"$profile\", \"row\": \"$row\", \"reason\": $(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$NA_REASON")}"
        row_down "$row" "$profile"
        return 0
    fi
    if [[ $row == rawtun* && $profile == clean ]] && ((IDLE_STREAMS > 0)); then
        idle_streams "$profile" "$row"
    fi
    for pid in "${DAEMONS[@]}"; do ticks0+=("$(cpu_ticks "$pid")"); done
    for streams in 1 8; do
        for dir in up down; do
            r=()
            [[ $dir == down ]] && r=(-R)
            out=$(iperf "$IPERF_HOST" "$IPERF_TO" "$T" -P "$streams" "${r[@]}")
            echo "   iperf3 P=$streams $dir: $out"
            record "{\"kind\": \"iperf\", \"profile\": \"$profile\", \"row\": \"$row\", \"streams\": $streams, \"dir\": \"$dir\"}" "$out"
            bytes=$((bytes + $(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("bytes", 0))' "$out")))
        done
    done
    if ((${#DAEMONS[@]})); then
        local alive=1
        for pid in "${DAEMONS[@]}"; do
            if [[ -r /proc/$pid/stat ]]; then ticks1+=("$(cpu_ticks "$pid")"); else alive=0; fi
        done
        if ((alive)); then
            record "{\"kind\": \"cpu\", \"profile\": \"$profile\", \"row\": \"$row\", \"bytes\": $bytes, \"clk_tck\": $CLK_TCK,
                \"client_ticks\": $((ticks1[0] - ticks0[0])), \"server_ticks\": $((ticks1[1] - ticks0[1])),
                \"client_hwm_kib\": $(hwm_kib "${DAEMONS[0]}"), \"server_hwm_kib\": $(hwm_kib "${DAEMONS[1]}")}"
        else
            record "{\"kind\": \"na\", \"profile\": \"$profile\", \"row\": \"$row\", \"reason\": \"a daemon died during iperf3\"}"
        fi
    fi
    if out=$(in_client timeout $((ECHO_MAX + 30)) "$LOADGEN" echo-client "$ECHO_TO" --count "$ECHO_COUNT" \
        --max-seconds "$ECHO_MAX" 2>>"$OUT/logs/echo-client.log"); then :; else out='{"error": "echo-client failed"}'; fi
    echo "   echo: $out"
    record "{\"kind\": \"echo\", \"profile\": \"$profile\", \"row\": \"$row\"}" "$out"
    case $row in
        direct) http_ramp "$profile" "$row" "$CLIENT_NS" "$HTTP_URL" ;;
        rawtun | rawtun-pcap | rawtun-bypass)
            http_ramp "$profile" "$row" "$CLIENT_NS" "$HTTP_URL" "$SOCKS"
            [[ -n ${DAEMONS[0]:-} && -r /proc/${DAEMONS[0]}/status ]] &&
                record "{\"kind\": \"rss-after-http\", \"profile\": \"$profile\", \"row\": \"$row\",
                    \"client_hwm_kib\": $(hwm_kib "${DAEMONS[0]}"), \"server_hwm_kib\": $(hwm_kib "${DAEMONS[1]}")}"
            ;;
    esac
    row_down "$row" "$profile"
}

RAWTUN_KEY=$("$BIN" secret)
KCP_KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
firewall_up
# kcptun --tcp needs no rules from us: its tcpraw layer keeps a real kernel TCP connection
# (so the kernel has a socket and sends no RST) and installs its own iptables rule dropping
# that socket's output, which it marks with TTL 1 (-m ttl --ttl-eq 1 -j DROP), on both ends.

declare -A LINK_MODES
echo "== backend alone (HTTP server measured from its own namespace)"
http_ramp backend backend "$SERVER_NS" "http://127.0.0.1:$HTTP_PORT/"

for profile in "${PROFILE_LIST[@]}"; do
    echo "== profile $profile"
    if [[ $profile == clean ]]; then link_start; else link_start "${WAN_ARGS[@]}"; fi
    LINK_MODES[$profile]=$LINK_MODE
    echo "   link: $LINK_MODE"
    for row in "${ROWS[@]}"; do measure_row "$profile" "$row"; done
done

if ((SWEEP)); then
    echo "== loss sweep (1 stream up, ${SWEEP_T} s, 50 ms RTT, 100 mbit)"
    # Tunnels stay up across loss levels; only the link is restarted.
    sweep_rows=(direct)
    SWEEP_DAEMONS=()
    row_up rawtun && sweep_rows+=(rawtun) && SWEEP_DAEMONS=("${DAEMONS[@]}")
    RAWTUN_SWEEP=(127.0.0.1 15201)
    if command -v kcptun-server >/dev/null && kcptun_pair kcptun-sweep "$KCP_PORT" "$IPERF_PORT" 25201; then
        sweep_rows+=(kcptun) && SWEEP_DAEMONS+=("${PAIR[@]}")
    fi
    for loss in "${LOSSES[@]}"; do
        link_start --seed 1 --delay 25ms --loss "$loss%" --rate 100mbit
        LINK_MODES[sweep]="$LINK_MODE (loss varies per point)"
        for row in "${sweep_rows[@]}"; do
            case $row in
                direct) out=$(iperf "$SERVER_IP" "$IPERF_PORT" "$SWEEP_T") ;;
                rawtun) out=$(iperf "${RAWTUN_SWEEP[@]}" "$SWEEP_T") ;;
                kcptun) out=$(iperf 127.0.0.1 25201 "$SWEEP_T") ;;
            esac
            echo "   loss $loss% $row: $out"
            record "{\"kind\": \"loss\", \"row\": \"$row\", \"loss_pct\": $loss}" "$out"
        done
    done
    stop_pids "${SWEEP_DAEMONS[@]}"
fi
link_stop

modes_json=$(for k in "${!LINK_MODES[@]}"; do printf '%s\t%s\n' "$k" "${LINK_MODES[$k]}"; done |
    python3 -c 'import json, sys; print(json.dumps(dict(l.rstrip("\n").split("\t", 1) for l in sys.stdin)))')
KCPTUN_VERSION=$(dpkg-query -W -f='${Version}' kcptun 2>/dev/null || echo none)
IPERF_VERSION=$(iperf3 --version 2>/dev/null | head -1)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
python3 - "$OUT/meta.json" "$modes_json" <<PY
import json, sys
meta = {
    "command": "sudo scripts/bench.sh" + (" --quick" if $QUICK else "") + ("" if "$PROFILES" == "all" else " --profile $PROFILES"),
    "timestamp": "$STAMP",
    "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)",
    "nproc": $(nproc),
    "cpu": "$CPU_MODEL",
    "kernel": "$(uname -r)",
    "kcptun": "$KCPTUN_VERSION",
    "iperf3": "$IPERF_VERSION",
    "quick": bool($QUICK),
    "iperf_seconds": $T, "sweep_seconds": $SWEEP_T, "http_seconds": $HTTP_T,
    "echo_count": $ECHO_COUNT, "echo_max_seconds": $ECHO_MAX,
    "wan_args": "${WAN_ARGS[*]}",
    "links": json.loads(sys.argv[2]),
    "elapsed_s": $((SECONDS - started)),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
cp -r "$WORK"/linkemu* "$OUT/logs/" 2>/dev/null || true
python3 "$HERE/bench-report.py" "$OUT"
echo
cat "$OUT/results.md"
echo
# docs/bench holds full runs only: a run of some rows, or a quick one, stays in $OUT.
if [[ -z $ROWS_ARG ]] && ((!QUICK)) && [[ $PROFILES == all ]]; then
    mkdir -p docs/bench
    cp "$OUT/results.json" "$OUT/results.md" "$OUT/loss.svg" docs/bench/
    echo "== results in $OUT (copied to docs/bench/), $((SECONDS - started)) s"
else
    echo "== results in $OUT (a partial run: docs/bench/ left as it was), $((SECONDS - started)) s"
fi
