#!/usr/bin/env python3
"""Audit log and metrics benchmark: what recording every change, and counting every request for
Prometheus, cost the REST API's throughput.

Three panels from the same binary run side by side: as shipped (audit log on, metrics off),
with `--no-audit-log`, and with `--metrics-listen` (audit log on, requests counted and timed).
Each gets the same bounded loads, in alternating rounds so that drift hits all alike: an audited
write (`PUT /api/v1/registries/{host}`: a registry login, encrypted and stored) and a read
(`GET /api/v1/tokens`); the figure is the median round. Also prints the audit entries written and
the bytes each takes in the database, and scrapes the metrics once.
Traffic goes to 127.0.0.1 only; nothing is pulled (the registry named, registry.example.com, is never contacted).

Usage: bench/observability.py [--bin target/release/pier] [--site target/site] [--seconds 8] [--rounds 3]
"""
import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import add_build_options, free_port, http_200, panel_log, stop_process  # noqa: E402

EMAIL = "bench@example.com"
PASSWORD = "bench password 1234"
BODY = '{"username":"robot","password":"bench-registry-password"}'


def start(binary, site, extra):
    data_dir = tempfile.mkdtemp(prefix="pier-bench-audit-")
    env = dict(os.environ, PIER_LOG=panel_log("warn"))
    subprocess.run([binary, "--data-dir", data_dir, "admin", "create", "--email", EMAIL, "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, env=env, stdout=subprocess.DEVNULL)
    token = subprocess.run([binary, "--data-dir", data_dir, "token", "create", "--email", EMAIL,
                            "--name", "bench", "--scope", "write"],
                           capture_output=True, text=True, check=True, env=env).stdout.strip()
    port = free_port()
    cmd = [binary, "--data-dir", data_dir, "serve", "--listen", f"127.0.0.1:{port}", "--no-proxy",
           "--site-root", site]
    cmd += extra
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 20
    while not http_200(port, path="/healthz"):
        if time.time() > deadline or proc.poll() is not None:
            raise SystemExit("pier did not start")
        time.sleep(0.1)
    return proc, port, token, data_dir


def load(port, token, seconds, path, script=None):
    cmd = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99, int(errors.group(1)) if errors else 0


def main():
    ap = argparse.ArgumentParser()
    add_build_options(ap)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing (apt-get install wrk)")

    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "PUT"\n'
                 f"wrk.body = '{BODY}'\n"
                 'wrk.headers["Content-Type"] = "application/json"\n')
    script.close()
    panels = {}
    metrics_port = free_port()
    write_path = "/api/v1/registries/registry.example.com"
    try:
        panels["as shipped"] = start(args.bin, args.site, [])
        panels["--no-audit-log"] = start(args.bin, args.site, ["--no-audit-log"])
        panels["--metrics-listen"] = start(args.bin, args.site,
                                           ["--metrics-listen", f"127.0.0.1:{metrics_port}"])
        loads = {"write": (write_path, script.name), "read": ("/api/v1/tokens", None)}
        results = {(name, kind): [] for name in panels for kind in loads}
        for _ in range(args.rounds):
            for kind, (path, lua) in loads.items():
                for name, (_, port, token, _) in panels.items():
                    results[(name, kind)].append(load(port, token, args.seconds, path, lua))

        print("Audit log and metrics benchmark (127.0.0.1, wrk -t2 -c8, "
              f"{args.rounds} alternating rounds of {args.seconds} s, median round)")
        medians = {}
        for kind, (path, _) in loads.items():
            method = "PUT" if kind == "write" else "GET"
            print(f"  {method} {path}")
            for name in panels:
                rounds = results[(name, kind)]
                rps = statistics.median(r[0] for r in rounds)
                medians[(name, kind)] = rps
                p99s = ", ".join(r[1] for r in rounds)
                errors = sum(r[2] for r in rounds)
                print(f"    {name:18} {rps:9.1f} req/s   p99 per round: {p99s}   non-2xx: {errors}")
        shipped, off = medians[("as shipped", "write")], medians[("--no-audit-log", "write")]
        print(f"  cost of the audit log on writes: {(off - shipped) / off * 100:+.1f} % (goal: under 5 %)")
        for kind in loads:
            base, on = medians[("as shipped", kind)], medians[("--metrics-listen", kind)]
            print(f"  cost of the request metrics on {kind}s: {(base - on) / base * 100:+.1f} % (goal: under 5 %)")
        t0 = time.time()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"  one scrape of /metrics: {(time.time() - t0) * 1000:.1f} ms, {len(text)} bytes, {series} series")

        _, _, _, data_dir = panels["as shipped"]
        db = sqlite3.connect(f"file:{data_dir}/pier.db?mode=ro", uri=True)
        entries = db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        stat = db.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'audit_log%'").fetchone()
        db.close()
        if stat and stat[0]:
            print(f"  entries written: {entries}; the table and its indexes take {stat[0] / 1024 / 1024:.1f} MiB"
                  f" ({stat[0] / max(entries, 1):.0f} bytes per entry)")
        else:
            print(f"  entries written: {entries}")
    finally:
        for proc, _, _, data_dir in panels.values():
            stop_process(proc)
            shutil.rmtree(data_dir, ignore_errors=True)
        os.unlink(script.name)


if __name__ == "__main__":
    sys.exit(main())
