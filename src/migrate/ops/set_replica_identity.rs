//! Plans `set_replica_identity`: set at start, the previous identity restored
//! by rollback.

use crate::migrate::format;
use crate::migrate::plan::{Planner, Step};
use crate::quote::ident;

impl Planner<'_> {
    pub(super) fn set_replica_identity(&mut self, at: &str, r: &format::SetReplicaIdentity) {
        let Some(s) = self.existing_shape(at, &r.table, "set_replica_identity") else {
            return;
        };
        let info = self.info(s).expect("existing table");
        let clause = |kind: &str, index: Option<&str>| match kind {
            "index" => format!("USING INDEX {}", ident(index.unwrap_or_default())),
            other => other.to_uppercase(),
        };
        let kind = r.identity.kind.to_lowercase();
        if kind == "index" && r.identity.index.is_empty() {
            self.problem(
                &format!("{at}/identity/index"),
                "replica identity INDEX needs the index name".into(),
            );
            return;
        }
        let previous = match info.replica_identity {
            'n' => clause("nothing", None),
            'f' => clause("full", None),
            'i' => clause("index", info.replica_index.as_deref()),
            _ => clause("default", None),
        };
        let table = self.table_q(&self.shapes[s].physical.clone());
        self.expand.push(Step::Sql {
            sql: format!(
                "ALTER TABLE {table} REPLICA IDENTITY {}",
                clause(&kind, Some(&r.identity.index))
            ),
        });
        self.undo.push(Step::Sql {
            sql: format!("ALTER TABLE {table} REPLICA IDENTITY {previous}"),
        });
    }
}

#[cfg(test)]
mod tests;
