use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn dropped_at_complete_and_hidden_until_then() {
    check(
        r#"
operations:
  - drop_table:
      name: events
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."events" WITH (security_invoker = true) AS SELECT "payload", "at" FROM "public"."events"
              -- privileges of public_01_base
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."events" AS SELECT FROM pgshift.hidden_relation('events', '02_change')
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            DROP TABLE IF EXISTS "public"."events"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn a_missing_table_is_refused() {
    check_problems(
        r#"
operations:
  - drop_table:
      name: nope
"#,
        expect![[r#"
            /operations/0/drop_table: table "nope" does not exist in schema "public" (in the new version)
        "#]],
    );
}
