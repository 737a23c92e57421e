#!/usr/bin/env bash
# Writes what scripts/release.sh lays out and optimises the server with:
#   pgo/pier.profdata.xz  the profile: how often each function and branch ran in a training load
#   pgo/pier.order.xz     the code layout: the functions the training load really runs, for the
#                         linker to place together (rust-lld --symbol-ordering-file)
#   pgo/pier.first.xz     the functions the load's first phase ran (the panel no one browses),
#                         which the layout puts first
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
# with read-ahead off, while scripts/pgo-order.py records which pages of its code get touched,
# in two phases: the panel no one browses (apps, routing, observability), then the rest.
# Without read-ahead the kernel maps only pages some process touched, so the record is exact to
# the page, and it also covers code the profile cannot see (the standard library, SQLite's C).
#
# Run it again after larger changes to the server: code changed since is optimised as without a
# profile and placed among the rest. About an hour (three release builds). `scripts/pgo.sh
# --layout` redoes only the layout, with the profile and first phase there are (about 8 minutes
# when the release build is current); `--first-phase` counts the first phase again with an
# instrumented build and then redoes the layout, keeping the profile (about 40 minutes).
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

case "${1:-}" in
  "") mode=full ;;
  --layout) mode=layout ;;
  --first-phase) mode=first-phase ;;
  *) echo "usage: scripts/pgo.sh [--layout | --first-phase]" >&2; exit 2 ;;
esac
[[ "$mode" != layout || -f pgo/pier.first.xz ]] || {
  echo "pgo.sh: --layout needs pgo/pier.first.xz (scripts/pgo.sh --first-phase writes it)" >&2; exit 1; }

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

# The training load, against the server binary $1 (hash.txt beside it), in two phases.
# First the panel no one browses: start-up, deploys and 100 running apps (the reconciler, the
# sampler, the container list, the apps API), apps served through HAProxy, the audit log and the
# metrics. The layout puts this phase's code first, together (scripts/pgo-order.py says why).
train_unbrowsed() {
  python3 bench/apps.py --bin "$1" --site "$site" --runs 3 --apps 100
  python3 bench/routing.py --bin "$1" --site "$site" --rounds 1
  python3 bench/observability.py --bin "$1" --site "$site" --seconds 3 --rounds 1
}
# Then people at the panel: sign-ins, server-rendered pages, the pages in chromium.
train_browsed() {
  python3 bench/panel.py --bin "$1" --site "$site" --signins 200 --seconds 3 --settle 5
  # Its budget check may fail (then it says so above); the load it makes is what counts here.
  python3 bench/page.py --bin "$1" --site "$site" || echo "pgo.sh: page.py is over its budget"
}
./scripts/services.sh start
# shellcheck disable=SC1090
source "$(./scripts/services.sh env)"

# The first phase's counts, "count name" for each function instrumented (0: it did not run): the
# layout puts those it ran first.
first_counts() {
  "$profdata" merge -o "$raw/first.profdata" "$raw"/first/*.profraw
  python3 scripts/pgo-order.py counts --profdata "$raw/first.profdata" --llvm-profdata "$profdata" \
    | xz -9 -T0 > pgo/pier.first.xz
  echo "pgo.sh: wrote pgo/pier.first.xz ($(xz -dc pgo/pier.first.xz | grep -cv '^0 ') functions ran in the first phase)"
}

if [[ "$mode" != layout ]]; then
  gen_dir="$target_dir/pgo-generate"
  say "the server, instrumented ($gen_dir)"
  # The default place for its counts is a fixed one (the runs below name their own), so that
  # the instrumented build is cached from one run of this script to the next.
  CARGO_TARGET_DIR="$gen_dir" SQLX_OFFLINE=true LEPTOS_OUTPUT_NAME=pier \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="--cfg erase_components -Cprofile-generate=$gen_dir/profraw" \
    cargo build --release -p pier --bin pier --no-default-features --features ssr
  cp "$target_dir/release/hash.txt" "$gen_dir/release/hash.txt"
  # One file per process (%p): the panels, and the CLI calls that set them up; each phase's apart.
  say "training run, for the profile"
  export LLVM_PROFILE_FILE="$raw/first/pier-%p.profraw"
  train_unbrowsed "$gen_dir/release/pier"
  unset LLVM_PROFILE_FILE
  first_counts
fi
if [[ "$mode" == full ]]; then
  export LLVM_PROFILE_FILE="$raw/rest/pier-%p.profraw"
  train_browsed "$gen_dir/release/pier"
  unset LLVM_PROFILE_FILE
  # Not sparse: a function the run never called keeps its record of zeros, which is what tells
  # LLVM it is cold (one without a record is merely unknown, and stays among the rest).
  mkdir -p pgo
  "$profdata" merge -o "$raw/pier.profdata" "$raw"/first/*.profraw "$raw"/rest/*.profraw
  xz -9 -T0 -c "$raw/pier.profdata" > pgo/pier.profdata.xz
  rustc -vV | sed -n 's/^LLVM version: //p' > pgo/llvm-version
  echo "pgo.sh: wrote pgo/pier.profdata.xz ($(du -h pgo/pier.profdata.xz | cut -f1)) from" \
       "$(find "$raw" -name '*.profraw' | wc -l) processes, for LLVM $(cat pgo/llvm-version)"
  # Built again with the new profile: the numbers LTO gives some local functions (`name.2783`)
  # changed between builds with other flags, so the layout is taken from a binary built as the
  # next release build will be.
  ./scripts/release.sh
fi
# The profile the release build was optimised with (the full run has just written it).
[[ -f "$raw/pier.profdata" ]] || xz -dc pgo/pier.profdata.xz > "$raw/pier.profdata"

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
python3 scripts/pgo-order.py watch --bin "$mnt/pier" --out "$raw/pages" --first-out "$raw/first.pages" &
watcher=$!
# At the log level a panel runs with by default (the benches' own is `warn`): the code that
# formats log lines is code a panel runs.
export PIER_BENCH_LOG=info
train_unbrowsed "$mnt/pier"
# The pages touched so far are the first phase's: written before the second phase starts.
kill -USR1 "$watcher"
until [[ -s "$raw/first.pages" ]]; do
  kill -0 "$watcher" || { echo "pgo.sh: the page recorder ended early" >&2; exit 1; }
  sleep 0.2
done
train_browsed "$mnt/pier"
unset PIER_BENCH_LOG
kill -TERM "$watcher"
wait "$watcher"
watcher=
python3 scripts/pgo-order.py order --bin "$mnt/pier" --pages "$raw/pages" --first "$raw/first.pages" \
  --first-counts pgo/pier.first.xz --profdata "$raw/pier.profdata" --llvm-profdata "$profdata" --out "$raw/pier.order"
xz -9 -T0 -c "$raw/pier.order" > pgo/pier.order.xz
echo "pgo.sh: wrote pgo/pier.order.xz; scripts/release.sh uses it and pgo/pier.profdata.xz"
