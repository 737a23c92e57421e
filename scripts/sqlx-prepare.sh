#!/usr/bin/env bash
# Regenerates .sqlx/ (sqlx's offline query data) from the migrations, without sqlx-cli: the query
# macros write their data to SQLX_OFFLINE_DIR when they run against a live database. The old data
# stays until the new is complete; the scratch database goes whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
db=$scratch/prepare.db
for m in migrations/*.sql; do sqlite3 "$db" < "$m"; done
mkdir "$scratch/sqlx"
touch core/src/lib.rs
DATABASE_URL="sqlite://$db" SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$scratch/sqlx" cargo check -p pier-core --quiet
rm -rf .sqlx
mv "$scratch/sqlx" .sqlx
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
