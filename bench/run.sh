#!/usr/bin/env bash
# Builds the release panel and runs the benchmarks, printing their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
SQLX_OFFLINE=true cargo leptos build --release
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
python3 bench/panel.py --bin "$target_dir/release/pier" --site "$PWD/target/site" "$@"
