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
pub(super) fn trigger_sql(schema: &str, shape: &Shape, name: &str, version: &str) -> String {
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
    let up = branch(&old_vars, &shape.up);
    let down = branch(&shape.new_cols, &shape.down);
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
