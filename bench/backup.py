#!/usr/bin/env python3
"""Backup benchmark, against a real `pier serve`, dockerd and restic (127.0.0.1 only):

An app with a volume holding --size-mib of data (half random bytes, half base64 text, as a mix of
incompressible and compressible data), then:
1. the first snapshot (`POST /apps/{name}/backups` until `done`): wall time, what restic added to
   the repository, how long the app was paused;
2. the same snapshot again, nothing changed (incremental): wall time, bytes added, pause;
3. again after --change-mib of the data changed: the same;
4. beside them, `tar | zstd -3` of the same directory (the volume as mounted for the app): time
   and output size, so the repository's size can be read against it;
5. a restore of the first snapshot into the app (read out, app stopped, files copied in,
   started): wall time, and how long the app's container was not running.
The repository's size on disk after each snapshot is read with `du`.

Needs `scripts/services.sh start`, then `source "$(scripts/services.sh env)"`; root (loop devices);
restic and zstd (scripts/setup.sh).

Usage: bench/backup.py [--bin target/release/pier] [--site target/site] [--size-mib 1024]
                       [--change-mib 64] [--timeout 900]
Everything it makes is removed at the end, even on failure: the panel (by pid), the containers,
networks and volumes labelled with its `pier.instance` id, the volumes' loop devices, its data
directory (repository included).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (BenchError, Panel, add_build_options, docker, ids, preflight,  # noqa: E402
                      remove_labelled, run, say)

EMAIL = "bench-backup@example.com"
APP = "bulk"


def mib(n):
    return f"{n / 1048576:8.1f} MiB"


def du_bytes(path):
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    return int(out.split()[0])


WORDS = ("GET POST PUT DELETE /api/v1/apps /api/v1/domains /login /static/app.css /healthz "
         "user=alice user=bob user=carol status=200 status=201 status=404 status=500 "
         "cache=hit cache=miss db=primary db=replica").split()


def write_text(path, size):
    """`size` bytes of log-like lines (timestamps, words, numbers): text that compresses about
    as well as real logs, the same every run."""
    import random
    rnd = random.Random(1)
    written = 0
    t = 1_700_000_000.0
    with open(path, "w") as f:
        while written < size:
            lines = []
            for _ in range(2000):
                t += rnd.random() / 10
                w = rnd.choices(WORDS, k=4)
                lines.append(f"{t:.3f} {w[0]} {w[1]} {w[2]} {w[3]} id={rnd.getrandbits(40):x} "
                             f"took={rnd.random() * 50:.2f}ms\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)


class Bench:
    def __init__(self, args):
        self.args = args
        self.panel = Panel(args, EMAIL, label="backup", data_prefix="pier-bench-backup-")
        self.rows = []
        self.notes = []

    def container(self):
        out = docker("ps", "-q", "--filter", f"label=pier.instance={self.panel.instance}",
                     "--filter", f"name=-{APP}-d", timeout=30)
        found = ids(out)
        if not found:
            raise BenchError("the app has no running container")
        return found[0]

    def exec(self, script, timeout=900):
        docker("exec", self.container(), "sh", "-c", script, timeout=timeout)

    def wait_running(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            a = self.panel.app(APP)
            if a["state"] == "running":
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{APP} not running after {timeout} s: {a['state']} "
                                 f"({a.get('last_error')})")
            time.sleep(0.2)

    def snapshot(self, label):
        t0 = time.monotonic()
        s = self.panel.api.expect("POST", f"/apps/{APP}/backups", status=(202,))
        sid = s["id"]
        deadline = t0 + self.args.timeout
        while True:
            s = self.panel.api.expect("GET", f"/apps/{APP}/backups/{sid}")
            if s["state"] in ("done", "failed"):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"snapshot {sid} not done after {self.args.timeout} s")
            time.sleep(0.1)
        wall = time.monotonic() - t0
        if s["state"] != "done":
            raise BenchError(f"snapshot {sid} failed: {s.get('reason')}")
        repo = du_bytes(os.path.join(self.panel.data_dir, "backups", "repo"))
        self.rows.append((label, wall, s["bytes"], s["added_bytes"], s["paused_ms"], repo))
        say(f"  {label}: {wall:.1f} s, read {mib(s['bytes'])}, added {mib(s['added_bytes'])}, "
            f"paused {s['paused_ms']} ms, repository {mib(repo)}")
        return sid

    def volume_mountpoint(self):
        for name in ids(docker("volume", "ls", "-q", "--filter",
                               f"label=pier.instance={self.panel.instance}", timeout=30)):
            return docker("volume", "inspect", "--format", "{{.Mountpoint}}", name,
                          timeout=30).strip()
        raise BenchError("the app's volume is not listed")

    def tar_zstd(self):
        path = self.volume_mountpoint()
        t0 = time.monotonic()
        p = subprocess.run(f"tar -C '{path}' -cf - . | zstd -3 -T0 -q -c | wc -c", shell=True,
                           capture_output=True, text=True, check=True, timeout=self.args.timeout)
        self.tar = (time.monotonic() - t0, int(p.stdout.strip()))
        say(f"  tar | zstd -3: {self.tar[0]:.1f} s, {mib(self.tar[1])}")

    def running(self, cid):
        r = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", cid],
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() == "true"

    def restore(self, sid):
        cid = self.container()
        t0 = time.monotonic()
        r = self.panel.api.expect("POST", f"/apps/{APP}/backups/{sid}/restore", status=(202,))
        rid = r["id"]
        deadline = t0 + self.args.timeout
        # How long the app's container was not running: the restore reads the snapshot out
        # first and stops the app only to copy the files in.
        self.down, down_since = 0.0, None
        while True:
            r = self.panel.api.expect("GET", f"/apps/{APP}/restores/{rid}")
            up = self.running(cid)
            now = time.monotonic()
            if not up and down_since is None:
                down_since = now
            elif up and down_since is not None:
                self.down += now - down_since
                down_since = None
            if r["state"] in ("done", "failed"):
                break
            if now > deadline:
                raise BenchError(f"restore {rid} not done after {self.args.timeout} s")
            time.sleep(0.05)
        while down_since is not None and time.monotonic() < deadline:
            if self.running(cid):
                self.down += time.monotonic() - down_since
                down_since = None
            time.sleep(0.05)
        if r["state"] != "done":
            raise BenchError(f"restore failed: {r.get('reason')}")
        self.restored = time.monotonic() - t0
        self.wait_running(120)
        self.back = time.monotonic() - t0
        say(f"  restore: {self.restored:.1f} s (serving again after {self.back:.1f} s; "
            f"the app was down {self.down:.1f} s)")

    def steps(self):
        a = self.args
        self.panel.start(["--no-proxy", "--allowed-registries", self.panel.registry])
        self.panel.login_registry()
        self.panel.create_app(APP, volumes=[{"name": "bulk-data", "path": "/data",
                                             "size_mb": a.size_mib + a.size_mib // 4 + 64}],
                               memory_mb=128, cpus="1")
        self.wait_running(180)
        half = a.size_mib // 2
        say(f"  writing {a.size_mib} MiB into the volume ({half} random, {a.size_mib - half} "
            f"of log-like text)")
        self.exec(f"dd if=/dev/urandom of=/data/random.bin bs=1048576 count={half} 2>/dev/null")
        write_text(os.path.join(self.volume_mountpoint(), "app.log"), (a.size_mib - half) << 20)
        self.exec("sync")
        first = self.snapshot("first snapshot")
        self.snapshot("again, nothing changed")
        say(f"  changing {a.change_mib} MiB")
        self.exec(f"dd if=/dev/urandom of=/data/random.bin bs=1048576 count={a.change_mib} "
                  f"seek=7 conv=notrunc 2>/dev/null && sync")
        self.snapshot(f"again, {a.change_mib} MiB changed")
        self.tar_zstd()
        self.restore(first)

    def finish(self, failed):
        notes = self.panel.stop(failed)
        if self.panel.instance:
            try:
                notes.append(remove_labelled([f"pier.instance={self.panel.instance}"], volumes=True))
            except Exception as e:  # noqa: BLE001
                notes.append(f"docker clean-up failed: {e}")
        vdir = os.path.join(self.panel.data_dir or "/nonexistent", "volumes")
        if os.path.isdir(vdir):
            for f in os.listdir(vdir):
                if f.endswith(".img"):
                    r = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", os.path.join(vdir, f)],
                                       capture_output=True, text=True, timeout=30)
                    for dev in ids(r.stdout):
                        subprocess.run(["losetup", "-d", dev], capture_output=True, timeout=30)
        if self.panel.data_dir:
            shutil.rmtree(self.panel.data_dir, ignore_errors=True)
        if notes:
            say("  clean-up: " + "; ".join(notes))
        if self.rows:
            say(f"Summary (backup benchmark, {self.args.size_mib} MiB volume)")
            say(f"  {'':<28} {'wall':>8} {'read':>12} {'added':>12} {'paused':>9} {'repository':>12}")
            for label, wall, read, added, paused, repo in self.rows:
                say(f"  {label:<28} {wall:7.1f}s {mib(read)} {mib(added)} {paused:7} ms {mib(repo)}")
            if getattr(self, "tar", None):
                t, size = self.tar
                repo = self.rows[0][5]
                say(f"  {'tar | zstd -3':<28} {t:7.1f}s {'':>12} {mib(size)}")
                say(f"  repository after the first snapshot / tar|zstd: {repo / size:.2f}")
            if getattr(self, "restored", None):
                say(f"  restore of the first snapshot: {self.restored:.1f} s "
                    f"(app serving again after {self.back:.1f} s, down for {self.down:.1f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_options(ap)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--change-mib", type=int, default=64)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per step (default 900)")
    args = ap.parse_args()
    if args.size_mib < 2 or not 0 < args.change_mib < args.size_mib // 2:
        ap.error("--size-mib >= 2 and 0 < --change-mib < size/2")
    preflight("backup.py", args, {t: f"{t} is missing (scripts/setup.sh)"
                                  for t in ("docker", "restic", "zstd", "losetup", "du")})
    bench = Bench(args)
    return run("backup.py", f"Pier backup benchmark (127.0.0.1; binary {args.bin})",
               bench.steps, bench.finish)


if __name__ == "__main__":
    sys.exit(main())
