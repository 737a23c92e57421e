#!/usr/bin/env bash
# Writes pgo/pier.profdata.xz, the profile scripts/release.sh optimises the server with, and
# pgo/llvm-version, the LLVM that wrote it (a profile only reads back in the same one).
#
# Builds the server instrumented (-Cprofile-generate; a target directory of its own), runs the
# benches against it as the training load, and merges what they recorded:
#   bench/panel.py    start-up, sign-ins, server-rendered pages, the REST API, tokens
#   bench/page.py     the pages a browser loads and hydrates (headless chromium)
#   bench/apps.py     deploys, deletes and 20 running apps on the local dockerd: the reconciler,
#                     the sampler, the container list, the apps API
#   bench/routing.py  apps served through HAProxy
#   bench/observability.py  the audit log and the request metrics
# Run it again after larger changes to the server: code changed since the profile was taken is
# optimised as without one (and placed with the code the run called). About half an hour: two
# release builds and the benches.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh --test
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
# llvm-profdata of the toolchain's own LLVM version.
rustup component add llvm-tools-preview
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"

# The site (wasm, CSS, hash.txt) the panel serves, from the normal release build.
./scripts/release.sh
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
site="$PWD/target/site"

raw=$(mktemp -d /tmp/pier-pgo.XXXXXX)
trap 'rm -rf "$raw"; ./scripts/services.sh stop' EXIT
gen_dir="$target_dir/pgo-generate"
printf '\033[1m==> %s\033[0m\n' "the server, instrumented ($gen_dir)"
CARGO_TARGET_DIR="$gen_dir" SQLX_OFFLINE=true LEPTOS_OUTPUT_NAME=pier \
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--cfg erase_components -Cprofile-generate=$raw" \
  cargo build --release -p pier --bin pier --no-default-features --features ssr
bin="$gen_dir/release/pier"
cp "$target_dir/release/hash.txt" "$gen_dir/release/hash.txt"
# One file per process (%p): the panels, and the CLI calls that set them up.
export LLVM_PROFILE_FILE="$raw/pier-%p.profraw"

printf '\033[1m==> %s\033[0m\n' "training run"
python3 bench/panel.py --bin "$bin" --site "$site" --signins 200 --seconds 3 --settle 5
python3 bench/page.py --bin "$bin" --site "$site"
./scripts/services.sh start
# shellcheck disable=SC1090
source "$(./scripts/services.sh env)"
python3 bench/apps.py --bin "$bin" --site "$site" --runs 3 --apps 20
python3 bench/routing.py --bin "$bin" --site "$site" --rounds 1
python3 bench/observability.py --bin "$bin" --site "$site" --seconds 3 --rounds 1

# Not sparse: a function the run never called keeps its record of zeros, which is what tells
# LLVM it is cold (one without a record is merely unknown, and stays among the rest).
mkdir -p pgo
"$profdata" merge -o "$raw/pier.profdata" "$raw"/*.profraw
xz -9 -T0 -c "$raw/pier.profdata" > pgo/pier.profdata.xz
rustc -vV | sed -n 's/^LLVM version: //p' > pgo/llvm-version
echo "pgo.sh: wrote pgo/pier.profdata.xz ($(du -h pgo/pier.profdata.xz | cut -f1)) from" \
     "$(find "$raw" -name '*.profraw' | wc -l) processes, for LLVM $(cat pgo/llvm-version);" \
     "scripts/release.sh uses it"
