#!/usr/bin/env bash
# fuzz.sh — runs every cargo-fuzz target in fuzz/fuzz_targets/ for a given time each, one
# after the other, and prints a table: target, seconds, executions, findings.
#
# Usage:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     # default 600 s, every target
#
# Targets are found by listing fuzz/fuzz_targets/*.rs (each must have a [[bin]] entry in
# fuzz/Cargo.toml), so a new target joins without editing this script. Each run starts from
# the committed seeds in fuzz/corpus/TARGET/ (read-only) and keeps what it learns in
# fuzz/work/TARGET/ (not committed), so later runs continue where earlier ones stopped.
# A crash, leak, timeout (an input taking over 10 s) or out-of-memory is a finding: libFuzzer
# writes the input to fuzz/artifacts/TARGET/ and this script exits 1 after the table.
#
# Needs cargo-fuzz (installed with `cargo install cargo-fuzz --locked` when missing); on
# the stable toolchain RUSTC_BOOTSTRAP=1 lets it use the sanitizer flags. Long runs: run
# it under `nice -n 19` on a shared machine. FUZZ_TABLE=FILE also writes the table there.
# The targets are built once, then their binaries run directly; FUZZ_BIN_DIR=DIR skips
# the build and runs the binaries in DIR (a copy, so the tree can change meanwhile).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-600}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 64
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

targets=("$@")
if ((${#targets[@]} == 0)); then
    for f in fuzz/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi
for t in "${targets[@]}"; do
    if ! [[ -f fuzz/fuzz_targets/$t.rs ]]; then
        echo "fuzz.sh: no target $t (fuzz/fuzz_targets/$t.rs)" >&2
        exit 64
    fi
done

# One build for all targets (release, debug assertions on, address sanitizer).
bin_dir=${FUZZ_BIN_DIR:-}
if [[ -z $bin_dir ]]; then
    (cd fuzz && cargo fuzz build --debug-assertions)
    bin_dir=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
fi
bin_dir=$(cd "$bin_dir" && pwd)

failed=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log="fuzz/work/$t.log"
    echo "=== fuzz $t for ${seconds}s"
    status=0
    (cd fuzz && "$bin_dir/$t" "work/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1) >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    findings=$((after - before))
    if ((status != 0 && findings == 0)); then
        findings=1 # a failure that left no artifact (e.g. a build error)
    fi
    if ((findings > 0)); then
        failed=1
        tail -40 "$log"
    fi
    rows+=("| $t | $seconds | ${runs:-?} | $findings |")
done

table="| target | seconds | executions | findings |
|---|---|---|---|"
for r in "${rows[@]}"; do
    table+=$'\n'"$r"
done
echo "$table"
if [[ -n ${FUZZ_TABLE:-} ]]; then
    echo "$table" >"$FUZZ_TABLE"
fi
if ((failed)); then
    echo "fuzz.sh: FINDINGS (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no findings"
