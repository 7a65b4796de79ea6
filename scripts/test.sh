#!/usr/bin/env bash
# The project's test command (README "Set-up", CI's .ci/run).
# Needs: rustup (it adds the wasm32-wasip2 target if missing), sh and awk;
# python3 with venv and pip for the Python strategy tests (skipped with a
# message without it, unless REAGENT_REQUIRE_PYTHON=1, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# One Python venv, cached in target/python/venv: componentize-py for
# `reagent strategy build` (the tests in tests/all/python.rs use this venv
# too), pytest for the Python SDK, its templates and the example, and Optuna
# for `reagent strategy bench --strategy optuna-tpe` (tests/all/lab.rs) and
# the benchmarks (bench/requirements.txt), Selenium for the browser tests
# (tests/browser/requirements.txt) and MLflow for the export test
# (tests/mlflow/requirements.txt).
python=${REAGENT_PYTHON:-python3}
venv=target/python/venv
have_python=0
if "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # (Re)install when a pin of any requirements file is missing.
    installed=$("$venv/bin/python" -m pip freeze 2>/dev/null || true)
    missing=0
    while read -r pin; do
        case $pin in '' | '#'*) continue ;; esac
        grep -qxiF "$pin" <<<"$installed" || missing=1
    done < <(cat guest-sdk-py/requirements-dev.txt bench/requirements.txt tests/browser/requirements.txt tests/mlflow/requirements.txt)
    if [ "$missing" = 1 ]; then
        echo "setting up $venv (componentize-py, pytest, optuna, selenium, mlflow; once)"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r guest-sdk-py/requirements-dev.txt -r bench/requirements.txt \
            -r tests/browser/requirements.txt -r tests/mlflow/requirements.txt
    fi
    have_python=1
    export REAGENT_BENCH_PYTHON=$PWD/$venv/bin/python
elif [ "${REAGENT_REQUIRE_PYTHON:-}" = 1 ]; then
    echo "REAGENT_REQUIRE_PYTHON=1 but $python with venv is not available" >&2
    exit 1
else
    echo "skipping the Python tests: no $python with venv here"
fi

# Host, SDK and the integration suite (one test binary, tests/all).
cargo test --workspace 2>&1 | tee -a "$log"

# The built-in strategies' logic, natively (their own workspace).
cargo test --manifest-path strategies/Cargo.toml --target-dir target/strategies-native 2>&1 | tee -a "$log"

# The example trainer's own tests (its own workspace; the demo test above
# already built it in release into target/ranker).
cargo test --release --manifest-path examples/ranker/Cargo.toml --target-dir target/ranker 2>&1 | tee -a "$log"

# The Python SDK, the `strategy new --lang python` templates and the example
# Python strategy, natively with pytest (each its own run: both templates
# and the example have a module named `app`).
if [ "$have_python" = 1 ]; then
    py=$PWD/$venv/bin/python
    (cd guest-sdk-py && "$py" -m pytest -q -p no:cacheprovider) 2>&1 | tee -a "$log"
    for world in generator debugger; do
        (cd "guest-sdk-py/templates/$world" && PYTHONPATH=.:../.. "$py" -m pytest -q -p no:cacheprovider tests) 2>&1 | tee -a "$log"
    done
    (cd examples/python-evolve && "$py" -m pytest -q -p no:cacheprovider) 2>&1 | tee -a "$log"
fi

# One closing line over every test binary and pytest run above (cargo's
# `test result:` lines; pytest's `N failed, N passed in Xs`, errors counted
# as failures).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^(=+ )?[0-9]+ (passed|failed|errors?)/ && / in [0-9.]+s/ {
         for (i = 2; i <= NF; i++) { if ($i ~ /^passed,?$/) p += $(i-1); if ($i ~ /^(failed|errors?),?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
