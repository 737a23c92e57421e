#!/usr/bin/env python3
"""Apps benchmark, against a real `pier serve` and dockerd (127.0.0.1 only):

1. Deploy latency: from `POST /api/v1/apps` until the app's loopback port first answers 200,
   beside a raw `docker run -d --rm -p 127.0.0.1::8080` of the same (locally present) image,
   interleaved, N runs each; median/min/max and the ratio of the medians (goal: <= 1.3).
2. The panel's resident memory idle, with --apps apps running and after they are deleted, how
   long it takes until all of them run, and the latency of `GET /api/v1/apps?per_page=100`.

Needs the local registry and test images: `scripts/services.sh start`, then
`source "$(scripts/services.sh env)"` (PIER_TEST_REGISTRY, PIER_TEST_REGISTRY_USER,
PIER_TEST_REGISTRY_PASSWORD). Build first: `cargo leptos build --release` (bench/run.sh does all).

Usage: bench/apps.py [--bin target/release/pier] [--site target/site] [--runs 7] [--apps 100]
Everything it makes is removed at the end, even on failure: the panel process (by pid), the
containers and networks labelled with the panel's `pier.instance` id, and `pier.bench=1` containers.
"""
import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

EMAIL = "bench-apps@example.com"
PASSWORD = "bench password 1234"
POLL = 0.02  # seconds between polls while timing a deploy
BENCH_LABEL = "pier.bench=1"


class BenchError(Exception):
    pass


def say(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS in /proc/%d/status" % pid)


def mib(kib):
    return f"{kib / 1024:8.1f} MiB"


def p95(values):
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def docker(*args, timeout=60, check=True, env=None, input=None):
    """Runs the docker CLI; its stdout, stripped."""
    try:
        r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                           env=env, input=input)
    except subprocess.TimeoutExpired:
        raise BenchError(f"docker {' '.join(args[:2])} did not finish within {timeout} s")
    if check and r.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:2])} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def ids(out):
    return [line for line in out.split() if line]


def http_200(port, timeout=1.0):
    """True when 127.0.0.1:port answers GET / with 200 (any failure is "not yet")."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        c.close()


class Api:
    """The panel's REST API with a bearer token; GETs reuse one keep-alive connection."""

    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = None

    def _once(self, conn, method, path, body):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, "/api/v1" + path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, parsed

    def call(self, method, path, body=None, timeout=30):
        if method == "GET":
            for attempt in (1, 2):
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
                try:
                    return self._once(self.conn, method, path, body)
                except (OSError, http.client.HTTPException):
                    self.conn.close()
                    self.conn = None
                    if attempt == 2:
                        raise
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            return self._once(conn, method, path, body)
        finally:
            conn.close()

    def expect(self, method, path, body=None, status=(200,), timeout=30):
        got, data = self.call(method, path, body, timeout)
        if got not in status:
            raise BenchError(f"{method} /api/v1{path} answered {got}: {data}")
        return data

    def all_apps(self):
        apps, page = [], 1
        while True:
            data = self.expect("GET", f"/apps?per_page=100&page={page}")
            apps.extend(data["items"])
            if not data["items"] or len(apps) >= data["total"]:
                return apps
            page += 1


class Bench:
    def __init__(self, args):
        self.args = args
        self.registry = os.environ["PIER_TEST_REGISTRY"]
        self.image = f"{self.registry}/pier-test/hello:1"
        self.data_dir = None
        self.docker_config = None
        self.proc = None
        self.instance = None
        self.api = None
        self.log_path = None

    # ----- set-up ----------------------------------------------------------------------------

    def pull_image(self):
        """Puts the image in dockerd once, so both sides measure a start, not a download."""
        self.docker_config = tempfile.mkdtemp(prefix="pier-bench-docker-")
        env = dict(os.environ, DOCKER_CONFIG=self.docker_config)
        docker("login", self.registry, "-u", os.environ["PIER_TEST_REGISTRY_USER"], "--password-stdin",
               input=os.environ["PIER_TEST_REGISTRY_PASSWORD"], env=env, timeout=30)
        try:
            docker("pull", "-q", self.image, env=env, timeout=120)
        finally:
            docker("logout", self.registry, env=env, timeout=30, check=False)

    def start_panel(self, serve_args=("--no-proxy",)):
        args = self.args
        self.data_dir = tempfile.mkdtemp(prefix="pier-bench-apps-")
        env = dict(os.environ, PIER_LOG="warn")
        pier = [args.bin, "--data-dir", self.data_dir]
        subprocess.run([*pier, "admin", "create", "--email", EMAIL, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, env=env,
                       stdout=subprocess.DEVNULL, timeout=60)
        token = subprocess.run([*pier, "token", "create", "--email", EMAIL, "--name", "bench-apps",
                                "--scope", "admin"],
                               capture_output=True, text=True, check=True, env=env, timeout=60).stdout.strip()
        self.instance = self.read_instance()
        port = free_port()
        self.log_path = os.path.join(self.data_dir, "panel.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*pier, "serve", "--listen", f"127.0.0.1:{port}",
                                          *serve_args, "--site-root", args.site],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"pier serve exited with {self.proc.returncode}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise BenchError("pier serve did not answer /healthz within 30 s")
            time.sleep(0.1)
        self.api = Api(port, token)

    def read_instance(self):
        db = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'pier.db')}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT id FROM instance").fetchone()
        finally:
            db.close()
        if not row or not re.fullmatch(r"[0-9a-zA-Z_-]+", str(row[0])):
            raise BenchError(f"unexpected instance id in pier.db: {row}")
        return str(row[0])

    def set_up_account(self):
        a = self.args
        self.api.expect("PUT", f"/registries/{self.registry}",
                        {"username": os.environ["PIER_TEST_REGISTRY_USER"],
                         "password": os.environ["PIER_TEST_REGISTRY_PASSWORD"]})
        users = self.api.expect("GET", "/users?per_page=100")["items"]
        me = next((u for u in users if u["email"] == EMAIL), None)
        if me is None:
            raise BenchError(f"GET /users does not list {EMAIL}")
        q = me["quotas"]
        # Room for the deploy runs (one 32 MiB / 0.1 CPU app at a time) and for --apps small apps.
        need_apps = max(a.apps, 1)
        need_mem = max(a.apps * 16, 32)
        need_cpu_milli = max(a.apps * 50, 100)
        cur_cpu_milli = round(float(q["max_cpus"]) * 1000)
        cpu_milli = max(need_cpu_milli, cur_cpu_milli)
        self.api.expect("PATCH", f"/users/{me['id']}", {
            "max_apps": max(need_apps, q["max_apps"]),
            "max_memory_mb": max(need_mem, q["max_memory_mb"]),
            "max_cpus": f"{cpu_milli // 1000}.{cpu_milli % 1000:03d}",
        })

    # ----- helpers ---------------------------------------------------------------------------

    def instance_containers(self):
        return ids(docker("ps", "-aq", "--filter", f"label=pier.instance={self.instance}", timeout=30))

    def wait_no_containers(self, timeout, progress_every=None, what="containers"):
        t0 = time.monotonic()
        next_report = t0 + (progress_every or math.inf)
        while True:
            left = self.instance_containers()
            if not left:
                return time.monotonic() - t0
            now = time.monotonic()
            if now - t0 > timeout:
                raise BenchError(f"{len(left)} of the panel's {what} still exist after {timeout:.0f} s")
            if now >= next_report:
                say(f"    [{now - t0:5.0f} s] {len(left)} containers left")
                next_report += progress_every
            time.sleep(0.2 if progress_every is None else 1.0)

    def create_app(self, name, memory_mb, cpus):
        return self.api.expect("POST", "/apps", {
            "name": name, "image": self.image, "port": 8080, "memory_mb": memory_mb, "cpus": cpus,
        }, status=(201,))

    # ----- 1. deploy latency -----------------------------------------------------------------

    def pier_deploy(self, name):
        """Seconds from POST until the first 200, and until the panel showed the host port."""
        timeout = self.args.step_timeout
        t0 = time.monotonic()
        self.create_app(name, 32, "0.1")
        deadline = t0 + timeout
        while True:
            app = self.api.expect("GET", f"/apps/{name}")
            if app.get("host_port"):
                port = app["host_port"]
                break
            if app["state"] == "failed":
                raise BenchError(f"app {name} failed to deploy: {app.get('last_error')}")
            if time.monotonic() > deadline:
                raise BenchError(f"app {name} showed no host_port within {timeout} s "
                                 f"(state {app['state']}, last error: {app.get('last_error')})")
            time.sleep(POLL)
        shown = time.monotonic() - t0
        while not http_200(port):
            if time.monotonic() > deadline:
                raise BenchError(f"app {name} on 127.0.0.1:{port} did not answer 200 within {timeout} s")
            time.sleep(POLL)
        answered = time.monotonic() - t0
        self.api.expect("DELETE", f"/apps/{name}", status=(204,))
        gone = self.wait_no_containers(timeout)
        return answered, shown, gone

    # What Pier always adds: the tenant's own bridge network, an init process, limits, hardening.
    ISOLATION = ["--network", "pier-bench-net", "--init", "--cap-drop", "ALL",
                 "--security-opt", "no-new-privileges", "--memory", "32m", "--memory-swap", "32m",
                 "--cpus", "0.1", "--pids-limit", "512", "--restart", "unless-stopped"]

    def docker_deploy(self, isolated=False):
        timeout = self.args.step_timeout
        t0 = time.monotonic()
        extra = self.ISOLATION if isolated else ["--rm"]
        cid = docker("run", "-d", *extra, "-p", "127.0.0.1::8080", "--label", BENCH_LABEL, self.image,
                     timeout=timeout)
        try:
            out = docker("port", cid, "8080/tcp", timeout=30)
            m = re.search(r"^127\.0\.0\.1:(\d+)$", out, re.M)
            if not m:
                raise BenchError(f"docker port {cid[:12]} 8080/tcp said {out!r}")
            port = int(m.group(1))
            deadline = t0 + timeout
            while not http_200(port):
                if time.monotonic() > deadline:
                    raise BenchError(f"docker run container on 127.0.0.1:{port} did not answer 200 "
                                     f"within {timeout} s")
                time.sleep(POLL)
            return time.monotonic() - t0
        finally:
            docker("rm", "-f", cid, timeout=60, check=False)

    def deploy_latency(self):
        runs = self.args.runs
        say(f"1. Deploy latency, {runs} runs each, interleaved (image {self.image}, present locally)")
        pier, shown, gone, raw, iso = [], [], [], [], []
        docker("network", "create", "--label", BENCH_LABEL, "pier-bench-net", timeout=60, check=False)
        for i in range(runs):
            # Rotate which goes first, so none always runs on a just-busied engine.
            order = [("pier", "docker", "isolated"), ("docker", "isolated", "pier"),
                     ("isolated", "pier", "docker")][i % 3]
            for which in order:
                if which == "pier":
                    a, s, g = self.pier_deploy(f"bench-deploy-{i + 1}")
                    pier.append(a)
                    shown.append(s)
                    gone.append(g)
                elif which == "docker":
                    raw.append(self.docker_deploy())
                else:
                    iso.append(self.docker_deploy(isolated=True))
            say(f"    run {i + 1}/{runs}: pier {pier[-1] * 1000:7.0f} ms   docker run {raw[-1] * 1000:7.0f} ms"
                f"   docker run + Pier's isolation {iso[-1] * 1000:7.0f} ms")
        docker("network", "rm", "pier-bench-net", timeout=60, check=False)

        def row(label, v):
            return (f"  {label:<46} median {statistics.median(v) * 1000:7.0f} ms"
                    f"   min {min(v) * 1000:7.0f}   max {max(v) * 1000:7.0f}")

        say(row("pier: POST /apps -> first 200 on its port", pier))
        say(row("  of which POST -> host_port shown", shown))
        say(row("docker run -d -> first 200 on its port", raw))
        say(row("docker run -d, same network/limits/hardening", iso))
        ratio = statistics.median(pier) / statistics.median(raw)
        say(f"  ratio median(pier) / median(docker run): {ratio:.2f}   (goal <= 1.3: "
            f"{'met' if ratio <= 1.3 else 'NOT met'})")
        ratio_iso = statistics.median(pier) / statistics.median(iso)
        say(f"  ratio median(pier) / median(docker run with the same isolation): {ratio_iso:.2f}")
        say(row("pier: DELETE /apps/{name} -> container gone", gone))
        say("  note: the image is present locally for both, but Pier still asks the registry for the"
            " manifest\n        on every deploy (it pulls by reference, with the saved login); docker run"
            " does not.\n        The plain docker run has none of Pier's isolation; the second one has"
            " the same\n        (its own bridge network, init, limits, no capabilities).")

    # ----- 2. memory with many apps ----------------------------------------------------------

    def many_apps(self, idle_start):
        n = self.args.apps
        say(f"2. Panel memory with {n} apps (16 MiB, 0.05 CPU each)")
        time.sleep(2)
        idle = rss_kib(self.proc.pid)
        t0 = time.monotonic()
        for i in range(n):
            self.create_app(f"bench-mem-{i + 1:04d}", 16, "0.05")
        created = time.monotonic() - t0
        say(f"    {n} POST /apps in {created:.1f} s; waiting until all are running"
            f" (at most {self.args.all_timeout} s)")
        next_report = t0 + 10
        while True:
            apps = self.api.all_apps()
            states = {}
            for app in apps:
                states[app["state"]] = states.get(app["state"], 0) + 1
            failed = [a for a in apps if a["state"] == "failed"]
            if failed:
                raise BenchError(f"{len(failed)} apps failed to deploy, e.g. {failed[0]['name']}: "
                                 f"{failed[0].get('last_error')}")
            now = time.monotonic()
            if len(apps) == n and states.get("running", 0) == n:
                all_running = now - t0
                break
            if now - t0 > self.args.all_timeout:
                raise BenchError(f"not all apps running after {self.args.all_timeout} s: {states}")
            if now >= next_report:
                say(f"    [{now - t0:5.0f} s] " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
                next_report += 10
            time.sleep(1)
        time.sleep(2)
        running_rss = rss_kib(self.proc.pid)

        lat = []
        path = "/apps?per_page=100"
        for _ in range(50):
            t = time.monotonic()
            data = self.api.expect("GET", path)
            lat.append(time.monotonic() - t)
            if len(data["items"]) != min(n, 100):
                raise BenchError(f"GET /api/v1{path} listed {len(data['items'])} apps, not {min(n, 100)}")
        after_list = rss_kib(self.proc.pid)

        # Bounded load on the list (issue 6's figure): wrk, 2 threads, 8 connections, 10 s.
        wrk_line = "wrk not installed"
        if shutil.which("wrk"):
            out = subprocess.run(
                ["wrk", "-t2", "-c8", "-d10s", "--latency", "-H", f"Authorization: Bearer {self.api.token}",
                 f"http://127.0.0.1:{self.api.port}/api/v1/apps"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout
            p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
            p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
            rps = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            wrk_line = (f"{rps} req/s  p50 {p50}  p99 {p99}  non-2xx {bad.group(1) if bad else 0}"
                        f"   (goal >= 5,000 req/s)")

        t1 = time.monotonic()
        for app in self.api.all_apps():
            self.api.expect("DELETE", f"/apps/{app['name']}", status=(204,))
        deleted = time.monotonic() - t1
        gone = self.wait_no_containers(self.args.all_timeout, progress_every=10) + deleted
        time.sleep(2)
        after = rss_kib(self.proc.pid)

        def row(label, value):
            say(f"  {label:<44} {value}")

        row(f"all {n} apps running after:", f"{all_running:8.1f} s    (from the first POST; the POSTs"
                                             f" took {created:.1f} s)")
        row("resident memory right after start:", mib(idle_start))
        row("resident memory idle, before the apps:", f"{mib(idle)}  (after the deploy runs)")
        row(f"resident memory with {n} apps running:",
            f"{mib(running_rss)}  (+{(running_rss - idle) / n:.0f} KiB per app)")
        row("GET /api/v1/apps?per_page=100, 50 sequential:",
            f"median {statistics.median(lat) * 1000:.1f} ms   p95 {p95(lat) * 1000:.1f} ms")
        row("resident memory after those requests:", mib(after_list))
        row(f"GET /api/v1/apps (default 50 per page, {n} apps), wrk -t2 -c8 10s:", wrk_line)
        row(f"all {n} apps deleted, containers gone in:", f"{gone:8.1f} s")
        row("resident memory after deleting them:", mib(after))

    # ----- clean-up --------------------------------------------------------------------------

    def cleanup(self, failed):
        # A second SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notes = []
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=15)
        # HAProxy outlives the panel by design: stop the one it started, by its pid file.
        pidfile = os.path.join(self.data_dir or "/nonexistent", "haproxy", "haproxy.pid")
        if os.path.exists(pidfile):
            try:
                pid = int(open(pidfile).read().strip())
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "haproxy":
                        os.kill(pid, signal.SIGTERM)
                        notes.append(f"haproxy {pid} stopped")
            except (OSError, ValueError):
                pass
        if failed and self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as f:
                tail = f.readlines()[-30:]
            if tail:
                print("--- last lines of the panel's log ---", file=sys.stderr)
                sys.stderr.writelines(tail)
        if self.instance is None and self.data_dir:
            try:
                self.instance = self.read_instance()
            except Exception:
                pass
        try:
            gone = []
            if self.instance:
                gone += ids(docker("ps", "-aq", "--filter", f"label=pier.instance={self.instance}", timeout=30))
            gone += ids(docker("ps", "-aq", "--filter", f"label={BENCH_LABEL}", timeout=30))
            if gone:
                docker("rm", "-f", *sorted(set(gone)), timeout=300, check=False)
            nets = []
            if self.instance:
                nets = ids(docker("network", "ls", "-q", "--filter", f"label=pier.instance={self.instance}",
                                  timeout=30))
                if nets:
                    docker("network", "rm", *nets, timeout=60, check=False)
            bench_nets = ids(docker("network", "ls", "-q", "--filter", f"label={BENCH_LABEL}", timeout=30))
            if bench_nets:
                docker("network", "rm", *bench_nets, timeout=60, check=False)
            nets += bench_nets
            notes.append(f"removed {len(set(gone))} leftover containers, {len(nets)} networks")
        except Exception as e:  # noqa: BLE001 - report and carry on cleaning
            notes.append(f"docker clean-up failed: {e}")
        for d in (self.docker_config, self.data_dir):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        say(f"  clean-up: panel stopped, {'; '.join(notes)}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(root, "target/release/pier"))
    ap.add_argument("--site", default=os.path.join(root, "target/site"))
    ap.add_argument("--runs", type=int, default=7, help="deploy-latency runs (default 7)")
    ap.add_argument("--apps", type=int, default=100, help="apps for the memory figure (default 100)")
    ap.add_argument("--step-timeout", type=int, default=120, help="seconds per deploy step (default 120)")
    ap.add_argument("--all-timeout", type=int, default=900,
                    help="seconds to wait for all apps to run, or to be gone (default 900)")
    args = ap.parse_args()
    if args.runs < 1 or not 1 <= args.apps <= 1000:
        ap.error("--runs must be >= 1 and --apps 1..1000")

    missing = [v for v in ("PIER_TEST_REGISTRY", "PIER_TEST_REGISTRY_USER", "PIER_TEST_REGISTRY_PASSWORD")
               if not os.environ.get(v)]
    if missing:
        sys.exit(f"apps.py: {', '.join(missing)} not set: run scripts/services.sh start first, then "
                 f"source \"$(scripts/services.sh env)\"")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"apps.py: no pier binary at {args.bin} (cargo leptos build --release)")
    if not os.path.isdir(args.site):
        sys.exit(f"apps.py: no site at {args.site} (cargo leptos build --release)")
    if shutil.which("docker") is None:
        sys.exit("apps.py: the docker CLI is missing")
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except BenchError as e:
        sys.exit(f"apps.py: dockerd does not answer ({e}): run scripts/services.sh start first")

    # SIGTERM (a trap, a CI timeout) ends the run through the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    bench = Bench(args)
    failed = True
    t_start = time.monotonic()
    try:
        say(f"Pier apps benchmark (127.0.0.1; binary {args.bin})")
        bench.pull_image()
        bench.start_panel()
        time.sleep(1)
        idle_start = rss_kib(bench.proc.pid)
        bench.set_up_account()
        bench.deploy_latency()
        bench.many_apps(idle_start)
        failed = False
    except BenchError as e:
        print(f"apps.py: {e}", file=sys.stderr, flush=True)
    except subprocess.CalledProcessError as e:
        print(f"apps.py: {' '.join(map(str, e.cmd[:1] + e.cmd[3:5]))} failed ({e.returncode}): "
              f"{(e.stderr or '').strip()}", file=sys.stderr, flush=True)
    finally:
        bench.cleanup(failed)
        say(f"  total run time: {time.monotonic() - t_start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
