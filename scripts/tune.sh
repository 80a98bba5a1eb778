#!/usr/bin/env bash
# tune.sh — raise the kernel settings rawtun wants (sysctl/99-rawtun.conf) and advise on the
# open-file limit. It only ever raises a value: one already at or above the recommendation is
# left alone. Prints a before/after table.
#
# Usage: tune.sh [--check] [--persist] [--netns-only] [--conf FILE]
#   (none)        apply: raise every value below its recommendation (root)
#   --check       only print the table; exit 1 if any value is below its recommendation
#   --persist     also install the conf file to /etc/sysctl.d/99-rawtun.conf (root)
#   --netns-only  only the keys each network namespace has its own copy of (somaxconn):
#                 for containers and `ip netns exec`; the host keys (rmem_*/wmem_*,
#                 netdev_max_backlog, fs.*) are skipped and must be set on the host
#   --conf FILE   recommendations to use (default: the repository's sysctl/99-rawtun.conf,
#                 else /etc/sysctl.d/99-rawtun.conf)
#
# Besides the conf file's keys it checks fs.file-max and fs.nr_open >= 1048576 (the unit's
# LimitNOFILE) without persisting them. Host keys absent from a child network namespace
# are reported as "absent here" and never fail a check.
# Exit codes: 0 every value shown is at or above its recommendation (after applying); 1 some
# value is (still) below; 64 usage; 77 applying without root.
set -euo pipefail

usage() {
    echo "usage: $0 [--check] [--persist] [--netns-only] [--conf FILE]" >&2
    exit 64
}

check=0
persist=0
netns_only=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --check) check=1 ;;
        --persist) persist=1 ;;
        --netns-only) netns_only=1 ;;
        --conf)
            [[ $# -ge 2 ]] || usage
            conf=$2
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) usage ;;
    esac
    shift
done
((check && persist)) && usage
if [[ -z $conf ]]; then
    for candidate in "$here/../sysctl/99-rawtun.conf" /etc/sysctl.d/99-rawtun.conf; do
        if [[ -f $candidate ]]; then
            conf=$candidate
            break
        fi
    done
fi
if [[ -z $conf || ! -r $conf ]]; then
    echo "$0: no sysctl file found (pass --conf FILE)" >&2
    exit 64
fi
if ((!check)) && [[ $EUID -ne 0 ]]; then
    echo "$0: applying needs root (use --check to only look)" >&2
    exit 77
fi

# Recommendations: "key value" lines from the conf file, then the check-only floors.
keys=()
declare -A want=()
while IFS= read -r line; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*([a-z0-9_.]+)[[:space:]]*=[[:space:]]*([0-9]+)[[:space:]]*$ ]] || continue
    keys+=("${BASH_REMATCH[1]}")
    want[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
done <"$conf"
for key in fs.file-max fs.nr_open; do
    if [[ -z ${want[$key]:-} ]]; then
        keys+=("$key")
        want[$key]=1048576
    fi
done

# Keys with their own writable copy in each network namespace (measured on Linux 6.18);
# the others belong to the host: absent or read-only inside a child namespace.
scope() {
    case $1 in
        net.core.somaxconn | net.core.optmem_max | net.ipv4.* | net.ipv6.*) echo netns ;;
        *) echo host ;;
    esac
}

proc_path() { echo "/proc/sys/${1//.//}"; }

read_value() {
    local path
    path=$(proc_path "$1")
    [[ -r $path ]] || return 1
    local value
    value=$(<"$path")
    [[ $value =~ ^[0-9]+$ ]] || return 1
    echo "$value"
}

low=0
rows=()
for key in "${keys[@]}"; do
    rec=${want[$key]}
    where=$(scope "$key")
    if ((netns_only)) && [[ $where == host ]]; then
        rows+=("$key|$where|-|$rec|-|skipped (host key)")
        continue
    fi
    if ! before=$(read_value "$key"); then
        rows+=("$key|$where|-|$rec|-|absent here (set it on the host)")
        continue
    fi
    after=$before
    status=ok
    if ((before < rec)); then
        path=$(proc_path "$key")
        if ((check)); then
            status=LOW
        elif [[ ! -w $path ]]; then
            status="LOW, read-only here (set it on the host)"
        elif { printf '%s\n' "$rec" >"$path"; } 2>/dev/null; then
            after=$(read_value "$key" || echo 0)
            status=raised
        else
            status="LOW, write refused"
        fi
        if ((after < rec)); then
            low=1
            [[ $status == raised ]] && status="LOW, kernel kept $after"
        fi
    fi
    if ((check)); then after=-; fi
    rows+=("$key|$where|$before|$rec|$after|$status")
done

printf '%-28s %-6s %20s %20s %20s  %s\n' key scope before recommended after status
for row in "${rows[@]}"; do
    IFS='|' read -r key where before rec after status <<<"$row"
    printf '%-28s %-6s %20s %20s %20s  %s\n' "$key" "$where" "$before" "$rec" "$after" "$status"
done

# Open files: systemd/rawtun@.service sets LimitNOFILE=1048576; a shell does not.
soft=$(ulimit -Sn)
hard=$(ulimit -Hn)
echo
echo "open files (this shell): soft $soft, hard $hard"
if [[ $soft != unlimited ]] && ((soft < 65536)); then
    echo "  advice: the systemd unit raises it (LimitNOFILE=1048576); for a manual run use"
    echo "  'ulimit -n 1048576' first, or a file in /etc/security/limits.d/ for login shells."
fi

if ((persist)); then
    target=/etc/sysctl.d/99-rawtun.conf
    if [[ -f $target ]] && cmp -s "$conf" "$target"; then
        echo "unchanged $target"
    else
        install -D -m 0644 "$conf" "$target"
        echo "installed $target (applied at boot by systemd-sysctl)"
    fi
fi

if ((low)); then
    if ((check)); then
        echo "some values are below the recommendation: run $0 as root to raise them" >&2
    else
        echo "some values are still below the recommendation (see the status column)" >&2
    fi
    exit 1
fi
