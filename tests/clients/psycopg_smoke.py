"""A short psycopg 3 session through pgshift: the non-Rust driver check.

Usage: python3 psycopg_smoke.py CONNINFO. Prints "ok" and exits 0 on success;
any failed assertion or driver error exits non-zero with a traceback.
"""

import sys

import psycopg


def main(conninfo: str) -> None:
    with psycopg.connect(conninfo, application_name="psycopg-smoke", autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE py_items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[])")
            cur.executemany(
                "INSERT INTO py_items VALUES (%s, %s, %s, %s)",
                [(i, f"item {i}", i * 1.25, ["a", str(i)]) for i in range(100)],
            )
            conn.commit()

            # Server-side prepared statements (psycopg prepares on the fifth run or with prepare=True).
            for i in range(10):
                cur.execute("SELECT name FROM py_items WHERE id = %s", (i,), prepare=True)
                assert cur.fetchone() == (f"item {i}",)

            # Binary results.
            cur.execute("SELECT id, tags FROM py_items WHERE id = %s", (42,), binary=True)
            assert cur.fetchone() == (42, ["a", "42"])

            # COPY in both directions.
            with cur.copy("COPY py_items (id, name) FROM STDIN") as copy:
                for i in range(100, 200):
                    copy.write_row((i, f"copied {i}"))
            rows = []
            with cur.copy("COPY (SELECT id FROM py_items ORDER BY id) TO STDOUT") as copy:
                for row in copy.rows():
                    rows.append(int(row[0]))
            assert rows == list(range(200)), rows[:5]
            conn.commit()

            # An error inside a transaction, then rollback.
            try:
                cur.execute("SELECT 1 / 0")
                raise AssertionError("division by zero must fail")
            except psycopg.errors.DivisionByZero:
                conn.rollback()
            cur.execute("SELECT count(*) FROM py_items")
            assert cur.fetchone() == (200,)

            # Named server-side cursor (portal) fetched in batches.
            with conn.cursor(name="walk") as named:
                named.itersize = 7
                named.execute("SELECT id FROM py_items ORDER BY id")
                assert [r[0] for r in named] == list(range(200))
            conn.commit()

    # LISTEN/NOTIFY between two connections.
    with psycopg.connect(conninfo, autocommit=True) as listener, psycopg.connect(conninfo, autocommit=True) as sender:
        listener.execute("LISTEN py_channel")
        sender.execute("NOTIFY py_channel, 'hello from psycopg'")
        got = next(listener.notifies(timeout=10))
        assert got.payload == "hello from psycopg", got

    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
