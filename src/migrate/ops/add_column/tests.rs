use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems};

/// A NOT NULL column filled by `up`: added bare, a NOT VALID check after
/// the trigger, backfilled, validated and set NOT NULL at complete.
#[test]
fn a_not_null_column_with_up() {
    check(
        r#"
operations:
  - add_column:
      table: users
      up: "lower(email)"
      column: {name: login, type: text, nullable: false}
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_01_base
            ALTER TABLE "public"."users" ADD COLUMN "_pgshift_new_login" text
            CREATE OR REPLACE FUNCTION "pgshift"."_pgshift_02_change_users"() RETURNS trigger LANGUAGE plpgsql AS $pgshift0$
            BEGIN
            IF current_setting('pgshift.version', true) IS DISTINCT FROM '02_change' THEN
              IF TG_OP = 'UPDATE' AND NEW."_pgshift_new_login" IS DISTINCT FROM OLD."_pgshift_new_login" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', '_pgshift_new_login', 'users', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=02_change to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."users"."_pgshift_new_login"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."users"."id"%TYPE := NEW."id";
                  "name" "public"."users"."name"%TYPE := NEW."name";
                  "email" "public"."users"."email"%TYPE := NEW."email";
                  "created_at" "public"."users"."created_at"%TYPE := NEW."created_at";
                BEGIN
                  _pgshift_result_0 := (lower(email));
                END;
                NEW."_pgshift_new_login" := _pgshift_result_0;
              END;
            ELSE
              DECLARE
              BEGIN
                DECLARE
                  "id" "public"."users"."id"%TYPE := NEW."id";
                  "name" "public"."users"."name"%TYPE := NEW."name";
                  "email" "public"."users"."email"%TYPE := NEW."email";
                  "created_at" "public"."users"."created_at"%TYPE := NEW."created_at";
                  "login" "public"."users"."_pgshift_new_login"%TYPE := NEW."_pgshift_new_login";
                BEGIN
                END;
              END;
            END IF;
            RETURN NEW;
            END
            $pgshift0$; CREATE TRIGGER "_pgshift_02_change_users" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW EXECUTE FUNCTION "pgshift"."_pgshift_02_change_users"(); INSERT INTO pgshift.backfill (schema_name, version, table_name, upper_key) VALUES ('public', '02_change', 'users', coalesce((SELECT ARRAY["id"::text] FROM ONLY "public"."users" ORDER BY "id" DESC LIMIT 1), '{}')) ON CONFLICT (schema_name, version, table_name) DO UPDATE SET upper_key = EXCLUDED.upper_key WHERE pgshift.backfill.last_key IS NULL
            ALTER TABLE "public"."users" ADD CONSTRAINT "_pgshift_not_null_login" CHECK ("_pgshift_new_login" IS NOT NULL) NOT VALID
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at", "_pgshift_new_login" AS "login" FROM "public"."users"
              -- privileges of public_02_change
            -- backfill public.users by [id] set []
            -- complete
            ALTER TABLE "public"."users" VALIDATE CONSTRAINT "_pgshift_not_null_login"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"(); ALTER TABLE "public"."users" RENAME COLUMN "_pgshift_new_login" TO "login"; ALTER TABLE "public"."users" ALTER COLUMN "login" SET NOT NULL; ALTER TABLE "public"."users" DROP CONSTRAINT "_pgshift_not_null_login"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "_pgshift_not_null_login"
            DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"()
            ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "_pgshift_new_login"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
            -- verify users._pgshift_new_login: SELECT count(*) FROM "public"."users" WHERE "_pgshift_new_login" IS NULL AND (lower(email)) IS NOT NULL
        "#]],
    );
}

/// A volatile default is not written into existing rows under ACCESS
/// EXCLUSIVE: the column is added bare, new rows get the default, and the
/// backfill fills the rest.
#[test]
fn a_volatile_default_is_backfilled() {
    check(
        r#"
operations:
  - add_column:
      table: orders
      column: {name: token, type: uuid, default: "gen_random_uuid()", unique: true}
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            ALTER TABLE "public"."orders" ADD COLUMN "_pgshift_new_token" uuid
            ALTER TABLE "public"."orders" ALTER COLUMN "_pgshift_new_token" SET DEFAULT gen_random_uuid()
            CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "orders_token_key" ON "public"."orders" ("_pgshift_new_token")  -- concurrent
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status", "_pgshift_new_token" AS "token" FROM "public"."orders"
              -- privileges of public_02_change
            -- backfill public.orders by [id] set [_pgshift_new_token = COALESCE("_pgshift_new_token", gen_random_uuid())]
            -- complete
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change
            ALTER TABLE "public"."orders" RENAME COLUMN "_pgshift_new_token" TO "token"
            ALTER TABLE "public"."orders" ADD CONSTRAINT "orders_token_key" UNIQUE USING INDEX "orders_token_key"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "_pgshift_new_token"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        "#]],
    );
}

#[test]
fn not_null_without_default_or_up_is_refused() {
    check_problems(
        r#"
operations:
  - add_column:
      table: users
      column: {name: login, type: text, nullable: false}
  - add_column:
      table: users
      column: {name: email, type: text}
"#,
        expect![[r#"
            /operations/0/add_column/column: column "login" is NOT NULL with neither `default` nor `up`: existing rows would have no value; add one of them
            /operations/1/add_column: column "email" already exists in table "users"
        "#]],
    );
}
