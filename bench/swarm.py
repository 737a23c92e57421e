#!/usr/bin/env python3
"""Swarm benchmark, against a real `pier serve` driving the three-engine Swarm of
`scripts/swarm.sh up` (PIER_ENGINE=swarm, its manager's socket) and its own HAProxy on 127.0.0.1:

1. Deploy: `POST /api/v1/apps` of the hello image with 3 replicas until the app answers 200
   through HAProxy (HTTPS, by host name) with all 3 copies running, one per machine; R apps, one
   after the other (the first also makes the tenant's overlay network).
2. A lost machine: under a bounded load (one request every 20 ms through HAProxy, each on a
   fresh connection, at most 60 s), machine 3's link is cut (`scripts/swarm.sh cut 3`); the time
   until HAProxy marks its copy down (its admin socket's `show servers state`), the time until the
   Swarm runs that copy on another machine and Pier routes to it, and the requests that failed
   in the window (from the cut until 3 copies answer again).

Traffic goes to 127.0.0.1 (HAProxy) only; HAProxy reaches the harness's namespace addresses.
Needs `scripts/services.sh start` and `scripts/swarm.sh up`, with both env files sourced.

Usage: bench/swarm.py [--bin target/release/pier] [--site target/site] [--runs 3]
Everything it makes is removed at the end, even on failure: the panel and its HAProxy (by pid),
the services and networks labelled with the panel's `pier.instance` on the Swarm, the cut healed.
"""
import argparse
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BenchError, Panel, add_build_options, free_port, preflight, run,  # noqa: E402
                      say)

EMAIL = "bench-swarm@example.com"
HANDLE = "bench-swarm"
BASE_DOMAIN = "apps.bench.test"
HERE = os.path.dirname(os.path.abspath(__file__))
SWARM_SH = os.path.join(HERE, "..", "scripts", "swarm.sh")
PROBE_EVERY = 0.02
LOAD_LIMIT = 60.0
CONTEXT = ssl._create_unverified_context()  # noqa: SLF001 - HAProxy's certificate is self-signed


def https_get(port, host, path="/", timeout=3.0):
    """(status or the error's name, body) of GET path through HAProxy for `host`."""
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=CONTEXT)
    try:
        c.request("GET", path, headers={"Host": host, "Connection": "close"})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, ""
    finally:
        c.close()


def manager(*args, check=True):
    cmd = ["docker", "-H", os.environ["PIER_SWARM_MANAGER"], *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd[3:5])} failed: {p.stderr.strip()}")
    return p.stdout


def admin_socket(panel, command):
    path = os.path.join(panel.data_dir, "haproxy", "admin.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode(errors="replace")
            out += chunk


class Load:
    """One request every PROBE_EVERY s through HAProxy on a thread, until stopped (at most
    LOAD_LIMIT s): (time sent, ok) for each."""

    def __init__(self, port, host):
        self.port, self.host = port, host
        self.results = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        t0 = time.monotonic()
        while not self.stop_flag.is_set() and time.monotonic() - t0 < LOAD_LIMIT:
            sent = time.monotonic()
            status, _ = https_get(self.port, self.host, timeout=5.0)
            self.results.append((sent, status == 200))
            time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - sent)))

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        return self.results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_build_options(ap)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    missing = [v for v in ("PIER_SWARM_MANAGER", "PIER_SWARM_REGISTRY", "PIER_SWARM_ADDRS")
               if not os.environ.get(v)]
    if missing:
        sys.exit(f"swarm.py: {', '.join(missing)} not set: run scripts/swarm.sh up, then "
                 f"source \"$(scripts/swarm.sh env)\"")
    preflight("swarm.py", args, {})
    registry = os.environ["PIER_SWARM_REGISTRY"]
    addrs = os.environ["PIER_SWARM_ADDRS"].split()
    https_port, http_port = free_port(), free_port()
    panel = Panel(args, EMAIL, env={
        "DOCKER_HOST": os.environ["PIER_SWARM_MANAGER"],
        "PIER_ENGINE": "swarm",
        "PIER_ALLOWED_REGISTRIES": registry,
        "PIER_BASE_DOMAIN": BASE_DOMAIN,
    }, data_prefix="pier-bench-swarm-", log_on_exit=True, wrap_errors=True)
    panel.registry = registry
    panel.image = f"{registry}/pier-test/hello:1"
    state = {"cut": False}

    def app_answers(name, copies):
        app = panel.app(name)
        if app["state"] == "failed":
            raise BenchError(f"{name} failed: {app.get('last_error')}")
        host = f"{name}-{HANDLE}.{BASE_DOMAIN}"
        return (app["state"] == "running" and app.get("replicas_running") == copies
                and https_get(https_port, host)[0] == 200)

    def machines(name):
        """The machines running the app's copies, from the Swarm."""
        out = manager("service", "ls", "-q", "--filter", f"label=pier.instance={panel.instance}",
                      "--filter", f"name=pier-{panel.instance}-t")
        out = "\n".join(sid for sid in out.split()
                        if f"-{name}-d" in manager("service", "inspect", sid, "--format", "{{.Spec.Name}}"))
        nodes = []
        for sid in out.split():
            ps = manager("service", "ps", sid, "--filter", "desired-state=running",
                         "--format", "{{.Node}} {{.CurrentState}}")
            nodes += [line.split()[0] for line in ps.splitlines() if "Running" in line]
        return nodes

    def steps():
        panel.start(("--http-addr", f"127.0.0.1:{http_port}", "--https-addr",
                     f"127.0.0.1:{https_port}", "--no-acme"))
        panel.login_registry()
        say(f"swarm: {len(addrs)} machines ({', '.join(addrs)}); the hello image from {registry}")
        times = []
        for i in range(args.runs):
            name = f"web{i}"
            t0 = time.monotonic()
            panel.api.expect("POST", "/apps", {"name": name, "image": panel.image, "port": 8080,
                                               "memory_mb": 32, "cpus": "0.1", "replicas": 3,
                                               "health_path": "/healthz"}, status=(201,))
            while not app_answers(name, 3):
                if time.monotonic() - t0 > 120:
                    raise BenchError(f"{name} never answered with 3 copies: {panel.app(name)}")
                time.sleep(0.05)
            times.append(time.monotonic() - t0)
            spread = machines(name)
            say(f"  run {i + 1}: 3 copies answering in {times[-1]:.2f} s, on {', '.join(sorted(spread))}")
        say(f"  deploy 3 replicas over 3 machines, POST to answering through HAProxy: "
            f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")

        name = f"web{args.runs - 1}"
        host = f"{name}-{HANDLE}.{BASE_DOMAIN}"
        lost = addrs[-1]
        load = Load(https_port, host)
        time.sleep(2)
        cut_at = time.monotonic()
        subprocess.run([SWARM_SH, "cut", str(len(addrs))], check=True, capture_output=True, timeout=60)
        state["cut"] = True
        down_after = None
        while down_after is None:
            text = admin_socket(panel, "show servers state")
            if any(lost in line and line.split()[5] == "0" for line in text.splitlines()
                   if len(line.split()) > 5):
                down_after = time.monotonic() - cut_at
            elif time.monotonic() - cut_at > 30:
                raise BenchError(f"HAProxy never marked {lost} down")
            else:
                time.sleep(0.1)
        back_after = None
        while back_after is None:
            on = machines(name)
            if len(on) == 3 and len(set(on)) == 2 and app_answers(name, 3):
                back_after = time.monotonic() - cut_at
            elif time.monotonic() - cut_at > 90:
                raise BenchError(f"the lost copy never ran elsewhere: {on}")
            else:
                time.sleep(0.2)
        time.sleep(1)
        results = load.stop()
        window = [ok for sent, ok in results if sent >= cut_at]
        failed = sum(1 for ok in window if not ok)
        say(f"  machine {lost} cut off under load ({len(results)} requests, one every "
            f"{PROBE_EVERY * 1000:.0f} ms):")
        say(f"    out of HAProxy's rotation after {down_after:.2f} s")
        say(f"    its copy running elsewhere and routed after {back_after:.2f} s")
        say(f"    failed requests from the cut until then: {failed} of {len(window)}")

    def finish(failed):
        if state["cut"]:
            subprocess.run([SWARM_SH, "heal", str(len(addrs))], capture_output=True, timeout=120)
        panel.stop(failed)
        if panel.instance:
            label = f"label=pier.instance={panel.instance}"
            for sid in manager("service", "ls", "-q", "--filter", label, check=False).split():
                manager("service", "rm", sid, check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                left = manager("network", "ls", "-q", "--filter", label, check=False).split()
                if not left:
                    break
                for n in left:
                    manager("network", "rm", n, check=False)
                time.sleep(0.5)

    sys.exit(run("swarm.py", "Swarm: apps as services over three machines", steps, finish))


if __name__ == "__main__":
    main()
