//! `pgshift proxy`: resolves the settings, starts a throwaway cluster when
//! no upstream is given, builds the runtime, binds the listeners and wires
//! SIGTERM/SIGINT to the drain.

use anyhow::Context;

use super::ProxyArgs;
use super::config::resolve_proxy;
use crate::cluster::{ClusterOptions, TempCluster};
use crate::net::UpstreamConfig;
use crate::proxy::config::ProxyConfig;
use crate::{proxy, telemetry};

/// Runs the proxy until SIGTERM or SIGINT, then drains.
pub fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let mut config = resolve_proxy(&args.settings, args.config.as_deref())?;
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
    // Sessions run on session threads of their own (config.workers of
    // them); this runtime accepts and runs the control tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(config));
    drop(throwaway);
    result
}

/// Binds the listeners, prints where to connect, and serves until a signal.
async fn serve(config: ProxyConfig) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for addr in &config.listen {
        let listener = proxy::bind(*addr).with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(listener);
    }
    let addr = listeners[0].local_addr()?;
    let upstream = config.upstream.as_ref().expect("set by run");
    let user = upstream.user.as_deref().unwrap_or("postgres");
    let dbname = upstream.dbname.as_deref().unwrap_or(user);
    tracing::info!(listen = %addr, upstream = %format!("{}:{}", upstream.host, upstream.port), "pgshift proxy is ready");
    // One write, and a closed stdout is no reason to stop serving:
    // println! would panic on EPIPE (say, under `pgshift proxy | head -1`).
    let banner = format!(
        "pgshift is listening on {addr}; connect with:\n  psql 'postgres://{user}@{addr}/{dbname}'\n"
    );
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, banner.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout));
    drop(stdout);
    proxy::run(listeners, config, shutdown_signal()).await?;
    Ok(())
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
