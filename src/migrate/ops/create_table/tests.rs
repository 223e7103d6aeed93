use expect_test::expect;

use crate::migrate::ops::testkit::{check, check_problems, plan, plan_with, render};

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

/// Operations on the table the same migration creates run in the order
/// written, as plain DDL on its temporary table before any view shows it:
/// a column added (a serial, whose sequence takes the final table's
/// name), one altered (renamed, retyped, made unique), a constraint, an
/// index and a rename of that constraint.
#[test]
fn later_operations_on_a_created_table() {
    let plan = plan(
        r#"
operations:
  - create_table:
      name: gadgets
      columns:
        - {name: id, type: integer, pk: true}
        - {name: label, type: text}
  - add_column:
      table: gadgets
      column: {name: serial_no, type: serial}
  - alter_column:
      table: gadgets
      column: label
      name: title
      type: varchar(100)
      unique: {name: gadgets_title_unique}
      check: {name: title_long, constraint: "length(label) > 2"}
  - create_constraint:
      table: gadgets
      name: serial_positive
      type: check
      columns: [serial_no]
      check: "serial_no > 0"
      up: {serial_no: serial_no}
      down: {serial_no: serial_no}
  - create_index:
      table: gadgets
      name: gadgets_title_idx
      columns: [title]
  - rename_constraint:
      table: gadgets
      from: title_long
      to: title_length
  - drop_column:
      table: gadgets
      column: serial_no
"#,
    )
    .expect("plans");
    let text = render(&plan);
    let start: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("-- start"))
        .take_while(|l| !l.starts_with("-- complete"))
        .collect();
    expect![[r#"
        -- start
        CREATE SCHEMA IF NOT EXISTS "public_01_base"
          -- privileges of public_01_base
        CREATE TABLE "public"."_pgshift_new_gadgets" ("id" integer, "label" text, CONSTRAINT "gadgets_pkey" PRIMARY KEY ("id"))
        ALTER TABLE "public"."_pgshift_new_gadgets" ADD COLUMN "serial_no" serial
        ALTER TABLE "public"."_pgshift_new_gadgets" RENAME COLUMN "label" TO "title"; ALTER TABLE "public"."_pgshift_new_gadgets" ALTER COLUMN "title" TYPE varchar(100) USING ("title")::varchar(100); ALTER TABLE "public"."_pgshift_new_gadgets" ADD CONSTRAINT "gadgets_title_unique" UNIQUE ("title"); ALTER TABLE "public"."_pgshift_new_gadgets" ADD CONSTRAINT "title_long" CHECK (length("title") > 2)
        ALTER TABLE "public"."_pgshift_new_gadgets" ADD CONSTRAINT "serial_positive" CHECK (serial_no > 0)
        CREATE INDEX "gadgets_title_idx" ON "public"."_pgshift_new_gadgets" USING btree ("title")
        ALTER TABLE "public"."_pgshift_new_gadgets" RENAME CONSTRAINT "title_long" TO "title_length"
        ALTER TABLE "public"."_pgshift_new_gadgets" DROP COLUMN "serial_no"
        CREATE SCHEMA "public_02_change"; CREATE VIEW "public_02_change"."gadgets" WITH (security_invoker = true) AS SELECT "id", "title" FROM "public"."_pgshift_new_gadgets"
          -- privileges of public_02_change, created ["_pgshift_new_gadgets"]
    "#]].assert_eq(&(start.join("\n") + "\n"));
}

/// With `pass_through_views`, both versions' schemas show the tables the
/// migration does not touch through plain views, as pgroll's do.
#[test]
fn pass_through_views_show_every_table() {
    let migration = crate::migrate::format::parse(
        "02_change.yaml",
        "02_change",
        "operations:\n  - create_table: {name: tags, columns: [{name: tag, type: text}]}\n",
        crate::migrate::format::Syntax::Yaml,
    )
    .unwrap();
    let plan = plan_with(&migration, true).expect("plans");
    let text = render(&plan);
    let views: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("CREATE SCHEMA"))
        .collect();
    expect![[r#"
        [
            "CREATE SCHEMA IF NOT EXISTS \"public_01_base\"; CREATE VIEW \"public_01_base\".\"events\" WITH (security_invoker = true) AS SELECT \"payload\", \"at\" FROM \"public\".\"events\"; CREATE VIEW \"public_01_base\".\"orders\" WITH (security_invoker = true) AS SELECT \"id\", \"user_id\", \"amount\", \"status\" FROM \"public\".\"orders\"; CREATE VIEW \"public_01_base\".\"users\" WITH (security_invoker = true) AS SELECT \"id\", \"name\", \"email\", \"created_at\" FROM \"public\".\"users\"",
            "CREATE SCHEMA \"public_02_change\"; CREATE VIEW \"public_02_change\".\"tags\" WITH (security_invoker = true) AS SELECT \"tag\" FROM \"public\".\"_pgshift_new_tags\"; CREATE VIEW \"public_02_change\".\"events\" WITH (security_invoker = true) AS SELECT \"payload\", \"at\" FROM \"public\".\"events\"; CREATE VIEW \"public_02_change\".\"orders\" WITH (security_invoker = true) AS SELECT \"id\", \"user_id\", \"amount\", \"status\" FROM \"public\".\"orders\"; CREATE VIEW \"public_02_change\".\"users\" WITH (security_invoker = true) AS SELECT \"id\", \"name\", \"email\", \"created_at\" FROM \"public\".\"users\"",
        ]
    "#]].assert_debug_eq(&views);
}
