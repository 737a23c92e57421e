#!/usr/bin/env python3
"""Apps benchmark, against a real `pier serve` and dockerd (127.0.0.1 only):

1. Deploy latency: from `POST /api/v1/apps` until the app's loopback port first answers 200,
   beside a raw `docker run -d --rm -p 127.0.0.1::8080` of the same (locally present) image,
   one on a network of its own (made beforehand, as each tenant has) and one with all of Pier's
   isolation, interleaved, N runs each; median/min/max and the ratio of the medians (goal:
   <= 1.3). Pier's runs deploy beside an app the tenant already has, so the tenant's network
   exists for them as for the docker runs; the first app, which also makes the network, is
   timed on its own.
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
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (POLL, BenchError, Panel, add_build_options, breakdown_text,  # noqa: E402
                      docker, http_200, ids, panel_log, preflight, remove_labelled,
                      rss_breakdown, rss_kib, run, say, settled_rss, stats_row, wrk_latency)

EMAIL = "bench-apps@example.com"
BENCH_LABEL = "pier.bench=1"


def mib(kib):
    return f"{kib / 1024:8.1f} MiB"


def p95(values):
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


class Bench(Panel):
    """The panel under test (bench/routing.py uses it too), and the figures taken of it."""

    def __init__(self, args):
        # Only the local test registry (a registry on this machine needs the operator's list).
        super().__init__(args, EMAIL, data_prefix="pier-bench-apps-", token_name="bench-apps",
                         token_scope="admin", health_timeout=30,
                         env={"PIER_ALLOWED_REGISTRIES": os.environ["PIER_TEST_REGISTRY"],
                              # The reconciler logs each pass's duration at debug.
                              "PIER_LOG": panel_log("warn,pier::engine=debug")})
        self.docker_config = None
        self.first_app = set()  # the containers of the app the deploy runs go beside

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
        self.start(serve_args)

    def set_up_account(self):
        a = self.args
        self.login_registry()
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

    def wait_no_containers(self, timeout, progress_every=None, what="containers", keep=()):
        """Seconds until none of the panel's containers but those in `keep` exist."""
        t0 = time.monotonic()
        next_report = t0 + (progress_every or math.inf)
        while True:
            left = [c for c in self.instance_containers() if c not in keep]
            if not left:
                return time.monotonic() - t0
            now = time.monotonic()
            if now - t0 > timeout:
                raise BenchError(f"{len(left)} of the panel's {what} still exist after {timeout:.0f} s")
            if now >= next_report:
                say(f"    [{now - t0:5.0f} s] {len(left)} containers left")
                next_report += progress_every
            time.sleep(0.2 if progress_every is None else 1.0)

    # ----- 1. deploy latency -----------------------------------------------------------------

    def pier_deploy(self, name):
        """Seconds from POST until the first 200, and until the panel showed the host port."""
        timeout = self.args.step_timeout
        answered, shown = self.deploy(name, timeout)
        self.api.expect("DELETE", f"/apps/{name}", status=(204,))
        gone = self.wait_no_containers(timeout, keep=self.first_app)
        return answered, shown, gone

    # What Pier always adds: the tenant's own bridge network, an init process, limits, hardening.
    # The CPU share (0.1) as Pier starts a container: counted over 1 s periods (Pier settles it
    # to 100 ms periods once the container answers, after the time measured here).
    ISOLATION = ["--network", "pier-bench-net", "--init", "--cap-drop", "ALL",
                 "--security-opt", "no-new-privileges", "--memory", "32m", "--memory-swap", "32m",
                 "--cpu-period", "1000000", "--cpu-quota", "100000", "--pids-limit", "512",
                 "--restart", "unless-stopped"]

    def docker_deploy(self, isolated=False, network_only=False):
        timeout = self.args.step_timeout
        t0 = time.monotonic()
        extra = self.ISOLATION if isolated else ["--network", "pier-bench-net"] if network_only else ["--rm"]
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
        pier, shown, gone, raw, iso, net = [], [], [], [], [], []
        docker("network", "create", "--label", BENCH_LABEL, "pier-bench-net", timeout=60, check=False)
        # A tenant's first app also makes the tenant's network (dockerd: about 90 ms), which
        # stays while the tenant has an app. The runs below deploy beside this one, as a tenant's
        # next app, like the docker runs that join a network made beforehand.
        first, _ = self.deploy("bench-first", timeout=self.args.step_timeout)
        self.first_app = set(self.instance_containers())
        for i in range(runs):
            # Rotate which goes first, so none always runs on a just-busied engine.
            order = [("pier", "docker", "isolated", "network"), ("docker", "network", "isolated", "pier"),
                     ("isolated", "pier", "network", "docker")][i % 3]
            for which in order:
                if which == "pier":
                    a, s, g = self.pier_deploy(f"bench-deploy-{i + 1}")
                    pier.append(a)
                    shown.append(s)
                    gone.append(g)
                elif which == "docker":
                    raw.append(self.docker_deploy())
                elif which == "network":
                    net.append(self.docker_deploy(network_only=True))
                else:
                    iso.append(self.docker_deploy(isolated=True))
            say(f"    run {i + 1}/{runs}: pier {pier[-1] * 1000:5.0f} ms   docker run {raw[-1] * 1000:5.0f} ms"
                f"   + own network {net[-1] * 1000:5.0f} ms   + Pier's isolation {iso[-1] * 1000:5.0f} ms")
        docker("network", "rm", "pier-bench-net", timeout=60, check=False)
        self.api.expect("DELETE", "/apps/bench-first", status=(204,))
        self.wait_no_containers(self.args.step_timeout)

        def row(label, v):
            return stats_row(label, v, width=46)

        first_label = "pier: a tenant's first app (makes its network)"
        say(f"  {first_label:<46} {first * 1000:7.0f} ms   (one run)")
        say(row("pier: POST /apps -> first 200 on its port", pier))
        say(row("  of which POST -> host_port shown", shown))
        say(row("docker run -d -> first 200 on its port", raw))
        say(row("docker run -d on a network of its own only", net))
        say(row("docker run -d, same network/limits/hardening", iso))
        ratio = statistics.median(pier) / statistics.median(raw)
        say(f"  ratio median(pier) / median(docker run): {ratio:.2f}   (goal <= 1.3: "
            f"{'met' if ratio <= 1.3 else 'NOT met'})")
        say(f"  ratio median(pier) / median(docker run on a network of its own): "
            f"{statistics.median(pier) / statistics.median(net):.2f}")
        ratio_iso = statistics.median(pier) / statistics.median(iso)
        say(f"  ratio median(pier) / median(docker run with the same isolation): {ratio_iso:.2f}")
        self.deploy_steps(pier)
        say(row("pier: DELETE /apps/{name} -> container gone", gone))
        say("  note: Pier's runs deploy a tenant's next app (its network exists, as for the docker runs"
            " on one).")
        say("  note: the image is present locally for both, but Pier still asks the registry for the"
            " manifest\n        on every deploy (it pulls by reference, with the saved login); docker run"
            " does not.\n        The plain docker run has none of Pier's isolation; the second one has"
            " the same\n        (its own bridge network, init, limits, no capabilities).")

    # What the panel logs when a deployment is live: milliseconds from the start of its run.
    MARKS = ("pull_from_ms", "pulled_at_ms", "create_from_ms", "started_at_ms", "answered_at_ms",
             "settled_at_ms", "live_at_ms")
    STEPS = ("before the pull (state, checks, the login)", "pull (the registry's manifest)",
             "network, volumes, the container's spec", "create and start",
             "first answer (the health probe)", "CPU limit to its steady form",
             "promote (database, routes)")

    def deploy_steps(self, totals):
        """Where Pier's deploy runs' time went, from the panel's log (median of each step)."""
        text = self.log_text()
        runs = []
        for i, total in enumerate(totals):
            line = re.search(rf"deployment is live app=bench-deploy-{i + 1} .*", text)
            if not line:
                say(f"  (the panel logged no 'deployment is live' line for bench-deploy-{i + 1})")
                return
            at = dict(re.findall(r"(\w+_ms)=(\d+)", line.group(0)))
            if any(k not in at for k in self.MARKS):
                say(f"  (this panel's log line lacks the step marks: {line.group(0)[:120]})")
                return
            marks = [int(at[k]) for k in self.MARKS]
            steps = [marks[0]] + [b - a for a, b in zip(marks, marks[1:])]
            runs.append(steps + [total * 1000 - marks[-1]])
        say("  where a Pier deploy's time goes (median of the runs; from the panel's log):")
        for j, label in enumerate(self.STEPS + ("outside the run (the POST, the reconciler's pass,"
                                                 " the 200 seen)",)):
            say(f"    {label:<60} {statistics.median(r[j] for r in runs):6.0f} ms")

    # ----- 2. memory with many apps ----------------------------------------------------------

    def many_apps(self, idle_start, start_parts):
        n = self.args.apps
        say(f"2. Panel memory with {n} apps (16 MiB, 0.05 CPU each)")
        time.sleep(2)
        idle = rss_kib(self.proc.pid)
        t0 = time.monotonic()
        for i in range(n):
            self.create_app(f"bench-mem-{i + 1:04d}", memory_mb=16, cpus="0.05")
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
        # Passes with nothing to do: the periodic resyncs once every app runs (15 s apart).
        settled_at = self.log_size()
        deadline = time.monotonic() + 40
        while len(self.reconcile_passes(settled_at)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        idle_passes = self.reconcile_passes(settled_at)
        # Idle: a minute after the last app came up, nothing asked of the panel meanwhile but
        # its own passes and samples (the goal's figure: <= 25 MiB).
        time.sleep(max(0.0, t0 + all_running + 60 - time.monotonic()))
        idle_rss = rss_kib(self.proc.pid)
        idle_parts = rss_breakdown(self.proc.pid)

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
            p50, p99, rps, bad = wrk_latency(f"http://127.0.0.1:{self.api.port}/api/v1/apps",
                                             f"Authorization: Bearer {self.api.token}", seconds=10,
                                             timeout=60)
            wrk_line = f"{rps} req/s  p50 {p50}  p99 {p99}  non-2xx {bad}   (goal >= 5,000 req/s)"

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
        row("resident memory after start, settled:", mib(idle_start))
        row("  of which:", breakdown_text(start_parts))
        row("resident memory idle, before the apps:", f"{mib(idle)}  (after the deploy runs)")
        row(f"resident memory with {n} apps running:",
            f"{mib(running_rss)}  (+{(running_rss - idle) / n:.0f} KiB per app; 2 s after the last came up)")
        row(f"resident memory with {n} apps, idle:",
            f"{mib(idle_rss)}  (a minute after the last came up; goal <= 25 MiB:"
            f" {'met' if idle_rss <= 25 * 1024 else 'NOT met'})")
        row("  of which:", breakdown_text(idle_parts))
        row(f"reconcile pass, nothing to do, {n} apps:",
            (f"median {statistics.median(idle_passes):.1f} ms   max {max(idle_passes):.1f} ms"
             f"   ({len(idle_passes)} passes; goal <= 100 ms)") if idle_passes else "no pass logged")
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
        notes = self.stop(failed)
        labels = ([f"pier.instance={self.instance}"] if self.instance else []) + [BENCH_LABEL]
        try:
            notes.append(remove_labelled(labels))
        except Exception as e:  # noqa: BLE001 - report and carry on cleaning
            notes.append(f"docker clean-up failed: {e}")
        for d in (self.docker_config, self.data_dir):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        say(f"  clean-up: panel stopped, {'; '.join(notes)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_build_options(ap)
    ap.add_argument("--runs", type=int, default=7, help="deploy-latency runs (default 7)")
    ap.add_argument("--apps", type=int, default=100, help="apps for the memory figure (default 100)")
    ap.add_argument("--step-timeout", type=int, default=120, help="seconds per deploy step (default 120)")
    ap.add_argument("--all-timeout", type=int, default=900,
                    help="seconds to wait for all apps to run, or to be gone (default 900)")
    args = ap.parse_args()
    if args.runs < 1 or not 1 <= args.apps <= 1000:
        ap.error("--runs must be >= 1 and --apps 1..1000")
    preflight("apps.py", args, {"docker": "the docker CLI is missing"})

    bench = Bench(args)

    def steps():
        bench.pull_image()
        bench.start_panel()
        idle_start = settled_rss(bench.proc.pid), rss_breakdown(bench.proc.pid)
        bench.set_up_account()
        bench.deploy_latency()
        bench.many_apps(*idle_start)

    return run("apps.py", f"Pier apps benchmark (127.0.0.1; binary {args.bin})", steps, bench.cleanup)


if __name__ == "__main__":
    sys.exit(main())
