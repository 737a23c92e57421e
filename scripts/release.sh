#!/usr/bin/env bash
# Builds the release panel: the server binary, the wasm bundle and the CSS, with brotli and gzip
# copies of the browser files (`--precompress`). Used by scripts/run.sh, bench/run.sh and the
# Dockerfile, so the panel that runs is the panel that is measured.
#
# Profile-guided: when pgo/pier.profdata.xz (scripts/pgo.sh writes it from a run of the benches)
# was made by the LLVM of this toolchain, the server binary is optimised with it, and laid out
# with pgo/pier.order.xz: the functions the training run executed go first, together, so a
# running panel touches (and keeps resident) far fewer pages of its own code; see the README's
# Memory paragraph. Functions changed since the profile was taken are optimised as without it.
# PIER_PGO=off builds without either.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

profile="$PWD/pgo/pier.profdata.xz"
want_llvm=$(cat pgo/llvm-version 2>/dev/null || true)
have_llvm=$(rustc -vV | sed -n 's/^LLVM version: //p')
# The server's own flags: the build's (.cargo/config.toml) plus the profile. Set for the host
# target only, so the wasm build (and cargo-leptos's other host tools) are untouched.
flags="--cfg erase_components"
# Relative relocations packed (DT_RELR, glibc 2.36): the loader reads 15 KB of relocations at
# start-up instead of 930 KB, and the pages it reads stay resident for the life of the process.
flags="$flags -Clink-arg=-Wl,-z,pack-relative-relocs"
if [[ "${PIER_PGO:-on}" == off ]]; then
  echo "release.sh: PIER_PGO=off: building without the profile"
elif [[ ! -f "$profile" ]]; then
  echo "release.sh: no pgo/pier.profdata.xz: building without a profile (scripts/pgo.sh makes one)"
elif [[ "$want_llvm" != "$have_llvm" ]]; then
  echo "release.sh: pgo/pier.profdata.xz is from LLVM ${want_llvm:-?}, this rustc has LLVM $have_llvm:" \
       "building without it (scripts/pgo.sh makes a new one)"
else
  # Cargo does not look into files named in flags: the profile and the layout go in unpacked
  # under a name of their contents, so a new one rebuilds the server and the same one does not.
  target_dir=$(cargo_target_dir)
  mkdir -p "$target_dir/pgo"
  # unpacked FILE.xz EXT: the path of FILE's contents in the target directory.
  unpacked() {
    local path
    path="$target_dir/pgo/pier-$(sha256sum "$1" | cut -c1-16).$2"
    [[ -f "$path" ]] || { xz -dc "$1" > "$path.part" && mv "$path.part" "$path"; } || return 1
    echo "$path"
  }
  used=$(unpacked "$profile" profdata)
  # Functions edited since the profile was taken are built as without one; LLVM would warn
  # about each, which is expected, not a problem.
  flags="$flags -Cprofile-use=$used -Cllvm-args=-no-pgo-warn-mismatch"
  echo "release.sh: optimising with pgo/pier.profdata.xz"
  # The layout from the same training load: the functions it ran go first in .text, together.
  # Symbols that are gone since are skipped (quietly: after a change some always are).
  order="$PWD/pgo/pier.order.xz"
  if [[ -f "$order" ]]; then
    placed=$(unpacked "$order" order)
    flags="$flags -Clink-arg=-Wl,--symbol-ordering-file=$placed -Clink-arg=-Wl,--no-warn-symbol-ordering"
    echo "release.sh: laying out the code with pgo/pier.order.xz"
  fi
fi
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$flags"
export SQLX_OFFLINE=true
# --split: the pages are lazy routes (app/src/routes.rs), their code in five wasm chunks that the
# browser fetches as it shows them. A site built without it cannot load them (the panel's log
# says so at start).
say "cargo leptos build --release --precompress --split"
cargo leptos build --release --precompress --split
