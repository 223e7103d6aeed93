//! The running proxies (`pgshift.proxies`): each one's heartbeat, and what
//! it serves, so that `start` returns only once every live proxy serves the
//! new version.

use tokio_postgres::GenericClient;

use super::{SESSION_TTL_SECONDS, StateError};

/// Records that proxy `proxy`, routing on `schema`, serves `serving` now
/// (a [`super::versions::Versions::serving`] token). Errors are the
/// database's; a missing state schema gives SQLSTATE 42P01, which the
/// caller may ignore.
pub async fn serving(
    client: &impl GenericClient,
    proxy: &str,
    schema: &str,
    serving: &str,
) -> Result<(), StateError> {
    client
        .execute(
            "INSERT INTO pgshift.proxies (proxy, schema_name, serving) VALUES ($1, $2, $3)
             ON CONFLICT (proxy, schema_name) DO UPDATE SET serving = excluded.serving, heartbeat_at = now()",
            &[&proxy, &schema, &serving],
        )
        .await?;
    Ok(())
}

/// Records a heartbeat of proxy `proxy` routing on `schema`, with its
/// client latency since the last one: a JSON object of version →
/// `{"count", "p50_us", "p99_us"}` (versions without requests left out).
pub async fn beat(
    client: &impl GenericClient,
    proxy: &str,
    schema: &str,
    latency: &serde_json::Value,
) -> Result<(), StateError> {
    client
        .execute(
            "INSERT INTO pgshift.proxies (proxy, schema_name, latency) VALUES ($1, $2, $3::text::jsonb)
             ON CONFLICT (proxy, schema_name) DO UPDATE SET heartbeat_at = now(), latency = excluded.latency",
            &[&proxy, &schema, &latency.to_string()],
        )
        .await?;
    Ok(())
}

/// The client latency the live proxies of `schema` published in their
/// last heartbeat (within the last 3 s): one (proxy, version, requests,
/// p99 in microseconds) per proxy and version.
pub async fn latency(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<(String, String, i64, i64)>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT p.proxy, l.key, (l.value->>'count')::int8, (l.value->>'p99_us')::int8
             FROM pgshift.proxies p CROSS JOIN LATERAL jsonb_each(coalesce(p.latency, '{}')) l
             WHERE p.schema_name = $1 AND p.heartbeat_at > now() - interval '3 seconds'
             ORDER BY 1, 2",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// The live proxies of `schema` (heartbeat younger than
/// [`SESSION_TTL_SECONDS`]) that do not serve `serving` yet: (proxy, what
/// it serves, if it said).
pub async fn not_serving(
    client: &impl GenericClient,
    schema: &str,
    serving: &str,
) -> Result<Vec<(String, Option<String>)>, StateError> {
    Ok(client
        .query(
            "SELECT proxy, serving FROM pgshift.proxies
             WHERE schema_name = $1 AND serving IS DISTINCT FROM $2
               AND heartbeat_at > now() - make_interval(secs => $3)
             ORDER BY proxy",
            &[&schema, &serving, &(SESSION_TTL_SECONDS as f64)],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
