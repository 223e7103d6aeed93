#!/usr/bin/env python3
"""A migration under live load, through pgshift: does it fail a transaction,
how much does it slow clients, and how long does any client stall?

A 1,000,000-row table; pgbench clients with custom scripts that read, update
and insert in each version's own column names: 8 "old" clients from the
start and, once the new version exists, 8 "new" clients (16 in all). The
migration renames a column, changes a type with up/down and adds a NOT NULL
column. The new clients belong to the route `green` (application_name
load-new), which an operator pins to the new version (`pgshift pin`) once
start has made it. Complete path: steady state, start (expand, then
backfill), pin, both versions live, the old clients drain, complete. Rollback path: the same, but
the new clients drain and the migration rolls back under the old ones.
Each path runs on a fresh cluster and proxy.

Each client group runs pgbench in back-to-back 20-second runs until it is
drained, at a fixed rate (-R, about half of what this machine does flat out,
so that latency measures the migration rather than a saturated CPU),
logging every transaction (-l): each phase gets TPS, p50, p99 and max
latency (counted from the scheduled start, lag included). The longest
stall is the longest lock wait of any client, from Postgres's own
log_lock_waits lines (deadlock_timeout = 100 ms). Failed transactions are
pgbench's failures plus aborted clients. Afterwards a ledger check: every
acknowledged insert of each group is in the table, and every row is whole
in the surviving shape.

Targets (issue 5): 0 failed; p99 during backfill <= 2x steady state; no
stall longer than lock_timeout + 100 ms.

The backfill runs with pgshift's default tuning unless --batch-size,
--batch-time-ms or --batch-delay-ms say otherwise. The throwaway cluster
runs with wal_init_zero = off: a fresh cluster has only the few WAL
segments its load left behind, so once the backfill has used them up each
new 16 MB segment is zero-filled by whichever backend needs it, while it
holds the WAL write lock, and on this VM (free-page reporting hands the
fresh page-cache pages back in from the host) that stalls every
committing client for about 40 ms, seen as IO:WALInitWrite. A production
server recycles its segments (min_wal_size) instead.

With --pool-mode transaction every client goes through its version's
transaction pool (--pool-size servers per version).

Usage: python3 bench/load.py [--rows 1000000] [--lock-timeout-ms 500]
Needs a release build (cargo build --release) and the PostgreSQL binaries.
"""

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, ROOT, pgshift_exe  # noqa: E402

VERSION = "01_load"
MIGRATION = """{"operations": [
  {"rename_column": {"table": "accounts", "from": "name", "to": "full_name"}},
  {"alter_column": {"table": "accounts", "column": "rating", "type": "integer",
     "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}},
  {"add_column": {"table": "accounts", "up": "lower(name) || '@example.com'",
     "column": {"name": "email", "type": "text", "nullable": false}}}
]}"""

OLD_SCRIPT = """\\set id random(1, {rows})
BEGIN;
SELECT name, rating FROM accounts WHERE id = :id;
UPDATE accounts SET rating = '3' WHERE id = :id;
INSERT INTO accounts (name, rating) VALUES ('bench old', '2');
END;
"""

NEW_SCRIPT = """\\set id random(1, {rows})
BEGIN;
SELECT full_name, rating, email FROM accounts WHERE id = :id;
UPDATE accounts SET rating = 4 WHERE id = :id;
INSERT INTO accounts (full_name, rating, email) VALUES ('bench new', 5, 'new@x');
END;
"""


class Group:
    """A client group: pgbench in back-to-back short runs until drained."""

    def __init__(self, bench, port, name, script, clients, rate, env, workdir, seconds):
        self.bench, self.port, self.name, self.env, self.rate = bench, port, name, env, rate
        self.seconds = seconds
        self.script = os.path.join(workdir, f"{name}.sql")
        with open(self.script, "w") as f:
            f.write(script)
        self.clients = clients
        self.prefix = os.path.join(workdir, f"log-{name}")
        self.stop = threading.Event()
        self.runs = 0
        self.failed = 0
        self.processed = 0
        self.errors = []
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            self.runs += 1
            cmd = [f"{self.bench.bin}/pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                   "-n", "-c", str(self.clients), "-j", "2", "-T", str(self.seconds), "-M", "prepared",
                   "-R", str(self.rate),
                   "-l", f"--log-prefix={self.prefix}-{self.runs}", "-f", self.script, "postgres"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=os.path.dirname(self.prefix))
            text = out.stdout + out.stderr
            m = re.search(r"number of transactions actually processed: (\d+)", text)
            self.processed += int(m.group(1)) if m else 0
            m = re.search(r"number of failed transactions: (\d+)", text)
            self.failed += int(m.group(1)) if m else 0
            aborted = re.search(r"(\d+) of \d+ clients? (?:were )?aborted|client \d+ aborted", text)
            if out.returncode != 0 or aborted:
                self.failed += 1
                self.errors.append(text.strip().splitlines()[-3:])

    def drain(self):
        self.stop.set()
        self.thread.join()

    def transactions(self):
        """(end time in s since the epoch, latency in ms, ok) of every transaction."""
        out = []
        for path in glob.glob(f"{self.prefix}-*"):
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if len(p) < 6:
                        continue
                    end = int(p[4]) + int(p[5]) / 1e6
                    ok = p[2].isdigit()
                    out.append((end, int(p[2]) / 1000 if ok else 0.0, ok, self.name))
        return out


def migrator(bench, args, *cmd, marks=None):
    """Runs a migrator command; `marks` gets the time each log line first
    arrived, by key phrase. Retries while drained sessions are still listed."""
    exe = pgshift_exe()
    url = f"postgres://postgres@127.0.0.1:{bench.pg_port}/postgres?sslmode=disable"
    # Backfill tuning: pgshift's own defaults unless the command line says otherwise.
    tuning = []
    for flag, value, unit in (("--backfill-batch-size", args.batch_size, ""),
                              ("--backfill-batch-time", args.batch_time_ms, "ms"),
                              ("--backfill-batch-delay", args.batch_delay_ms, "ms")):
        if value is not None:
            tuning += [flag, f"{round(value * 1000)}us" if unit else str(value)]
    for _ in range(40):
        proc = subprocess.Popen([exe, *cmd, "--database-url", url, "--lock-timeout", f"{args.lock_timeout_ms}ms",
                                 *tuning],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, RUST_LOG="info"))
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if marks is not None:
                for key in ("backfill starting", "backfill done", "lock_timeout hit", "hit lock_timeout"):
                    if key in line:
                        marks.setdefault(key, time.time())
                        marks[f"count {key}"] = marks.get(f"count {key}", 0) + 1
        if proc.wait() == 0:
            return
        text = "".join(lines)
        if "session(s) are pinned" not in text:
            sys.exit(f"pgshift {' '.join(cmd)} failed:\n{text}")
        time.sleep(0.5)
    sys.exit(f"pgshift {' '.join(cmd)} kept refusing:\n{text}")


def stats(txs, lo, hi):
    inside = [t for t in txs if lo <= t[0] < hi]
    lat = sorted(t[1] for t in inside if t[2])
    if not lat:
        return None
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {"tps": len(lat) / max(hi - lo, 1e-9), "p50": q[49], "p99": q[98], "max": lat[-1],
            "failed": sum(1 for t in inside if not t[2])}


def psql(bench, sql):
    out = subprocess.run([f"{bench.bin}/psql", "-h", "127.0.0.1", "-p", str(bench.pg_port), "-U", "postgres",
                          "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}")
    return out.stdout.strip()


ROUTE, APP = "green", "load-new"
ROUTES = f"""[[routes]]
name = "{ROUTE}"
application_name = "{APP}"
"""


def serves(bench, port, version):
    """True once the proxy routes the new clients' sessions to `version`: it
    hears of a started migration and of a pin through NOTIFY, within a
    second."""
    out = subprocess.run([f"{bench.bin}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-Atc",
                          "SELECT current_setting('pgshift.version', true)", "postgres"], capture_output=True,
                         text=True, env=dict(os.environ, PGAPPNAME=APP))
    return out.returncode == 0 and out.stdout.strip() == version


def lock_waits(bench, since):
    """Client lock waits longer than deadlock_timeout, in ms, from the server
    log (log_lock_waits: "... acquired ... after N ms"), pgbench's only."""
    waits = []
    with open(os.path.join(bench.dir, "pg.log"), errors="replace") as f:
        f.seek(since)
        for line in f:
            m = re.search(rf"\[(?:pgbench|{APP})\].*acquired .* after ([\d.]+) ms", line)
            if m:
                waits.append(float(m.group(1)))
    return waits


def run_path(bench, args, port, complete, workdir):
    psql(bench, "ALTER SYSTEM SET log_lock_waits = on")
    psql(bench, "ALTER SYSTEM SET deadlock_timeout = '100ms'")
    psql(bench, "ALTER SYSTEM SET log_line_prefix = '%m [%a] '")
    # New WAL segments without a 16 MB zero-fill under the WAL write lock (see the docstring).
    psql(bench, "ALTER SYSTEM SET wal_init_zero = off")
    psql(bench, "SELECT pg_reload_conf()")
    log_start = os.path.getsize(os.path.join(bench.dir, "pg.log"))
    psql(bench, "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, rating text NOT NULL);"
                f"INSERT INTO accounts (name, rating) SELECT 'acct ' || g, (g % 5 + 1)::text FROM generate_series(1, {args.rows}) g")
    psql(bench, "VACUUM ANALYZE accounts")
    # The load's dirty pages and WAL are written out before the steady state.
    psql(bench, "CHECKPOINT")
    path = "complete" if complete else "rollback"
    mig = os.path.join(workdir, f"{VERSION}.json")
    with open(mig, "w") as f:
        f.write(MIGRATION)
    old = Group(bench, port, f"{path}-old", OLD_SCRIPT.format(rows=args.rows), 8, args.rate, dict(os.environ), workdir,
                args.run_seconds)
    new = Group(bench, port, f"{path}-new", NEW_SCRIPT.format(rows=args.rows), args.new_clients, args.rate,
                dict(os.environ, PGAPPNAME=APP), workdir, args.run_seconds)
    t = {"begin": time.time()}
    old.start()
    time.sleep(args.steady)
    marks = {}
    t["start"] = time.time()
    migrator(bench, args, "start", mig, marks=marks)
    t["active"] = time.time()
    migrator(bench, args, "pin", ROUTE, VERSION)
    while not serves(bench, port, VERSION):
        time.sleep(0.05)
    if args.new_clients:
        new.start()
    time.sleep(args.steady)
    if complete or args.new_clients:
        (old if complete else new).drain()
    t["finish"] = time.time()
    migrator(bench, args, "complete" if complete else "rollback", marks=marks)
    t["done"] = time.time()
    time.sleep(2)
    if not complete or args.new_clients:
        (new if complete else old).drain()
    t["end"] = time.time()

    txs = old.transactions() + new.transactions()
    backfill0 = marks.get("backfill starting", t["active"])
    backfill1 = marks.get("backfill done", t["active"])
    phases = [
        ("steady state", t["begin"] + 2, t["start"]),
        ("start (expand)", t["start"], backfill0),
        ("backfill", backfill0, backfill1),
        ("both versions", t["active"], t["finish"]),
        (path, t["finish"], t["done"] + 1),
    ]
    print(f"\n== {path} path: {args.rows} rows, 8 old + 8 new clients, lock_timeout {args.lock_timeout_ms} ms ==")
    print(f"{'phase':16} {'seconds':>8} {'tps':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>7}")
    results = {}
    for name, lo, hi in phases:
        s = stats(txs, lo, hi)
        results[name] = s
        if s:
            print(f"{name:16} {hi - lo:8.1f} {s['tps']:8.0f} {s['p50']:8.2f} {s['p99']:8.2f} {s['max']:8.1f} {s['failed']:7d}")
        else:
            print(f"{name:16} {hi - lo:8.1f} {'(no transactions in this window)':>40}")
    failed = old.failed + new.failed
    retries = marks.get("count lock_timeout hit", 0) + marks.get("count hit lock_timeout", 0)
    waits = lock_waits(bench, log_start)
    stall = max(waits, default=0.0)
    print(f"failed transactions (pgbench failures + aborted clients): {failed}")
    for e in old.errors + new.errors:
        print("  ", e)
    print(f"longest client lock wait: {stall:.1f} ms ({len(waits)} waits over deadlock_timeout = 100 ms); "
          f"largest latency {max(t[1] for t in txs if t[2]):.1f} ms; lock_timeout retries logged by the migrator: {retries}")
    if args.verbose:
        marks_at = sorted([(v, k) for k, v in t.items()] + [(v, k) for k, v in marks.items() if not k.startswith("count")])
        for end, lat, _, group in sorted((x for x in txs if x[2]), key=lambda x: -x[1])[:8]:
            print(f"   {lat:8.1f} ms ({group}) ending at +{end - t['begin']:.2f} s; marks: "
                  + ", ".join(f"{k} +{v - t['begin']:.2f}" for v, k in marks_at))

    # The ledger: every acknowledged insert is there, in the surviving shape.
    name_col = "full_name" if complete else "name"
    have_old = int(psql(bench, f"SELECT count(*) FROM accounts WHERE {name_col} = 'bench old'"))
    have_new = int(psql(bench, f"SELECT count(*) FROM accounts WHERE {name_col} = 'bench new'"))
    whole = ("SELECT count(*) FROM accounts WHERE email IS NULL OR rating IS NULL" if complete
             else "SELECT count(*) FROM accounts WHERE rating IS NULL OR rating !~ '^[0-9]+$'")
    broken = int(psql(bench, whole))
    print(f"ledger: old inserts acknowledged {old.processed}, present {have_old}; "
          f"new inserts acknowledged {new.processed}, present {have_new}; rows not whole: {broken}")
    steady, backfill = results["steady state"], results["backfill"]
    ok = (failed == 0 and have_old == old.processed and have_new == new.processed and broken == 0
          and stall <= args.lock_timeout_ms + 100
          and (backfill is None or backfill["p99"] <= 2 * steady["p99"]))
    if backfill:
        print(f"p99 backfill / steady: {backfill['p99'] / steady['p99']:.2f} (target <= 2)")
    print("targets met" if ok else "TARGETS MISSED")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--steady", type=float, default=30.0,
                    help="seconds of steady state and of both versions live (a short window makes a noisy p99)")
    ap.add_argument("--lock-timeout-ms", type=int, default=500)
    ap.add_argument("--run-seconds", type=int, default=20,
                    help="length of each pgbench run of a group (a drained group finishes its current run)")
    ap.add_argument("--new-clients", type=int, default=8, help="clients of the new version (0: none)")
    ap.add_argument("--rate", type=int, default=2000, help="transactions per second of each client group (pgbench -R)")
    ap.add_argument("--batch-size", type=int, help="most rows per backfill batch (default: pgshift's)")
    ap.add_argument("--batch-time-ms", type=float, help="the time a backfill batch aims at (default: pgshift's)")
    ap.add_argument("--batch-delay-ms", type=float, help="pause between backfill batches (default: pgshift's)")
    ap.add_argument("--paths", default="complete,rollback")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--pool-mode", choices=["session", "transaction"], default="session",
                    help="pgshift's --pool-mode: transaction runs every client through its version's pool")
    ap.add_argument("--pool-size", type=int, default=8, help="pgshift's --pool-size in transaction mode")
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix")
    ap.add_argument("--verbose", action="store_true", help="print the slowest transactions and the phase marks")
    args = ap.parse_args()
    results = []
    for path in args.paths.split(","):
        # Each path gets a fresh cluster and proxy.
        bench = Bench(args)
        try:
            bench.start_postgres()
            workdir = tempfile.mkdtemp(prefix="pgshift-load-")
            os.chmod(workdir, 0o777)
            config = os.path.join(workdir, "pgshift.toml")
            with open(config, "w") as f:
                f.write(ROUTES)
            pool = (["--pool-mode", "transaction", "--pool-size", str(args.pool_size)]
                    if args.pool_mode == "transaction" else [])
            port = bench.start_pgshift(config=config, extra=pool)
            results.append(run_path(bench, args, port, path == "complete", workdir))
        finally:
            bench.close()
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
