use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

#[test]
fn a_check_on_a_duplicate() {
    check(
        r#"
operations:
  - create_constraint:
      table: orders
      name: amount_positive
      type: check
      check: amount > 0
      columns: [amount]
      up: {amount: "greatest(amount, 0.01)"}
      down: {amount: amount}
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            ALTER TABLE "public"."orders" ADD COLUMN "_pgshift_new_amount" numeric(10,2)
            ALTER TABLE "public"."orders" ADD CONSTRAINT "amount_positive" CHECK ("_pgshift_new_amount" > 0) NOT VALID
            CREATE OR REPLACE FUNCTION "pgshift"."_pgshift_02_change_orders"() RETURNS trigger LANGUAGE plpgsql AS $pgshift0$
            BEGIN
            IF current_setting('pgshift.version', true) IS DISTINCT FROM '02_change' THEN
              IF TG_OP = 'UPDATE' AND NEW."_pgshift_new_amount" IS DISTINCT FROM OLD."_pgshift_new_amount" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', '_pgshift_new_amount', 'orders', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=02_change to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."orders"."_pgshift_new_amount"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."orders"."id"%TYPE := NEW."id";
                  "user_id" "public"."orders"."user_id"%TYPE := NEW."user_id";
                  "amount" "public"."orders"."amount"%TYPE := NEW."amount";
                  "status" "public"."orders"."status"%TYPE := NEW."status";
                BEGIN
                  _pgshift_result_0 := (greatest(amount, 0.01));
                END;
                NEW."_pgshift_new_amount" := _pgshift_result_0;
              END;
            ELSE
              IF TG_OP = 'UPDATE' AND NEW."amount" IS DISTINCT FROM OLD."amount" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', 'amount', 'orders', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=01_base to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."orders"."amount"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."orders"."id"%TYPE := NEW."id";
                  "user_id" "public"."orders"."user_id"%TYPE := NEW."user_id";
                  "amount" "public"."orders"."_pgshift_new_amount"%TYPE := NEW."_pgshift_new_amount";
                  "status" "public"."orders"."status"%TYPE := NEW."status";
                BEGIN
                  _pgshift_result_0 := (amount);
                END;
                NEW."amount" := _pgshift_result_0;
              END;
            END IF;
            RETURN NEW;
            END
            $pgshift0$; CREATE TRIGGER "_pgshift_02_change_orders" BEFORE INSERT OR UPDATE ON "public"."orders" FOR EACH ROW EXECUTE FUNCTION "pgshift"."_pgshift_02_change_orders"(); INSERT INTO pgshift.backfill (schema_name, version, table_name, upper_key) VALUES ('public', '02_change', 'orders', coalesce((SELECT ARRAY["id"::text] FROM ONLY "public"."orders" ORDER BY "id" DESC LIMIT 1), '{}')) ON CONFLICT (schema_name, version, table_name) DO UPDATE SET upper_key = EXCLUDED.upper_key WHERE pgshift.backfill.last_key IS NULL
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "_pgshift_new_amount" AS "amount", "status" FROM "public"."orders"
              -- privileges of public_02_change, duplicates [("orders", "amount", "_pgshift_new_amount")]
            -- backfill public.orders by [id] set []
            -- complete
            ALTER TABLE "public"."orders" VALIDATE CONSTRAINT "amount_positive"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change, duplicates [("orders", "amount", "_pgshift_new_amount")]
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"(); ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "amount"; ALTER TABLE "public"."orders" RENAME COLUMN "_pgshift_new_amount" TO "amount"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"()
            ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "_pgshift_new_amount"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
            -- agreement orders.amount <-> _pgshift_new_amount: up Some("greatest(amount, 0.01)"), down Some("amount")
            -- verify orders._pgshift_new_amount: SELECT count(*) FROM "public"."orders" WHERE "_pgshift_new_amount" IS NULL AND (greatest(amount, 0.01)) IS NOT NULL
        "#]],
    );
}

#[test]
fn a_unique_constraint_built_concurrently_and_attached_at_complete() {
    check(
        r#"
operations:
  - create_constraint:
      table: orders
      name: orders_status_key
      type: unique
      columns: [status]
      up: {status: "status || '-' || id"}
      down: {status: status}
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            ALTER TABLE "public"."orders" ADD COLUMN "_pgshift_new_status" text; ALTER TABLE "public"."orders" ALTER COLUMN "_pgshift_new_status" SET DEFAULT 'new'::text
            CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "orders_status_key" ON "public"."orders" ("_pgshift_new_status")  -- concurrent
            CREATE OR REPLACE FUNCTION "pgshift"."_pgshift_02_change_orders"() RETURNS trigger LANGUAGE plpgsql AS $pgshift0$
            BEGIN
            IF current_setting('pgshift.version', true) IS DISTINCT FROM '02_change' THEN
              IF TG_OP = 'UPDATE' AND NEW."_pgshift_new_status" IS DISTINCT FROM OLD."_pgshift_new_status" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', '_pgshift_new_status', 'orders', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=02_change to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."orders"."_pgshift_new_status"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."orders"."id"%TYPE := NEW."id";
                  "user_id" "public"."orders"."user_id"%TYPE := NEW."user_id";
                  "amount" "public"."orders"."amount"%TYPE := NEW."amount";
                  "status" "public"."orders"."status"%TYPE := NEW."status";
                BEGIN
                  _pgshift_result_0 := (status || '-' || id);
                END;
                NEW."_pgshift_new_status" := _pgshift_result_0;
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
                  "status" "public"."orders"."_pgshift_new_status"%TYPE := NEW."_pgshift_new_status";
                BEGIN
                  _pgshift_result_0 := (status);
                END;
                NEW."status" := _pgshift_result_0;
              END;
            END IF;
            RETURN NEW;
            END
            $pgshift0$; CREATE TRIGGER "_pgshift_02_change_orders" BEFORE INSERT OR UPDATE ON "public"."orders" FOR EACH ROW EXECUTE FUNCTION "pgshift"."_pgshift_02_change_orders"(); INSERT INTO pgshift.backfill (schema_name, version, table_name, upper_key) VALUES ('public', '02_change', 'orders', coalesce((SELECT ARRAY["id"::text] FROM ONLY "public"."orders" ORDER BY "id" DESC LIMIT 1), '{}')) ON CONFLICT (schema_name, version, table_name) DO UPDATE SET upper_key = EXCLUDED.upper_key WHERE pgshift.backfill.last_key IS NULL
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "_pgshift_new_status" AS "status" FROM "public"."orders"
              -- privileges of public_02_change, duplicates [("orders", "status", "_pgshift_new_status")]
            -- backfill public.orders by [id] set []
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change, duplicates [("orders", "status", "_pgshift_new_status")]
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"(); ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "status"; ALTER TABLE "public"."orders" RENAME COLUMN "_pgshift_new_status" TO "status"
            ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_status_key" UNIQUE USING INDEX "orders_status_key"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"()
            ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "_pgshift_new_status"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
            -- agreement orders.status <-> _pgshift_new_status: up Some("status || '-' || id"), down Some("status")
            -- verify orders._pgshift_new_status: SELECT count(*) FROM "public"."orders" WHERE "_pgshift_new_status" IS NULL AND (status || '-' || id) IS NOT NULL
        "#]],
    );
}

#[test]
fn a_second_primary_key_is_refused() {
    check_problems(
        r#"
operations:
  - create_constraint:
      table: users
      name: users_pk2
      type: primary_key
      columns: [name]
      up: {name: name}
      down: {name: name}
"#,
        expect![[r#"
            /operations/0/create_constraint: table "users" has a primary key already
        "#]],
    );
}
