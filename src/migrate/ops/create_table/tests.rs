use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn created_under_a_temporary_name_and_renamed_at_complete() {
    check(
        r#"
operations:
  - create_table:
      name: fruits
      comment: what grows
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255), unique: true, nullable: false}
        - name: user_id
          type: integer
          references: {name: fruits_user_id_fkey, table: users, column: id, on_delete: CASCADE}
        - name: price
          type: numeric
          check: {name: price_positive, constraint: "price > 0"}
          comment: in cents
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"
              -- privileges of public_01_base
            CREATE TABLE "public"."_pgshift_new_fruits" ("id" serial, "name" varchar(255) NOT NULL CONSTRAINT "fruits_name_key" UNIQUE, "user_id" integer CONSTRAINT "fruits_user_id_fkey" REFERENCES "public"."users" ("id") ON DELETE CASCADE, "price" numeric CONSTRAINT "price_positive" CHECK (price > 0), CONSTRAINT "fruits_pkey" PRIMARY KEY ("id")); COMMENT ON TABLE "public"."_pgshift_new_fruits" IS 'what grows'; COMMENT ON COLUMN "public"."_pgshift_new_fruits"."price" IS 'in cents'
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."fruits" WITH (security_invoker = true) AS SELECT "id", "name", "user_id", "price" FROM "public"."_pgshift_new_fruits"
              -- privileges of public_02_change, created ["_pgshift_new_fruits"]
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            ALTER TABLE "public"."_pgshift_new_fruits" RENAME TO "fruits"; DO $pgshift$ DECLARE s text := pg_get_serial_sequence('"public"."fruits"', 'id'); BEGIN IF s IS NOT NULL THEN EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', s, 'fruits_id_seq'); END IF; END $pgshift$
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TABLE IF EXISTS "public"."_pgshift_new_fruits"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn an_existing_table_is_refused() {
    check_problems(
        r#"
operations:
  - create_table:
      name: users
      columns: [{name: id, type: int}]
"#,
        expect![[r#"
            /operations/0/create_table: table "users" already exists
        "#]],
    );
}
