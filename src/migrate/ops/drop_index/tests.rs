use expect_test::expect;

use crate::migrate::ops::testkit::check;

#[test]
fn dropped_concurrently_at_complete() {
    check(
        r#"
operations:
  - drop_index:
      name: users_email_key
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"
              -- privileges of public_01_base
            CREATE SCHEMA "public_02_change"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            DROP INDEX CONCURRENTLY IF EXISTS "public"."users_email_key"  -- concurrent
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}
