//! pgshift in production's shape: tables owned by an `owner` role, an
//! application role `app` that is neither owner nor superuser, SCRAM
//! passwords for both, and the owner migrating while the application reads
//! and writes through the proxy. Version schemas carry the privileges of
//! what they show; a write around the views raises instead of being
//! reverted; and a version's shape survives its migration's complete.

use std::time::Duration;

use pgshift::cluster::ClusterOptions;
use pgshift::migrate::engine::{Migrator, Pinned, Settings};
use tokio_postgres::Client;

use crate::harness::{self, Env};

/// Superuser and local connections trust; every other role uses SCRAM.
pub const HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
";

/// The owner's schema: `orders`, granted to `app`, and default privileges
/// that give `app` every table and sequence the schema's owner creates.
const SETUP: &str = "
SET password_encryption = 'scram-sha-256';
CREATE ROLE owner LOGIN PASSWORD 'pw-owner';
CREATE ROLE app LOGIN PASSWORD 'pw-app';
ALTER SCHEMA public OWNER TO owner;
GRANT CREATE ON DATABASE postgres TO owner;
SET ROLE owner;
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_name text NOT NULL,
    amount text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    status text
);
INSERT INTO orders (customer_name, amount, status)
    SELECT 'customer ' || g, (g * 1.25)::text, 'new' FROM generate_series(1, 50) g;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO app;
GRANT USAGE ON SEQUENCE orders_id_seq TO app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO app;
RESET ROLE;
";

/// Version 02_amounts: `amount` becomes numeric (a duplicated column), and
/// a new table `refunds`.
pub const MIGRATION: &str = r#"{"name": "02_amounts", "operations": [
  {"alter_column": {"table": "orders", "column": "amount", "type": "numeric(10,2)",
                    "up": "amount::numeric", "down": "amount::text"}},
  {"create_table": {"name": "refunds", "columns": [
      {"name": "id", "type": "serial", "pk": true},
      {"name": "order_id", "type": "integer"}]}}
]}"#;

/// A cluster in production's shape with a proxy in front of it.
pub struct Shop {
    pub env: Env,
    pub dir: tempfile::TempDir,
}

impl Shop {
    pub async fn open() -> Shop {
        Shop::open_with(|_| {}).await
    }

    /// [`Shop::open`] with the proxy's settings adjusted by `tweak`.
    pub async fn open_with(tweak: impl FnOnce(&mut pgshift::proxy::config::ProxyConfig)) -> Shop {
        let options = ClusterOptions {
            hba: Some(HBA.to_string()),
            ..Default::default()
        };
        let env = Env::with(options, tweak).await;
        env.direct().await.batch_execute(SETUP).await.unwrap();
        Shop {
            env,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A URL through the proxy as `user` with its password, asking for
    /// `version` when given.
    pub fn url(&self, user: &str, version: Option<&str>) -> String {
        let mut url = format!(
            "postgres://{user}:pw-{user}@{}/postgres?sslmode=disable",
            self.env.proxy
        );
        if let Some(v) = version {
            url.push_str(&format!("&options=-c%20pgshift.version%3D{v}"));
        }
        url
    }

    pub async fn app(&self, version: Option<&str>) -> Client {
        harness::connect(&self.url("app", version)).await
    }

    /// The migrator's settings as `user` (the owner, or the superuser as an
    /// admin role that owns nothing).
    pub fn settings(&self, user: &str) -> Settings {
        let url = if user == "postgres" {
            self.env.direct_url()
        } else {
            self.env
                .cluster
                .url("postgres")
                .replace("postgres@", &format!("{user}:pw-{user}@"))
        };
        Settings::new(url)
    }

    pub async fn migrator(&self, user: &str) -> Migrator {
        Migrator::connect(self.settings(user))
            .await
            .unwrap_or_else(|e| panic!("migrator as {user}: {e}"))
    }

    /// MIGRATION, written to the shop's directory.
    pub fn migration_file(&self) -> std::path::PathBuf {
        let file = self.dir.path().join("02_amounts.json");
        std::fs::write(&file, MIGRATION).unwrap();
        file
    }

    /// Starts MIGRATION as `user`.
    pub async fn start(&self, user: &str) {
        let file = self.migration_file();
        let mut m = self.migrator(user).await;
        m.start(&file)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        m.close().await.unwrap();
    }

    pub async fn complete(&self, user: &str) {
        let mut m = self.migrator(user).await;
        m.complete(Pinned::Refuse)
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
        m.close().await.unwrap();
    }
}

/// The columns `SELECT *` gives on `client` for `table`.
pub async fn star(client: &Client, table: &str) -> Vec<String> {
    let statement = client
        .prepare(&format!("SELECT * FROM {table}"))
        .await
        .unwrap();
    statement
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect()
}

/// `pgshift.version` and the schemas a session really searches.
pub async fn standing(client: &Client) -> (String, Vec<String>) {
    let row = client
        .query_one(
            "SELECT current_setting('pgshift.version', true), current_schemas(false)::text[]",
            &[],
        )
        .await
        .unwrap();
    (
        row.get::<_, Option<String>>(0).unwrap_or_default(),
        row.get(1),
    )
}

const SHAPE: [&str; 5] = ["id", "customer_name", "amount", "created_at", "status"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_role_reads_and_writes_both_versions() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    let old = shop.app(None).await;
    let new = shop.app(Some("02_amounts")).await;
    // Each session stands on its version schema: Postgres would skip one
    // the role may not use, without a word.
    assert_eq!(
        standing(&old).await,
        (
            "baseline".into(),
            vec!["public_baseline".into(), "public".into()]
        )
    );
    assert_eq!(
        standing(&new).await,
        (
            "02_amounts".into(),
            vec!["public_02_amounts".into(), "public".into()]
        )
    );
    assert_eq!(
        star(&old, "orders").await,
        SHAPE,
        "no internal column shows"
    );
    assert_eq!(star(&new, "orders").await, SHAPE);

    // The new version's write stays written, and the old version sees it.
    let row = new
        .query_one(
            "UPDATE orders SET amount = 5.55 WHERE id = 2 RETURNING id, amount::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "5.55");
    let amounts = |c: &'static str| {
        let c = if c == "old" { &old } else { &new };
        async move {
            c.query_one("SELECT amount::text FROM orders WHERE id = 2", &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(amounts("new").await, "5.55");
    assert_eq!(amounts("old").await, "5.55");
    old.execute("UPDATE orders SET amount = '7.5' WHERE id = 3", &[])
        .await
        .unwrap();
    let three: String = new
        .query_one("SELECT amount::text FROM orders WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(three, "7.50");
    old.execute(
        "INSERT INTO orders (customer_name, amount) VALUES ('via old', '1.5')",
        &[],
    )
    .await
    .unwrap();
    new.execute(
        "INSERT INTO orders (customer_name, amount) VALUES ('via new', 2.5)",
        &[],
    )
    .await
    .unwrap();

    // The table the migration creates follows the schema's default privileges.
    new.execute("INSERT INTO refunds (order_id) VALUES (2)", &[])
        .await
        .unwrap();
    let refunds: i64 = new
        .query_one("SELECT count(*) FROM refunds", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(refunds, 1);
    // The old version has no refunds table.
    let err = old.query("SELECT * FROM refunds", &[]).await.unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42P01", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_revokes_during_a_migration_reach_the_views() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    let owner = harness::connect(&shop.settings("owner").database_url).await;
    owner
        .batch_execute(
            "REVOKE DELETE ON orders FROM app;
             SET password_encryption = 'scram-sha-256';",
        )
        .await
        .unwrap();
    shop.env
        .direct()
        .await
        .batch_execute("CREATE ROLE reporter LOGIN PASSWORD 'pw-reporter'")
        .await
        .unwrap();
    owner
        .batch_execute(
            "GRANT SELECT ON orders TO reporter; GRANT UPDATE (amount) ON orders TO reporter",
        )
        .await
        .unwrap();
    drop(owner);
    // As an admin role that owns nothing: the created table must still get
    // the schema owner's default privileges.
    shop.complete("postgres").await;

    let app = shop.app(None).await;
    assert_eq!(
        standing(&app).await,
        (
            "02_amounts".into(),
            vec!["public_02_amounts".into(), "public".into()]
        )
    );
    let err = app.execute("DELETE FROM orders WHERE id = 1", &[]).await;
    let err = err.expect_err("DELETE was revoked during the migration");
    assert_eq!(harness::sqlstate(&err), "42501", "{err}");
    app.execute("INSERT INTO refunds (order_id) VALUES (1)", &[])
        .await
        .unwrap();

    // A role granted privileges mid-migration, one of them on a column,
    // has them through the kept version schema, and nothing more.
    let reporter = harness::connect(&shop.url("reporter", None)).await;
    assert_eq!(
        standing(&reporter).await.1,
        vec!["public_02_amounts".to_string(), "public".to_string()]
    );
    assert_eq!(star(&reporter, "orders").await, SHAPE);
    reporter
        .execute("UPDATE orders SET amount = 4.75 WHERE id = 4", &[])
        .await
        .unwrap();
    let amount: String = reporter
        .query_one("SELECT amount::text FROM orders WHERE id = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(amount, "4.75");
    let err = reporter
        .execute("UPDATE orders SET status = 'x' WHERE id = 4", &[])
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42501", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_around_the_views_raises_instead_of_being_reverted() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    // A new-version session that writes the physical table's old column
    // (as one would through a role without the version schema) would have
    // its value overwritten by the trigger: it raises instead.
    let direct = shop
        .env
        .cluster
        .url("postgres")
        .replace("postgres@", "app:pw-app@");
    let app = harness::connect(&direct).await;
    app.batch_execute("SET pgshift.version = '02_amounts'")
        .await
        .unwrap();
    let err = app
        .execute("UPDATE public.orders SET amount = '9.99' WHERE id = 1", &[])
        .await
        .unwrap_err();
    let text = harness::error_text(&err);
    assert!(
        text.starts_with("42703") && text.contains("amount") && text.contains("02_amounts"),
        "{text}"
    );
    // And a session of no version (the old one) that writes the new column.
    app.batch_execute("RESET pgshift.version").await.unwrap();
    let err = app
        .execute(
            "UPDATE public.orders SET _pgshift_new_amount = 1 WHERE id = 1",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(harness::sqlstate(&err), "42703", "{err}");
    // Writes that fit the version go through.
    app.execute("UPDATE public.orders SET amount = '9.99' WHERE id = 1", &[])
        .await
        .unwrap();
    let new = shop.app(Some("02_amounts")).await;
    let amount: String = new
        .query_one("SELECT amount::text FROM orders WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(amount, "9.99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_shape_survives_its_complete() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    let during = shop.app(Some("02_amounts")).await;
    assert_eq!(star(&during, "orders").await, SHAPE);
    let positional = "INSERT INTO orders VALUES (DEFAULT, 'positional', 3.25, now(), 'new')";
    during.execute(positional, &[]).await.unwrap();
    shop.complete("owner").await;

    // The physical table has another order now ...
    let physical = harness::columns(&shop.env.direct().await, "public.orders").await;
    assert_ne!(physical, SHAPE, "the duplicated column is last physically");
    // ... but the version keeps its shape, for the session opened during the
    // migration and for fresh ones, asked for or routed by default.
    for client in [
        during,
        shop.app(Some("02_amounts")).await,
        shop.app(None).await,
    ] {
        assert_eq!(star(&client, "orders").await, SHAPE);
        client.execute(positional, &[]).await.unwrap();
    }
    let count: i64 = shop
        .env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM orders WHERE customer_name = 'positional' AND amount = 3.25",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4);
    // The next migration starts from the kept schema, and its complete
    // removes it.
    let next = shop.dir.path().join("03_note.json");
    std::fs::write(
        &next,
        r#"{"operations": [{"add_column": {"table": "orders", "column": {"name": "note", "type": "text", "nullable": true}}}]}"#,
    )
    .unwrap();
    let mut m = shop.migrator("owner").await;
    m.start(&next).await.unwrap();
    let old = shop.app(Some("02_amounts")).await;
    assert_eq!(star(&old, "orders").await, SHAPE);
    drop(old);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    m.complete(Pinned::End).await.unwrap();
    let schemas = harness::texts(
        &shop.env.direct().await,
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public_%' ORDER BY 1",
    )
    .await;
    assert_eq!(schemas, ["public_03_note"]);
}
