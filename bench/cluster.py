#!/usr/bin/env python3
"""A local Minitter cluster: three minitter-server instances on one PostgreSQL database
and one Redis, behind nginx (round-robin), started with one command and torn down after.

Usage:
  python3 bench/cluster.py up                  # start, print the URLs, wait for Ctrl-C
  python3 bench/cluster.py check               # run the multi-instance checks, exit 1 on failure
  python3 bench/cluster.py check --previous-binary PATH
                                               # also the rolling-upgrade and canary checks
                                               # (PATH: bash .ci/previous-release.sh; required
                                               # with CI=true)
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
  other two start once it is ready), with MINITTER_TRUSTED_PROXIES naming nginx's address;
- nginx (installed from Debian if missing; never the system service) as a child process
  with its own pid file, logs and temp paths, running deploy/nginx.conf and deploy/nginx.d/
  themselves (the same pools, retries and timeouts as production; `render_nginx` replaces
  only addresses, the port, paths, and adds `X-Minitter-Upstream`, the instance that
  answered, to every response so that the checks can see the spread).
With --previous-binary, a second cluster starts on that build for the release checks:
deploy/canary and deploy/rolling-upgrade run unchanged against it, with commands that
stop and start this script's processes through a small HTTP control endpoint (`Control`).
Everything is stopped in `finally`, also on errors and Ctrl-C.
"""

import argparse
import collections
import concurrent.futures
import ctypes
import datetime
import http.client
import http.server
import json
import os
import re
import shlex
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
DEPLOY = ROOT / "deploy"
# What the instances trust as proxies: nginx, on the loopback.
TRUSTED_PROXIES = "127.0.0.1/32,::1/128"
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


try:
    LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here, not in the forked child
except OSError:
    LIBC = None


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies without cleaning up
    (PR_SET_PDEATHSIG). The signal follows the thread that forked, not the process, so
    children are only ever started by `Cluster.spawn`, on one thread that lives as long as
    the cluster."""
    if LIBC is not None:
        LIBC.prctl(1, signal.SIGKILL)


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
    def __init__(self, name, port, log_path, redis, binary, pool="stable"):
        self.name, self.port, self.log_path, self.redis = name, port, log_path, redis
        self.binary, self.pool = Path(binary), pool
        self.proc = None
        self.exits = []  # the exit statuses of its stopped processes (Control's /stop)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    """Context manager: `with Cluster(binary) as c:` starts the database, the relay, the
    instances and nginx; leaving the block (normally, by an error or by Ctrl-C) stops them
    all and drops the database."""

    def __init__(self, binary, instances=3, postgres_url="postgres://postgres@127.0.0.1:5432/test",
                 redis=("127.0.0.1", 6379), relay=True, access_log=False, keep=False, drain=0):
        self.binary = Path(binary)
        # MINITTER_DRAIN_SECONDS: 0 when nginx is stopped first (nothing to drain for); the
        # release checks stop instances behind a running nginx, as production does.
        self.drain = drain
        # The build Control's /start runs (None: the instance's own): the new release.
        self.upgrade_binary = None
        self.launcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="launcher")
        self.control = None
        self.nginx_bin = None
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
        self.control = Control(self)
        log(f"cluster up in {time.monotonic() - started:.1f}s: nginx {self.url}, "
            + ", ".join(i.url for i in self.instances) + f" (database {self.database}, temp {self.tmp})")

    def spawn(self, *args, **kwargs):
        """subprocess.Popen on the launcher thread, which lives as long as the cluster (see
        die_with_parent), whichever thread asks (the main one, or Control's)."""
        return self.launcher.submit(subprocess.Popen, *args, **kwargs).result()

    def start_instance(self, redis=True, name=None, binary=None, pool="stable"):
        """Starts one more minitter-server on the shared database and data directory;
        returns it without waiting for readiness."""
        index = len(self.instances) + 1
        name = name or f"instance-{index}"
        inst = Instance(name, free_port(), self.tmp / f"{name}.log", redis, binary or self.binary, pool)
        self.launch(inst)
        self.instances.append(inst)
        return inst

    def launch(self, inst):
        """Starts inst's process (again, after a stop: same port, log appended)."""
        env = dict(os.environ, MINITTER_DATABASE_URL=self.database_url, MINITTER_BIND=f"127.0.0.1:{inst.port}",
                   MINITTER_DATA_DIR=str(self.data_dir), MINITTER_LOG=os.environ.get("MINITTER_LOG", "warn"), NO_COLOR="1",
                   MINITTER_DRAIN_SECONDS=str(self.drain), MINITTER_TRUSTED_PROXIES=TRUSTED_PROXIES)
        env.pop("MINITTER_REDIS_URL", None)
        for var in ("MINITTER_JWT_SECRET", "MINITTER_ADMIN_TOKEN", "MINITTER_PRODUCTION"):
            env.pop(var, None)
        if inst.redis:
            env["MINITTER_REDIS_URL"] = self.redis_url
        with open(inst.log_path, "ab") as out:
            inst.proc = self.spawn([str(inst.binary)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)

    def find(self, name):
        return next(i for i in self.instances if i.name == name)

    def stable(self):
        return [i for i in self.instances if i.pool == "stable"]

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

    @property
    def nginx_prefix(self):
        return self.tmp / "nginx"

    def nginx_command(self, *args):
        prefix = self.nginx_prefix
        return [self.nginx_bin, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log"),
                *args]

    def render_nginx(self):
        """deploy/nginx.conf and deploy/nginx.d/ for this cluster, with only what differs
        replaced: the listen address, the pid, log and temp paths, the upstream addresses,
        and X-Minitter-Upstream added to the responses (not in production: it names
        internal addresses). canary.conf is written by deploy/canary itself."""
        prefix = self.nginx_prefix
        conf = (DEPLOY / "nginx.conf").read_text()

        def sub(pattern, replacement, count=1):
            nonlocal conf
            conf, n = re.subn(pattern, lambda m: replacement.format(*m.groups()), conf, flags=re.M)
            if n != count:
                raise RuntimeError(f"deploy/nginx.conf: {n} matches of {pattern!r}, want {count}")
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers need our temp dir (0700)
        sub(r"^worker_processes auto;$", user + "worker_processes 2;\npid " + str(prefix / "nginx.pid") + ";")
        sub(r"^error_log \S+ (\w+);$", "error_log " + str(prefix / "error.log") + " {0};")
        sub(r"^(\s*)access_log /dev/stdout minitter;$",
            "{0}" + (f"access_log {prefix}/access.log minitter;" if self.access_log else "access_log off;"))
        sub(r"^http \{$", "http {{\n" + "".join(f"    {kind}_temp_path {prefix}/{kind};\n" for kind in
                                                 ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")))
        sub(r"^(\s*)listen 8080;$", "{0}listen 127.0.0.1:" + str(self.nginx_port) + ";")
        # Both locations: the API's and the stream's.
        sub(r"^(\s*)(proxy_pass http://\$minitter_pool;)$", "{0}{1}\n{0}add_header X-Minitter-Upstream $upstream_addr always;",
            count=2)
        sub(r"^(\s*)(add_header X-Request-Id \$minitter_request_id always;)$",
            "{0}{1}\n{0}add_header X-Minitter-Upstream $upstream_addr always;", count=2)
        (prefix / "nginx.conf").write_text(conf)
        # The stable pool: deploy's server line (its parameters) once per instance.
        upstreams = (DEPLOY / "nginx.d" / "upstreams.conf").read_text()
        lines = re.findall(r"^[ \t]*server[ \t]+api\d+:8080\b[^\n]*\n", upstreams, re.M)
        if not lines:
            raise RuntimeError("deploy/nginx.d/upstreams.conf: no `server apiN:8080` lines")
        template = re.sub(r"\s+down(?=[\s;])", "", lines[0])
        servers = "".join(re.sub(r"api\d+:8080", self.upstream(i), template) for i in self.stable())
        upstreams = upstreams.replace("".join(lines), servers)
        if upstreams.count(servers) != 1:
            raise RuntimeError("deploy/nginx.d/upstreams.conf: the server lines are not one block")
        (prefix / "nginx.d").mkdir(exist_ok=True)
        (prefix / "nginx.d" / "upstreams.conf").write_text(upstreams)
        canary = subprocess.run([sys.executable, str(DEPLOY / "canary"), "--conf-dir", str(prefix / "nginx.d"),
                                 "--reload", "true", "--settle", "0", "set", "0"], capture_output=True, text=True)
        if canary.returncode != 0:
            raise RuntimeError(f"deploy/canary set 0 failed: {canary.stdout}{canary.stderr}")

    def start_nginx(self):
        self.nginx_bin = find_nginx()
        prefix = self.nginx_prefix
        for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(exist_ok=True)
        self.nginx_port = free_port()
        self.render_nginx()
        test = subprocess.run(self.nginx_command("-t", "-q"), capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {test.stderr}")
        with open(prefix / "stdout.log", "wb") as out:
            self.nginx = self.spawn(self.nginx_command("-g", "daemon off;"), stdout=out, stderr=subprocess.STDOUT,
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
        if self.control is not None:
            self.control.close()
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
        running = [inst for inst in self.instances if inst.proc is not None and inst.proc.poll() is None]
        for inst in running:
            inst.proc.terminate()
        for inst in running:
            try:
                inst.proc.wait(self.drain + 10)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait()
        self.launcher.shutdown()
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

    def stop(self, inst):
        """SIGTERM, and the exit status once the instance has drained and exited."""
        inst.proc.send_signal(signal.SIGTERM)
        status = inst.proc.wait(self.drain + 30)
        inst.exits.append(status)
        return status

    def deploy(self, script, *args):
        """Runs deploy/<script> against this cluster, with the commands that stop, start and
        probe its processes and reload its nginx; returns (its output, seconds taken)."""
        control = f"curl -fsS --max-time 60 -X POST http://127.0.0.1:{self.control.port}"
        reload = " ".join(shlex.quote(a) for a in self.nginx_command("-t", "-q")) + " && " + \
            " ".join(shlex.quote(a) for a in self.nginx_command("-s", "reload"))
        command = [sys.executable, str(DEPLOY / script), "--conf-dir", str(self.nginx_prefix / "nginx.d"),
                   "--reload", reload, "--stop", f"{control}/stop/{{name}}", "--start", f"{control}/start/{{name}}",
                   "--ready", "curl -fsS -o /dev/null --max-time 2 http://{address}/readyz", "--ready-timeout", "60",
                   *args]
        started = time.monotonic()
        out = subprocess.run(command, capture_output=True, text=True, timeout=600)
        took = time.monotonic() - started
        if out.returncode != 0:
            raise CheckFailed(f"deploy/{script} {' '.join(args)} failed ({out.returncode}) after {took:.1f}s:\n"
                              f"{out.stdout}{out.stderr}")
        return out.stdout, took


class Control:
    """The HTTP endpoint the deploy scripts' --stop and --start commands call (with curl):
    POST /stop/NAME stops the instance (SIGTERM) and answers once it has exited, 200 if
    with status 0; POST /start/NAME starts it again on its port, with the cluster's
    upgrade_binary if set. Loopback only, for the life of the cluster."""

    def __init__(self, cluster):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                action, _, name = self.path.strip("/").partition("/")
                try:
                    inst = cluster.find(name)
                    if action == "stop":
                        status = cluster.stop(inst)
                        code, text = (200 if status == 0 else 500), f"{name} exited with {status}\n"
                    elif action == "start" and inst.proc.poll() is not None:
                        inst.binary = cluster.upgrade_binary or inst.binary
                        cluster.launch(inst)
                        code, text = 200, f"{name} started: {inst.binary}\n"
                    else:
                        code, text = 400, f"cannot {action} {name}\n"
                except Exception as error:  # noqa: BLE001 - the script reports it
                    code, text = 500, f"{type(error).__name__}: {error}\n"
                body = text.encode()
                self.send_response(code)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="control", daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
    listed, duplicates, pages = list_tweets(c, user_id, secret, len(records))
    lost = [tid for tid in acked if tid not in listed]
    extra = len(listed - set(acked))
    require(not lost, f"{len(lost)} acknowledged tweets missing from the listing (e.g. {lost[:3]}); {summary}")
    require(duplicates == 0, f"{duplicates} tweets listed twice across pages")
    return (f"{summary}; all {len(acked)} acknowledged tweets listed ({pages} pages, {len(listed)} tweets, "
            f"{extra} stored without acknowledgement)")


def list_tweets(c, user_id, secret, at_most):
    """Every tweet of the user, paged through nginx: (ids, ids listed twice, pages)."""
    listed, duplicates, pages, page_token = set(), 0, 0, None
    deadline = time.monotonic() + 60
    max_pages = at_most // 100 + 20
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
            return listed, duplicates, pages


def status_counts_raw(records):
    counts = {}
    for rec in records:
        counts[rec[2]] = counts.get(rec[2], 0) + 1
    return counts


def urllib_quote(text):
    from urllib.parse import quote
    return quote(text, safe="")


# ---------------------------------------------------------------------------------------
# Release checks (--previous-binary): a second cluster, started on the previous release.
# deploy/canary and deploy/rolling-upgrade run unchanged (Cluster.deploy), under load.

Rec = collections.namedtuple("Rec", "sent received op status version upstream tweet")


class Load:
    """Client threads sending a mix through nginx, each request on a new connection and
    with one fresh key of an unlimited plan: 2/5 GET /v1/timeline, 2/5 GET /v1/users/{id},
    1/5 POST /v1/tweets (as one user). Bounded: stop(), or max_requests, or max_seconds.
    Every request is a Rec; one whose status is not the expected one (a 5xx, a 429, a
    connection error...) is a failure."""

    EXPECTED = {"timeline": 200, "user": 200, "post": 201}
    MIX = ("post", "timeline", "user", "timeline", "user")

    def __init__(self, c, user, threads=6, max_requests=50_000, max_seconds=240):
        self.c, self.user = c, user
        self.key_id, self.secret, self.plan_id = c.create_key("load")
        self.threads, self.max_requests, self.max_seconds = threads, max_requests, max_seconds
        self.records, self.issued = [], 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.workers = []

    def _worker(self, w):
        auth = {"x-api-key": self.secret, "authorization": f"Bearer {self.user['token']}"}
        n = w
        while not self.done.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.issued >= self.max_requests:
                    return
                self.issued += 1
            n += 1
            op = self.MIX[n % len(self.MIX)]
            sent = time.monotonic()
            status, version, upstream, tweet = None, "", "", None
            try:
                if op == "post":
                    r = call(self.c.nginx_port, "POST", "/v1/tweets", headers=auth, body={"text": f"load {w} {n}"})
                    if r.status == 201:
                        tweet = r.json()["id"]
                elif op == "timeline":
                    r = call(self.c.nginx_port, "GET", "/v1/timeline?limit=20", headers=auth)
                else:
                    r = call(self.c.nginx_port, "GET", f"/v1/users/{self.user['id']}", headers=auth)
                status = r.status
                version = r.headers.get("x-minitter-version", "")
                upstream = r.headers.get("x-minitter-upstream", "")
            except Exception as error:  # noqa: BLE001 - a failure to count, whatever it is
                status = type(error).__name__
            with self.lock:
                self.records.append(Rec(sent, time.monotonic(), op, status, version, upstream, tweet))

    def start(self):
        self.day_start = datetime.datetime.now(datetime.timezone.utc).date()
        self.started = time.monotonic()
        self.deadline = self.started + self.max_seconds
        self.workers = [threading.Thread(target=self._worker, args=(w,), name=f"load-{w}", daemon=True)
                        for w in range(self.threads)]
        for t in self.workers:
            t.start()
        return self

    def stop(self):
        self.done.set()
        for t in self.workers:
            t.join()
        self.seconds = time.monotonic() - self.started
        self.day_end = datetime.datetime.now(datetime.timezone.utc).date()
        return sorted(self.records, key=lambda r: r.sent)

    def run(self, requests):
        """Exactly `requests` requests (unless the time bound comes first)."""
        self.max_requests = requests
        self.start()
        for t in self.workers:
            t.join()
        return self.stop()

    @classmethod
    def failures(cls, records):
        return [r for r in records if r.status != cls.EXPECTED[r.op]]

    def rate(self, records):
        return f"{len(records)} requests in {self.seconds:.1f}s ({len(records) / self.seconds:.0f}/s)"


def release_user(c):
    """The user the loads act as (made once per cluster, with a key of its own)."""
    if getattr(c, "release_user", None) is None:
        _, secret, _ = c.create_key("release-setup")
        name = f"r{uuid.uuid4().hex[:10]}"
        r = call(c.nginx_port, "POST", "/v1/users", headers={"x-api-key": secret},
                 body={"username": name, "email": f"{name}@example.com", "password": PASSWORD}, timeout=30)
        require(r.status == 201, f"sign-up: {r!r}")
        user_id = r.json()["id"]
        r = call(c.nginx_port, "POST", "/v1/auth/token", headers={"x-api-key": secret},
                 body={"email": f"{name}@example.com", "password": PASSWORD}, timeout=30)
        require(r.status == 200, f"token: {r!r}")
        c.release_user = {"id": user_id, "token": r.json()["access_token"], "secret": secret}
    return c.release_user


def version_of(inst):
    return call(inst.port, "GET", "/healthz").headers.get("x-minitter-version", "")


def summary(records):
    return ", ".join(f"{k}: {v}" for k, v in sorted(collections.Counter(
        f"{r.op} {r.status}" for r in records).items()))


def check_canary(c):
    user = release_user(c)
    stable_version = version_of(c.stable()[0])
    canary = c.start_instance(name="canary-1", binary=c.current_binary, pool="canary")
    c.wait_ready(canary)
    canary_version, canary_address = version_of(canary), c.upstream(canary)
    spec = f"{canary.name}={canary_address}"
    if canary_version != stable_version:
        how = "x-minitter-version"

        def is_canary(r):
            return r.version == canary_version
    else:  # the same revision on both sides (e.g. HEAD is the previous release): by address
        how = f"upstream address (both builds say {canary_version})"

        def is_canary(r):
            return canary_address in r.upstream
    _, set_took = c.deploy("canary", "--canary", spec, "set", "10")

    load = Load(c, user)
    records = load.run(2000)
    fails = Load.failures(records)
    share = sum(map(is_canary, records)) / max(1, len(records))
    measured = (f"{load.rate(records)}: {share * 100:.1f} % answered by the canary ({how}), "
                f"{len(fails)} failed")
    require(not fails, f"failures at 10 %: {summary(fails)}; {measured}")
    require(len(records) >= 2000, f"only {measured}")
    require(0.07 <= share <= 0.13, f"canary share outside 10 % +- 3 %: {measured}")

    load = Load(c, user).start()
    time.sleep(1.5)
    _, rollback_took = c.deploy("canary", "--canary", spec, "rollback")
    time.sleep(1.0)
    during = load.stop()
    during_fails = Load.failures(during)
    rolled = f"{load.rate(during)} during the rollback ({rollback_took:.1f}s), {len(during_fails)} failed"
    require(not during_fails, f"failures during the rollback: {summary(during_fails)}; {rolled}")
    require(canary.exits == [0], f"the canary's exit statuses: {canary.exits}")

    after_load = Load(c, user)
    after = after_load.run(300)
    after_canary = [r for r in after if is_canary(r) or canary_address in r.upstream]
    require(not Load.failures(after) and not after_canary,
            f"after the rollback: {len(after_canary)} of {len(after)} from the canary; {summary(after)}")
    return (f"canary {canary_version} beside stable {stable_version}; set 10 in {set_took:.1f}s; {measured}; "
            f"{rolled}, canary exited 0; after: {len(after)} requests, 100 % stable")


def wait_usage(c, load, want):
    """The usage report of the load's key: after the instances' 1 s flush, then until it
    equals `want` (at most 5 s more)."""
    time.sleep(2.5)
    for _ in range(11):
        doc = c.admin("GET", f"/admin/v1/usage-plans/{load.plan_id}/usage"
                             f"?start_date={load.day_start}&end_date={load.day_end}")
        used = sum(entry[0] for entry in doc.get("items", {}).get(load.key_id, []))
        if used == want:
            break
        time.sleep(0.5)
    return used


def check_rolling(c):
    user = release_user(c)
    stable = c.stable()
    previous_version = version_of(stable[0])
    c.upgrade_binary = c.current_binary
    load = Load(c, user).start()
    time.sleep(1.5)
    upgrade_started = time.monotonic()
    out, took = c.deploy("rolling-upgrade", *[f"{i.name}={c.upstream(i)}" for i in stable])
    upgrade_ended = time.monotonic()
    time.sleep(1.5)
    records = load.stop()
    current_version = version_of(stable[0])
    each = ", ".join(f"{s}s" for s in re.findall(r"\): replaced in ([\d.]+) s", out))
    fails = Load.failures(records)
    measured = (f"{load.rate(records)} while deploy/rolling-upgrade replaced {len(stable)} instances in "
                f"{took:.1f}s ({each}): {len(fails)} failed")
    require(not fails, f"failures: {summary(fails)}; {measured}")
    require(all(i.exits and i.exits[-1] == 0 for i in stable),
            f"exit statuses of the replaced instances: {[i.exits for i in stable]}")
    require(all(i.binary == c.current_binary and i.proc.poll() is None for i in stable),
            "not every instance runs the current build")
    versions = collections.Counter(r.version for r in records)
    before = [r for r in records if r.received < upgrade_started]
    after = [r for r in records if r.sent > upgrade_ended]
    if previous_version != current_version:
        require(set(versions) <= {previous_version, current_version}, f"versions seen: {dict(versions)}")
        require(before and all(r.version == previous_version for r in before),
                f"before the upgrade, not only {previous_version}: {collections.Counter(r.version for r in before)}")
        require(after and all(r.version == current_version for r in after),
                f"after the upgrade, not only {current_version}: {collections.Counter(r.version for r in after)}")
        moved = (f"versions {previous_version} -> {current_version} "
                 f"({versions[previous_version]} + {versions[current_version]} answers)")
    else:
        moved = f"both builds say {current_version}: the version move is not observable"
    acked = [r.tweet for r in records if r.tweet]
    listed, duplicates, _ = list_tweets(c, user["id"], user["secret"], 100_000)
    lost = [t for t in acked if t not in listed]
    require(not lost, f"{len(lost)} of {len(acked)} acknowledged tweets missing (e.g. {lost[:3]}); {measured}")
    require(duplicates == 0, f"{duplicates} tweets listed twice")
    used = wait_usage(c, load, len(records))
    require(used == len(records), f"usage report {used} != {len(records)} requests made; {measured}")
    return (f"{measured}; {moved}; {len(acked)} acknowledged posts all readable (0 lost); "
            f"usage report {used} == {len(records)} requests made")


RELEASE_CHECKS = [
    ("g. canary: 10 % to the current build beside the previous one, rollback under load", check_canary),
    ("h. rolling upgrade previous -> current under load: no failure, nothing lost, usage exact", check_rolling),
]


CHECKS = [
    ("a. quota exact across instances", check_quota),
    ("b. throttle across instances", check_throttle),
    ("c. key disabled through one instance is refused by all", check_disable),
    ("f. usage report equals client-counted admitted requests", check_usage),
    ("d. Redis cut: 503 with Retry-After, recovers after restore", check_redis_cut),
    ("e. kill -9 of one instance under writes: acknowledged tweets kept", check_kill),
]


def run_checks(cluster, checks):
    """Runs the checks on a new cluster; returns (passed, failed)."""
    passed = failed = 0
    try:
        with cluster as c:
            for name, fn in checks:
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
        raise
    except Exception as error:  # noqa: BLE001 - the cluster did not start
        failed += 1
        log(f"FAIL: cluster start — {type(error).__name__}: {error}")
    return passed, failed


def cmd_check(args):
    started = time.monotonic()
    passed = failed = 0
    try:
        passed, failed = run_checks(
            Cluster(args.binary, postgres_url=args.postgres_url, redis=args.redis, keep=args.keep), CHECKS)
        if args.previous_binary:
            # The release checks: a cluster started on the previous release, stopped and
            # started behind a running nginx, so with a drain as in production (shorter).
            log(f"release checks: previous {args.previous_binary}, current {args.binary}")
            release = Cluster(args.previous_binary, postgres_url=args.postgres_url, redis=args.redis, relay=False,
                              keep=args.keep, drain=2)
            release.current_binary = Path(args.binary)
            more = run_checks(release, RELEASE_CHECKS)
            passed, failed = passed + more[0], failed + more[1]
        else:
            log("skipped: the rolling-upgrade and canary checks (no --previous-binary)")
    except KeyboardInterrupt:
        log("interrupted")
        failed += 1
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
    parser.add_argument("--previous-binary", type=Path,
                        help="check: the previous release's minitter-server (bash .ci/previous-release.sh prints "
                             "it), for the rolling-upgrade and canary checks; required with CI=true")
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
    if args.command == "check" and os.environ.get("CI") == "true" and args.previous_binary is None:
        parser.error("--previous-binary is required with CI=true (bash .ci/previous-release.sh builds it)")
    if args.previous_binary is not None and not args.previous_binary.exists():
        parser.error(f"no such file: {args.previous_binary}")

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
