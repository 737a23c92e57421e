# Helpers shared by the service scripts (sourced, not run).
# shellcheck shell=bash

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# Prints the last lines of a log file to stderr (for error messages).
log_tail() {
  [[ -f "$1" ]] || return 0
  printf -- '--- last lines of %s ---\n' "$1" >&2
  tail -n 30 "$1" >&2
}

# Succeeds when pid file $1 names a live process whose command name is $2 (guards against a stale
# pid file whose number now belongs to some other process).
pid_alive() {
  local pid
  [[ -f "$1" ]] || return 1
  pid=$(<"$1")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == "$2" ]]
}

# Stops the process in pid file $1 (command name $2): SIGTERM, wait up to $3 seconds, then SIGKILL.
# Removes the pid file. Does nothing (but remove a stale pid file) if it is not running.
stop_pidfile() {
  local file=$1 name=$2 timeout=$3 pid i
  if pid_alive "$file" "$name"; then
    pid=$(<"$file")
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then
      say "$name did not exit within ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while [[ -d "/proc/$pid" ]]; do sleep 0.1; done
    fi
  fi
  rm -f "$file"
}

# A random password: 16 bytes from /dev/urandom as 32 hex digits.
random_hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

rcurl() { curl --noproxy '*' -s --max-time 10 "$@"; }

# The cargo target directory as cargo resolves it (CARGO_TARGET_DIR, a config file, or the
# workspace's target/).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# Starts a docker-registry of its own (the Debian package's /etc/docker/registry/config.yml is
# left alone) on address $1, serving directory $2, with htpasswd file $3; its configuration, log
# and pid file are $4.yml, $4.log and $4.pid; $5 names it in its log. Returns once /v2/ asks for
# credentials (401) while the process still runs. The random http secret only signs upload
# state; one instance per address, so it need not persist.
serve_registry() {
  local addr=$1 data=$2 htpasswd=$3 base=$4 name=$5 pid i code
  cat >"$base.yml" <<EOF
version: 0.1
log:
  level: warn
  fields:
    service: $name
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
http:
  addr: $addr
  secret: $(random_hex)
auth:
  htpasswd:
    realm: pier-test-registry
    path: $htpasswd
EOF
  chmod 600 "$base.yml"
  say "starting docker-registry on $addr (log: $base.log)"
  setsid docker-registry serve "$base.yml" >"$base.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$base.pid"
  for ((i = 0; i < 60; i++)); do
    if [[ ! -d "/proc/$pid" ]]; then
      rm -f "$base.pid"
      log_tail "$base.log"
      die "docker-registry exited during startup ($addr in use?)"
    fi
    code=$(rcurl -o /dev/null -w '%{http_code}' "http://$addr/v2/" || true)
    [[ "$code" == 401 ]] && return
    sleep 0.5
  done
  log_tail "$base.log"
  die "registry on $addr does not answer 401 on /v2/ after 30 s (last: ${code:-none})"
}
