use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn built_concurrently_with_its_options() {
    check(
        r#"
operations:
  - create_index:
      name: orders_status_idx
      table: orders
      method: btree
      columns:
        status: {sort: DESC, nulls: LAST}
        user_id: {}
      predicate: status <> 'done'
      storage_parameters: fillfactor=70
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            CREATE INDEX CONCURRENTLY IF NOT EXISTS "orders_status_idx" ON "public"."orders" USING btree ("status" DESC NULLS LAST, "user_id") WITH (fillfactor=70) WHERE status <> 'done'  -- concurrent
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP INDEX CONCURRENTLY IF EXISTS "public"."orders_status_idx"  -- concurrent
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn an_existing_name_is_refused() {
    check_problems(
        r#"
operations:
  - create_index:
      name: users_pkey
      table: users
      columns: [name]
"#,
        expect![[r#"
            /operations/0/create_index: an index (or relation) named "users_pkey" already exists
        "#]],
    );
}
