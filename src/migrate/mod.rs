//! The migration engine: pgroll-format files, version schemas of views,
//! dual-write triggers, batched backfill, and the start/complete/rollback
//! lifecycle recorded in the `pgshift` state schema.

pub mod format;
