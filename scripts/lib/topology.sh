# shellcheck shell=bash
# lib/topology.sh — two-namespace test bed shared by demo.sh and bench-throughput.sh.
#
# Source it, then call topo_up; `trap topo_down EXIT` cleans up (processes, namespaces,
# temporary files) on success, failure and Ctrl-C. Addresses come from 198.18.0.0/15 only.
#
#   client ns  CLIENT_NS  veth CLIENT_IF 198.18.0.1/30 ──── 198.18.0.2/30 SERVER_IF  SERVER_NS
#
# Variables set: CLIENT_NS SERVER_NS CLIENT_IF SERVER_IF CLIENT_IP SERVER_IP CLIENT_MAC
# SERVER_MAC WORK (temp dir). PORT (tunnel port) defaults to 9999.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${PORT:-9999}
CLIENT_NS="rt-$$-c"
SERVER_NS="rt-$$-s"
CLIENT_IF=rtc0
SERVER_IF=rts0
CLIENT_IP=198.18.0.1
SERVER_IP=198.18.0.2
CLIENT_MAC=02:72:74:00:00:01
SERVER_MAC=02:72:74:00:00:02
WORK=""
TOPO_PIDS=()

in_client() { ip netns exec "$CLIENT_NS" "$@"; }
in_server() { ip netns exec "$SERVER_NS" "$@"; }

need_root() {
    if [[ $EUID -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            exec sudo -E env "PATH=$PATH" bash "$0" "$@"
        fi
        echo "$0: must run as root (namespaces, iptables, raw sockets)" >&2
        exit 1
    fi
}

topo_up() {
    WORK=$(mktemp -d /tmp/rawtun-XXXXXX)
    ip netns add "$CLIENT_NS"
    ip netns add "$SERVER_NS"
    in_client ip link add "$CLIENT_IF" address "$CLIENT_MAC" type veth \
        peer name "$SERVER_IF" address "$SERVER_MAC" netns "$SERVER_NS"
    local ns ifname addr
    for ns in "$CLIENT_NS" "$SERVER_NS"; do
        if [[ $ns == "$CLIENT_NS" ]]; then ifname=$CLIENT_IF addr=$CLIENT_IP; else ifname=$SERVER_IF addr=$SERVER_IP; fi
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip addr add "$addr/30" dev "$ifname"
        ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1" || true
        if command -v ethtool >/dev/null 2>&1; then
            ip netns exec "$ns" ethtool -K "$ifname" tso off gso off gro off >/dev/null 2>&1 || true
        fi
        ip netns exec "$ns" ip link set "$ifname" up
    done
    wait_until 5 in_client ping -c 1 -W 1 "$SERVER_IP"
}

# bg_in NS CMD...: starts CMD inside namespace NS in the background (the pid is CMD's own:
# `ip netns exec` execs it) and remembers the pid for topo_down.
bg_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@" &
    TOPO_PIDS+=("$!")
}

all_gone() {
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && return 1
    done
    return 0
}

topo_down() {
    local pid ns
    # SIGTERM first (rawtun exits cleanly and writes its final stats), then SIGKILL whatever
    # is left in the namespaces.
    for pid in "${TOPO_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    ((${#TOPO_PIDS[@]} == 0)) || wait_until 5 all_gone "${TOPO_PIDS[@]}" 2>/dev/null || true
    for ns in "$CLIENT_NS" "$SERVER_NS"; do
        if [[ -e /run/netns/$ns ]]; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    return 0
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds or the deadline passes.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "timed out waiting for: $*" >&2
            return 1
        fi
        sleep 0.1
    done
}

# listening NS_FN PORT: true once a TCP socket listens on PORT in that namespace.
listening() {
    [[ -n $("$1" ss -Hltn "sport = :$2") ]]
}

firewall_up() {
    in_server bash "$REPO/iptables/rawtun-iptables.sh" add "$PORT" --local "$SERVER_IP" >/dev/null
    in_client bash "$REPO/iptables/rawtun-iptables.sh" add "$PORT" --client "$SERVER_IP" \
        --local "$CLIENT_IP" >/dev/null
}

# The network.afpacket section when RAWTUN_QDISC_BYPASS is set (nothing otherwise).
qdisc_bypass_yaml() {
    [[ -n ${RAWTUN_QDISC_BYPASS:-} ]] || return 0
    printf '  afpacket:\n    qdisc_bypass: %s\n' "$RAWTUN_QDISC_BYPASS"
}

# write_configs KEY FORWARD_LINES: server.yaml and client.yaml in $WORK. FORWARD_LINES is
# a list of "LISTEN TARGET [PROTOCOL]" lines for the client's forwards (PROTOCOL: tcp,
# the default, or udp). RAWTUN_BACKEND (afpacket, the default, or pcap) picks the packet
# backend of both daemons; RAWTUN_QDISC_BYPASS=true sets network.afpacket.qdisc_bypass;
# RAWTUN_STREAM_LIMIT sets the server's limits.streams_per_session.
write_configs() {
    local key=$1
    shift
    cat >"$WORK/server.yaml" <<YAML
role: server
log:
  level: info
listen:
  addr: ":$PORT"
network:
  backend: ${RAWTUN_BACKEND:-afpacket}
$(qdisc_bypass_yaml)
  interface: "$SERVER_IF"
  ipv4:
    addr: "$SERVER_IP:$PORT"
    router_mac: "$CLIENT_MAC"
transport:
  kcp:
    key: "$key"
# The demo's and benchmarks' targets listen on the server's loopback, which the default
# target policy refuses: open it explicitly.
targets:
  allow: ["public", "127.0.0.0/8", "::1"]
$([[ ${RAWTUN_STREAM_LIMIT:-0} -gt 0 ]] && printf 'limits:\n  streams_per_session: %s\n' "$RAWTUN_STREAM_LIMIT")
YAML
    {
        echo "role: client"
        echo "log:"
        echo "  level: info"
        echo "server:"
        echo "  addr: \"$SERVER_IP:$PORT\""
        echo "socks5:"
        echo "  - listen: \"127.0.0.1:1080\""
        echo "forward:"
        local pair
        for pair in "$@"; do
            read -r listen target protocol <<<"$pair"
            echo "  - listen: \"$listen\""
            echo "    target: \"$target\""
            echo "    protocol: ${protocol:-tcp}"
        done
        echo "network:"
        echo "  backend: ${RAWTUN_BACKEND:-afpacket}"
        qdisc_bypass_yaml
        echo "  interface: \"$CLIENT_IF\""
        echo "  ipv4:"
        echo "    addr: \"$CLIENT_IP:0\""
        echo "    router_mac: \"$SERVER_MAC\""
        echo "transport:"
        echo "  kcp:"
        echo "    key: \"$key\""
    } >"$WORK/client.yaml"
}

stats_or_exit() {
    [[ -s $1 ]] || ! kill -0 "$2" 2>/dev/null
}

# start_daemons BIN CLIENT_PORTS...: server then client, each with --stats-file; waits for
# the server's first stats file and for every client port to listen.
# stop_daemons: SIGTERM to the two daemons start_daemons started last; waits for them.
stop_daemons() {
    local pid
    for pid in "${TOPO_PIDS[@]: -2}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait_until 10 all_gone "${TOPO_PIDS[@]: -2}" || kill -KILL "${TOPO_PIDS[@]: -2}" 2>/dev/null || true
    rm -f "$WORK/server-stats.json" "$WORK/client-stats.json"
}

start_daemons() {
    local bin=$1 p ns
    shift
    local side
    for side in server client; do
        if [[ $side == server ]]; then ns=$SERVER_NS; else ns=$CLIENT_NS; fi
        bg_in "$ns" "$bin" run -c "$WORK/$side.yaml" --stats-file "$WORK/$side-stats.json" \
            2>"$WORK/$side.log"
        # Ready once the first stats file exists; give up early if the daemon exits.
        wait_until 15 stats_or_exit "$WORK/$side-stats.json" "${TOPO_PIDS[-1]}" || true
        if [[ ! -s $WORK/$side-stats.json ]]; then
            echo "rawtun $side did not start:" >&2
            tail -20 "$WORK/$side.log" >&2
            return 1
        fi
    done
    for p in "$@"; do
        wait_until 15 listening in_client "$p" || { tail -20 "$WORK/client.log" >&2; return 1; }
    done
}
