#!/usr/bin/env bash
# The benchmark command (README "Benchmarks", BENCHMARKS.md): Reagent against
# Optuna TPE and random search on the same commands, and the host's own
# costs, each measured within one run. Sets up a Python venv with Optuna
# from PyPI (target/python/venv) the first time. Writes every figure to
# target/bench/results.json.
#
#   scripts/bench.sh                 # everything (the ranker part takes long)
#   REAGENT_BENCH_OBJECTIVES=noisy REAGENT_BENCH_BUDGETS=30 scripts/bench.sh
#
# Knobs: see host/benches/compare.rs (REAGENT_BENCH_*) and
# host/benches/transfer.rs (REAGENT_TRANSFER_*: does a campaign with an
# earlier campaign's insights reach its improvement in fewer trials?).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
bench/setup-venv.sh
cargo bench -p reagent --bench sandbox
cargo bench -p reagent --bench campaign
cargo bench -p reagent --bench compare
cargo bench -p reagent --bench transfer
target/python/venv/bin/python3 - <<'PY'
import json, pathlib
out = {}
for name in ["sandbox", "campaign", "compare", "transfer"]:
    p = pathlib.Path("target/bench") / f"{name}.json"
    if p.exists():
        out[name] = json.loads(p.read_text())
pathlib.Path("target/bench/results.json").write_text(json.dumps(out, indent=2))
print("all figures: target/bench/results.json")
PY
