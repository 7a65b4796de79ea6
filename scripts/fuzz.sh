#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads a person's or a
# strategy's bytes (targets in host/src/fuzz.rs, listed in fuzz/Cargo.toml).
#
#   scripts/fuzz.sh                 every target, 60 s each
#   scripts/fuzz.sh 300 policy      one target, 5 minutes
#   scripts/fuzz.sh cmin            shrink every corpus to the inputs that
#                                   reach distinct code (before committing)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz`). New inputs that reach new code go
# to fuzz/corpus/<target>/ (commit them after `scripts/fuzz.sh cmin`); a crash is
# saved under fuzz/artifacts/<target>/ and the script stops with its path.
#
# Without nightly or cargo-fuzz it says so and falls back to the stable
# harness the test suite runs (corpus replay plus seeded mutations).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
mode=run
if [ "${1:-}" = cmin ]; then
    mode=cmin
    shift
    secs=0
else
    secs=${1:-60}
    shift || true
    case $secs in
    '' | *[!0-9]*)
        echo "fuzz.sh: '$secs' is not a number of seconds (scripts/fuzz.sh --help)" >&2
        exit 2
        ;;
    esac
fi
for t in "$@"; do
    if ! grep -qx "name = \"$t\"" fuzz/Cargo.toml; then
        echo "fuzz.sh: no fuzz target '$t'; the targets: $(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^reagent-fuzz$' | tr '\n' ' ')" >&2
        exit 2
    fi
done
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^reagent-fuzz$')
fi

if ! rustup run nightly cargo --version >/dev/null 2>&1 || ! command -v cargo-fuzz >/dev/null; then
    [ "$mode" = cmin ] && { echo "cmin needs nightly and cargo-fuzz" >&2; exit 1; }
    echo "no nightly toolchain or cargo-fuzz here: running the stable harness for ${secs}s per target instead"
    echo "(rustup toolchain install nightly && cargo install cargo-fuzz for coverage-guided runs)"
    REAGENT_FUZZ_SECS=$secs REAGENT_FUZZ_TARGETS="${targets[*]}" \
        exec cargo test --test all fuzz::every_fuzz_target -- --nocapture
fi
# The guests are built once by the stable toolchain (the nightly one may
# have no wasm32-wasip2 standard library); the fuzz build reuses them.
cargo build -p reagent --lib
export REAGENT_PREBUILT_GUESTS=$PWD/target/guests
export CARGO_TARGET_DIR=$PWD/target/fuzz
if [ "$mode" = cmin ]; then
    for target in "${targets[@]}"; do
        before=$(ls "fuzz/corpus/$target" | wc -l)
        cargo +nightly fuzz cmin --fuzz-dir fuzz "$target" "fuzz/corpus/$target" >/dev/null 2>&1
        echo "$target: $before -> $(ls "fuzz/corpus/$target" | wc -l) inputs"
    done
    exit 0
fi
for target in "${targets[@]}"; do
    echo "== $target (${secs}s)"
    mkdir -p "fuzz/corpus/$target"
    # -rss_limit_mb: the parsers cap their inputs; a target that needs more
    # than 2 GiB is a finding.
    set +e
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written|thread .* panicked)'
    status=${PIPESTATUS[0]}
    set -e
    if [ "$status" != 0 ]; then
        echo "fuzz: $target found a crash (see fuzz/artifacts/$target/)" >&2
        exit 1
    fi
done
echo "fuzz: done; minimise the corpora with: scripts/fuzz.sh cmin"
