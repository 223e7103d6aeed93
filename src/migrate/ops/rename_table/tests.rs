use expect_test::expect;

use crate::migrate::ops::testkit::check;

#[test]
fn the_old_name_is_hidden_from_the_new_version() {
    check(
        r#"
operations:
  - rename_table:
      from: orders
      to: purchases
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."purchases" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"; CREATE VIEW "public_02_change"."orders" AS SELECT FROM pgshift.hidden_relation('orders', '02_change')
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            ALTER TABLE "public"."orders" RENAME TO "purchases"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}
