use clap::{CommandFactory, Parser};

use super::config::resolve_migrate;
use super::*;
use crate::migrate::engine::Settings;

/// The migrator's flags default to the engine's own defaults, so that
/// `pgshift start` and a `Settings::new` in code behave alike.
#[test]
fn migrator_flags_default_to_the_engine_defaults() {
    let cli = Cli::try_parse_from(["pgshift", "status", "--database-url", "postgres:///x"])
        .expect("parses");
    let Command::Status { db, .. } = cli.command else {
        panic!("parsed as another command");
    };
    let parsed = resolve_migrate(&db.settings, None).expect("defaults are valid");
    let engine = Settings::new("postgres:///x".into());
    assert_eq!(parsed.lock_timeout, engine.lock_timeout);
    assert_eq!(parsed.batch_size, engine.batch_size);
    assert_eq!(parsed.batch_time, engine.batch_time);
    assert_eq!(parsed.batch_delay, engine.batch_delay);
    assert_eq!(parsed.session_move_timeout, engine.session_move_timeout);
    assert_eq!(parsed.ddl_timeout, engine.ddl_timeout);
    assert_eq!(parsed.proxy_timeout, engine.proxy_timeout);
    assert_eq!(parsed.max_replica_lag, engine.max_replica_lag);
    assert_eq!(parsed.max_latency_factor, engine.max_latency_factor);
    assert_eq!(parsed.fixed_pace, engine.fixed_pace);
    assert_eq!(parsed.schema, engine.schema);
}

/// The defaults that `--help` states are the engine's, so the two cannot
/// drift apart silently.
#[test]
fn the_help_states_the_engine_defaults() {
    let engine = Settings::new(String::new());
    let fmt = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let mut command = Cli::command();
    let start = command.find_subcommand_mut("start").expect("start exists");
    let help = start.render_long_help().to_string();
    for default in [
        engine.schema.clone(),
        fmt(engine.lock_timeout),
        engine.batch_size.to_string(),
        fmt(engine.batch_time),
        fmt(engine.batch_delay),
        fmt(engine.session_move_timeout),
        fmt(engine.ddl_timeout),
        fmt(engine.proxy_timeout),
        fmt(engine.max_replica_lag),
        engine.max_latency_factor.to_string(),
    ] {
        assert!(
            help.contains(&format!("[default: {default}]")),
            "`pgshift start --help` does not state the default {default}:\n{help}"
        );
    }
}
