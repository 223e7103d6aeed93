//! pgshift: a Postgres wire-protocol proxy that runs zero-downtime schema
//! migrations. This library holds everything the `pgshift` binary runs; the
//! binary only parses the command line (see ARCHITECTURE.md for the map).
//!
//! Layers, low to high, each using only those below it: `protocol` (the
//! wire protocol without I/O), `net` (sockets, TLS, upstream connect),
//! `state` (the `pgshift` schema, the contract between proxies and
//! migrators), the pure cores `routing` and `rewrite`, then `proxy` and
//! `migrate` side by side, which never import each other, then `cli`.

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod migrate;
pub mod net;
pub mod protocol;
pub mod proxy;
pub mod quote;
pub mod rewrite;
pub mod routing;
pub mod state;
pub mod telemetry;
