//! The dual-write trigger of one table: the PL/pgSQL that converts each
//! row written by one version into the other version's shape.

use super::Shape;
use crate::quote::{ident, literal, qualified};

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    (0..)
        .map(|n| format!("$pgshift{n}$"))
        .find(|tag| !body.contains(tag.as_str()))
        .expect("some tag is free")
}

/// The dual-write trigger of one table. The session's `pgshift.version`
/// setting picks the direction: the new version's writes fill the old
/// columns with `down`; every other session (old version, or no setting, as
/// a connection that bypasses the proxy) fills the new columns with `up`.
/// Expressions see the row's columns as variables named as in their version.
/// An UPDATE that changes a column the writing session's version does not
/// have (only a write around the views can) raises 42703 rather than have
/// the trigger overwrite it.
pub(super) fn trigger_sql(
    schema: &str,
    shape: &Shape,
    name: &str,
    (old_version, version): (&str, &str),
) -> String {
    let table = qualified(schema, &shape.physical);
    let type_of = |physical: &str| format!("{table}.{}%TYPE", ident(physical));
    let branch = |vars: &[(String, String)], assigns: &[(String, String)]| {
        let mut out = String::new();
        let mut results = String::new();
        for (i, (physical, _)) in assigns.iter().enumerate() {
            results.push_str(&format!("    _pgshift_result_{i} {};\n", type_of(physical)));
        }
        out.push_str(&format!("  DECLARE\n{results}  BEGIN\n    DECLARE\n"));
        // A variable named new or old would hide the trigger's row records.
        for (var, physical) in vars.iter().filter(|(v, _)| v != "new" && v != "old") {
            out.push_str(&format!(
                "      {} {} := NEW.{};\n",
                ident(var),
                type_of(physical),
                ident(physical)
            ));
        }
        out.push_str("    BEGIN\n");
        for (i, (_, expr)) in assigns.iter().enumerate() {
            out.push_str(&format!("      _pgshift_result_{i} := ({expr});\n"));
        }
        out.push_str("    END;\n");
        for (i, (physical, _)) in assigns.iter().enumerate() {
            out.push_str(&format!(
                "    NEW.{} := _pgshift_result_{i};\n",
                ident(physical)
            ));
        }
        out.push_str("  END;\n");
        out
    };
    let old_vars: Vec<(String, String)> = shape
        .old_cols
        .iter()
        .map(|c| (c.clone(), c.clone()))
        .collect();
    // A column one branch overwrites that the writing session's version
    // does not have: a change to it can only come from a write around the
    // views, and would be lost, so it raises instead.
    let old_only: Vec<&String> = shape
        .down
        .iter()
        .map(|(physical, _)| physical)
        .filter(|p| !shape.new_cols.iter().any(|(_, n)| n == *p))
        .collect();
    let new_only: Vec<&String> = shape
        .up
        .iter()
        .map(|(physical, _)| physical)
        .filter(|p| !shape.old_cols.contains(p) && !shape.backfill_set.iter().any(|(b, _)| b == *p))
        .collect();
    let guard = |columns: &[&String], other: &str| {
        let mut out = String::new();
        for column in columns {
            out.push_str(&format!(
                "  IF TG_OP = 'UPDATE' AND NEW.{c} IS DISTINCT FROM OLD.{c} THEN\n    RAISE EXCEPTION 'pgshift: this write changes column % of table %, which the session''s version (%) does not have; the dual-write trigger would overwrite it', {l}, {t}, coalesce(current_setting('pgshift.version', true), 'none: not through pgshift')\n      USING ERRCODE = 'undefined_column', HINT = {hint};\n  END IF;\n",
                c = ident(column),
                l = literal(column),
                t = literal(&shape.physical),
                hint = literal(&format!(
                    "Write through the session's version schema (connect through pgshift), or connect with options=-c pgshift.version={other} to write that version's columns."
                )),
            ));
        }
        out
    };
    let up = format!(
        "{}{}",
        guard(&new_only, version),
        branch(&old_vars, &shape.up)
    );
    let down = format!(
        "{}{}",
        guard(&old_only, old_version),
        branch(&shape.new_cols, &shape.down)
    );
    let body = format!(
        "BEGIN\nIF current_setting('pgshift.version', true) IS DISTINCT FROM {} THEN\n{up}ELSE\n{down}END IF;\nRETURN NEW;\nEND",
        literal(version)
    );
    let tag = dollar_tag(&body);
    let function = qualified("pgshift", name);
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}\n{tag}; \
         CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
        ident(name)
    )
}
