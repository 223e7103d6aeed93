//! Plans the raw `sql` operation: its `up` runs as written at start (or at
//! complete with `on_complete`), its `down` at rollback.

use crate::migrate::format;
use crate::migrate::plan::{Planner, Step};

impl Planner<'_> {
    pub(super) fn sql(&mut self, s: &format::RawSql) {
        let step = Step::Concurrent {
            sql: s.up.clone(),
            invalid_index: None,
        };
        if s.on_complete {
            self.contract_late.push(step);
        } else {
            self.expand.push(step);
            if let Some(down) = &s.down {
                self.undo.push(Step::Concurrent {
                    sql: down.clone(),
                    invalid_index: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
