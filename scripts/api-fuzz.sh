#!/usr/bin/env bash
# Property-based tests of the REST API with schemathesis, against the served OpenAPI document:
# no 5xx, and every response matches the documented schema. Starts its own `pier serve` on a
# loopback port with a throwaway data dir, and stops it (by pid) when done.
#   scripts/api-fuzz.sh [path/to/pier]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

pier=${1:-}
if [[ -z "$pier" ]]; then
  target_dir=$(cargo_target_dir)
  pier="$target_dir/debug/pier"
fi
command -v schemathesis >/dev/null || python3 -m pip install -q --disable-pip-version-check schemathesis

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT

printf 'fuzz admin password\n' | "$pier" --data-dir "$data" admin create --email fuzz@example.com --password-stdin >/dev/null
token=$("$pier" --data-dir "$data" token create --email fuzz@example.com --name schemathesis --scope admin 2>/dev/null)
# Apps the fuzzer creates may only name images on this machine's registry: Docker never reaches out.
# An offsite backup target it sets may only be a closed loopback port: restic never reaches out.
# Webhooks and a mail server it sets likewise: notifications never leave the machine.
PIER_LOG=warn PIER_ALLOWED_REGISTRIES=127.0.0.1:5123 PIER_BACKUP_TARGET_HOSTS=127.0.0.1:9 PIER_NOTIFY_HOSTS=127.0.0.1:9 "$pier" --data-dir "$data" serve --listen "127.0.0.1:$port" --no-proxy &
pid=$!
for _ in $(seq 100); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null && break
  sleep 0.1
done

schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples 40 --seed 20261122 --request-timeout 10
