#!/usr/bin/env python3
"""A local Minitter cluster: three minitter-server instances on one PostgreSQL database
and one Redis, behind nginx (round-robin), started with one command and torn down after.

Usage:
  python3 bench/cluster.py up                  # start, print the URLs, wait for Ctrl-C
  python3 bench/cluster.py check               # run the multi-instance checks, exit 1 on failure
  python3 bench/cluster.py bench --duration 5  # wrk: nginx + 3 instances vs 1 instance,
                                               # and the Redis limiter vs the in-process one
Common options: --binary PATH (default $CARGO_TARGET_DIR/debug/minitter-server, built if
missing), --release (build and use the release binary), --postgres-url URL (a database to
connect to for CREATE/DROP DATABASE), --redis HOST:PORT, --keep (leave the temp dir).

What it starts, all in a temp directory that is removed afterwards:
- a fresh PostgreSQL database `minitter_cluster_<pid>` (dropped WITH (FORCE) at the end);
- a TCP relay (a thread in this process) in front of Redis, which the checks can `cut()`
  and `restore()` without touching the real Redis; every instance's MINITTER_REDIS_URL
  points at it (`bench` connects to Redis directly, so that the relay is not measured);
- three minitter-server processes sharing one data directory, so that the development
  JWT secret and admin token are the same on all of them (the first one creates them; the
  other two start once it is ready);
- nginx (installed from Debian if missing; never the system service) as a child process
  with its own config, pid file, logs and temp paths, round-robin over the three, retrying
  the next upstream on `error timeout` (idempotent requests only, as nginx does by default),
  `max_fails=1 fail_timeout=2s`, keepalive to the upstreams. Every response carries
  `X-Minitter-Upstream` (the instance that answered), so the checks can see the spread.
Everything is stopped in `finally`, also on errors and Ctrl-C.
"""

import argparse
import concurrent.futures
import ctypes
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PASSWORD = "correct horse battery staple"


def log(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text[-lines:])


def apt_install(package):
    """Installs a Debian package without starting any service it ships (a temporary
    policy-rc.d that forbids starting services, removed afterwards if we created it)."""
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        log("+ " + " ".join(cmd))
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(cmd, env=env, check=True)
    finally:
        if created:
            policy.unlink(missing_ok=True)


def find_nginx():
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        apt_install("nginx")
        path = shutil.which("nginx") or "/usr/sbin/nginx"
    return path


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies without cleaning up
    (PR_SET_PDEATHSIG). Children are only ever started from the main thread, because the
    signal follows the thread that forked, not the process."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, headers, body, seconds):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        return json.loads(self.body)

    def code(self):
        try:
            return self.json().get("code")
        except (ValueError, AttributeError):
            return None

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def call(port, method, path, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection; returns a Response (raises OSError on a
    connection failure or timeout)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw, time.monotonic() - start)
    finally:
        conn.close()


def random_user_path():
    return f"/v1/users/{uuid.uuid4()}"


# ---------------------------------------------------------------------------------------
# The Redis relay


class Relay:
    """A TCP forwarder on a free 127.0.0.1 port to `target`, run by threads of this
    process. `cut()` closes every relayed connection and closes new ones at once, as a
    Redis that went away would; `restore()` forwards again."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sockets = set()
        self.is_cut = False
        self.closed = False
        self.accepted = 0
        threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True).start()

    def _accept_loop(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refuse = self.is_cut or self.closed
            if refuse:
                self._kill(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
            except OSError:
                self._kill(client)
                continue
            with self.lock:
                if self.is_cut or self.closed:
                    self._kill(client)
                    self._kill(upstream)
                    continue
                self.sockets.update((client, upstream))
                self.accepted += 1
            pair = {"open": 2}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair, client, upstream),
                                 name="relay-pump", daemon=True).start()

    @staticmethod
    def _kill(sock):
        """Closes with a reset (SO_LINGER 0), so that the peer notices at once."""
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _pump(self, src, dst, pair, a, b):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (a, b):  # wakes the other pump
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            pair["open"] -= 1
            last = pair["open"] == 0
            if last:
                self.sockets.discard(a)
                self.sockets.discard(b)
        if last:
            a.close()
            b.close()

    def cut(self):
        with self.lock:
            self.is_cut = True
            sockets = list(self.sockets)
        for s in sockets:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self):
        with self.lock:
            self.is_cut = False

    def close(self):
        self.closed = True
        self.cut()
        try:
            self.listener.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# The cluster


class Instance:
    def __init__(self, name, port, proc, log_path, redis):
        self.name, self.port, self.proc, self.log_path, self.redis = name, port, proc, log_path, redis

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    """Context manager: `with Cluster(binary) as c:` starts the database, the relay, the
    instances and nginx; leaving the block (normally, by an error or by Ctrl-C) stops them
    all and drops the database."""

    def __init__(self, binary, instances=3, postgres_url="postgres://postgres@127.0.0.1:5432/test",
                 redis=("127.0.0.1", 6379), relay=True, access_log=False, keep=False):
        self.binary = Path(binary)
        self.count = instances
        self.postgres_url = postgres_url
        self.redis = redis
        self.use_relay = relay
        self.access_log = access_log
        self.keep = keep
        self.database = f"minitter_cluster_{os.getpid()}"
        self.database_url = f"{postgres_url.rsplit('/', 1)[0]}/{self.database}"
        self.tmp = None
        self.relay = None
        self.instances = []
        self.nginx = None
        self.nginx_port = None
        self.database_created = False
        self.admin_token = None
        self.failed = False

    # -- lifecycle --

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and not issubclass(kind, KeyboardInterrupt):
            self.failed = True
        self.close()
        return False

    @property
    def data_dir(self):
        return self.tmp / "data"

    @property
    def redis_url(self):
        if self.relay is not None:
            return f"redis://127.0.0.1:{self.relay.port}"
        return f"redis://{self.redis[0]}:{self.redis[1]}"

    def psql(self, sql, url=None):
        out = subprocess.run(["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-d", url or self.postgres_url, "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self):
        started = time.monotonic()
        if not self.binary.exists():
            raise RuntimeError(f"no server binary at {self.binary}")
        self.tmp = Path(tempfile.mkdtemp(prefix="minitter-cluster-"))
        self.data_dir.mkdir()
        self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {self.database}")
        self.database_created = True
        if self.use_relay:
            self.relay = Relay(self.redis)
        # The first instance creates the development secrets and migrates; the others
        # start once it is ready, so that they read the same secrets.
        first = self.start_instance()
        self.wait_ready(first)
        rest = [self.start_instance() for _ in range(self.count - 1)]
        for inst in rest:
            self.wait_ready(inst)
        self.admin_token = (self.data_dir / "admin-token").read_text().strip()
        self.start_nginx()
        log(f"cluster up in {time.monotonic() - started:.1f}s: nginx {self.url}, "
            + ", ".join(i.url for i in self.instances) + f" (database {self.database}, temp {self.tmp})")

    def start_instance(self, redis=True, name=None):
        """Starts one more minitter-server on the shared database and data directory (from
        the main thread only); returns it without waiting for readiness."""
        index = len(self.instances) + 1
        name = name or f"instance-{index}"
        port = free_port()
        log_path = self.tmp / f"{name}.log"
        env = dict(os.environ, MINITTER_DATABASE_URL=self.database_url, MINITTER_BIND=f"127.0.0.1:{port}",
                   MINITTER_DATA_DIR=str(self.data_dir), MINITTER_LOG=os.environ.get("MINITTER_LOG", "warn"), NO_COLOR="1",
                   # nginx is stopped first, so there is nothing to drain for.
                   MINITTER_DRAIN_SECONDS="0")
        env.pop("MINITTER_REDIS_URL", None)
        for var in ("MINITTER_JWT_SECRET", "MINITTER_ADMIN_TOKEN", "MINITTER_PRODUCTION"):
            env.pop(var, None)
        if redis:
            env["MINITTER_REDIS_URL"] = self.redis_url
        with open(log_path, "wb") as out:
            proc = subprocess.Popen([str(self.binary)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        inst = Instance(name, port, proc, log_path, redis)
        self.instances.append(inst)
        return inst

    def wait_ready(self, inst, timeout=90):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if inst.proc.poll() is not None:
                raise RuntimeError(f"{inst.name} exited with {inst.proc.returncode} before it was ready:\n{tail(inst.log_path)}")
            try:
                r = call(inst.port, "GET", "/readyz", timeout=2)
                if r.status == 200:
                    return
                last = r
            except OSError as error:
                last = error
            time.sleep(0.1)
        raise RuntimeError(f"{inst.name} not ready within {timeout}s (last: {last}):\n{tail(inst.log_path)}")

    def start_nginx(self):
        nginx = find_nginx()
        prefix = self.tmp / "nginx"
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(exist_ok=True)
        self.nginx_port = free_port()
        servers = "\n".join(f"    server 127.0.0.1:{i.port} max_fails=1 fail_timeout=2s;" for i in self.instances)
        access = (f'access_log {prefix}/access.log upstream;' if self.access_log else "access_log off;")
        user = "user root;" if os.geteuid() == 0 else ""  # workers need our temp dir (0700)
        conf = f"""
{user}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  log_format upstream '$remote_addr "$request" $status $upstream_addr $upstream_status $request_time';
  {access}
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  client_max_body_size 6m;
  upstream minitter {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.nginx_port};
    location / {{
      proxy_pass http://minitter;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      # The next upstream only when one cannot be reached or does not answer, and
      # (nginx's default) never for a POST/PATCH/DELETE once it was sent: no
      # `non_idempotent`, so a write is never applied twice.
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
      proxy_read_timeout 30s;
      proxy_buffering off;
      add_header X-Minitter-Upstream $upstream_addr always;
    }}
  }}
}}
"""
        conf_path = prefix / "nginx.conf"
        conf_path.write_text(conf)
        test = subprocess.run([nginx, "-t", "-q", "-c", str(conf_path), "-p", str(prefix), "-e", str(prefix / "error.log")],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {test.stderr}")
        with open(prefix / "stdout.log", "wb") as out:
            self.nginx = subprocess.Popen([nginx, "-c", str(conf_path), "-p", str(prefix), "-e", str(prefix / "error.log"),
                                           "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.nginx.returncode}:\n{tail(prefix / 'error.log')}")
            try:
                if call(self.nginx_port, "GET", "/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"nginx not answering on {self.nginx_port}:\n{tail(prefix / 'error.log')}")

    def dump_logs(self, lines=30):
        for inst in self.instances:
            log(f"--- last lines of {inst.name} ({inst.url}, {inst.log_path}) ---")
            log(tail(inst.log_path, lines))
        if self.tmp is not None:
            log(f"--- last lines of nginx error log ---")
            log(tail(self.tmp / "nginx" / "error.log", lines))

    def close(self):
        if self.failed:
            self.dump_logs()
        if self.nginx is not None and self.nginx.poll() is None:
            try:
                os.killpg(self.nginx.pid, signal.SIGTERM)  # its own group: master + workers
            except ProcessLookupError:
                pass
            try:
                self.nginx.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.nginx.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.nginx.wait()
        for inst in self.instances:
            if inst.proc.poll() is None:
                inst.proc.terminate()
        for inst in self.instances:
            try:
                inst.proc.wait(10)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()
        if self.relay is not None:
            self.relay.close()
        if self.database_created:
            try:
                self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
                self.database_created = False
            except Exception as error:  # noqa: BLE001 - teardown reports and goes on
                log(f"warning: could not drop database {self.database}: {error}")
        if self.tmp is not None:
            if self.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --

    @property
    def url(self):
        return f"http://127.0.0.1:{self.nginx_port}"

    def upstream(self, inst):
        return f"127.0.0.1:{inst.port}"

    def admin(self, method, path, body=None, port=None, expect=(200, 201, 204)):
        r = call(port or self.nginx_port, method, path, body=body,
                 headers={"authorization": f"Bearer {self.admin_token}", "content-type": "application/json"})
        if r.status not in expect:
            raise RuntimeError(f"{method} {path} -> {r.status} {r.body[:300]!r}")
        return r.json() if r.body else None

    def create_key(self, name, throttle=None, quota=None):
        """A fresh plan (with the given limits) and a key in it: (key id, secret, plan id)."""
        plan = {"name": f"{name}-{uuid.uuid4().hex[:8]}"}
        if throttle:
            plan["throttle"] = {"rate_limit": throttle[0], "burst_limit": throttle[1]}
        if quota:
            plan["quota"] = {"limit": quota, "period": "DAY"}
        plan_id = self.admin("POST", "/admin/v1/usage-plans", plan)["id"]
        key = self.admin("POST", "/admin/v1/api-keys", {"name": name, "plan_id": plan_id})
        return key["id"], key["secret"], plan_id

    def kill(self, inst):
        inst.proc.send_signal(signal.SIGKILL)
        inst.proc.wait()


# ---------------------------------------------------------------------------------------
# Checks


class CheckFailed(Exception):
    pass


def require(condition, message):
    if not condition:
        raise CheckFailed(message)


def run_pool(n, fn, workers=30):
    """Runs fn(i) for i in range(n) on a thread pool; returns the results in order
    (an exception is returned as its value)."""
    def safe(i):
        try:
            return fn(i)
        except Exception as error:  # noqa: BLE001
            return error
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(safe, range(n)))


def status_counts(results):
    counts = {}
    for r in results:
        key = r.status if isinstance(r, Response) else type(r).__name__
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: str(kv[0])))


def check_quota(c):
    # Every instance answers on its own port.
    _, probe, _ = c.create_key("probe")
    for inst in c.instances:
        for _ in range(3):
            r = call(inst.port, "GET", random_user_path(), headers={"x-api-key": probe})
            require(r.status == 404, f"{inst.name} answered {r!r} directly")
    n = 20
    _, secret, _ = c.create_key("quota", quota=n)
    results = run_pool(3 * n, lambda i: call(c.nginx_port, "GET", random_user_path(), headers={"x-api-key": secret}))
    counts = status_counts(results)
    admitted = sum(1 for r in results if isinstance(r, Response) and r.status == 404)
    refused = [r for r in results if isinstance(r, Response) and r.status == 429]
    bad_code = [r for r in refused if r.code() != "quota_exceeded"]
    spread = {}
    for r in results:
        if isinstance(r, Response):
            up = r.headers.get("x-minitter-upstream", "?")
            spread[up] = spread.get(up, 0) + 1
    require(admitted == n, f"{admitted} admitted of {3 * n}, want exactly {n}; statuses {counts}")
    require(len(refused) == 2 * n, f"{len(refused)} got 429, want {2 * n}; statuses {counts}")
    require(not bad_code, f"429 without code quota_exceeded: {bad_code[:2]}")
    missing = [i.name for i in c.instances if c.upstream(i) not in spread]
    require(not missing, f"nginx sent nothing to {missing}; spread {spread}")
    per = ", ".join(f"{i.name} {spread.get(c.upstream(i), 0)}" for i in c.instances)
    return f"{admitted}/{3 * n} admitted with quota {n}, {len(refused)} x 429 quota_exceeded; spread: {per}"


def check_throttle(c):
    rate, burst, seconds = 5, 5, 3.0
    _, secret, _ = c.create_key("throttle", throttle=(rate, burst))
    results = []
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + seconds

    def hammer(_):
        while time.monotonic() < stop_at:
            try:
                r = call(c.nginx_port, "GET", random_user_path(), headers={"x-api-key": secret}, timeout=5)
            except OSError as error:
                r = error
            with lock:
                results.append(r)

    run_pool(8, hammer, workers=8)
    elapsed = time.monotonic() - start
    counts = status_counts(results)
    admitted = sum(1 for r in results if isinstance(r, Response) and r.status == 404)
    throttled = [r for r in results if isinstance(r, Response) and r.status == 429]
    others = [r for r in results if not (isinstance(r, Response) and r.status in (404, 429))]
    bound = burst + rate * elapsed + 1
    require(not others, f"unexpected answers: {counts}")
    require(all(r.code() == "throttled" for r in throttled), "a 429 whose code is not throttled")
    require(burst <= admitted <= bound,
            f"{admitted} admitted in {elapsed:.2f}s, want between {burst} and {bound:.1f}; statuses {counts}")
    return (f"{admitted} admitted of {len(results)} in {elapsed:.2f}s "
            f"(bound {burst} .. {bound:.1f} = burst + rate*t + 1), {len(throttled)} x 429 throttled")


def check_disable(c):
    key_id, secret, _ = c.create_key("disable")
    for inst in c.instances:  # every instance has the key cached
        for _ in range(2):
            r = call(inst.port, "GET", random_user_path(), headers={"x-api-key": secret})
            require(r.status == 404, f"{inst.name} answered {r!r} before the key was disabled")
    first = c.instances[0]
    c.admin("PATCH", f"/admin/v1/api-keys/{key_id}", {"enabled": False}, port=first.port)
    disabled_at = time.monotonic()
    seen = {}

    def poll(i):
        inst = c.instances[i]
        deadline = disabled_at + 3.0
        while time.monotonic() < deadline:
            r = call(inst.port, "GET", random_user_path(), headers={"x-api-key": secret}, timeout=3)
            if r.status == 403:
                return time.monotonic() - disabled_at
            require(r.status == 404, f"{inst.name} answered {r!r} while polling")
            time.sleep(0.01)
        return None

    results = run_pool(len(c.instances), poll, workers=len(c.instances))
    for inst, result in zip(c.instances, results):
        if isinstance(result, Exception):
            raise result
        seen[inst.name] = result
    late = {k: v for k, v in seen.items() if v is None or v > 1.0}
    detail = ", ".join(f"{k} {'never' if v is None else f'{v * 1000:.0f} ms'}" for k, v in seen.items())
    require(not late, f"not refused everywhere within 1 s: {detail}")
    # and it stays refused
    for inst in c.instances:
        r = call(inst.port, "GET", random_user_path(), headers={"x-api-key": secret})
        require(r.status == 403, f"{inst.name} answered {r!r} after the key was refused")
    return f"disabled through {first.name}; 403 on every instance after: {detail}"


def check_usage(c):
    key_id, secret, plan_id = c.create_key("usage", quota=1_000_000)
    day_start = datetime.datetime.now(datetime.timezone.utc).date()

    def one(i):
        path = "/v1/usage" if i % 2 == 0 else random_user_path()
        return call(c.nginx_port, "GET", path, headers={"x-api-key": secret})

    results = run_pool(60, one, workers=6)
    counts = status_counts(results)
    admitted = sum(1 for r in results if isinstance(r, Response) and r.status in (200, 404))
    time.sleep(2.5)
    day_end = datetime.datetime.now(datetime.timezone.utc).date()

    def report():
        doc = c.admin("GET", f"/admin/v1/usage-plans/{plan_id}/usage?start_date={day_start}&end_date={day_end}")
        return sum(entry[0] for entry in doc.get("items", {}).get(key_id, [])), doc

    used, doc = report()
    if used != admitted:
        later = used
        for _ in range(10):  # only to say whether it converges; the check has failed
            time.sleep(0.5)
            later, _ = report()
            if later == admitted:
                break
        raise CheckFailed(f"usage report says {used} after 2.5 s ({later} after up to 5 s more), "
                          f"client counted {admitted} admitted; statuses {counts}; report {json.dumps(doc)[:300]}")
    return f"usage report {used} == {admitted} admitted by the client (statuses {counts})"


def check_redis_cut(c):
    if c.relay is None:
        raise CheckFailed("the cluster does not run behind the Redis relay")
    _, secret, _ = c.create_key("redis", throttle=(1000, 1000), quota=100_000)
    hdr = {"x-api-key": secret}
    for _ in range(6):
        r = call(c.nginx_port, "GET", random_user_path(), headers=hdr)
        require(r.status == 404, f"before the cut: {r!r}")
    for inst in c.instances:
        r = call(inst.port, "GET", random_user_path(), headers=hdr)
        require(r.status == 404, f"before the cut, {inst.name}: {r!r}")
    c.relay.cut()
    cut_at = time.monotonic()
    answers = []
    for i in range(12):
        port = c.nginx_port if i < 9 else c.instances[i - 9].port
        try:
            r = call(port, "GET", random_user_path(), headers=hdr, timeout=10)
        except OSError as error:
            raise CheckFailed(f"request {i} after the cut: {type(error).__name__} {error}")
        answers.append(r)
    concurrent_answers = run_pool(12, lambda i: call(c.nginx_port, "GET", random_user_path(), headers=hdr, timeout=10),
                                  workers=12)
    for r in concurrent_answers:
        if not isinstance(r, Response):
            raise CheckFailed(f"a concurrent request after the cut: {r!r}")
    answers += concurrent_answers
    counts = status_counts(answers)
    slowest = max(r.seconds for r in answers)
    require(not any(r.status == 500 for r in answers), f"a 500 while Redis was cut: statuses {counts}")
    require(all(r.status == 503 for r in answers), f"want only 503 while Redis is cut, got {counts}")
    require(all("retry-after" in r.headers for r in answers), "a 503 without Retry-After")
    require(slowest < 3.0, f"a request took {slowest:.2f}s while Redis was cut")
    cut_for = time.monotonic() - cut_at
    c.relay.restore()
    restored_at = time.monotonic()
    deadline = restored_at + 15
    recovered = {}
    last = {}
    targets = [("nginx", c.nginx_port)] + [(i.name, i.port) for i in c.instances]
    while time.monotonic() < deadline and len(recovered) < len(targets):
        for name, port in targets:
            if name in recovered:
                continue
            try:
                r = call(port, "GET", random_user_path(), headers=hdr, timeout=3)
                last[name] = r.status
                require(r.status != 500, f"a 500 from {name} after Redis returned: {r!r}")
                if r.status == 404:
                    recovered[name] = time.monotonic() - restored_at
            except OSError as error:
                last[name] = type(error).__name__
        time.sleep(0.2)
    missing = [name for name, _ in targets if name not in recovered]
    require(not missing, f"not admitting 15 s after Redis returned: {missing} (last answers {last})")
    slowest_recovery = max(recovered.values())
    return (f"{len(answers)} requests while cut ({cut_for:.1f}s): {counts}, all with Retry-After, slowest "
            f"{slowest * 1000:.0f} ms; 404 again {slowest_recovery:.1f}s after restore "
            f"(" + ", ".join(f"{k} {v:.1f}s" for k, v in recovered.items()) + ")")


def check_kill(c):
    _, secret, _ = c.create_key("writers")
    name = f"w{uuid.uuid4().hex[:10]}"
    r = call(c.nginx_port, "POST", "/v1/users", headers={"x-api-key": secret},
             body={"username": name, "email": f"{name}@example.com", "password": PASSWORD})
    require(r.status == 201, f"sign-up: {r!r}")
    user_id = r.json()["id"]
    r = call(c.nginx_port, "POST", "/v1/auth/token", headers={"x-api-key": secret},
             body={"email": f"{name}@example.com", "password": PASSWORD})
    require(r.status == 200, f"token: {r!r}")
    token = r.json()["access_token"]
    victim = c.instances[1]
    victim_addr = c.upstream(victim)
    records = []  # (sent, received, status or error name, upstream, id)
    lock = threading.Lock()
    start = time.monotonic()
    stop_at = start + 4.0
    killed = {}

    def writer(w):
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            sent = time.monotonic()
            try:
                resp = call(c.nginx_port, "POST", "/v1/tweets",
                            headers={"x-api-key": secret, "authorization": f"Bearer {token}"},
                            body={"text": f"writer {w} tweet {n}"}, timeout=10)
                status, upstream, tid = resp.status, resp.headers.get("x-minitter-upstream", ""), None
                if resp.status == 201:
                    try:
                        tid = resp.json()["id"]
                    except (ValueError, KeyError, TypeError):
                        tid = None
            except OSError as error:
                status, upstream, tid = type(error).__name__, "", None
            with lock:
                records.append((sent, time.monotonic(), status, upstream, tid))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, w) for w in range(8)]
        time.sleep(max(0.0, start + 1.5 - time.monotonic()))
        killed["at"] = time.monotonic()
        c.kill(victim)  # SIGKILL
        for f in futures:
            f.result()
    kill_at = killed["at"]
    acked = [rec[4] for rec in records if rec[4] is not None]
    pre = [rec for rec in records if rec[1] < kill_at]
    inflight = [rec for rec in records if rec[0] < kill_at <= rec[1]]
    post = [rec for rec in records if rec[0] >= kill_at]
    fails = [rec for rec in records if rec[2] != 201]
    bad_5xx = [rec for rec in records if isinstance(rec[2], int) and rec[2] >= 500 and rec[2] not in (502, 503, 504)]
    other = [rec for rec in records if rec[2] != 201 and not (isinstance(rec[2], int) and rec[2] in (502, 503, 504))]
    gateway_fails = [rec for rec in fails if isinstance(rec[2], int) and rec[2] in (502, 503, 504)]
    attributed = [rec for rec in gateway_fails if victim_addr in rec[3]]
    post_ok = sum(1 for rec in post if rec[2] == 201)
    late_ok = sum(1 for rec in post if rec[2] == 201 and rec[0] >= kill_at + 2.0)
    summary = (f"{len(records)} posts: {len(pre)} done before the kill ({sum(1 for r in pre if r[2] == 201)} x 201), "
               f"{len(inflight)} in flight ({sum(1 for r in inflight if r[2] == 201)} x 201), {len(post)} sent after "
               f"({post_ok} x 201); not acknowledged: {len(fails)} ({status_counts_raw(fails)}), of which 502/503/504 "
               f"{len(gateway_fails)} ({len(attributed)} from {victim.name})")
    require(not bad_5xx, f"5xx other than 502/503/504: {status_counts_raw(bad_5xx)}; {summary}")
    require(not other, f"failures that are not 502/503/504: {status_counts_raw(other)}; {summary}")
    require(all(rec[2] == 201 for rec in pre), f"failures before the kill; {summary}")
    require(post and post_ok >= 0.9 * len(post), f"fewer than 90% of the posts after the kill succeeded; {summary}")
    require(late_ok > 0, f"no post succeeded 2 s or more after the kill; {summary}")
    require(len(gateway_fails) == len(attributed), f"failures not from {victim.name}; {summary}")
    # Every acknowledged tweet is there.
    listed, duplicates, pages, page_token = set(), 0, 0, None
    deadline = time.monotonic() + 60
    max_pages = len(records) // 100 + 20
    while True:
        require(pages < max_pages and time.monotonic() < deadline, f"paging did not end after {pages} pages")
        path = f"/v1/users/{user_id}/tweets?limit=100"
        if page_token:
            path += "&page_token=" + urllib_quote(page_token)
        r = call(c.nginx_port, "GET", path, headers={"x-api-key": secret}, timeout=10)
        require(r.status == 200, f"page {pages}: {r!r}")
        doc = r.json()
        pages += 1
        for item in doc["items"]:
            if item["id"] in listed:
                duplicates += 1
            listed.add(item["id"])
        page_token = doc.get("next_page")
        if not page_token:
            break
    lost = [tid for tid in acked if tid not in listed]
    extra = len(listed - set(acked))
    require(not lost, f"{len(lost)} acknowledged tweets missing from the listing (e.g. {lost[:3]}); {summary}")
    require(duplicates == 0, f"{duplicates} tweets listed twice across pages")
    return (f"{summary}; all {len(acked)} acknowledged tweets listed ({pages} pages, {len(listed)} tweets, "
            f"{extra} stored without acknowledgement)")


def status_counts_raw(records):
    counts = {}
    for rec in records:
        counts[rec[2]] = counts.get(rec[2], 0) + 1
    return counts


def urllib_quote(text):
    from urllib.parse import quote
    return quote(text, safe="")


CHECKS = [
    ("a. quota exact across instances", check_quota),
    ("b. throttle across instances", check_throttle),
    ("c. key disabled through one instance is refused by all", check_disable),
    ("f. usage report equals client-counted admitted requests", check_usage),
    ("d. Redis cut: 503 with Retry-After, recovers after restore", check_redis_cut),
    ("e. kill -9 of one instance under writes: acknowledged tweets kept", check_kill),
]


def cmd_check(args):
    started = time.monotonic()
    passed = failed = 0
    try:
        with Cluster(args.binary, postgres_url=args.postgres_url, redis=args.redis, keep=args.keep) as c:
            for name, fn in CHECKS:
                t0 = time.monotonic()
                try:
                    detail = fn(c)
                    passed += 1
                    log(f"ok: {name} — {detail} [{time.monotonic() - t0:.1f}s]")
                except Exception as error:  # noqa: BLE001 - report and go on
                    failed += 1
                    kind = "" if isinstance(error, CheckFailed) else f"{type(error).__name__}: "
                    log(f"FAIL: {name} — {kind}{error} [{time.monotonic() - t0:.1f}s]")
            if failed:
                c.failed = True  # prints the instances' log tails on the way out
    except KeyboardInterrupt:
        log("interrupted")
        failed += 1
    except Exception as error:  # noqa: BLE001 - the cluster did not start
        failed += 1
        log(f"FAIL: cluster start — {type(error).__name__}: {error}")
    log(f"check took {time.monotonic() - started:.1f}s")
    log(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_up(args):
    with Cluster(args.binary, postgres_url=args.postgres_url, redis=args.redis, relay=not args.direct_redis,
                 keep=args.keep) as c:
        log(f"nginx:      {c.url}")
        for inst in c.instances:
            log(f"{inst.name}: {inst.url}   (log {inst.log_path})")
        log(f"admin token: {c.data_dir / 'admin-token'}   (Authorization: Bearer $(cat {c.data_dir / 'admin-token'}))")
        log(f"database:    {c.database_url}; Redis via {c.redis_url}")
        log("Ctrl-C stops everything.")
        reported = set()
        while True:
            time.sleep(1)
            for inst in c.instances:
                if inst.proc.poll() is not None and inst.name not in reported:
                    reported.add(inst.name)
                    log(f"{inst.name} exited with {inst.proc.returncode}:\n{tail(inst.log_path, 20)}")
            if c.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited with {c.nginx.returncode}")


# ---------------------------------------------------------------------------------------
# Bench


def wrk(url, duration, connections, env, script="user.lua"):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s",
                          str(BENCH / "wrk" / script), url],
                         check=True, capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def cmd_bench(args):
    if shutil.which("wrk") is None:
        apt_install("wrk")
    with Cluster(args.binary, postgres_url=args.postgres_url, redis=args.redis, relay=False, keep=args.keep) as c:
        # A plan with a throttle and a quota too high to bind: every request takes the
        # limiter's full path (in Redis on the Redis instances).
        _, secret, _ = c.create_key("bench", throttle=(1_000_000, 1_000_000), quota=1_000_000_000)
        tag = uuid.uuid4().hex[:6]

        def signup(i):
            name = f"b{tag}_{i}"
            r = call(c.nginx_port, "POST", "/v1/users", headers={"x-api-key": secret},
                     body={"username": name, "email": f"{name}@example.com", "password": PASSWORD}, timeout=30)
            if r.status != 201:
                raise RuntimeError(f"sign-up: {r!r}")
            return r.json()["id"]

        t0 = time.monotonic()
        users = run_pool(args.users, signup, workers=4)
        errors = [u for u in users if isinstance(u, Exception)]
        if errors:
            raise RuntimeError(f"{len(errors)} sign-ups failed, e.g. {errors[0]}")
        log(f"created {len(users)} users in {time.monotonic() - t0:.1f}s")
        r = call(c.nginx_port, "POST", "/v1/auth/token", headers={"x-api-key": secret},
                 body={"email": f"b{tag}_0@example.com", "password": PASSWORD})
        (c.tmp / "users.txt").write_text("\n".join(users) + "\n")
        (c.tmp / "tokens.txt").write_text(r.json()["access_token"] + "\n")
        env = dict(os.environ, BENCH_DIR=str(BENCH), BENCH_USERS=str(c.tmp / "users.txt"),
                   BENCH_TOKENS=str(c.tmp / "tokens.txt"), BENCH_API_KEY=secret)
        timeline_runs = timeline_scenario(c, users, secret, env, args)
        local = c.start_instance(redis=False, name="instance-local-limiter")
        c.wait_ready(local)
        single = c.instances[0]
        targets = {
            "nginx -> 3 instances (Redis limiter)": c.url,
            "1 instance direct (Redis limiter)": single.url,
            "1 instance direct, no Redis (in-process limiter)": local.url,
        }
        runs = {name: [] for name in targets}
        for rnd in range(args.rounds):  # alternating rounds: this machine drifts between runs
            for name, url in targets.items():
                runs[name].append(wrk(url, args.duration, args.connections, env))
                log(f"round {rnd + 1}: {name}: {runs[name][-1]['rps']:,.0f} requests/s")
        median = {name: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for name, rs in runs.items()}
    names = list(targets)
    rows = ["| target | requests/s | p50 ms | p99 ms | errors (non-2xx) |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in names:
        r = median[name]
        rows.append(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} ({r['non2xx']}) |")
    cluster_ratio = median[names[0]]["rps"] / median[names[1]]["rps"]
    redis_ratio = median[names[1]]["rps"] / median[names[2]]["rps"]
    profile = "release" if "release" in str(args.binary) else "debug"
    log("")
    log("\n".join(rows))
    log("")
    log(f"cluster / single instance: **{cluster_ratio:.2f}x**; Redis limiter / in-process limiter "
        f"(same read, one instance each): **{redis_ratio:.2f}x**.")
    log(f"GET /v1/users/{{id}} of {len(users)} users with one key (plan with throttle and quota), "
        f"wrk -t2 -c{args.connections} -d{args.duration}s, median of {args.rounds} alternating round(s), "
        f"{profile} binary, PostgreSQL and Redis (direct, no relay) on this machine ({os.cpu_count()} cores).")
    log("On 2 cores this shows the cost of the extra nginx hop and of a Redis round trip per request, "
        "not linear scaling: the three instances, nginx, PostgreSQL, Redis and wrk share the same cores.")
    log("")
    log("| GET /v1/timeline?limit=20, home feeds in Redis | requests/s | p50 ms | p99 ms | errors (non-2xx) |")
    log("| --- | ---: | ---: | ---: | ---: |")
    for name, rs in timeline_runs.items():
        r = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
        log(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} ({r['non2xx']}) |")
    return 0


def timeline_scenario(c, users, secret, env, args, follows=50, posts=10):
    """Every user follows `follows` others and posts `posts` tweets (through nginx, so the
    fan-out runs on all three instances into the shared Redis feeds); then wrk reads home
    timelines as every user, through nginx and from one instance, in alternating rounds
    (the first round also builds the feeds)."""
    import random
    rng = random.Random(7)
    from run import jwt  # bench/run.py, beside this file
    key = (c.data_dir / "jwt-secret").read_text().strip()
    tokens = {u: jwt(u, key) for u in users}

    def act(user):
        auth = {"x-api-key": secret, "authorization": f"Bearer {tokens[user]}"}
        for other in rng.sample(users, min(follows, len(users) - 1)):
            if other != user:
                r = call(c.nginx_port, "PUT", f"/v1/me/following/{other}", headers=auth, timeout=30)
                if r.status != 204:
                    raise RuntimeError(f"follow: {r!r}")
        for n in range(posts):
            r = call(c.nginx_port, "POST", "/v1/tweets", headers=auth, body={"text": f"tweet {n}"}, timeout=30)
            if r.status != 201:
                raise RuntimeError(f"post: {r!r}")
    t0 = time.monotonic()
    failures = [r for r in run_pool(len(users), lambda i: act(users[i]), workers=8) if isinstance(r, Exception)]
    if failures:
        raise RuntimeError(f"{len(failures)} users' follows or posts failed, e.g. {failures[0]}")
    log(f"{len(users)} users followed {follows} others and posted {posts} tweets each in {time.monotonic() - t0:.1f}s")
    (c.tmp / "timeline-tokens.txt").write_text("\n".join(tokens.values()) + "\n")
    timeline_env = dict(env, BENCH_TOKENS=str(c.tmp / "timeline-tokens.txt"))
    targets = {"nginx -> 3 instances": c.url, "1 instance direct": c.instances[0].url}
    runs = {name: [] for name in targets}
    for name, url in targets.items():  # warm-up: builds the feeds
        wrk(url, args.duration, args.connections, timeline_env, "timeline.lua")
    for rnd in range(args.rounds):
        for name, url in targets.items():
            runs[name].append(wrk(url, args.duration, args.connections, timeline_env, "timeline.lua"))
            log(f"round {rnd + 1}: timeline, {name}: {runs[name][-1]['rps']:,.0f} requests/s")
    return runs


# ---------------------------------------------------------------------------------------


def default_binary(release):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / ("release" if release else "debug") / "minitter-server"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "check", "bench"])
    parser.add_argument("--binary", type=Path, help="minitter-server to run (default: the cargo target dir's)")
    parser.add_argument("--release", action="store_true", help="build and use the release binary")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test",
                        help="a database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="HOST:PORT of the Redis the instances share")
    parser.add_argument("--direct-redis", action="store_true", help="up: no relay in front of Redis")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (logs) afterwards")
    parser.add_argument("--duration", type=int, default=5, help="bench: seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="bench: alternating rounds (median reported)")
    parser.add_argument("--connections", type=int, default=64, help="bench: wrk connections")
    parser.add_argument("--users", type=int, default=200, help="bench: users to create and read")
    args = parser.parse_args()
    host, _, port = args.redis.rpartition(":")
    args.redis = (host or "127.0.0.1", int(port))

    if args.binary is None:
        args.binary = default_binary(args.release)
        if args.release:
            subprocess.run(["cargo", "build", "--release", "-p", "minitter-server"], cwd=ROOT, check=True)
        elif not args.binary.exists():
            subprocess.run(["cargo", "build", "-p", "minitter-server"], cwd=ROOT, check=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`&`)

    try:
        return {"up": cmd_up, "check": cmd_check, "bench": cmd_bench}[args.command](args)
    except KeyboardInterrupt:
        log("stopped")
        return 130 if args.command != "up" else 0


if __name__ == "__main__":
    sys.exit(main())
