//! Which schema version a session gets, decided once at startup (README.md,
//! "Versions through the proxy"): the version the client asks for
//! (startup `options=-c pgshift.version=<name>`, as libpq's PGOPTIONS sends
//! it, or a `pgshift.version` startup parameter), else the default route: the
//! old version while a migration runs, the only version otherwise. Pure: the
//! startup packet and the known versions in, the packet to send upstream out.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use crate::protocol::StartupMessage;
use crate::quote;
use crate::rewrite::VersionView;
use crate::state::VERSION_SETTING;
use crate::state::versions::{LiveMigration, Versions, ViewColumns};

/// A configured route: clients whose startup parameters (and listener port)
/// match every field given belong to it. The first matching rule wins.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// The route's name, as `pgshift pin` uses it (`blue`, `green`).
    pub name: String,
    pub application_name: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// The port of the proxy listener the client came in on.
    pub port: Option<u16>,
}

impl RouteRule {
    fn matches(&self, startup: &StartupMessage, port: Option<u16>) -> bool {
        let user = startup.get("user");
        let database = startup.get("database").or_else(|| user.clone());
        let fits = |want: &Option<String>, have: Option<String>| {
            want.as_ref().is_none_or(|w| Some(w) == have.as_ref())
        };
        fits(&self.application_name, startup.setting("application_name"))
            && fits(&self.user, user)
            && fits(&self.database, database)
            && self.port.is_none_or(|p| Some(p) == port)
    }
}

/// What the rewriter needs for a session of `version` in `schema` while
/// `migration` runs: its version schema and that schema's views; `None`
/// for a version that is neither of the migration's.
pub fn view_of(migration: &LiveMigration, schema: &str, version: &str) -> Option<VersionView> {
    let m = migration;
    let (version_schema, views) = if version == m.new {
        (&m.new_schema, &m.new_views)
    } else if version == m.old {
        (&m.old_schema, &m.old_views)
    } else {
        return None;
    };
    let mut view = version_view(schema, version, version_schema, views);
    view.migrating = m
        .old_views
        .values()
        .chain(m.new_views.values())
        .map(|(t, _)| t.clone())
        .collect();
    view.version_schemas = [m.old_schema.clone(), m.new_schema.clone()].into();
    Some(view)
}

/// The rewriter's view of a session of `version` on `version_schema`,
/// whose views are `views`: no migrating table, and no version schema but
/// its own.
fn version_view(
    schema: &str,
    version: &str,
    version_schema: &str,
    views: &BTreeMap<String, ViewColumns>,
) -> VersionView {
    VersionView {
        schema: schema.to_string(),
        version: version.to_string(),
        version_schema: version_schema.to_string(),
        views: views
            .iter()
            .map(|(v, (t, _))| (v.clone(), t.clone()))
            .collect(),
        columns: views
            .iter()
            .map(|(v, (_, c))| (v.clone(), c.clone()))
            .collect(),
        migrating: Default::default(),
        version_schemas: [version_schema.to_string()].into(),
    }
}

/// What a session of `version` stands on now: the version schema that
/// heads its search_path (`None`: the physical schema) and, while a
/// migration runs, the view map its statements are rewritten against.
/// A version that is no longer live gets neither.
pub fn placement(versions: &Versions, version: &str) -> (Option<String>, Option<VersionView>) {
    let Some(version_schema) = versions.live().remove(version) else {
        return (None, None);
    };
    let view = match (&versions.migration, &versions.current_schema) {
        (Some(m), _) => view_of(m, &versions.schema, version),
        // Outside a migration DDL is not refused: no table is migrating.
        (None, Some(kept)) if version == versions.current => Some(version_view(
            &versions.schema,
            version,
            &kept.name,
            &kept.views,
        )),
        (None, _) => None,
    };
    (version_schema, view)
}

/// Why a session's version could not be settled.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoutingError {
    #[error("schema version {requested:?} does not exist; the versions that exist now are: {}", existing.join(", "))]
    UnknownVersion {
        requested: String,
        existing: Vec<String>,
    },
    #[error("route {route:?} is pinned to version {version:?}, which no longer exists; pin it to one of: {}", existing.join(", "))]
    StalePin {
        route: String,
        version: String,
        existing: Vec<String>,
    },
}

/// The outcome for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The version the session is pinned to.
    pub version: String,
    /// The configured route the session belongs to, if any.
    pub route: Option<String>,
    /// The version schema heading the session's search_path (`None`: the
    /// physical schema).
    pub version_schema: Option<String>,
    /// The startup packet to send upstream.
    pub startup: Bytes,
    /// While a migration runs: the version's views, for the rewriter.
    pub view: Option<VersionView>,
}

/// The version a session gets: the one it `requested`, else its route's
/// pin, else the default. Errors: a requested version or a pin that is
/// not live now.
fn choose_version(
    requested: Option<String>,
    route: Option<&String>,
    versions: &Versions,
) -> Result<String, RoutingError> {
    let live = versions.live();
    let existing = || live.keys().cloned().collect();
    if let Some(v) = requested {
        return if live.contains_key(&v) {
            Ok(v)
        } else {
            Err(RoutingError::UnknownVersion {
                requested: v,
                existing: existing(),
            })
        };
    }
    match route.and_then(|r| versions.pins.get(r).map(|v| (r, v))) {
        Some((_, version)) if live.contains_key(version) => Ok(version.clone()),
        Some((route, version)) => Err(RoutingError::StalePin {
            route: route.clone(),
            version: version.clone(),
            existing: existing(),
        }),
        None => Ok(versions.default_version().to_string()),
    }
}

/// Decides the version of a session from its StartupMessage, the live
/// versions and the configured route rules: the client's request, else its
/// route's pin, else the default route; `port` is the listener port the
/// client came in on.
///
/// The packet is read as Postgres reads it ([`StartupMessage::setting`]):
/// the last duplicate wins, setting names are case-insensitive, and
/// `options` splits as `pg_split_opts` splits it. Every `pgshift.version`
/// and `search_path` the client gives, as a parameter or in `options`, is
/// taken out of what reaches Postgres; the packet sent upstream ends with
/// two plain parameters, which Postgres applies after `options` and after
/// every earlier parameter: `pgshift.version=<version>`, and, when the
/// version has a version schema, `search_path=<version schema>, <the
/// client's own search_path, or Postgres's default "$user", <schema>>`.
pub fn route(
    startup: &StartupMessage,
    versions: &Versions,
    rules: &[RouteRule],
    port: Option<u16>,
) -> Result<Route, RoutingError> {
    let mut upstream = startup.clone();
    let requested = upstream.take_setting(VERSION_SETTING);
    let route_name = rules
        .iter()
        .find(|r| r.matches(startup, port))
        .map(|r| r.name.clone());
    let version = choose_version(requested, route_name.as_ref(), versions)?;
    let (version_schema, view) = placement(versions, &version);
    let client_path = upstream.take_setting("search_path");
    upstream.push(VERSION_SETTING, &version);
    let path = match &version_schema {
        Some(vs) => {
            let rest = client_path
                .unwrap_or_else(|| format!("\"$user\", {}", quote::ident(&versions.schema)));
            Some(format!("{}, {rest}", quote::ident(vs)))
        }
        None => client_path,
    };
    if let Some(path) = path {
        upstream.push("search_path", &path);
    }
    Ok(Route {
        version,
        route: route_name,
        version_schema,
        startup: upstream.encode(),
        view,
    })
}

#[cfg(test)]
mod tests;
