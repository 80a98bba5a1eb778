#!/usr/bin/env bash
# demo.sh — THE demo of rawtun: a client and a server in two network namespaces on one
# machine, real firewall rules, a fresh key, then curl through SOCKS5 and 50 MiB through a
# port forward with SHA-256 on both sides. Cleans up on exit, failure and Ctrl-C. Needs root.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/topology.sh"
need_root "$@"
trap topo_down EXIT
trap 'exit 130' INT TERM

cd "$REPO"
echo "== dependencies"
bash scripts/deps.sh
if [[ -z ${RAWTUN_BIN:-} ]]; then
    echo "== cargo build --release"
    cargo build --release --quiet
fi
BIN=${RAWTUN_BIN:-$REPO/target/release/rawtun} # RAWTUN_BIN: another build

echo "== topology: $CLIENT_NS ($CLIENT_IP) <-veth-> $SERVER_NS ($SERVER_IP), tunnel port $PORT"
topo_up
firewall_up
KEY=$("$BIN" secret)
echo "key: ${KEY:0:8}... (fresh from 'rawtun secret')"
write_configs "$KEY" "127.0.0.1:9000 127.0.0.1:9001"
start_daemons "$BIN" 1080 9000
echo "server and client running (logs in $WORK)"

echo "== curl through SOCKS5 127.0.0.1:1080"
mkdir -p "$WORK/site"
for i in $(seq 1 1000); do echo "line $i served from the server namespace"; done >"$WORK/site/index.txt"
bg_in "$SERVER_NS" python3 -m http.server 8080 --bind 127.0.0.1 --directory "$WORK/site" \
    >"$WORK/http.log" 2>&1
wait_until 10 listening in_server 8080
in_client curl -sS --max-time 30 --socks5-hostname 127.0.0.1:1080 \
    -o "$WORK/curl.out" -w "HTTP %{http_code}, %{size_download} bytes, %{time_total} s\n" \
    http://localhost:8080/index.txt
cmp -s "$WORK/curl.out" "$WORK/site/index.txt" && echo "body matches the served file"

echo "== 50 MiB through forward 127.0.0.1:9000 -> server 127.0.0.1:9001"
head -c $((50 << 20)) /dev/urandom >"$WORK/blob"
bg_in "$SERVER_NS" bash -c "socat -u TCP-LISTEN:9001,bind=127.0.0.1,reuseaddr STDOUT \
    | sha256sum >'$WORK/sink.sha256.tmp' && mv '$WORK/sink.sha256.tmp' '$WORK/sink.sha256'"
wait_until 10 listening in_server 9001
t0=$(date +%s.%N)
in_client socat -u "FILE:$WORK/blob" TCP:127.0.0.1:9000
wait_until 120 test -s "$WORK/sink.sha256"
t1=$(date +%s.%N)
sent=$(sha256sum <"$WORK/blob" | cut -d' ' -f1)
received=$(cut -d' ' -f1 <"$WORK/sink.sha256")
echo "client sha256: $sent"
echo "server sha256: $received"
python3 -c "print(f'throughput: {50 * 1048576 / 1e6 / ($t1 - $t0):.1f} MB/s')"
if [[ $sent != "$received" ]]; then
    echo "HASH MISMATCH" >&2
    exit 1
fi
echo "hashes match"

echo "== server stats"
sleep 1.1 # the stats file is rewritten every second; show the one after the transfer
python3 - "$WORK/server-stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"handshakes_ok={s.get('handshakes_ok')} auth_failures={s.get('auth_failures')} "
      f"replays={s.get('replays')} sessions_active={s.get('sessions_active')}")
print(json.dumps(s, sort_keys=True))
PY
echo "== done (cleaning up)"
