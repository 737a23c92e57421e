#!/usr/bin/env bash
# Builds the release panel and runs the benchmarks, printing their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
./scripts/setup.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
./scripts/release.sh
target_dir=$(cargo_target_dir)
python3 bench/panel.py --bin "$target_dir/release/pier" --site "$PWD/target/site" "$@"
# What the audit log and the request metrics cost the REST throughput.
python3 bench/observability.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Page weight and time to hydrate in headless chromium (fails above the 400 KB budget).
python3 bench/page.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Apps benchmark: needs dockerd, the local registry and its test images (stopped again on exit).
trap './scripts/services.sh stop' EXIT
./scripts/services.sh start
# shellcheck disable=SC1090
source "$(./scripts/services.sh env)"
python3 bench/apps.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Tag following: from a push under an app's tag to the new deployment serving, with the webhook.
python3 bench/tags.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Volumes: redeploy gap of an app with a volume (stop-first) beside one without; deploy time on
# the userns dockerd beside a second one without user namespaces (started and stopped by the bench).
python3 bench/volumes.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Routing: through HAProxy versus straight to the container; then route changes and reloads at
# 10, 1,000 and 10,000 routes on a bare haproxy.
python3 bench/routing.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
# Swarm: apps as services over the three-engine Swarm of scripts/swarm.sh (down again on exit).
trap './scripts/swarm.sh down; ./scripts/services.sh stop' EXIT
./scripts/swarm.sh up
# shellcheck disable=SC1090
source "$(./scripts/swarm.sh env)"
python3 bench/swarm.py --bin "$target_dir/release/pier" --site "$PWD/target/site"
SQLX_OFFLINE=true cargo bench -p pier --bench routes
