"""What the benchmarks share (bench/apps.py, bench/volumes.py, bench/routing.py, bench/panel.py):
small utilities, the docker CLI, the panel's REST API, one `pier serve` with its own data dir,
admin and token, and the clean-up of what a panel (or the bench itself) labelled.

Only 127.0.0.1 and the local dockerd are ever addressed. The scripts import it from their own
directory, so each stays runnable as `python3 bench/X.py` from the repository root.
"""
import http.client
import json
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
import urllib.parse

PASSWORD = "bench password 1234"
POLL = 0.02  # seconds between polls while timing a deploy
REGISTRY_VARS = ("PIER_TEST_REGISTRY", "PIER_TEST_REGISTRY_USER", "PIER_TEST_REGISTRY_PASSWORD")


class BenchError(Exception):
    pass


def say(msg):
    print(msg, flush=True)


_PORT_SPAN = 12000
_next_port = [None]


def free_port():
    """A loopback port nothing listens on, below the kernel's ephemeral range: a port bound at 0
    comes from that range, where wrk's and the panel's outgoing connections take their source
    ports, and one can take it before the server binds it ("Address already in use"). As
    test-support's `ports::free_port` does for the tests."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            top = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        top = 32768
    if top <= _PORT_SPAN + 1024:
        top = 32768
    if _next_port[0] is None:
        _next_port[0] = os.getpid() * 7919 % _PORT_SPAN
    for _ in range(_PORT_SPAN):
        port = top - _PORT_SPAN + _next_port[0] % _PORT_SPAN
        _next_port[0] += 1
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free loopback port below {top}")


def panel_log(default):
    """The log filter a bench's panel runs with: `default`, or PIER_BENCH_LOG when set
    (scripts/pgo.sh records the code layout with `info`, the level a panel runs at by default)."""
    return os.environ.get("PIER_BENCH_LOG", default)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS in /proc/%d/status" % pid)


def rss_breakdown(pid):
    """Where a process's resident memory is, in KiB, from /proc/PID/smaps: the executable's
    own pages (its code, read-only and initialised data, as far as touched), shared libraries,
    the heap and other anonymous memory, thread stacks, and the rest."""
    exe = os.path.realpath(f"/proc/{pid}/exe")
    parts = {"executable": 0, "libraries": 0, "anonymous": 0, "stacks": 0, "other": 0}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                if path == exe or path.startswith(exe + " "):
                    name = "executable"
                elif path.startswith("/"):
                    name = "libraries"
                elif path.startswith("[stack"):
                    name = "stacks"
                elif path in ("", "[heap]"):
                    name = "anonymous"
                else:
                    name = "other"
            elif head[0] == "Rss:" and name:
                parts[name] += int(head[1])
    return parts


def breakdown_text(parts):
    return ", ".join(f"{k} {v / 1024:.1f}" for k, v in parts.items() if v) + " MiB"


def stats_row(label, values, unit="ms", scale=1000.0, width=50):
    if not values:
        return f"  {label:<{width}} (no runs)"
    v = [x * scale for x in values]
    return (f"  {label:<{width}} median {statistics.median(v):7.0f} {unit}   min {min(v):7.0f}"
            f"   max {max(v):7.0f}")


def add_build_options(ap):
    """--bin and --site, defaulting to the release build in this checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bin", default=os.path.join(root, "target/release/pier"))
    ap.add_argument("--site", default=os.path.join(root, "target/site"))


def wrk_latency(url, header, seconds=10, timeout=None):
    """A bounded wrk load (2 threads, 8 connections, `seconds`) with one header: p50, p99,
    requests/s (as wrk prints them) and the count of non-2xx/3xx answers."""
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-H", header, url],
        capture_output=True, text=True, check=True, timeout=timeout or seconds + 30,
    ).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    rps = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return p50, p99, rps, errors.group(1) if errors else 0


# ----- docker ------------------------------------------------------------------------------------


def docker(*args, timeout=60, check=True, env=None, input=None):
    """Runs the docker CLI (env picks the engine); its stdout, stripped."""
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


def remove_labelled(labels, env=None, volumes=False, timeout=300):
    """Removes the containers, then (with volumes) the volumes, then the networks that carry any
    of `labels` (each "key=value"); a note on what was removed. timeout: for the containers."""
    gone = []
    for label in labels:
        gone += ids(docker("ps", "-aq", "--filter", f"label={label}", env=env, timeout=30))
    gone = sorted(set(gone))
    if gone:
        docker("rm", "-f", *gone, env=env, timeout=timeout, check=False)
    vols = []
    if volumes:
        for label in labels:
            vols += ids(docker("volume", "ls", "-q", "--filter", f"label={label}", env=env, timeout=30))
        if vols:
            docker("volume", "rm", "-f", *vols, env=env, timeout=60, check=False)
    nets = []
    for label in labels:
        found = ids(docker("network", "ls", "-q", "--filter", f"label={label}", env=env, timeout=30))
        if found:
            docker("network", "rm", *found, env=env, timeout=60, check=False)
        nets += found
    return (f"removed {len(gone)} leftover containers, "
            + (f"{len(vols)} volumes, " if volumes else "") + f"{len(nets)} networks")


# ----- processes ---------------------------------------------------------------------------------


def stop_process(proc, grace=15):
    """SIGTERM, then SIGKILL after `grace` seconds; True when it took the SIGKILL."""
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
        return True
    return False


def stop_haproxy(data_dir):
    """HAProxy outlives the panel by design: stops the one it started, by its pid file. A note,
    or None."""
    pidfile = os.path.join(data_dir or "/nonexistent", "haproxy", "haproxy.pid")
    if os.path.exists(pidfile):
        try:
            pid = int(open(pidfile).read().strip())
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "haproxy":
                    os.kill(pid, signal.SIGTERM)
                    return f"haproxy {pid} stopped"
        except (OSError, ValueError):
            pass
    return None


# ----- HTTP --------------------------------------------------------------------------------------


def settled_rss(pid, timeout=15.0):
    """Resident KiB once start-up is behind the panel. Start-up's freed memory goes back to the
    system a second or two after it is freed (jemalloc's decay): read from /healthz on, a panel
    alone had 25.9, 21.2 and then 18.1 MiB a second apart. So: two seconds, then a reading every
    second until two in a row are within 256 KiB."""
    time.sleep(2)
    last = rss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_kib(pid)
        if abs(now - last) <= 256:
            return now
        last = now
    return last


def http_200(port, timeout=1.0, path="/"):
    """True when 127.0.0.1:port answers GET path with 200 (any failure is "not yet")."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        c.close()


class Api:
    """The panel's REST API with a bearer token; GETs reuse one keep-alive connection.
    wrap_errors: a panel that does not answer is a BenchError in expect(), not the OSError."""

    def __init__(self, port, token, wrap_errors=False):
        self.port = port
        self.token = token
        self.wrap_errors = wrap_errors
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
        try:
            got, data = self.call(method, path, body, timeout)
        except (OSError, http.client.HTTPException) as e:
            if not self.wrap_errors:
                raise
            raise BenchError(f"{method} /api/v1{path}: the panel did not answer ({e})")
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


class Browser:
    """A cookie jar on one keep-alive connection, like a browser tab (the session, and a
    visitor's CSRF cookie)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.jar = {}

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, value = v.split(";", 1)[0].partition("=")
                self.jar[name] = value
        return r.status, data

    def sign_in(self, email, password=PASSWORD):
        status, data = self.request("GET", "/rpc/session", headers={"Accept": "application/json"})
        if status != 200:
            raise BenchError(f"GET /rpc/session answered {status}: {data[:200]!r}")
        csrf = json.loads(data)["csrf"]
        form = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": csrf})
        status, data = self.request(
            "POST", "/rpc/login", body=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        if status != 200:
            raise BenchError(f"signing in as {email} answered {status}: {data[:200]!r}")

    def cookie_header(self):
        return "Cookie: " + "; ".join(f"{k}={v}" for k, v in self.jar.items())


# ----- one panel ---------------------------------------------------------------------------------


class Panel:
    """One `pier serve` on 127.0.0.1 with a data dir of its own, an admin (`email`) and an API
    token of theirs, on one Docker engine (docker_env: the docker CLI's environment, None for the
    project's dockerd; env: added to the panel's environment).

    label names the panel in messages ("pier serve (label) ..."); log_on_exit adds the end of its
    log to the error when `pier serve` exits while starting; wrap_errors goes to Api."""

    def __init__(self, args, email, *, label=None, env=None, docker_env=None,
                 data_prefix="pier-bench-", token_name="bench", token_scope="write",
                 health_timeout=60, log_on_exit=False, wrap_errors=False):
        self.args = args
        self.email = email
        self.label = label
        # Bench domains are names on a mock DNS: no ownership proof.
        self.env = dict(os.environ, PIER_LOG=panel_log("warn"), PIER_NO_DOMAIN_PROOF="true")
        self.env.update(env or {})
        self.docker_env = docker_env
        self.data_prefix = data_prefix
        self.token_name = token_name
        self.token_scope = token_scope
        self.health_timeout = health_timeout
        self.log_on_exit = log_on_exit
        self.wrap_errors = wrap_errors
        self.registry = os.environ["PIER_TEST_REGISTRY"]
        self.image = f"{self.registry}/pier-test/hello:1"
        self.data_dir = None
        self.proc = None
        self.instance = None
        self.api = None
        self.log_path = None

    # ----- start -----------------------------------------------------------------------------

    def start(self, serve_args=()):
        """Creates the admin and the token, starts `pier serve` (serve_args before --site-root)
        and waits for /healthz."""
        self.data_dir = tempfile.mkdtemp(prefix=self.data_prefix)
        pier = [self.args.bin, "--data-dir", self.data_dir]
        subprocess.run([*pier, "admin", "create", "--email", self.email, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, env=self.env,
                       stdout=subprocess.DEVNULL, timeout=60)
        token = subprocess.run([*pier, "token", "create", "--email", self.email, "--name",
                                self.token_name, "--scope", self.token_scope],
                               capture_output=True, text=True, check=True, env=self.env,
                               timeout=60).stdout.strip()
        self.instance = self.read_instance()
        port = free_port()
        self.log_path = os.path.join(self.data_dir, "panel.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([*pier, "serve", "--listen", f"127.0.0.1:{port}",
                                          *serve_args, "--site-root", self.args.site],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        what = "pier serve" if self.label is None else f"pier serve ({self.label})"
        deadline = time.monotonic() + self.health_timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{what} exited with {self.proc.returncode}"
                                 f"{self.log_tail() if self.log_on_exit else ''}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not answer /healthz within {self.health_timeout} s")
            time.sleep(0.1)
        self.api = Api(port, token, wrap_errors=self.wrap_errors)

    def read_instance(self):
        db = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'pier.db')}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT id FROM instance").fetchone()
        finally:
            db.close()
        if not row or not re.fullmatch(r"[0-9a-zA-Z_-]+", str(row[0])):
            raise BenchError(f"unexpected instance id in pier.db: {row}")
        return str(row[0])

    def login_registry(self):
        """Saves the test registry's login in the panel."""
        self.api.expect("PUT", f"/registries/{self.registry}",
                        {"username": os.environ["PIER_TEST_REGISTRY_USER"],
                         "password": os.environ["PIER_TEST_REGISTRY_PASSWORD"]})

    # ----- apps ------------------------------------------------------------------------------

    def docker(self, *args, **kw):
        return docker(*args, env=self.docker_env, **kw)

    def create_app(self, name, volumes=None, health_path=None, memory_mb=32, cpus="0.1"):
        body = {"name": name, "image": self.image, "port": 8080, "memory_mb": memory_mb, "cpus": cpus}
        if health_path:
            body["health_path"] = health_path
        if volumes:
            body["volumes"] = volumes
        return self.api.expect("POST", "/apps", body, status=(201,))

    def app(self, name):
        return self.api.expect("GET", f"/apps/{name}")

    def deploy(self, name, timeout):
        """Deploys a 32 MiB / 0.1 CPU app: seconds from POST /apps until its loopback port first
        answers 200, and until the panel showed that host port. Asks once, with `?wait=`, as a
        deploy script does (polling only if the wait ran out or the answer lacks the port)."""
        t0 = time.monotonic()
        self.create_app(name)
        deadline = t0 + timeout
        wait = max(1, min(60, int(timeout)))
        app = self.api.expect("GET", f"/apps/{name}?wait={wait}", timeout=wait + 10)
        while True:
            if app.get("host_port"):
                port = app["host_port"]
                break
            if app["state"] == "failed":
                raise BenchError(f"app {name} failed to deploy: {app.get('last_error')}")
            if time.monotonic() > deadline:
                raise BenchError(f"app {name} showed no host_port within {timeout} s "
                                 f"(state {app['state']}, last error: {app.get('last_error')})")
            time.sleep(POLL)
            app = self.app(name)
        shown = time.monotonic() - t0
        while not http_200(port):
            if time.monotonic() > deadline:
                raise BenchError(f"app {name} on 127.0.0.1:{port} did not answer 200 within {timeout} s")
            time.sleep(POLL)
        return time.monotonic() - t0, shown

    # ----- stop ------------------------------------------------------------------------------

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                tail = f.readlines()[-n:]
        except (OSError, TypeError):
            return ""
        return ("\n--- last lines of the panel's log ---\n" + "".join(tail)) if tail else ""

    def log_size(self):
        return os.path.getsize(self.log_path)

    def log_text(self, since=0):
        """The panel's log from byte `since` on, without its colours."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode(errors="replace"))

    def reconcile_passes(self, since):
        """Milliseconds of each reconcile pass the panel logged after byte `since` of its log
        (at `pier::engine=debug`)."""
        return [int(m) / 1000
                for m in re.findall(r"reconcile pass elapsed_us=(\d+)", self.log_text(since))]

    def stop(self, failed):
        """Stops the panel and the HAProxy it started; after a failure prints the end of its
        log on stderr; reads the instance id if the start did not get to it (for the clean-up
        by label). Notes on what was done."""
        notes = []
        stop_process(self.proc)
        note = stop_haproxy(self.data_dir)
        if note:
            notes.append(note)
        if failed and self.log_path and os.path.exists(self.log_path):
            tail = self.log_tail(30)
            if tail:
                if self.label is None:
                    print(tail[1:], file=sys.stderr, end="")
                else:
                    print(f"--- {self.label} panel ---{tail}", file=sys.stderr, end="")
        if self.instance is None and self.data_dir:
            try:
                self.instance = self.read_instance()
            except Exception:  # noqa: BLE001
                pass
        return notes


# ----- a bench's main ----------------------------------------------------------------------------


def preflight(prog, args, tools):
    """Exits with a message unless the test registry's variables are set, the build is there,
    each of `tools` ({command: what to say when it is missing}) is installed and dockerd answers."""
    missing = [v for v in REGISTRY_VARS if not os.environ.get(v)]
    if missing:
        sys.exit(f"{prog}: {', '.join(missing)} not set: run scripts/services.sh start first, then "
                 f"source \"$(scripts/services.sh env)\"")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{prog}: no pier binary at {args.bin} (cargo leptos build --release)")
    if not os.path.isdir(args.site):
        sys.exit(f"{prog}: no site at {args.site} (cargo leptos build --release)")
    for tool, message in tools.items():
        if shutil.which(tool) is None:
            sys.exit(f"{prog}: {message}")
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except BenchError as e:
        sys.exit(f"{prog}: dockerd does not answer ({e}): run scripts/services.sh start first")


def run(prog, title, steps, finish):
    """Says the title and runs steps(); a BenchError or a failed command ends them with a
    message on stderr. finish(failed) runs in any case (the clean-up), then the total run time
    is said. The exit status."""
    # SIGTERM (a trap, a CI timeout) ends the run through the clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed = True
    t_start = time.monotonic()
    try:
        say(title)
        steps()
        failed = False
    except BenchError as e:
        print(f"{prog}: {e}", file=sys.stderr, flush=True)
    except subprocess.CalledProcessError as e:
        print(f"{prog}: {' '.join(map(str, e.cmd[:1] + e.cmd[3:5]))} failed ({e.returncode}): "
              f"{(e.stderr or '').strip()}", file=sys.stderr, flush=True)
    finally:
        finish(failed)
        say(f"  total run time: {time.monotonic() - t_start:.0f} s")
    return 1 if failed else 0
