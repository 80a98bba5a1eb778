#!/usr/bin/env bash
# rawtun-nft.sh — the nftables twin of rawtun-iptables.sh (table `inet rawtun`).
#
# Usage:
#   rawtun-nft.sh add|remove|status PORT                      # server (listens on PORT)
#   rawtun-nft.sh add|remove|status PORT --client SERVER_IP   # client of SERVER_IP:PORT
#
# The table has three base chains: `prerouting` and `output` at priority raw (notrack, so
# conntrack never sees the fake-TCP flow) and `rst` at priority mangle on output (drops the
# RSTs the kernel would send for a port it has no socket on). Each rule's comment is
# "rawtun:PORT KIND[ SERVER_IP]", which is how add finds an existing copy (idempotent) and
# remove finds every copy. remove deletes the table when no rule is left in it.
# status exit codes: 0 all rules present, 1 none present, 2 some present, 64 usage error,
# 69 no nft binary.
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
family=""
if [[ -n $server_ip ]]; then
    if [[ $server_ip == *:* ]]; then
        family=ip6
    elif [[ $server_ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        family=ip
    else
        echo "$0: SERVER_IP must be an IPv4 or IPv6 address, got '$server_ip'" >&2
        exit 64
    fi
fi
if ! command -v nft >/dev/null 2>&1; then
    echo "$0: nft not found (install the nftables package)" >&2
    exit 69
fi

# One rule per line: CHAIN KIND then the rule body.
rules() {
    if [[ -z $server_ip ]]; then
        echo "prerouting pre tcp dport $port notrack"
        echo "output out tcp sport $port notrack"
        echo "rst rst tcp sport $port tcp flags & rst == rst drop"
    else
        echo "prerouting pre $family saddr $server_ip tcp sport $port notrack"
        echo "output out $family daddr $server_ip tcp dport $port notrack"
        echo "rst rst $family daddr $server_ip tcp dport $port tcp flags & rst == rst drop"
    fi
}

ensure_table() {
    nft -f - <<NFT
table inet rawtun {
    chain prerouting { type filter hook prerouting priority raw; policy accept; }
    chain output { type filter hook output priority raw; policy accept; }
    chain rst { type filter hook output priority mangle; policy accept; }
}
NFT
}

# Handles of the rules in CHAIN whose comment is exactly $1.
handles() {
    local chain=$1 tag=$2
    nft -a list chain inet rawtun "$chain" 2>/dev/null |
        awk -v want="comment \"$tag\"" 'index($0, want) { print $NF }'
}

present=0
missing=0
[[ $action == add ]] && ensure_table
while read -r chain kind body; do
    tag="rawtun:$port $kind${server_ip:+ $server_ip}"
    found=$(handles "$chain" "$tag" | wc -l)
    case $action in
        add)
            if ((found == 0)); then
                # shellcheck disable=SC2086 # the rule body is a word list on purpose
                nft add rule inet rawtun "$chain" $body comment "\"$tag\""
                echo "added:   $chain $body"
            else
                echo "present: $chain $body"
            fi
            ;;
        remove)
            for handle in $(handles "$chain" "$tag"); do
                nft delete rule inet rawtun "$chain" handle "$handle"
            done
            echo "removed $found: $chain $body"
            ;;
        status)
            if ((found > 0)); then
                present=$((present + 1))
                echo "present: $chain $body"
            else
                missing=$((missing + 1))
                echo "missing: $chain $body"
            fi
            ;;
    esac
done < <(rules)

if [[ $action == remove ]] && nft list table inet rawtun >/dev/null 2>&1; then
    # Read the listing first: `nft | grep -q` would let grep's early exit fail the pipe.
    listing=$(nft -a list table inet rawtun)
    if [[ $listing != *'comment "rawtun:'* ]]; then
        nft delete table inet rawtun
    fi
fi
if [[ $action == status ]]; then
    if ((missing == 0)); then
        exit 0
    elif ((present == 0)); then
        exit 1
    else
        exit 2
    fi
fi
