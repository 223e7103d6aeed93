//! The migration engine: pgroll-format files, the planner (one file per
//! operation), version schemas of views, dual-write triggers, batched
//! backfill, and the start/complete/rollback lifecycle, recorded in the
//! `pgshift` state schema through `state`.

pub mod backends;
pub mod backfill;
pub mod ddl;
pub mod engine;
pub mod error;
pub mod expr;
pub mod format;
pub mod lag;
pub mod lint;
pub mod names;
mod ops;
pub mod pace;
pub mod plan;
pub mod privileges;
pub mod redefine;
pub mod settings;
pub mod verify;
