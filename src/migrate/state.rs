//! The `pgshift` state schema: migrations with their phase and plan, the
//! steps of each action with their done marks, and backfill checkpoints.
//! Every command records what it did here, so a killed command is finished
//! by running it again.

use tokio_postgres::GenericClient;

use super::plan::{Plan, Step};

/// Creates the state schema; idempotent.
pub const INIT_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS pgshift;
CREATE TABLE IF NOT EXISTS pgshift.migrations (
    schema_name text NOT NULL,
    version text NOT NULL,
    parent text NOT NULL,
    migration jsonb NOT NULL,
    plan jsonb NOT NULL,
    phase text NOT NULL CHECK (phase IN ('starting', 'active', 'completing', 'completed', 'rolling_back', 'rolled_back')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active
    ON pgshift.migrations (schema_name) WHERE phase NOT IN ('completed', 'rolled_back');
CREATE TABLE IF NOT EXISTS pgshift.steps (
    schema_name text NOT NULL,
    version text NOT NULL,
    action text NOT NULL CHECK (action IN ('start', 'complete', 'rollback')),
    position int NOT NULL,
    step jsonb NOT NULL,
    done_at timestamptz,
    PRIMARY KEY (schema_name, version, action, position),
    FOREIGN KEY (schema_name, version) REFERENCES pgshift.migrations ON DELETE CASCADE
);
CREATE OR REPLACE FUNCTION pgshift.hidden_relation(relation text, version text) RETURNS SETOF integer
LANGUAGE plpgsql AS $pgshift$
BEGIN
    RAISE EXCEPTION 'relation "%" does not exist in version %', relation, version
        USING ERRCODE = 'undefined_table', HINT = 'That version renames or drops it.';
END
$pgshift$;
CREATE TABLE IF NOT EXISTS pgshift.sessions (
    proxy text NOT NULL,
    session_id bigint NOT NULL,
    schema_name text NOT NULL,
    version text NOT NULL,
    application_name text NOT NULL,
    client_addr text NOT NULL,
    since timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (proxy, session_id)
);
ALTER TABLE pgshift.sessions ADD COLUMN IF NOT EXISTS version_schema text;
CREATE TABLE IF NOT EXISTS pgshift.session_kills (
    proxy text NOT NULL,
    session_id bigint NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (proxy, session_id)
);
CREATE TABLE IF NOT EXISTS pgshift.routes (
    schema_name text NOT NULL,
    route text NOT NULL,
    version text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, route)
);
CREATE TABLE IF NOT EXISTS pgshift.backfill (
    schema_name text NOT NULL,
    version text NOT NULL,
    table_name text NOT NULL,
    last_key text[],
    upper_key text[],
    rows_done bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version, table_name),
    FOREIGN KEY (schema_name, version) REFERENCES pgshift.migrations ON DELETE CASCADE
);
"#;

/// A migration's row.
#[derive(Debug, Clone)]
pub struct MigrationRow {
    pub version: String,
    pub parent: String,
    pub phase: String,
    pub plan: Plan,
    pub migration: serde_json::Value,
    pub updated_at: String,
}

/// The columns [`to_row`] reads, in order.
const MIGRATION_COLUMNS: &str =
    "version, parent, phase, plan::text, migration::text, updated_at::text";

/// The migration that is not completed or rolled back, if any.
pub async fn active(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Option<MigrationRow>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {MIGRATION_COLUMNS} FROM pgshift.migrations
                 WHERE schema_name = $1 AND phase NOT IN ('completed', 'rolled_back')"
            ),
            &[&schema],
        )
        .await?;
    Ok(row.map(|r| to_row(&r)))
}

fn to_row(r: &tokio_postgres::Row) -> MigrationRow {
    MigrationRow {
        version: r.get(0),
        parent: r.get(1),
        phase: r.get(2),
        plan: serde_json::from_str(r.get(3)).expect("the stored plan was written by pgshift"),
        migration: serde_json::from_str(r.get(4)).unwrap_or(serde_json::Value::Null),
        updated_at: r.get(5),
    }
}

/// Every migration of `schema`, oldest first.
pub async fn history(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<MigrationRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {MIGRATION_COLUMNS} FROM pgshift.migrations
                 WHERE schema_name = $1 ORDER BY created_at, version"
            ),
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(to_row).collect())
}

/// The version clients use outside a migration: the newest completed one,
/// or `baseline`.
pub async fn current_version(
    client: &impl GenericClient,
    schema: &str,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT version FROM pgshift.migrations WHERE schema_name = $1 AND phase = 'completed'
             ORDER BY updated_at DESC LIMIT 1",
            &[&schema],
        )
        .await?;
    Ok(row
        .map(|r| r.get(0))
        .unwrap_or_else(|| "baseline".to_string()))
}

/// Records a new migration in phase `starting` with all its steps. Removes a
/// rolled-back run of the same version first, so it can be started again.
pub async fn record(
    client: &impl GenericClient,
    schema: &str,
    plan: &Plan,
    migration: &serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM pgshift.migrations WHERE schema_name = $1 AND version = $2 AND phase = 'rolled_back'",
            &[&schema, &plan.version],
        )
        .await?;
    let plan_json = serde_json::to_string(plan).expect("plans serialize");
    let migration_json = migration.to_string();
    client
        .execute(
            "INSERT INTO pgshift.migrations (schema_name, version, parent, migration, plan, phase)
             VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, 'starting')",
            &[
                &schema,
                &plan.version,
                &plan.old_version,
                &migration_json,
                &plan_json,
            ],
        )
        .await?;
    for (action, steps) in [
        ("start", &plan.start),
        ("complete", &plan.complete),
        ("rollback", &plan.rollback),
    ] {
        for (i, step) in steps.iter().enumerate() {
            let json = serde_json::to_string(step).expect("steps serialize");
            client
                .execute(
                    "INSERT INTO pgshift.steps (schema_name, version, action, position, step) VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                    &[&schema, &plan.version, &action, &(i as i32), &json],
                )
                .await?;
        }
    }
    Ok(())
}

/// Sets the phase of `version`.
pub async fn set_phase(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    phase: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgshift.migrations SET phase = $3, updated_at = now() WHERE schema_name = $1 AND version = $2",
            &[&schema, &version, &phase],
        )
        .await?;
    notify(client, schema).await?;
    Ok(())
}

/// Tells every proxy to reload the live versions of `schema`. Returns the
/// server's clock at that moment (a timestamptz as text).
pub async fn notify(
    client: &impl GenericClient,
    schema: &str,
) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT clock_timestamp()::text FROM pg_notify($1, $2)",
            &[&NOTIFY_CHANNEL, &schema],
        )
        .await?
        .get(0))
}

/// The channel on which the migrator announces phase changes; the payload
/// is the schema's name.
pub const NOTIFY_CHANNEL: &str = "pgshift";

/// The live versions of `schema` for routing: the current version, and the
/// running migration, if any, once its old version's views exist (the
/// first step of `start`).
pub async fn live_versions(
    client: &impl GenericClient,
    schema: &str,
) -> Result<crate::routing::Versions, tokio_postgres::Error> {
    let current = current_version(client, schema).await?;
    let row = client
        .query_opt(
            "SELECT m.version, m.parent, m.plan->>'version_schema', m.plan->>'old_version_schema', m.phase
             FROM pgshift.migrations m
             WHERE m.schema_name = $1 AND m.phase IN ('starting', 'active', 'completing', 'rolling_back')
               AND EXISTS (SELECT FROM pgshift.steps s
                           WHERE (s.schema_name, s.version, s.action, s.position) = (m.schema_name, m.version, 'start', 0)
                             AND s.done_at IS NOT NULL)",
            &[&schema],
        )
        .await?;
    let pins = client
        .query(
            "SELECT route, version FROM pgshift.routes WHERE schema_name = $1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(crate::routing::Versions {
        schema: schema.to_string(),
        current,
        pins,
        migration: match row {
            Some(r) => {
                use crate::routing::Phase;
                let new_schema: String = r.get(2);
                let old_schema: String = r.get(3);
                let phase = match r.get::<_, &str>(4) {
                    "starting" => Phase::Starting,
                    "active" => Phase::Active,
                    "completing" => Phase::Completing,
                    _ => Phase::RollingBack,
                };
                Some(crate::routing::Migration {
                    phase,
                    new: r.get(0),
                    old: r.get(1),
                    // The new version's views are the last thing start makes.
                    new_views: if phase == Phase::Starting {
                        Default::default()
                    } else {
                        crate::catalog::views(client, &new_schema).await?
                    },
                    old_views: crate::catalog::views(client, &old_schema).await?,
                    new_schema,
                    old_schema,
                })
            }
            None => None,
        },
    })
}

/// The steps of `action` not yet done, in order, with their positions.
pub async fn pending(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    action: &str,
) -> Result<Vec<(i32, Step)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT position, step::text FROM pgshift.steps
             WHERE schema_name = $1 AND version = $2 AND action = $3 AND done_at IS NULL ORDER BY position",
            &[&schema, &version, &action],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                serde_json::from_str(r.get(1)).expect("steps were written by pgshift"),
            )
        })
        .collect())
}

/// The SQL that marks one step done (run in the step's own transaction when it has one).
pub const MARK_DONE: &str = "UPDATE pgshift.steps SET done_at = now()
    WHERE schema_name = $1 AND version = $2 AND action = $3 AND position = $4";

/// Pins `route` to `version` (which the caller has checked is live) and
/// tells every proxy.
pub async fn pin(
    client: &impl GenericClient,
    schema: &str,
    route: &str,
    version: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO pgshift.routes (schema_name, route, version) VALUES ($1, $2, $3)
             ON CONFLICT (schema_name, route) DO UPDATE SET version = excluded.version, updated_at = now()",
            &[&schema, &route, &version],
        )
        .await?;
    notify(client, schema).await?;
    Ok(())
}

/// How often each proxy publishes its sessions to `pgshift.sessions`.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long after a NOTIFY every running proxy has published its sessions:
/// one heartbeat, and a margin for the beat itself.
pub const REPORT_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// A proxy's sessions count as live while its heartbeat is younger than this.
pub const SESSION_TTL_SECONDS: i32 = 5;

/// One live session, as a proxy reported it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRow {
    pub proxy: String,
    pub session_id: i64,
    pub version: String,
    pub application_name: String,
    pub client_addr: String,
    pub since: String,
}

/// Live sessions of `schema` (whose proxy's heartbeat is fresh), optionally
/// only those pinned to `version`.
pub async fn live_sessions(
    client: &impl GenericClient,
    schema: &str,
    version: Option<&str>,
) -> Result<Vec<SessionRow>, tokio_postgres::Error> {
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

/// The columns [`to_sessions`] reads, in order.
const SESSION_COLUMNS: &str =
    "proxy, session_id, version, application_name, client_addr, since::text";

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
) -> Result<Vec<SessionRow>, tokio_postgres::Error> {
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
        })
        .collect()
}

/// Asks the proxies to end `sessions` with `reason`, and tells them at once.
pub async fn request_kills(
    client: &impl GenericClient,
    sessions: &[SessionRow],
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
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
