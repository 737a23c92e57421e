#!/usr/bin/env bash
# Writes what scripts/release.sh lays out and optimises the server with:
#   pgo/pier.profdata.xz  the profile: how often each function and branch ran in a training load
#   pgo/pier.order.xz     the code layout: the functions the training load really runs, for the
#                         linker to place together (rust-lld --symbol-ordering-file)
#   pgo/llvm-version      the LLVM that wrote the profile (a profile only reads back in the same)
#
# The training load is the benches:
#   bench/panel.py    start-up, sign-ins, server-rendered pages, the REST API, tokens
#   bench/page.py     the pages a browser loads and hydrates (headless chromium)
#   bench/apps.py     deploys, deletes and 100 running apps on the local dockerd: the reconciler,
#                     the sampler, the container list, the apps API
#   bench/routing.py  apps served through HAProxy
#   bench/observability.py  the audit log and the request metrics
# It runs twice: against the server built instrumented (-Cprofile-generate; a target directory
# of its own), for the profile; then against the release build, from a loop-mounted disk image
# with read-ahead off, while scripts/pgo-order.py records which pages of its code get touched.
# Without read-ahead the kernel maps only pages some process touched, so the record is exact to
# the page, and it also covers code the profile cannot see (the standard library, SQLite's C).
#
# Run it again after larger changes to the server: code changed since is optimised as without a
# profile and placed among the rest. About an hour (three release builds). `scripts/pgo.sh
# --layout` redoes only the layout, with the profile there is (about 6 minutes when the release
# build is current).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

./scripts/setup.sh --test
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
# llvm-profdata of the toolchain's own LLVM version.
rustup component add llvm-tools-preview
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"

# The site (wasm, CSS, hash.txt) the panel serves, from the normal release build.
./scripts/release.sh
target_dir=$(cargo_target_dir)
site="$PWD/target/site"

layout_only=false
[[ "${1:-}" == --layout ]] && layout_only=true

raw=$(mktemp -d /tmp/pier-pgo.XXXXXX)
mnt="$raw/code"
cleanup() {
  if [[ -n "${watcher:-}" ]]; then kill -KILL "$watcher" 2>/dev/null || true; fi
  if mountpoint -q "$mnt"; then umount "$mnt"; fi
  if [[ -n "${loop:-}" ]]; then losetup -d "$loop" 2>/dev/null || true; fi
  rm -rf "$raw"
  ./scripts/services.sh stop
}
trap cleanup EXIT

# The training load, against the server binary $1 (hash.txt beside it).
train() {
  python3 bench/panel.py --bin "$1" --site "$site" --signins 200 --seconds 3 --settle 5
  # Its budget check may fail (then it says so above); the load it makes is what counts here.
  python3 bench/page.py --bin "$1" --site "$site" || echo "pgo.sh: page.py is over its budget"
  python3 bench/apps.py --bin "$1" --site "$site" --runs 3 --apps 100
  python3 bench/routing.py --bin "$1" --site "$site" --rounds 1
  python3 bench/observability.py --bin "$1" --site "$site" --seconds 3 --rounds 1
}
./scripts/services.sh start
# shellcheck disable=SC1090
source "$(./scripts/services.sh env)"

if ! $layout_only; then
  gen_dir="$target_dir/pgo-generate"
  say "the server, instrumented ($gen_dir)"
  CARGO_TARGET_DIR="$gen_dir" SQLX_OFFLINE=true LEPTOS_OUTPUT_NAME=pier \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--cfg erase_components -Cprofile-generate=$raw" \
    cargo build --release -p pier --bin pier --no-default-features --features ssr
  cp "$target_dir/release/hash.txt" "$gen_dir/release/hash.txt"
  # One file per process (%p): the panels, and the CLI calls that set them up.
  say "training run, for the profile"
  LLVM_PROFILE_FILE="$raw/pier-%p.profraw" train "$gen_dir/release/pier"

  # Not sparse: a function the run never called keeps its record of zeros, which is what tells
  # LLVM it is cold (one without a record is merely unknown, and stays among the rest).
  mkdir -p pgo
  "$profdata" merge -o "$raw/pier.profdata" "$raw"/*.profraw
  xz -9 -T0 -c "$raw/pier.profdata" > pgo/pier.profdata.xz
  rustc -vV | sed -n 's/^LLVM version: //p' > pgo/llvm-version
  echo "pgo.sh: wrote pgo/pier.profdata.xz ($(du -h pgo/pier.profdata.xz | cut -f1)) from" \
       "$(find "$raw" -name '*.profraw' | wc -l) processes, for LLVM $(cat pgo/llvm-version)"
  # Built again with the new profile: the numbers LTO gives some local functions (`name.2783`)
  # changed between builds with other flags, so the layout is taken from a binary built as the
  # next release build will be.
  ./scripts/release.sh
else
  xz -dc pgo/pier.profdata.xz > "$raw/pier.profdata"
fi

# The release binary, built with the profile there is, has the symbol names the next release
# build will have (the layout does not change them), so its touched pages name the functions.
say "training run, for the layout (release build, no read-ahead)"
truncate -s 256M "$raw/code.img"
mkfs.ext4 -q -F "$raw/code.img"
loop=$(losetup --find --show "$raw/code.img")
mkdir -p "$mnt"
mount "$loop" "$mnt"
cp "$target_dir/release/pier" "$target_dir/release/hash.txt" "$mnt/"
# Mounted again, so that none of the binary is cached: every page comes in when touched.
umount "$mnt"
echo 0 > "/sys/block/${loop#/dev/}/queue/read_ahead_kb"
mount -o ro "$loop" "$mnt"
python3 scripts/pgo-order.py watch --bin "$mnt/pier" --out "$raw/pages" &
watcher=$!
# At the log level a panel runs with by default (the benches' own is `warn`): the code that
# formats log lines is code a panel runs.
PIER_BENCH_LOG=info train "$mnt/pier"
kill -TERM "$watcher"
wait "$watcher"
watcher=
python3 scripts/pgo-order.py order --bin "$mnt/pier" --pages "$raw/pages" \
  --profdata "$raw/pier.profdata" --llvm-profdata "$profdata" --out "$raw/pier.order"
xz -9 -T0 -c "$raw/pier.order" > pgo/pier.order.xz
echo "pgo.sh: wrote pgo/pier.order.xz; scripts/release.sh uses it and pgo/pier.profdata.xz"
