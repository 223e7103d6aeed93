//! Version schemas carry the privileges of what they show (README.md,
//! "Roles and privileges"): each view gets the table and column privileges of the
//! table behind it, and the version schema's USAGE goes to every role that
//! holds one of them. Postgres skips a schema a role cannot use without a
//! word, so a missing grant would put a session on the physical tables
//! while pgshift reports it on its version.
//!
//! Privileges are read with `aclexplode` (PostgreSQL docs, "System
//! Information Functions": `aclexplode`, `acldefault`) and synced: what the
//! source has and the target lacks is granted, what the target has and the
//! source lacks is revoked, so a GRANT or REVOKE on a table during a
//! migration reaches its views at the next sync. The target's owner is left
//! alone (an owner holds every privilege anyway).

use tokio_postgres::GenericClient;

use super::plan::Privileges;
use crate::catalog;
use crate::quote::{ident, qualified};

/// One privilege to grant or revoke.
#[derive(Debug)]
struct Change {
    grant: bool,
    /// `SELECT`, `INSERT`, ... as `aclexplode` names it.
    privilege: String,
    /// The column, for a column privilege.
    column: Option<String>,
    /// `PUBLIC` or a quoted role name.
    grantee: String,
    grantable: bool,
}

impl Change {
    /// The GRANT or REVOKE statement on `object` (`"s"."t"`,
    /// `SEQUENCE "s"."t"`, `SCHEMA "s"`).
    fn sql(&self, object: &str) -> String {
        let what = match &self.column {
            Some(c) => format!("{} ({})", self.privilege, ident(c)),
            None => self.privilege.clone(),
        };
        if self.grant {
            let option = if self.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            format!("GRANT {what} ON {object} TO {}{option}", self.grantee)
        } else {
            format!("REVOKE {what} ON {object} FROM {} CASCADE", self.grantee)
        }
    }
}

/// The table privileges of `$1` (target) and `$2` (source) compared:
/// grants first flagged false (revokes), then true (grants). The target's
/// owner is left out on both sides.
const TABLE_DIFF: &str = "
WITH target_owner AS (SELECT relowner FROM pg_class WHERE oid = $1::text::regclass),
acl AS (
    SELECT c.oid, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
    WHERE c.oid IN ($1::text::regclass, $2::text::regclass)
      AND a.grantee <> (SELECT relowner FROM target_owner)),
want AS (SELECT grantee, privilege_type, is_grantable FROM acl WHERE oid = $2::text::regclass),
have AS (SELECT grantee, privilege_type, is_grantable FROM acl WHERE oid = $1::text::regclass),
diff AS (
    SELECT false AS grant_, * FROM (SELECT * FROM have EXCEPT SELECT * FROM want) r
    UNION ALL
    SELECT true, * FROM (SELECT * FROM want EXCEPT SELECT * FROM have) g)
SELECT grant_, privilege_type, NULL::text,
       CASE grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)::text) END,
       is_grantable
FROM diff ORDER BY grant_, privilege_type";

/// The column privileges of target `$1` and source `$2` compared, for the
/// column pairs (`$3[i]` on the target, `$4[i]` on the source).
const COLUMN_DIFF: &str = "
WITH target_owner AS (SELECT relowner FROM pg_class WHERE oid = $1::text::regclass),
pairs AS (SELECT * FROM unnest($3::text[], $4::text[]) AS p(target_col, source_col)),
want AS (
    SELECT p.target_col, a.grantee, a.privilege_type, a.is_grantable
    FROM pairs p
    JOIN pg_attribute att ON att.attrelid = $2::text::regclass AND att.attname = p.source_col
                          AND NOT att.attisdropped
    CROSS JOIN LATERAL aclexplode(att.attacl) a
    WHERE a.grantee <> (SELECT relowner FROM target_owner)),
have AS (
    SELECT p.target_col, a.grantee, a.privilege_type, a.is_grantable
    FROM pairs p
    JOIN pg_attribute att ON att.attrelid = $1::text::regclass AND att.attname = p.target_col
                          AND NOT att.attisdropped
    CROSS JOIN LATERAL aclexplode(att.attacl) a
    WHERE a.grantee <> (SELECT relowner FROM target_owner)),
diff AS (
    SELECT false AS grant_, * FROM (SELECT * FROM have EXCEPT SELECT * FROM want) r
    UNION ALL
    SELECT true, * FROM (SELECT * FROM want EXCEPT SELECT * FROM have) g)
SELECT grant_, privilege_type, target_col,
       CASE grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)::text) END,
       is_grantable
FROM diff ORDER BY grant_, target_col, privilege_type";

/// The USAGE grants of version schema `$1` compared with the roles that
/// hold any privilege on a relation in it, table or column (its owner
/// left out).
const USAGE_DIFF: &str = "
WITH ns AS (SELECT oid, nspowner, nspacl FROM pg_namespace WHERE nspname = $1),
holders AS (
    SELECT a.grantee
    FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
    WHERE c.relnamespace = (SELECT oid FROM ns)
    UNION
    SELECT a.grantee
    FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid,
         aclexplode(att.attacl) a
    WHERE c.relnamespace = (SELECT oid FROM ns)),
want AS (SELECT grantee FROM holders WHERE grantee <> (SELECT nspowner FROM ns)),
have AS (
    SELECT a.grantee
    FROM ns, aclexplode(coalesce(ns.nspacl, acldefault('n', ns.nspowner))) a
    WHERE a.privilege_type = 'USAGE' AND a.grantee <> ns.nspowner),
diff AS (
    SELECT false AS grant_, grantee FROM (SELECT * FROM have EXCEPT SELECT * FROM want) r
    UNION ALL
    SELECT true, grantee FROM (SELECT * FROM want EXCEPT SELECT * FROM have) g)
SELECT grant_, 'USAGE', NULL::text,
       CASE grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(grantee)::text) END,
       false
FROM diff ORDER BY grant_";

/// The default privileges that the owner of schema `$1` has set for
/// objects of kind `$2` ('r' tables, 'S' sequences), in that schema and
/// globally, to apply to an object the migrator creates.
const DEFAULTS: &str = "
SELECT true, a.privilege_type, NULL::text,
       CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)::text) END,
       a.is_grantable
FROM pg_namespace n
JOIN pg_default_acl d ON d.defaclrole = n.nspowner
                     AND d.defaclnamespace IN (0, n.oid) AND d.defaclobjtype::text = $2
CROSS JOIN LATERAL aclexplode(d.defaclacl) a
WHERE n.nspname = $1 AND a.grantee <> n.nspowner
ORDER BY 2";

/// Runs the changes a diff query returns on `object` (as [`Change::sql`]
/// names it); returns how many.
async fn apply(
    client: &impl GenericClient,
    object: &str,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<usize, tokio_postgres::Error> {
    let changes: Vec<Change> = client
        .query(query, params)
        .await?
        .iter()
        .map(|r| Change {
            grant: r.get(0),
            privilege: r.get(1),
            column: r.get(2),
            grantee: r.get(3),
            grantable: r.get(4),
        })
        .collect();
    for change in &changes {
        client.batch_execute(&change.sql(object)).await?;
    }
    Ok(changes.len())
}

/// Brings the privileges `spec` describes up to date, in `client`'s
/// transaction, for physical schema `schema`: the created tables (and the
/// sequences their columns own) get the schema owner's default privileges;
/// each duplicated column gets its original's column privileges; each view
/// of the version schema gets the table and column privileges of the table
/// it shows (a view that hides a renamed or dropped table, those of that
/// table); and the version schema's USAGE goes to every role that holds a
/// privilege in it. Returns how many GRANT and REVOKE statements ran.
///
/// Errors: the database's, as for any statement of the step.
pub async fn sync(
    client: &impl GenericClient,
    schema: &str,
    spec: &Privileges,
) -> Result<usize, tokio_postgres::Error> {
    let mut changes = 0;
    for table in &spec.created {
        let target = qualified(schema, table);
        changes += apply(client, &target, DEFAULTS, &[&schema, &"r"]).await?;
        let sequences = client
            .query(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(s.relname)
                 FROM pg_depend d
                 JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 JOIN pg_namespace n ON n.oid = s.relnamespace
                 WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::text::regclass
                   AND d.deptype IN ('a', 'i')",
                &[&target],
            )
            .await?;
        for row in sequences {
            let sequence: String = row.get(0);
            let object = format!("SEQUENCE {sequence}");
            changes += apply(client, &object, DEFAULTS, &[&schema, &"S"]).await?;
        }
    }
    for (table, original, duplicate) in &spec.duplicates {
        let target = qualified(schema, table);
        let (targets, sources) = (vec![duplicate.clone()], vec![original.clone()]);
        changes += apply(
            client,
            &target,
            COLUMN_DIFF,
            &[&target, &target, &targets, &sources],
        )
        .await?;
    }
    let vs = &spec.version_schema;
    let views = catalog::views(client, vs).await?;
    for (view, (table, columns)) in &views {
        let target = qualified(vs, view);
        let source = qualified(schema, table);
        changes += apply(client, &target, TABLE_DIFF, &[&target, &source]).await?;
        let (targets, sources): (Vec<String>, Vec<String>) = columns.iter().cloned().unzip();
        changes += apply(
            client,
            &target,
            COLUMN_DIFF,
            &[&target, &source, &targets, &sources],
        )
        .await?;
    }
    // Views over no table: those that hide a renamed or dropped table,
    // which is still in the physical schema under the view's name.
    let hiding = client
        .query(
            "SELECT v.relname::text FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
             WHERE n.nspname = $1 AND v.relkind = 'v'
               AND to_regclass(quote_ident($2) || '.' || quote_ident(v.relname)) IS NOT NULL",
            &[vs, &schema.to_string()],
        )
        .await?;
    for row in hiding {
        let view: String = row.get(0);
        if views.contains_key(&view) {
            continue;
        }
        let (target, source) = (qualified(vs, &view), qualified(schema, &view));
        changes += apply(client, &target, TABLE_DIFF, &[&target, &source]).await?;
    }
    let object = format!("SCHEMA {}", ident(vs));
    changes += apply(client, &object, USAGE_DIFF, &[vs]).await?;
    Ok(changes)
}
