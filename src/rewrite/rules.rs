//! The named rules by which a statement is refused during a migration,
//! judged on its parse tree whatever its spelling (any qualification,
//! quoting, case or string syntax): setting the version, DDL on a migrating
//! table, touching pgshift's own objects, and a definition that would bind
//! to one version's shape. Nothing is refused for any other reason.

use super::VersionView;
use super::tree::Lite;
use crate::state::VERSION_SETTING;

/// Why a statement is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Setting, resetting or computing the name of `pgshift.version`.
    VersionSetting,
    /// DDL on a table the running migration changes.
    MigratingTable,
    /// DDL on the `pgshift` schema, a version schema or their objects.
    PgshiftObject,
    /// A view, function body, rule or policy over a migrating table, which
    /// would bind to one version's shape.
    BindsToVersion,
    /// Too deeply nested or too large for pgshift to check, while it may
    /// need a rewrite or a refusal.
    TooComplex,
    /// A `search_path` change whose value pgshift cannot keep inside the
    /// session's version.
    SearchPath,
}

impl Rule {
    /// The rule's name, as refusals cite it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::VersionSetting => "version_setting",
            Rule::MigratingTable => "migrating_table",
            Rule::PgshiftObject => "pgshift_object",
            Rule::BindsToVersion => "binds_to_version",
            Rule::TooComplex => "too_complex",
            Rule::SearchPath => "search_path",
        }
    }

    /// The SQLSTATE of the refusal: 54000 (program_limit_exceeded) for a
    /// statement too complex to check, else 42501 (insufficient_privilege).
    pub fn sqlstate(self) -> &'static str {
        match self {
            Rule::TooComplex => "54000",
            _ => "42501",
        }
    }
}

/// A refusal: the rule and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub message: String,
}

/// What a name in a DDL statement stands for.
enum Target {
    /// A physical table the migration changes.
    Migrating(String),
    /// pgshift's own: its schema, a version schema, or something in them.
    Pgshift(String),
    Other,
}

/// The relation that the qualified name `parts` names, for a session of `view`.
fn relation(parts: &[&str], view: &VersionView) -> Target {
    match parts {
        [.., schema, rel] if is_pgshift_schema(schema, view) => {
            Target::Pgshift(format!("{schema}.{rel}"))
        }
        [.., schema, rel] if *schema == view.schema && view.migrating.contains(*rel) => {
            Target::Migrating(rel.to_string())
        }
        [rel] => {
            let physical = view.views.get(*rel).map_or(*rel, String::as_str);
            if view.migrating.contains(physical) {
                Target::Migrating(physical.to_string())
            } else {
                Target::Other
            }
        }
        _ => Target::Other,
    }
}

/// True for `pgshift` and the migration's version schemas.
fn is_pgshift_schema(schema: &str, view: &VersionView) -> bool {
    schema == "pgshift" || view.version_schemas.contains(schema)
}

/// The qualified name of a RangeVar: catalog, schema and relation, those given.
pub(super) fn range_var_parts(rv: &Lite) -> Vec<&str> {
    ["catalogname", "schemaname", "relname"]
        .iter()
        .map(|f| rv.str(f))
        .filter(|p| !p.is_empty())
        .collect()
}

fn refuse(rule: Rule, message: String) -> Option<Refusal> {
    Some(Refusal { rule, message })
}

fn on_target(target: Target, view: &VersionView) -> Option<Refusal> {
    match target {
        Target::Migrating(table) => refuse(
            Rule::MigratingTable,
            format!(
                "table {table:?} is being migrated (version {} is live); change its schema with a pgshift migration, not with DDL",
                view.version
            ),
        ),
        Target::Pgshift(what) => refuse(
            Rule::PgshiftObject,
            format!(
                "{what:?} belongs to pgshift, which manages it during the migration; leave it to `pgshift complete` or `pgshift rollback`"
            ),
        ),
        Target::Other => None,
    }
}

/// Why `stmt` (one statement's tree) is refused for a session of `view`, if it is.
pub fn check(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    binds_to_version(stmt, view)
        .or_else(|| statement(stmt, view))
        .or_else(|| set_config(stmt, view))
}

fn statement(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    match stmt.kind()? {
        "VariableSetStmt" => version_setting(stmt, view),
        "AlterRoleSetStmt" | "AlterDatabaseSetStmt" | "AlterSystemStmt" => {
            version_setting(stmt.get("setstmt")?, view)
        }
        "DropStmt" => drop(stmt, view),
        "CreateSchemaStmt" => schema_named(stmt.str("schemaname"), view).or_else(|| {
            stmt.list("schema_elts")
                .iter()
                .find_map(|element| check(element, view))
        }),
        "AlterObjectSchemaStmt" if is_pgshift_schema(stmt.str("newschema"), view) => {
            on_target(Target::Pgshift(stmt.str("newschema").to_string()), view)
        }
        "CreateFunctionStmt" => function_named(stmt.list("funcname"), view),
        "AlterFunctionStmt" => function_named(stmt.get("func")?.list("objname"), view),
        "GrantStmt" => grant(stmt, view),
        "RenameStmt"
            if stmt.int("rename_type") == pg_query::protobuf::ObjectType::ObjectSchema as i64 =>
        {
            schema_named(stmt.str("subname"), view)
        }
        kind if is_ddl(kind) => ddl_relations(stmt, view)
            .or_else(|| object_named(stmt.get("object"), stmt.int("object_type"), view)),
        _ => None,
    }
}

/// Statements that change the schema, whose every table reference is
/// checked: the table altered, a table inherited from or referenced by a
/// foreign key, an index's or trigger's table.
fn is_ddl(kind: &str) -> bool {
    matches!(
        kind,
        "AlterTableStmt"
            | "RenameStmt"
            | "AlterObjectSchemaStmt"
            | "AlterOwnerStmt"
            | "CreateStmt"
            | "IndexStmt"
            | "CreateTrigStmt"
            | "RuleStmt"
            | "CreatePolicyStmt"
            | "AlterPolicyStmt"
            | "ViewStmt"
            | "ClusterStmt"
            | "CreateStatsStmt"
    )
}

/// `SET`, `RESET`, `ALTER ... SET` of `pgshift.version` (GUC names are case
/// insensitive). `RESET ALL` has no name and is allowed.
fn version_setting(set: &Lite, view: &VersionView) -> Option<Refusal> {
    if !set.str("name").eq_ignore_ascii_case(VERSION_SETTING) {
        return None;
    }
    refuse(
        Rule::VersionSetting,
        format!(
            "pgshift.version is set by pgshift (this session is pinned to version {}); connect with options=-c pgshift.version=<name> to choose another",
            view.version
        ),
    )
}

/// `set_config` naming `pgshift.version`, or naming its setting with an
/// expression pgshift cannot read (it could be `pgshift.version`).
fn set_config(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    let mut found = None;
    stmt.walk(|node, _| {
        if found.is_some() || node.kind() != Some("FuncCall") || !is_builtin(node, "set_config") {
            return;
        }
        let name = node.list("args").first().and_then(Lite::string_value);
        found = match name {
            Some(name) if name.eq_ignore_ascii_case(VERSION_SETTING) => version_setting(
                &Lite::Node("VariableSetStmt", vec![("name", Lite::Str(name.into()))]),
                view,
            ),
            Some(_) => None,
            None => refuse(
                Rule::VersionSetting,
                "set_config with a setting name that is not a literal: pgshift cannot tell whether it sets pgshift.version or search_path; name the setting literally".into(),
            ),
        };
    });
    found
}

/// True for a call of the built-in function `name` (bare, or in pg_catalog).
pub(super) fn is_builtin(call: &Lite, name: &str) -> bool {
    match Lite::names(call.list("funcname")).as_deref() {
        Some([f]) => f.eq_ignore_ascii_case(name),
        Some(["pg_catalog", f]) => f.eq_ignore_ascii_case(name),
        _ => false,
    }
}

fn drop(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    use pg_query::protobuf::ObjectType as O;
    let kind = stmt.int("remove_type") as i32;
    stmt.list("objects").iter().find_map(|object| {
        let parts = match object.kind()? {
            "List" => Lite::names(object.list("items"))?,
            "ObjectWithArgs" => Lite::names(object.list("objname"))?,
            "String" => vec![object.str("sval")],
            _ => return None,
        };
        if kind == O::ObjectSchema as i32 {
            return schema_named(parts.last()?, view);
        }
        if [O::ObjectTrigger, O::ObjectRule, O::ObjectPolicy]
            .iter()
            .any(|t| *t as i32 == kind)
        {
            // The last part names the trigger; the others its table.
            return on_target(
                relation(&parts[..parts.len().saturating_sub(1)], view),
                view,
            );
        }
        if [
            O::ObjectFunction,
            O::ObjectProcedure,
            O::ObjectRoutine,
            O::ObjectAggregate,
        ]
        .iter()
        .any(|t| *t as i32 == kind)
        {
            return function_parts(&parts, view);
        }
        on_target(relation(&parts, view), view)
    })
}

/// A schema by name: pgshift's own, or the physical schema of migrating tables.
fn schema_named(name: &str, view: &VersionView) -> Option<Refusal> {
    if is_pgshift_schema(name, view) {
        return on_target(Target::Pgshift(name.to_string()), view);
    }
    if name == view.schema {
        let table = view.migrating.iter().next().cloned().unwrap_or_default();
        return on_target(Target::Migrating(table), view);
    }
    None
}

fn function_named(name: &[Lite], view: &VersionView) -> Option<Refusal> {
    function_parts(&Lite::names(name)?, view)
}

/// A function in the `pgshift` schema (the dual-write triggers' functions).
fn function_parts(parts: &[&str], view: &VersionView) -> Option<Refusal> {
    match parts {
        [.., schema, f] if is_pgshift_schema(schema, view) => {
            on_target(Target::Pgshift(format!("{schema}.{f}")), view)
        }
        _ => None,
    }
}

/// Every RangeVar of a DDL statement.
fn ddl_relations(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    let mut found = None;
    stmt.walk(|node, _| {
        if found.is_none() && node.kind() == Some("RangeVar") {
            found = on_target(relation(&range_var_parts(node), view), view);
        }
    });
    found
}

/// The `object` of a RenameStmt, AlterOwnerStmt or AlterObjectSchemaStmt
/// that has no RangeVar (a function, a schema).
fn object_named(object: Option<&Lite>, _kind: i64, view: &VersionView) -> Option<Refusal> {
    let object = object?;
    match object.kind() {
        Some("ObjectWithArgs") => function_named(object.list("objname"), view),
        Some("String") => schema_named(object.str("sval"), view),
        Some("List") => function_parts(&Lite::names(object.list("items"))?, view),
        _ => None,
    }
}

/// GRANT or REVOKE on pgshift's schemas or what is in them: pgshift keeps
/// their privileges in step with the tables they show.
fn grant(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    stmt.list("objects")
        .iter()
        .find_map(|object| match object.kind() {
            Some("RangeVar") => match relation(&range_var_parts(object), view) {
                target @ Target::Pgshift(_) => on_target(target, view),
                _ => None,
            },
            Some("String") if is_pgshift_schema(object.str("sval"), view) => {
                on_target(Target::Pgshift(object.str("sval").to_string()), view)
            }
            Some("ObjectWithArgs") => function_named(object.list("objname"), view),
            _ => None,
        })
}

/// True for the statements whose definition Postgres keeps and binds to
/// the relations it names: views, materialized views, SQL-standard
/// function bodies, rules and policies.
pub(super) fn is_persisted_definition(stmt: &Lite) -> bool {
    use pg_query::protobuf::ObjectType as O;
    match stmt.kind() {
        Some("ViewStmt" | "RuleStmt" | "CreatePolicyStmt" | "AlterPolicyStmt") => true,
        Some("CreateTableAsStmt") => stmt.int("objtype") == O::ObjectMatview as i64,
        Some("CreateFunctionStmt") => stmt.get("sql_body").is_some(),
        _ => false,
    }
}

/// A persisted definition that names a migrating table: it would bind to
/// the shape of the version it is created in, and stop `complete` or
/// `rollback`.
fn binds_to_version(stmt: &Lite, view: &VersionView) -> Option<Refusal> {
    if !is_persisted_definition(stmt) {
        return None;
    }
    let mut found = None;
    stmt.walk(|node, _| {
        if found.is_some() || node.kind() != Some("RangeVar") {
            return;
        }
        if let Target::Migrating(table) = relation(&range_var_parts(node), view) {
            found = refuse(
                Rule::BindsToVersion,
                format!(
                    "this definition names table {table:?}, which is being migrated (version {} is live); it would bind to one version's shape, so create it after `pgshift complete`",
                    view.version
                ),
            );
        }
    });
    found
}
