"""Blue-green through pgshift with psycopg 3: a blue worker (old columns) and
a green worker (new columns) write and read continuously, each for its own
window, and report every error they see.

Usage: python3 psycopg_bluegreen.py CONNINFO BLUE_SECONDS GREEN_SECONDS
Prints one JSON object: {"blue": {"ok": n, "errors": [...]}, "green": {...}}.
Blue connects as application_name shop-blue at once; green as shop-green
once a line arrives on standard input (the operator has pinned its route).
"""

import json
import sys
import threading
import time

import psycopg


def worker(conninfo, app, green, seconds, out):
    ok, errors = 0, []
    deadline = time.monotonic() + seconds
    try:
        with psycopg.connect(conninfo, application_name=app, autocommit=True) as conn:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                try:
                    if green:
                        row = conn.execute(
                            "INSERT INTO accounts (full_name, rating, email) VALUES (%s, 2, %s) RETURNING id",
                            (f"py green {n}", f"g{n}@x"),
                        ).fetchone()
                        conn.execute("SELECT full_name, rating, email FROM accounts WHERE id = %s", row).fetchone()
                    else:
                        row = conn.execute(
                            "INSERT INTO accounts (name, rating) VALUES (%s, '2') RETURNING id", (f"py blue {n}",)
                        ).fetchone()
                        conn.execute("SELECT name, rating FROM accounts WHERE id = %s", row).fetchone()
                    ok += 1
                except psycopg.Error as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    if len(errors) > 5:
                        break
    except psycopg.Error as e:
        errors.append(f"connect: {e}")
    out[app] = {"ok": ok, "errors": errors}


def main(conninfo, blue_seconds, green_seconds):
    out = {}
    blue = threading.Thread(target=worker, args=(conninfo, "shop-blue", False, blue_seconds, out))
    blue.start()
    sys.stdin.readline()
    green = threading.Thread(target=worker, args=(conninfo, "shop-green", True, green_seconds, out))
    green.start()
    blue.join()
    green.join()
    print(json.dumps({"blue": out.get("shop-blue"), "green": out.get("shop-green")}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
