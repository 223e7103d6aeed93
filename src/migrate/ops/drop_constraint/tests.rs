use expect_test::expect;

use crate::migrate::ops::testkit::check;

#[test]
fn the_column_is_duplicated_without_it() {
    check(
        r#"
operations:
  - drop_constraint:
      table: users
      name: users_email_key
      up: email
      down: email
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"
              -- privileges of public_01_base
            ALTER TABLE "public"."users" ADD COLUMN "_pgshift_new_email" text
            CREATE OR REPLACE FUNCTION "pgshift"."_pgshift_02_change_users"() RETURNS trigger LANGUAGE plpgsql AS $pgshift0$
            BEGIN
            IF current_setting('pgshift.version', true) IS DISTINCT FROM '02_change' THEN
              IF TG_OP = 'UPDATE' AND NEW."_pgshift_new_email" IS DISTINCT FROM OLD."_pgshift_new_email" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', '_pgshift_new_email', 'users', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=02_change to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."users"."_pgshift_new_email"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."users"."id"%TYPE := NEW."id";
                  "name" "public"."users"."name"%TYPE := NEW."name";
                  "email" "public"."users"."email"%TYPE := NEW."email";
                  "created_at" "public"."users"."created_at"%TYPE := NEW."created_at";
                BEGIN
                  _pgshift_result_0 := (email);
                END;
                NEW."_pgshift_new_email" := _pgshift_result_0;
              END;
            ELSE
              IF TG_OP = 'UPDATE' AND NEW."email" IS DISTINCT FROM OLD."email" THEN
                RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', 'email', 'users', coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')
                  USING ERRCODE = 'undefined_column', HINT = 'Write through the session''s version schema (connect through pgshift), or connect with options=-c pgshift.version=01_base to write that version''s columns.';
              END IF;
              DECLARE
                _pgshift_result_0 "public"."users"."email"%TYPE;
              BEGIN
                DECLARE
                  "id" "public"."users"."id"%TYPE := NEW."id";
                  "name" "public"."users"."name"%TYPE := NEW."name";
                  "email" "public"."users"."_pgshift_new_email"%TYPE := NEW."_pgshift_new_email";
                  "created_at" "public"."users"."created_at"%TYPE := NEW."created_at";
                BEGIN
                  _pgshift_result_0 := (email);
                END;
                NEW."email" := _pgshift_result_0;
              END;
            END IF;
            RETURN NEW;
            END
            $pgshift0$; CREATE TRIGGER "_pgshift_02_change_users" BEFORE INSERT OR UPDATE ON "public"."users" FOR EACH ROW EXECUTE FUNCTION "pgshift"."_pgshift_02_change_users"(); INSERT INTO pgshift.backfill (schema_name, version, table_name, upper_key) VALUES ('public', '02_change', 'users', coalesce((SELECT ARRAY["id"::text] FROM ONLY "public"."users" ORDER BY "id" DESC LIMIT 1), '{}')) ON CONFLICT (schema_name, version, table_name) DO UPDATE SET upper_key = EXCLUDED.upper_key WHERE pgshift.backfill.last_key IS NULL
            ALTER TABLE "public"."users" ADD CONSTRAINT "_pgshift_not_null_email" CHECK ("_pgshift_new_email" IS NOT NULL) NOT VALID
            CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "id", "name", "_pgshift_new_email" AS "email", "created_at" FROM "public"."users"
              -- privileges of public_02_change, duplicates [("users", "email", "_pgshift_new_email")]
            -- backfill public.users by [id] set []
            -- complete
            ALTER TABLE "public"."users" VALIDATE CONSTRAINT "_pgshift_not_null_email"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change, duplicates [("users", "email", "_pgshift_new_email")]
            DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"(); ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "email"; ALTER TABLE "public"."users" RENAME COLUMN "_pgshift_new_email" TO "email"; ALTER TABLE "public"."users" ALTER COLUMN "email" SET NOT NULL; ALTER TABLE "public"."users" DROP CONSTRAINT "_pgshift_not_null_email"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "_pgshift_not_null_email"
            DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"()
            ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "_pgshift_new_email"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
            -- agreement users.email <-> _pgshift_new_email: up Some("email"), down Some("email")
            -- verify users._pgshift_new_email: SELECT count(*) FROM "public"."users" WHERE "_pgshift_new_email" IS NULL AND (email) IS NOT NULL
        "#]],
    );
}
