//! The migration file format (pgroll's; README.md, "Migrations", and
//! `schemas/migration.schema.json`): loading JSON or YAML, validation against
//! `schemas/migration.schema.json` with every problem reported at once, and
//! the typed model of all 15 operations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// The JSON Schema every file is checked against, kept in the repository.
pub const SCHEMA: &str = include_str!("../../schemas/migration.schema.json");

/// One problem in a migration file: where (a JSON pointer such as
/// `/operations/0/add_column/column`) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Why a migration file was refused. Display lists every problem, each with
/// the file and the JSON path.
#[derive(Debug, Error)]
pub enum FormatError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: the extension must be .json, .yaml or .yml")]
    Extension { file: String },
    #[error("{file}: not valid {format}: {message}")]
    Syntax {
        file: String,
        format: &'static str,
        message: String,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let mut out = format!("{file}: {} problem(s):", problems.len());
    for p in problems {
        let path = if p.path.is_empty() { "/" } else { &p.path };
        out.push_str(&format!("\n  at {path}: {}", p.message));
    }
    out
}

/// A parsed, schema-valid migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The version this migration produces: the file stem, or the `name` field.
    pub name: String,
    /// The version schema to create, when the file names one.
    pub version_schema: Option<String>,
    pub operations: Vec<Operation>,
    /// The document as loaded, for the state schema.
    pub raw: serde_json::Value,
}

impl Migration {
    /// Every default expression the migration gives a column, with the
    /// column's type: (type, default). A new column's default comes with
    /// its own type; an `alter_column` default only with a type change.
    pub fn defaults(&self) -> Vec<(&str, &str)> {
        let mut defaults = Vec::new();
        for op in &self.operations {
            match op {
                Operation::AddColumn(a) => {
                    if let Some(d) = &a.column.default {
                        defaults.push((a.column.type_.as_str(), d.as_str()));
                    }
                }
                Operation::AlterColumn(a) => {
                    if let (Some(Some(d)), Some(t)) = (&a.default, &a.type_) {
                        defaults.push((t.as_str(), d.as_str()));
                    }
                }
                _ => {}
            }
        }
        defaults
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: Option<String>,
    version_schema: Option<String>,
    operations: Vec<Operation>,
}

/// Reads, validates and parses a migration file (`.json`, `.yaml` or `.yml`).
pub fn load(path: &Path) -> Result<Migration, FormatError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        file: file.clone(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let syntax = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Syntax::Json,
        Some("yaml" | "yml") => Syntax::Yaml,
        _ => return Err(FormatError::Extension { file }),
    };
    parse(&file, &stem, &text, syntax)
}

/// The syntax a migration file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

/// Parses migration text in `syntax`. `stem` names the migration unless the
/// document has a `name`; `file` is only used in messages.
pub fn parse(file: &str, stem: &str, text: &str, syntax: Syntax) -> Result<Migration, FormatError> {
    let raw: serde_json::Value = if syntax == Syntax::Yaml {
        serde_norway::from_str(text).map_err(|e| FormatError::Syntax {
            file: file.to_string(),
            format: "YAML",
            message: e.to_string(),
        })?
    } else {
        serde_json::from_str(text).map_err(|e| FormatError::Syntax {
            file: file.to_string(),
            format: "JSON",
            message: e.to_string(),
        })?
    };
    let mut problems = schema_problems(&raw);
    if problems.is_empty() {
        // The schema accepted it, so this only fails on a schema/model mismatch.
        let doc: Document =
            serde_json::from_value(raw.clone()).map_err(|e| FormatError::Invalid {
                file: file.to_string(),
                problems: vec![Problem {
                    path: String::new(),
                    message: e.to_string(),
                }],
            })?;
        let name = doc.name.unwrap_or_else(|| stem.to_string());
        if name.is_empty() || name.len() > 63 {
            problems.push(Problem {
                path: "/name".into(),
                message: format!(
                    "the migration name {name:?} must be 1 to 63 bytes; rename the file or set `name`"
                ),
            });
        }
        problems.extend(semantic_problems(&doc.operations));
        if problems.is_empty() {
            return Ok(Migration {
                name,
                version_schema: doc.version_schema,
                operations: doc.operations,
                raw,
            });
        }
    }
    Err(FormatError::Invalid {
        file: file.to_string(),
        problems,
    })
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(SCHEMA).expect("the bundled schema is JSON");
        jsonschema::validator_for(&schema).expect("the bundled schema is a valid JSON Schema")
    })
}

/// Every schema violation in `doc`, deepest first within each path.
fn schema_problems(doc: &serde_json::Value) -> Vec<Problem> {
    let mut problems: Vec<Problem> = validator()
        .iter_errors(doc)
        .map(|e| {
            let path = e.instance_path().to_string();
            let mut message = e.to_string();
            let is_operation = path
                .strip_prefix("/operations/")
                .is_some_and(|i| i.parse::<usize>().is_ok());
            if is_operation && message.starts_with("Additional properties") {
                message.push_str(&format!(
                    "; an operation is one of: {}",
                    OPERATION_KINDS.join(", ")
                ));
            }
            Problem { path, message }
        })
        .collect();
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems.dedup();
    problems
}

/// Rules the schema cannot express.
fn semantic_problems(operations: &[Operation]) -> Vec<Problem> {
    let mut problems = Vec::new();
    if operations.len() > 1 {
        for (i, op) in operations.iter().enumerate() {
            if matches!(op, Operation::Sql(_)) {
                problems.push(Problem {
                    path: format!("/operations/{i}/sql"),
                    message: "a `sql` operation must be the only operation in its file; move it to a file of its own"
                        .into(),
                });
            }
        }
    }
    problems
}

/// Deserializes a field that may be absent (outer `None`), `null` (inner
/// `None`: "drop it") or a value.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The operation kinds, as files spell them.
pub const OPERATION_KINDS: [&str; 15] = [
    "create_table",
    "drop_table",
    "rename_table",
    "add_column",
    "drop_column",
    "rename_column",
    "alter_column",
    "create_index",
    "drop_index",
    "create_constraint",
    "drop_constraint",
    "drop_multicolumn_constraint",
    "rename_constraint",
    "set_replica_identity",
    "sql",
];

/// One operation; the file's one-key object names the variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    CreateTable(CreateTable),
    DropTable(DropTable),
    RenameTable(RenameTable),
    AddColumn(AddColumn),
    DropColumn(DropColumn),
    RenameColumn(RenameColumn),
    AlterColumn(AlterColumn),
    CreateIndex(CreateIndex),
    DropIndex(DropIndex),
    CreateConstraint(CreateConstraint),
    DropConstraint(DropConstraint),
    DropMulticolumnConstraint(DropMulticolumnConstraint),
    RenameConstraint(RenameConstraint),
    SetReplicaIdentity(SetReplicaIdentity),
    Sql(RawSql),
}

impl Operation {
    /// The operation's kind as the file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::CreateTable(_) => "create_table",
            Operation::DropTable(_) => "drop_table",
            Operation::RenameTable(_) => "rename_table",
            Operation::AddColumn(_) => "add_column",
            Operation::DropColumn(_) => "drop_column",
            Operation::RenameColumn(_) => "rename_column",
            Operation::AlterColumn(_) => "alter_column",
            Operation::CreateIndex(_) => "create_index",
            Operation::DropIndex(_) => "drop_index",
            Operation::CreateConstraint(_) => "create_constraint",
            Operation::DropConstraint(_) => "drop_constraint",
            Operation::DropMulticolumnConstraint(_) => "drop_multicolumn_constraint",
            Operation::RenameConstraint(_) => "rename_constraint",
            Operation::SetReplicaIdentity(_) => "set_replica_identity",
            Operation::Sql(_) => "sql",
        }
    }
}

/// A column definition (shared by `create_table` and `add_column`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default = "yes")]
    pub nullable: bool,
    pub pk: Option<bool>,
    pub unique: Option<bool>,
    /// SQL expression; `None` when absent or null.
    pub default: Option<String>,
    pub check: Option<CheckConstraint>,
    pub references: Option<ForeignKeyReference>,
    pub comment: Option<String>,
    pub generated: Option<Generated>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generated {
    pub expression: Option<String>,
    pub identity: Option<Identity>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub user_specified_values: Option<String>,
    pub sequence_options: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConstraint {
    pub name: String,
    pub constraint: String,
    pub no_inherit: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKeyReference {
    pub name: String,
    pub table: String,
    pub column: String,
    pub on_delete: Option<String>,
    pub on_update: Option<String>,
    pub match_type: Option<String>,
    pub deferrable: Option<bool>,
    pub initially_deferred: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConstraint {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub columns: Vec<String>,
    pub check: Option<String>,
    pub references: Option<TableReferences>,
    pub exclude: Option<Exclude>,
    pub deferrable: Option<bool>,
    pub initially_deferred: Option<bool>,
    pub nulls_not_distinct: Option<bool>,
    pub no_inherit: Option<bool>,
    pub index_parameters: Option<IndexParameters>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableReferences {
    pub table: String,
    pub columns: Vec<String>,
    pub on_delete: Option<String>,
    pub on_update: Option<String>,
    pub match_type: Option<String>,
    #[serde(default)]
    pub on_delete_set_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    pub index_method: Option<String>,
    pub elements: Option<String>,
    pub predicate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexParameters {
    pub tablespace: Option<String>,
    pub storage_parameters: Option<String>,
    #[serde(default)]
    pub include_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTable {
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(default)]
    pub constraints: Vec<TableConstraint>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTable {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameTable {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    pub table: String,
    pub column: Column,
    pub up: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    pub table: String,
    pub column: String,
    pub down: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameColumn {
    pub table: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlterColumn {
    pub table: String,
    pub column: String,
    /// The column's new name, as `rename_column` would give it.
    pub name: Option<String>,
    /// Absent: a plain copy of the column (pgroll's default).
    pub up: Option<String>,
    /// Absent: a plain copy of the column (pgroll's default).
    pub down: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub nullable: Option<bool>,
    /// Absent: unchanged; `null`: dropped; a string: the new default (SQL).
    #[serde(default, deserialize_with = "nullable")]
    pub default: Option<Option<String>>,
    /// Absent: unchanged; `null`: dropped.
    #[serde(default, deserialize_with = "nullable")]
    pub comment: Option<Option<String>>,
    pub unique: Option<UniqueName>,
    pub check: Option<CheckConstraint>,
    pub references: Option<ForeignKeyReference>,
}

impl AlterColumn {
    /// The column's name in the new version.
    pub fn new_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.column)
    }

    /// `up`, or a plain copy of the old column when the file has none.
    pub fn up_or_copy(&self) -> String {
        self.up
            .clone()
            .unwrap_or_else(|| crate::quote::ident(&self.column))
    }

    /// `down`, or a plain copy of the new column when the file has none.
    pub fn down_or_copy(&self) -> String {
        self.down
            .clone()
            .unwrap_or_else(|| crate::quote::ident(self.new_name()))
    }

    /// True when the operation only renames the column: no duplicate.
    pub fn only_renames(&self) -> bool {
        self.name.is_some()
            && self.type_.is_none()
            && self.nullable.is_none()
            && self.default.is_none()
            && self.comment.is_none()
            && self.unique.is_none()
            && self.check.is_none()
            && self.references.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueName {
    pub name: String,
}

/// One column of an index, in any of the three spellings files use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexField {
    pub column: String,
    pub collate: Option<String>,
    pub sort: Option<String>,
    pub nulls: Option<String>,
    pub opclass: Option<OpClass>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpClass {
    pub name: Option<String>,
    pub params: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFieldSettings {
    collate: Option<String>,
    sort: Option<String>,
    nulls: Option<String>,
    opclass: Option<OpClass>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IndexColumns {
    Fields(Vec<IndexField>),
    Names(Vec<String>),
    Map(BTreeMap<String, IndexFieldSettings>),
}

fn index_columns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IndexField>, D::Error> {
    Ok(match IndexColumns::deserialize(d)? {
        IndexColumns::Fields(fields) => fields,
        IndexColumns::Names(names) => names
            .into_iter()
            .map(|column| IndexField {
                column,
                collate: None,
                sort: None,
                nulls: None,
                opclass: None,
            })
            .collect(),
        IndexColumns::Map(map) => map
            .into_iter()
            .map(|(column, s)| IndexField {
                column,
                collate: s.collate,
                sort: s.sort,
                nulls: s.nulls,
                opclass: s.opclass,
            })
            .collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    pub name: String,
    pub table: String,
    #[serde(deserialize_with = "index_columns")]
    pub columns: Vec<IndexField>,
    pub unique: Option<bool>,
    pub method: Option<String>,
    pub predicate: Option<String>,
    pub storage_parameters: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropIndex {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConstraint {
    pub table: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub columns: Vec<String>,
    pub check: Option<String>,
    pub references: Option<TableReferences>,
    pub no_inherit: Option<bool>,
    pub index_parameters: Option<IndexParameters>,
    pub up: BTreeMap<String, String>,
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConstraint {
    pub table: String,
    pub name: String,
    pub up: String,
    pub down: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropMulticolumnConstraint {
    pub table: String,
    pub name: String,
    #[serde(default)]
    pub up: BTreeMap<String, String>,
    pub down: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConstraint {
    pub table: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetReplicaIdentity {
    pub table: String,
    pub identity: ReplicaIdentity,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaIdentity {
    #[serde(rename = "type")]
    pub kind: String,
    /// Needed for type `index` only.
    #[serde(default)]
    pub index: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    pub up: String,
    pub down: Option<String>,
    #[serde(rename = "onComplete", default)]
    pub on_complete: bool,
}

#[cfg(test)]
mod tests;
