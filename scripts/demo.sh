#!/usr/bin/env bash
# demo.sh — THE demo of rawtun: a client and a server in two network namespaces on one
# machine, real firewall rules, a fresh key, then curl through SOCKS5, 50 MiB through a
# port forward with SHA-256 on both sides, and UDP (a UDP forward and SOCKS5 UDP
# ASSOCIATE to an echo server). Cleans up on exit, failure and Ctrl-C. Needs root.
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
write_configs "$KEY" "127.0.0.1:9000 127.0.0.1:9001" "127.0.0.1:5300 127.0.0.1:5301 udp"
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

echo "== UDP: 1000 datagrams through forward 127.0.0.1:5300 -> server 127.0.0.1:5301 (echo)"
bg_in "$SERVER_NS" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 5301))
s.settimeout(120)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
' >"$WORK/udp-echo.log" 2>&1
in_client python3 - <<'PY'
import os, socket, struct, time
# Through the UDP forward: sizes 16..1339 bytes (1339 = the limit to an IPv4 destination at
# kcp.mtu 1350), one every millisecond; count what comes back intact.
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 5300))
s.settimeout(0.5)
sent, rtts = {}, []
def take(data):
    seq, t = struct.unpack("!Id", data[:12])
    if sent.get(seq) == data:
        rtts.append((time.monotonic() - t) * 1e3)
        del sent[seq]

for i in range(1000):
    body = struct.pack("!Id", i, time.monotonic()) + os.urandom(4 + (i * 97) % 1324)
    sent[i] = body
    s.send(body)
    # Read replies as they come for a millisecond, then send the next one.
    until = time.monotonic() + 0.001
    while (left := until - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            take(s.recv(65535))
        except socket.timeout:
            break
s.settimeout(1)
try:
    while sent:
        take(s.recv(65535))
except socket.timeout:
    pass
rtts.sort()
print(f"{len(rtts)} of 1000 came back intact; round trip p50 {rtts[len(rtts) // 2]:.2f} ms, "
      f"p99 {rtts[len(rtts) * 99 // 100 - 1]:.2f} ms")
s.send(b"x" * 1340)  # one byte over the limit: dropped and counted, never cut

# SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) to the same echo server.
c = socket.create_connection(("127.0.0.1", 1080), timeout=10)
c.sendall(b"\x05\x01\x00"); assert c.recv(2) == b"\x05\x00"
c.sendall(b"\x05\x03\x00\x01" + bytes(6))
rep = c.recv(10); assert rep[1] == 0, f"UDP ASSOCIATE failed: {rep!r}"
relay = (socket.inet_ntoa(rep[4:8]), struct.unpack("!H", rep[8:10])[0])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"\x00\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 5301)
         + b"hello over SOCKS5 UDP", relay)
data, _ = u.recvfrom(65535)
src = (socket.inet_ntoa(data[4:8]), struct.unpack("!H", data[8:10])[0])
print(f"SOCKS5 UDP ASSOCIATE via relay {relay[0]}:{relay[1]}: reply {data[10:]!r} from {src[0]}:{src[1]}")
c.close()
PY

echo "== server stats"
sleep 1.1 # the stats file is rewritten every second; show the one after the transfer
python3 - "$WORK/server-stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"handshakes_ok={s.get('handshakes_ok')} auth_failures={s.get('auth_failures')} "
      f"replays={s.get('replays')} sessions_active={s.get('sessions_active')} "
      f"udp_associations={s.get('udp_associations')} udp_delivered={s.get('udp_delivered')}")
print(json.dumps(s, sort_keys=True))
PY
python3 - "$WORK/client-stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"client: udp_received={s.get('udp_received')} udp_delivered={s.get('udp_delivered')} "
      f"udp_dropped_oversize={s.get('udp_dropped_oversize')}")
PY
echo "== done (cleaning up)"
