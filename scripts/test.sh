#!/usr/bin/env bash
# The project's test command (README "Set-up", CI's .ci/run).
# Needs: rustup (it adds the wasm32-wasip2 target if missing), sh and awk.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Host, SDK and the integration suite (one test binary, tests/all).
cargo test --workspace 2>&1 | tee -a "$log"

# The built-in strategies' logic, natively (their own workspace).
cargo test --manifest-path strategies/Cargo.toml --target-dir target/strategies-native 2>&1 | tee -a "$log"

# The example trainer's own tests (its own workspace; the demo test above
# already built it in release into target/ranker).
cargo test --release --manifest-path examples/ranker/Cargo.toml --target-dir target/ranker 2>&1 | tee -a "$log"

# One closing line over every test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
