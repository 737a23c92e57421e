#!/usr/bin/env bash
# Builds test images the way the official nginx/postgres/redis images are built (a Debian root
# filesystem, an entrypoint that starts as root, fixes ownership and drops to the service's user
# with gosu) and pushes them to the local test registry:
#   REGISTRY/pier-test/nginx:1      Debian nginx on :80 (master root, workers www-data), serving
#                                   "hello from nginx"; logs to stdout/stderr
#   REGISTRY/pier-test/postgres:1   Debian PostgreSQL 15 on :5432; POSTGRES_PASSWORD (required),
#                                   POSTGRES_USER (default postgres), POSTGRES_DB (default: the
#                                   user); data in VOLUME /var/lib/postgresql/data
#   REGISTRY/pier-test/postgres:2   the same with one more label (another image digest)
#   REGISTRY/pier-test/redis:1      Debian redis-server on :6379, append-only file in VOLUME /data
#   REGISTRY/pier-test/notes:1      a Python web app on :8080 (uid 1000) using DATABASE_URL and
#                                   REDIS_URL: GET / lists the notes and counts visits, POST /notes
#                                   (text=...) adds one, GET /healthz answers "ok"
# All are labelled pier.test=1, pushed, then removed locally, so users must pull them.
#
#   scripts/test-images.sh REGISTRY
# Called by `scripts/services.sh start` with DOCKER_CONFIG pointing at a client config that is
# logged in to REGISTRY. Needs root, dockerd, debootstrap (scripts/setup.sh --test).
#
# The root filesystem comes from `debootstrap --variant=minbase` with every package all four
# images need, so no build step reaches the network. Its tarball is cached in
# $PIER_TEST_IMAGE_CACHE (default /var/cache/pier-test-images), keyed by a hash of the package
# list and ROOTFS_VERSION below: later runs only `docker import` it. Bump ROOTFS_VERSION whenever
# the way the root filesystem is made changes. The mirror is the one apt uses for bookworm
# (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list), or $PIER_TEST_DEBIAN_MIRROR.
set -euo pipefail

STATE=${PIER_SERVICES_DIR:-/tmp/pier-services}
CACHE=${PIER_TEST_IMAGE_CACHE:-/var/cache/pier-test-images}
LOG="$STATE/build.log"
SUITE=bookworm
ROOTFS_VERSION=2
PACKAGES=(gosu nginx postgresql python3 python3-psycopg2 python3-redis redis-server)
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'test-images.sh: %s\n' "$*" >&2; exit 1; }

log_tail() {
  [[ -f "$1" ]] || return 0
  printf -- '--- last lines of %s ---\n' "$1" >&2
  tail -n 30 "$1" >&2
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# Seconds since $1 (from now_ms), with one decimal.
since() {
  local ms=$(($(now_ms) - $1))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

REGISTRY=${1:-}
[[ -n "$REGISTRY" ]] || { echo "usage: $0 REGISTRY   (host:port, logged in through DOCKER_CONFIG)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot)"
mkdir -p "$STATE"
touch "$LOG"

ARCH=$(dpkg --print-architecture)
KEY=$(printf '%s\n' "$ROOTFS_VERSION" "$SUITE" "$ARCH" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
TARBALL="$CACHE/rootfs-$SUITE-$ARCH-$KEY.tar"
BASE="pier-test-base:$KEY"
IMAGES=(nginx postgres redis notes)

# The Debian mirror apt uses for $SUITE: the first URI of an enabled deb822 stanza (Types: deb)
# whose Suites list $SUITE itself, else a one-line `deb` entry, else deb.debian.org.
debian_mirror() {
  local uri=""
  if [[ -n "${PIER_TEST_DEBIAN_MIRROR:-}" ]]; then
    echo "$PIER_TEST_DEBIAN_MIRROR"
    return
  fi
  shopt -s nullglob
  local sources=(/etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  if ((${#sources[@]})); then
    uri=$(awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""; enabled = 1
        for (i = 1; i <= NF; i++) {
          l = $i
          if (l ~ /^[ \t]*#/) continue
          if (l ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l); uris = l }
          else if (l ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", l); suites = " " l " " }
          else if (l ~ /^Types:/) { types = " " l " " }
          else if (l ~ /^Enabled:[ \t]*no/) { enabled = 0 }
        }
        gsub(/\t/, " ", suites); gsub(/\t/, " ", types)
        if (enabled && types ~ / deb / && index(suites, " " suite " ")) {
          split(uris, u, " "); print u[1]; exit
        }
      }' "${sources[@]}")
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# --- step 1: the root filesystem tarball (cached) -----------------------------------------------

# Removes a half-built root filesystem. Mounts debootstrap makes in it live in a private mount
# namespace (unshare), so none can be left behind on the host.
rootfs_dir=""
cleanup_rootfs() {
  [[ -n "$rootfs_dir" && -d "$rootfs_dir" ]] || return 0
  rm -rf --one-file-system "$rootfs_dir"
}

make_rootfs() {
  local t0 mirror old
  t0=$(now_ms)
  command -v debootstrap >/dev/null || die "debootstrap is missing: scripts/setup.sh --test installs it"
  mirror=$(debian_mirror)
  say "debootstrap $SUITE from $mirror with ${PACKAGES[*]} (once; log: $LOG)"
  rootfs_dir=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap cleanup_rootfs EXIT
  # debootstrap installs the packages with its own policy-rc.d (no service starts while their
  # maintainer scripts run) and removes it at the end; the one below stays in the image, as in
  # Debian's own images. Its own mount namespace: whatever debootstrap mounts in the chroot
  # (/proc, /sys) goes away with it, even when it fails.
  if ! unshare --mount --propagation private debootstrap --variant=minbase --arch="$ARCH" \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" "$SUITE" "$rootfs_dir" "$mirror" >>"$LOG" 2>&1; then
    log_tail "$LOG"
    die "debootstrap failed"
  fi
  printf '#!/bin/sh\n# Services never start on their own in a container image.\nexit 101\n' \
    >"$rootfs_dir/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs_dir/usr/sbin/policy-rc.d"

  say "cleaning the root filesystem"
  (
    cd "$rootfs_dir"
    # The cluster the postgresql package may create at install (debootstrap's run does not): the
    # entrypoint makes its own in $PGDATA, nothing else may be used.
    rm -rf var/lib/postgresql/15/main etc/postgresql/15/main
    rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
      var/cache/apt/archives/partial/* var/cache/debconf/*-old var/lib/dpkg/*-old \
      usr/share/doc/* usr/share/man/* usr/share/info/* usr/share/groff/* usr/share/lintian/*
    # Message translations (as in Debian's slim images); locale.alias stays.
    find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    find var/log -type f -delete
    # Host details debootstrap copied in; Docker bind-mounts its own over them in containers.
    : >etc/resolv.conf
    echo localhost >etc/hostname
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >etc/hosts
    chmod 644 etc/resolv.conf etc/hostname etc/hosts
    rm -f etc/machine-id var/lib/dbus/machine-id
  )
  # Device nodes, /proc and /sys come from the container runtime.
  tar --numeric-owner -C "$rootfs_dir" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$TARBALL.tmp" . >>"$LOG" 2>&1 || { rm -f "$TARBALL.tmp"; die "tar of the root filesystem failed"; }
  mv "$TARBALL.tmp" "$TARBALL"
  cleanup_rootfs
  rootfs_dir=""
  trap - EXIT
  # Tarballs of earlier package lists or versions are stale now.
  for old in "$CACHE"/rootfs-*.tar; do
    [[ "$old" == "$TARBALL" ]] || rm -f "$old"
  done
  say "root filesystem cached as $TARBALL ($(du -m "$TARBALL" | cut -f1) MB) in $(since "$t0")"
}

# --- step 2: the images ------------------------------------------------------------------------

# Writes the build context of image $1 into directory $2.
context_nginx() {
  cat >"$2/default.conf" <<'EOF'
server {
    listen 80 default_server;
    server_name _;
    root /var/www/html;
    index index.html;
    location / {
        try_files $uri $uri/ =404;
    }
}
EOF
  echo "hello from nginx" >"$2/index.html"
  cat >"$2/Dockerfile" <<EOF
FROM $BASE
LABEL pier.test=1
COPY default.conf /etc/nginx/sites-available/default
COPY index.html /var/www/html/index.html
# Logs to the container's stdout/stderr, as in the official image.
RUN ln -sf /dev/stdout /var/log/nginx/access.log \\
 && ln -sf /dev/stderr /var/log/nginx/error.log \\
 && rm -f /var/www/html/index.nginx-debian.html \\
 && ln -sf /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default
EXPOSE 80
# SIGQUIT: a graceful shutdown (the official image's choice too).
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
}

context_postgres() {
  cat >"$2/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# As the official postgres image's entrypoint, trimmed: as root, create $PGDATA and hand it to
# postgres, then run this script again as postgres; that initialises an empty $PGDATA and execs
# the server, which so becomes the container's main process (it handles SIGTERM/SIGINT itself).
set -Eeuo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2777 /var/run/postgresql
  exec gosu postgres "$BASH_SOURCE" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    cat >&2 <<'EOM'
error: the database is not initialised and POSTGRES_PASSWORD is not set.
       Set POSTGRES_PASSWORD to the password of the superuser (POSTGRES_USER, default postgres),
       e.g. docker run -e POSTGRES_PASSWORD=secret ...
EOM
    exit 1
  fi
  POSTGRES_USER=${POSTGRES_USER:-postgres}
  POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
  echo "initialising a database cluster in $PGDATA (superuser $POSTGRES_USER)"
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    # A temporary server on the Unix socket only.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username="$POSTGRES_USER" --no-password \
      --dbname=postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "created database $POSTGRES_DB"
  fi
  echo "initialisation complete"
fi

exec "$@"
EOF
  cat >"$2/Dockerfile" <<EOF
FROM $BASE
LABEL pier.test=1
ENV PATH=$PG_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data \\
    LANG=C.UTF-8
RUN mkdir -p /var/run/postgresql /var/lib/postgresql/data \\
 && chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql \\
 && chmod 2777 /var/run/postgresql \\
 && chmod 700 /var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
# SIGINT: PostgreSQL's "fast" shutdown (SIGTERM is "smart": it waits for clients to disconnect).
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
}

context_redis() {
  cat >"$2/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# As the official redis image's entrypoint: as root, hand /data to redis and drop to it.
set -e
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  mkdir -p /data
  chown -R redis:redis /data
  exec gosu redis "$@"
fi
exec "$@"
EOF
  cat >"$2/Dockerfile" <<EOF
FROM $BASE
LABEL pier.test=1
RUN mkdir -p /data && chown redis:redis /data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0", "--dir", "/data", "--appendonly", "yes"]
EOF
}

context_notes() {
  cat >"$2/app.py" <<'EOF'
"""pier-test/notes: a small web app on PostgreSQL and Redis.

  GET  /         the notes, one line each, then "visits: N" (a Redis counter, incremented)
  POST /notes    text=... (form or body) adds a note: 201
  GET  /healthz  "ok", without touching either database

DATABASE_URL (postgres://user:password@host:5432/db) and REDIS_URL (redis://host:6379/0) say
where they are. A database that cannot be reached answers 503 with the reason. One log line per
request on stdout.
"""

import os
import signal
import sys
import threading
import time
import urllib.parse
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors
import redis

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PORT = int(os.environ.get("PORT", "8080"))
TIMEOUT = 5

SCHEMA = """CREATE TABLE IF NOT EXISTS notes (
    id serial PRIMARY KEY,
    text text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)"""
schema_lock = threading.Lock()


class Unavailable(Exception):
    """A database could not be used; the message says which and why."""


def one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def postgres():
    if not DATABASE_URL:
        raise Unavailable("postgres: DATABASE_URL is not set")
    try:
        conn = psycopg2.connect(DATABASE_URL, connect_timeout=TIMEOUT)
    except (psycopg2.Error, ValueError) as e:
        raise Unavailable("postgres: " + one_line(e))
    try:
        with schema_lock, conn.cursor() as cur:
            cur.execute(SCHEMA)
        conn.commit()
    except psycopg2.errors.UniqueViolation:
        # Someone else created the table at the same moment.
        conn.rollback()
    except psycopg2.Error as e:
        conn.close()
        raise Unavailable("postgres: " + one_line(e))
    return conn


def run_sql(query, args=()):
    conn = postgres()
    with closing(conn):
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        except psycopg2.Error as e:
            raise Unavailable("postgres: " + one_line(e))


def count_visit():
    if not REDIS_URL:
        raise Unavailable("redis: REDIS_URL is not set")
    try:
        client = redis.Redis.from_url(
            REDIS_URL, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
        with closing(client):
            return client.incr("visits")
    except (redis.RedisError, OSError, ValueError) as e:
        raise Unavailable("redis: " + one_line(e))


class Handler(BaseHTTPRequestHandler):
    server_version = "pier-test-notes/1"
    protocol_version = "HTTP/1.1"

    def respond(self, status, text, note=""):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        line = '%s "%s %s" %d %d' % (
            self.client_address[0], self.command, self.path, status, len(body)
        )
        print(line + (" (" + note + ")" if note else ""), flush=True)

    # The standard per-request log lines go to stderr; respond() writes our own.
    def log_request(self, code="-", size="-"):
        pass

    def log_error(self, format, *args):
        print("%s error: %s" % (self.client_address[0], format % args), flush=True)

    def route(self):
        return urllib.parse.urlsplit(self.path).path

    def handle_safely(self, action):
        try:
            action()
        except Unavailable as e:
            self.respond(503, str(e) + "\n", str(e))
        except Exception as e:  # never let a request take the server down
            self.respond(500, "internal error: " + one_line(e) + "\n", one_line(e))

    def do_GET(self):
        path = self.route()
        if path == "/healthz":
            self.respond(200, "ok\n")
        elif path == "/":
            self.handle_safely(self.list_notes)
        else:
            self.respond(404, "not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        if self.route() == "/notes":
            self.handle_safely(self.add_note)
        else:
            self.respond(404, "not found\n")

    def list_notes(self):
        rows = run_sql("SELECT text FROM notes ORDER BY id")
        visits = count_visit()
        lines = [" ".join(text.splitlines()) for (text,) in rows]
        self.respond(200, "".join(line + "\n" for line in lines) + "visits: %d\n" % visits)

    def add_note(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        fields = urllib.parse.parse_qs(body)
        fields.update(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
        text = (fields.get("text") or [""])[0]
        if not text.strip():
            self.respond(400, "missing text=...\n")
            return
        (note_id,) = run_sql("INSERT INTO notes (text) VALUES (%s) RETURNING id", (text,))[0]
        self.respond(201, "created note %d\n" % note_id)


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    # As PID 1 a process gets no default SIGTERM action: exit on it explicitly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print("notes listening on :%d" % PORT, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
EOF
  cat >"$2/Dockerfile" <<EOF
FROM $BASE
LABEL pier.test=1
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin notes
COPY app.py /app/app.py
WORKDIR /app
USER 1000:1000
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
CMD ["python3", "/app/app.py"]
EOF
}

# Builds $REGISTRY/pier-test/$1:1 with the legacy builder (BuildKit would want to pull its
# frontend); no step needs the network.
build_image() {
  local name=$1 tag="$REGISTRY/pier-test/$1:1" ctx
  ctx=$(mktemp -d)
  "context_$name" "$name" "$ctx"
  # COPY keeps the mode: entrypoints must be executable.
  find "$ctx" -name "*.sh" -exec chmod 755 {} +
  if ! DOCKER_BUILDKIT=0 docker build --network none --rm --force-rm -t "$tag" "$ctx" >>"$LOG" 2>&1; then
    rm -rf "$ctx"
    log_tail "$LOG"
    die "docker build $tag failed"
  fi
  rm -rf "$ctx"
}

main() {
  local t0 t name tags=()
  t0=$(now_ms)
  mkdir -p "$CACHE"
  chmod 755 "$CACHE"
  # One build at a time: a second run waits, then finds the tarball cached.
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ -s "$TARBALL" ]]; then
    say "root filesystem cached: $TARBALL"
  else
    make_rootfs
  fi

  t=$(now_ms)
  if docker image inspect "$BASE" >/dev/null 2>&1; then
    say "base image $BASE is there"
  else
    say "docker import $TARBALL as $BASE"
    docker import --change 'LABEL pier.test=1' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' "$TARBALL" "$BASE" >>"$LOG" 2>&1 \
      || { log_tail "$LOG"; die "docker import $TARBALL failed"; }
  fi
  exec 9>&-
  say "imported in $(since "$t")"

  t=$(now_ms)
  for name in "${IMAGES[@]}"; do
    say "building $REGISTRY/pier-test/$name:1"
    build_image "$name"
    tags+=("$REGISTRY/pier-test/$name:1")
  done
  # postgres:2 is postgres:1 with one more label: another image (another digest) that runs the
  # same data directory, for "the data survives an image change".
  ctx=$(mktemp -d)
  printf 'FROM %s\nLABEL pier.test.variant=2\n' "$REGISTRY/pier-test/postgres:1" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build --network none --rm --force-rm -t "$REGISTRY/pier-test/postgres:2" "$ctx" >>"$LOG" 2>&1 \
    || { rm -rf "$ctx"; log_tail "$LOG"; die "docker build postgres:2 failed"; }
  rm -rf "$ctx"
  tags+=("$REGISTRY/pier-test/postgres:2")
  say "built in $(since "$t")"

  t=$(now_ms)
  say "pushing them to $REGISTRY"
  for name in "${tags[@]}"; do
    docker push "$name" >>"$LOG" 2>&1 || { log_tail "$LOG"; die "docker push $name failed"; }
  done
  say "pushed in $(since "$t")"
  # Gone locally, the base too: users must pull (with credentials) from the registry.
  docker rmi "${tags[@]}" "$BASE" >>"$LOG" 2>&1
  say "test images (nginx, postgres, redis, notes) done in $(since "$t0")"
}

main
