//! pgshift: a Postgres wire-protocol proxy that runs zero-downtime schema
//! migrations. This library holds everything the `pgshift` binary runs; the
//! binary only parses the command line (see ARCHITECTURE.md for the map).

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod migrate;
pub mod proxy;
pub mod quote;
pub mod rewrite;
pub mod routing;
pub mod telemetry;
pub mod wire;
