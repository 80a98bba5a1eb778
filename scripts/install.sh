#!/usr/bin/env bash
# install.sh — install rawtun as a system service, or remove it.
#
# Usage: install.sh [--binary PATH] [--prefix DIR] [--uninstall]
#   --binary PATH  install this rawtun binary instead of building one
#                  (default: `cargo build --release --locked`, then target/release/rawtun)
#   --prefix DIR   install under DIR instead of / (a staging tree or a test; no systemctl
#                  calls, no root needed)
#   --uninstall    remove what install put there; operator configs in /etc/rawtun/ stay
#
# Installs (under the prefix):
#   /usr/local/bin/rawtun                      the daemon (mode 0755)
#   /etc/systemd/system/rawtun@.service        template unit: rawtun@NAME reads /etc/rawtun/NAME.yaml
#   /etc/sysctl.d/99-rawtun.conf               kernel settings, applied at boot
#   /etc/rawtun/client.yaml.example            example configs (0600), never overwritten
#   /etc/rawtun/server.yaml.example
#   /usr/local/share/doc/rawtun/*.md           DEPLOYMENT, TROUBLESHOOTING, MIGRATING, CONFIG
# Idempotent: a file whose content is already right is left alone (not even its mtime moves);
# each line of output says installed, updated, unchanged, kept or removed.
set -euo pipefail

usage() {
    echo "usage: $0 [--binary PATH] [--prefix DIR] [--uninstall]" >&2
    exit 64
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
prefix=""
uninstall=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --binary)
            [[ $# -ge 2 ]] || usage
            binary=$2
            shift
            ;;
        --prefix)
            [[ $# -ge 2 ]] || usage
            prefix=${2%/}
            [[ -n $prefix ]] || usage
            shift
            ;;
        --uninstall) uninstall=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) usage ;;
    esac
    shift
done
if [[ -z $prefix && $EUID -ne 0 ]]; then
    echo "$0: installing to / needs root (or use --prefix DIR)" >&2
    exit 77
fi
# systemctl only for a real install on a host running systemd.
live=0
[[ -z $prefix && -d /run/systemd/system ]] && live=1

# Source -> destination (relative to the prefix), mode.
files=(
    "systemd/rawtun@.service|/etc/systemd/system/rawtun@.service|0644"
    "sysctl/99-rawtun.conf|/etc/sysctl.d/99-rawtun.conf|0644"
    "docs/DEPLOYMENT.md|/usr/local/share/doc/rawtun/DEPLOYMENT.md|0644"
    "docs/TROUBLESHOOTING.md|/usr/local/share/doc/rawtun/TROUBLESHOOTING.md|0644"
    "docs/MIGRATING-FROM-PAQET.md|/usr/local/share/doc/rawtun/MIGRATING-FROM-PAQET.md|0644"
    "docs/CONFIG.md|/usr/local/share/doc/rawtun/CONFIG.md|0644"
)
# Examples: created once, never overwritten (an operator may have edited them).
examples=(
    "configs/client.yaml|/etc/rawtun/client.yaml.example"
    "configs/server.yaml|/etc/rawtun/server.yaml.example"
)
bin_dest=/usr/local/bin/rawtun

# put SRC DEST MODE: copy when absent or different; prints what it did.
put() {
    local src=$1 dest=$prefix$2 mode=$3
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        if [[ $(stat -c %a "$dest") != "${mode#0}" ]]; then
            chmod "$mode" "$dest"
            echo "updated   $2 (mode $mode)"
        else
            echo "unchanged $2"
        fi
        return
    fi
    local verb=installed
    [[ -e $dest ]] && verb=updated
    install -D -m "$mode" "$src" "$dest.rawtun-new"
    mv -f "$dest.rawtun-new" "$dest" # atomic: a running daemon's binary is replaced, not rewritten
    echo "$verb $2"
}

# remove DEST [SRC]: delete DEST (only when it equals SRC, if given).
remove() {
    local dest=$prefix$1 src=${2:-}
    [[ -e $dest ]] || return 0
    if [[ -n $src ]] && ! cmp -s "$src" "$dest"; then
        echo "kept      $1 (edited)"
        return
    fi
    rm -f "$dest"
    echo "removed   $1"
}

if ((uninstall)); then
    if ((live)); then
        # Stop every instance first so ExecStopPost removes its firewall rules.
        mapfile -t units < <(systemctl list-units --all --plain --no-legend 'rawtun@*.service' | awk '{print $1}')
        for unit in "${units[@]}"; do
            systemctl disable --now "$unit" || true
        done
    fi
    remove "$bin_dest"
    for entry in "${files[@]}"; do
        IFS='|' read -r _ dest _ <<<"$entry"
        remove "$dest"
    done
    for entry in "${examples[@]}"; do
        IFS='|' read -r src dest <<<"$entry"
        remove "$dest" "$repo/$src"
    done
    for dir in /usr/local/share/doc/rawtun /etc/rawtun; do
        if [[ -d $prefix$dir ]] && rmdir "$prefix$dir" 2>/dev/null; then
            echo "removed   $dir/"
        elif [[ -d $prefix$dir ]]; then
            echo "kept      $dir/ (holds your configs)"
        fi
    done
    ((live)) && systemctl daemon-reload
    exit 0
fi

if [[ -z $binary ]]; then
    echo "building: cargo build --release --locked (in $repo)"
    (cd "$repo" && cargo build --release --locked --bin rawtun)
    binary=$repo/target/release/rawtun
fi
if [[ ! -x $binary ]]; then
    echo "$0: $binary is not an executable file" >&2
    exit 66
fi
"$binary" --version >/dev/null || {
    echo "$0: $binary does not run" >&2
    exit 66
}

put "$binary" "$bin_dest" 0755
for entry in "${files[@]}"; do
    IFS='|' read -r src dest mode <<<"$entry"
    put "$repo/$src" "$dest" "$mode"
done
install -d -m 0700 "$prefix/etc/rawtun"
for entry in "${examples[@]}"; do
    IFS='|' read -r src dest <<<"$entry"
    if [[ -e $prefix$dest ]]; then
        if cmp -s "$repo/$src" "$prefix$dest"; then
            echo "unchanged $dest"
        else
            echo "kept      $dest (exists; not overwritten)"
        fi
    else
        install -m 0600 "$repo/$src" "$prefix$dest"
        echo "installed $dest"
    fi
done

if ((live)); then
    systemctl daemon-reload
fi
cat <<NEXT

next steps:
  1. cp /etc/rawtun/server.yaml.example /etc/rawtun/server.yaml   (or client), edit it;
     put the same key from 'rawtun secret' in both ends' configs
  2. rawtun check -c /etc/rawtun/server.yaml
  3. systemctl enable --now rawtun@server
  4. scripts/tune.sh   raises kernel buffers now (the sysctl file applies them at boot)
NEXT
