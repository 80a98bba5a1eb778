#!/usr/bin/env bash
# rawtun-nft.sh — the nftables twin of rawtun-iptables.sh; installs exactly the rules of
# src/sys/firewall.rs (`rawtun firewall apply` with the nftables backend).
#
# Usage:
#   rawtun-nft.sh add|remove|status PORT --local LOCAL_IP                     # server
#   rawtun-nft.sh add|remove|status PORT --client SERVER_IP --local LOCAL_IP  # client
#
# The rules match the tunnel's flow only: LOCAL_IP:PORT on a server, LOCAL_IP <-> SERVER_IP:PORT
# on a client (same family), so other services on the same port number are left alone.
# Every argument is checked: PORT 1..65535, addresses plain IPv4 or IPv6 literals.
#
# Table `inet rawtun`, three base chains per rule set, named after it: server_PORT_LOCAL_* or
# client_PORT_SERVER_LOCAL_* (each address: dotted IPv4, or the eight 4-digit groups of
# the IPv6 address joined by '-'):
#   *_prerouting  hook prerouting, priority raw:    drop the flow's incoming packets (rawtun's
#                 packet socket has its copy already; the kernel's TCP input never runs)
#   *_output      hook output,     priority raw:    notrack its outgoing packets
#   *_rst         hook output,     priority mangle: drop the RSTs the kernel would send
# Every rule's comment is "rawtun:PORT". add creates and flushes the chains and adds the
# rules in one nft transaction, so running it twice leaves one copy; remove deletes the
# chains, and the table once it holds no chain.
# status exit codes: 0 all rules present, 1 none present, 2 some present, 64 usage error,
# 69 no nft binary.
set -euo pipefail

usage() {
    echo "usage: $0 add|remove|status PORT [--client SERVER_IP] --local LOCAL_IP" >&2
    exit 64
}

# Prints the eight groups of IPv6 address $1 as 4 hex digits joined by '-'; fails on
# anything that is not a plain (no embedded IPv4) IPv6 address.
expand6() {
    local addr=${1,,} n i g
    local -a head=() tail=() groups=() digits=()
    [[ $addr =~ ^[0-9a-f:]+$ && $addr == *:* ]] || return 1
    if [[ $addr == *::* ]]; then
        [[ ${addr#*::} != *::* ]] || return 1
        [[ -n ${addr%%::*} ]] && IFS=: read -r -a head <<<"${addr%%::*}"
        [[ -n ${addr#*::} ]] && IFS=: read -r -a tail <<<"${addr#*::}"
        n=$((8 - ${#head[@]} - ${#tail[@]}))
        ((n >= 1)) || return 1
        groups=("${head[@]}")
        for ((i = 0; i < n; i++)); do groups+=(0); done
        groups+=("${tail[@]}")
    else
        IFS=: read -r -a groups <<<"$addr"
    fi
    ((${#groups[@]} == 8)) || return 1
    for g in "${groups[@]}"; do
        [[ $g =~ ^[0-9a-f]{1,4}$ ]] || return 1
        digits+=("$(printf %04x "$((16#$g))")")
    done
    (IFS=-; echo "${digits[*]}")
}

# Sets $2 to the address as nft gets it, $3 to its family (ip or ip6) and $4 to its chain
# name part, or exits 64 naming $5.
parse_ip() {
    local text=$1 o name
    if [[ $text =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
        for o in "${BASH_REMATCH[@]:1}"; do
            ((10#$o <= 255)) || { echo "$0: $5 must be an IPv4 or IPv6 address, got '$text'" >&2; exit 64; }
        done
        name=$(printf '%d.%d.%d.%d' "$((10#${BASH_REMATCH[1]}))" "$((10#${BASH_REMATCH[2]}))" \
            "$((10#${BASH_REMATCH[3]}))" "$((10#${BASH_REMATCH[4]}))")
        printf -v "$2" '%s' "$name"
        printf -v "$3" ip
        printf -v "$4" '%s' "$name"
    elif name=$(expand6 "$text"); then
        printf -v "$2" '%s' "${text,,}"
        printf -v "$3" ip6
        printf -v "$4" '%s' "$name"
    else
        echo "$0: $5 must be an IPv4 or IPv6 address, got '$text'" >&2
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
            parse_ip "$2" server_ip server_family server_name SERVER_IP
            shift 2
            ;;
        --local)
            [[ $# -ge 2 && -z $local_ip ]] || usage
            parse_ip "$2" local_ip family local_name LOCAL_IP
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
if [[ -z $server_ip ]]; then
    prefix=server_${port}_$local_name
    pre="$family daddr $local_ip tcp dport $port"
    outgoing="$family saddr $local_ip tcp sport $port"
else
    if [[ $server_family != "$family" ]]; then
        echo "$0: SERVER_IP $server_ip and LOCAL_IP $local_ip are of different families" >&2
        exit 64
    fi
    prefix=client_${port}_${server_name}_$local_name
    pre="$family saddr $server_ip $family daddr $local_ip tcp sport $port"
    outgoing="$family saddr $local_ip $family daddr $server_ip tcp dport $port"
fi
if ! command -v nft >/dev/null 2>&1; then
    echo "$0: nft not found (install the nftables package)" >&2
    exit 69
fi

comment="comment \"rawtun:$port\""
# One line per chain: NAME HOOK PRIORITY RULE.
chains() {
    echo "${prefix}_prerouting prerouting raw $pre drop $comment"
    echo "${prefix}_output output raw $outgoing notrack $comment"
    echo "${prefix}_rst output mangle $outgoing tcp flags & rst == rst drop $comment"
}

table_exists() {
    local tables
    tables=$(nft list tables)
    grep -qx "table inet rawtun" <<<"$tables"
}

# Whether chain $1 exists and holds a rule with this port's comment.
chain_present() {
    local listing
    listing=$(nft list chain inet rawtun "$1" 2>/dev/null) || return 1
    [[ $listing == *"$comment"* ]]
}

case $action in
    add)
        script="add table inet rawtun"
        while read -r name hook priority rule; do
            script+="; add chain inet rawtun $name { type filter hook $hook priority $priority; policy accept; }"
            script+="; flush chain inet rawtun $name"
            script+="; add rule inet rawtun $name $rule"
        done < <(chains)
        nft "$script"
        echo "applied: table inet rawtun, chains ${prefix}_{prerouting,output,rst}"
        ;;
    remove)
        table_exists || exit 0
        script=""
        while read -r name _; do
            if nft list chain inet rawtun "$name" >/dev/null 2>&1; then
                script+="${script:+; }delete chain inet rawtun $name"
            fi
        done < <(chains)
        [[ -z $script ]] || nft "$script"
        echo "removed: chains ${prefix}_{prerouting,output,rst}"
        # Read the listing first: `nft | grep -q` would let grep's early exit fail the pipe.
        listing=$(nft list table inet rawtun)
        if ! grep -q '^[[:space:]]*chain ' <<<"$listing"; then
            nft delete table inet rawtun
        fi
        ;;
    status)
        present=0
        missing=0
        while read -r name _; do
            if table_exists && chain_present "$name"; then
                present=$((present + 1))
                echo "present: $name"
            else
                missing=$((missing + 1))
                echo "missing: $name"
            fi
        done < <(chains)
        if ((missing == 0)); then
            exit 0
        elif ((present == 0)); then
            exit 1
        else
            exit 2
        fi
        ;;
esac
