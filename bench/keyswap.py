#!/usr/bin/env python3
"""An integer primary key that another table references becomes bigint
while clients write, against its reference in the same run: the same
change as plain `ALTER TABLE ... TYPE bigint` (what pgroll and most tools
leave you with), which rewrites both tables under ACCESS EXCLUSIVE.

Each run is a fresh cluster with `customers` (integer serial key, --rows
rows) and `orders` (--rows rows referencing it), and pgbench clients
(--clients, through pgshift's proxy) inserting a customer and an order
per transaction, with a per-transaction latency log.

- reference: the clients write while one transaction runs
  `ALTER TABLE customers ALTER COLUMN id TYPE bigint; ALTER TABLE orders
  ALTER COLUMN customer_id TYPE bigint`.
- pgshift: the old version's clients write while `pgshift start` runs
  (duplicates, the unique index CONCURRENTLY, backfill, the foreign key
  NOT VALID then validated at complete); then the new version's clients
  write while `pgshift complete` swaps the keys in one short transaction.

Reported per run: the longest and the 99th-percentile transaction latency
while the change runs, failed transactions, and the ratio pgshift /
reference of the longest latency (what a client feels as a stall).
pgshift's longest stall is bounded by its --lock-timeout: a DDL statement
that queues for its lock holds the writers queued behind it until it gets
the lock or gives up and retries.

Usage: python3 bench/keyswap.py [--rows 1000000] [--clients 4] [--seconds 200] [--lock-timeout 50ms]
Needs a release build (cargo build --release) and the PostgreSQL binaries.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, pgshift_exe  # noqa: E402

MIGRATION = """{"operations": [
  {"alter_column": {"table": "customers", "column": "id", "type": "bigint"}},
  {"alter_column": {"table": "orders", "column": "customer_id", "type": "bigint"}}
]}"""

SCRIPT = """BEGIN;
INSERT INTO customers (email) VALUES (md5(random()::text)) RETURNING id \\gset
INSERT INTO orders (customer_id, amount) VALUES (:id, 1);
COMMIT;
"""


def setup(direct: str, rows: int):
    with psycopg.connect(direct, autocommit=True) as c:
        c.execute("CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL)")
        c.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id integer NOT NULL "
                  "REFERENCES customers, amount integer NOT NULL)")
        c.execute(f"INSERT INTO customers (email) SELECT 'c' || g FROM generate_series(1, {rows}) g")
        c.execute(f"INSERT INTO orders (customer_id, amount) SELECT g, 1 FROM generate_series(1, {rows}) g")
        c.execute("CREATE INDEX ON orders (customer_id)")
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")


class Load:
    """pgbench through the proxy for `seconds`, logging each transaction."""

    def __init__(self, bench: Bench, port: int, tag: str, clients: int, seconds: int, version: str | None):
        self.dir = tempfile.mkdtemp(prefix=f"pgshift-keyswap-{tag}-")
        script = os.path.join(self.dir, "script.sql")
        with open(script, "w") as f:
            f.write(SCRIPT)
        env = dict(os.environ, PGOPTIONS=f"-c pgshift.version={version}" if version else "")
        cmd = [f"{bench.bin}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
               "-c", str(clients), "-j", "1", "-T", str(seconds), "-f", script,
               "-l", "--log-prefix", os.path.join(self.dir, "log"), "postgres"]
        self.out = ""
        self.thread = threading.Thread(target=self._run, args=(cmd, env))
        self.thread.start()

    def _run(self, cmd, env):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        self.out = r.stdout + r.stderr

    def join(self):
        self.thread.join()

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the transactions that ended in [start, end] (epoch s)."""
        out = []
        for path in glob.glob(os.path.join(self.dir, "log*")):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    # client_id transaction_no time script_no time_epoch time_us
                    if len(parts) < 6:
                        continue
                    at = int(parts[4]) + int(parts[5]) / 1e6
                    if start <= at <= end:
                        out.append(int(parts[2]) / 1000.0)
        return out

    def failed(self) -> int:
        for line in self.out.splitlines():
            if line.startswith("number of failed transactions:"):
                return int(line.split(":")[1].split()[0])
        return 0 if "aborted" not in self.out else -1


def summary(lat: list[float]) -> tuple[float, float]:
    if not lat:
        return 0.0, 0.0
    lat = sorted(lat)
    return lat[-1], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def fresh(args) -> tuple[Bench, int, str]:
    """A fresh cluster with the tables, and a proxy: (bench, proxy port, direct URL)."""
    bench = Bench(args)
    bench.start_postgres()
    port = bench.start_pgshift()
    direct = f"postgres://postgres@127.0.0.1:{bench.pg_port}/postgres?sslmode=disable"
    setup(direct, args.rows)
    return bench, port, direct


def reference(args) -> tuple[float, float, int, float]:
    bench, port, direct = fresh(args)
    try:
        load = Load(bench, port, "reference", args.clients, args.seconds, None)
        time.sleep(2)
        t0 = time.time()
        with psycopg.connect(direct, autocommit=True) as c:
            c.execute("BEGIN")
            c.execute("ALTER TABLE customers ALTER COLUMN id TYPE bigint")
            c.execute("ALTER TABLE orders ALTER COLUMN customer_id TYPE bigint")
            c.execute("COMMIT")
        t1 = time.time()
        load.join()
        worst, p99 = summary(load.latencies(t0, t1 + 1))
        return worst, p99, load.failed(), t1 - t0
    finally:
        bench.close()


def pgshift(args) -> tuple[float, float, int, float]:
    bench, port, direct = fresh(args)
    try:
        path = os.path.join(tempfile.mkdtemp(prefix="pgshift-keyswap-"), "02_bigint.json")
        with open(path, "w") as f:
            f.write(MIGRATION)
        old = Load(bench, port, "old", args.clients, args.seconds, None)
        time.sleep(2)
        t0 = time.time()
        run = subprocess.run([pgshift_exe(), "start", path, "--database-url", direct,
                              "--lock-timeout", args.lock_timeout], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"pgshift start failed:\n{run.stdout}{run.stderr}")
        t1 = time.time()
        new = Load(bench, port, "new", args.clients, args.seconds, "02_bigint")
        old.join()
        time.sleep(1)
        t2 = time.time()
        while True:
            run = subprocess.run([pgshift_exe(), "complete", "--database-url", direct,
                                  "--lock-timeout", args.lock_timeout], capture_output=True, text=True)
            if run.returncode == 0:
                break
            if "still" not in run.stdout + run.stderr and "session" not in run.stdout + run.stderr:
                sys.exit(f"pgshift complete failed:\n{run.stdout}{run.stderr}")
            time.sleep(0.2)
        t3 = time.time()
        new.join()
        lat = old.latencies(t0, t1 + 1) + new.latencies(t2, t3 + 1)
        worst, p99 = summary(lat)
        return worst, p99, old.failed() + new.failed(), (t1 - t0) + (t3 - t2)
    finally:
        bench.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=0, help="each load's length (default: long enough)")
    ap.add_argument("--lock-timeout", default="500ms",
                    help="pgshift's --lock-timeout: how long a DDL statement may queue for its lock "
                         "(writers queue behind it meanwhile)")
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()
    args.workers = 0
    if not args.seconds:
        args.seconds = max(20, args.rows // 20_000)
    print(f"{args.rows:,} customers and orders, {args.clients} clients writing, integer key -> bigint")
    ref = reference(args)
    ours = pgshift(args)
    for label, (worst, p99, failed, took) in [("ALTER TABLE ... TYPE", ref), ("pgshift start+complete", ours)]:
        print(f"{label:24} change {took:6.1f} s   worst {worst:8.1f} ms   p99 {p99:7.1f} ms   failed {failed}")
    print(f"worst latency, pgshift / ALTER TABLE: {ours[0] / max(ref[0], 1e-9):.3f}")


if __name__ == "__main__":
    main()
