//! pgshift's integration tests: one binary, one shared harness, each test with
//! its own throwaway Postgres cluster and proxy.

mod abuse;
mod auth;
mod bluegreen;
mod carry;
mod cli;
mod clients;
mod console;
mod disconnect;
mod escapes;
mod faults;
mod fencing;
mod harness;
mod hostile;
mod injection;
mod large;
mod limits;
mod migrate;
mod moves;
mod pace;
mod parity;
mod pooling;
mod production;
mod protocol;
mod replica;
mod rewriter;
mod routing;
mod shutdown;
mod tls;
mod verify;
