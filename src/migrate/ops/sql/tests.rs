use expect_test::expect;

use crate::migrate::ops::testkit::check;

#[test]
fn up_at_start_and_down_at_rollback() {
    check(
        r#"
operations:
  - sql:
      up: CREATE TABLE audit (id int)
      down: DROP TABLE audit
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"
              -- privileges of public_01_base
            CREATE TABLE audit (id int)  -- concurrent
            CREATE SCHEMA "public_02_change"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TABLE audit  -- concurrent
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn on_complete_runs_at_complete() {
    check(
        r#"
operations:
  - sql:
      up: ANALYZE users
      onComplete: true
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
            ANALYZE users  -- concurrent
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}
