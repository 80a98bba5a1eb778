#!/usr/bin/env bash
# rawtun-iptables.sh — keep the kernel TCP stack out of a rawtun flow (iptables/ip6tables).
#
# rawtun builds and captures its fake-TCP packets itself. The kernel still sees them: without
# these rules conntrack tracks a connection that never completed a handshake, and the kernel
# answers every packet for a port it has no socket on with a TCP RST. Both ends need rules.
#
# Usage:
#   rawtun-iptables.sh add|remove|status PORT                      # server (listens on PORT)
#   rawtun-iptables.sh add|remove|status PORT --client SERVER_IP   # client of SERVER_IP:PORT
#
# Server mode, for tcp port PORT (IPv4 and, when ip6tables exists, IPv6):
#   raw    PREROUTING -p tcp --dport PORT -j NOTRACK
#   raw    OUTPUT     -p tcp --sport PORT -j NOTRACK
#   mangle OUTPUT     -p tcp --sport PORT --tcp-flags RST RST -j DROP
# Client mode, for the flow to SERVER_IP:PORT (only the address family of SERVER_IP):
#   raw    PREROUTING -p tcp -s SERVER_IP --sport PORT -j NOTRACK
#   raw    OUTPUT     -p tcp -d SERVER_IP --dport PORT -j NOTRACK
#   mangle OUTPUT     -p tcp -d SERVER_IP --dport PORT --tcp-flags RST RST -j DROP
# Every rule carries `-m comment --comment rawtun:PORT`.
#
# add is idempotent (each rule is checked with -C before -A); remove deletes every copy.
# status exit codes: 0 all rules present, 1 none present, 2 some present, 64 usage error,
# 69 no iptables binary.
set -euo pipefail

usage() {
    echo "usage: $0 add|remove|status PORT [--client SERVER_IP]" >&2
    exit 64
}

[[ $# -ge 2 ]] || usage
action=$1
port=$2
shift 2
server_ip=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --client)
            [[ $# -ge 2 ]] || usage
            server_ip=$2
            shift 2
            ;;
        *) usage ;;
    esac
done
case $action in add | remove | status) ;; *) usage ;; esac
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "$0: PORT must be 1..65535, got '$port'" >&2
    exit 64
fi

# Which tools apply: server mode covers both families; client mode the family of SERVER_IP.
tools=()
if [[ -z $server_ip ]]; then
    tools+=(iptables)
    command -v ip6tables >/dev/null 2>&1 && tools+=(ip6tables)
elif [[ $server_ip == *:* ]]; then
    tools+=(ip6tables)
elif [[ $server_ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    tools+=(iptables)
else
    echo "$0: SERVER_IP must be an IPv4 or IPv6 address, got '$server_ip'" >&2
    exit 64
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
        echo "raw PREROUTING -p tcp --dport $port -j NOTRACK"
        echo "raw OUTPUT -p tcp --sport $port -j NOTRACK"
        echo "mangle OUTPUT -p tcp --sport $port --tcp-flags RST RST -j DROP"
    else
        echo "raw PREROUTING -p tcp -s $server_ip --sport $port -j NOTRACK"
        echo "raw OUTPUT -p tcp -d $server_ip --dport $port -j NOTRACK"
        echo "mangle OUTPUT -p tcp -d $server_ip --dport $port --tcp-flags RST RST -j DROP"
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
