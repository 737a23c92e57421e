#!/usr/bin/env python3
"""Routing benchmark, against a real `pier serve` with its HAProxy and dockerd (127.0.0.1 only):

requests/s and p99 latency of an app, through HAProxy over HTTPS (by host name, with the
self-signed certificate) and straight to the container's loopback port over plain HTTP, in the
same run, alternating, with the same bounded `wrk` load (-t2 -c4 unless BENCH_CONNS says
otherwise, 5 s each, each run after the previous run's TIME_WAIT sockets drained); the ratio of
the medians and the p99 difference (goal: >= 0.95, within 1 ms). Two apps, one after the other:
busybox httpd (a new connection per request) and nginx (keep-alive) at half a CPU (an app's
default limit) and at a whole one. Route-change and reload times are `cargo bench -p pier --bench routes`.

A third figure in each round is the floor any proxy has on this machine: the same app through a
bare HAProxy the bench starts itself (plain HTTP, one backend, the same thread count and
connection reuse, no TLS, no routing by host, no logs) and stops by pid. Pier's HAProxy beside
it is what Pier's own frontend (TLS, routing by host, its headers) adds to a proxy hop.

Needs what bench/apps.py needs (the local registry, its test images) and `wrk`.
Usage: bench/routing.py [--bin target/release/pier] [--site target/site] [--rounds 3] [--app nginx]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apps import Bench  # noqa: E402
from benchlib import BenchError, add_build_options, free_port, http_200, say  # noqa: E402

HOST = "bench.pier.test"
CONNS = int(os.environ.get("BENCH_CONNS", "4"))


def settle(limit=1000, timeout=75):
    """Waits until few connections to containers linger in TIME_WAIT. busybox httpd closes every
    connection, so docker-proxy opens a new one to the container (a bridge address, where the
    kernel does not reuse TIME_WAIT ports) per request; after ~25,000 of them in a minute new
    connections stall and both sides of the comparison collapse. Each run starts clean."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True).stdout
        if len(out.splitlines()) < limit:
            return
        time.sleep(1)


def wrk(url, host=None, seconds=5):
    settle()
    cmd = ["wrk", "-t2", f"-c{CONNS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if errors or sock:
        raise BenchError(f"wrk saw errors on {url}: {errors.group(0) if errors else ''} {sock.group(0) if sock else ''}")
    return rps, float(p99.group(1)) * scale


# The apps measured: busybox httpd forks a process per connection and closes it after each
# answer (nothing can be reused, the worst case for a proxy), and nginx keeps connections open
# (as most servers do; HAProxy then reuses its connections to the app).
# nginx runs twice: with an app's default CPU limit (half a CPU) and with a whole one. On two
# cores, wrk, HAProxy and the app share the machine: HAProxy's own CPU comes out of what wrk
# and the app could use. Each app is asked for its health path when it has one.
APPS = [
    ("busybox", "busybox httpd (a connection per request), 1 CPU", "hello:1", 8080, "/healthz", "1"),
    ("nginx", "nginx (keep-alive), the default 0.5 CPU", "nginx:1", 80, None, "0.5"),
    ("nginx-1cpu", "nginx (keep-alive), 1 CPU", "nginx:1", 80, None, "1"),
]


BARE_CFG = """global
    nbthread {threads}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend bare
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server app 127.0.0.1:{app_port}
"""


class BareProxy:
    """A bare HAProxy in front of one loopback port (see the module's docstring)."""

    def __init__(self, app_port, threads):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pier-bench-bare-")
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(BARE_CFG.format(threads=threads, port=self.port, app_port=app_port))
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not http_200(self.port, path="/"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError("the bare HAProxy did not start")
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pier_threads(b):
    """The nbthread of the panel's own haproxy.cfg (the bare proxy runs as many)."""
    with open(os.path.join(b.data_dir, "haproxy", "haproxy.cfg")) as f:
        m = re.search(r"^\s*nbthread\s+(\d+)", f.read(), re.M)
    if not m:
        raise BenchError("the panel's haproxy.cfg names no nbthread")
    return int(m.group(1))


def wait_running(b, name):
    deadline = time.monotonic() + 120
    while True:
        app = b.api.expect("GET", f"/apps/{name}")
        if app.get("state") == "running" and app.get("host_port"):
            return app
        if time.monotonic() > deadline:
            raise BenchError(f"the app {name} never ran: {app}")
        time.sleep(0.2)


def measure(b, https_port, name, label, image, port, health, cpus, rounds):
    host = f"{name}.{HOST}"
    body = {"name": name, "image": f"{b.registry}/pier-test/{image}", "port": port,
            "memory_mb": 128, "cpus": cpus}
    if health:
        body["health_path"] = health
    b.api.expect("POST", "/apps", body, status=(201,))
    b.api.expect("POST", "/domains", {"domain": host, "app": name}, status=(201,))
    app = wait_running(b, name)
    path = health or "/"
    direct = f"http://127.0.0.1:{app['host_port']}{path}"
    proxied = f"https://127.0.0.1:{https_port}{path}"
    if not http_200(app["host_port"], path=path):
        raise BenchError(f"{name} does not answer on its port")
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
                              proxied], capture_output=True, text=True, timeout=10).stdout
        if out == "200":
            break
        if time.monotonic() > deadline:
            raise BenchError(f"HAProxy answered {out} for {host}")
        time.sleep(0.2)
    say(f"routing, {label}: wrk -t2 -c{CONNS} 5 s (each after TIME_WAITs drained), {rounds} rounds alternating")
    bare = BareProxy(app["host_port"], pier_threads(b))
    d, p, h = [], [], []
    try:
        for i in range(rounds):
            d.append(wrk(direct))
            p.append(wrk(proxied, host))
            h.append(wrk(f"http://127.0.0.1:{bare.port}{path}"))
            say(f"  round {i + 1}: straight {d[-1][0]:.0f} req/s (p99 {d[-1][1]:.2f} ms), "
                f"through HAProxy {p[-1][0]:.0f} req/s (p99 {p[-1][1]:.2f} ms), "
                f"bare hop {h[-1][0]:.0f} req/s (p99 {h[-1][1]:.2f} ms)")
    finally:
        bare.stop()
    dr, dp = statistics.median(x[0] for x in d), statistics.median(x[1] for x in d)
    pr, pp = statistics.median(x[0] for x in p), statistics.median(x[1] for x in p)
    hr, hp = statistics.median(x[0] for x in h), statistics.median(x[1] for x in h)
    say(f"  straight to the container (HTTP):   {dr:8.0f} req/s  p99 {dp:6.2f} ms")
    say(f"  through HAProxy (HTTPS, by host):   {pr:8.0f} req/s  p99 {pp:6.2f} ms")
    say(f"  through a bare HAProxy (HTTP):      {hr:8.0f} req/s  p99 {hp:6.2f} ms   (the floor of a hop)")
    ok = pr / dr >= 0.95 and pp - dp <= 1.0
    say(f"  ratio through/straight: {pr / dr:.2f}, p99 {pp - dp:+.2f} ms"
        f"   (goal >= 0.95 and p99 within 1 ms: {'met' if ok else 'NOT met'})")
    say(f"  ratio bare hop/straight: {hr / dr:.2f}; Pier's HAProxy/bare hop: {pr / hr:.2f}")
    b.api.expect("DELETE", f"/apps/{name}", status=(204,))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_build_options(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--app", choices=[a[0] for a in APPS], action="append",
                    help="measure only this app (repeatable; default: all)")
    args = ap.parse_args()
    args.apps, args.runs, args.step_timeout, args.all_timeout = 1, 1, 120, 300
    if shutil.which("wrk") is None:
        sys.exit("routing.py: wrk is missing (apt-get install wrk)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(args)
    failed = True
    try:
        https_port, http_port = free_port(), free_port()
        b.start_panel(("--http-addr", f"127.0.0.1:{http_port}", "--https-addr", f"127.0.0.1:{https_port}",
                       "--no-acme"))
        b.set_up_account()
        for name, label, image, port, health, cpus in APPS:
            if not args.app or name in args.app:
                measure(b, https_port, name, label, image, port, health, cpus, args.rounds)
        failed = False
    finally:
        b.cleanup(failed)


if __name__ == "__main__":
    main()
