#!/usr/bin/env python3
"""Webhook benchmark of a release build of minitter-server (issue 19's two targets).

Usage: python3 bench/webhooks.py [--database sqlite|postgres] [--duration S]
                                [--connections C] [--rate R] [--latency-seconds S]

1. Throughput: `POST /v1/tweets` under wrk, with no subscription, and with one
   subscription to `tweet.created` whose endpoint hangs for 10 s before answering (the
   server's attempt times out first). The two alternate over rounds (ABBA, as bench/run.py
   pairs); the result is the median ratio (target: at least 90%).
2. Latency (run first, on a server with nothing queued): with a healthy receiver subscribed, `bench-webhooks latency` posts tweets at a
   fixed rate (open loop) and reports the time from each event's commit (its payload's
   `timestamp`) to its receipt, p50 and p99 (target: p99 under 1 s at 1,000 events/s).

The data set is bench/run.py's, smaller (1,000 users, 50 follows each, 10,000 tweets),
so that fan-out happens as deployed. The table goes to docs/benchmarks.md (section
`webhooks-<database>`). Benchmarks never gate CI: numbers depend on the machine.
"""

import argparse
import http.client
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

HANG_SECONDS = 10


def call(port, method, path, api_key, body=None):
    """One request to the server with the benchmark's key; returns (status, JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"x-api-key": api_key, "content-type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data else None)


def subscribe(port, api_key, url):
    status, created = call(port, "POST", "/v1/webhooks", api_key,
                           {"url": url, "event_types": ["tweet.created"]})
    if status != 201:
        raise RuntimeError(f"subscribing answered {status}: {created}")
    return created["id"]


def unsubscribe(port, api_key, webhook_id):
    status, _ = call(port, "DELETE", f"/v1/webhooks/{webhook_id}", api_key)
    if status != 204:
        raise RuntimeError(f"unsubscribing answered {status}")


def outbox_lags(port, admin_token):
    """Each outbox consumer's lag in seconds, from `GET /metrics`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers={"authorization": f"Bearer {admin_token}"})
    text = conn.getresponse().read().decode()
    conn.close()
    return {line.split('consumer="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("minitter_outbox_lag_seconds{")}


def drain(port, admin_token, timeout=600):
    """Waits until every outbox consumer (the home feeds' fan-out, the webhook queue) has
    handled every event; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        lags = outbox_lags(port, admin_token)
        if lags and all(lag == 0 for lag in lags.values()):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"the outbox consumers did not catch up in {timeout} s: {outbox_lags(port, admin_token)}")


def set_enabled(port, api_key, webhook_id, enabled):
    status, _ = call(port, "PATCH", f"/v1/webhooks/{webhook_id}", api_key, {"enabled": enabled})
    if status != 200:
        raise RuntimeError(f"PATCH enabled={enabled} answered {status}")


def throughput(port, api_key, admin_token, hanging_url, args, env, rounds=6):
    """`POST /v1/tweets` over ABBA rounds without webhooks and with the hanging subscriber.
    One subscription serves every "with" round, disabled between them, so that no round
    pays for deleting another's deliveries. After each round the outbox consumers catch up
    before the next begins, so a round's queued work is not billed to its neighbour; how
    long that took is reported beside it. Returns the median run of each, the median
    ratio, and the median catch-up seconds of each."""
    base = f"http://127.0.0.1:{port}"
    warm = argparse.Namespace(**{**vars(args), "duration": 1})
    common.wrk("post.lua", base, warm, env)
    drain(port, admin_token)
    webhook_id = subscribe(port, api_key, hanging_url)
    set_enabled(port, api_key, webhook_id, False)
    plain, hooked, plain_drains, hooked_drains = [], [], [], []

    def without():
        plain.append(common.wrk("post.lua", base, args, env))
        plain_drains.append(drain(port, admin_token))

    def with_hanging():
        set_enabled(port, api_key, webhook_id, True)
        hooked.append(common.wrk("post.lua", base, args, env))
        hooked_drains.append(drain(port, admin_token))
        set_enabled(port, api_key, webhook_id, False)

    for round_ in range(rounds):
        order = [without, with_hanging] if round_ % 2 == 0 else [with_hanging, without]
        for scenario in order:
            scenario()
    unsubscribe(port, api_key, webhook_id)
    median = lambda values: sorted(values)[len(values) // 2]
    by_rps = lambda runs: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    ratios = [h["rps"] / p["rps"] for p, h in zip(plain, hooked)]
    return (by_rps(plain), by_rps(hooked), median(ratios), ratios, median(plain_drains), median(hooked_drains))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--follows-per-user", type=int, default=50)
    parser.add_argument("--tweets", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each throughput round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=1_000, help="tweets a second in the latency run")
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/test")
    parser.add_argument("--prebuilt", action="store_true", help="use the release binaries already built")
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        common.sh("apt-get", "install", "-y", "-q", "wrk")
    if not args.prebuilt:
        common.sh("cargo", "build", "--release", "--quiet", "-p", "minitter-server", "-p", "minitter-bench",
                  cwd=common.ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", common.ROOT / "target")) / "release"

    work = Path(tempfile.mkdtemp(prefix="minitter-bench-webhooks-"))
    prepare = common.prepare_postgres if args.database == "postgres" else common.prepare_sqlite
    database_env, users, drop_copy = prepare(args, target, work)
    sample = random.Random(7).sample(users, len(users))
    (work / "tokens.txt").write_text("\n".join(common.jwt(u) for u in sample) + "\n")
    (work / "users.txt").write_text("\n".join(sample) + "\n")
    api_key = common.create_key(target, work, database_env)
    env = dict(os.environ, BENCH_DIR=str(common.BENCH), BENCH_TOKENS=str(work / "tokens.txt"),
               BENCH_USERS=str(work / "users.txt"), BENCH_API_KEY=api_key, BENCH_USER_COUNT=str(args.users))

    port, hang_port = common.free_port(), common.free_port()
    # The receivers listen on loopback, which the SSRF guard refuses unless allowed.
    server = common.start_server(target, work, port, database_env,
                                 MINITTER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    hanging = subprocess.Popen([target / "bench-webhooks", "receive", "--bind", f"127.0.0.1:{hang_port}",
                                "--hang-seconds", str(HANG_SECONDS)])
    try:
        common.wait_for(port)
        common.wait_for(hang_port)
        admin_token = (work / "admin-token").read_text().strip()
        # Latency first, on a server with nothing queued.
        out = subprocess.run(
            [target / "bench-webhooks", "latency", "--server", f"http://127.0.0.1:{port}", "--api-key", api_key,
             "--tokens", work / "tokens.txt", "--rate", str(args.rate), "--seconds", str(args.latency_seconds)],
            check=True, capture_output=True, text=True).stdout
        latency = json.loads(out.strip().splitlines()[-1])
        drain(port, admin_token)
        plain, hooked, ratio, ratios, plain_drain, hooked_drain = throughput(
            port, api_key, admin_token, f"http://127.0.0.1:{hang_port}/hook", args, env)
    finally:
        common.stop(hanging)
        common.stop(server)
        drop_copy()
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        "| scenario | requests/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| POST /v1/tweets, no subscription (median of 6 rounds) | {plain['rps']:,.0f} | {plain['p50_ms']:.2f} "
        f"| {plain['p99_ms']:.2f} | {plain['errors']} |",
        f"| POST /v1/tweets, one subscriber hanging {HANG_SECONDS} s (median of 6 rounds) | {hooked['rps']:,.0f} "
        f"| {hooked['p50_ms']:.2f} | {hooked['p99_ms']:.2f} | {hooked['errors']} |",
        "",
        f"With one subscriber whose endpoint hangs {HANG_SECONDS} s, `POST /v1/tweets` keeps **{ratio:.0%}** of its "
        "throughput without webhooks (median of the rounds' ratios, "
        f"{', '.join(f'{r:.0%}' for r in ratios)}; target: at least 90%). After a round the "
        f"outbox consumers took {plain_drain:.1f} s (without) and {hooked_drain:.1f} s (with the subscriber) to "
        "handle its events (medians; not counted in the rounds' time).",
        "",
    ]
    delivered, sent = latency["delivered"], latency["sent"]
    if latency["p99_ms"] is None:
        rows.append(f"Delivery latency: nothing was delivered of {sent:,} tweets.")
    else:
        rows.append(
            f"Delivery latency from commit to receipt at {latency['rate']:,} tweets/s for {latency['seconds']} s "
            f"(open loop; {latency['created']:,} of {sent:,} created, {delivered:,} delivered): "
            f"p50 **{latency['p50_ms']:.0f} ms**, p99 **{latency['p99_ms']:.0f} ms**, max {latency['max_ms']:.0f} ms "
            "(target: p99 under 1 s).")
    rows.append("")
    rows.append(f"Database: **{args.database}**. Data: {args.users:,} users, {args.follows_per_user} follows each, "
                f"{args.tweets:,} tweets; wrk -t2 -c{args.connections} -d{args.duration}s a round, on the same 2-core "
                f"machine as the server and the receivers; {time.strftime('%Y-%m-%d')}.")
    table = "\n".join(rows)
    print(table)
    if not args.no_docs:
        common.write_results(f"webhooks-{args.database}", table)


if __name__ == "__main__":
    sys.exit(main())
