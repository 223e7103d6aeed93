use expect_test::expect;

use crate::migrate::ops::testkit::check;

#[test]
fn set_at_start_and_restored_by_rollback() {
    check(
        r#"
operations:
  - set_replica_identity:
      table: users
      identity: {type: index, index: users_email_key}
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_01_base
            ALTER TABLE "public"."users" REPLICA IDENTITY USING INDEX "users_email_key"
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            ALTER TABLE "public"."users" REPLICA IDENTITY DEFAULT
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}
