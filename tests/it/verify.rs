//! Verification before contract, in production's shape (the `Shop` of
//! production.rs: an owner migrating, an application role writing both
//! versions): `verify` passes on rows written through either version,
//! catches rows changed behind the dual-write trigger's back, `complete`
//! refuses on them with nothing changed, and `--skip-verify` contracts
//! anyway. Keyless tables are read by ctid; a column whose `up` is not
//! IMMUTABLE is reported as not verifiable rather than as a mismatch.

use pgshift::migrate::engine::{Check, MigrateError, Pinned};
use pgshift::state::Phase;

use crate::production::Shop;

/// Changes rows behind the dual-write trigger, as a restore or a
/// replication tool would: `session_replication_role = replica` fires no
/// ordinary trigger (superuser only).
async fn behind_the_trigger(shop: &Shop, sql: &str) {
    shop.env
        .direct()
        .await
        .batch_execute(&format!(
            "SET session_replication_role = replica; {sql}; RESET session_replication_role"
        ))
        .await
        .unwrap();
}

async fn phase(shop: &Shop) -> Option<Phase> {
    let m = shop.migrator("owner").await;
    let status = m.status().await.unwrap();
    m.close().await.unwrap();
    status.active.map(|a| a.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_rows_changed_behind_the_trigger_and_complete_refuses() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    // Writes through both versions, as the application role.
    let new = shop.app(Some("02_amounts")).await;
    new.execute("UPDATE orders SET amount = 5.55 WHERE id = 2", &[])
        .await
        .unwrap();
    let old = shop.app(Some("baseline")).await;
    old.execute(
        "INSERT INTO orders (customer_name, amount) VALUES ('late', '3.333')",
        &[],
    )
    .await
    .unwrap();

    let m = shop.migrator("owner").await;
    let reports = m.verify().await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].table, "orders");
    assert_eq!(reports[0].rows, 51);
    assert_eq!(reports[0].mismatched, 0, "{}", reports[0]);
    assert_eq!(
        reports[0].checked_columns,
        vec!["amount ↔ _pgshift_new_amount"]
    );
    m.close().await.unwrap();

    // One row's new column and another's old column changed behind the
    // trigger: neither agrees in either direction any more.
    behind_the_trigger(
        &shop,
        "UPDATE orders SET _pgshift_new_amount = 999 WHERE id = 7; \
         UPDATE orders SET amount = '1.00' WHERE id = 8",
    )
    .await;
    let m = shop.migrator("owner").await;
    let reports = m.verify().await.unwrap();
    assert_eq!(reports[0].mismatched, 2, "{}", reports[0]);
    assert_eq!(reports[0].samples, vec!["7", "8"]);
    m.close().await.unwrap();

    // The command-line verify says the same and exits 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .args([
            "verify",
            "--database-url",
            &shop.settings("owner").database_url,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("table orders: 2 of 51 rows disagree") && stdout.contains("7; 8"),
        "{stdout}"
    );

    let mut m = shop.migrator("owner").await;
    let err = m.complete(Pinned::Refuse).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, MigrateError::Disagree { .. })
            && text.contains("table orders: 2 of 51 rows disagree")
            && text.contains("first keys: 7; 8")
            && text.contains("Nothing was changed")
            && text.contains("--skip-verify"),
        "{text}"
    );
    m.close().await.unwrap();
    assert_eq!(phase(&shop).await, Some(Phase::Active));

    // Written again through the old version, the rows agree, and complete
    // contracts with the old version's values.
    old.execute("UPDATE orders SET amount = amount WHERE id IN (7, 8)", &[])
        .await
        .unwrap();
    shop.complete("owner").await;
    let direct = shop.env.direct().await;
    let amounts: Vec<String> = direct
        .query(
            "SELECT amount::text FROM public.orders WHERE id IN (2, 7, 8) ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(amounts, vec!["5.55", "8.75", "1.00"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verify_contracts_keeping_the_new_versions_values() {
    let shop = Shop::open().await;
    shop.start("owner").await;
    behind_the_trigger(
        &shop,
        "UPDATE orders SET _pgshift_new_amount = 999 WHERE id = 7",
    )
    .await;
    let mut m = shop.migrator("owner").await;
    m.complete_checked(Pinned::Refuse, Check::Skip)
        .await
        .unwrap_or_else(|e| panic!("complete --skip-verify: {e}"));
    m.close().await.unwrap();
    let amount: String = shop
        .env
        .direct()
        .await
        .query_one("SELECT amount::text FROM public.orders WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(amount, "999.00");
}

/// A keyless table: verify reads it by ctid. Its `stamp` column's `up`
/// calls `now()`, which would answer differently now than when the
/// trigger ran: reported as not verifiable, not as a mismatch.
const NOTES: &str = r#"{"name": "03_notes", "operations": [
  {"alter_column": {"table": "notes", "column": "body", "type": "varchar(100)",
                    "up": "upper(body)", "down": "lower(body)"}},
  {"alter_column": {"table": "notes", "column": "stamp", "type": "text",
                    "up": "stamp || to_char(now(), '')", "down": "stamp"}}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_read_by_ctid_and_a_volatile_up_is_not_verifiable() {
    let shop = Shop::open().await;
    shop.env
        .direct()
        .await
        .batch_execute(
            "SET ROLE owner; \
             CREATE TABLE notes (body text, stamp text); \
             INSERT INTO notes SELECT 'note ' || g, 's' FROM generate_series(1, 300) g; \
             RESET ROLE",
        )
        .await
        .unwrap();
    let file = shop.dir.path().join("03_notes.json");
    std::fs::write(&file, NOTES).unwrap();
    let mut m = shop.migrator("owner").await;
    m.start(&file)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let reports = m.verify().await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        (r.rows, r.mismatched),
        (300, 0),
        "{r}: {:?}",
        r.checked_columns
    );
    assert_eq!(r.checked_columns, vec!["body ↔ _pgshift_new_body"]);
    assert_eq!(r.unverifiable, vec!["stamp ↔ _pgshift_new_stamp"]);
    m.close().await.unwrap();

    behind_the_trigger(
        &shop,
        "UPDATE notes SET _pgshift_new_body = 'forged' WHERE body = 'note 250'",
    )
    .await;
    let mut m = shop.migrator("owner").await;
    let reports = m.verify().await.unwrap();
    assert_eq!(reports[0].mismatched, 1, "{}", reports[0]);
    assert!(
        reports[0].samples[0].starts_with('('),
        "a ctid: {:?}",
        reports[0].samples
    );
    let err = m.complete(Pinned::Refuse).await.unwrap_err();
    assert!(matches!(err, MigrateError::Disagree { .. }), "{err}");
    m.close().await.unwrap();
}
