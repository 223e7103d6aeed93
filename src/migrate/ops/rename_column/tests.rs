use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn the_new_view_shows_the_new_name_and_complete_renames() {
    check(
        r#"
operations:
  - rename_column:
      table: users
      from: name
      to: full_name
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_01_base
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name" AS "full_name", "email", "created_at" FROM "public"."users"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            ALTER TABLE "public"."users" RENAME COLUMN "name" TO "full_name"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn a_name_in_use_is_refused() {
    check_problems(
        r#"
operations:
  - rename_column:
      table: users
      from: name
      to: email
"#,
        expect![[r#"
            /operations/0/rename_column: column "email" already exists in table "users"
        "#]],
    );
}
