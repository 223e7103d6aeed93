//! What Postgres says of the backends that hold a migration up: those that
//! block one of its statements (`pg_blocking_pids`), and those of sessions
//! that have not moved onto their version's views, each with its
//! application_name, state, transaction age, query, the tables of the
//! migrated schema it holds locks on, and the pgshift session it serves
//! (PostgreSQL docs, "System Administration Functions" and "The Cumulative
//! Statistics System": `pg_stat_activity`, `pg_locks`).

use std::fmt;
use std::time::Duration;

use tokio_postgres::GenericClient;

/// One backend, as `pg_stat_activity` and `pg_locks` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub pid: i32,
    pub application_name: String,
    /// `active`, `idle in transaction`, ...; `None` when the role may not
    /// see it (it needs `pg_read_all_stats`).
    pub state: Option<String>,
    /// How long its transaction has been open.
    pub transaction_age: Option<Duration>,
    /// The start of its current or last query.
    pub query: Option<String>,
    /// Tables of the migrated schema it holds locks on.
    pub locks: Vec<String>,
    /// The pgshift session it serves, if any.
    pub session: Option<SessionOf>,
}

/// The pgshift session a backend serves, as its proxy registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOf {
    pub proxy: String,
    pub session_id: i64,
    pub version: String,
}

impl Backend {
    /// True for a backend idle inside a transaction: it holds its locks
    /// until its client ends that transaction.
    pub fn idle_in_transaction(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.starts_with("idle in transaction"))
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application_name {:?}",
            self.pid, self.application_name
        )?;
        if let Some(s) = &self.session {
            write!(
                f,
                ", proxy {} session {} of version {:?}",
                s.proxy, s.session_id, s.version
            )?;
        }
        match (&self.state, self.transaction_age) {
            (Some(state), Some(age)) => write!(
                f,
                ", {state}, transaction open for {}",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            )?,
            (Some(state), None) => write!(f, ", {state}")?,
            (None, _) => write!(
                f,
                ", state hidden: grant pg_read_all_stats to the migrator's role to see it"
            )?,
        }
        if !self.locks.is_empty() {
            write!(f, ", holding locks on {}", self.locks.join(", "))?;
        }
        if let Some(query) = &self.query {
            let label = if self.state.as_deref() == Some("active") {
                "query"
            } else {
                "last query"
            };
            write!(f, ", {label} {query:?}")?;
        }
        write!(f, ")")
    }
}

/// The backends `pids` as they stand now (those still alive), with the
/// locks they hold on tables of `schema`.
pub async fn describe(
    client: &impl GenericClient,
    schema: &str,
    pids: &[i32],
) -> Result<Vec<Backend>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.pid, coalesce(a.application_name, ''), a.state,
                        extract(epoch FROM now() - a.xact_start)::float8,
                        left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80),
                        ARRAY(SELECT DISTINCT c.relname::text FROM pg_locks l
                              JOIN pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p')
                              JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = $2
                              WHERE l.pid = a.pid AND l.granted ORDER BY 1),
                        s.proxy, s.session_id, s.version
                 FROM pg_stat_activity a
                 LEFT JOIN LATERAL (SELECT * FROM pgshift.sessions s
                                    WHERE s.backend_pid = a.pid AND s.backend_start = a.backend_start
                                    LIMIT 1) s ON true
                 WHERE a.pid = ANY($1) ORDER BY a.pid",
            &[&pids, &schema],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Backend {
            pid: r.get(0),
            application_name: r.get(1),
            state: r.get(2),
            transaction_age: r
                .get::<_, Option<f64>>(3)
                .map(|s| Duration::from_secs_f64(s.max(0.0))),
            query: r.get(4),
            locks: r.get(5),
            session: r.get::<_, Option<String>>(6).map(|proxy| SessionOf {
                proxy,
                session_id: r.get(7),
                version: r.get(8),
            }),
        })
        .collect())
}

/// The backends that block backend `pid` now (`pg_blocking_pids`).
pub async fn blocking(
    client: &impl GenericClient,
    schema: &str,
    pid: i32,
) -> Result<Vec<Backend>, tokio_postgres::Error> {
    let pids: Vec<i32> = client
        .query_one("SELECT pg_blocking_pids($1)", &[&pid])
        .await?
        .get(0);
    if pids.is_empty() {
        return Ok(Vec::new());
    }
    describe(client, schema, &pids).await
}
