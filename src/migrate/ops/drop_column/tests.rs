use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn a_column_with_down_for_new_version_writes() {
    check(
        r#"
operations:
  - drop_column:
      table: orders
      column: status
      down: "'legacy'"
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            CREATE OR REPLACE FUNCTION "pgshift"."_pgshift_02_change_orders"() RETURNS trigger LANGUAGE plpgsql AS $pgshift0$
            BEGIN
            IF current_setting('pgshift.version', true) IS DISTINCT FROM '02_change' THEN
              DECLARE
              BEGIN
                DECLARE
                  "id" "public"."orders"."id"%TYPE := NEW."id";
                  "user_id" "public"."orders"."user_id"%TYPE := NEW."user_id";
                  "amount" "public"."orders"."amount"%TYPE := NEW."amount";
                  "status" "public"."orders"."status"%TYPE := NEW."status";
                BEGIN
                END;
              END;
            ELSE
              IF TG_OP = 'UPDATE' AND NEW."status" IS DISTINCT FROM OLD."status" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', 'status', 'orders', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=01_base to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."orders"."status"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."orders"."id"%TYPE := NEW."id";
                  "user_id" "public"."orders"."user_id"%TYPE := NEW."user_id";
                  "amount" "public"."orders"."amount"%TYPE := NEW."amount";
                BEGIN
                  _pgshift_result_0 := ('legacy');
                END;
                NEW."status" := _pgshift_result_0;
              END;
            END IF;
            RETURN NEW;
            END
            $pgshift0$; CREATE TRIGGER "_pgshift_02_change_orders" BEFORE INSERT OR UPDATE ON "public"."orders" FOR EACH ROW EXECUTE FUNCTION "pgshift"."_pgshift_02_change_orders"()
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount" FROM "public"."orders"
              -- privileges of public_02_change
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"(); ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "status"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"()
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn not_null_without_default_needs_down() {
    check_problems(
        r#"
operations:
  - drop_column:
      table: users
      column: email
"#,
        expect![[r#"
            /operations/0/drop_column: column "email" is NOT NULL without a default, so new-version inserts could not fill it; give `down`
        "#]],
    );
}
