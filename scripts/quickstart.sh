#!/usr/bin/env bash
# The main job (README "Set-up"): a whole campaign — baseline, validate,
# combine, exploit, confirm — on the example workload in examples/quickstart,
# in a scratch workspace under target/quickstart, then its report.
# Needs: rustup (adds wasm32-wasip2 if missing), sh and awk.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release --bin reagent

dir=target/quickstart
rm -rf "$dir"
mkdir -p "$dir"
cp examples/quickstart/* "$dir/"
cd "$dir"
../release/reagent init
../release/reagent run campaign.toml --yes
echo
../release/reagent report 1
