#!/usr/bin/env python3
"""Realtime stream benchmark of a release build of minitter-server (issue 20's targets).

Usage: python3 bench/stream.py [--sockets N] [--followers N] [--tweets N] [--prebuilt]

1. Idle sockets: `bench-stream hold` opens N sockets (10,000 by default), each with its
   own ticket and subscribed to `home`; the server's anonymous memory (RssAnon) before and
   after gives the cost per socket (target: under 16 KiB).
2. REST beside them: `GET /v1/users/{id}` under wrk without the sockets, with them (twice),
   and without them again; the ratio of the medians (target: at least 90%).
3. Fan-out: `bench-stream fanout` opens 1,000 sockets on one author's topic and the author
   posts 50 tweets, one every 100 ms; the time from each tweet's `created_at` to its
   receipt on every socket, p50 and p99 (target: p99 under 100 ms).

The data set is bench/webhooks.py's (1,000 users, 50 follows each, 10,000 tweets), on
SQLite. The table goes to docs/benchmarks.md (section `stream`). Benchmarks never gate
CI: numbers depend on the machine.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as common  # noqa: E402  (bench/run.py: the server, the data set, wrk)


def anon_kib(pid):
    """The process's own resident memory (RssAnon), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--follows-per-user", type=int, default=50)
    parser.add_argument("--tweets", type=int, default=10_000)
    parser.add_argument("--sockets", type=int, default=10_000, help="idle sockets")
    parser.add_argument("--followers", type=int, default=1_000, help="sockets on the author's topic")
    parser.add_argument("--fanout-tweets", type=int, default=50)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--prebuilt", action="store_true", help="use the release binaries already built")
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    args.database = "sqlite"

    if shutil.which("wrk") is None:
        common.sh("apt-get", "install", "-y", "-q", "wrk")
    if not args.prebuilt:
        common.sh("cargo", "build", "--release", "--quiet", "-p", "minitter-server", "-p", "minitter-bench",
                  cwd=common.ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", common.ROOT / "target")) / "release"

    work = Path(tempfile.mkdtemp(prefix="minitter-bench-stream-"))
    database_env, users, drop_copy = common.prepare_sqlite(args, target, work)
    sample = random.Random(7).sample(users, len(users))
    (work / "tokens.txt").write_text("\n".join(common.jwt(u) for u in sample) + "\n")
    (work / "users.txt").write_text("\n".join(sample) + "\n")
    api_key = common.create_key(target, work, database_env)
    env = dict(os.environ, BENCH_DIR=str(common.BENCH), BENCH_TOKENS=str(work / "tokens.txt"),
               BENCH_USERS=str(work / "users.txt"), BENCH_API_KEY=api_key, BENCH_USER_COUNT=str(args.users))
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    server = common.start_server(target, work, port, database_env)
    client = [target / "bench-stream", "--server", base, "--api-key", api_key]
    try:
        common.wait_for(port)
        warm = argparse.Namespace(**{**vars(args), "duration": 2})
        common.wrk("user.lua", base, warm, env)
        without = [common.wrk("user.lua", base, args, env)]
        before_kib = anon_kib(server.pid)
        holder = subprocess.Popen([*client, "hold", "--tokens", work / "tokens.txt", "--sockets", str(args.sockets)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        opened = json.loads(holder.stdout.readline())
        time.sleep(2)
        with_kib = anon_kib(server.pid)
        beside = [common.wrk("user.lua", base, args, env) for _ in range(2)]
        after_kib = anon_kib(server.pid)
        holder.stdin.close()
        holder.wait()
        time.sleep(2)
        without.append(common.wrk("user.lua", base, args, env))
        fanout = json.loads(subprocess.run(
            [*client, "fanout", "--listener-token", common.jwt(sample[1]), "--author-token", common.jwt(sample[0]),
             "--author-id", sample[0], "--sockets", str(args.followers), "--tweets", str(args.fanout_tweets)],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    finally:
        common.stop(server)
        drop_copy()
        shutil.rmtree(work, ignore_errors=True)

    per_socket = (with_kib - before_kib) / max(opened["open"], 1)
    rps = lambda runs: sorted(r["rps"] for r in runs)[len(runs) // 2]
    ratio = min(r["rps"] for r in beside) / max(r["rps"] for r in without)
    rows = [
        "| measurement | result | target |",
        "| --- | ---: | ---: |",
        f"| {opened['open']:,} idle sockets (each its own ticket, subscribed to `home`) | opened in "
        f"{opened['seconds']:.1f} s; RssAnon {before_kib / 1024:.0f} → {with_kib / 1024:.0f} MiB "
        f"(**{per_socket:.1f} KiB a socket**; {after_kib / 1024:.0f} MiB after two wrk rounds) | < 16 KiB |",
        f"| `GET /v1/users/{{id}}` beside them | {rps(beside):,.0f}/s against {rps(without):,.0f}/s without "
        f"(worst of two rounds against best of two: **{ratio:.0%}**) | ≥ 90% |",
        f"| a tweet to {fanout['sockets']:,} sockets on its author's topic ({fanout['tweets']} tweets, one every "
        f"100 ms), `created_at` to receipt | {fanout['received']:,} of {fanout['expected']:,} received; p50 "
        f"{fanout['p50_ms']:.0f} ms, **p99 {fanout['p99_ms']:.0f} ms**, max {fanout['max_ms']:.0f} ms | p99 < 100 ms |",
        "",
        f"SQLite, {args.users:,} users; wrk -t2 -c{args.connections} -d{args.duration}s a round; server, sockets and "
        f"wrk on the same 2-core machine; {time.strftime('%Y-%m-%d')}.",
    ]
    table = "\n".join(rows)
    print(table)
    if not args.no_docs:
        common.write_results("stream", table)


if __name__ == "__main__":
    main()
