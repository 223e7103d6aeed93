#!/usr/bin/env python3
"""Transaction pooling benchmark: pgbench through pgshift (--pool-mode
transaction) and pgbouncer (pool_mode = transaction), both with a pool of
16 server connections, and directly against Postgres where its
max_connections allows, in one run on one throwaway cluster.

For each workload (select-only -S, tpcb-like), query mode (simple,
prepared) and client count (200, 1000 by default) the targets run back to
back, interleaved round by round so that drift on a shared machine hits
all alike. It reports the median TPS, the ratio pgshift/pgbouncer, the
failed transactions pgbench counts, and the most backends of the target's
role (pg_stat_activity, sampled every 100 ms) as "after logins/whole run":
from 3 s on only the pool serves; before, each login's own backend exists
until it joins the pool or is closed (pgshift stores no password, so a
login is Postgres's to check).

Usage: python3 bench/pool.py [--duration 10] [--rounds 3] [--scale 10]
                             [--clients 200,1000] [--pool-size 16]
                             [--workloads select,tpcb] [--modes simple,prepared]
                             [--json FILE]
pgbouncer before 1.21 (Debian 12 has 1.18) cannot run prepared statements in
transaction mode; prepared runs then compare pgshift with direct only.
Needs: a release build (cargo build --release), the PostgreSQL server
binaries, pgbench and pgbouncer (bash .ci/install provides them).
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy import Bench, free_port, pgshift_exe, wait_port  # noqa: E402


def pgbouncer_tracks_prepares() -> bool:
    """pgbouncer maps prepared statements in transaction mode from 1.21 on."""
    out = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (1, 21)


# The role each target's clients log in as.
USERS = {"pgshift": "via_pgshift", "pgbouncer": "via_pgbouncer", "direct": "via_direct"}


class PoolBench(Bench):

    def start_pooled_pgshift(self, pool_size: int) -> int:
        port = free_port()
        exe = pgshift_exe()
        if not os.path.exists(exe):
            sys.exit("build first: cargo build --release")
        env = dict(os.environ, RUST_LOG="warn")
        proc = subprocess.Popen(
            [exe, "proxy", "--listen", f"127.0.0.1:{port}", "--upstream", self.upstream_url(),
             "--pool-mode", "transaction", "--pool-size", str(pool_size), "--max-clients", "5000"]
            + (["--workers", str(self.args.workers)] if self.args.workers else []),
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/pgshift.log", "w"), env=env)
        self.procs.append(proc)
        wait_port(port)
        return port

    def start_pooled_pgbouncer(self, pool_size: int) -> int:
        port = free_port()
        ini = os.path.join(self.dir, "pgbouncer-tx.ini")
        users = os.path.join(self.dir, "users.txt")
        with open(users, "w") as f:
            f.write('"postgres" ""\n"via_pgbouncer" ""\n')
        with open(ini, "w") as f:
            f.write(f"""[databases]
postgres = host={self.dir} port={self.pg_port} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
max_client_conn = 5000
default_pool_size = {pool_size}
{"max_prepared_statements = 200" if pgbouncer_tracks_prepares() else ""}
logfile = {self.dir}/pgbouncer-tx.log
pidfile = {self.dir}/pgbouncer-tx.pid
""")
        os.chmod(ini, 0o644)
        os.chmod(users, 0o644)
        proc = subprocess.Popen(["runuser", "-u", "postgres", "--", "pgbouncer", ini] if os.geteuid() == 0
                                else ["pgbouncer", ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port)
        return port

    def psql(self, sql: str) -> str:
        return subprocess.run(
            [f"{self.bin}/psql", "-h", self.dir, "-p", str(self.pg_port), "-U", "postgres", "-XAtc", sql,
             "postgres"], capture_output=True, text=True, check=True).stdout

    def make_roles(self):
        """One role per target, so that each one's backends can be told apart."""
        for role in USERS.values():
            self.psql(f"CREATE ROLE {role} LOGIN SUPERUSER")

    def backends(self, role: str) -> int:
        """Backends of `role` (the target's own) now."""
        out = self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'")
        return int(out.strip() or 0)


def run_sampled(bench: PoolBench, name: str, port: int, args: list[str]) -> tuple[str, int, int]:
    """Runs pgbench as target `name`'s role; returns its output and the
    most backends of that role seen meanwhile: over the whole run, and
    after the clients' logins (from 3 s on), when only the pool serves."""
    peak = [0, 0]
    done = threading.Event()
    began = time.time()

    def sample():
        while not done.wait(0.1):
            n = bench.backends(USERS[name])
            peak[0] = max(peak[0], n)
            if time.time() - began >= 3:
                peak[1] = max(peak[1], n)

    t = threading.Thread(target=sample)
    t.start()
    cmd = [f"{bench.bin}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", USERS[name]] + args + ["postgres"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    done.set()
    t.join()
    if out.returncode not in (0, 2):
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout + out.stderr, peak[0], peak[1]


def parse(output: str) -> tuple[float, int]:
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if not tps:
        sys.exit(f"cannot read pgbench output:\n{output}")
    return float(tps.group(1)), int(failed.group(1)) if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", default="200,1000")
    ap.add_argument("--pool-size", type=int, default=16)
    ap.add_argument("--workloads", default="select,tpcb")
    ap.add_argument("--modes", default="simple,prepared")
    ap.add_argument("--workers", type=int, default=0, help="pgshift --workers (0: its default)")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.upstream_transport = "unix"
    # 1,000 clients and their server side need more than 1,024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    bench = PoolBench(args)
    try:
        bench.start_postgres()
        bench.make_roles()
        targets = {"pgshift": bench.start_pooled_pgshift(args.pool_size),
                   "pgbouncer": bench.start_pooled_pgbouncer(args.pool_size),
                   "direct": bench.pg_port}
        bench.pgbench(bench.pg_port, ["-i", "-q", "-s", str(args.scale)])
        results = []
        for workload in args.workloads.split(","):
            for mode in args.modes.split(","):
                for clients in [int(c) for c in args.clients.split(",")]:
                    # max_connections is 300: direct serves 200 clients, not 1,000.
                    names = [n for n in targets if n != "direct" or clients < 290]
                    # Before 1.21 pgbouncer cannot run prepared statements in transaction mode.
                    if mode == "prepared" and not pgbouncer_tracks_prepares():
                        names.remove("pgbouncer")
                    runs = {n: [] for n in names}
                    peaks = {n: 0 for n in names}
                    serving = {n: 0 for n in names}
                    for _ in range(args.rounds):
                        for name in names:
                            pgargs = ["-n", "-M", mode, "-c", str(clients), "-j", "2", "-T", str(args.duration)]
                            if workload == "select":
                                pgargs.append("-S")
                            out, peak, steady = run_sampled(bench, name, targets[name], pgargs)
                            runs[name].append(parse(out))
                            peaks[name] = max(peaks[name], peak)
                            serving[name] = max(serving[name], steady)
                    row = {"workload": workload, "mode": mode, "clients": clients}
                    for name in names:
                        row[name] = {"tps": statistics.median(s[0] for s in runs[name]),
                                     "failed": sum(s[1] for s in runs[name]),
                                     "peak_backends": peaks[name],
                                     "backends_after_logins": serving[name]}
                    for ref in ("pgbouncer", "direct"):
                        if ref in row:
                            row[f"pgshift/{ref}"] = row["pgshift"]["tps"] / row[ref]["tps"]
                    results.append(row)
                    print(f"{workload:6} {mode:8} c={clients:<4} "
                          + "  ".join(f"{n} {row[n]['tps']:8.0f} tps failed {row[n]['failed']} "
                                      f"backends {row[n]['backends_after_logins']}/{row[n]['peak_backends']}"
                                      for n in names)
                          + "  | " + "  ".join(f"{k} {row[k]:.2f}" for k in row if k.startswith("pgshift/")),
                          flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
