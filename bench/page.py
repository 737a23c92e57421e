#!/usr/bin/env python3
"""Page weight and time to interactive: what a browser downloads on a first and a second visit.

The pages are lazy routes in five chunks of wasm (app/src/routes.rs): a page needs the main wasm,
the chunk of its group and the small chunks that group shares with others.

1. Over HTTP (127.0.0.1): every file under /pkg that the sign-in page names (its script, wasm and
   style, and the preload links of its chunks), asked for as a browser asks (`Accept-Encoding:
   gzip, deflate, br, zstd`): its size on disk, the bytes sent, the encoding and the cache
   lifetime. The sum sent is held to the budget (400 KB): the bench exits non-zero above it, or
   when a file is sent uncompressed or without an immutable cache lifetime. The same sums for a
   page of each other group, signed in, with an empty cache, are printed beside it and held to
   the same budget.
2. In headless chromium (chromedriver, its W3C WebDriver API on loopback): a first visit to the
   sign-in page with an empty cache (its bytes also held to the budget), then signing in (the
   apps page's chunk arrives), and the apps page loaded again as the second visit, which must
   download nothing. From the browser's own resource timing: bytes transferred per file (0 = from
   cache) and the time from navigation until the page is hydrated (`<body data-hydrated>`, set
   once hydration, chunk included, is done), held to 1 s.

Usage: bench/page.py [--bin target/release/pier] [--site target/site]
Build first: `cargo leptos build --release --precompress --split` (bench/run.sh does, through
scripts/release.sh).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import PASSWORD, Browser, add_build_options, free_port, http_200, panel_log  # noqa: E402

EMAIL = "page@example.com"
BUDGET = 400_000  # bytes a first visit may download (wasm + JS + CSS, compressed)
INTERACTIVE_MS = 1000
ACCEPT = "gzip, deflate, br, zstd"


# A page of each chunk group, signed in (an app that does not exist still needs the app page's
# chunk to say so, with a 404).
SIGNED_IN_PAGES = [("/", "apps, volumes, domains…"), ("/apps/none", "one app"),
                   ("/account", "account, two factors, API"), ("/admin/users", "admin")]


def fetch(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def data_section_bytes(wasm):
    """The size of a wasm module's data section (its read-only data and initialised statics)."""
    def leb(i):
        value = shift = 0
        while True:
            byte = wasm[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i
    i, total = 8, 0
    while i < len(wasm):
        section = wasm[i]
        size, i = leb(i + 1)
        if section == 11:
            total += size
        i += size
    return total


def page_files(port, page, failures, show):
    """The bytes on disk and sent (compressed, as a browser asks) of every /pkg file a page's
    HTML names, and the data section bytes of each chunk among them (not the main wasm); a
    file sent uncompressed or without an immutable lifetime is a failure."""
    names = sorted(set(re.findall(rb"/pkg/[A-Za-z0-9._-]+", page)))
    total_raw = total_sent = 0
    chunk_data = []
    for name in (n.decode() for n in names):
        _, _, raw = fetch(port, name)
        st, h, sent = fetch(port, name, {"Accept-Encoding": ACCEPT})
        if st != 200:
            failures.append(f"{name}: {st}")
            continue
        enc = h.get("content-encoding", "-")
        cache = h.get("cache-control", "-")
        total_raw += len(raw)
        total_sent += len(sent)
        if name.endswith(".wasm") and not name.startswith("/pkg/pier."):
            chunk_data.append(data_section_bytes(raw))
        if show:
            print(f"  {name:58} {len(raw):10,} {len(sent):10,}  {enc:8}  {cache}")
        if enc == "-":
            failures.append(f"{name} is sent uncompressed")
        if "immutable" not in cache:
            failures.append(f"{name} is not cached as immutable")
    return total_raw, total_sent, chunk_data


class WebDriver:
    """Just enough of the W3C WebDriver protocol, spoken to chromedriver on loopback."""

    def __init__(self, port, profile):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-sync",
                # No lookup ever leaves the machine: only 127.0.0.1 is reachable.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ]},
        }}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = json.loads(r.read() or b"{}")
        if r.status != 200:
            raise RuntimeError(f"webdriver {method} {path}: {r.status} {data}")
        return data.get("value")

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def script(self, js, *args):
        return self.s("POST", "/execute/sync", {"script": js, "args": list(args)})

    def hydrated_ms(self, timeout=20):
        """Milliseconds from navigation start until <body data-hydrated> (an upper bound: the
        attribute is looked for from here on)."""
        return self.s("POST", "/execute/async", {"script": """
            const done = arguments[arguments.length - 1];
            const check = () => document.body && document.body.dataset.hydrated === 'true';
            if (check()) return done(performance.now());
            const o = new MutationObserver(() => {
                if (check()) { o.disconnect(); done(performance.now()); }
            });
            o.observe(document.documentElement, {attributes: true, subtree: true});
            setTimeout(() => { o.disconnect(); done(null); }, %d);
        """ % (timeout * 1000), "args": []})

    def resources(self):
        return self.script("""
            return performance.getEntriesByType('resource')
              .filter(e => e.name.includes('/pkg/'))
              .map(e => ({name: new URL(e.name).pathname, transfer: e.transferSize,
                          encoded: e.encodedBodySize, decoded: e.decodedBodySize}));
        """)

    def element(self, css):
        return self.s("POST", "/element", {"using": "css selector", "value": css})

    def type(self, css, text):
        el = self.element(css)
        eid = next(iter(el.values()))
        self.s("POST", f"/element/{eid}/value", {"text": text})

    def click(self, css):
        el = self.element(css)
        eid = next(iter(el.values()))
        self.s("POST", f"/element/{eid}/click", {})

    def quit(self):
        try:
            self.s("DELETE", "")
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def wait_until(what, timeout, check):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"page bench: {what} within {timeout} s: no")


def main():
    ap = argparse.ArgumentParser()
    add_build_options(ap)
    ap.add_argument("--budget", type=int, default=BUDGET)
    args = ap.parse_args()
    for tool in ("chromedriver", "chromium"):
        if not shutil.which(tool):
            raise SystemExit(f"page bench: {tool} is missing (scripts/setup.sh --test installs it)")

    data_dir = tempfile.mkdtemp(prefix="pier-bench-page-")
    profile = tempfile.mkdtemp(prefix="pier-bench-chromium-")
    env = dict(os.environ, PIER_LOG=panel_log("warn"))
    subprocess.run([args.bin, "--data-dir", data_dir, "admin", "create", "--email", EMAIL,
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, env=env,
                   stdout=subprocess.DEVNULL, timeout=60)
    port = free_port()
    panel = subprocess.Popen([args.bin, "--data-dir", data_dir, "serve", "--listen",
                              f"127.0.0.1:{port}", "--no-proxy", "--site-root", args.site], env=env)
    driver_port = free_port()
    driver = subprocess.Popen(["chromedriver", f"--port={driver_port}", "--allowed-ips=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    failures = []
    browser = None
    try:
        wait_until("pier answers /healthz", 30, lambda: http_200(port, path="/healthz"))
        wait_until("chromedriver answers", 30, lambda: http_200(driver_port, path="/status"))

        # 1. The files, as HTTP sends them.
        status, _, page = fetch(port, "/login")
        assert status == 200, status
        print(f"Page weight (127.0.0.1, {args.site})")
        print(f"  {'file':58} {'on disk':>10} {'sent':>10}  encoding  cache-control")
        total_raw, total_sent, chunk_data = page_files(port, page, failures, show=True)
        print(f"  {'total: a first visit to /login':58} {total_raw:10,} {total_sent:10,}  "
              f"(budget {args.budget:,})")
        if total_sent > args.budget:
            failures.append(f"a first visit sends {total_sent:,} bytes, over the budget of {args.budget:,}")
        tab = Browser(port)
        tab.sign_in(EMAIL)
        print("  The same for a first visit to a page of each other group, signed in:")
        for path, group in SIGNED_IN_PAGES:
            status, page = tab.request("GET", path)
            assert status in (200, 404), (path, status)
            raw, sent, data = page_files(port, page, failures, show=False)
            chunk_data += data
            over = "  over the budget" if sent > args.budget else ""
            print(f"    {path:14} {group:28} {raw:10,} raw {sent:10,} sent{over}")
            if over:
                failures.append(f"a first visit to {path} sends {sent:,} bytes, over the budget of {args.budget:,}")

        # wasm-split gives each chunk the read-only data only it uses, unless its re-packed data
        # comes out longer than the input's: then all of it stays in the main wasm (100+ KB).
        if chunk_data and not any(chunk_data):
            failures.append("no chunk holds data: wasm-split left all read-only data in the main "
                            "wasm (see SPLIT_DATA_SLACK in app/src/routes.rs)")

        # 2. In chromium: first visit, sign-in, second visit.
        browser = WebDriver(driver_port, profile)
        base = f"http://127.0.0.1:{port}"
        rows = []
        browser.go(f"{base}/login")
        first_ms = browser.hydrated_ms()
        first = browser.resources()
        rows.append(("first visit: /login", first_ms, first))
        browser.type("input[name=email]", EMAIL)
        browser.type("input[name=password]", PASSWORD)
        browser.click("button[type=submit]")
        wait_until("signed in", 20, lambda: "/login" not in browser.s("GET", "/url"))
        signed_in_ms = browser.hydrated_ms()
        rows.append(("signed in: / (apps)", signed_in_ms, browser.resources()))
        # A new page load (not the in-app navigation the sign-in made): the second visit.
        browser.go(f"{base}/")
        second_ms = browser.hydrated_ms()
        second = browser.resources()
        rows.append(("second visit: / (apps)", second_ms, second))
        print("Chromium (headless, loopback), from its resource timing")
        for label, ms, res in rows:
            sent = sum(r["transfer"] for r in res)
            shown = "never" if ms is None else f"{ms:,.0f} ms"
            print(f"  {label:26} hydrated after {shown:>8}   /pkg bytes transferred {sent:10,}")
            for r in res:
                print(f"      {r['name']:58} transferred {r['transfer']:10,}  (body {r['encoded']:,} of {r['decoded']:,})")
            if ms is None or ms > INTERACTIVE_MS:
                failures.append(f"{label}: not interactive within {INTERACTIVE_MS} ms ({shown})")
        first_sent = sum(r["transfer"] for r in first)
        if first_sent > args.budget:
            failures.append(f"chromium's first visit downloaded {first_sent:,} bytes, over the "
                            f"budget of {args.budget:,}")
        if not any(r["name"].endswith(".wasm") for r in second):
            failures.append("the second visit loaded no wasm (nothing to say about its cache)")
        elif sum(r["transfer"] for r in second) != 0:
            failures.append("the second visit downloaded /pkg files again")
    finally:
        if browser:
            browser.quit()
        os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(timeout=10)
        panel.send_signal(signal.SIGTERM)
        try:
            panel.wait(timeout=10)
        except subprocess.TimeoutExpired:
            panel.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(profile, ignore_errors=True)
    if failures:
        print("OVER BUDGET:\n  " + "\n  ".join(failures))
        return 1
    print("within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
