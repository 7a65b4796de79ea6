#!/usr/bin/env bash
# The project's test command (README "Set-up", CI's .ci/run).
# Needs: rustup (it adds the wasm32-wasip2 target if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

# Host, SDK and the integration suite (one test binary, tests/all).
cargo test --workspace

# The built-in strategies' logic, natively (their own workspace).
cargo test --manifest-path strategies/Cargo.toml --target-dir target/strategies-native
