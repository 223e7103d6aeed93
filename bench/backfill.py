#!/usr/bin/env python3
"""The backfill's speed on an idle database, against its reference: one
set-based UPDATE doing the same conversion, in the same run on the same
cluster.

A table of --rows rows (id bigserial, amount text). The reference adds a
numeric column and fills it with one `UPDATE ... SET new = amount::numeric`
(what an operator would run by hand, holding every row lock at once), timed
by the server; that column is then dropped and the table vacuumed. Then
`pgshift start` runs an alter_column text -> numeric(12,2) with up/down
through a proxy with no clients, its backfill timed from its own log lines
("backfill starting" to "backfill done"). Each pace is a fresh cluster:
pgshift's default (adaptive), and with --fixed also the fixed pace given
(--fixed "500us,2ms" is the old default).

Reported: rows per second of each, and the ratio backfill / set-based
(rows per second), target >= 0.5 for the default (issue 16).

Usage: python3 bench/backfill.py [--rows 1000000] [--fixed 500us,2ms]
Needs a release build (cargo build --release) and the PostgreSQL binaries.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, pgshift_exe  # noqa: E402

MIGRATION = """{"operations": [
  {"alter_column": {"table": "ledger", "column": "amount", "type": "numeric(12,2)",
                    "up": "amount::numeric", "down": "amount::text"}}
]}"""


def setup(direct: str, rows: int) -> float:
    """Creates the table, times the set-based UPDATE, undoes it. Returns seconds."""
    with psycopg.connect(direct, autocommit=True) as c:
        c.execute("CREATE TABLE ledger (id bigserial PRIMARY KEY, amount text NOT NULL)")
        c.execute(f"INSERT INTO ledger (amount) SELECT (g * 0.01)::text FROM generate_series(1, {rows}) g")
        c.execute("VACUUM ANALYZE ledger")
        c.execute("CHECKPOINT")
        c.execute("ALTER TABLE ledger ADD COLUMN reference numeric(12,2)")
        c.execute("SELECT clock_timestamp()")
        c.execute("""DO $$ DECLARE t timestamptz := clock_timestamp(); BEGIN
                     UPDATE ledger SET reference = amount::numeric;
                     PERFORM set_config('bench.took', extract(epoch FROM clock_timestamp() - t)::text, false);
                     END $$""")
        took = float(c.execute("SELECT current_setting('bench.took')").fetchone()[0])
        c.execute("ALTER TABLE ledger DROP COLUMN reference")
        c.execute("VACUUM FULL ledger")
        c.execute("CHECKPOINT")
    return took


def backfill_seconds(log: str) -> float:
    """Seconds between the backfill's first and last log line."""
    start = done = None
    for line in log.splitlines():
        stamp = line.split(" ", 1)[0]
        if "backfill starting" in line:
            start = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        elif "backfill done" in line:
            done = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if start is None or done is None:
        sys.exit(f"no backfill lines in the migrator's log:\n{log[-2000:]}")
    return (done - start).total_seconds()


def run(args, flags: list[str]) -> tuple[float, float]:
    bench = Bench(args)
    try:
        bench.start_postgres()
        bench.start_pgshift()
        direct = f"postgres://postgres@127.0.0.1:{bench.pg_port}/postgres?sslmode=disable"
        reference = setup(direct, args.rows)
        path = os.path.join(tempfile.mkdtemp(prefix="pgshift-backfill-"), "02_amounts.json")
        with open(path, "w") as f:
            f.write(MIGRATION)
        out = subprocess.run([pgshift_exe(), "start", path, "--database-url", direct] + flags,
                             capture_output=True, text=True, env=dict(os.environ, RUST_LOG="info"))
        if out.returncode != 0:
            sys.exit(f"pgshift start failed:\n{out.stdout}{out.stderr}")
        return reference, backfill_seconds(out.stdout + out.stderr)
    finally:
        bench.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fixed", help="also a fixed pace: BATCH_TIME,DELAY (e.g. 500us,2ms)")
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()
    args.workers = 0
    paces = [("adaptive (default)", [])]
    if args.fixed:
        t, d = args.fixed.split(",")
        paces.append((f"fixed {t}/{d}", ["--backfill-batch-time", t, "--backfill-batch-delay", d]))
    print(f"{args.rows:,} rows, alter_column text -> numeric(12,2), idle database")
    for label, flags in paces:
        reference, backfill = run(args, flags)
        ref_rate, rate = args.rows / reference, args.rows / backfill
        print(f"{label:22} backfill {backfill:7.2f} s ({rate:9,.0f} rows/s)   "
              f"set-based UPDATE {reference:6.2f} s ({ref_rate:9,.0f} rows/s)   ratio {rate / ref_rate:.2f}")


if __name__ == "__main__":
    main()
