//! The migrations of each schema with their phase and plan, and the steps
//! of each action with their done marks (`pgshift.migrations`,
//! `pgshift.steps`). Every command records what it did here, so a killed
//! command is finished by running it again. Plans and steps are stored as
//! the JSON the planner wrote; this module does not look inside them.

use tokio_postgres::GenericClient;

use super::{Action, Phase, StateError, notify};

/// A migration's row.
#[derive(Debug, Clone)]
pub struct MigrationRow {
    pub version: String,
    /// The version it was started from.
    pub parent: String,
    pub phase: Phase,
    /// The new version's schema, and the old one's, as the plan names them.
    pub version_schema: String,
    pub old_version_schema: String,
    /// The plan, as the planner serialized it.
    pub plan: serde_json::Value,
    /// The migration file, as loaded.
    pub migration: serde_json::Value,
    pub updated_at: String,
}

/// The columns [`to_row`] reads, in order.
const MIGRATION_COLUMNS: &str = "version, parent, phase, plan->>'version_schema', \
     plan->>'old_version_schema', plan::text, migration::text, updated_at::text";

fn to_row(r: &tokio_postgres::Row) -> Result<MigrationRow, StateError> {
    let version: String = r.get(0);
    let plan = serde_json::from_str(r.get(5)).map_err(|e| StateError::Corrupt {
        what: "plan",
        version: version.clone(),
        message: e.to_string(),
    })?;
    Ok(MigrationRow {
        parent: r.get(1),
        phase: r.get::<_, &str>(2).parse()?,
        version_schema: r.get::<_, Option<String>>(3).unwrap_or_default(),
        old_version_schema: r.get::<_, Option<String>>(4).unwrap_or_default(),
        plan,
        migration: serde_json::from_str(r.get(6)).unwrap_or(serde_json::Value::Null),
        updated_at: r.get(7),
        version,
    })
}

/// The migration of `schema` that is not completed or rolled back, if any.
pub async fn active(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Option<MigrationRow>, StateError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {MIGRATION_COLUMNS} FROM pgshift.migrations
                 WHERE schema_name = $1 AND phase <> ALL($2)"
            ),
            &[&schema, &Phase::texts(Phase::is_finished)],
        )
        .await?;
    row.as_ref().map(to_row).transpose()
}

/// Every migration of `schema`, oldest first.
pub async fn history(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<MigrationRow>, StateError> {
    let rows = client
        .query(
            &format!(
                "SELECT {MIGRATION_COLUMNS} FROM pgshift.migrations
                 WHERE schema_name = $1 ORDER BY created_at, version"
            ),
            &[&schema],
        )
        .await?;
    rows.iter().map(to_row).collect()
}

/// The version clients use outside a migration: the newest completed one,
/// or `baseline`.
pub async fn current_version(
    client: &impl GenericClient,
    schema: &str,
) -> Result<String, StateError> {
    let row = client
        .query_opt(
            "SELECT version FROM pgshift.migrations WHERE schema_name = $1 AND phase = $2
             ORDER BY updated_at DESC LIMIT 1",
            &[&schema, &Phase::Completed.as_str()],
        )
        .await?;
    Ok(row
        .map(|r| r.get(0))
        .unwrap_or_else(|| "baseline".to_string()))
}

/// A migration about to be recorded.
#[derive(Debug)]
pub struct NewMigration<'a> {
    pub version: &'a str,
    /// The version it starts from.
    pub parent: &'a str,
    /// The plan as JSON; it must hold `version_schema` and `old_version_schema`.
    pub plan: &'a serde_json::Value,
    /// The migration file as loaded.
    pub migration: &'a serde_json::Value,
    /// Each action's steps, in order, as JSON.
    pub steps: &'a [(Action, Vec<serde_json::Value>)],
}

/// Records a new migration in phase `starting` with all its steps. Removes a
/// rolled-back run of the same version first, so it can be started again.
pub async fn record(
    client: &impl GenericClient,
    schema: &str,
    new: &NewMigration<'_>,
) -> Result<(), StateError> {
    client
        .execute(
            "DELETE FROM pgshift.migrations WHERE schema_name = $1 AND version = $2 AND phase = $3",
            &[&schema, &new.version, &Phase::RolledBack.as_str()],
        )
        .await?;
    client
        .execute(
            "INSERT INTO pgshift.migrations (schema_name, version, parent, migration, plan, phase)
             VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6)",
            &[
                &schema,
                &new.version,
                &new.parent,
                &new.migration.to_string(),
                &new.plan.to_string(),
                &Phase::Starting.as_str(),
            ],
        )
        .await?;
    for (action, steps) in new.steps {
        for (i, step) in steps.iter().enumerate() {
            client
                .execute(
                    "INSERT INTO pgshift.steps (schema_name, version, action, position, step) VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                    &[&schema, &new.version, &action.as_str(), &(i as i32), &step.to_string()],
                )
                .await?;
        }
    }
    Ok(())
}

/// Sets the phase of `version`, and tells every proxy.
pub async fn set_phase(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    phase: Phase,
) -> Result<(), StateError> {
    client
        .execute(
            "UPDATE pgshift.migrations SET phase = $3, updated_at = now() WHERE schema_name = $1 AND version = $2",
            &[&schema, &version, &phase.as_str()],
        )
        .await?;
    notify(client, schema).await?;
    Ok(())
}

/// Where a step sits in the state schema, to mark it done.
#[derive(Debug, Clone, Copy)]
pub struct StepRef<'a> {
    pub schema: &'a str,
    pub version: &'a str,
    pub action: Action,
    pub position: i32,
}

/// The steps of `action` not yet done, in order, with their positions, as
/// the JSON the planner wrote.
pub async fn pending(
    client: &impl GenericClient,
    schema: &str,
    version: &str,
    action: Action,
) -> Result<Vec<(i32, serde_json::Value)>, StateError> {
    let rows = client
        .query(
            "SELECT position, step::text FROM pgshift.steps
             WHERE schema_name = $1 AND version = $2 AND action = $3 AND done_at IS NULL ORDER BY position",
            &[&schema, &version, &action.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let step = serde_json::from_str(r.get(1)).map_err(|e| StateError::Corrupt {
                what: "step",
                version: version.to_string(),
                message: e.to_string(),
            })?;
            Ok((r.get(0), step))
        })
        .collect()
}

/// Marks one step done; run in the step's own transaction when it has one,
/// so that the step and its mark commit together. A plain database error,
/// so that it joins the step's own error handling.
pub async fn mark_done(
    client: &impl GenericClient,
    at: StepRef<'_>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgshift.steps SET done_at = now()
             WHERE schema_name = $1 AND version = $2 AND action = $3 AND position = $4",
            &[&at.schema, &at.version, &at.action.as_str(), &at.position],
        )
        .await?;
    Ok(())
}
