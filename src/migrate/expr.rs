//! Rewriting the column names in a SQL expression from a migration file
//! (a check constraint written against a column's final name) to the
//! physical columns that stand for them during the migration. Parsed with
//! sqlparser's Postgres dialect; only bare column references change.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Ident, visit_expressions_mut};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Returns `expr` with every bare column reference named in `columns`
/// (final name → physical name) replaced by the quoted physical name.
/// Unquoted names match case-insensitively, as Postgres folds them.
///
/// Errors: the expression does not parse (the message says where).
pub fn rename_columns(expr: &str, columns: &BTreeMap<String, String>) -> Result<String, String> {
    let dialect = PostgreSqlDialect {};
    let mut parsed = Parser::new(&dialect)
        .try_with_sql(expr)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("cannot parse the expression {expr:?}: {e}"))?;
    let _ = visit_expressions_mut(&mut parsed, |e| {
        if let Expr::Identifier(ident) = e {
            let key = match ident.quote_style {
                None => ident.value.to_lowercase(),
                Some(_) => ident.value.clone(),
            };
            if let Some(physical) = columns.get(&key) {
                *ident = Ident::with_quote('"', physical.clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests;
