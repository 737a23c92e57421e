#!/usr/bin/env python3
"""Volumes benchmark ("Real apps"), against real `pier serve`s and dockerds (127.0.0.1 only):

1. Redeploy gap of an app with a volume (replaced stop-first): N times, `POST .../redeploy`
   while requests go to the app through HAProxy over HTTPS (by its platform host name, one fresh
   connection each, one sent every ~20 ms whether or not the last has answered, at most 60 s); the
   gap is the time from the last success before the first failure to the first success after the
   last failure (by the time each was sent), beside Pier's own `last_redeploy_gap_ms`. The same,
   interleaved, for an app without volumes (zero-downtime switch: no failed request expected).
2. Deploy time with and without user namespaces: the project's dockerd (--userns-remap=default)
   beside a second dockerd started here without them (its own data and exec roots in a temp
   dir, no default bridge, no iptables rules, a default address pool nothing else uses), each with
   its own panel; from `POST /api/v1/apps` until the app's loopback port first answers 200,
   interleaved, R runs each after one warm-up (the first pull) per engine; the ratio of the
   medians. Skipped, with the reason, when the second dockerd does not start.

Needs what bench/apps.py needs: `scripts/services.sh start`, then
`source "$(scripts/services.sh env)"` (PIER_TEST_REGISTRY, PIER_TEST_REGISTRY_USER,
PIER_TEST_REGISTRY_PASSWORD); and root (loop devices for volumes, the second dockerd).

Usage: bench/volumes.py [--bin target/release/pier] [--site target/site] [--runs 5] [--deploys 5]
Everything it makes is removed at the end, even on failure: the panels and HAProxy (by pid),
the containers, networks and volumes labelled with each panel's `pier.instance` id, the volumes'
loop devices, the second dockerd (by pid, with its containerd) and its directories.
"""
import argparse
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (BenchError, add_build_options, docker, free_port, ids, preflight,  # noqa: E402
                      remove_labelled, run, say, stats_row, stop_process)

EMAIL = "bench-volumes@example.com"
HANDLE = "bench-volumes"  # the handle Pier makes of EMAIL (the only user of a fresh panel)
BASE_DOMAIN = "apps.bench.test"
PROBE_EVERY = 0.02  # seconds between requests while a redeploy rolls out
PROBE_TIMEOUT = 5.0  # per request (HAProxy gives up on a port that is gone after ~3 s)
MAX_IN_FLIGHT = 200  # probes at once, at most
REDEPLOY_LIMIT = 60.0  # seconds of probing per redeploy, at most
TAIL = 3.0  # seconds of probing after the new deployment serves (past the old one's drain)
VOLUME = {"name": "bench-data", "path": "/data", "size_mb": 64}


def ms(seconds):
    return f"{seconds * 1000:7.0f} ms"


class SniConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port with SNI set to a host name, the self-signed certificate accepted."""

    CONTEXT = ssl._create_unverified_context()  # noqa: SLF001 - HAProxy's certificate is self-signed

    def __init__(self, port, sni, timeout):
        super().__init__("127.0.0.1", port, timeout=timeout, context=self.CONTEXT)
        self.sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self.CONTEXT.wrap_socket(self.sock, server_hostname=self.sni)


def https_get(port, host, timeout=PROBE_TIMEOUT):
    """(status or what went wrong, seconds) of GET / through HAProxy for `host`, on a fresh
    connection."""
    t = time.monotonic()
    c = SniConnection(port, host, timeout)
    try:
        c.request("GET", "/", headers={"Host": host, "Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status, time.monotonic() - t
    except socket.timeout:
        return "timeout", time.monotonic() - t
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, time.monotonic() - t
    finally:
        c.close()


class Panel(benchlib.Panel):
    """One `pier serve` with its own data dir and admin, on one Docker engine."""

    def __init__(self, label, args, env=None, docker_env=None):
        super().__init__(args, EMAIL, label=label, env=env, docker_env=docker_env,
                         data_prefix=f"pier-bench-volumes-{label}-", token_name="bench",
                         token_scope="write", health_timeout=60, log_on_exit=True, wrap_errors=True)

    def start(self):
        super().start()
        self.login_registry()

    def containers(self, app=None):
        """The panel's containers (of one app: named `pier-<instance>-t<tenant>-<app>-d<n>`)."""
        out = self.docker("ps", "-a", "--filter", f"label=pier.instance={self.instance}",
                          "--format", "{{.ID}} {{.Names}} {{.State}}", timeout=30)
        rows = [line.split() for line in out.splitlines() if line.strip()]
        if app is not None:
            rows = [r for r in rows if re.search(rf"-t\d+-{re.escape(app)}-d\d+$", r[1])]
        return rows

    def wait_serving(self, name, number=None, timeout=120):
        """The app once it runs (deployment `number`, if given) with no rollout in progress."""
        deadline = time.monotonic() + timeout
        while True:
            app = self.app(name)
            if (app["state"] == "running" and app.get("host_port") and app.get("rollout") is None
                    and (number is None or app.get("current_deployment") == number)):
                return app
            if app["state"] == "failed":
                raise BenchError(f"app {name} failed to deploy: {app.get('last_error')}")
            if time.monotonic() > deadline:
                raise BenchError(f"app {name} not serving{'' if number is None else f' #{number}'}"
                                 f" within {timeout} s (state {app['state']}, deployment "
                                 f"{app.get('current_deployment')}, last error: {app.get('last_error')})")
            time.sleep(0.1)

    def delete_app(self, name, timeout=120):
        """Deletes the app and its volumes; seconds until its containers are gone."""
        t0 = time.monotonic()
        self.api.expect("DELETE", f"/apps/{name}?keep_volumes=false", status=(204,))
        while True:
            left = self.containers(name)
            if not left:
                break
            if time.monotonic() - t0 > timeout:
                raise BenchError(f"app {name}'s containers still exist {timeout} s after DELETE: "
                                 + ", ".join(f"{n} ({st})" for _, n, st in left))
            time.sleep(0.2)
        return time.monotonic() - t0

    def cleanup(self, failed):
        """Stops the panel and its HAProxy; removes what it made. Notes on what was done."""
        if self.proc is not None and self.proc.poll() is None and self.api is not None:
            # The panel deletes its apps' volumes itself (loop devices, images) when it can.
            try:
                _, data = self.api.call("GET", "/apps?per_page=100", timeout=10)
                for app in (data or {}).get("items", []):
                    self.api.call("DELETE", f"/apps/{app['name']}?keep_volumes=false", timeout=30)
                # Containers first, then Pier removes the volumes (and their loop devices).
                label = f"label=pier.instance={self.instance}"
                t0 = time.monotonic()
                while ((self.containers() or self.docker("volume", "ls", "-q", "--filter", label))
                       and time.monotonic() - t0 < 30):
                    time.sleep(0.5)
            except Exception:  # noqa: BLE001 - the forced clean-up below still runs
                pass
        notes = self.stop(failed)
        if self.instance:
            # The project's dockerd, restarted meanwhile (by someone else), gets a minute to
            # answer again; the bench's own second one is not waited for.
            deadline = time.monotonic() + (60 if self.docker_env is None else 0)
            while (subprocess.run(["docker", "info"], env=self.docker_env, capture_output=True,
                                  timeout=30).returncode != 0 and time.monotonic() < deadline):
                time.sleep(2)
            try:
                notes.append(remove_labelled([f"pier.instance={self.instance}"], env=self.docker_env,
                                             volumes=True))
            except Exception as e:  # noqa: BLE001 - report and carry on cleaning
                notes.append(f"docker clean-up failed: {e}")
        # Loop devices still backed by this panel's volume images.
        vdir = os.path.join(self.data_dir or "/nonexistent", "volumes")
        if os.path.isdir(vdir):
            detached = 0
            for f in os.listdir(vdir):
                if not f.endswith(".img"):
                    continue
                r = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", os.path.join(vdir, f)],
                                   capture_output=True, text=True, timeout=30)
                for dev in ids(r.stdout):
                    if subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30).returncode == 0:
                        detached += 1
            if detached:
                notes.append(f"{detached} loop devices detached")
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return f"{self.label} panel stopped" + (f" ({'; '.join(notes)})" if notes else "")


BENCH_BRIDGE = "pierbench0"


class SecondDockerd:
    """A dockerd without user namespaces, only for this bench, on a socket of its own."""

    def __init__(self):
        self.dir = None
        self.proc = None
        self.sock = None
        self.log_path = None
        self.pool = None
        self.bridge = False

    @property
    def env(self):
        return dict(os.environ, DOCKER_HOST=f"unix://{self.sock}")

    def pick_pool(self):
        """A 10.x.0.0/16 that no route of this host and no network of the project's dockerd
        overlaps (Docker's default pools are 172.17-31.0.0/16 and 192.168.0.0/16, which the
        project's dockerd takes from, and this one would not know of its networks)."""
        used = []
        out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                             text=True, timeout=10).stdout
        for line in out.splitlines():
            word = line.split()[0] if line.split() else ""
            if word in ("local", "broadcast", "unicast"):
                word = line.split()[1]
            try:
                if word != "default":
                    used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
        nets = ids(docker("network", "ls", "-q", timeout=30))
        if nets:
            out = docker("network", "inspect", "--format",
                         "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *nets, timeout=30)
            for word in out.split():
                try:
                    used.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
        for second in range(213, 250):
            cand = ipaddress.ip_network(f"10.{second}.0.0/16")
            if not any(cand.overlaps(u) for u in used if u.version == 4):
                return str(cand)
        raise BenchError("no free 10.x.0.0/16 for the second dockerd's networks")

    def start(self, timeout=60):
        if shutil.which("dockerd") is None:
            raise BenchError("dockerd is not installed")
        self.pool = self.pick_pool()
        net = ipaddress.ip_network(self.pool)
        # The pool's last /24 for the default bridge (networks are handed out from the start).
        bridge_addr = f"{list(net.subnets(new_prefix=24))[-1][1]}/24"
        subprocess.run(["ip", "link", "del", BENCH_BRIDGE], capture_output=True, timeout=10)
        for args in (["ip", "link", "add", BENCH_BRIDGE, "type", "bridge"],
                     ["ip", "addr", "add", bridge_addr, "dev", BENCH_BRIDGE],
                     ["ip", "link", "set", BENCH_BRIDGE, "up"]):
            r = subprocess.run(args, capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                raise BenchError(f"{' '.join(args)}: {r.stderr.strip()}")
        self.bridge = True
        self.dir = tempfile.mkdtemp(prefix="pier-bench-dockerd-")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.log_path = os.path.join(self.dir, "dockerd.log")
        cmd = ["dockerd",
               "--data-root", os.path.join(self.dir, "root"),
               "--exec-root", os.path.join(self.dir, "exec"),
               "-H", f"unix://{self.sock}",
               "--pidfile", os.path.join(self.dir, "docker.pid"),
               # A default bridge of its own: with --bridge=none dockerd deletes the host's
               # docker0, which the project's dockerd (and anyone else's containers) use.
               f"--bridge={BENCH_BRIDGE}", "--iptables=false", "--ip-masq=false",
               "--default-address-pool", f"base={self.pool},size=24",
               "--log-level", "warn"]
        if os.path.exists("/run/containerd/containerd.sock"):
            # A system containerd would be shared: keep this engine's objects apart from others'.
            cmd += ["--containerd-namespace", "pier-bench", "--containerd-plugins-namespace",
                    "pier-bench-plugins"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the second dockerd exited with {self.proc.returncode}: "
                                 f"{self.log_tail()}")
            r = subprocess.run(["docker", "info", "--format", "{{.SecurityOptions}}"], env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                if "name=userns" in r.stdout:
                    raise BenchError(f"the second dockerd runs with user namespaces: {r.stdout.strip()}")
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the second dockerd did not answer within {timeout} s: {self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, n=3):
        """Why it failed, from its log: the error lines, else the last lines."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
        except (OSError, TypeError):
            return "(no log)"
        errors = [line for line in lines if "level=error" in line or "level=fatal" in line
                  or line.startswith("failed to start daemon")]
        return " | ".join((errors or lines)[-n:]) or "(empty log)"

    def containerd_pid(self):
        """The managed containerd of this dockerd (its pid file under our exec root), if alive."""
        pidfile = os.path.join(self.dir, "exec", "containerd", "containerd.pid")
        try:
            pid = int(open(pidfile).read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if self.dir.encode() in f.read():
                    return pid
        except (OSError, ValueError):
            pass
        return None

    def stop(self):
        notes = []
        if self.proc is not None and self.proc.poll() is None:
            # Its containers first (only ours run there), so nothing keeps a mount busy.
            try:
                left = ids(docker("ps", "-aq", env=self.env, timeout=30))
                if left:
                    docker("rm", "-f", *left, env=self.env, timeout=120, check=False)
            except BenchError:
                pass
        containerd = self.containerd_pid() if self.dir else None
        if self.proc is not None:
            if stop_process(self.proc, grace=30):
                notes.append("SIGKILL")
            notes.append(f"dockerd {self.proc.pid} stopped")
        # Its managed containerd stops with it; after a SIGKILL it may not have.
        if containerd and os.path.exists(f"/proc/{containerd}"):
            try:
                os.kill(containerd, signal.SIGTERM)
                for _ in range(100):
                    if not os.path.exists(f"/proc/{containerd}"):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(containerd, signal.SIGKILL)
                notes.append(f"containerd {containerd} stopped")
            except OSError:
                pass
        if self.dir:
            mounts = []
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    point = line.split()[4].replace("\\040", " ")
                    if point == self.dir or point.startswith(self.dir + "/"):
                        mounts.append(point)
            for point in sorted(set(mounts), key=len, reverse=True):
                if subprocess.run(["umount", "-R", point], capture_output=True, timeout=30).returncode != 0:
                    subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
            if mounts:
                notes.append(f"{len(set(mounts))} mounts undone")
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", BENCH_BRIDGE], capture_output=True, timeout=10)
            notes.append(f"bridge {BENCH_BRIDGE} removed")
        return "second dockerd: " + (", ".join(notes) or "not started")


class Bench:
    def __init__(self, args):
        self.args = args
        self.https_port = free_port()
        self.http_port = free_port()
        self.main = Panel("userns", args, env={
            "PIER_ALLOWED_REGISTRIES": os.environ["PIER_TEST_REGISTRY"],
            "PIER_NO_ACME": "1",
            "PIER_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "PIER_HTTPS_ADDR": f"127.0.0.1:{self.https_port}",
            "PIER_BASE_DOMAIN": BASE_DOMAIN,
        })
        self.dockerd = None
        self.plain = None
        self.results = {}

    # ----- 1. redeploy gap -------------------------------------------------------------------

    def redeploy_once(self, name, host):
        """Redeploys the app while probing it; the run's figures. Each probe runs in a thread of
        its own, one started every PROBE_EVERY, so one that hangs (HAProxy retrying a port that
        is gone) does not stop the sampling; the gap is taken on the times the probes were sent."""
        p = self.main
        status, _ = https_get(self.https_port, host)
        if status != 200:
            raise BenchError(f"{host} answered {status} through HAProxy before its redeploy")
        events = []  # (sent, answered, status or what went wrong); list.append is atomic
        timeout = self.args.probe_timeout

        def probe():
            sent = time.monotonic()
            st, took = https_get(self.https_port, host, timeout)
            events.append((sent, sent + took, st))

        probe()
        t0 = time.monotonic()
        dep = p.api.expect("POST", f"/apps/{name}/redeploy", status=(202,))
        number = dep["number"]
        deadline = t0 + REDEPLOY_LIMIT
        serving_at = None
        next_api = 0.0
        app = None
        threads = []
        skipped = 0
        torn = 0  # GETs that showed no rollout and the old deployment while the new one ran
        try:
            while True:
                t = time.monotonic()
                threads = [th for th in threads if th.is_alive()]
                if len(threads) < MAX_IN_FLIGHT:
                    th = threading.Thread(target=probe, daemon=True)
                    th.start()
                    threads.append(th)
                else:
                    skipped += 1
                if serving_at is None and t >= next_api:
                    app = p.app(name)
                    if app.get("current_deployment") == number and app.get("rollout") is None:
                        serving_at = time.monotonic()
                    elif app["state"] == "failed" or (app.get("rollout") is None
                                                      and app.get("current_deployment") != number):
                        # Nothing rolls out and another deployment serves: failed, or (seen
                        # here) the GET read the app before and the deployments after the
                        # promotion; the deployment's own status tells.
                        deps = p.api.expect("GET", f"/apps/{name}/deployments?per_page=5")["items"]
                        mine = next((d for d in deps if d["number"] == number), None)
                        if mine is None or mine["status"] not in ("queued", "pulling", "starting",
                                                                  "running"):
                            raise BenchError(
                                f"redeploy #{number} of {name} did not go live ({time.monotonic() - t0:.2f} s"
                                f" after the POST): app state {app['state']}, serving "
                                f"#{app.get('current_deployment')}, deployment {json.dumps(mine)}")
                        torn += 1
                    next_api = time.monotonic() + 0.2
                if serving_at is not None and t - serving_at >= TAIL:
                    break
                if t > deadline:
                    if serving_at is None:
                        raise BenchError(f"redeploy #{number} of {name} not live within "
                                         f"{REDEPLOY_LIMIT:.0f} s")
                    break
                time.sleep(max(0.0, t + PROBE_EVERY - time.monotonic()))
        finally:
            for th in threads:
                th.join(timeout + 5)
        # Pier writes the gap just after the switch: read it again now that the tail is over.
        app = p.app(name)
        pier_gap = app.get("last_redeploy_gap_ms") if app.get("current_deployment") == number else None
        ev = sorted(events)
        fails = [i for i, e in enumerate(ev) if e[2] != 200]
        if fails:
            first, last = fails[0], fails[-1]
            after = next((e for e in ev[last + 1:] if e[2] == 200), None)
            if first == 0 or after is None:
                raise BenchError(f"{host}: no 200 {'before' if first == 0 else 'after'} the failed "
                                 f"requests of redeploy #{number} ({len(fails)} failed)")
            gap = after[0] - ev[first - 1][0]
        else:
            gap = 0.0
        kinds = {}
        for i in fails:
            kinds.setdefault(str(ev[i][2]), []).append(ev[i][1] - ev[i][0])
        what = ", ".join(f"{k} x{len(v)} ({min(v) * 1000:.0f}-{max(v) * 1000:.0f} ms each)"
                         for k, v in sorted(kinds.items()))
        if fails:
            what += (f"; sent from +{ev[fails[0]][0] - t0:.2f} s to +{ev[fails[-1]][0] - t0:.2f} s"
                     f" after the POST")
        if skipped:
            what += f"; {skipped} probes skipped ({MAX_IN_FLIGHT} in flight)"
        if torn:
            what += (f"{'; ' if what else ''}GET /apps/{name} showed no rollout and an older"
                     f" deployment serving while #{number} ran already ({torn}x)")
        return {
            "gap": gap, "failed": len(fails), "requests": len(ev) - 1,
            "slowest": max(e[1] - e[0] for e in ev[1:]), "live": serving_at - t0,
            "pier_gap_ms": pier_gap, "failures": what,
        }

    def redeploy_gap(self):
        n = self.args.runs
        p = self.main
        say(f"1. Redeploy gap, {n} runs each, interleaved: an app with a {VOLUME['size_mb']} MiB volume"
            f" (stop-first)\n   and one without (zero-downtime). During each redeploy GET / through"
            f" HAProxy (HTTPS, by the\n   platform host, a fresh connection each, {self.args.probe_timeout:g} s"
            f" timeout), one sent every {PROBE_EVERY * 1000:.0f} ms without\n   waiting for the last;"
            f" the gap runs from the last 200 before the first failure to the first\n   200 after the"
            f" last, by the time each was sent.")
        apps = {"volume": "bench-vol", "plain": "bench-novol"}
        p.create_app(apps["volume"], volumes=[VOLUME], health_path="/healthz", memory_mb=64, cpus="0.25")
        p.create_app(apps["plain"], health_path="/healthz", memory_mb=64, cpus="0.25")
        hosts = {}
        for kind, name in apps.items():
            app = p.wait_serving(name)
            if kind == "volume" and [v["name"] for v in app.get("volumes", [])] != [VOLUME["name"]]:
                raise BenchError(f"app {name} lists volumes {app.get('volumes')}, not {VOLUME['name']}")
            hosts[kind] = f"{name}-{HANDLE}.{BASE_DOMAIN}"
            deadline = time.monotonic() + 30
            while True:
                status, _ = https_get(self.https_port, hosts[kind])
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{hosts[kind]} answered {status} through HAProxy on "
                                     f"127.0.0.1:{self.https_port}, not 200, for 30 s")
                time.sleep(0.2)
        say(f"    platform hosts answer 200: {hosts['volume']}, {hosts['plain']}")
        runs = {"volume": [], "plain": []}
        for i in range(n):
            order = ("volume", "plain") if i % 2 == 0 else ("plain", "volume")
            for kind in order:
                r = self.redeploy_once(apps[kind], hosts[kind])
                runs[kind].append(r)
                pier_gap = "-" if r["pier_gap_ms"] is None else f"{r['pier_gap_ms']} ms"
                say(f"    run {i + 1}/{n} {kind:<6}: gap {ms(r['gap'])}  failed {r['failed']:3d} of "
                    f"{r['requests']:4d}  slowest request {ms(r['slowest'])}  live after "
                    f"{r['live']:5.1f} s  Pier's last_redeploy_gap_ms: {pier_gap}")
                if r["failures"]:
                    say(f"        {'failed: ' if r['failed'] else 'note: '}{r['failures']}")
        self.results["redeploy"] = runs
        for name in apps.values():
            p.delete_app(name)
        self.print_redeploy()

    def print_redeploy(self):
        runs = self.results.get("redeploy")
        if not runs:
            return
        for kind, label in (("volume", "with a volume (stop-first)"), ("plain", "without volumes")):
            rs = runs[kind]
            say(f"  {label}:")
            say(stats_row("  gap seen by the client", [r["gap"] for r in rs]))
            pier = [r["pier_gap_ms"] / 1000 for r in rs if r["pier_gap_ms"] is not None]
            if pier:
                say(stats_row("  Pier's last_redeploy_gap_ms", pier))
            say(stats_row("  failed requests", [r["failed"] for r in rs], unit="", scale=1))
            say(stats_row("  slowest request", [r["slowest"] for r in rs]))
            say(stats_row("  POST redeploy -> new deployment live", [r["live"] for r in rs]))

    # ----- 2. deploy time with and without user namespaces -----------------------------------

    def start_plain(self):
        self.dockerd = SecondDockerd()
        try:
            self.dockerd.start()
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            say(f"2. Skipped: the second dockerd (without user namespaces) did not start: {e}")
            return False
        self.plain = Panel("plain", self.args, env={
            "DOCKER_HOST": f"unix://{self.dockerd.sock}",
            "PIER_ALLOWED_REGISTRIES": os.environ["PIER_TEST_REGISTRY"],
            "PIER_NO_ACME": "1",
            "PIER_NO_PROXY": "1",
        }, docker_env=self.dockerd.env)
        self.plain.start()
        return True

    def userns_deploys(self):
        r = self.args.deploys
        timeout = self.args.step_timeout
        engines = {"userns": self.main, "plain": self.plain}
        sec = docker("info", "--format", "{{.SecurityOptions}}", timeout=30)
        if "name=userns" not in sec:
            say(f"    note: the project's dockerd runs WITHOUT user namespaces ({sec})")
        say(f"2. Deploy time, user namespaces or not, {r} runs each, interleaved, after one warm-up"
            f"\n   (first pull) per engine: POST /apps -> first 200 on the app's loopback port"
            f"\n   (second dockerd: no userns, data root {self.dockerd.dir}, pool {self.dockerd.pool})")
        for kind, p in engines.items():
            t = p.deploy(f"bench-warm-{kind}", timeout)[0]
            p.delete_app(f"bench-warm-{kind}")
            say(f"    warm-up {kind:<6}: {ms(t)} (not counted)")
        times = {"userns": [], "plain": []}
        for i in range(r):
            order = ("userns", "plain") if i % 2 == 0 else ("plain", "userns")
            for kind in order:
                p = engines[kind]
                name = f"bench-deploy-{i + 1}"
                times[kind].append(p.deploy(name, timeout)[0])
                p.delete_app(name)
            say(f"    run {i + 1}/{r}: userns {ms(times['userns'][-1])}   plain {ms(times['plain'][-1])}")
        self.results["deploy"] = times
        self.print_deploys()

    def print_deploys(self):
        times = self.results.get("deploy")
        if not times or not times["userns"] or not times["plain"]:
            return
        say(stats_row("project's dockerd (--userns-remap=default)", times["userns"]))
        say(stats_row("second dockerd, no user namespaces", times["plain"]))
        ratio = statistics.median(times["userns"]) / statistics.median(times["plain"])
        say(f"  ratio median(userns) / median(plain): {ratio:.2f}")

    def cleanup(self, failed):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notes = []
        for p in (self.plain, self.main):
            if p is not None:
                try:
                    notes.append(p.cleanup(failed))
                except Exception as e:  # noqa: BLE001 - keep cleaning the rest
                    notes.append(f"{p.label} panel clean-up failed: {e}")
        if self.dockerd is not None:
            try:
                notes.append(self.dockerd.stop())
            except Exception as e:  # noqa: BLE001
                notes.append(f"second dockerd clean-up failed: {e}")
        say(f"  clean-up: {'; '.join(notes)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_build_options(ap)
    ap.add_argument("--runs", type=int, default=5, help="redeploys per app (default 5)")
    ap.add_argument("--deploys", type=int, default=5, help="deploys per engine (default 5)")
    ap.add_argument("--step-timeout", type=int, default=120, help="seconds per deploy (default 120)")
    ap.add_argument("--probe-timeout", type=float, default=PROBE_TIMEOUT,
                    help=f"seconds per request during a redeploy (default {PROBE_TIMEOUT:g})")
    args = ap.parse_args()
    if args.runs < 1 or args.deploys < 1:
        ap.error("--runs and --deploys must be >= 1")
    preflight("volumes.py", args, {tool: f"{tool} is missing (scripts/setup.sh)"
                                   for tool in ("docker", "haproxy", "losetup", "mkfs.ext4")})

    bench = Bench(args)

    def steps():
        bench.main.start()
        bench.redeploy_gap()
        if bench.start_plain():
            bench.userns_deploys()

    def finish(failed):
        bench.cleanup(failed)
        if bench.results:
            say("Summary (volumes benchmark)")
            bench.print_redeploy()
            bench.print_deploys()

    return run("volumes.py", f"Pier volumes benchmark (127.0.0.1; binary {args.bin})", steps, finish)


if __name__ == "__main__":
    sys.exit(main())
