#!/usr/bin/env bash
# Sets up, builds (release) and runs Pier for real on this machine.
#   PIER_DATA_DIR   where the database and secret key live   (default /var/lib/pier)
#   PIER_LISTEN     the panel's HTTP address                 (default 127.0.0.1:3000)
#   PIER_HTTP_ADDR, PIER_HTTPS_ADDR  where its HAProxy listens   (default :80, :443)
# On the first run, with no user yet, it asks for the first admin's email and password.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

./scripts/setup.sh

export PIER_DATA_DIR=${PIER_DATA_DIR:-/var/lib/pier}
export PIER_LISTEN=${PIER_LISTEN:-127.0.0.1:3000}
export PIER_SITE_ROOT=${PIER_SITE_ROOT:-$PWD/target/site}
export SQLX_OFFLINE=true

# Pier runs apps on the local Docker engine: start it when it is not running.
./scripts/services.sh dockerd

# The release build, profile-guided (--precompress: brotli and gzip copies of the browser files).
./scripts/release.sh
target_dir=$(cargo_target_dir)
pier="$target_dir/release/pier"

# No default credentials: the first admin is created here, by the operator.
users=0
if [[ -f "$PIER_DATA_DIR/pier.db" ]] && command -v sqlite3 >/dev/null; then
  users=$(sqlite3 "$PIER_DATA_DIR/pier.db" 'SELECT COUNT(*) FROM users' 2>/dev/null || echo 0)
elif [[ -f "$PIER_DATA_DIR/pier.db" ]]; then
  users=unknown
fi
if [[ "$users" == 0 ]]; then
  if [[ -t 0 ]]; then
    echo "No users yet. Create the first admin."
    read -r -p "Admin email: " email
    read -r -s -p "Admin password (12+ characters): " password; echo
    printf '%s\n' "$password" | "$pier" admin create --email "$email" --password-stdin
    unset password
  else
    echo "No users yet. Create the first admin with:"
    echo "  printf '%s\\n' \"\$PASSWORD\" | $pier --data-dir $PIER_DATA_DIR admin create --email you@example.com --password-stdin"
  fi
fi

printf '\033[1m==> %s\033[0m\n' "pier serve: panel on http://$PIER_LISTEN, sites through HAProxy on ${PIER_HTTP_ADDR:-0.0.0.0:80} and ${PIER_HTTPS_ADDR:-0.0.0.0:443}"
exec "$pier" serve
