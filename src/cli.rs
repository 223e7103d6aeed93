//! The command line: clap definitions of every subcommand and the code that
//! turns parsed arguments into a running proxy (runtime, throwaway cluster,
//! signals).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::cluster::{ClusterOptions, TempCluster};
use crate::config::{ProxyConfig, ProxySettings, UpstreamConfig};
use crate::{proxy, telemetry};

/// pgshift: a Postgres proxy that runs zero-downtime schema migrations.
#[derive(Debug, Parser)]
#[command(name = "pgshift", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the wire-protocol proxy in front of Postgres (a throwaway local
    /// cluster when no upstream is given)
    Proxy(ProxyArgs),
}

/// Arguments of `pgshift proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// TOML config file with a [proxy] table
    #[arg(long, short = 'c', env = "PGSHIFT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: ProxySettings,
}

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Proxy(args) => run_proxy(args),
    }
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let mut config = ProxyConfig::resolve(&args.settings, args.config.as_deref())?;
    telemetry::init(config.log_format);
    // Kept alive until the proxy has drained; dropping it stops the cluster.
    let mut throwaway = None;
    if config.upstream.is_none() {
        let cluster = TempCluster::start(&ClusterOptions::default())
            .context("starting a throwaway Postgres (pass --upstream to use an existing one)")?;
        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.data_dir().display(),
            "started a throwaway Postgres cluster; it is removed when pgshift exits"
        );
        // The Unix socket: cheaper than loopback TCP for a local upstream.
        config.upstream = Some(UpstreamConfig::from_url(&cluster.socket_url("postgres"))?);
        throwaway = Some(cluster);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.workers > 0 {
        runtime.worker_threads(config.workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let upstream = config.upstream.as_ref().expect("set above");
        let user = upstream.user.as_deref().unwrap_or("postgres");
        let dbname = upstream.dbname.as_deref().unwrap_or(user);
        tracing::info!(listen = %addr, upstream = %format!("{}:{}", upstream.host, upstream.port), "pgshift proxy is ready");
        println!("pgshift is listening on {addr}; connect with:\n  psql 'postgres://{user}@{addr}/{dbname}'");
        proxy::run(listener, config, shutdown_signal()).await?;
        anyhow::Ok(())
    });
    drop(throwaway);
    result
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
