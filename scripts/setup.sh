#!/usr/bin/env bash
# Installs what building and running Pier needs, skipping whatever is already there.
#   scripts/setup.sh            build tools + runtime
#   scripts/setup.sh --test     also what the tests need (chromium, chromedriver)
# Safe to run again; Debian 12, as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# The toolchain rust-toolchain.toml pins, before any cargo runs here. Where it is missing but the
# installed stable is that very version, it is made known under the pinned name (nothing to
# download); otherwise rustup installs it. Run from / so the pin itself does not apply yet.
if command -v rustup >/dev/null; then
  pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
  if ! (cd / && rustup toolchain list) | grep -q "^$pinned-"; then
    stable=$(cd / && rustc +stable --version 2>/dev/null | cut -d' ' -f2 || true)
    if [[ "$stable" == "$pinned" ]]; then
      host=$(cd / && rustc +stable -vV | sed -n 's/^host: //p')
      say "rust $pinned: the installed stable"
      ln -s "$(cd / && rustc +stable --print sysroot)" "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$pinned-$host"
    else
      say "rustup toolchain install $pinned"
      (cd / && rustup toolchain install "$pinned" --profile minimal -c rustfmt,clippy -t wasm32-unknown-unknown)
    fi
  fi
fi

apt_updated=0
need_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if ((apt_updated == 0)); then
      say "apt-get update"
      $SUDO apt-get update -qq
      apt_updated=1
    fi
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Build tools: a C compiler for -sys crates, Node.js/npm for the Tailwind CLI and wasm-opt.
need_apt ca-certificates gcc pkg-config sqlite3
# The release build's profile (pgo/pier.profdata.xz) is kept compressed.
need_apt xz-utils
# The container engine Pier drives, and HAProxy, which Pier runs in front of everything.
need_apt docker.io haproxy
# Docker's networking (iptables); size-limited volumes: an ext4 file system (e2fsprogs) in a sparse
# file, loop-mounted (util-linux: losetup, mount).
need_apt iptables e2fsprogs util-linux
# Backups: restic (encrypted, deduplicated snapshots of volumes; Pier drives it as a process).
need_apt restic
# A machine may already have Node.js from elsewhere (with npm inside); only add Debian's when absent.
command -v npm >/dev/null || need_apt nodejs npm
if ((with_tests)); then
  need_apt chromium chromium-driver
  # scripts/services.sh: a local registry with htpasswd (bcrypt) auth and busybox test images;
  # scripts/test-images.sh: Debian-based ones (nginx, postgres, redis, notes) out of debootstrap.
  need_apt docker-registry busybox-static apache2-utils curl debootstrap
  # The multi-node tests' Swarm (scripts/swarm.sh): namespaces, veths, a bridge, vxlan.
  need_apt iproute2 kmod
  # pebble-challtestsrv: a mock DNS server on loopback (DNS checks; pebble for certificates).
  need_apt pebble
  # Backup tests: an S3-compatible server over a directory (s3s-fs, from crates.io; 0.14.1 is the
  # newest that builds with this machine's rustc).
  if [[ "$(s3s-fs --version 2>/dev/null || true)" != *"0.14.1"* ]]; then
    say "cargo install s3s-fs 0.14.1 (once)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked
  fi
  # tests/metrics.rs reads the panel's metrics back with a real OpenMetrics parser.
  need_apt python3-prometheus-client
  # tests/notify.rs: a real SMTP server on loopback (aiosmtpd) receives the notifications.
  need_apt python3-aiosmtpd
  # tests/proxy.rs: the rendered HAProxy configuration on a real haproxy, with a self-signed cert.
  need_apt openssl
  # schemathesis (PyPI) fuzzes the REST API against its OpenAPI document.
  if ! command -v schemathesis >/dev/null; then
    command -v pip3 >/dev/null || python3 -m pip --version >/dev/null 2>&1 || need_apt python3-pip
    say "pip install schemathesis"
    python3 -m pip install -q --disable-pip-version-check schemathesis 2>/dev/null \
      || python3 -m pip install -q --disable-pip-version-check --break-system-packages schemathesis
  fi
fi

command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup first" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# cargo-leptos 0.3.11 needs a newer rustc than this machine's; 0.3.10 builds with --locked.
if [[ "$(cargo leptos --version 2>/dev/null || true)" != *"0.3.10"* ]]; then
  say "cargo install cargo-leptos 0.3.10 (a long build, once)"
  cargo install cargo-leptos --version 0.3.10 --locked
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly; cargo-leptos would
# otherwise try to download it.
wbg=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wbg" ]]; then
  say "cargo install wasm-bindgen-cli $wbg"
  cargo install wasm-bindgen-cli --version "$wbg"
fi

# Tailwind v4 CLI and binaryen (wasm-opt); cargo-leptos finds them in node_modules/.bin.
if [[ ! -x node_modules/.bin/tailwindcss || ! -x node_modules/.bin/wasm-opt || package-lock.json -nt node_modules ]]; then
  # Exactly the committed lock file (it lists every platform's optional packages, so the tree
  # stays clean).
  say "npm ci (tailwindcss, binaryen)"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi
say "setup done"
