# shellcheck shell=bash disable=SC2153
# lib/wan.sh — three-namespace test bed for bench.sh: a "link" namespace between client and
# server that either bridges frames in the kernel (clean link) or runs rawtun-linkemu (delay,
# loss, rate limit). Source lib/topology.sh first (it provides bg_in, wait_until, listening,
# write_configs, start_daemons, firewall_up); wan_up replaces topo_up, wan_down topo_down.
#
#   CLIENT_NS rtc0 198.18.0.1/30 ── la0 [LINK_NS: bridge | rawtun-linkemu] lb0 ── rts0 198.18.0.2/30 SERVER_NS
#
# Frames keep their MACs across the link, so each end's router_mac is the other end's MAC
# (as in topology.sh). Neighbour entries are static: ARP never crosses a lossy link.
#
#   link_start            kernel bridge, no impairment (the "clean" link)
#   link_start ARGS...    rawtun-linkemu --a la0 --b lb0 ARGS... (e.g. --delay 50ms --loss 1%)
#                         or, when target/release/rawtun-linkemu is missing, the FALLBACK: a
#                         bridge with nftables random loss and tbf rate limits, NO delay.
#   LINK_MODE             what the last link_start set up (recorded in the results).

CLIENT_NS="rtb-$$-c"
SERVER_NS="rtb-$$-s"
LINK_NS="rtb-$$-l"
LINK_A=la0
LINK_B=lb0
LINK_BR=rtbr0
LINK_PID=""
LINK_MODE=""
LINKEMU=${LINKEMU:-$REPO/target/release/rawtun-linkemu}

in_link() { ip netns exec "$LINK_NS" "$@"; }

wan_up() {
    WORK=$(mktemp -d /tmp/rawtun-bench-XXXXXX)
    ip netns add "$CLIENT_NS"
    ip netns add "$LINK_NS"
    ip netns add "$SERVER_NS"
    ip -n "$CLIENT_NS" link add "$CLIENT_IF" address "$CLIENT_MAC" type veth \
        peer name "$LINK_A" netns "$LINK_NS"
    ip -n "$SERVER_NS" link add "$SERVER_IF" address "$SERVER_MAC" type veth \
        peer name "$LINK_B" netns "$LINK_NS"
    local ns ifname addr peer_ip peer_mac
    for ns in "$CLIENT_NS" "$SERVER_NS"; do
        if [[ $ns == "$CLIENT_NS" ]]; then
            ifname=$CLIENT_IF addr=$CLIENT_IP peer_ip=$SERVER_IP peer_mac=$SERVER_MAC
        else
            ifname=$SERVER_IF addr=$SERVER_IP peer_ip=$CLIENT_IP peer_mac=$CLIENT_MAC
        fi
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$ifname.disable_ipv6=1" || true
        ip netns exec "$ns" ip addr add "$addr/30" dev "$ifname"
        ip netns exec "$ns" ethtool -K "$ifname" tso off gso off gro off >/dev/null 2>&1 || true
        ip netns exec "$ns" ip link set "$ifname" up
        ip netns exec "$ns" ip neigh replace "$peer_ip" lladdr "$peer_mac" dev "$ifname" nud permanent
    done
    in_link sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    in_link sysctl -qw net.ipv6.conf.default.disable_ipv6=1 || true
    for ifname in "$LINK_A" "$LINK_B"; do
        in_link ethtool -K "$ifname" tso off gso off gro off >/dev/null 2>&1 || true
        in_link ip link set "$ifname" up
    done
}

# link_stop: takes down whatever carries frames between la0 and lb0 (emulator, bridge,
# fallback impairments). Afterwards nothing crosses the link.
link_stop() {
    if [[ -n $LINK_PID ]]; then
        kill -TERM "$LINK_PID" 2>/dev/null || true
        wait_until 5 all_gone "$LINK_PID" || kill -KILL "$LINK_PID" 2>/dev/null || true
        wait "$LINK_PID" 2>/dev/null || true
        LINK_PID=""
    fi
    in_link ip link del "$LINK_BR" 2>/dev/null || true
    in_link nft delete table bridge rtbench 2>/dev/null || true
    in_link tc qdisc del dev "$LINK_A" root 2>/dev/null || true
    in_link tc qdisc del dev "$LINK_B" root 2>/dev/null || true
    LINK_MODE=""
}

link_bridge() {
    in_link ip link add "$LINK_BR" type bridge
    in_link ip link set "$LINK_BR" type bridge stp_state 0 forward_delay 0
    in_link ip link set "$LINK_A" master "$LINK_BR"
    in_link ip link set "$LINK_B" master "$LINK_BR"
    in_link ip link set "$LINK_BR" up
}

# link_fallback ARGS...: the stand-in for rawtun-linkemu while it is not built: a bridge,
# random loss with nftables (integer percent, both directions) and a tbf rate limit on each
# egress. Delay, jitter, reordering and the rest are NOT emulated.
link_fallback() {
    local loss="" rate="" ignored=()
    while (($#)); do
        case $1 in
            --loss) loss=${2%\%} && shift 2 ;;
            --rate) rate=$2 && shift 2 ;;
            --seed) shift 2 ;;
            --*) ignored+=("$1 $2") && shift 2 ;;
            *) shift ;;
        esac
    done
    link_bridge
    if [[ -n $loss && $loss != 0 ]]; then
        in_link nft add table bridge rtbench
        in_link nft add chain bridge rtbench impair '{ type filter hook forward priority 0; }'
        in_link nft add rule bridge rtbench impair numgen random mod 100 "<" "${loss%.*}" drop
    fi
    if [[ -n $rate ]]; then
        in_link tc qdisc replace dev "$LINK_A" root tbf rate "$rate" burst 64kb latency 100ms
        in_link tc qdisc replace dev "$LINK_B" root tbf rate "$rate" burst 64kb latency 100ms
    fi
    LINK_MODE="FALLBACK bridge (loss=${loss:-0}% rate=${rate:-none}; NOT emulated: ${ignored[*]:-nothing})"
}

link_ready() {
    in_client ping -c 1 -W 2 "$SERVER_IP"
}

# link_start [ARGS...]: see the header. Returns once a ping crosses the link.
link_start() {
    link_stop
    if (($# == 0)); then
        link_bridge
        LINK_MODE="kernel bridge (no impairment)"
    elif [[ -x $LINKEMU ]]; then
        ip netns exec "$LINK_NS" "$LINKEMU" --a "$LINK_A" --b "$LINK_B" "$@" \
            --stats-file "$WORK/linkemu-stats.json" >>"$WORK/linkemu.log" 2>&1 &
        LINK_PID=$!
        LINK_MODE="rawtun-linkemu $*"
    else
        {
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            echo "!! $LINKEMU is missing: FALLBACK link (kernel bridge + nftables loss + tbf)."
            echo "!! Delay and jitter are NOT emulated; WAN figures are NOT comparable."
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        } >&2
        link_fallback "$@"
    fi
    if ! wait_until 20 link_ready; then
        echo "link did not come up ($LINK_MODE)" >&2
        [[ -f $WORK/linkemu.log ]] && tail -20 "$WORK/linkemu.log" >&2
        return 1
    fi
}

wan_down() {
    link_stop 2>/dev/null || true
    local pid ns
    for pid in "${TOPO_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    ((${#TOPO_PIDS[@]} == 0)) || wait_until 5 all_gone "${TOPO_PIDS[@]}" 2>/dev/null || true
    for ns in "$CLIENT_NS" "$LINK_NS" "$SERVER_NS"; do
        if [[ -e /run/netns/$ns ]]; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    return 0
}
