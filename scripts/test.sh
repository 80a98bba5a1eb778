#!/usr/bin/env bash
# test.sh — THE test command of rawtun (CI runs it through .ci/run). Needs root: the
# end-to-end tests build network namespaces, install firewall rules and open raw sockets.
#
# Steps: deps.sh, cargo fmt --check, clippy (-D warnings), cargo test --all-targets (unit,
# integration, namespace e2e with the afpacket backend, then again with pcap, benches in
# test mode), doc tests, cargo doc (-D warnings),
# and every fuzz target for a few seconds on its corpus (scripts/fuzz.sh; FUZZ_SECONDS).
# Ends with one summary line: "test.sh: PASS ..." or "test.sh: FAIL at <step> ...".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -E env "PATH=$PATH" bash "$0" "$@"
    fi
    echo "test.sh: must run as root (namespaces, iptables, raw sockets) and sudo is missing" >&2
    exit 1
fi

# A fresh clone gains nothing from incremental artifacts (1.5 GB of them); CI disks are small.
export CARGO_INCREMENTAL=0
free_mb() { df -Pm "${1:-.}" | awk 'NR == 2 { print $4 }'; }
echo "test.sh: $(free_mb) MB free on $(df -P . | awk 'NR == 2 { print $6 }') at start"

start=$(date +%s)
done_steps=()
step() {
    local name=$1
    shift
    local t0
    t0=$(date +%s)
    echo "=== $name: $*"
    if ! "$@"; then
        echo "test.sh: FAIL at $name after $(($(date +%s) - start)) s (passed: ${done_steps[*]:-none})"
        exit 1
    fi
    done_steps+=("$name")
    echo "=== $name ok ($(($(date +%s) - t0)) s)"
}

step deps bash scripts/deps.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --all-targets -- -D warnings
# Tests have their own deadlines; the outer timeout only guards CI against a wedged run.
# The benches (criterion, harness = false) run in test mode separately: their argument
# parser refuses the test harness's --include-ignored.
step test timeout 1500 cargo test --lib --bins --tests --examples --no-fail-fast -- --include-ignored
# The same integration tests with the other packet backend: every end-to-end test's daemons
# use RAWTUN_TEST_BACKEND (tests/common: afpacket by default, the step above).
step test-pcap env RAWTUN_TEST_BACKEND=pcap timeout 1500 cargo test --tests --no-fail-fast -- --include-ignored
step bench-smoke cargo test --benches --no-fail-fast
step doctest cargo test --doc
step doc env RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps
# The fuzz targets build with their own sanitizer flags in fuzz/target (~1.5 GB). The test
# binaries are no longer needed by then: when the disk is short, make room rather than die
# in the linker (a full disk shows up there as "ld terminated with signal 7 [Bus error]").
if (($(free_mb) < 6000)); then
    echo "test.sh: only $(free_mb) MB free before the fuzz build; removing target/debug"
    rm -rf target/debug
fi
step fuzz bash scripts/fuzz.sh "${FUZZ_SECONDS:-4}"
echo "test.sh: PASS (${done_steps[*]}) in $(($(date +%s) - start)) s"
