//! The OpenMetrics (Prometheus) endpoint, `--metrics-listen`: `GET /metrics`
//! answers in the text format, built with `prometheus-client` from the
//! proxy's live state at each scrape (pools, sessions per version, the
//! migration's phase). Every name starts with `pgshift_`; README lists them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Shared;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database: String,
    user: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    version: String,
    phase: String,
}

/// Serves `GET /metrics` on `addr` from a thread of its own until the
/// process ends. Errors: the address cannot be bound.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("pgshift-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE)
                        .expect("a valid header");
                    tiny_http::Response::from_string(encode(&shared)).with_header(header)
                } else {
                    tiny_http::Response::from_string("pgshift serves /metrics only\n")
                        .with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

/// Registers a family under `name` with `help` and returns it.
fn family<L, M>(registry: &mut Registry, name: &str, help: &str) -> Family<L, M>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<L, M>::default();
    registry.register(name, help, family.clone());
    family
}

/// The metrics text of the proxy's state now.
pub fn encode(shared: &Shared) -> String {
    let mut registry = Registry::with_prefix("pgshift");
    let clients_active: Family<PoolLabels, Gauge> = family(
        &mut registry,
        "pool_clients_active",
        "Clients of the pool not waiting for a server",
    );
    let clients_waiting: Family<PoolLabels, Gauge> = family(
        &mut registry,
        "pool_clients_waiting",
        "Clients waiting for a server",
    );
    let servers_active: Family<PoolLabels, Gauge> = family(
        &mut registry,
        "pool_servers_active",
        "Server connections lent to a client's transaction",
    );
    let servers_idle: Family<PoolLabels, Gauge> = family(
        &mut registry,
        "pool_servers_idle",
        "Server connections idle in the pool",
    );
    let longest_wait: Family<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>> = family(
        &mut registry,
        "pool_longest_wait_seconds",
        "How long the longest-waiting client has waited",
    );
    let transactions: Family<PoolLabels, Counter> = family(
        &mut registry,
        "pool_transactions",
        "Transactions (or statements outside one) served",
    );
    let queries: Family<PoolLabels, Counter> = family(
        &mut registry,
        "pool_queries",
        "Queries, Syncs and function calls served",
    );
    let received: Family<PoolLabels, Counter> = family(
        &mut registry,
        "pool_received_bytes",
        "Bytes sent to the servers on behalf of clients",
    );
    let sent: Family<PoolLabels, Counter> = family(
        &mut registry,
        "pool_sent_bytes",
        "Bytes sent to clients from the servers",
    );
    let waited: Family<PoolLabels, Counter<f64, std::sync::atomic::AtomicU64>> = family(
        &mut registry,
        "pool_wait_seconds",
        "Time clients spent waiting for a server",
    );
    for pool in shared.pools.all() {
        let labels = PoolLabels {
            database: pool.key.database.clone(),
            user: pool.key.user.clone(),
            version: pool.key.version.clone(),
        };
        let waiting = pool.waiting();
        let clients = pool.clients.load(Relaxed);
        clients_active
            .get_or_create(&labels)
            .set(clients.saturating_sub(waiting) as i64);
        clients_waiting.get_or_create(&labels).set(waiting as i64);
        servers_active
            .get_or_create(&labels)
            .set(pool.active.load(Relaxed) as i64);
        servers_idle.get_or_create(&labels).set(pool.idle() as i64);
        longest_wait
            .get_or_create(&labels)
            .set(pool.longest_wait().as_secs_f64());
        transactions
            .get_or_create(&labels)
            .inc_by(pool.transactions.load(Relaxed));
        queries
            .get_or_create(&labels)
            .inc_by(pool.queries.load(Relaxed));
        received
            .get_or_create(&labels)
            .inc_by(pool.bytes_received.load(Relaxed));
        sent.get_or_create(&labels)
            .inc_by(pool.bytes_sent.load(Relaxed));
        waited
            .get_or_create(&labels)
            .inc_by(pool.wait_us.load(Relaxed) as f64 / 1e6);
    }
    let sessions: Family<VersionLabels, Gauge> = family(
        &mut registry,
        "sessions",
        "Client sessions of this proxy, by the version they are pinned to",
    );
    for (_, session) in shared.registry.sessions() {
        sessions
            .get_or_create(&VersionLabels {
                version: session.version.clone(),
            })
            .inc();
    }
    let phase: Family<PhaseLabels, Gauge> = family(
        &mut registry,
        "migration_phase",
        "1 for the live migration's version and phase, as this proxy last read them",
    );
    if let Some(versions) = shared.versions.snapshot()
        && let Some(m) = &versions.migration
    {
        phase
            .get_or_create(&PhaseLabels {
                version: m.new.clone(),
                phase: m.phase.to_string(),
            })
            .set(1);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}
