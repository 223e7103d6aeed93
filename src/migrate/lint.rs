//! Lint: dangerous DDL found before it runs (README.md, "Lint"). The rules
//! keep squawk's names and meanings (<https://squawkhq.com/docs/rules>),
//! written over Postgres's own parse tree (`pg_query`), so a statement is
//! read exactly as the server will read it. Each finding names the pgroll
//! operation that does the same job without the danger.
//!
//! Three inputs: the SQL of `sql` operations, the `up`/`down` expressions
//! of a migration file (pgshift's own rules: volatile functions and
//! subqueries), and plain `.sql` migrations as Flyway, Alembic or Rails
//! write them. Tables created earlier in the same input are exempt from
//! the rules about locks, as in squawk: nobody else can be using them.
//! Pure: no database.

use std::collections::BTreeSet;
use std::fmt;

use pg_query::NodeEnum;
use pg_query::protobuf::{
    AlterTableType, ConstrType, Constraint, ObjectType, RangeVar, TransactionStmtKind,
};

use super::format::{Migration, Operation};

/// How serious a finding is: `start` refuses errors unless told
/// `--allow-unsafe`; warnings are reported only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Warning => "warning",
            Level::Error => "error",
        })
    }
}

/// One finding: where, which rule, what is wrong and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// squawk's rule name, or pgshift's for expression rules.
    pub rule: &'static str,
    pub level: Level,
    /// `operations[2].sql.up, statement 1`, or `V3__users.sql:12`.
    pub at: String,
    pub message: String,
    /// The pgroll operation (or SQL pattern) that does it safely.
    pub instead: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} [{}] {}; instead: {}",
            self.at, self.level, self.rule, self.message, self.instead
        )
    }
}

/// Every rule: (name, level, what it flags). README.md lists the same.
pub const RULES: &[(&str, Level, &str)] = &[
    (
        "require-concurrent-index-creation",
        Level::Error,
        "CREATE INDEX without CONCURRENTLY on an existing table",
    ),
    (
        "require-concurrent-index-deletion",
        Level::Error,
        "DROP INDEX without CONCURRENTLY",
    ),
    (
        "constraint-missing-not-valid",
        Level::Error,
        "ADD CONSTRAINT ... CHECK or FOREIGN KEY without NOT VALID",
    ),
    (
        "disallowed-unique-constraint",
        Level::Error,
        "ADD UNIQUE or ADD PRIMARY KEY without USING INDEX",
    ),
    (
        "adding-field-with-default",
        Level::Error,
        "ADD COLUMN with a volatile default (or a serial type), which rewrites the table",
    ),
    (
        "adding-required-field",
        Level::Error,
        "ADD COLUMN ... NOT NULL without a default",
    ),
    (
        "adding-not-nullable-field",
        Level::Error,
        "ALTER COLUMN ... SET NOT NULL",
    ),
    (
        "changing-column-type",
        Level::Error,
        "ALTER COLUMN ... TYPE",
    ),
    ("renaming-column", Level::Error, "RENAME COLUMN"),
    ("renaming-table", Level::Error, "ALTER TABLE ... RENAME TO"),
    ("ban-drop-column", Level::Error, "DROP COLUMN"),
    ("ban-drop-table", Level::Error, "DROP TABLE"),
    ("ban-drop-database", Level::Error, "DROP DATABASE"),
    (
        "ban-concurrent-index-creation-in-transaction",
        Level::Error,
        "CREATE INDEX CONCURRENTLY inside BEGIN ... COMMIT",
    ),
    (
        "prefer-timestamptz",
        Level::Warning,
        "a timestamp column without time zone",
    ),
    ("ban-char-field", Level::Warning, "a char(n) column"),
    (
        "volatile-expression",
        Level::Warning,
        "an up or down that calls a volatile function",
    ),
    (
        "subquery-in-expression",
        Level::Warning,
        "an up or down that holds a subquery",
    ),
];

fn level_of(rule: &str) -> Level {
    RULES
        .iter()
        .find(|(name, ..)| *name == rule)
        .map(|(_, level, _)| *level)
        .unwrap_or(Level::Error)
}

/// Functions whose result changes from call to call. A default that calls
/// one makes ADD COLUMN rewrite the table (a non-volatile default is stored
/// once, Postgres 11 and later).
const VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "setseed",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "setval",
    "txid_current",
    "pg_current_xact_id",
];

/// Lints a migration file: its `sql` operations' SQL and its `up`/`down`
/// expressions.
pub fn lint_migration(m: &Migration) -> Vec<Finding> {
    let mut created: BTreeSet<String> = m
        .operations
        .iter()
        .filter_map(|op| match op {
            Operation::CreateTable(t) => Some(t.name.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (i, op) in m.operations.iter().enumerate() {
        let at = |field: &str| format!("operations[{i}].{}.{field}", op.kind());
        match op {
            Operation::Sql(raw) => {
                out.extend(lint_sql_at(&raw.up, &mut created, |n, _| {
                    format!("{}, statement {n}", at("up"))
                }));
                if let Some(down) = &raw.down {
                    out.extend(lint_sql_at(down, &mut created, |n, _| {
                        format!("{}, statement {n}", at("down"))
                    }));
                }
            }
            Operation::AddColumn(a) => {
                if let Some(up) = &a.up {
                    out.extend(lint_expression(up, &at("up")));
                }
            }
            Operation::DropColumn(d) => {
                if let Some(down) = &d.down {
                    out.extend(lint_expression(down, &at("down")));
                }
            }
            Operation::AlterColumn(a) => {
                if let Some(up) = &a.up {
                    out.extend(lint_expression(up, &at("up")));
                }
                if let Some(down) = &a.down {
                    out.extend(lint_expression(down, &at("down")));
                }
            }
            Operation::CreateConstraint(c) => {
                for (column, e) in &c.up {
                    out.extend(lint_expression(e, &at(&format!("up.{column}"))));
                }
                for (column, e) in &c.down {
                    out.extend(lint_expression(e, &at(&format!("down.{column}"))));
                }
            }
            _ => {}
        }
    }
    out
}

/// Lints a plain SQL migration (`file` names it in each finding, with the
/// statement's line).
pub fn lint_sql_file(file: &str, sql: &str) -> Vec<Finding> {
    let mut created = BTreeSet::new();
    lint_sql_at(sql, &mut created, |_, offset| {
        let line = 1 + sql.as_bytes()[..offset.min(sql.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        format!("{file}:{line}")
    })
}

/// Lints the statements of `sql`; `at(n, offset)` names statement `n`
/// (1-based) that starts at byte `offset`. Tables it creates join
/// `created`. Text Postgres cannot parse is one finding.
fn lint_sql_at(
    sql: &str,
    created: &mut BTreeSet<String>,
    at: impl Fn(usize, usize) -> String,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let parsed = match pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) {
        Ok(parsed) => parsed,
        Err(e) => {
            out.push(Finding {
                rule: "syntax-error",
                level: Level::Error,
                at: at(1, 0),
                message: format!("Postgres cannot parse this SQL: {e}"),
                instead: "fix the SQL",
            });
            return out;
        }
    };
    let mut in_transaction = false;
    for (n, raw) in parsed.protobuf.stmts.iter().enumerate() {
        let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
            continue;
        };
        let here = at(
            n + 1,
            leading_offset(sql, raw.stmt_location.max(0) as usize),
        );
        let mut lint = Statement {
            created,
            at: &here,
            out: &mut out,
        };
        lint.node(node, &mut in_transaction);
    }
    out
}

/// The offset of the first non-blank byte at or after `offset` (a
/// statement's location includes the whitespace before it).
fn leading_offset(sql: &str, offset: usize) -> usize {
    let rest = sql.get(offset..).unwrap_or("");
    offset + (rest.len() - rest.trim_start().len())
}

/// The rules applied to one statement.
struct Statement<'a> {
    created: &'a mut BTreeSet<String>,
    at: &'a str,
    out: &'a mut Vec<Finding>,
}

impl Statement<'_> {
    fn flag(&mut self, rule: &'static str, message: String, instead: &'static str) {
        self.out.push(Finding {
            rule,
            level: level_of(rule),
            at: self.at.to_string(),
            message,
            instead,
        });
    }

    fn is_new(&self, rv: Option<&RangeVar>) -> bool {
        rv.is_some_and(|rv| self.created.contains(&rv.relname))
    }

    fn node(&mut self, node: &NodeEnum, in_transaction: &mut bool) {
        match node {
            NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
                Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                    *in_transaction = true
                }
                Ok(
                    TransactionStmtKind::TransStmtCommit
                    | TransactionStmtKind::TransStmtRollback
                    | TransactionStmtKind::TransStmtPrepare,
                ) => *in_transaction = false,
                _ => {}
            },
            NodeEnum::CreateStmt(c) => {
                if let Some(rv) = &c.relation {
                    self.created.insert(rv.relname.clone());
                }
                for element in &c.table_elts {
                    if let Some(NodeEnum::ColumnDef(col)) = &element.node {
                        self.column_type(col);
                    }
                }
            }
            NodeEnum::IndexStmt(index) => {
                let table = name(index.relation.as_ref());
                if index.concurrent && *in_transaction {
                    self.flag(
                        "ban-concurrent-index-creation-in-transaction",
                        format!("CREATE INDEX CONCURRENTLY on {table} cannot run inside a transaction block"),
                        "run it outside BEGIN ... COMMIT (pgroll's create_index does)",
                    );
                } else if !index.concurrent && !self.is_new(index.relation.as_ref()) {
                    self.flag(
                        "require-concurrent-index-creation",
                        format!("CREATE INDEX on {table} without CONCURRENTLY blocks every write to {table} while it builds"),
                        "pgroll's create_index (built CONCURRENTLY), or CREATE INDEX CONCURRENTLY",
                    );
                }
            }
            NodeEnum::DropStmt(drop) => self.drop(drop),
            NodeEnum::DropdbStmt(db) => self.flag(
                "ban-drop-database",
                format!("DROP DATABASE {} destroys every table in it", db.dbname),
                "nothing in a migration: do it by hand",
            ),
            NodeEnum::RenameStmt(r) => self.rename(r),
            NodeEnum::AlterTableStmt(alter) => {
                if self.is_new(alter.relation.as_ref()) {
                    return;
                }
                let table = name(alter.relation.as_ref());
                for cmd in &alter.cmds {
                    if let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node {
                        self.alter(&table, cmd);
                    }
                }
            }
            _ => {}
        }
    }

    fn drop(&mut self, drop: &pg_query::protobuf::DropStmt) {
        let objects: Vec<String> = drop.objects.iter().map(object_name).collect();
        match ObjectType::try_from(drop.remove_type) {
            Ok(ObjectType::ObjectIndex) if !drop.concurrent => self.flag(
                "require-concurrent-index-deletion",
                format!(
                    "DROP INDEX {} without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table",
                    objects.join(", ")
                ),
                "pgroll's drop_index (dropped CONCURRENTLY), or DROP INDEX CONCURRENTLY",
            ),
            Ok(ObjectType::ObjectTable) => {
                let old: Vec<&String> = objects
                    .iter()
                    .filter(|o| !self.created.contains(o.rsplit('.').next().unwrap_or(o)))
                    .collect();
                if !old.is_empty() {
                    self.flag(
                        "ban-drop-table",
                        format!(
                            "DROP TABLE {} removes the table at once, under the clients of the old version that still use it",
                            old.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                        "pgroll's drop_table (the old version keeps the table until complete)",
                    );
                }
            }
            _ => {}
        }
    }

    fn rename(&mut self, r: &pg_query::protobuf::RenameStmt) {
        if self.is_new(r.relation.as_ref()) {
            return;
        }
        let table = name(r.relation.as_ref());
        match ObjectType::try_from(r.rename_type) {
            Ok(ObjectType::ObjectColumn) => self.flag(
                "renaming-column",
                format!(
                    "RENAME COLUMN {}.{} TO {} breaks every client that still uses the old name",
                    table, r.subname, r.newname
                ),
                "pgroll's rename_column (the old version keeps the old name through its view)",
            ),
            Ok(ObjectType::ObjectTable) => self.flag(
                "renaming-table",
                format!(
                    "RENAME TO {} breaks every client that still uses {table}",
                    r.newname
                ),
                "pgroll's rename_table (the old version keeps the old name through its view)",
            ),
            _ => {}
        }
    }

    fn alter(&mut self, table: &str, cmd: &pg_query::protobuf::AlterTableCmd) {
        let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
        match AlterTableType::try_from(cmd.subtype) {
            Ok(AlterTableType::AtAddColumn) => {
                if let Some(NodeEnum::ColumnDef(col)) = def {
                    self.add_column(table, col);
                }
            }
            Ok(AlterTableType::AtSetNotNull) => self.flag(
                "adding-not-nullable-field",
                format!(
                    "SET NOT NULL on {table}.{} scans the whole table under an ACCESS EXCLUSIVE lock",
                    cmd.name
                ),
                "pgroll's alter_column with nullable: false (a CHECK added NOT VALID, validated without blocking writes)",
            ),
            Ok(AlterTableType::AtAlterColumnType) => self.flag(
                "changing-column-type",
                format!(
                    "ALTER COLUMN {table}.{} TYPE rewrites the table under an ACCESS EXCLUSIVE lock, and the old version's clients see the new type at once",
                    cmd.name
                ),
                "pgroll's alter_column with type, up and down (a duplicated column, backfilled in batches, both versions live)",
            ),
            Ok(AlterTableType::AtDropColumn) => self.flag(
                "ban-drop-column",
                format!(
                    "DROP COLUMN {table}.{} removes it under the clients of the old version that still use it",
                    cmd.name
                ),
                "pgroll's drop_column (the old version keeps the column until complete)",
            ),
            Ok(AlterTableType::AtAddConstraint) => {
                if let Some(NodeEnum::Constraint(c)) = def {
                    self.add_constraint(table, c);
                }
            }
            _ => {}
        }
    }

    fn add_constraint(&mut self, table: &str, c: &Constraint) {
        let what = if c.conname.is_empty() {
            "a constraint".to_string()
        } else {
            format!("constraint {}", c.conname)
        };
        match ConstrType::try_from(c.contype) {
            Ok(ConstrType::ConstrCheck | ConstrType::ConstrForeign) if !c.skip_validation => self.flag(
                "constraint-missing-not-valid",
                format!("adding {what} to {table} without NOT VALID checks every row while it blocks writes"),
                "pgroll's create_constraint (added NOT VALID, validated without blocking writes), or ADD ... NOT VALID then VALIDATE CONSTRAINT in its own transaction",
            ),
            Ok(ConstrType::ConstrUnique | ConstrType::ConstrPrimary) if c.indexname.is_empty() => self.flag(
                "disallowed-unique-constraint",
                format!("adding {what} to {table} builds its index under an ACCESS EXCLUSIVE lock"),
                "pgroll's create_constraint with type unique, or CREATE UNIQUE INDEX CONCURRENTLY then ADD CONSTRAINT ... USING INDEX",
            ),
            _ => {}
        }
    }

    fn add_column(&mut self, table: &str, col: &pg_query::protobuf::ColumnDef) {
        self.column_type(col);
        let mut not_null = col.is_not_null;
        let mut default = col.raw_default.as_deref().cloned();
        for c in &col.constraints {
            if let Some(NodeEnum::Constraint(c)) = &c.node {
                match ConstrType::try_from(c.contype) {
                    Ok(ConstrType::ConstrNotnull) => not_null = true,
                    Ok(ConstrType::ConstrDefault) => default = c.raw_expr.as_deref().cloned(),
                    _ => {}
                }
            }
        }
        let serial = type_name(col).is_some_and(|t| t.ends_with("serial"));
        let volatile = serial
            || default
                .as_ref()
                .is_some_and(|d| calls(d, |f| VOLATILE.contains(&f)));
        if volatile {
            self.flag(
                "adding-field-with-default",
                format!(
                    "ADD COLUMN {table}.{} with a volatile default rewrites the whole table under an ACCESS EXCLUSIVE lock",
                    col.colname
                ),
                "pgroll's add_column with up (filled by a batched backfill), or add it without the default, backfill, then SET DEFAULT",
            );
        } else if not_null && default.is_none() {
            self.flag(
                "adding-required-field",
                format!(
                    "ADD COLUMN {table}.{} NOT NULL without a default fails on a table with rows, and old clients' inserts fail after it",
                    col.colname
                ),
                "pgroll's add_column with nullable: false and up (or a default)",
            );
        }
    }

    fn column_type(&mut self, col: &pg_query::protobuf::ColumnDef) {
        match type_name(col).as_deref() {
            Some("timestamp") => self.flag(
                "prefer-timestamptz",
                format!("column {} is timestamp without time zone", col.colname),
                "timestamptz",
            ),
            Some("bpchar") => self.flag(
                "ban-char-field",
                format!("column {} is char(n), which pads with spaces", col.colname),
                "text or varchar",
            ),
            _ => {}
        }
    }
}

/// Lints one `up`/`down` expression, `at` naming it.
pub fn lint_expression(expr: &str, at: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let Ok(parsed) = pg_query::parse(
        &format!("SELECT ({expr})"),
        pg_query::ParserOptions::DEFAULT,
    ) else {
        // The planner reports expressions that do not parse.
        return out;
    };
    let nodes = parsed.protobuf.nodes();
    let volatile: BTreeSet<String> = parsed
        .functions()
        .into_iter()
        .map(|f| f.rsplit('.').next().unwrap_or(&f).to_string())
        .filter(|f| VOLATILE.contains(&f.as_str()))
        .collect();
    if !volatile.is_empty() {
        out.push(Finding {
            rule: "volatile-expression",
            level: level_of("volatile-expression"),
            at: at.to_string(),
            message: format!(
                "{expr:?} calls {}: each write gets another value, the backfill's differs from the trigger's, and verify cannot check it",
                volatile.into_iter().collect::<Vec<_>>().join(", ")
            ),
            instead: "an expression over the row's own columns (a default belongs in the column's default)",
        });
    }
    if nodes
        .iter()
        .any(|(n, ..)| matches!(n, pg_query::NodeRef::SubLink(_)))
    {
        out.push(Finding {
            rule: "subquery-in-expression",
            level: level_of("subquery-in-expression"),
            at: at.to_string(),
            message: format!(
                "{expr:?} holds a subquery: it runs for every row the trigger or the backfill converts, and does not follow later changes to what it reads"
            ),
            instead: "an expression over the row's own columns; move lookups into a later migration's sql operation",
        });
    }
    out
}

/// The last name of a column's type (`timestamp`, `bpchar`, `serial`).
fn type_name(col: &pg_query::protobuf::ColumnDef) -> Option<String> {
    col.type_name
        .as_ref()?
        .names
        .last()
        .and_then(|n| match &n.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
}

/// Whether `node` calls a function whose last name passes `is`.
fn calls(node: &pg_query::protobuf::Node, is: impl Fn(&str) -> bool) -> bool {
    let Some(node) = &node.node else {
        return false;
    };
    // `nodes` walks from the node's children; the node itself comes first.
    let mut all = vec![node.to_ref()];
    all.extend(node.nodes().into_iter().map(|(n, ..)| n));
    all.iter().any(|n| match n {
        pg_query::NodeRef::FuncCall(f) => f
            .funcname
            .last()
            .and_then(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(is(&s.sval)),
                _ => None,
            })
            .unwrap_or(false),
        _ => false,
    })
}

/// `schema.table` or `table`, as written.
fn name(rv: Option<&RangeVar>) -> String {
    match rv {
        Some(rv) if !rv.schemaname.is_empty() => format!("{}.{}", rv.schemaname, rv.relname),
        Some(rv) => rv.relname.clone(),
        None => "?".into(),
    }
}

/// A DROP's object (a List of Strings) as dotted text.
fn object_name(node: &pg_query::protobuf::Node) -> String {
    match &node.node {
        Some(NodeEnum::List(list)) => list
            .items
            .iter()
            .filter_map(|i| match &i.node {
                Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("."),
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests;
