//! The live sessions of every proxy and their versions
//! (`pgshift.sessions`, published by each proxy's heartbeat), and the
//! requests of a forced complete or rollback to end some of them
//! (`pgshift.session_kills`).

use tokio_postgres::GenericClient;

use super::{NOTIFY_CHANNEL, SESSION_TTL_SECONDS, StateError};

/// One session as its proxy reports it in a heartbeat.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// The proxy's own id of the session.
    pub id: u64,
    pub version: String,
    pub application_name: String,
    pub client_addr: String,
    /// When the session connected.
    pub since: std::time::SystemTime,
    /// The version schema heading its search_path (`None`: the physical schema).
    pub version_schema: Option<String>,
    /// The process id of its upstream backend (BackendKeyData).
    pub backend_pid: Option<i32>,
}

/// A request to end one session: (the proxy's session id, the reason the
/// client is told).
pub type KillRequest = (u64, String);

/// One heartbeat of proxy `proxy` routing on `schema`: publishes its
/// sessions (a session seen for the first time gets its backend's start
/// time from `pg_stat_activity`, which tells that backend from a later one
/// with the same pid), drops those that ended, records the proxy's own
/// heartbeat, and takes the kill requests left for it, in one transaction.
/// Errors are the database's; a missing state schema gives SQLSTATE 42P01,
/// which the caller may ignore.
pub async fn publish(
    client: &mut tokio_postgres::Client,
    proxy: &str,
    schema: &str,
    sessions: &[SessionReport],
    latency: &serde_json::Value,
) -> Result<Vec<KillRequest>, StateError> {
    let ids: Vec<i64> = sessions.iter().map(|s| s.id as i64).collect();
    let versions: Vec<&str> = sessions.iter().map(|s| s.version.as_str()).collect();
    let apps: Vec<&str> = sessions
        .iter()
        .map(|s| s.application_name.as_str())
        .collect();
    let addrs: Vec<&str> = sessions.iter().map(|s| s.client_addr.as_str()).collect();
    let since: Vec<String> = sessions
        .iter()
        .map(|s| humantime::format_rfc3339_micros(s.since).to_string())
        .collect();
    let schemas: Vec<Option<&str>> = sessions
        .iter()
        .map(|s| s.version_schema.as_deref())
        .collect();
    let pids: Vec<Option<i32>> = sessions.iter().map(|s| s.backend_pid).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM pgshift.sessions WHERE proxy = $1 AND session_id <> ALL($2::int8[])",
        &[&proxy, &ids],
    )
    .await?;
    tx.execute(
        "INSERT INTO pgshift.sessions (proxy, session_id, schema_name, version, application_name,
                                       client_addr, since, version_schema, backend_pid, backend_start)
         SELECT $1, s.id, $2, s.version, s.app, s.addr, s.since::timestamptz, s.version_schema, s.pid,
                (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = s.pid)
         FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int4[])
              AS s(id, version, app, addr, since, version_schema, pid)
         ON CONFLICT (proxy, session_id) DO UPDATE
             SET version_schema = excluded.version_schema, heartbeat_at = now()",
        &[
            &proxy, &schema, &ids, &versions, &apps, &addrs, &since, &schemas, &pids,
        ],
    )
    .await?;
    super::proxies::beat(&tx, proxy, schema, latency).await?;
    let kills = tx
        .query(
            "DELETE FROM pgshift.session_kills WHERE proxy = $1 RETURNING session_id, reason",
            &[&proxy],
        )
        .await?;
    tx.commit().await?;
    Ok(kills
        .iter()
        .map(|k| (k.get::<_, i64>(0) as u64, k.get(1)))
        .collect())
}

/// One live session, as a proxy reported it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub proxy: String,
    pub session_id: i64,
    pub version: String,
    pub application_name: String,
    pub client_addr: String,
    pub since: String,
    /// The process id of its upstream backend, when the proxy reported it.
    pub backend_pid: Option<i32>,
}

/// Live sessions of `schema` (whose proxy's heartbeat is fresh), optionally
/// only those pinned to `version`.
pub async fn live_sessions(
    client: &impl GenericClient,
    schema: &str,
    version: Option<&str>,
) -> Result<Vec<SessionRow>, StateError> {
    let rows = client
        .query(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM pgshift.sessions
                 WHERE schema_name = $1 AND ($2::text IS NULL OR version = $2) AND {FRESH}
                 ORDER BY proxy, session_id"
            ),
            &[&schema, &version, &(SESSION_TTL_SECONDS as f64)],
        )
        .await?;
    Ok(to_sessions(&rows))
}

/// The sessions of `schema` pinned to `version` whose upstream backend is
/// alive, as Postgres says (`pg_stat_activity`: the same pid and backend
/// start), whichever proxy registered them and whether or not that proxy
/// still beats. A session whose backend is not known yet counts while its
/// proxy beats. Rows of sessions that are gone are deleted.
pub async fn alive_sessions(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
) -> Result<Vec<SessionRow>, StateError> {
    client
        .execute(
            "DELETE FROM pgshift.sessions s
             WHERE heartbeat_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT FROM pg_stat_activity a
                               WHERE a.pid = s.backend_pid AND a.backend_start = s.backend_start)",
            &[&(SESSION_TTL_SECONDS as f64)],
        )
        .await?;
    let rows = client
        .query(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM pgshift.sessions s
                 WHERE schema_name = $1 AND version = $2
                   AND (EXISTS (SELECT FROM pg_stat_activity a
                                WHERE a.pid = s.backend_pid AND a.backend_start = s.backend_start)
                        OR (s.backend_start IS NULL AND {FRESH}))
                 ORDER BY proxy, session_id"
            ),
            &[&schema, &version, &(SESSION_TTL_SECONDS as f64)],
        )
        .await?;
    Ok(to_sessions(&rows))
}

/// Terminates the backends `pids` (`pg_terminate_backend`), such as those
/// of sessions whose proxy did not end them. Returns the pids that could
/// not be signalled. Errors: the database's, such as 42501 when the role
/// may not signal those backends (it needs `pg_signal_backend`).
pub async fn terminate(client: &impl GenericClient, pids: &[i32]) -> Result<Vec<i32>, StateError> {
    Ok(client
        .query(
            "SELECT pid FROM unnest($1::int4[]) AS p(pid) WHERE NOT pg_terminate_backend(pid)",
            &[&pids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The columns [`to_sessions`] reads, in order.
const SESSION_COLUMNS: &str =
    "proxy, session_id, version, application_name, client_addr, since::text, backend_pid";

/// Rows of a proxy whose heartbeat is fresh; `$3` is [`SESSION_TTL_SECONDS`].
const FRESH: &str = "heartbeat_at > now() - make_interval(secs => $3)";

/// Live sessions of `version` that do not yet stand on `version_schema`,
/// or whose proxy has not reported since `since` (a timestamptz as text).
pub async fn sessions_off(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    version_schema: &str,
    since: &str,
) -> Result<Vec<SessionRow>, StateError> {
    let rows = client
        .query(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM pgshift.sessions
                 WHERE schema_name = $1 AND version = $2 AND {FRESH}
                   AND (version_schema IS DISTINCT FROM $4 OR heartbeat_at < $5::text::timestamptz)
                 ORDER BY proxy, session_id"
            ),
            &[
                &schema,
                &version,
                &(SESSION_TTL_SECONDS as f64),
                &version_schema,
                &since,
            ],
        )
        .await?;
    Ok(to_sessions(&rows))
}

fn to_sessions(rows: &[tokio_postgres::Row]) -> Vec<SessionRow> {
    rows.iter()
        .map(|r| SessionRow {
            proxy: r.get(0),
            session_id: r.get(1),
            version: r.get(2),
            application_name: r.get(3),
            client_addr: r.get(4),
            since: r.get(5),
            backend_pid: r.get(6),
        })
        .collect()
}

/// Asks the proxies to end `sessions` with `reason`, and tells them at once.
pub async fn request_kills(
    client: &impl GenericClient,
    sessions: &[SessionRow],
    reason: &str,
) -> Result<(), StateError> {
    for s in sessions {
        client
            .execute(
                "INSERT INTO pgshift.session_kills (proxy, session_id, reason) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&s.proxy, &s.session_id, &reason],
            )
            .await?;
    }
    client
        .execute("SELECT pg_notify($1, 'kill')", &[&NOTIFY_CHANNEL])
        .await?;
    Ok(())
}
