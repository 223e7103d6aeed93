use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn renamed_at_complete() {
    check(
        r#"
operations:
  - rename_constraint:
      table: users
      from: users_email_key
      to: users_email_unique
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_01_base
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            ALTER TABLE "public"."users" RENAME CONSTRAINT "users_email_key" TO "users_email_unique"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn a_missing_constraint_is_refused() {
    check_problems(
        r#"
operations:
  - rename_constraint:
      table: users
      from: nope
      to: other
"#,
        expect![[r#"
            /operations/0/rename_constraint: constraint "nope" does not exist on table "users"
        "#]],
    );
}
