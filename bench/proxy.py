#!/usr/bin/env python3
"""Proxy overhead benchmark: pgbench -S through pgshift, pgbouncer (session
mode) and directly against one throwaway cluster, in one run.

For each query mode (simple, prepared) and client count (1, 16, 64) it runs
the three targets back to back, interleaved round by round so that drift on
a shared machine hits all three alike, and reports the median TPS and average
latency plus the ratios pgshift/direct and pgshift/pgbouncer.

Both proxies reach Postgres over the same transport, a Unix-domain socket by
default (--upstream-transport tcp for loopback TCP); pgbench always reaches
all three targets over loopback TCP.

Usage: python3 bench/proxy.py [--duration 10] [--rounds 3] [--scale 10]
                              [--clients 1,16,64] [--modes simple,prepared]
                              [--upstream-transport unix|tcp] [--with-relay]

--with-relay adds bench/byte_relay.rs, a bare byte relay with two blocking
threads per connection: what any proxy in the path costs, before it does
anything.
Needs: a release build (cargo build --release), the PostgreSQL server
binaries, pgbench and pgbouncer (bash .ci/install provides them).
"""

import argparse
import glob
import json
import os
import pwd
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pgshift_exe() -> str:
    """The pgshift binary to measure: $PGSHIFT_EXE (to compare two builds
    on the same machine), else this checkout's release build."""
    return os.environ.get("PGSHIFT_EXE") or os.path.join(ROOT, "target", "release", "pgshift")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindir() -> str:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if not dirs:
        sys.exit("no PostgreSQL server binaries; run: bash .ci/install")
    return dirs[-1]


def as_owner(cmd: list[str]) -> list[str]:
    """Runs cmd as `postgres` when we are root (initdb and pgbouncer refuse root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port} after {timeout}s")


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = bindir()
        self.dir = tempfile.mkdtemp(prefix="pgshift-bench-")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.procs = []
        self.pg_port = free_port()

    def start_postgres(self):
        data = os.path.join(self.dir, "data")
        subprocess.run(as_owner([f"{self.bin}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-N"]),
                       check=True, stdout=subprocess.DEVNULL)
        conf = (f"\nport = {self.pg_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                "max_connections = 300\nshared_buffers = 256MB\nfsync = off\n")
        subprocess.run(as_owner(["sh", "-c", f"cat >> {data}/postgresql.conf"]), input=conf.encode(), check=True)
        subprocess.run(as_owner([f"{self.bin}/pg_ctl", "-D", data, "-l", f"{self.dir}/pg.log", "-w", "start"]),
                       check=True, stdout=subprocess.DEVNULL)
        self.stop_pg = as_owner([f"{self.bin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"])

    def upstream_url(self) -> str:
        if self.args.upstream_transport == "unix":
            return f"postgres:///postgres?host={self.dir}&port={self.pg_port}&user=postgres"
        return f"postgres://postgres@127.0.0.1:{self.pg_port}/postgres?sslmode=disable"

    def start_pgshift(self, log_level: str = "warn", json_log: bool = False, config: str | None = None,
                      extra: list[str] | None = None) -> int:
        """Starts `pgshift proxy` in front of the cluster; `config` is the path
        of a TOML file (for [[routes]]), `extra` more flags. Returns its port."""
        port = free_port()
        exe = pgshift_exe()
        if not os.path.exists(exe):
            sys.exit("build first: cargo build --release")
        env = dict(os.environ, RUST_LOG=log_level)
        proc = subprocess.Popen([exe, "proxy", "--listen", f"127.0.0.1:{port}", "--upstream", self.upstream_url()]
                                + (["--workers", str(self.args.workers)] if self.args.workers else [])
                                + (["--log-format", "json"] if json_log else [])
                                + (["--config", config] if config else [])
                                + (extra or []),
                                stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/pgshift.log", "w"), env=env)
        self.procs.append(proc)
        wait_port(port)
        return port

    def start_relay(self) -> int:
        """Starts bench/byte_relay.rs (cargo build --release --example
        byte_relay), the floor of a proxy's cost, in front of the cluster
        over the same upstream transport. Returns its port."""
        port = free_port()
        exe = os.path.join(ROOT, "target", "release", "examples", "byte_relay")
        if not os.path.exists(exe):
            sys.exit("build first: cargo build --release --example byte_relay")
        upstream = (os.path.join(self.dir, f".s.PGSQL.{self.pg_port}") if self.args.upstream_transport == "unix"
                    else f"127.0.0.1:{self.pg_port}")
        self.procs.append(subprocess.Popen([exe, f"127.0.0.1:{port}", upstream]))
        wait_port(port)
        return port

    def start_pgbouncer(self) -> int:
        port = free_port()
        ini = os.path.join(self.dir, "pgbouncer.ini")
        users = os.path.join(self.dir, "users.txt")
        with open(users, "w") as f:
            f.write('"postgres" ""\n')
        host = self.dir if self.args.upstream_transport == "unix" else "127.0.0.1"
        with open(ini, "w") as f:
            f.write(f"""[databases]
postgres = host={host} port={self.pg_port} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = session
max_client_conn = 500
default_pool_size = 200
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        os.chmod(ini, 0o644)
        os.chmod(users, 0o644)
        proc = subprocess.Popen(as_owner(["pgbouncer", ini]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port)
        return port

    def pgbench(self, port: int, args: list[str], env: dict | None = None) -> str:
        cmd = [f"{self.bin}/pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"] + args + ["postgres"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout + out.stderr

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if hasattr(self, "stop_pg"):
            subprocess.run(self.stop_pg, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def parse(output: str) -> tuple[float, float]:
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    lat = re.search(r"latency average = ([\d.]+) ms", output)
    if not tps or not lat:
        sys.exit(f"cannot read pgbench output:\n{output}")
    return float(tps.group(1)), float(lat.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per target; the median is reported")
    ap.add_argument("--scale", type=int, default=10, help="pgbench scale factor")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--modes", default="simple,prepared")
    ap.add_argument("--upstream-transport", choices=["unix", "tcp"], default="unix",
                    help="how pgshift and pgbouncer reach Postgres")
    ap.add_argument("--workers", type=int, default=0, help="pgshift --workers (0: its default)")
    ap.add_argument("--with-relay", action="store_true",
                    help="also measure bench/byte_relay.rs, a bare byte relay: the floor of any proxy's cost")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    bench = Bench(args)
    try:
        bench.start_postgres()
        targets = {"direct": bench.pg_port, "pgshift": bench.start_pgshift(), "pgbouncer": bench.start_pgbouncer()}
        if args.with_relay:
            targets["relay"] = bench.start_relay()
        bench.pgbench(bench.pg_port, ["-i", "-q", "-s", str(args.scale)])
        results = []
        for mode in args.modes.split(","):
            for clients in [int(c) for c in args.clients.split(",")]:
                runs = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, port in targets.items():
                        out = bench.pgbench(port, ["-n", "-S", "-M", mode, "-c", str(clients),
                                                   "-j", str(min(clients, 2)), "-T", str(args.duration)])
                        runs[name].append(parse(out))
                row = {"mode": mode, "clients": clients}
                for name, samples in runs.items():
                    row[name] = {"tps": statistics.median(s[0] for s in samples),
                                 "latency_ms": statistics.median(s[1] for s in samples)}
                row["pgshift/direct"] = row["pgshift"]["tps"] / row["direct"]["tps"]
                row["pgshift/pgbouncer"] = row["pgshift"]["tps"] / row["pgbouncer"]["tps"]
                row["pgbouncer/direct"] = row["pgbouncer"]["tps"] / row["direct"]["tps"]
                if "relay" in targets:
                    row["relay/direct"] = row["relay"]["tps"] / row["direct"]["tps"]
                results.append(row)
                print(f"{mode:8} c={clients:<3} "
                      + "  ".join(f"{n} {row[n]['tps']:8.0f} tps {row[n]['latency_ms']:6.3f} ms" for n in targets)
                      + f"  | pgshift/direct {row['pgshift/direct']:.2f}  pgshift/pgbouncer {row['pgshift/pgbouncer']:.2f}"
                      + f"  pgbouncer/direct {row['pgbouncer/direct']:.2f}"
                      + (f"  relay/direct {row['relay/direct']:.2f}" if "relay" in targets else ""), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
