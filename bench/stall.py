#!/usr/bin/env python3
"""Does one session's large statement hold up the others? Through pgshift
with one session thread (--workers 1, so both sessions share it), during a
migration, a session runs `SELECT 1` in a loop while another sends a 200 KB
statement that the rewriter must parse (`SELECT count(*) FROM public.users
WHERE id IN (1,1,...)`). It reports the SELECT 1 latency (p50, p99, max)
with and without the large statements, in the same run, and the ratio; and
how long each large statement took.

Usage: python3 bench/stall.py [--seconds 10] [--terms 50000]
Needs a release build (cargo build --release) and the PostgreSQL binaries.
PGSHIFT_EXE=... measures another build.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, pgshift_exe  # noqa: E402

import psycopg  # noqa: E402

MIGRATION = '{"operations": [{"rename_column": {"table": "users", "from": "name", "to": "full_name"}}]}'


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def select_one_latencies(url: str, seconds: float) -> list[float]:
    out = []
    with psycopg.connect(url, autocommit=True) as c:
        deadline = time.time() + seconds
        while time.time() < deadline:
            t = time.perf_counter()
            c.execute("SELECT 1").fetchone()
            out.append((time.perf_counter() - t) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--terms", type=int, default=100_000, help="IN-list terms (100,000 is about 200 KB)")
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()
    args.workers = 1
    bench = Bench(args)
    try:
        bench.start_postgres()
        port = bench.start_pgshift()
        direct = f"postgres://postgres@127.0.0.1:{bench.pg_port}/postgres?sslmode=disable"
        with psycopg.connect(direct, autocommit=True) as c:
            c.execute("CREATE TABLE users (id serial PRIMARY KEY, name text)")
            c.execute("INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 1000) g")
        path = os.path.join(tempfile.mkdtemp(prefix="pgshift-stall-"), "01_stall.json")
        with open(path, "w") as f:
            f.write(MIGRATION)
        subprocess.run([pgshift_exe(), "start", path, "--database-url", direct], check=True,
                       env=dict(os.environ, RUST_LOG="warn"))
        url = f"postgres://postgres@127.0.0.1:{port}/postgres?options=-c%20pgshift.version%3D01_stall"
        for _ in range(100):
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        ones = ",".join(["1"] * args.terms)
        quiet = select_one_latencies(url, args.seconds)

        stop = threading.Event()
        big_times = []

        def sender():
            # Each text distinct and sent as text (no server-side prepare), so
            # that each is parsed anew.
            with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    t = time.perf_counter()
                    c.execute(f"SELECT count(*) FROM public.users WHERE id IN ({n},{ones})").fetchone()
                    big_times.append((time.perf_counter() - t) * 1000)

        thread = threading.Thread(target=sender)
        thread.start()
        time.sleep(0.2)
        busy = select_one_latencies(url, args.seconds)
        stop.set()
        thread.join()
        print(f"large statement: {len(ones) + 60:,} bytes, {len(big_times)} sent, "
              f"median {statistics.median(big_times):.1f} ms each")
        for label, lat in (("SELECT 1 alone", quiet), ("SELECT 1 beside it", busy)):
            print(f"{label:20} n={len(lat):6}  p50 {pct(lat, 0.5):6.3f} ms  p99 {pct(lat, 0.99):6.3f} ms  "
                  f"max {max(lat):8.3f} ms")
        print(f"ratio beside/alone: p50 {pct(busy, 0.5) / pct(quiet, 0.5):.2f}  "
              f"p99 {pct(busy, 0.99) / pct(quiet, 0.99):.2f}")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
