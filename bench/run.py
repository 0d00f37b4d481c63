#!/usr/bin/env python3
"""Load benchmark of a release build of minitter-server, with a same-run baseline.

Usage: python3 bench/run.py [--database sqlite|postgres] [--users N] [--tweets N]
                           [--duration S] [--connections C] [--only GROUP,...]

It builds the release binaries, generates (once, cached in bench/.data/ for SQLite, or
in a PostgreSQL database named after the data set) a database through the store layer,
copies it for the run, starts the bare poem hello-world baseline and the server, and
drives each scenario with wrk (Debian's `wrk`, installed if missing). Every scenario is
reported as a ratio to the baseline's throughput measured in the same run, with p50/p99
latency, errors and the server's peak RSS. The table is written to docs/benchmarks.md,
one section per database.

Some scenarios are pairs whose ratio is the result: the same read with and without the
gateway, a timeline page with and without gzip, and a user read with and without metrics
and the access log, a user's tweets answered from the response cache and without it. The
two halves of a pair alternate over several short rounds, and the
median of the per-round ratios is reported. `--only` runs some groups of scenarios
(reads, flood, gateway, gzip, telemetry, cache) after the baseline, and then writes no docs.
Benchmarks never gate CI: numbers depend on the machine.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
JWT_SECRET = "bench-secret-" + "x" * 32  # a benchmark-only secret, never a default
# Groups of scenarios, in the order they run (`--only`).
GROUPS = ("reads", "flood", "gateway", "gzip", "telemetry", "cache")
# Names of the paired scenarios, in the table and for the summary.
GATEWAY_ON = "GET /v1/users/{id}, gateway on (median of 5 alternating rounds)"
GATEWAY_OFF = "GET /v1/users/{id}, gateway off (median of 5 alternating rounds)"
GZIP = "GET /v1/timeline?limit=20, Accept-Encoding: gzip (median of 5 alternating rounds)"
IDENTITY = "GET /v1/timeline?limit=20, uncompressed (median of 5 alternating rounds)"
TELEMETRY_ON = "GET /v1/users/{id}, metrics and access log on (median of 5 alternating rounds)"
TELEMETRY_OFF = "GET /v1/users/{id}, metrics and access log off (median of 5 alternating rounds)"
CACHE_HIT = "GET /v1/users/{id}/tweets?limit=20 (gzip, 1,000 hot authors), response cache on (median of 5 alternating rounds)"
CACHE_OFF = "GET /v1/users/{id}/tweets?limit=20 (gzip, 1,000 hot authors), response cache off (median of 5 alternating rounds)"
ALONE = "GET /v1/users/{id}, half the connections, alone"
FLOODED = "GET /v1/users/{id}, half the connections, during a wrong-password login flood"


def sh(*args, **kwargs):
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run(args, check=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url_port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", url_port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {url_port}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(sub: str, secret: str = JWT_SECRET) -> str:
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "iss": "minitter", "aud": "minitter-api", "iat": now, "exp": now + 3600}
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


class RssSampler(threading.Thread):
    """Samples a process's resident memory, in MiB: `peak` is the highest VmRSS seen,
    `peak_anon` the highest RssAnon (the process's own memory, without the pages of the
    database file that SQLite maps, which are shared, reclaimable page cache)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.peak_anon, self.running = pid, 0.0, 0.0, True

    def run(self):
        while self.running:
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) / 1024)
                    if line.startswith("RssAnon:"):
                        self.peak_anon = max(self.peak_anon, int(line.split()[1]) / 1024)
            except FileNotFoundError:
                return
            time.sleep(0.1)


def wrk(script, url, args, env):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency", "-s", str(BENCH / "wrk" / script), url],
        check=True, capture_output=True, text=True, env=env,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def alternating(a, b, args, env, rounds=5):
    """Runs the wrk scenarios `a` and `b` (each a script and a URL) in turns, `rounds` short
    runs each, after a discarded one-second run of each (first requests, cold caches).
    Runs on this machine drift by tens of percent, so the order swaps every round (ABBA) and
    each round's a/b ratio is taken from two neighbouring runs. Returns the median run of
    each and the median of the ratios."""
    short = argparse.Namespace(**{**vars(args), "duration": max(3, args.duration // 3)})
    warm = argparse.Namespace(**{**vars(args), "duration": 1})
    for script, url in (a, b):
        wrk(script, url, warm, env)
    a_runs, b_runs = [], []
    for round_ in range(rounds):
        order = [(a, a_runs), (b, b_runs)]
        for (script, url), runs in order if round_ % 2 == 0 else reversed(order):
            runs.append(wrk(script, url, short, env))
    median = lambda values: sorted(values)[len(values) // 2]
    by_rps = lambda runs: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return by_rps(a_runs), by_rps(b_runs), median([x["rps"] / y["rps"] for x, y in zip(a_runs, b_runs)])


def timeline_page_sizes(port, tokens, api_key):
    """The mean size of a timeline page as sent, without and with gzip, over a few readers.
    Bodies under 1 KiB are not compressed, so the gzip scenario means something only if
    the pages are larger: a page sent other than gzipped when asked is an error."""
    import http.client
    plain, gzipped = [], []
    for token in tokens[:10]:
        for encoding, sizes in (("identity", plain), ("gzip", gzipped)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/v1/timeline?limit=20", headers={
                "authorization": f"Bearer {token}", "x-api-key": api_key, "accept-encoding": encoding})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            coding = response.getheader("content-encoding", "identity")
            if response.status != 200 or coding != encoding:
                raise RuntimeError(f"a timeline page asked as {encoding} came {response.status} {coding}, "
                                   f"{len(body)} bytes")
            sizes.append(len(body))
    return sum(plain) / len(plain), sum(gzipped) / len(gzipped)


def start_server(target, work, port, database_env, log="warn", stdout=None, **settings):
    """A minitter-server on the run's data, listening on `port`; `settings` are more
    MINITTER_ variables."""
    return subprocess.Popen([target / "minitter-server"], stdout=stdout, env=dict(
        os.environ, MINITTER_DATA_DIR=str(work), MINITTER_BIND=f"127.0.0.1:{port}",
        MINITTER_JWT_SECRET=JWT_SECRET, MINITTER_LOG=log, MINITTER_DRAIN_SECONDS="0",
        **settings, **database_env))


def stop(process):
    process.terminate()
    process.wait()


def warm_feeds(port, tokens, api_key, workers=16):
    """Reads every reader's timeline once, so that every home feed is built: what the
    timeline scenario measures is then the steady state. Returns the pass as a result."""
    import concurrent.futures
    import http.client
    local = threading.local()

    def read(token):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.monotonic()
        local.conn.request("GET", "/v1/timeline?limit=20",
                           headers={"authorization": f"Bearer {token}", "x-api-key": api_key})
        response = local.conn.getresponse()
        response.read()
        return response.status, (time.monotonic() - start) * 1000

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(read, tokens))
    seconds = time.monotonic() - started
    latencies = sorted(ms for _, ms in answers)
    return {"requests": len(answers), "seconds": seconds, "rps": len(answers) / seconds,
            "errors": sum(1 for status, _ in answers if status != 200),
            "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99)]}


def psql(url, sql):
    """Runs one statement with psql; returns its rows as lists of text."""
    out = subprocess.run(["psql", "-Atq", "-F", "\t", "-d", url, "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def prepare_sqlite(args, target, work):
    """Copies the cached SQLite data set into `work`; returns the server's database
    variables and the user ids."""
    cached = BENCH / ".data" / f"{args.users}u-{args.follows_per_user}f-{args.tweets}t"
    if not (cached / "minitter.db").exists():
        shutil.rmtree(cached, ignore_errors=True)
        sh(target / "bench-data", "--data-dir", cached, *data_args(args))
    shutil.copy(cached / "minitter.db", work / "minitter.db")
    # Ids are 16-byte BLOBs in SQLite (migration 0008).
    users = [str(uuid.UUID(bytes=row[0])) for row in sqlite3.connect(work / "minitter.db").execute("SELECT id FROM users")]
    return {}, users, lambda: None


def prepare_postgres(args, target, work):
    """Copies the cached PostgreSQL data set (a database, made once) into a database of
    this run's (CREATE DATABASE … TEMPLATE, a file-level copy); returns the server's
    database variables, the user ids and how to drop the copy."""
    server = args.postgres_url.rsplit("/", 1)[0]
    cached = f"minitter_bench_{args.users}u_{args.follows_per_user}f_{args.tweets}t"
    complete = psql(args.postgres_url, f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{cached}'")
    if complete != [["complete"]]:
        psql(args.postgres_url, f"DROP DATABASE IF EXISTS {cached}")
        psql(args.postgres_url, f"CREATE DATABASE {cached}")
        sh(target / "bench-data", "--data-dir", work / "unused", "--database-url", f"{server}/{cached}", *data_args(args))
        psql(args.postgres_url, f"COMMENT ON DATABASE {cached} IS 'complete'")
    copy = f"minitter_bench_run_{os.getpid()}"
    psql(args.postgres_url, f"CREATE DATABASE {copy} TEMPLATE {cached}")
    url = f"{server}/{copy}"
    psql(url, "VACUUM ANALYZE")
    users = [row[0] for row in psql(url, "SELECT id FROM users")]
    return {"MINITTER_DATABASE_URL": url}, users, lambda: psql(args.postgres_url, f"DROP DATABASE {copy} WITH (FORCE)")


def data_args(args):
    return ["--users", str(args.users), "--follows-per-user", str(args.follows_per_user), "--tweets", str(args.tweets)]


def create_key(target, work, database_env):
    """A key in a plan with a throttle, a quota and a stream socket limit too high to
    bind, so that every request takes the limiter's full path."""
    def admin(*args):
        return subprocess.run([target / "minitter-server", "--data-dir", work, "admin", *args],
                              check=True, capture_output=True, text=True,
                              env=dict(os.environ, MINITTER_LOG="off", **database_env)).stdout
    plan = admin("create-plan", "--name", "bench", "--rate", "10000000", "--burst", "10000000",
                 "--quota", "1000000000", "--period", "DAY",
                 "--stream-connections", "100000").split()[2]
    out = admin("create-key", "--name", "bench", "--plan", plan)
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("x-api-key: "))


def flood(target, base, args, env):
    """GET /v1/users/{id} measured while a flood of wrong-password logins runs against the
    same server (both wrk runs at once, half the connections each)."""
    half = argparse.Namespace(**{**vars(args), "connections": max(2, args.connections // 2)})
    login = {}
    thread = threading.Thread(target=lambda: login.update(wrk("login.lua", base, half, env)))
    thread.start()
    time.sleep(0.5)
    reads = wrk("user.lua", base, half, env)
    thread.join()
    return reads, login


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--follows-per-user", type=int, default=100)
    parser.add_argument("--tweets", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--prebuilt", action="store_true",
                        help="use the release binaries already built (runs in a row on one build)")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL database to connect to for creating the benchmark's databases")
    parser.add_argument("--only", help=f"comma-separated groups to run after the baseline "
                        f"({', '.join(GROUPS)}); implies --no-docs")
    parser.add_argument("--json-out", type=Path,
                        help="also write the results, ratios and peak RSS to this file as JSON (bench/scale.py reads it)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    if only - set(GROUPS):
        parser.error(f"unknown groups {', '.join(sorted(only - set(GROUPS)))}; choose from {', '.join(GROUPS)}")
    args.no_docs = args.no_docs or args.only is not None

    if shutil.which("wrk") is None:
        sh("apt-get", "install", "-y", "-q", "wrk")
    if not args.prebuilt:
        sh("cargo", "build", "--release", "--quiet", "-p", "minitter-server", "-p", "minitter-bench", cwd=ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"

    work = Path(tempfile.mkdtemp(prefix="minitter-bench-"))
    prepare = prepare_postgres if args.database == "postgres" else prepare_sqlite
    database_env, users, drop_copy = prepare(args, target, work)
    # Every user reads, so that the timeline run holds every home feed warm (the memory
    # target is for all of them).
    sample = random.Random(7).sample(users, len(users))
    (work / "tokens.txt").write_text("\n".join(jwt(u) for u in sample) + "\n")
    (work / "users.txt").write_text("\n".join(sample) + "\n")
    api_key = create_key(target, work, database_env)
    env = dict(os.environ, BENCH_DIR=str(BENCH), BENCH_TOKENS=str(work / "tokens.txt"),
               BENCH_USERS=str(work / "users.txt"), BENCH_API_KEY=api_key, BENCH_USER_COUNT=str(args.users))

    hello_port, server_port = free_port(), free_port()
    hello = subprocess.Popen([target / "bench-hello", f"127.0.0.1:{hello_port}"])
    # Failed-login limits out of the way, so that every guess of the login flood is hashed:
    # what is measured is the bounded hashing, not the cheap 429s past the limits.
    server = start_server(target, work, server_port, database_env,
                          MINITTER_LOGIN_MAX_FAILURES_PER_CLIENT="1000000000",
                          MINITTER_LOGIN_MAX_FAILURES_PER_ACCOUNT="1000000000",
                          MINITTER_LOGIN_MAX_FAILURES_PER_KEY="1000000000")
    ratios = {}  # the paired scenarios' median ratios
    try:
        wait_for(hello_port)
        wait_for(server_port)
        rss = RssSampler(server.pid)
        rss.start()
        base = f"http://127.0.0.1:{server_port}"
        results = {"hello world (baseline)": wrk("hello.lua", f"http://127.0.0.1:{hello_port}/", args, env)}
        tokens = (work / "tokens.txt").read_text().split()
        if "reads" in only:
            results["GET /v1/users/{id}"] = wrk("user.lua", base, args, env)
        if only & {"reads", "gzip"}:
            # Every reader's first read builds their home feed from the database (16
            # connections, each reader once); then the steady state, every feed warm.
            first_reads = warm_feeds(server_port, tokens, api_key)
            if "reads" in only:
                results["GET /v1/timeline?limit=20, each reader's first read (builds the feed; 16 connections)"] = \
                    first_reads
                results["GET /v1/timeline?limit=20"] = wrk("timeline.lua", base, args, env)
                results["POST /v1/tweets"] = wrk("post.lua", base, args, env)
        rss.running = False
        if "flood" in only:
            half = argparse.Namespace(**{**vars(args), "connections": max(2, args.connections // 2)})
            results[ALONE] = wrk("user.lua", base, half, env)
            reads, login = flood(target, base, args, env)
            results[FLOODED] = reads
            results["POST /v1/auth/token, wrong passwords (the flood, other half)"] = login
        if "gateway" in only:
            # The same read without the gateway (no key check, limiter or headers), in a
            # second process on the same database.
            bare_port = free_port()
            bare = start_server(target, work, bare_port, database_env, MINITTER_BENCHMARK_WITHOUT_GATEWAY="true")
            try:
                wait_for(bare_port)
                results[GATEWAY_ON], results[GATEWAY_OFF], ratios["gateway"] = alternating(
                    ("user.lua", base), ("user.lua", f"http://127.0.0.1:{bare_port}"), args, env)
            finally:
                stop(bare)
        if "gzip" in only:
            # The same warm timeline read, asking for gzip or not, on the main server.
            page_bytes = timeline_page_sizes(server_port, tokens, api_key)
            results[GZIP], results[IDENTITY], ratios["gzip"] = alternating(
                ("timeline_gzip.lua", base), ("timeline.lua", base), args, env)
        if "telemetry" in only:
            # Two more processes, the same but for the switch, both logging as deployed
            # (JSON at info; the main server logs at warn, which would not write the access
            # line at all). The lines go to /dev/null: what is priced is the server's work
            # (span, formatting, the writer thread), not a log collector's.
            on_port, off_port = free_port(), free_port()
            logged = dict(log="info", stdout=subprocess.DEVNULL, MINITTER_LOG_JSON="true")
            on = start_server(target, work, on_port, database_env, **logged)
            off = start_server(target, work, off_port, database_env, **logged,
                               MINITTER_BENCHMARK_WITHOUT_TELEMETRY="true")
            try:
                wait_for(on_port)
                wait_for(off_port)
                results[TELEMETRY_ON], results[TELEMETRY_OFF], ratios["telemetry"] = alternating(
                    ("user.lua", f"http://127.0.0.1:{on_port}"), ("user.lua", f"http://127.0.0.1:{off_port}"),
                    args, env)
            finally:
                stop(on)
                stop(off)
        if "cache" in only:
            # The same hot read on the main server (its response cache on, as deployed) and
            # on a second process on the same database with the cache off: every answer is
            # then made from the database, serialised and compressed.
            uncached_port = free_port()
            uncached = start_server(target, work, uncached_port, database_env, MINITTER_RESPONSE_CACHE_MIB="0")
            try:
                wait_for(uncached_port)
                results[CACHE_HIT], results[CACHE_OFF], ratios["cache"] = alternating(
                    ("user_tweets.lua", base), ("user_tweets.lua", f"http://127.0.0.1:{uncached_port}"), args, env)
            finally:
                stop(uncached)
    finally:
        stop(server)
        stop(hello)
        drop_copy()
        shutil.rmtree(work, ignore_errors=True)

    baseline = results["hello world (baseline)"]["rps"]
    rows = [
        "| scenario | requests/s | vs. hello world | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        rows.append(f"| {name} | {r['rps']:,.0f} | {r['rps'] / baseline:.1%} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    rows.append("")
    if "gateway" in ratios:
        rows.append(f"The gateway (key check, limiter, rate-limit headers) keeps **{ratios['gateway']:.0%}** of "
                    "the throughput of the same read without it.")
        rows.append("")
    if "flood" in only:
        flooded = results[FLOODED]["rps"] / results[ALONE]["rps"]
        rows.append(f"During a wrong-password login flood, `GET /v1/users/{{id}}` keeps **{flooded:.0%}** of its "
                    "throughput (target: at least 50%; the flood's errors are its 401s).")
        rows.append("")
    if "gzip" in ratios:
        rows.append(f"With `Accept-Encoding: gzip`, `GET /v1/timeline?limit=20` keeps **{ratios['gzip']:.0%}** of "
                    f"the throughput of the same read uncompressed (target: at least 50%); a page is "
                    f"{page_bytes[0]:,.0f} bytes, {page_bytes[1]:,.0f} gzipped.")
        rows.append("")
    if "telemetry" in ratios:
        rows.append(f"With metrics and the access log (JSON lines at `info`), `GET /v1/users/{{id}}` keeps "
                    f"**{ratios['telemetry']:.0%}** of its throughput without them "
                    "(`--benchmark-without-telemetry`; target: at least 95%, a cost of at most 5%).")
        rows.append("")
    if "cache" in ratios:
        rows.append(f"Answered from the response cache, `GET /v1/users/{{id}}/tweets?limit=20` (gzip) serves "
                    f"**{ratios['cache']:.1f}×** the throughput of the same read with the cache off "
                    "(target: at least 3×).")
        rows.append("")
    mapped = "the mapped database file" if args.database == "sqlite" else "shared libraries and page cache"
    rows.append(f"Database: **{args.database}**. Server peak RSS: **{rss.peak_anon:.0f} MiB anonymous** "
                f"({rss.peak:.0f} MiB VmRSS, the rest being {mapped}). Data: {args.users:,} users, "
                f"{args.follows_per_user} follows each (power law), {args.tweets:,} tweets; wrk -t2 -c{args.connections} "
                f"-d{args.duration}s on the same 2-core machine; {time.strftime('%Y-%m-%d')}.")
    table = "\n".join(rows)
    print(table)
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "baseline_rps": baseline, "results": results, "ratios": ratios,
            "peak_anon_mib": rss.peak_anon, "peak_mib": rss.peak}, indent=1))
    if not args.no_docs:
        write_results("results" if args.database == "sqlite" else f"results-{args.database}", table)


def write_results(marker, table):
    """Puts `table` between the `<!-- marker:start -->` and `<!-- marker:end -->` lines of
    docs/benchmarks.md."""
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    docs.write_text(f"{before}{start}\n{table}\n{end}{after}")
    print(f"wrote {docs}")


if __name__ == "__main__":
    sys.exit(main())
