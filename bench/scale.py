#!/usr/bin/env python3
"""Scale benchmark, against a real `pier serve` and dockerd (127.0.0.1 only): how the panel grows
from 10 to 100 to 1,000 apps spread over 100 tenants.

One tenant ("the big tenant") holds the first 100 apps; the others share the rest. At each stage
(every app running, or stopped where --running says so) it measures:
- a reconcile pass with nothing to do (the engine logs each pass at debug; goal <= 100 ms),
- `GET /api/v1/apps?per_page=100` as the big tenant: one client in a row (p50/p99), then under
  wrk -t2 -c8 (goal: p99 <= 10 ms),
- the apps page (`/`, server-rendered, signed in as the big tenant): the same two ways
  (goal: p99 <= 20 ms),
- the panel's resident memory (goal: <= 60 MiB with 1,000 apps),
and prints one table of them all.

Needs the local registry and test images: `scripts/services.sh start`, then
`source "$(scripts/services.sh env)"`; dockerd must have address pools for 100 networks (the
scripts' dockerd has `--default-address-pool base=172.18.0.0/15,size=24`: 512 of them).

Usage: bench/scale.py [--bin target/release/pier] [--site target/site] [--stages 10,100,1000]
                      [--tenants 100] [--running 1000] [--requests 300] [--seconds 10]
Everything it makes is removed at the end, even on failure: the panel process (by pid), and the
containers and networks labelled with the panel's `pier.instance` id.
"""
import argparse
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (PASSWORD, Api, BenchError, Browser, Panel, add_build_options,  # noqa: E402
                      docker, panel_log, preflight, remove_labelled, rss_kib, run, say, wrk_latency)

ADMIN = "bench-scale@example.com"
BIG = 100  # apps of the big tenant


def tenant_email(i):
    return f"tenant{i:03d}@bench.example.com"


def pct(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


class Scale(Panel):
    def __init__(self, args):
        super().__init__(args, ADMIN, data_prefix="pier-bench-scale-", token_name="bench-scale",
                         token_scope="admin", health_timeout=30,
                         env={"PIER_ALLOWED_REGISTRIES": os.environ["PIER_TEST_REGISTRY"],
                              "PIER_LOG": panel_log("warn,pier::engine=debug")})
        self.tenants = []  # Api per tenant; [0] is the big tenant
        self.apps = []  # (tenant index, name), in creation order
        self.rows = {}  # stage -> {figure: text}

    # ----- set-up ----------------------------------------------------------------------------

    def set_up_tenants(self):
        n = self.args.tenants
        say(f"  creating {n} tenants, a token and the registry login for each")
        t0 = time.monotonic()
        for i in range(n):
            email = tenant_email(i)
            apps = BIG if i == 0 else math.ceil(max(0, max(self.args.stages) - BIG) / max(1, n - 1))
            apps = max(apps, 1)
            self.api.expect("POST", "/users", {
                "email": email, "password": PASSWORD, "role": "member", "max_apps": apps,
                "max_memory_mb": apps * 16, "max_cpus": f"{apps * 50 // 1000}.{apps * 50 % 1000:03d}",
            }, status=(201,))
            token = subprocess.run([self.args.bin, "--data-dir", self.data_dir, "token", "create",
                                    "--email", email, "--name", "bench-scale", "--scope", "write"],
                                   capture_output=True, text=True, check=True, env=self.env,
                                   timeout=60).stdout.strip()
            api = Api(self.api.port, token)
            api.expect("PUT", f"/registries/{self.registry}",
                       {"username": os.environ["PIER_TEST_REGISTRY_USER"],
                        "password": os.environ["PIER_TEST_REGISTRY_PASSWORD"]})
            self.tenants.append(api)
        say(f"    done in {time.monotonic() - t0:.1f} s")

    def owner_of(self, k):
        """Tenant of the k-th app (0-based): the big tenant's first, then round robin."""
        if k < BIG:
            return 0
        return 1 + (k - BIG) % max(1, len(self.tenants) - 1)

    # ----- one stage -------------------------------------------------------------------------

    def grow_to(self, target):
        start = len(self.apps)
        if target <= start:
            return
        running = self.args.running
        say(f"  deploying apps {start + 1}..{target}"
            + (f" (apps after the first {running} are stopped once created)" if target > running else ""))
        t0 = time.monotonic()
        for k in range(start, target):
            t = self.owner_of(k)
            name = f"scale-{k + 1:04d}"
            self.tenants[t].expect("POST", "/apps", {
                "name": name, "image": self.image, "port": 8080, "memory_mb": 16, "cpus": "0.05"},
                status=(201,))
            if k >= running:
                self.tenants[t].expect("POST", f"/apps/{name}/stop", status=(200, 202, 204))
            self.apps.append((t, name))
        posted = time.monotonic() - t0
        want_running = min(target, running)
        next_report = time.monotonic() + 15
        while True:
            states = self.states()
            failed = states.get("failed", 0)
            if failed:
                raise BenchError(f"{failed} apps failed to deploy: {self.first_failure()}")
            if states.get("running", 0) == want_running and sum(states.values()) == target \
                    and states.get("stopped", 0) == target - want_running:
                break
            now = time.monotonic()
            if now - t0 > self.args.all_timeout:
                raise BenchError(f"apps not settled after {self.args.all_timeout} s: {states}")
            if now >= next_report:
                say(f"    [{now - t0:5.0f} s] " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
                next_report += 15
            time.sleep(2)
        say(f"    {target - start} POST /apps in {posted:.1f} s; all settled after"
            f" {time.monotonic() - t0:.1f} s ({want_running} running, {target - want_running} stopped)")
        return time.monotonic() - t0

    def states(self):
        out = {}
        for api in self.tenants:
            for app in api.all_apps():
                out[app["state"]] = out.get(app["state"], 0) + 1
        return out

    def first_failure(self):
        for api in self.tenants:
            for app in api.all_apps():
                if app["state"] == "failed":
                    return f"{app['name']}: {app.get('last_error')}"
        return "?"

    def measure(self, target, settle_secs):
        a = self.args
        row = self.rows.setdefault(target, {})
        row["settle"] = f"{settle_secs:.0f} s" if settle_secs is not None else "-"
        # Two periodic passes with nothing to do (15 s apart).
        since = self.log_size()
        deadline = time.monotonic() + 45
        while len(self.reconcile_passes(since)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        passes = self.reconcile_passes(since)
        row["pass"] = (f"{statistics.median(passes):.1f} ms" if passes else "none logged")
        row["pass_max"] = f"{max(passes):.1f} ms" if passes else "-"

        big = self.tenants[0]
        n_big = sum(1 for t, _ in self.apps if t == 0)
        path = f"/apps?per_page={BIG}"
        lat = []
        for _ in range(a.requests):
            t = time.monotonic()
            data = big.expect("GET", path)
            lat.append((time.monotonic() - t) * 1000)
            if len(data["items"]) != n_big:
                raise BenchError(f"GET /api/v1{path} listed {len(data['items'])} apps, not {n_big}")
        row["api_p50"] = f"{statistics.median(lat):.1f} ms"
        row["api_p99"] = f"{pct(lat, 99):.1f} ms"

        b = Browser(self.api.port)
        b.sign_in(tenant_email(0))
        lat = []
        for _ in range(a.requests):
            t = time.monotonic()
            status, body = b.request("GET", "/")
            lat.append((time.monotonic() - t) * 1000)
            if status != 200:
                raise BenchError(f"GET / as the big tenant answered {status}")
        if f"scale-{n_big:04d}".encode() not in body:
            raise BenchError(f"the apps page does not show scale-{n_big:04d}")
        row["ssr_p50"] = f"{statistics.median(lat):.1f} ms"
        row["ssr_p99"] = f"{pct(lat, 99):.1f} ms"

        if shutil.which("wrk"):
            p50, p99, rps, bad = wrk_latency(f"http://127.0.0.1:{self.api.port}/api/v1{path}",
                                             f"Authorization: Bearer {big.token}", seconds=a.seconds)
            row["api_wrk"] = f"{rps}/s p99 {p99}" + (f" ({bad} non-2xx)" if bad else "")
            p50, p99, rps, bad = wrk_latency(f"http://127.0.0.1:{self.api.port}/", b.cookie_header(),
                                             seconds=a.seconds)
            row["ssr_wrk"] = f"{rps}/s p99 {p99}" + (f" ({bad} non-2xx)" if bad else "")
        time.sleep(3)
        row["rss"] = f"{rss_kib(self.proc.pid) / 1024:.1f} MiB"
        running = min(target, a.running)
        say(f"  {target} apps ({running} running): pass {row['pass']} (max {row['pass_max']}),"
            f" API p99 {row['api_p99']}, page p99 {row['ssr_p99']}, memory {row['rss']}")

    def table(self):
        stages = sorted(self.rows)
        lines = [
            ("all apps settled after", "settle", ""),
            ("reconcile pass, nothing to do (median)", "pass", "<= 100 ms"),
            ("reconcile pass, nothing to do (max)", "pass_max", ""),
            ("GET /api/v1/apps, big tenant: p50", "api_p50", ""),
            ("  p99 (one client, in a row)", "api_p99", "<= 10 ms"),
            ("  under wrk -t2 -c8", "api_wrk", ""),
            ("apps page (SSR), big tenant: p50", "ssr_p50", ""),
            ("  p99 (one client, in a row)", "ssr_p99", "<= 20 ms"),
            ("  under wrk -t2 -c8", "ssr_wrk", ""),
            ("panel resident memory", "rss", "<= 60 MiB"),
        ]
        w = 40
        head = f"  {'':<{w}}" + "".join(f"{f'{s} apps':>24}" for s in stages) + "   goal"
        say(head)
        for label, key, goal in lines:
            say(f"  {label:<{w}}" + "".join(f"{self.rows[s].get(key, '-'):>24}" for s in stages)
                + f"   {goal}")
        say(f"  ({self.args.tenants} tenants; the big tenant holds min(apps, {BIG});"
            f" {min(max(stages), self.args.running)} of {max(stages)} apps running at the end)")

    # ----- clean-up --------------------------------------------------------------------------

    def cleanup(self, failed):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notes = self.stop(failed)
        if self.instance:
            try:
                notes.append(remove_labelled([f"pier.instance={self.instance}"], timeout=1200))
            except Exception as e:  # noqa: BLE001 - report and carry on cleaning
                notes.append(f"docker clean-up failed: {e}")
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        say(f"  clean-up: panel stopped, {'; '.join(notes)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_build_options(ap)
    ap.add_argument("--stages", default="10,100,1000", help="app counts to measure at")
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--running", type=int, default=1000,
                    help="apps beyond this many are stopped once created (default 1000: all run)")
    ap.add_argument("--requests", type=int, default=300, help="requests in a row per figure")
    ap.add_argument("--seconds", type=int, default=10, help="seconds of each wrk load")
    ap.add_argument("--all-timeout", type=int, default=1800,
                    help="seconds to wait for a stage's apps to settle (default 1800)")
    args = ap.parse_args()
    try:
        args.stages = sorted({int(s) for s in args.stages.split(",")})
    except ValueError:
        ap.error("--stages: comma-separated app counts")
    if not args.stages or args.stages[0] < 1 or args.stages[-1] > 2000 or args.tenants < 1 \
            or args.requests < 1 or args.running < 0:
        ap.error("--stages 1..2000, --tenants >= 1, --requests >= 1, --running >= 0")
    if args.tenants == 1 and args.stages[-1] > BIG:
        ap.error(f"one tenant holds at most {BIG} apps here")
    preflight("scale.py", args, {"docker": "the docker CLI is missing"})

    bench = Scale(args)

    def steps():
        bench.start(("--no-proxy",))
        time.sleep(1)
        say(f"  panel idle after start: {rss_kib(bench.proc.pid) / 1024:.1f} MiB")
        bench.set_up_tenants()
        for target in args.stages:
            settle = bench.grow_to(target)
            bench.measure(target, settle)
        bench.table()

    return run("scale.py", f"Pier scale benchmark (127.0.0.1; binary {args.bin}; dockerd "
               f"{docker('info', '--format', '{{.ServerVersion}}', timeout=30)})", steps, bench.cleanup)


if __name__ == "__main__":
    sys.exit(main())
