#!/usr/bin/env python3
"""The cost curve: the same read and write scenarios at several network sizes.

Usage: python3 bench/scale.py [--database sqlite|postgres] [--sizes 1000,10000,100000]
                             [--duration S] [--prebuilt] [--no-docs]

For each size it runs `bench/run.py --only reads` on a data set of that many users, 100
follows and 100 tweets each (generated once and cached, as run.py does), and reads back
its results. The table shows each scenario's throughput as a share of the same run's
hello world, so that sizes measured minutes apart compare, and the server's peak
anonymous RSS: a flat line (within 20 % of the smallest size) means a request costs the
same however large the network grows, and the memory should stay inside the configured
cache budgets. The table is written to docs/benchmarks.md (`scaling`, or
`scaling-postgres`).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402  (the same runner, and its docs writer)

FOLLOWS = 100
TWEETS_PER_USER = 100
# The scenarios of `--only reads`, as run.py names them, and their column headings.
COLUMNS = (
    ("GET /v1/users/{id}", "user read"),
    ("GET /v1/timeline?limit=20, each reader's first read (builds the feed; 16 connections)", "first timeline read"),
    ("GET /v1/timeline?limit=20", "timeline, warm"),
    ("POST /v1/tweets", "posts"),
)


def measure(args, users):
    """One `run.py --only reads` at `users` users; its JSON results."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "reads",
                   "--users", str(users), "--follows-per-user", str(FOLLOWS),
                   "--tweets", str(users * TWEETS_PER_USER), "--duration", str(args.duration),
                   "--database", args.database, "--json-out", out.name]
        if args.prebuilt:
            command.append("--prebuilt")
        subprocess.run(command, check=True, cwd=ROOT)
        return json.loads(Path(out.name).read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated user counts")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--prebuilt", action="store_true", help="use the release binaries already built")
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if not args.prebuilt:
        run.sh("cargo", "build", "--release", "--quiet", "-p", "minitter-server", "-p", "minitter-bench", cwd=ROOT)
        args.prebuilt = True

    measured = {size: measure(args, size) for size in sizes}

    header = "| network (users) | " + " | ".join(heading for _, heading in COLUMNS) + " | peak RssAnon |"
    rows = [header, "| ---: |" + " ---: |" * (len(COLUMNS) + 1)]
    for size, result in measured.items():
        cells = []
        for scenario, _ in COLUMNS:
            r = result["results"][scenario]
            cells.append(f"{r['rps'] / result['baseline_rps']:.1%} ({r['rps']:,.0f}/s, p99 {r['p99_ms']:.1f} ms)")
        rows.append(f"| {size:,} | " + " | ".join(cells) + f" | {result['peak_anon_mib']:.0f} MiB |")
    smallest = measured[sizes[0]]
    rows.append("")
    for scenario, heading in COLUMNS if len(sizes) > 1 else ():
        share = lambda result: result["results"][scenario]["rps"] / result["baseline_rps"]  # noqa: E731
        worst = min(share(result) / share(smallest) for result in measured.values())
        rows.append(f"- {heading}: the slowest size keeps **{worst:.0%}** of the smallest size's share "
                    "(target: at least 80%).")
    rows.append("")
    rows.append(f"Database: **{args.database}**. {FOLLOWS} follows (power law) and {TWEETS_PER_USER} tweets per "
                f"user; `bench/run.py --only reads`, wrk -t2 -c64 -d{args.duration}s per scenario, on the same "
                f"2-core machine; {time.strftime('%Y-%m-%d')}.")
    table = "\n".join(rows)
    print(table)
    if not args.no_docs:
        run.write_results("scaling" if args.database == "sqlite" else f"scaling-{args.database}", table)


if __name__ == "__main__":
    sys.exit(main())
