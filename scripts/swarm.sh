#!/usr/bin/env bash
# A Docker Swarm of several engines on this one machine, for Pier's multi-node tests and
# benchmark. Each engine is a "host" of its own: a dockerd in a network namespace the script
# creates (pier-sw1, pier-sw2, ...), with its own data, its own hostname (UTS namespace) and one
# address on a bridge of the script's own:
#
#   host (Pier, HAProxy)  10.213.0.1   bridge pswbr0
#   node 1 (manager)      10.213.0.11  netns pier-sw1, engine socket $STATE/node1/docker.sock
#   node 2, 3 (workers)   10.213.0.12, 10.213.0.13
#
# The namespaces have no default route: their engines and containers reach the bridge's
# addresses and nothing else. A second docker-registry serves scripts/services.sh's registry
# data (same images, same credentials) on the bridge at 10.213.0.1:5124, so every node pulls
# the test images by URI like a user's server would; the engines trust it without TLS.
#
#   scripts/swarm.sh up       make the namespaces, start the engines, form the Swarm (needs
#                             scripts/services.sh start first: its registry data and password)
#   scripts/swarm.sh down     remove all of it: engines and their containers, mounts, data,
#                             namespaces, the bridge, the iptables rule, the registry
#   scripts/swarm.sh env      print the env file's path: source "$(scripts/swarm.sh env)"
#   scripts/swarm.sh cut N    take node N off the network (its link down); `heal N` undoes it
#   scripts/swarm.sh kill N   kill node N's engine and every process of its containers, at once
#
# The env file exports PIER_SWARM_MANAGER (the manager's engine socket, unix://...),
# PIER_SWARM_SOCKETS, PIER_SWARM_ADDRS and PIER_SWARM_NAMESPACES (one word per node, in order),
# PIER_SWARM_REGISTRY (host:port on the bridge) and PIER_SWARM_STATE.
#   PIER_SWARM_DIR     state directory (default /tmp/pier-swarm)
#   PIER_SWARM_DATA    the engines' data (default /var/lib/pier-swarm)
#   PIER_SWARM_NODES   how many engines (default 3)
# Nodes send a heartbeat every 2 s (Docker's default is 5 s), so a lost one is noticed sooner.
#
# Facts this rests on (Debian dockerd 20.10, measured on this machine): `ip netns exec` cannot run
# dockerd (it remounts /sys and dockerd then finds no devices cgroup), entering only the network
# namespace with nsenter works; the host engine's FORWARD rules drop bridged traffic between the
# namespaces unless DOCKER-USER accepts it (without it `swarm join` times out); VXLAN (overlay
# networks) works, IPVS does not exist in this kernel (no routing mesh: publish in host mode).
set -euo pipefail
set +m

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"

STATE=${PIER_SWARM_DIR:-/tmp/pier-swarm}
DATA=${PIER_SWARM_DATA:-/var/lib/pier-swarm}
NODES=${PIER_SWARM_NODES:-3}
SERVICES=${PIER_SERVICES_DIR:-/tmp/pier-services}
BR=pswbr0
NET=10.213.0
HOST_IP=$NET.1
REGISTRY=$HOST_IP:${PIER_SWARM_REGISTRY_PORT:-5124}
ENV_FILE=$STATE/env
# Overlay networks' addresses, apart from the bridge's.
ADDR_POOL=10.214.0.0/16

[[ "$NODES" =~ ^[1-9]$ ]] || die "PIER_SWARM_NODES must be 1 to 9"

node_ns() { echo "pier-sw$1"; }
node_ip() { echo "$NET.$((10 + $1))"; }
node_dir() { echo "$STATE/node$1"; }
node_sock() { echo "unix://$(node_dir "$1")/docker.sock"; }
ndocker() {
  local i=$1
  shift
  docker -H "$(node_sock "$i")" "$@"
}

# The chain that accepts bridged traffic between the nodes: DOCKER-USER when a host engine made
# it (its FORWARD policy is DROP), else FORWARD itself.
forward_chain() {
  if iptables -S DOCKER-USER >/dev/null 2>&1; then echo DOCKER-USER; else echo FORWARD; fi
}

# The nodes' namespaces that exist now (a run that failed half-way leaves some).
existing_nodes() {
  ip netns list | awk '{print $1}' | sed -n 's/^pier-sw\([0-9]\)$/\1/p' | sort -n
}

start_engine() {
  local i=$1 dir pid n
  dir=$(node_dir "$i")
  mkdir -p "$dir" "$DATA/node$i"
  # Its own hostname (Swarm names nodes by it), its own network; everything else is the host's.
  # unshare and nsenter exec (no fork), so $! ends up being dockerd itself.
  setsid unshare --uts -- nsenter --net="/var/run/netns/$(node_ns "$i")" -- \
    sh -c 'hostname "$0" && exec "$@"' "pier-node$i" \
    dockerd --data-root "$DATA/node$i" --exec-root "$dir/exec" \
    -H "$(node_sock "$i")" --pidfile "$dir/dockerd.pid" \
    --cgroup-parent "/pier-sw$i" --bridge=none --iptables=true --ip-forward=true \
    --userland-proxy=false --no-new-privileges \
    --insecure-registry "$REGISTRY" \
    >"$dir/dockerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/engine.pid"
  for ((n = 0; n < 120; n++)); do
    ndocker "$i" info >/dev/null 2>&1 && return
    if [[ ! -d "/proc/$pid" ]]; then
      log_tail "$dir/dockerd.log"
      die "node $i: dockerd exited during startup"
    fi
    sleep 0.5
  done
  log_tail "$dir/dockerd.log"
  die "node $i: docker info still fails after 60 s"
}

start_registry() {
  [[ -d "$SERVICES/registry-data" && -f "$SERVICES/htpasswd" ]] \
    || die "no registry data in $SERVICES: run scripts/services.sh start first"
  serve_registry "$REGISTRY" "$SERVICES/registry-data" "$SERVICES/htpasswd" "$STATE/registry" pier-swarm-registry
}

cmd_up() {
  local t0 i ns host peer token ready
  t0=$(date +%s)
  [[ -f "$SERVICES/env" ]] || die "run scripts/services.sh start first (the registry and its images)"
  modprobe vxlan 2>/dev/null || true
  # What a failed run left behind goes first.
  [[ -z "$(existing_nodes)" && ! -e "/sys/class/net/$BR" ]] || cmd_down
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  echo "$NODES" >"$STATE/nodes"

  say "bridge $BR ($HOST_IP/24) and $NODES network namespaces"
  ip link add "$BR" type bridge
  ip addr add "$HOST_IP/24" dev "$BR"
  ip link set "$BR" up
  forward_chain >"$STATE/chain"
  iptables -I "$(<"$STATE/chain")" -i "$BR" -o "$BR" -j ACCEPT
  for ((i = 1; i <= NODES; i++)); do
    ns=$(node_ns "$i")
    host=psw${i}h
    peer=psw${i}n
    ip netns add "$ns"
    ip link add "$host" type veth peer name "$peer"
    ip link set "$peer" netns "$ns"
    ip link set "$host" master "$BR" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$peer" name eth0
    ip -n "$ns" addr add "$(node_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done

  say "the Swarm's registry on $REGISTRY (the test registry's images)"
  start_registry

  for ((i = 1; i <= NODES; i++)); do
    say "node $i: dockerd in $(node_ns "$i") at $(node_ip "$i") (log: $(node_dir "$i")/dockerd.log)"
    start_engine "$i"
  done

  say "forming the Swarm: node 1 manager, the others workers"
  ndocker 1 swarm init --advertise-addr "$(node_ip 1)" --listen-addr "$(node_ip 1):2377" \
    --default-addr-pool "$ADDR_POOL" --default-addr-pool-mask-length 24 \
    --dispatcher-heartbeat 2s >/dev/null
  token=$(ndocker 1 swarm join-token -q worker)
  for ((i = 2; i <= NODES; i++)); do
    ndocker "$i" swarm join --token "$token" --advertise-addr "$(node_ip "$i")" \
      --listen-addr "$(node_ip "$i"):2377" "$(node_ip 1):2377" >/dev/null
  done
  for ((i = 0; i < 120; i++)); do
    ready=$(ndocker 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
    ((ready == NODES)) && break
    sleep 0.5
  done
  ((ready == NODES)) || die "only $ready of $NODES nodes are ready after 60 s"

  {
    echo "export PIER_SWARM_STATE=$STATE"
    echo "export PIER_SWARM_MANAGER=$(node_sock 1)"
    echo "export PIER_SWARM_SOCKETS=\"$(for ((i = 1; i <= NODES; i++)); do printf '%s ' "$(node_sock "$i")"; done | sed 's/ $//')\""
    echo "export PIER_SWARM_ADDRS=\"$(for ((i = 1; i <= NODES; i++)); do printf '%s ' "$(node_ip "$i")"; done | sed 's/ $//')\""
    echo "export PIER_SWARM_NAMESPACES=\"$(for ((i = 1; i <= NODES; i++)); do printf '%s ' "$(node_ns "$i")"; done | sed 's/ $//')\""
    echo "export PIER_SWARM_REGISTRY=$REGISTRY"
  } >"$ENV_FILE"
  printf 'swarm up in %ds: %d nodes (%s), manager %s, registry %s; env: %s\n' \
    "$(($(date +%s) - t0))" "$NODES" "$(node_ip 1)..$(node_ip "$NODES")" "$(node_sock 1)" \
    "$REGISTRY" "$ENV_FILE"
}

# Kills node $1's engine, its containerd and every process of its containers (SIGKILL, no
# shutdown: a machine that dies).
kill_node() {
  local i=$1 dir pids cg
  dir=$(node_dir "$i")
  pids=$( (
    if [[ -f "$dir/engine.pid" ]]; then cat "$dir/engine.pid"; fi
    # containerd and its shims, found by the node's own paths.
    pgrep -f -- "$dir/exec" || true
    pgrep -f -- "$DATA/node$i/" || true
    for cg in /sys/fs/cgroup/pids/pier-sw"$i" /sys/fs/cgroup/pier-sw"$i"; do
      if [[ -d "$cg" ]]; then find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
    done
  ) | sort -u)
  # shellcheck disable=SC2086 # one pid per word
  [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  rm -f "$dir/engine.pid"
}

# Everything below mounted by node $1's engine (its containers' file systems, its netns files).
unmount_node() {
  local i=$1 m
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($DATA/node$i|$(node_dir "$i"))(/|$)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

cmd_down() {
  local i nodes chain cg
  stop_pidfile "$STATE/registry.pid" docker-registry 10
  nodes=$(existing_nodes)
  [[ -f "$STATE/nodes" ]] && nodes=$( (echo "$nodes"; seq 1 "$(<"$STATE/nodes")") | sort -nu)
  for i in $nodes; do
    [[ -n "$i" ]] || continue
    say "node $i: stopping its engine and containers, removing its namespace and data"
    if [[ -f "$(node_dir "$i")/engine.pid" ]] && pid_alive "$(node_dir "$i")/engine.pid" dockerd; then
      # A clean stop first: dockerd stops its containers and containerd.
      stop_pidfile "$(node_dir "$i")/engine.pid" dockerd 20
    fi
    kill_node "$i"
    sleep 0.2
    unmount_node "$i"
    for cg in /sys/fs/cgroup/*/pier-sw"$i" /sys/fs/cgroup/pier-sw"$i"; do
      if [[ -d "$cg" ]]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
    ip link del "psw${i}h" 2>/dev/null || true
    ip netns del "$(node_ns "$i")" 2>/dev/null || true
    rm -rf "${DATA:?}/node$i" "$(node_dir "$i")"
  done
  if [[ -e "/sys/class/net/$BR" ]]; then
    say "removing bridge $BR"
    ip link del "$BR"
  fi
  for chain in DOCKER-USER FORWARD; do
    while iptables -D "$chain" -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null; do :; done
  done
  rm -rf "$STATE"
  rmdir "$DATA" 2>/dev/null || true
  say "swarm down"
}

cmd_cut() {
  local i=$1
  ip link set "psw${i}h" down
  say "node $i cut off (psw${i}h down)"
}

cmd_heal() {
  local i=$1
  ip link set "psw${i}h" up
  say "node $i back on the network"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) echo "$ENV_FILE" ;;
  cut | heal | kill)
    [[ "${2:-}" =~ ^[1-9]$ ]] || die "usage: $0 $1 NODE (a number)"
    case "$1" in
      cut) cmd_cut "$2" ;;
      heal) cmd_heal "$2" ;;
      kill) kill_node "$2" && say "node $2 killed" ;;
    esac
    ;;
  *)
    echo "usage: $0 up|down|env|cut N|heal N|kill N" >&2
    exit 2
    ;;
esac
