#!/usr/bin/env python3
"""Panel benchmark: resident memory idle and after 1,000 sign-ins, p50/p99 latency of the
server-rendered dashboard, and requests/s and p99 of an authenticated REST call (a bearer token,
`GET /api/v1/tokens`), each under a bounded load (wrk, 127.0.0.1 only).

Usage: bench/panel.py [--bin target/release/pier] [--site target/site] [--signins 1000]
Build first: `cargo leptos build --release` (bench/run.sh does both).
"""
import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (PASSWORD, Browser, add_build_options, free_port, panel_log, rss_kib,  # noqa: E402
                      settled_rss, wrk_latency)

EMAIL = "bench@example.com"


def main():
    ap = argparse.ArgumentParser()
    add_build_options(ap)
    ap.add_argument("--signins", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--settle", type=int, default=60,
                    help="seconds to wait after the sign-ins before measuring memory again")
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="pier-bench-")
    port = free_port()
    env = dict(os.environ, PIER_LOG=panel_log("warn"))
    subprocess.run([args.bin, "--data-dir", data_dir, "admin", "create", "--email", EMAIL, "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, env=env, stdout=subprocess.DEVNULL)
    token = subprocess.run([args.bin, "--data-dir", data_dir, "token", "create", "--email", EMAIL,
                            "--name", "bench", "--scope", "read"],
                           capture_output=True, text=True, check=True, env=env).stdout.strip()
    proc = subprocess.Popen([args.bin, "--data-dir", data_dir, "serve", "--listen", f"127.0.0.1:{port}",
                             "--no-proxy", "--site-root", args.site], env=env)
    try:
        deadline = time.time() + 20
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("pier did not start")
            time.sleep(0.1)
        # Start-up's freed memory goes back to the system a second or two later: read once it has.
        idle = settled_rss(proc.pid)

        # 1,000 sign-ins, two at a time (the machine has two cores).
        t0 = time.time()
        per_thread = [args.signins // 2, args.signins - args.signins // 2]

        def work(n):
            b = Browser(port)
            for _ in range(n):
                b.jar = {}
                b.sign_in(EMAIL)

        threads = [threading.Thread(target=work, args=(n,)) for n in per_thread]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        signin_secs = time.time() - t0
        after = rss_kib(proc.pid)
        # Does the memory the burst used go back to the system? (argon2 allocates 19 MiB per
        # hash; an allocator that keeps freed blocks stays at its peak.)
        settled = []
        settle_end = time.time() + args.settle
        while time.time() < settle_end:
            time.sleep(min(5, max(0, settle_end - time.time())))
            settled.append(rss_kib(proc.pid))
        after_burst = settled[-1] if settled else after

        # Dashboard under a bounded load.
        b = Browser(port)
        b.sign_in(EMAIL)
        status, body = b.request("GET", "/")
        assert status == 200 and b"Your apps" in body, status
        if not shutil.which("wrk"):
            raise SystemExit("wrk is missing (apt-get install wrk)")

        def load(path, header):
            return wrk_latency(f"http://127.0.0.1:{port}{path}", header, seconds=args.seconds)

        p50, p99, rps, errors = load("/", b.cookie_header())
        status, _ = Browser(port).request("GET", "/api/v1/tokens", headers={"Authorization": f"Bearer {token}"})
        assert status == 200, status
        a50, a99, arps, aerrors = load("/api/v1/tokens", f"Authorization: Bearer {token}")
        loaded = rss_kib(proc.pid)

        print("Pier panel benchmark (127.0.0.1, release build)")
        print(f"  resident memory idle after start, settled: {idle / 1024:6.1f} MiB")
        print(f"  resident memory at the end of {args.signins} sign-ins: {after / 1024:6.1f} MiB"
              f"   ({args.signins / signin_secs:.1f} sign-ins/s, argon2id m=19MiB t=2)")
        if len(settled) > 1:
            print(f"  resident memory 5 s after the sign-ins:    {settled[0] / 1024:8.1f} MiB"
                  "   (argon2 buffers are kept 2 s after their last use)")
        print(f"  resident memory {args.settle} s after the sign-ins:   {after_burst / 1024:8.1f} MiB"
              f"   ({(after_burst - idle) / 1024:+.1f} MiB from idle)")
        print(f"  dashboard (SSR) under wrk -t2 -c8 {args.seconds}s: p50 {p50}  p99 {p99}  {rps} req/s"
              f"  non-2xx: {errors}")
        print(f"  GET /api/v1/tokens (bearer) wrk -t2 -c8 {args.seconds}s: p50 {a50}  p99 {a99}  {arps} req/s"
              f"  non-2xx: {aerrors}")
        print(f"  resident memory after the load:          {loaded / 1024:8.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
