#!/usr/bin/env bash
# Regenerates .sqlx/ (sqlx's offline query data) from the migrations, without sqlx-cli: the query
# macros write their data to SQLX_OFFLINE_DIR when they run against a live database.
set -euo pipefail
cd "$(dirname "$0")/.."
db=$(mktemp -d)/prepare.db
for m in migrations/*.sql; do sqlite3 "$db" < "$m"; done
rm -rf .sqlx && mkdir .sqlx
touch core/src/repo.rs
DATABASE_URL="sqlite://$db" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" cargo check -p pier-core --quiet
rm -rf "$(dirname "$db")"
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
