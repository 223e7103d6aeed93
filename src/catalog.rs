//! Reading the live schema from the system catalogs: the tables, columns and
//! keys the migration planner needs, and a normalized snapshot of everything
//! a migration may change (for the rollback guarantee and its test).

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::GenericClient;

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `format_type` of the column: `integer`, `character varying(255)`, ...
    pub type_: String,
    pub not_null: bool,
    /// The default expression (`pg_get_expr`), if any.
    pub default: Option<String>,
    /// True for identity and generated columns, which cannot be written.
    pub generated: bool,
    /// An identity column's `attidentity`: 'a' (GENERATED ALWAYS) or 'd'
    /// (BY DEFAULT); `None` for any other column.
    pub identity: Option<char>,
    /// The column's comment (`col_description`), if any.
    pub comment: Option<String>,
    /// The sequence the column owns (a `serial`'s, or one made `OWNED BY`
    /// it), which Postgres drops with the column.
    pub sequence: Option<OwnedSequence>,
}

/// A sequence owned by a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSequence {
    pub schema: String,
    pub name: String,
    /// Its data type: `smallint`, `integer` or `bigint`.
    pub type_: String,
    /// `seqincrement`, `seqmin`, `seqmax`, `seqcache`, `seqcycle`.
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
}

/// What kind of object covers a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoveringKind {
    /// An index that backs no constraint.
    Index,
    PrimaryKey,
    Unique,
    /// An exclusion constraint.
    Exclusion,
    Check,
    ForeignKey,
}

/// An index or constraint of a table, with what it takes to build it again
/// over other columns (a duplicated column's carry-over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covering {
    /// The index's or the constraint's name.
    pub name: String,
    pub kind: CoveringKind,
    /// The columns of its own table that it uses: key columns, INCLUDE
    /// columns and those its expressions and predicate read (from
    /// `pg_depend`), or a constraint's `conkey` in key order.
    pub columns: Vec<String>,
    /// `pg_get_indexdef` of the index (of the backing index for primary
    /// keys, unique and exclusion constraints).
    pub index_def: Option<String>,
    /// `pg_get_constraintdef` of a check constraint, without `NOT VALID`.
    pub check: Option<String>,
    /// What a foreign key references.
    pub references: Option<References>,
    pub deferrable: bool,
    pub deferred: bool,
    /// False for a constraint added NOT VALID and never validated.
    pub validated: bool,
}

/// The referenced side of a foreign key, and its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct References {
    pub schema: String,
    pub table: String,
    /// Referenced columns, in key order.
    pub columns: Vec<String>,
    /// `confupdtype`, `confdeltype`: a no action, r restrict, c cascade,
    /// n set null, d set default.
    pub on_update: char,
    pub on_delete: char,
    /// `confmatchtype`: f full, p partial, s simple.
    pub match_type: char,
    /// True when `ON DELETE SET NULL/DEFAULT` names a subset of the columns.
    pub delete_set_columns: bool,
}

/// One ordinary or partitioned table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableInfo {
    pub name: String,
    /// In attnum order.
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in key order; empty when there is none.
    pub primary_key: Vec<String>,
    /// The columns of a valid, non-partial unique index on NOT NULL columns.
    pub unique_not_null: Option<Vec<String>>,
    /// Names of the table's constraints.
    pub constraints: Vec<String>,
    /// For each column, the indexes and constraints that cover it
    /// (including foreign keys of other tables that reference it).
    pub dependents: BTreeMap<String, BTreeSet<String>>,
    /// The columns of each constraint on this table, in key order.
    pub constraint_columns: BTreeMap<String, Vec<String>>,
    /// `relreplident`: 'd' default, 'n' nothing, 'f' full, 'i' index.
    pub replica_identity: char,
    /// The replica-identity index, when `replica_identity` is 'i'.
    pub replica_index: Option<String>,
    /// Its indexes and its check, unique, primary-key, exclusion and
    /// foreign-key constraints (those it holds, not those referencing it),
    /// except pgshift's own temporary ones.
    pub covering: Vec<Covering>,
}

impl TableInfo {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Every table of `schema`, by name.
pub async fn tables(
    client: &impl GenericClient,
    schema: &str,
) -> Result<BTreeMap<String, TableInfo>, tokio_postgres::Error> {
    let mut tables: BTreeMap<String, TableInfo> = BTreeMap::new();
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '' OR a.attgenerated <> '',
                    nullif(a.attidentity::text, ''), col_description(c.oid, a.attnum)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
             ORDER BY c.relname, a.attnum",
            &[&schema],
        )
        .await?;
    for row in rows {
        let table: String = row.get(0);
        let entry = tables.entry(table.clone()).or_insert_with(|| TableInfo {
            name: table,
            ..Default::default()
        });
        entry.columns.push(ColumnInfo {
            name: row.get(1),
            type_: row.get(2),
            not_null: row.get(3),
            default: row.get(4),
            generated: row.get(5),
            identity: row.get::<_, Option<&str>>(6).and_then(|k| k.chars().next()),
            comment: row.get(7),
            sequence: None,
        });
    }
    owned_sequences(client, schema, &mut tables).await?;
    indexes_covering(client, schema, &mut tables).await?;
    constraints_covering(client, schema, &mut tables).await?;
    keys(client, schema, &mut tables).await?;
    replica_identities(client, schema, &mut tables).await?;
    constraint_names(client, schema, &mut tables).await?;
    dependents(client, schema, &mut tables).await?;
    constraint_columns(client, schema, &mut tables).await?;
    Ok(tables)
}

/// Primary keys, and the first valid, non-partial unique key on NOT NULL columns.
async fn keys(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let keys = client
        .query(
            "SELECT c.relname::text, i.indisprimary,
                    array_agg(a.attname::text ORDER BY k.ord), bool_and(a.attnotnull)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
               AND i.indexprs IS NULL
             GROUP BY c.relname, i.indexrelid, i.indisprimary
             ORDER BY c.relname, i.indisprimary DESC, i.indexrelid",
            &[&schema],
        )
        .await?;
    for row in keys {
        let Some(table) = tables.get_mut(row.get::<_, &str>(0)) else {
            continue;
        };
        let columns: Vec<String> = row.get(2);
        if row.get::<_, bool>(1) {
            table.primary_key = columns;
        } else if row.get::<_, bool>(3) && table.unique_not_null.is_none() {
            table.unique_not_null = Some(columns);
        }
    }
    Ok(())
}

/// Each table's replica identity and its index.
async fn replica_identities(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let identities = client
        .query(
            "SELECT c.relname::text, c.relreplident::text,
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid AND i.indisreplident)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            &[&schema],
        )
        .await?;
    for row in identities {
        if let Some(table) = tables.get_mut(row.get::<_, &str>(0)) {
            table.replica_identity = row.get::<_, &str>(1).chars().next().unwrap_or('d');
            table.replica_index = row.get(2);
        }
    }
    Ok(())
}

/// The names of each table's constraints.
async fn constraint_names(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let constraints = client
        .query(
            "SELECT c.relname::text, con.conname::text
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 ORDER BY 1, 2",
            &[&schema],
        )
        .await?;
    for row in constraints {
        if let Some(table) = tables.get_mut(row.get::<_, &str>(0)) {
            table.constraints.push(row.get(1));
        }
    }
    Ok(())
}

/// For each column, the indexes and constraints that cover it, foreign keys of other tables that reference it included.
async fn dependents(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let dependents = client
        .query(
            "SELECT c.relname::text, a.attname::text, d.name
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN LATERAL (
                 SELECT ic.relname::text AS name FROM pg_depend dep
                 JOIN pg_class ic ON ic.oid = dep.objid AND ic.relkind IN ('i', 'I')
                 WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                   AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum
                 UNION SELECT con.conname::text FROM pg_constraint con
                 WHERE con.conrelid = c.oid AND a.attnum = ANY (con.conkey)
                 UNION SELECT con.conname::text FROM pg_constraint con
                 WHERE con.confrelid = c.oid AND a.attnum = ANY (con.confkey)
             ) d ON true
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            &[&schema],
        )
        .await?;
    for row in dependents {
        if let Some(table) = tables.get_mut(row.get::<_, &str>(0)) {
            table
                .dependents
                .entry(row.get(1))
                .or_default()
                .insert(row.get(2));
        }
    }
    Ok(())
}

/// The sequences that columns own: `deptype` 'a' (`serial`, `OWNED BY`)
/// or 'i' (identity) in `pg_depend`.
async fn owned_sequences(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, sn.nspname::text, s.relname::text,
                    format_type(seq.seqtypid, NULL), seq.seqincrement, seq.seqmin, seq.seqmax,
                    seq.seqcache, seq.seqcycle
             FROM pg_depend d
             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_namespace sn ON sn.oid = s.relnamespace
             JOIN pg_sequence seq ON seq.seqrelid = s.oid
             JOIN pg_class c ON c.oid = d.refobjid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.deptype IN ('a', 'i') AND n.nspname = $1",
            &[&schema],
        )
        .await?;
    for row in rows {
        let Some(table) = tables.get_mut(row.get::<_, &str>(0)) else {
            continue;
        };
        let column: &str = row.get(1);
        if let Some(c) = table.columns.iter_mut().find(|c| c.name == column) {
            c.sequence = Some(OwnedSequence {
                schema: row.get(2),
                name: row.get(3),
                type_: row.get(4),
                increment: row.get(5),
                min: row.get(6),
                max: row.get(7),
                cache: row.get(8),
                cycle: row.get(9),
            });
        }
    }
    Ok(())
}

/// Each table's valid indexes, with the primary-key, unique or exclusion
/// constraint each backs, and the columns each uses (from `pg_depend`, so
/// expression and predicate columns count; a constraint's index depends on
/// its constraint, and the constraint on the columns).
async fn indexes_covering(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, ic.relname::text, pg_get_indexdef(i.indexrelid),
                    con.contype::text, coalesce(con.condeferrable, false),
                    coalesce(con.condeferred, false),
                    ARRAY(SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND EXISTS (
                              SELECT FROM pg_depend d
                              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
                                AND d.refobjsubid = a.attnum
                                AND ((d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid)
                                  OR (d.classid = 'pg_constraint'::regclass AND d.objid = con.oid)))
                          ORDER BY a.attnum)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_class ic ON ic.oid = i.indexrelid
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                  AND con.contype IN ('p', 'u', 'x')
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND i.indisvalid
               AND left(ic.relname, 9) <> '_pgshift_'
             ORDER BY 1, 2",
            &[&schema],
        )
        .await?;
    for row in rows {
        let Some(table) = tables.get_mut(row.get::<_, &str>(0)) else {
            continue;
        };
        let kind = match row.get::<_, Option<&str>>(3) {
            Some("p") => CoveringKind::PrimaryKey,
            Some("u") => CoveringKind::Unique,
            Some(_) => CoveringKind::Exclusion,
            None => CoveringKind::Index,
        };
        table.covering.push(Covering {
            name: row.get(1),
            kind,
            columns: row.get(6),
            index_def: row.get(2),
            check: None,
            references: None,
            deferrable: row.get(4),
            deferred: row.get(5),
            validated: true,
        });
    }
    Ok(())
}

/// Each table's own check and foreign-key constraints (not inherited
/// ones), with what a foreign key references.
async fn constraints_covering(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    // `confdelsetcols` (ON DELETE SET NULL (columns)) is Postgres 15's.
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let delete_set_columns = if version >= 150000 {
        "con.confdelsetcols IS NOT NULL"
    } else {
        "false"
    };
    let rows = client
        .query(
            &format!("SELECT c.relname::text, con.conname::text, con.contype::text,
                    pg_get_constraintdef(con.oid), con.convalidated, con.condeferrable, con.condeferred,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
                    fn.nspname::text, fc.relname::text,
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o),
                    con.confupdtype::text, con.confdeltype::text, con.confmatchtype::text,
                    {delete_set_columns}
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class fc ON fc.oid = con.confrelid
             LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
             WHERE n.nspname = $1 AND con.contype IN ('c', 'f') AND con.conparentid = 0
               AND NOT con.coninhcount > 0 AND left(con.conname, 9) <> '_pgshift_'
             ORDER BY 1, 2"),
            &[&schema],
        )
        .await?;
    let first = |s: &str| s.chars().next().unwrap_or(' ');
    for row in rows {
        let Some(table) = tables.get_mut(row.get::<_, &str>(0)) else {
            continue;
        };
        let foreign = row.get::<_, &str>(2) == "f";
        let definition: String = row.get(3);
        table.covering.push(Covering {
            name: row.get(1),
            kind: if foreign {
                CoveringKind::ForeignKey
            } else {
                CoveringKind::Check
            },
            columns: row.get(7),
            index_def: None,
            check: (!foreign).then(|| {
                definition
                    .strip_suffix(" NOT VALID")
                    .unwrap_or(&definition)
                    .to_string()
            }),
            references: foreign.then(|| References {
                schema: row.get(8),
                table: row.get(9),
                columns: row.get(10),
                on_update: first(row.get(11)),
                on_delete: first(row.get(12)),
                match_type: first(row.get(13)),
                delete_set_columns: row.get(14),
            }),
            deferrable: row.get(5),
            deferred: row.get(6),
            validated: row.get(4),
        });
    }
    Ok(())
}

/// The columns of each constraint, in key order.
async fn constraint_columns(
    client: &impl GenericClient,
    schema: &str,
    tables: &mut BTreeMap<String, TableInfo>,
) -> Result<(), tokio_postgres::Error> {
    let constraint_columns = client
        .query(
            "SELECT c.relname::text, con.conname::text, array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE n.nspname = $1
             GROUP BY 1, 2",
            &[&schema],
        )
        .await?;
    for row in constraint_columns {
        if let Some(table) = tables.get_mut(row.get::<_, &str>(0)) {
            table.constraint_columns.insert(row.get(1), row.get(2));
        }
    }
    Ok(())
}

/// The views of `schema` (a version schema), each with the table it reads
/// and its columns in order, each with the table column it shows:
/// view → (table, [(view column, table column)]).
#[allow(clippy::type_complexity)]
pub async fn views(
    client: &impl GenericClient,
    schema: &str,
) -> Result<BTreeMap<String, (String, Vec<(String, String)>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT v.relname::text, t.relname::text, pg_get_viewdef(v.oid)
             FROM pg_class v
             JOIN pg_namespace n ON n.oid = v.relnamespace
             JOIN pg_rewrite r ON r.ev_class = v.oid
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
             JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p')
             WHERE n.nspname = $1 AND v.relkind = 'v'",
            &[&schema],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let definition: String = r.get(2);
            (r.get(0), (r.get(1), view_columns(&definition)))
        })
        .collect())
}

/// The (view column, table column) pairs of a pgshift version view, whose
/// definition is `SELECT t.a, t.b AS c, ... FROM t`. Anything else gives none.
fn view_columns(definition: &str) -> Vec<(String, String)> {
    use pg_query::NodeEnum;
    let Ok(parsed) = pg_query::parse(definition, pg_query::ParserOptions::DEFAULT) else {
        return Vec::new();
    };
    let stmt = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_deref());
    let Some(NodeEnum::SelectStmt(select)) = stmt.and_then(|s| s.node.as_ref()) else {
        return Vec::new();
    };
    let column = |val: &NodeEnum| match val {
        NodeEnum::ColumnRef(c) => match c.fields.last().and_then(|f| f.node.as_ref()) {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    };
    select
        .target_list
        .iter()
        .filter_map(|target| match target.node.as_ref()? {
            NodeEnum::ResTarget(t) => {
                let column = column(t.val.as_ref()?.node.as_ref()?)?;
                let name = if t.name.is_empty() {
                    column.clone()
                } else {
                    t.name.clone()
                };
                Some((name, column))
            }
            _ => None,
        })
        .collect()
}

/// Names of every schema in the database.
pub async fn schemas(
    client: &impl GenericClient,
) -> Result<BTreeSet<String>, tokio_postgres::Error> {
    Ok(client
        .query("SELECT nspname::text FROM pg_namespace", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Names of the views in `schema`.
pub async fn view_names(
    client: &impl GenericClient,
    schema: &str,
) -> Result<BTreeSet<String>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'v'",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Names of every index in `schema`.
pub async fn indexes(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('i', 'I') ORDER BY 1",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A normalized, sorted description of every user schema: schemas, tables,
/// views, columns (type, nullability, default), constraints, indexes,
/// triggers, functions and replica identity. Two snapshots are equal exactly
/// when none of those differ. The `pgshift` state tables' contents are not
/// part of it.
pub async fn snapshot(client: &impl GenericClient) -> Result<Vec<String>, tokio_postgres::Error> {
    const USER: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'";
    let queries = [
        format!("SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE {USER}"),
        format!(
            "SELECT 'relation ' || n.nspname || '.' || c.relname || ' kind=' || c.relkind::text || ' replident=' || c.relreplident::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER} AND c.relkind IN ('r','p','v','m','S','f')"
        ),
        format!(
            "SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                    || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                    || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
                    || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
                    || ' #' || a.attnum
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE {USER} AND c.relkind IN ('r','p','v','m','f')"
        ),
        format!(
            "SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || con.conname || ' ' || pg_get_constraintdef(con.oid)
                    || CASE WHEN con.convalidated THEN '' ELSE ' (not validated)' END
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER}"
        ),
        format!(
            "SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER}"
        ),
        format!(
            "SELECT 'trigger ' || pg_get_triggerdef(t.oid)
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER} AND NOT t.tgisinternal"
        ),
        format!(
            "SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                    || md5(coalesce(p.prosrc, ''))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER}"
        ),
        format!(
            "SELECT 'view ' || n.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER} AND c.relkind = 'v'"
        ),
    ];
    let mut out = Vec::new();
    for query in &queries {
        for row in client.query(query.as_str(), &[]).await? {
            out.push(row.get::<_, String>(0));
        }
    }
    out.sort();
    Ok(out)
}
