#!/usr/bin/env python3
"""Version-routing overhead: pgbench -S through pgshift on a table touched by
an active migration, with the sessions on the new version (served through
the version schema's view, their Query/Parse messages scanned by the
rewriter), against the same proxy with no migration active, in one run.

Rounds alternate: no migration, then `pgshift start`, the new version, then
`pgshift rollback`, so both sides see the same machine. The migration
renames pgbench_accounts.filler, which touches the table without a long
backfill. It reports the median TPS of each side, their ratio, and the
rewrite cache hit rate from the proxy's connection-close log lines.

Usage: python3 bench/migration.py [--duration 8] [--rounds 3] [--clients 16]
Needs a release build (cargo build --release) and the PostgreSQL binaries.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, ROOT, parse, pgshift_exe  # noqa: E402

MIGRATION = '{"operations": [{"rename_column": {"table": "pgbench_accounts", "from": "filler", "to": "pad"}}]}'


def pgshift(bench: Bench, *args: str) -> None:
    """Runs a migrator command. Sessions that just ended stay registered for
    up to a heartbeat, so a refusal for pinned sessions is retried."""
    exe = pgshift_exe()
    url = f"postgres://postgres@127.0.0.1:{bench.pg_port}/postgres?sslmode=disable"
    for _ in range(20):
        out = subprocess.run([exe, *args, "--database-url", url], capture_output=True, text=True,
                             env=dict(os.environ, RUST_LOG="warn"))
        if out.returncode == 0:
            return
        if "session(s) are pinned" not in out.stderr:
            break
        time.sleep(0.5)
    sys.exit(f"pgshift {' '.join(args)} failed:\n{out.stdout}{out.stderr}")


def wait_for_version(port: int, env: dict) -> None:
    """Waits until the proxy on `port` serves the version that `env`'s
    PGOPTIONS asks for: proxies hear of a started migration through NOTIFY,
    a moment after `pgshift start` returns."""
    for _ in range(100):
        probe = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                                "-Atc", "SELECT 1"], capture_output=True, text=True, env=env)
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    sys.exit(f"the proxy does not serve the new version: {probe.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--modes", default="simple,prepared")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix")
    args = ap.parse_args()

    bench = Bench(args)
    try:
        bench.start_postgres()
        port = bench.start_pgshift(log_level="info", json_log=True)
        bench.pgbench(bench.pg_port, ["-i", "-q", "-s", str(args.scale)])
        migration = os.path.join(tempfile.mkdtemp(prefix="pgshift-bench-mig-"), "01_bench.json")
        with open(migration, "w") as f:
            f.write(MIGRATION)
        new_version = dict(os.environ, PGOPTIONS="-c pgshift.version=01_bench")
        # An ORM-style statement: schema-qualified, sent as an unnamed Parse
        # every time (-M extended), so each one is rewritten (to the view) or
        # served from the session's rewrite cache.
        orm = os.path.join(os.path.dirname(migration), "orm.sql")
        with open(orm, "w") as f:
            f.write("\\set aid random(1, 100000 * :scale)\n"
                    "SELECT abalance FROM public.pgbench_accounts WHERE aid = :aid;\n")
        common = ["-n", "-c", str(args.clients), "-j", str(min(args.clients, 2)), "-T", str(args.duration)]
        workloads = [(f"-S {m}", ["-S", "-M", m]) for m in args.modes.split(",")]
        workloads.append(("orm extended", ["-f", orm, "-M", "extended"]))
        for label, workload in workloads:
            plain, versioned = [], []
            run = workload + common
            for _ in range(args.rounds):
                plain.append(parse(bench.pgbench(port, run))[0])
                pgshift(bench, "start", migration)
                # The proxy hears of the migration through NOTIFY; pgbench's
                # sessions then ask for the new version.
                wait_for_version(port, new_version)
                versioned.append(parse(bench.pgbench(port, run, env=new_version))[0])
                pgshift(bench, "rollback")
            p, v = statistics.median(plain), statistics.median(versioned)
            print(f"{label:13} c={args.clients:<3} no migration {p:8.0f} tps  new version during migration {v:8.0f} tps"
                  f"  | ratio {v / p:.2f}", flush=True)
        hits = misses = 0
        with open(f"{bench.dir}/pgshift.log") as log:
            for line in log:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("message") == "connection closed":
                    hits += event.get("rewrite_cache_hits", 0)
                    misses += event.get("rewrite_cache_misses", 0)
        rate = f"{hits / (hits + misses):.4f}" if hits + misses else "n/a"
        print(f"rewrite cache (texts the scan flagged): {hits} hits, {misses} misses, hit rate {rate}")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
