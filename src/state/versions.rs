//! The schema versions that exist now, as proxies route by them: the
//! current version, the running migration (its phase, both versions, their
//! version schemas and views), and the operators' pins of routes to
//! versions (`pgshift.routes`).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::migrations::current_version;
use super::{Action, Phase, StateError, notify};

/// The versions that exist in one schema, as the state schema says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// The physical schema (`public`).
    pub schema: String,
    /// The version clients use outside a migration.
    pub current: String,
    /// Outside a migration: the current version's version schema, which
    /// the migration that made the version kept at complete, so that the
    /// version's shape (its columns and their order) never changes under
    /// its sessions. `None` for the baseline, and during a migration (the
    /// old version's schema is then `migration.old_schema`).
    pub current_schema: Option<VersionSchema>,
    /// The running migration, once its old version's views exist.
    pub migration: Option<LiveMigration>,
    /// Operator pins: route name → version (`pgshift pin ROUTE VERSION`).
    pub pins: BTreeMap<String, String>,
}

/// A view of a version schema: the physical table it reads, and its
/// columns as (view column, table column).
pub type ViewColumns = (String, Vec<(String, String)>);

/// A version schema and its views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSchema {
    pub name: String,
    /// Its views, by view name.
    pub views: BTreeMap<String, ViewColumns>,
}

/// The versions of a running migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMigration {
    pub phase: Phase,
    pub old: String,
    pub old_schema: String,
    pub new: String,
    pub new_schema: String,
    /// Each version schema's views, by view name.
    pub old_views: BTreeMap<String, ViewColumns>,
    pub new_views: BTreeMap<String, ViewColumns>,
}

impl Versions {
    /// Every version a session may ask for now, with its version schema
    /// (`None`: the physical schema serves it). Outside a migration the
    /// current version is, on its kept version schema if it has one. While
    /// a migration starts or rolls back only the old version is live (on
    /// its views); while it is active both are; while it completes only the
    /// new one.
    pub fn live(&self) -> BTreeMap<String, Option<String>> {
        let Some(m) = &self.migration else {
            let schema = self.current_schema.as_ref().map(|s| s.name.clone());
            return BTreeMap::from([(self.current.clone(), schema)]);
        };
        let old = (m.old.clone(), Some(m.old_schema.clone()));
        let new = (m.new.clone(), Some(m.new_schema.clone()));
        match m.phase {
            Phase::Starting | Phase::RollingBack | Phase::RolledBack => BTreeMap::from([old]),
            Phase::Active => BTreeMap::from([old, new]),
            Phase::Completing | Phase::Completed => BTreeMap::from([new]),
        }
    }

    /// What a proxy with these versions serves, as one token that
    /// `pgshift.proxies` records and `start` waits for: `<migration
    /// version>:<phase>` while a migration is live, else `current:<version>`.
    pub fn serving(&self) -> String {
        match &self.migration {
            Some(m) => serving(&m.new, m.phase),
            None => format!("current:{}", self.current),
        }
    }

    /// The version a session gets when neither its request nor a route
    /// decides: the new version once `complete` runs, else the old (or only) one.
    pub fn default_version(&self) -> &str {
        match &self.migration {
            Some(m) if matches!(m.phase, Phase::Completing | Phase::Completed) => &m.new,
            Some(m) => &m.old,
            None => &self.current,
        }
    }
}

/// The [`Versions::serving`] token of a proxy that serves migration
/// `version` in `phase`.
pub fn serving(version: &str, phase: Phase) -> String {
    format!("{version}:{phase}")
}

/// Reads the live versions of `schema`; a database without the state
/// schema has only its baseline.
pub async fn load(client: &impl GenericClient, schema: &str) -> Result<Versions, StateError> {
    let initialized: bool = client
        .query_one("SELECT to_regclass('pgshift.migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !initialized {
        return Ok(Versions {
            schema: schema.to_string(),
            current: "baseline".to_string(),
            current_schema: None,
            migration: None,
            pins: Default::default(),
        });
    }
    live_versions(client, schema).await
}

/// The live versions of `schema` for routing: the current version (with
/// its kept version schema, outside a migration), and the running
/// migration, if any, once its old version's views exist (the first step
/// of `start`).
pub async fn live_versions(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Versions, StateError> {
    let current = current_version(client, schema).await?;
    let row = client
        .query_opt(
            "SELECT m.version, m.parent, m.plan->>'version_schema', m.plan->>'old_version_schema', m.phase
             FROM pgshift.migrations m
             WHERE m.schema_name = $1 AND m.phase <> ALL($2)
               AND EXISTS (SELECT FROM pgshift.steps s
                           WHERE (s.schema_name, s.version, s.action, s.position) = (m.schema_name, m.version, $3, 0)
                             AND s.done_at IS NOT NULL)",
            &[&schema, &Phase::texts(Phase::is_finished), &Action::Start.as_str()],
        )
        .await?;
    let migration = match row {
        Some(r) => {
            let phase: Phase = r.get::<_, &str>(4).parse()?;
            let new_schema: String = r.get(2);
            let old_schema: String = r.get(3);
            Some(LiveMigration {
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
    };
    let current_schema = match (&migration, kept_schema(client, schema, &current).await?) {
        (None, Some(name)) => Some(VersionSchema {
            views: crate::catalog::views(client, &name).await?,
            name,
        }),
        _ => None,
    };
    Ok(Versions {
        schema: schema.to_string(),
        current,
        current_schema,
        pins: pins(client, schema).await?,
        migration,
    })
}

/// The version schema of completed migration `version` of `schema`, if it
/// still exists (complete keeps it until the next migration completes).
pub async fn kept_schema(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
) -> Result<Option<String>, StateError> {
    let row = client
        .query_opt(
            "SELECT plan->>'version_schema' FROM pgshift.migrations
             WHERE schema_name = $1 AND version = $2 AND phase = $3
               AND to_regnamespace(quote_ident(plan->>'version_schema')) IS NOT NULL",
            &[&schema, &version, &Phase::Completed.as_str()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The pins of every route of `schema`: route → version.
pub async fn pins(
    client: &impl GenericClient,
    schema: &str,
) -> Result<BTreeMap<String, String>, StateError> {
    Ok(client
        .query(
            "SELECT route, version FROM pgshift.routes WHERE schema_name = $1",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Pins `route` to `version` on `schema` and tells every proxy. New
/// sessions of the route get the version; existing ones keep theirs.
/// Errors: [`StateError::UnknownVersion`], listing the live versions, when
/// `version` is not live now.
pub async fn pin(
    client: &impl GenericClient,
    schema: &str,
    route: &str,
    version: &str,
) -> Result<(), StateError> {
    let live = live_versions(client, schema).await?.live();
    if !live.contains_key(version) {
        return Err(StateError::UnknownVersion {
            version: version.to_string(),
            existing: live.keys().cloned().collect(),
        });
    }
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
