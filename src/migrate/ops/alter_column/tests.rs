use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems, plan, render};

/// A type change through a duplicate kept in step both ways.
#[test]
fn a_type_change() {
    check(
        r#"
operations:
  - alter_column:
      table: orders
      column: amount
      type: bigint
      up: "round(amount * 100)::bigint"
      down: "amount / 100.0"
"#,
        expect![[r#"
            -- start
            CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
              -- privileges of public_01_base
            ALTER TABLE "public"."orders" ADD COLUMN "_pgshift_new_amount" bigint
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
                  _pgshift_result_0 := (round(amount * 100)::bigint);
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
                  _pgshift_result_0 := (amount / 100.0);
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
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
              -- privileges of public_02_change, duplicates [("orders", "amount", "_pgshift_new_amount")]
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"(); ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "amount"; ALTER TABLE "public"."orders" RENAME COLUMN "_pgshift_new_amount" TO "amount"
            -- rollback
            DROP SCHEMA IF EXISTS "public_02_change" CASCADE
            DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"()
            ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "_pgshift_new_amount"
            DROP SCHEMA IF EXISTS "public_01_base" CASCADE
            -- agreement orders.amount <-> _pgshift_new_amount: up Some("round(amount * 100)::bigint"), down Some("amount / 100.0")
            -- verify orders._pgshift_new_amount: SELECT count(*) FROM "public"."orders" WHERE "_pgshift_new_amount" IS NULL AND (round(amount * 100)::bigint) IS NOT NULL
        "#]],
    );
}

/// A unique column's duplicate gets its unique index, built concurrently
/// at start, and complete attaches it as the constraint of the same name.
#[test]
fn a_unique_column_keeps_its_constraint() {
    let plan = render(
        &plan(
            r#"
operations:
  - alter_column:
      table: users
      column: email
      nullable: true
      up: email
      down: "coalesce(email, '')"
"#,
        )
        .expect("plans"),
    );
    let lines: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("users_email_key"))
        .collect();
    expect![[r#"
        [
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"_pgshift_dup_users_email_key\" ON public.users USING btree (\"_pgshift_new_email\")  -- concurrent",
            "DROP TRIGGER IF EXISTS \"_pgshift_02_change_users\" ON \"public\".\"users\"; DROP FUNCTION IF EXISTS \"pgshift\".\"_pgshift_02_change_users\"(); ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"email\"; ALTER TABLE \"public\".\"users\" RENAME COLUMN \"_pgshift_new_email\" TO \"email\"; ALTER TABLE \"public\".\"users\" ADD CONSTRAINT \"users_email_key\" UNIQUE USING INDEX \"_pgshift_dup_users_email_key\"; ALTER TABLE \"public\".\"users_email_key\" RENAME COLUMN \"_pgshift_new_email\" TO \"email\"",
        ]
    "#]].assert_debug_eq(&lines);
}

/// The migration teams fear most: an integer primary key that another
/// table references becomes bigint, with the referencing column, online.
/// The keys are rebuilt over the duplicates, the foreign key follows them
/// after the backfill, and complete swaps the keys in its one switch with
/// the sequence widened and still owned by the key.
#[test]
fn an_integer_key_and_its_reference_become_bigint() {
    let plan = plan(
        r#"
operations:
  - alter_column:
      table: users
      column: id
      type: bigint
      up: id
      down: id
  - alter_column:
      table: orders
      column: user_id
      type: bigint
      up: user_id
      down: user_id
"#,
    )
    .expect("plans");
    let outside_triggers: Vec<String> = render(&plan)
        .lines()
        .filter(|l| {
            !l.starts_with(' ')
                && !l.starts_with("IF ")
                && !l.starts_with("ELSE")
                && !l.starts_with("END")
                && !l.starts_with("BEGIN")
                && !l.starts_with("RETURN")
                && !l.starts_with("$pgshift")
                && !l.starts_with("CREATE OR REPLACE FUNCTION")
        })
        .map(str::to_string)
        .collect();
    expect![[r#"
        -- start
        CREATE SCHEMA IF NOT EXISTS "public_01_base"; CREATE VIEW "public_01_base"."users" WITH (security_invoker = true) AS SELECT "id", "name", "email", "created_at" FROM "public"."users"; CREATE VIEW "public_01_base"."orders" WITH (security_invoker = true) AS SELECT "id", "user_id", "amount", "status" FROM "public"."orders"
        ALTER TABLE "public"."users" ADD COLUMN "_pgshift_new_id" bigint; ALTER TABLE "public"."users" ALTER COLUMN "_pgshift_new_id" SET DEFAULT nextval('users_id_seq'::regclass)
        ALTER TABLE "public"."orders" ADD COLUMN "_pgshift_new_user_id" bigint
        CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "_pgshift_dup_users_pkey" ON public.users USING btree ("_pgshift_new_id")  -- concurrent
        ALTER TABLE "public"."users" ADD CONSTRAINT "_pgshift_not_null_id" CHECK ("_pgshift_new_id" IS NOT NULL) NOT VALID
        CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."users" WITH (security_invoker = true) AS SELECT "_pgshift_new_id" AS "id", "name", "email", "created_at" FROM "public"."users"; CREATE VIEW "public_02_change"."orders" WITH (security_invoker = true) AS SELECT "id", "_pgshift_new_user_id" AS "user_id", "amount", "status" FROM "public"."orders"
        -- backfill public.users by [id] set []
        -- backfill public.orders by [id] set []
        ALTER TABLE "public"."orders" ADD CONSTRAINT "_pgshift_dup_orders_user_id_fkey" FOREIGN KEY ("_pgshift_new_user_id") REFERENCES "public"."users" ("_pgshift_new_id") ON UPDATE NO ACTION ON DELETE CASCADE NOT VALID
        -- complete
        ALTER TABLE "public"."users" VALIDATE CONSTRAINT "_pgshift_not_null_id"
        ALTER TABLE "public"."orders" VALIDATE CONSTRAINT "_pgshift_dup_orders_user_id_fkey"
        DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"(); DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"(); COMMENT ON COLUMN "public"."users"."_pgshift_new_id" IS 'The user''s number'; ALTER SEQUENCE "public"."users_id_seq" OWNED BY "public"."users"."_pgshift_new_id"; ALTER SEQUENCE "public"."users_id_seq" AS bigint; ALTER TABLE "public"."orders" DROP CONSTRAINT IF EXISTS "orders_user_id_fkey"; ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "id"; ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "user_id"; ALTER TABLE "public"."users" RENAME COLUMN "_pgshift_new_id" TO "id"; ALTER TABLE "public"."orders" RENAME COLUMN "_pgshift_new_user_id" TO "user_id"; ALTER TABLE "public"."users" ALTER COLUMN "id" SET NOT NULL; ALTER TABLE "public"."users" DROP CONSTRAINT "_pgshift_not_null_id"; ALTER TABLE "public"."orders" RENAME CONSTRAINT "_pgshift_dup_orders_user_id_fkey" TO "orders_user_id_fkey"; ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY USING INDEX "_pgshift_dup_users_pkey"; ALTER TABLE "public"."users_pkey" RENAME COLUMN "_pgshift_new_id" TO "id"
        -- rollback
        DROP SCHEMA IF EXISTS "public_02_change" CASCADE
        ALTER TABLE "public"."users" DROP CONSTRAINT IF EXISTS "_pgshift_not_null_id"
        DROP TRIGGER IF EXISTS "_pgshift_02_change_users" ON "public"."users"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_users"()
        DROP TRIGGER IF EXISTS "_pgshift_02_change_orders" ON "public"."orders"; DROP FUNCTION IF EXISTS "pgshift"."_pgshift_02_change_orders"()
        ALTER TABLE "public"."orders" DROP CONSTRAINT IF EXISTS "_pgshift_dup_orders_user_id_fkey"
        ALTER TABLE "public"."orders" DROP COLUMN IF EXISTS "_pgshift_new_user_id"
        ALTER TABLE "public"."users" DROP COLUMN IF EXISTS "_pgshift_new_id"
        DROP SCHEMA IF EXISTS "public_01_base" CASCADE
        -- agreement users.id <-> _pgshift_new_id: up Some("id"), down Some("id")
        -- agreement orders.user_id <-> _pgshift_new_user_id: up Some("user_id"), down Some("user_id")
        -- verify users._pgshift_new_id: SELECT count(*) FROM "public"."users" WHERE "_pgshift_new_id" IS NULL AND (id) IS NOT NULL
        -- verify orders._pgshift_new_user_id: SELECT count(*) FROM "public"."orders" WHERE "_pgshift_new_user_id" IS NULL AND (user_id) IS NOT NULL
    "#]].assert_eq(&(outside_triggers.join("\n") + "\n"));
}

/// Dropping a key that another table's foreign key needs is refused,
/// naming the foreign key: its duplicate would have no unique key to
/// reference.
#[test]
fn a_referenced_key_cannot_be_dropped_under_its_foreign_key() {
    check_problems(
        r#"
operations:
  - drop_constraint:
      table: users
      name: users_pkey
      up: id
      down: id
"#,
        expect![[r#"
            /operations/0/drop_constraint: foreign key "orders_user_id_fkey" of table "orders" references columns of "users" that this migration duplicates without their unique key; drop the foreign key first
        "#]],
    );
}

/// pgroll's `name` renames the column with the change, and `up`/`down`
/// are plain copies when the file has none; the check, written over the
/// old name, holds over the new one.
#[test]
fn a_rename_with_a_change_and_copies_for_up_and_down() {
    let plan = render(
        &plan(
            r#"
operations:
  - alter_column:
      table: orders
      column: status
      name: state
      default: "'open'"
      check: {name: state_known, constraint: "status IN ('open', 'new', 'paid')"}
"#,
        )
        .expect("plans"),
    );
    let lines: Vec<&str> = plan
        .lines()
        .filter(|l| {
            l.contains("state_known")
                || l.contains("CREATE VIEW \"public_02_change\"")
                || l.contains("agreement")
        })
        .collect();
    expect![[r#"
        [
            "CREATE SCHEMA \"public_02_change\"; CREATE VIEW \"public_02_change\".\"orders\" WITH (security_invoker = true) AS SELECT \"id\", \"user_id\", \"amount\", \"_pgshift_new_status\" AS \"state\" FROM \"public\".\"orders\"",
            "ALTER TABLE \"public\".\"orders\" ADD CONSTRAINT \"state_known\" CHECK (\"state\" IN ('open', 'new', 'paid')) NOT VALID",
            "ALTER TABLE \"public\".\"orders\" VALIDATE CONSTRAINT \"state_known\"",
            "-- agreement orders.status <-> _pgshift_new_status: up Some(\"\\\"status\\\"\"), down Some(\"\\\"state\\\"\")",
        ]
    "#]].assert_debug_eq(&lines);
}

/// `name` alone is `rename_column`: no duplicate.
#[test]
fn a_rename_alone_duplicates_nothing() {
    let plan = render(
        &plan(
            r#"
operations:
  - alter_column: {table: orders, column: status, name: state}
"#,
        )
        .expect("plans"),
    );
    assert!(!plan.contains("_pgshift_new_"), "{plan}");
    assert!(
        plan.contains(r#"ALTER TABLE "public"."orders" RENAME COLUMN "status" TO "state""#),
        "{plan}"
    );
}
