#!/usr/bin/env bash
# rawtun-iptables.sh — keep the kernel TCP stack out of a rawtun flow (iptables/ip6tables).
#
# rawtun builds and captures its fake-TCP packets itself. The kernel still sees them: without
# these rules conntrack tracks a connection that never completed a handshake, and the kernel
# answers every packet for a port it has no socket on with a TCP RST. Packet sockets take
# their copy of a frame before PREROUTING, so the incoming rule drops the tunnel's packets
# in the raw table (rawtun still captures them; the kernel does no TCP input, route lookup
# or RST for them). The outgoing NOTRACK and RST-drop rules are a second line: they only
# match packets the kernel itself builds on the flow. Both ends need rules.
# They match the tunnel's flow only (its local address, port and family), so another service
# on the same port number but another address or family is left alone.
#
# Usage:
#   rawtun-iptables.sh add|remove|status PORT --local LOCAL_IP                     # server
#   rawtun-iptables.sh add|remove|status PORT --client SERVER_IP --local LOCAL_IP  # client
#
# LOCAL_IP is the address of this end's tunnel packets (the server's listen address; the
# client's address towards the server); SERVER_IP must be of the same family. Every argument
# is checked: PORT 1..65535, addresses plain IPv4 or IPv6 literals; anything else is refused.
#
# Server mode, for LOCAL_IP:PORT (iptables for IPv4, ip6tables for IPv6):
#   raw    PREROUTING -p tcp -d LOCAL_IP --dport PORT -j DROP
#   raw    OUTPUT     -p tcp -s LOCAL_IP --sport PORT -j NOTRACK
#   mangle OUTPUT     -p tcp -s LOCAL_IP --sport PORT --tcp-flags RST RST -j DROP
# Client mode, for the flow LOCAL_IP <-> SERVER_IP:PORT:
#   raw    PREROUTING -p tcp -s SERVER_IP -d LOCAL_IP --sport PORT -j DROP
#   raw    OUTPUT     -p tcp -s LOCAL_IP -d SERVER_IP --dport PORT -j NOTRACK
#   mangle OUTPUT     -p tcp -s LOCAL_IP -d SERVER_IP --dport PORT --tcp-flags RST RST -j DROP
# Every rule carries `-m comment --comment rawtun:PORT`.
#
# add is idempotent (each rule is checked with -C before -A); remove deletes every copy.
# status exit codes: 0 all rules present, 1 none present, 2 some present, 64 usage error,
# 69 no iptables binary.
set -euo pipefail

usage() {
    echo "usage: $0 add|remove|status PORT [--client SERVER_IP] --local LOCAL_IP" >&2
    exit 64
}

# Prints the canonical form of IPv4 address $1 (no leading zeros); fails otherwise.
canon4() {
    local o
    [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    for o in "${BASH_REMATCH[@]:1}"; do
        ((10#$o <= 255)) || return 1
    done
    printf '%d.%d.%d.%d' "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" \
        "$((10#${BASH_REMATCH[3]}))" "$((10#${BASH_REMATCH[4]}))"
}

# Succeeds for a plain IPv6 literal (hex groups and at most one ::, no embedded IPv4).
valid6() {
    local addr=${1,,} n g
    local -a head=() tail=() groups=()
    [[ $addr =~ ^[0-9a-f:]+$ && $addr == *:* ]] || return 1
    if [[ $addr == *::* ]]; then
        [[ ${addr#*::} != *::* ]] || return 1
        [[ -n ${addr%%::*} ]] && IFS=: read -r -a head <<<"${addr%%::*}"
        [[ -n ${addr#*::} ]] && IFS=: read -r -a tail <<<"${addr#*::}"
        n=$((8 - ${#head[@]} - ${#tail[@]}))
        ((n >= 1)) || return 1
        groups=("${head[@]}" "${tail[@]}")
    else
        IFS=: read -r -a groups <<<"$addr"
        ((${#groups[@]} == 8)) || return 1
    fi
    for g in "${groups[@]}"; do
        [[ $g =~ ^[0-9a-f]{1,4}$ ]] || return 1
    done
}

# Sets $2 to the canonical address and $3 to its family (4 or 6), or exits 64 naming $4.
parse_ip() {
    local text=$1 v4
    if v4=$(canon4 "$text"); then
        printf -v "$2" '%s' "$v4"
        printf -v "$3" 4
    elif valid6 "$text"; then
        printf -v "$2" '%s' "${text,,}"
        printf -v "$3" 6
    else
        echo "$0: $4 must be an IPv4 or IPv6 address, got '$text'" >&2
        exit 64
    fi
}

[[ $# -ge 2 ]] || usage
action=$1
port=$2
shift 2
server_ip=""
local_ip=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --client)
            [[ $# -ge 2 && -z $server_ip ]] || usage
            parse_ip "$2" server_ip server_family SERVER_IP
            shift 2
            ;;
        --local)
            [[ $# -ge 2 && -z $local_ip ]] || usage
            parse_ip "$2" local_ip local_family LOCAL_IP
            shift 2
            ;;
        *) usage ;;
    esac
done
case $action in add | remove | status) ;; *) usage ;; esac
if ! [[ $port =~ ^[0-9]{1,5}$ ]] || ((10#$port < 1 || 10#$port > 65535)); then
    echo "$0: PORT must be 1..65535, got '$port'" >&2
    exit 64
fi
port=$((10#$port))
if [[ -z $local_ip ]]; then
    echo "$0: --local LOCAL_IP is required (the address of this end's tunnel packets)" >&2
    exit 64
fi
if [[ -n $server_ip && $server_family != "$local_family" ]]; then
    echo "$0: SERVER_IP $server_ip and LOCAL_IP $local_ip are of different families" >&2
    exit 64
fi

# The tool of the flow's family.
if [[ $local_family == 6 ]]; then
    tools=(ip6tables)
else
    tools=(iptables)
fi
for tool in "${tools[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "$0: $tool not found (install the iptables package)" >&2
        exit 69
    fi
done

comment=(-m comment --comment "rawtun:$port")
# Each rule: "TABLE CHAIN" then the match/target words, one rule per line.
rules() {
    if [[ -z $server_ip ]]; then
        echo "raw PREROUTING -p tcp -d $local_ip --dport $port -j DROP"
        echo "raw OUTPUT -p tcp -s $local_ip --sport $port -j NOTRACK"
        echo "mangle OUTPUT -p tcp -s $local_ip --sport $port --tcp-flags RST RST -j DROP"
    else
        echo "raw PREROUTING -p tcp -s $server_ip -d $local_ip --sport $port -j DROP"
        echo "raw OUTPUT -p tcp -s $local_ip -d $server_ip --dport $port -j NOTRACK"
        echo "mangle OUTPUT -p tcp -s $local_ip -d $server_ip --dport $port --tcp-flags RST RST -j DROP"
    fi
}

present=0
missing=0
while read -r table chain spec; do
    read -r -a words <<<"$spec"
    for tool in "${tools[@]}"; do
        case $action in
            add)
                if ! "$tool" -w -t "$table" -C "$chain" "${words[@]}" "${comment[@]}" 2>/dev/null; then
                    "$tool" -w -t "$table" -A "$chain" "${words[@]}" "${comment[@]}"
                    echo "added:   $tool -t $table $chain $spec"
                else
                    echo "present: $tool -t $table $chain $spec"
                fi
                ;;
            remove)
                n=0
                while "$tool" -w -t "$table" -C "$chain" "${words[@]}" "${comment[@]}" 2>/dev/null; do
                    "$tool" -w -t "$table" -D "$chain" "${words[@]}" "${comment[@]}"
                    n=$((n + 1))
                done
                echo "removed $n: $tool -t $table $chain $spec"
                ;;
            status)
                if "$tool" -w -t "$table" -C "$chain" "${words[@]}" "${comment[@]}" 2>/dev/null; then
                    present=$((present + 1))
                    echo "present: $tool -t $table $chain $spec"
                else
                    missing=$((missing + 1))
                    echo "missing: $tool -t $table $chain $spec"
                fi
                ;;
        esac
    done
done < <(rules)

if [[ $action == status ]]; then
    if ((missing == 0)); then
        exit 0
    elif ((present == 0)); then
        exit 1
    else
        exit 2
    fi
fi
