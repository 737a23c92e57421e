#!/usr/bin/env python3
"""Tag following benchmark, against a real `pier serve`, dockerd and the local registry
(127.0.0.1 only): the time from a tag push to the new deployment serving, with the webhook.

An app follows `pier-test/follow-bench-<instance>:live`. Each round the bench moves the tag
(pushes hello:1's or hello:2's manifest under it, blobs mounted as `docker push` uploads them),
calls the app's webhook, and waits until the app's port answers with the other image's text.
Prints per round: the webhook's answer (the registry asked, the deployment queued) and the time
until the new deployment serves; median/min/max over --rounds.

Needs `scripts/services.sh start` and `source "$(scripts/services.sh env)"`; build first
(`cargo leptos build --release`; bench/run.sh does all). Removes what it made: the panel (by
pid), its containers and networks (by label), and the manifests it pushed.

Usage: bench/tags.py [--bin target/release/pier] [--site target/site] [--rounds 5]
"""
import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (POLL, BenchError, Panel, add_build_options, preflight,  # noqa: E402
                      remove_labelled, run)

EMAIL = "bench-tags@example.com"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
TEXT = {"1": "hello from pier", "2": "hello from pier v2"}


def registry(method, path, headers=None, body=None):
    """The registry's HTTP API with the test login: (status, headers, body)."""
    auth = base64.b64encode(f"{os.environ['PIER_TEST_REGISTRY_USER']}:"
                            f"{os.environ['PIER_TEST_REGISTRY_PASSWORD']}".encode()).decode()
    req = urllib.request.Request(f"http://{os.environ['PIER_TEST_REGISTRY']}{path}", data=body,
                                 method=method, headers={"Authorization": f"Basic {auth}", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def push_as(src_tag, repo, tag):
    """Points repo:tag at pier-test/hello:src_tag; its digest."""
    status, headers, manifest = registry("GET", f"/v2/pier-test/hello/manifests/{src_tag}", {"Accept": ACCEPT})
    if status != 200:
        raise BenchError(f"hello:{src_tag}: {status}")
    m = json.loads(manifest)
    for digest in [m["config"]["digest"], *(l["digest"] for l in m["layers"])]:
        status, _, body = registry("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from=pier-test/hello",
                                   {"Content-Length": "0"}, b"")
        if status != 201:
            raise BenchError(f"mounting {digest}: {status} {body[:200]!r}")
    status, _, body = registry("PUT", f"/v2/{repo}/manifests/{tag}",
                               {"Content-Type": headers["Content-Type"]}, manifest)
    if status != 201:
        raise BenchError(f"pushing {repo}:{tag}: {status} {body[:200]!r}")
    return headers["Docker-Content-Digest"]


def answer(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/")
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    except (OSError, http.client.HTTPException):
        return 0, ""


def main():
    ap = argparse.ArgumentParser()
    add_build_options(ap)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    preflight("bench/tags.py", args, {})
    panel = Panel(args, EMAIL, data_prefix="pier-bench-tags-", token_name="bench-tags",
                  env={"PIER_ALLOWED_REGISTRIES": os.environ["PIER_TEST_REGISTRY"]})
    pushed = {"repo": None, "digests": set()}

    def wait_serving(name, text, deadline):
        while True:
            app = panel.app(name)
            port = app.get("host_port")
            if port and answer(port) == (200, text):
                return app
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not serve {text!r} in time (state {app['state']})")
            time.sleep(POLL)

    def steps():
        panel.start(("--no-proxy",))
        panel.login_registry()
        repo = f"pier-test/follow-bench-{panel.instance[:8]}"
        pushed["repo"] = repo
        pushed["digests"].add(push_as("1", repo, "live"))
        image = f"{panel.registry}/{repo}:live"
        panel.api.expect("POST", "/apps", {"name": "follow", "image": image, "port": 8080,
                                           "memory_mb": 32, "cpus": "0.1"}, status=(201,))
        wait_serving("follow", TEXT["1"], time.monotonic() + 120)
        u = panel.api.expect("PUT", "/apps/follow/image-updates", {"follow": True})
        hook = u["webhook_url"][u["webhook_url"].index("/api/v1") + len("/api/v1"):]
        answered, served = [], []
        now_tag = "1"
        for i in range(args.rounds):
            now_tag = "2" if now_tag == "1" else "1"
            pushed["digests"].add(push_as(now_tag, repo, "live"))
            t0 = time.monotonic()
            r = panel.api.expect("POST", hook, status=(202,))
            answered.append(time.monotonic() - t0)
            if r.get("deployment") is None:
                raise BenchError(f"round {i + 1}: the webhook deployed nothing: {r}")
            wait_serving("follow", TEXT[now_tag], t0 + 120)
            served.append(time.monotonic() - t0)
            print(f"  round {i + 1}: hello:{now_tag} pushed → webhook answered in {answered[-1] * 1000:.0f} ms"
                  f" (deployment #{r['deployment']}), serving after {served[-1]:.2f} s", flush=True)
        print(f"  webhook answered (registry asked, deployment queued): median {statistics.median(answered) * 1000:.0f} ms")
        print(f"  tag push → new deployment serving: median {statistics.median(served):.2f} s, "
              f"min {min(served):.2f} s, max {max(served):.2f} s ({args.rounds} rounds)")

    def finish(failed):
        panel.stop(failed)
        if panel.instance:
            remove_labelled([f"pier.instance={panel.instance}"])
        for d in pushed["digests"]:
            registry("DELETE", f"/v2/{pushed['repo']}/manifests/{d}")

    return run("bench/tags.py", "Tag following benchmark (127.0.0.1, release build)", steps, finish)


if __name__ == "__main__":
    sys.exit(main())
