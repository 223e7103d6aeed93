//! Indexes and constraints follow a duplicated column (issue 14): an
//! `integer` primary key that two tables reference becomes `bigint`,
//! online, and ends with exactly the indexes, constraints, names, sequence
//! ownership, comments and replica identity it had, while both versions
//! write through the proxy.

use std::time::Duration;

use pgshift::migrate::engine::{Migrator, Settings};

use crate::harness::{self, Env};
use crate::migrate::{Lab, assert_same_catalog, round_trip};

/// Customers with a serial key, a unique email and a check over the key;
/// orders and invoices referencing them (one deferrable), with a partial
/// INCLUDE index, an expression index, a partial unique index and a
/// replica-identity index over the referencing column.
const SETUP: &str = "
CREATE TABLE customers (
  id serial PRIMARY KEY,
  email text NOT NULL CONSTRAINT customers_email_key UNIQUE,
  name text,
  CONSTRAINT name_short CHECK (length(name) < 100 AND id > 0));
COMMENT ON COLUMN customers.id IS 'customer number';
CREATE TABLE orders (
  id serial PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
  amount integer NOT NULL CHECK (amount >= 0),
  note text);
CREATE INDEX orders_customer_idx ON orders (customer_id) INCLUDE (amount) WHERE amount > 0;
CREATE INDEX orders_expr_idx ON orders ((customer_id + amount), lower(note) DESC);
CREATE UNIQUE INDEX orders_customer_note_idx ON orders (customer_id, note) WHERE note LIKE 'unique%';
CREATE UNIQUE INDEX orders_ident ON orders (id, customer_id);
ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_ident;
CREATE TABLE invoices (
  id bigserial PRIMARY KEY,
  customer_id integer REFERENCES customers (id) DEFERRABLE INITIALLY DEFERRED,
  total integer);
INSERT INTO customers (email, name) SELECT 'c' || g || '@x', 'c' || g FROM generate_series(1, 3000) g;
INSERT INTO orders (customer_id, amount, note) SELECT g % 3000 + 1, g % 7, 'seed' FROM generate_series(1, 6000) g;
INSERT INTO invoices (customer_id, total) SELECT g % 3000 + 1, g FROM generate_series(1, 1500) g;
";

const BIGINT: &str = r#"{"name": "02_bigint", "operations": [
  {"alter_column": {"table": "customers", "column": "id", "type": "bigint", "up": "id", "down": "id"}},
  {"alter_column": {"table": "orders", "column": "customer_id", "type": "bigint",
     "up": "customer_id", "down": "customer_id"}},
  {"alter_column": {"table": "invoices", "column": "customer_id", "type": "bigint",
     "up": "customer_id", "down": "customer_id"}}
]}"#;

/// Every index and constraint of the three tables, with its definition
/// and whether it is valid: what a migration that changes only types must
/// leave exactly as it was.
const SHAPE: &str = "
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
       || CASE WHEN convalidated THEN '' ELSE ' (not validated)' END
FROM pg_constraint WHERE conrelid IN ('customers'::regclass, 'orders'::regclass, 'invoices'::regclass)
UNION ALL
SELECT 'index ' || indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid)
       || CASE WHEN indisvalid THEN '' ELSE ' (invalid)' END
       || CASE WHEN indisreplident THEN ' (replica identity)' ELSE '' END
FROM pg_index WHERE indrelid IN ('customers'::regclass, 'orders'::regclass, 'invoices'::regclass)
ORDER BY 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_index_and_constraint_follows_a_key_to_bigint() {
    let lab = Lab::new(SETUP).await;
    let admin = lab.admin().await;
    let shape_before = harness::texts(&admin, SHAPE).await;
    let file = lab.file("02_bigint.json", BIGINT);

    // Rollback leaves the catalog exactly as it was.
    round_trip(&lab, &file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("02_bigint"), "baseline").await;
    // Both versions write customers and the orders that reference them.
    for (client, tag) in [(&old, "old"), (&new, "new")] {
        let id: i64 = client
            .query_one(
                &format!("INSERT INTO customers (email) VALUES ('{tag}@x') RETURNING id::bigint"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        client
            .batch_execute(&format!(
                "INSERT INTO orders (customer_id, amount, note) VALUES ({id}, 3, '{tag}');
                 INSERT INTO invoices (customer_id, total) VALUES ({id}, 9)"
            ))
            .await
            .unwrap();
    }
    // The carried foreign keys hold for both versions' writes.
    for client in [&old, &new] {
        let e = client
            .batch_execute("INSERT INTO orders (customer_id, amount) VALUES (999999, 1)")
            .await
            .unwrap_err();
        assert_eq!(harness::sqlstate(&e), "23503", "{e}");
        let e = client
            .batch_execute("INSERT INTO customers (email) VALUES ('c1@x')")
            .await
            .unwrap_err();
        assert_eq!(harness::sqlstate(&e), "23505", "{e}");
    }
    // The new version's key is bigint already.
    let type_: String = new
        .query_one(
            "SELECT pg_typeof(id)::text FROM customers WHERE email = 'new@x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(type_, "bigint");
    drop((old, new));
    lab.complete().await;

    // The same indexes and constraints, by name and definition, all valid.
    assert_eq!(harness::texts(&admin, SHAPE).await, shape_before);
    let types = harness::texts(
        &admin,
        "SELECT attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, atttypmod)
         FROM pg_attribute WHERE attname IN ('id', 'customer_id') AND attnum > 0
           AND attrelid IN ('customers'::regclass, 'orders'::regclass, 'invoices'::regclass)
         ORDER BY 1",
    )
    .await;
    assert_eq!(
        types,
        [
            "customers.id bigint",
            "invoices.customer_id bigint",
            "invoices.id bigint",
            "orders.customer_id bigint",
            "orders.id integer",
        ]
    );
    // The sequence is still the key's, widened; the comment stayed.
    let row = admin
        .query_one(
            "SELECT pg_get_serial_sequence('customers', 'id'),
                    (SELECT format_type(seqtypid, NULL) FROM pg_sequence
                     WHERE seqrelid = 'customers_id_seq'::regclass),
                    col_description('customers'::regclass,
                        (SELECT attnum FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'id'))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("public.customers_id_seq")
    );
    assert_eq!(row.get::<_, String>(1), "bigint");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("customer number")
    );
    // New keys go on from the sequence, past 2^31 too, and the foreign keys act.
    admin
        .batch_execute(
            "SELECT setval('customers_id_seq', 3000000000);
             INSERT INTO customers (email) VALUES ('big@x');
             INSERT INTO orders (customer_id, amount) SELECT id, 1 FROM customers WHERE email = 'big@x'",
        )
        .await
        .unwrap();
    let big: i64 = admin
        .query_one("SELECT id FROM customers WHERE email = 'big@x'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big, 3_000_000_001);
    admin
        .batch_execute(
            "DELETE FROM invoices WHERE customer_id = 1; DELETE FROM customers WHERE id = 1",
        )
        .await
        .unwrap();
    let orphans: i64 = admin
        .query_one("SELECT count(*) FROM orders WHERE customer_id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "ON DELETE CASCADE came along");
    // No temporary name is left.
    let leftovers = harness::texts(
        &admin,
        "SELECT relname FROM pg_class WHERE relname LIKE '\\_pgshift%'
         UNION ALL SELECT conname FROM pg_constraint WHERE conname LIKE '\\_pgshift%'
         UNION ALL SELECT attrelid::regclass || '.' || attname FROM pg_attribute
                   WHERE attname LIKE '\\_pgshift%' AND NOT attisdropped",
    )
    .await;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// What cannot follow a duplicate is refused at start, naming it, with
/// nothing changed: an exclusion constraint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_carried_is_refused_by_name() {
    let lab = Lab::new(
        "CREATE EXTENSION IF NOT EXISTS btree_gist;
         CREATE TABLE rooms (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, slot int4range,
           room int, EXCLUDE USING gist (room WITH =, slot WITH &&));",
    )
    .await;
    let before = lab.snapshot().await;
    for (column, expected) in [("room", "exclusion constraint \"rooms_room_slot_excl\"")] {
        let file = lab.file(
            &format!("02_{column}.json"),
            &format!(
                r#"{{"operations": [{{"alter_column": {{"table": "rooms", "column": "{column}",
                    "type": "bigint", "up": "{column}", "down": "{column}"}}}}]}}"#
            ),
        );
        let e = lab
            .migrator()
            .await
            .start(&file)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{e}");
        assert!(e.contains("/operations/0/alter_column"), "{e}");
    }
    assert_same_catalog(&before, &lab.snapshot().await);
}

/// An identity key (GENERATED ALWAYS, INCREMENT BY 5) that another table references
/// becomes bigint: both versions insert without giving the key during the
/// migration, and after complete the key is an identity of the same kind,
/// over its own sequence, going on from the last value given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_key_becomes_bigint_and_goes_on_counting() {
    let lab = Lab::new(
        "CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY (INCREMENT BY 5 CACHE 10) PRIMARY KEY, title text);
         CREATE TABLE notes (id serial PRIMARY KEY, ticket_id int NOT NULL REFERENCES tickets);
         INSERT INTO tickets (title) SELECT 't' || g FROM generate_series(1, 500) g;
         INSERT INTO notes (ticket_id) SELECT id FROM tickets;",
    )
    .await;
    let file = lab.file(
        "02_ids.json",
        r#"{"operations": [
          {"alter_column": {"table": "tickets", "column": "id", "type": "bigint"}},
          {"alter_column": {"table": "notes", "column": "ticket_id", "type": "bigint"}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    let old = lab.client(None, "baseline").await;
    let new = lab.client(Some("02_ids"), "baseline").await;
    let mut ids = Vec::new();
    for client in [&old, &new, &old] {
        let id: i64 = client
            .query_one(
                "INSERT INTO tickets (title) VALUES ('live') RETURNING id::int8",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        client
            .execute(&format!("INSERT INTO notes (ticket_id) VALUES ({id})"), &[])
            .await
            .unwrap();
        ids.push(id);
    }
    // Distinct (each session caches its own run of 10 values).
    let distinct: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    drop((old, new));
    lab.complete().await;
    let admin = lab.admin().await;
    let row = admin
        .query_one(
            "SELECT a.attidentity::text, format_type(a.atttypid, a.atttypmod),
                    pg_get_serial_sequence('tickets', 'id'),
                    (SELECT count(*) FROM pg_constraint WHERE conname = 'notes_ticket_id_fkey' AND convalidated)
             FROM pg_attribute a WHERE a.attrelid = 'tickets'::regclass AND a.attname = 'id'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a");
    assert_eq!(row.get::<_, String>(1), "bigint");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("public.tickets_id_seq")
    );
    assert_eq!(row.get::<_, i64>(3), 1);
    // The sequence's own options came along; its bound widened with the type.
    let options = harness::texts(
        &admin,
        "SELECT seqincrement || ' ' || seqcache || ' ' || seqmax FROM pg_sequence
         WHERE seqrelid = 'tickets_id_seq'::regclass",
    )
    .await;
    assert_eq!(options, ["5 10 9223372036854775807"]);
    let next: i64 = admin
        .query_one(
            "INSERT INTO tickets (title) VALUES ('after') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(next > *ids.iter().max().unwrap(), "{next} after {ids:?}");
    let e = admin
        .execute("INSERT INTO tickets (id, title) VALUES (1, 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        crate::harness::sqlstate(&e),
        "428C9",
        "still GENERATED ALWAYS: {e}"
    );
}

const OLD_SCRIPT: &str = "BEGIN;
INSERT INTO customers (email) VALUES ('old-' || md5(random()::text)) RETURNING id \\gset
INSERT INTO orders (customer_id, amount, note) VALUES (:id, 1, 'old');
\\set c random(1, 3000)
INSERT INTO invoices (customer_id, total) VALUES (:c, 1);
UPDATE customers SET name = 'touched' WHERE id = :c;
COMMIT;
";

fn new_script(tag: &str) -> String {
    OLD_SCRIPT.replace("old", tag)
}

/// How many transactions pgbench reports it processed.
fn processed(out: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

/// The issue's figure: `integer` → `bigint` on a primary key referenced by
/// two tables, under pgbench load through the proxy, with both versions
/// writing, ends with zero client errors, a ledger in which every
/// reported transaction's rows are there once, and validated foreign keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_key_becomes_bigint_under_pgbench_load() {
    let env = Env::start().await;
    let admin = env.direct().await;
    admin.batch_execute(SETUP).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("02_bigint.json");
    std::fs::write(&file, BIGINT).unwrap();
    let mut m = Migrator::connect(Settings {
        batch_size: 200,
        ..Settings::new(env.direct_url())
    })
    .await
    .unwrap();

    // The old version writes from before start until after it.
    let old = harness::pgbench_as(&env, "old", None, OLD_SCRIPT, 6, dir.path(), &[]);
    let operator = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        m.start(&file).await.unwrap();
        // The new version writes while the old one still does...
        let new = harness::pgbench_as(
            &env,
            "new",
            Some("02_bigint"),
            &new_script("new"),
            3,
            dir.path(),
            &[],
        )
        .await;
        // ...and through complete, once the old version's sessions are gone.
        let script = new_script("during");
        let during = harness::pgbench_as(
            &env,
            "during",
            Some("02_bigint"),
            &script,
            4,
            dir.path(),
            &[],
        );
        let complete = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            crate::bluegreen::finish_when_drained(&mut m, true).await;
        };
        let (during, ()) = tokio::join!(during, complete);
        (new, during)
    };
    let (old, (new, during)) = tokio::join!(old, operator);
    for (name, (ok, out)) in [("old", &old), ("new", &new), ("during", &during)] {
        assert!(ok, "{name} pgbench failed:\n{out}");
        assert!(
            out.contains("number of failed transactions: 0"),
            "{name}: {out}"
        );
    }
    // The ledger: each reported transaction left one order and one invoice.
    for (tag, (_, out)) in [("old", &old), ("new", &new), ("during", &during)] {
        let n = processed(out);
        assert!(n > 0, "{tag} did no work");
        let orders: i64 = admin
            .query_one("SELECT count(*) FROM orders WHERE note = $1", &[&tag])
            .await
            .unwrap()
            .get(0);
        let customers: i64 = admin
            .query_one(
                "SELECT count(*) FROM customers WHERE email LIKE $1 || '-%'",
                &[&tag],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!((orders, customers), (n, n), "{tag}: {out}");
    }
    let invoices: i64 = admin
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        invoices,
        1500 + processed(&old.1) + processed(&new.1) + processed(&during.1)
    );
    // Every foreign key is there, validated, over bigint columns, and holds.
    let fks = harness::texts(
        &admin,
        "SELECT conrelid::regclass || ' ' || conname || ' ' || convalidated
         FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1",
    )
    .await;
    assert_eq!(
        fks,
        [
            "invoices invoices_customer_id_fkey true",
            "orders orders_customer_id_fkey true",
        ]
    );
    let broken: i64 = admin
        .query_one(
            "SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(broken, 0);
    m.close().await.unwrap();
}

/// Hostile names survive the carry-over: quotes, spaces, semicolons, case
/// and a 63-byte name (whose temporary name is shortened with a hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_carried_verbatim() {
    let long = "i".repeat(63);
    let lab = Lab::new(&format!(
        r#"CREATE TABLE "Order Items" ("Id" serial PRIMARY KEY, "Amount ($)" integer NOT NULL,
             CONSTRAINT "chk; DROP TABLE x" CHECK ("Amount ($)" >= 0));
           CREATE INDEX "{long}" ON "Order Items" (("Amount ($)" + 1)) WHERE "Amount ($)" > 0;
           CREATE UNIQUE INDEX "we""ird" ON "Order Items" ("Amount ($)", "Id");
           CREATE TABLE "Refs" ("Item" integer REFERENCES "Order Items" ("Id"));
           INSERT INTO "Order Items" ("Amount ($)") SELECT g FROM generate_series(1, 100) g;
           INSERT INTO "Refs" SELECT g FROM generate_series(1, 100) g;"#
    ))
    .await;
    let admin = lab.admin().await;
    let shape = "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE connamespace = 'public'::regnamespace
                 UNION ALL SELECT pg_get_indexdef(indexrelid) FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace
                 ORDER BY 1";
    let before = harness::texts(&admin, shape).await;
    let file = lab.file(
        "02_hostile.json",
        r#"{"operations": [
          {"alter_column": {"table": "Order Items", "column": "Amount ($)", "type": "bigint"}},
          {"alter_column": {"table": "Order Items", "column": "Id", "type": "bigint"}}
        ]}"#,
    );
    round_trip(&lab, &file).await;
    lab.complete().await;
    assert_eq!(harness::texts(&admin, shape).await, before);
}

/// Production's shape: the owner changes `orders.id` and the key that
/// references it to bigint while `app` (no ownership, SCRAM password)
/// writes through the proxy on both versions; after complete `app` still
/// writes, with the sequence grant kept, and every write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_role_writes_through_a_key_to_bigint() {
    use pgshift::migrate::engine::Pinned;
    let shop = crate::production::Shop::open().await;
    shop.env
        .direct()
        .await
        .batch_execute(
            "SET ROLE owner;
             CREATE TABLE lines (id serial PRIMARY KEY, order_id integer NOT NULL REFERENCES orders, qty integer);
             INSERT INTO lines (order_id, qty) SELECT id, 1 FROM orders;
             RESET ROLE;",
        )
        .await
        .unwrap();
    let file = shop.dir.path().join("02_keys.json");
    std::fs::write(
        &file,
        r#"{"operations": [
          {"alter_column": {"table": "orders", "column": "id", "type": "bigint"}},
          {"alter_column": {"table": "lines", "column": "order_id", "type": "bigint"}}
        ]}"#,
    )
    .unwrap();
    let shop_ref = &shop;
    let write = |tag: &'static str| async move {
        let client = shop_ref
            .app(if tag == "new" { Some("02_keys") } else { None })
            .await;
        let id: i64 = client
            .query_one(
                "INSERT INTO orders (customer_name, amount, status) VALUES ($1, '1', 'new') RETURNING id::int8",
                &[&tag],
            )
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"))
            .get(0);
        client
            .execute(
                &format!("INSERT INTO lines (order_id, qty) VALUES ({id}, 7)"),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
    };
    write("before").await;
    let mut m = shop.migrator("owner").await;
    m.start(&file).await.unwrap();
    write("old").await;
    write("new").await;
    m.complete(Pinned::Refuse).await.unwrap();
    m.close().await.unwrap();
    write("after").await;
    let admin = shop.env.direct().await;
    let landed = harness::texts(
        &admin,
        "SELECT o.customer_name || ' ' || pg_typeof(o.id)::text || ' ' || l.qty
         FROM orders o JOIN lines l ON l.order_id = o.id
         WHERE o.customer_name IN ('before', 'old', 'new', 'after') ORDER BY o.id",
    )
    .await;
    assert_eq!(
        landed,
        [
            "before bigint 7",
            "old bigint 7",
            "new bigint 7",
            "after bigint 7"
        ]
    );
}
