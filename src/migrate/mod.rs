//! The migration engine: pgroll-format files, version schemas of views,
//! dual-write triggers, batched backfill, and the start/complete/rollback
//! lifecycle recorded in the `pgshift` state schema.

pub mod backfill;
pub mod ddl;
pub mod engine;
pub mod error;
pub mod expr;
pub mod format;
pub mod names;
pub mod plan;
pub mod state;
pub mod status;
