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

/// Records a heartbeat of proxy `proxy` routing on `schema`.
pub async fn beat(
    client: &impl GenericClient,
    proxy: &str,
    schema: &str,
) -> Result<(), StateError> {
    client
        .execute(
            "INSERT INTO pgshift.proxies (proxy, schema_name) VALUES ($1, $2)
             ON CONFLICT (proxy, schema_name) DO UPDATE SET heartbeat_at = now()",
            &[&proxy, &schema],
        )
        .await?;
    Ok(())
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
