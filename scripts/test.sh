#!/usr/bin/env bash
# Runs every check and test Pier has, on a fresh Debian 12 machine or a warm one:
# formatting, clippy (server and wasm), unit + integration tests, and the browser tests against a
# real `pier serve` in headless chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

./scripts/setup.sh --test

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
t0=$(date +%s)

# Queries are checked against the committed offline data (.sqlx), never a live database.
export SQLX_OFFLINE=true
# cargo-leptos builds with this set; leptos reads it at compile time (the wasm file name).
# Setting it for every cargo call keeps test, clippy and leptos builds from invalidating each other.
export LEPTOS_OUTPUT_NAME=pier

step "cargo fmt --check"
cargo fmt --all -- --check

step "the release build's profile (pgo/) is readable by this toolchain"
# scripts/release.sh builds without a profile from another LLVM (it cannot read it): a toolchain
# bump must come with a new profile from scripts/pgo.sh, or the release panel silently loses it.
llvm=$(rustc -vV | sed -n 's/^LLVM version: //p')
if [[ "$(cat pgo/llvm-version)" != "$llvm" ]]; then
  echo "pgo/pier.profdata.xz is from LLVM $(cat pgo/llvm-version), rustc has $llvm: run scripts/pgo.sh" >&2
  exit 1
fi

step "cargo clippy (server side)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (browser side, wasm)"
cargo clippy -p app --lib --target wasm32-unknown-unknown --features hydrate -- -D warnings

step "services: dockerd, a local registry with a login, busybox test images"
# Stopped again on exit (dockerd only when this run started it), whatever happens.
trap './scripts/swarm.sh down || true; ./scripts/services.sh stop || true' EXIT
./scripts/services.sh start
# shellcheck disable=SC1090
source "$(./scripts/services.sh env)"

step "a three-engine Docker Swarm in network namespaces (the multi-node tests)"
./scripts/swarm.sh up
# shellcheck disable=SC1090
source "$(./scripts/swarm.sh env)"

step "cargo leptos build (server binary + wasm + CSS)"
# --split: the pages are lazy routes (app/src/routes.rs), their code in five wasm chunks that the
# browser fetches as it shows them. A site built without it cannot load them (the panel's log
# says so at start).
cargo leptos build --split

step "cargo test (unit, integration, browser)"
# Three tests at a time: most of the integration tests wait on containers, not on the two cores.
# The timeout turns any future hang into a failure with a message instead of a silent CI stall.
timeout --foreground 1200 cargo test --workspace -- --test-threads=3

step "schemathesis against the served OpenAPI document"
target_dir=$(cargo_target_dir)
./scripts/api-fuzz.sh "$target_dir/debug/pier"

echo
echo "all checks passed in $(( $(date +%s) - t0 ))s"
