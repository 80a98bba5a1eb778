#!/usr/bin/env bash
# deps.sh — install the Debian packages rawtun's build, tests, demo and benches need.
# Runs `apt-get update` and `apt-get install` only when something is missing. kcptun (benches
# only) is optional: its absence is reported, not fatal. Needs root.
set -euo pipefail

required=(libpcap-dev iptables nftables iperf3 tcpdump socat curl iputils-ping iproute2
    ethtool python3 systemd conntrack)
optional=(kcptun)

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for pkg in "${required[@]}"; do
    if [[ $pkg == python3 ]] && command -v python3 >/dev/null 2>&1; then
        continue # any python3 will do (e.g. pyenv)
    fi
    installed "$pkg" || missing+=("$pkg")
done
missing_optional=()
for pkg in "${optional[@]}"; do
    installed "$pkg" || missing_optional+=("$pkg")
done

if ((${#missing[@]} + ${#missing_optional[@]} == 0)); then
    echo "deps: all packages present"
else
    if [[ $EUID -ne 0 ]]; then
        echo "deps: missing ${missing[*]} ${missing_optional[*]}; run as root to install" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "deps: installing ${missing[*]} ${missing_optional[*]}"
    apt-get update -qq
    if ((${#missing[@]} > 0)); then
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    for pkg in "${missing_optional[@]}"; do
        if ! apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1; then
            echo "deps: optional package $pkg is unavailable (only benches need it)" >&2
        fi
    done
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found; install a Rust toolchain (rustup) with rustfmt and clippy" >&2
    exit 1
fi
