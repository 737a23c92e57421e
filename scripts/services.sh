#!/usr/bin/env bash
# Starts and stops the outside services Pier's container-engine tests talk to, on this machine:
#   - dockerd (only when it is not already running; then we also stop it again), with user
#     namespaces (--userns-remap=default: container root is host uid 100000 of user dockremap),
#   - a local image registry with htpasswd (bcrypt) auth on 127.0.0.1 (the Debian `docker-registry`),
#   - test images built FROM scratch out of /usr/bin/busybox, pushed there and removed locally, so
#     whoever uses them must really pull (with credentials) from the registry:
#       REGISTRY/pier-test/hello:1     busybox httpd on :8080 serving "${GREETING:-hello from pier}"
#                                      at /, "ok" at /healthz and its container's host name at /host
#                                      (works with --read-only --tmpfs /tmp)
#       REGISTRY/pier-test/hello:2     the same, default text "hello from pier v2"
#       REGISTRY/pier-test/sleeper:1   `sleep 3600`, never answers HTTP
#       REGISTRY/pier-test/gc:1,2      hello:1,2 under another name (the image collection test)
#   - and, built from a Debian root filesystem like the official images, by scripts/test-images.sh
#     (which caches that file system in /var/cache/pier-test-images):
#       REGISTRY/pier-test/nginx:1     nginx on :80; REGISTRY/pier-test/postgres:1 PostgreSQL 15 on
#       :5432; REGISTRY/pier-test/redis:1 on :6379; REGISTRY/pier-test/notes:1 a web app on :8080
#       using both (DATABASE_URL, REDIS_URL)
#   - pebble-challtestsrv as a mock DNS server on 127.0.0.1 (every name answers 127.0.0.1 unless a
#     test sets another record through its management API); its HTTP/TLS challenge servers are off.
#
#   scripts/services.sh start   start everything (again: restarts the registry with a new password)
#   scripts/services.sh stop    stop what `start` started; remove everything labelled pier.test=1
#   scripts/services.sh env     print the path of the env file: source "$(scripts/services.sh env)"
#   scripts/services.sh dockerd only make sure dockerd runs (scripts/run.sh); it is left running
#
# The env file exports PIER_TEST_REGISTRY (host:port), PIER_TEST_REGISTRY_USER,
# PIER_TEST_REGISTRY_PASSWORD, PIER_TEST_SERVICES (the state directory), PIER_TEST_DNS (the mock
# DNS server, 127.0.0.1:port) and PIER_TEST_DNS_MANAGEMENT (its management API, 127.0.0.1:port).
#   PIER_SERVICES_DIR          state directory (default /tmp/pier-services)
#   PIER_TEST_REGISTRY_PORT    registry port on 127.0.0.1 (default 5123)
#   PIER_TEST_DNS_PORT         mock DNS port on 127.0.0.1 (default 5153; management: +1)
# Needs root (dockerd), and: docker.io docker-registry busybox-static apache2-utils curl pebble
# debootstrap (scripts/setup.sh --test installs them). Only ever talks to 127.0.0.1, except for
# debootstrap's downloads from the Debian mirror on the first run.
set -euo pipefail
# No job control: a background child then stays in this script's process group (it does not lead
# one of its own), so `setsid` below never has to fork and `$!` is the daemon's own pid.
set +m

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${PIER_SERVICES_DIR:-/tmp/pier-services}
PORT=${PIER_TEST_REGISTRY_PORT:-5123}
REGISTRY="127.0.0.1:$PORT"
REG_USER=pier-test
DNS_PORT=${PIER_TEST_DNS_PORT:-5153}
DNS="127.0.0.1:$DNS_PORT"
DNS_MANAGEMENT="127.0.0.1:$((DNS_PORT + 1))"
ENV_FILE="$STATE/env"
LABEL=pier.test=1

# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"

# curl against the local registry only; never through a proxy.

# --- start, step 1: dockerd -------------------------------------------------------------------

# With user namespaces every container's root is the same host user (uid 100000), and the
# kernel's per-user key quota (kernel.keys.maxkeys, 200 by default) then caps how many containers
# can start: runc gives each one a session keyring, and the 200th-odd fails with "unable to create
# session key: disk quota exceeded". Raised (never lowered) to room for thousands.
raise_key_quota() {
  local keys=/proc/sys/kernel/keys/maxkeys bytes=/proc/sys/kernel/keys/maxbytes
  [[ -w $keys && -w $bytes ]] || return 0
  if (($(cat "$keys") < 20000)); then
    say "raising kernel.keys.maxkeys to 20000 and kernel.keys.maxbytes to 2000000 (user namespaces: one key quota for every container)"
    echo 20000 >"$keys"
    (($(cat "$bytes") < 2000000)) && echo 2000000 >"$bytes"
  fi
  return 0
}

# dockerd 20.10 can leave a network in its network store without an address pool when it is
# stopped while networks are being removed (seen after bench/scale.py's hundred tenant networks);
# every later start then panics in libnetwork's reservePools. The store is moved aside (kept, by
# date) so dockerd starts with its default networks; Pier makes its tenants' networks again.
# True when it moved one.
set_aside_broken_network_store() {
  local store
  grep -q 'reservePools' "$STATE/dockerd.log" 2>/dev/null || return 1
  for store in /var/lib/docker/*/network/files/local-kv.db; do
    [[ -f $store ]] || continue
    mv "$store" "$store.broken-$(date +%Y%m%d%H%M%S)"
    say "dockerd panicked restoring its networks; moved $store aside and starting it again"
  done
  return 0
}

start_dockerd() {
  raise_key_quota
  if docker info >/dev/null 2>&1; then
    # Already up. A pid file of ours whose process is gone is stale; drop it so `stop` never
    # kills a daemon someone else started since.
    pid_alive "$STATE/dockerd.pid" dockerd || rm -f "$STATE/dockerd.pid"
    say "dockerd already running"
    docker info --format '{{.SecurityOptions}}' 2>/dev/null | grep -q 'name=userns' \
      || say "warning: that dockerd runs without user namespaces (--userns-remap)"
    return
  fi
  launch_dockerd && return
  set_aside_broken_network_store && launch_dockerd && return
  log_tail "$STATE/dockerd.log"
  die "dockerd exited during startup"
}

# Starts dockerd (unless another one is coming up) and waits until it answers: false when it
# exited meanwhile.
launch_dockerd() {
  local i pid=
  if pgrep -x dockerd >/dev/null; then
    # Someone else's dockerd is still coming up: wait for it, but it is not ours to stop.
    say "waiting for a dockerd we did not start"
  else
    say "starting dockerd with --userns-remap=default --userland-proxy=false, 512 networks (log: $STATE/dockerd.log)"
    # setsid: its own session, so it outlives this script and its caller's process group.
    # User namespaces: dockerd creates the user dockremap and its subordinate ids (/etc/subuid,
    # /etc/subgid: 100000:65536) if missing; container root is then host uid 100000.
    # No userland proxy: a published port is the kernel's NAT, not a docker-proxy process per
    # port copying every byte (HAProxy -> app went through it).
    # Address pool: every tenant has a network of its own. Docker's default pools hold 31
    # networks (bench/scale.py makes 100 tenants); this gives 512 networks of 254 addresses,
    # inside Docker's own default range (172.17-31.x).
    setsid dockerd --userns-remap=default --userland-proxy=false \
      --default-address-pool base=172.18.0.0/15,size=24 \
      >"$STATE/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE/dockerd.pid"
  fi
  for ((i = 0; i < 120; i++)); do
    docker info >/dev/null 2>&1 && return 0
    if [[ -n $pid && ! -d "/proc/$pid" ]]; then
      rm -f "$STATE/dockerd.pid"
      return 1
    fi
    sleep 0.5
  done
  log_tail "$STATE/dockerd.log"
  die "docker info still fails after 60 s"
}

# --- start, step 2: the registry ---------------------------------------------------------------

# Writes "$REG_USER:<bcrypt hash>" for password $1 to stdout: htpasswd (apache2-utils), installing
# it if missing, else python3's bcrypt module. The registry only accepts bcrypt entries.
htpasswd_line() {
  if ! command -v htpasswd >/dev/null && ! python3 -c 'import bcrypt' 2>/dev/null; then
    say "apt-get install apache2-utils (for htpasswd)"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils >&2 || true
  fi
  if command -v htpasswd >/dev/null; then
    htpasswd -Bbn "$REG_USER" "$1" | sed '/^$/d'
  elif python3 -c 'import bcrypt' 2>/dev/null; then
    PW="$1" python3 -c 'import bcrypt, os, sys
sys.stdout.write(sys.argv[1] + ":" + bcrypt.hashpw(os.environ["PW"].encode(), bcrypt.gensalt()).decode() + "\n")' "$REG_USER"
  else
    die "no way to make a bcrypt htpasswd: install apache2-utils (or python3-bcrypt)"
  fi
}

start_registry() {
  local password=$1 code
  stop_pidfile "$STATE/registry.pid" docker-registry 10
  # Something else on the port would answer the 401 below in our registry's stead.
  code=$(rcurl -o /dev/null -w '%{http_code}' "http://$REGISTRY/" || true)
  [[ "$code" == 000 ]] || die "something else already listens on $REGISTRY (set PIER_TEST_REGISTRY_PORT)"

  mkdir -p "$STATE/registry-data"
  (umask 077 && htpasswd_line "$password" >"$STATE/htpasswd")
  serve_registry "$REGISTRY" "$STATE/registry-data" "$STATE/htpasswd" "$STATE/registry" pier-test-registry
}

# --- start, step 3: the test images ------------------------------------------------------------

# Builds image $1 from a context holding busybox and entrypoint script $2 (its text on stdin);
# $3 is an extra Dockerfile line (EXPOSE) or nothing.
build_image() {
  local tag=$1 ctx
  ctx=$(mktemp -d)
  cp /usr/bin/busybox "$ctx/busybox"
  cat >"$ctx/$2"
  chmod 755 "$ctx/$2"
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
LABEL pier.test=1
COPY busybox /bin/busybox
RUN ["/bin/busybox","--install","-s","/bin"]
# /tmp exists (sticky, world-writable) even without a tmpfs over it.
RUN ["/bin/mkdir","-p","-m","1777","/tmp"]
COPY $2 /$2
${3:-}
CMD ["/bin/sh","/$2"]
EOF
  # The legacy builder: BuildKit would want to pull its frontend; the build log goes to a file.
  # No network: nothing in a build needs one (and the default bridge may be missing).
  if ! DOCKER_BUILDKIT=0 docker build --network none --rm --force-rm -t "$tag" "$ctx" >>"$STATE/build.log" 2>&1; then
    rm -rf "$ctx"
    log_tail "$STATE/build.log"
    die "docker build $tag failed"
  fi
  rm -rf "$ctx"
}

# PID 1 in a container ignores every signal it has no handler for, and neither busybox httpd nor
# sleep installs one: run directly (`exec httpd ...`), `docker stop` waited its full 10 s timeout
# and then killed them. So a shell stays PID 1, runs the program in the background, and on
# SIGTERM/SIGINT stops it and exits 0, as a well-behaved service would. $1 is the program.
pid1_wrapper() {
  cat <<EOF
$1 &
child=\$!
trap 'kill "\$child" 2>/dev/null; wait "\$child" || true; exit 0' TERM INT
wait "\$child"
EOF
}

# The HTTP server's entrypoint, with $1 as the default greeting. Only /tmp is written, so a
# read-only root with a tmpfs on /tmp works.
serve_script() {
  cat <<EOF
#!/bin/sh
set -e
mkdir -p /tmp/www
printf '%s\n' "\${GREETING:-$1}" >/tmp/www/index.html
echo ok >/tmp/www/healthz
cat /proc/sys/kernel/hostname >/tmp/www/host
echo "serving on port 8080"
EOF
  # -v: one log line per request, on stderr, so the app has a log to stream.
  pid1_wrapper "httpd -f -v -p 8080 -h /tmp/www"
}

build_and_push_images() {
  local password=$1 images tags
  images=("$REGISTRY/pier-test/hello:1" "$REGISTRY/pier-test/hello:2" "$REGISTRY/pier-test/sleeper:1"
          "$REGISTRY/pier-test/gc:1" "$REGISTRY/pier-test/gc:2")
  : >"$STATE/build.log"
  say "building test images (log: $STATE/build.log)"
  serve_script "hello from pier" | build_image "${images[0]}" serve.sh "EXPOSE 8080"
  serve_script "hello from pier v2" | build_image "${images[1]}" serve.sh "EXPOSE 8080"
  { echo '#!/bin/sh'; pid1_wrapper "sleep 3600"; } | build_image "${images[2]}" sleep.sh
  # hello under a name of its own, for the image collection test (it removes its tags).
  docker tag "${images[0]}" "${images[3]}" && docker tag "${images[1]}" "${images[4]}"

  say "pushing them to $REGISTRY"
  # A private client config: the login never lands in (or clobbers) ~/.docker/config.json.
  (
    export DOCKER_CONFIG="$STATE/docker-config"
    mkdir -p "$DOCKER_CONFIG"
    printf '%s' "$password" | docker login "$REGISTRY" -u "$REG_USER" --password-stdin >>"$STATE/build.log" 2>&1 \
      || { log_tail "$STATE/build.log"; die "docker login $REGISTRY failed"; }
    for image in "${images[@]}"; do
      docker push "$image" >>"$STATE/build.log" 2>&1 \
        || { docker logout "$REGISTRY" >/dev/null 2>&1 || true; log_tail "$STATE/build.log"; die "docker push $image failed"; }
    done
    # nginx, postgres, redis, notes: built, pushed and removed locally there.
    PIER_SERVICES_DIR="$STATE" "$SCRIPTS/test-images.sh" "$REGISTRY" \
      || { docker logout "$REGISTRY" >/dev/null 2>&1 || true; die "scripts/test-images.sh failed"; }
    docker logout "$REGISTRY" >>"$STATE/build.log" 2>&1
  )
  # Gone locally (with the builder's intermediate images): users must pull from the registry.
  docker rmi "${images[@]}" >>"$STATE/build.log" 2>&1

  tags=$(rcurl -u "$REG_USER:$password" "http://$REGISTRY/v2/pier-test/hello/tags/list" || true)
  [[ "$tags" == *'"1"'* && "$tags" == *'"2"'* ]] \
    || die "the registry does not list hello:1 and hello:2 (tags/list said: ${tags:-nothing})"
  for image in nginx postgres redis notes; do
    tags=$(rcurl -u "$REG_USER:$password" "http://$REGISTRY/v2/pier-test/$image/tags/list" || true)
    [[ "$tags" == *'"1"'* ]] \
      || die "the registry does not list $image:1 (tags/list said: ${tags:-nothing})"
  done
}

# --- start, step 4: the mock DNS server -----------------------------------------------------------

start_dns() {
  local i pid
  stop_pidfile "$STATE/challtestsrv.pid" pebble-challtes 10
  say "starting pebble-challtestsrv (mock DNS) on $DNS (log: $STATE/challtestsrv.log)"
  setsid pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "$DNS" \
    -management "$DNS_MANAGEMENT" -http01 "" -https01 "" -tlsalpn01 "" \
    >"$STATE/challtestsrv.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$STATE/challtestsrv.pid"
  for i in $(seq 1 100); do
    if [[ ! -d "/proc/$pid" ]]; then
      rm -f "$STATE/challtestsrv.pid"
      log_tail "$STATE/challtestsrv.log"
      die "pebble-challtestsrv exited during startup (port $DNS_PORT or $((DNS_PORT + 1)) in use?)"
    fi
    # The management API answers once the DNS server is up.
    if curl -s --noproxy '*' -o /dev/null -X POST -d '{"host":"pier-probe.test."}' \
      "http://$DNS_MANAGEMENT/clear-a"; then
      return 0
    fi
    sleep 0.1
  done
  log_tail "$STATE/challtestsrv.log"
  die "pebble-challtestsrv does not answer on $DNS_MANAGEMENT after 10 s"
}

# --- subcommands -------------------------------------------------------------------------------

cmd_start() {
  local t0 ms password
  t0=$(date +%s%N)
  start_dockerd
  password=$(random_hex)
  # The old env file's password is about to be wrong.
  rm -f "$ENV_FILE"
  start_registry "$password"
  build_and_push_images "$password"
  start_dns
  # Readable by us only: it holds the password.
  (
    umask 077
    {
      printf 'export PIER_TEST_REGISTRY=%q\n' "$REGISTRY"
      printf 'export PIER_TEST_REGISTRY_USER=%q\n' "$REG_USER"
      printf 'export PIER_TEST_REGISTRY_PASSWORD=%q\n' "$password"
      printf 'export PIER_TEST_SERVICES=%q\n' "$STATE"
      printf 'export PIER_TEST_DNS=%q\n' "$DNS"
      printf 'export PIER_TEST_DNS_MANAGEMENT=%q\n' "$DNS_MANAGEMENT"
    } >"$ENV_FILE"
  )
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf 'services up in %d.%ds: dockerd (%s), registry %s (user %s), images pier-test/hello:1,2 pier-test/sleeper:1 pier-test/gc:1,2 pier-test/{nginx,postgres,redis,notes}:1 postgres:2, mock DNS %s; env: %s\n' \
    $((ms / 1000)) $((ms % 1000 / 100)) \
    "$([[ -f "$STATE/dockerd.pid" ]] && echo "ours, pid $(<"$STATE/dockerd.pid")" || echo "not ours, left alone by stop")" \
    "$REGISTRY" "$REG_USER" "$DNS" "$ENV_FILE"
}

cmd_stop() {
  local ids
  stop_pidfile "$STATE/registry.pid" docker-registry 10
  stop_pidfile "$STATE/challtestsrv.pid" pebble-challtes 10
  rm -f "$ENV_FILE"
  if docker info >/dev/null 2>&1; then
    say "removing containers, networks, volumes and images labelled $LABEL"
    ids=$(docker ps -aq --filter "label=$LABEL")
    # shellcheck disable=SC2086 # one id per word
    [[ -z "$ids" ]] || docker rm -f $ids >/dev/null
    ids=$(docker network ls -q --filter "label=$LABEL")
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker network rm $ids >/dev/null
    ids=$(docker volume ls -q --filter "label=$LABEL")
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker volume rm -f $ids >/dev/null
    # Test volumes' file systems (Pier's test runtime keeps them here): loop devices, then files.
    if [[ -d "${TMPDIR:-/tmp}/pier-test-volumes" ]]; then
      for img in "${TMPDIR:-/tmp}"/pier-test-volumes/*.img; do
        [[ -e "$img" ]] || continue
        for dev in $(losetup -n -O NAME -j "$img"); do losetup -d "$dev" || true; done
      done
      rm -rf "${TMPDIR:-/tmp}/pier-test-volumes"
    fi
    ids=$(docker images -q --filter "label=$LABEL" | sort -u)
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || docker rmi -f $ids >/dev/null
  fi
  # dockerd only if we started it (its pid file exists); never anyone else's.
  if [[ -f "$STATE/dockerd.pid" ]]; then
    stop_pidfile "$STATE/dockerd.pid" dockerd 60
  fi
  say "services stopped"
}

mkdir -p "$STATE"
chmod 700 "$STATE"

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  env) echo "$ENV_FILE" ;;
  dockerd)
    start_dockerd
    # Pier's dockerd outlives this script: forget its pid so a later `stop` leaves it alone.
    rm -f "$STATE/dockerd.pid"
    ;;
  *)
    echo "usage: $0 start|stop|env|dockerd" >&2
    exit 2
    ;;
esac
