//! Which schema version a session gets, decided once at startup (README.md,
//! "Versions through the proxy"): the version the client asks for
//! (startup `options=-c pgshift.version=<name>`, as libpq's PGOPTIONS sends
//! it, or a `pgshift.version` startup parameter), else the default route: the
//! old version while a migration runs, the only version otherwise. Pure: the
//! startup packet and the known versions in, the packet to send upstream out.

use bytes::Bytes;
use thiserror::Error;

use crate::protocol::StartupMessage;
use crate::protocol::startup::{join_options, split_options};
use crate::quote;
use crate::rewrite::VersionView;
use crate::state::VERSION_SETTING;
use crate::state::versions::{LiveMigration, Versions};

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
        let get = |key: &str| startup.get(key);
        let user = get("user");
        let database = get("database").or_else(|| user.clone());
        let fits = |want: &Option<String>, have: Option<String>| {
            want.as_ref().is_none_or(|w| Some(w) == have.as_ref())
        };
        fits(&self.application_name, get("application_name"))
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
    Some(VersionView {
        schema: schema.to_string(),
        version: version.to_string(),
        version_schema: version_schema.clone(),
        views: views
            .iter()
            .map(|(v, (t, _))| (v.clone(), t.clone()))
            .collect(),
        columns: views
            .iter()
            .map(|(v, (_, c))| (v.clone(), c.clone()))
            .collect(),
        migrating: m
            .old_views
            .values()
            .chain(m.new_views.values())
            .map(|(t, _)| t.clone())
            .collect(),
        version_schemas: [m.old_schema.clone(), m.new_schema.clone()].into(),
    })
}

/// What a session of `version` stands on now: the version schema that
/// heads its search_path (`None`: the physical schema) and, while a
/// migration runs, the view map its statements are rewritten against.
/// A version that is no longer live gets neither.
pub fn placement(versions: &Versions, version: &str) -> (Option<String>, Option<VersionView>) {
    let Some(version_schema) = versions.live().remove(version) else {
        return (None, None);
    };
    let view = versions
        .migration
        .as_ref()
        .and_then(|m| view_of(m, &versions.schema, version));
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
    /// The startup packet to send upstream; `None` means the client's bytes
    /// go unchanged (no migration runs and nothing needs setting).
    pub startup: Option<Bytes>,
    /// While a migration runs: the version's views, for the rewriter.
    pub view: Option<VersionView>,
}

/// What a client asked for in its startup packet, taken out of what
/// reaches Postgres: the version (a `pgshift.version` parameter, or `-c
/// pgshift.version=` in `options`) and its own search_path (in `options`).
#[derive(Debug, Default)]
struct Requests {
    version: Option<String>,
    search_path: Option<String>,
    /// The client's other `options` arguments, kept.
    options: Vec<String>,
    /// Where `options` stands among the parameters, if the client sent it.
    options_at: Option<usize>,
}

/// Takes the client's requests out of `params` (see [`Requests`]).
fn take_requests(params: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Requests {
    let mut requests = Requests::default();
    if let Some(i) = params
        .iter()
        .position(|(k, _)| k == VERSION_SETTING.as_bytes())
    {
        requests.version = Some(String::from_utf8_lossy(&params.remove(i).1).into_owned());
    }
    requests.options_at = params.iter().position(|(k, _)| k == b"options");
    let Some(i) = requests.options_at else {
        return requests;
    };
    let mut args = split_options(&String::from_utf8_lossy(&params[i].1)).into_iter();
    while let Some(arg) = args.next() {
        let setting = if arg == "-c" {
            args.next().map(|s| (s, true))
        } else {
            arg.strip_prefix("--").map(|s| (s.to_string(), false))
        };
        match setting {
            Some((s, _)) if s.starts_with(&format!("{VERSION_SETTING}=")) => {
                requests.version = Some(s[VERSION_SETTING.len() + 1..].to_string());
            }
            Some((s, _)) if s.starts_with("search_path=") => {
                requests.search_path = Some(s["search_path=".len()..].to_string());
            }
            Some((s, true)) => {
                requests.options.push("-c".to_string());
                requests.options.push(s);
            }
            Some((s, false)) => requests.options.push(format!("--{s}")),
            None => requests.options.push(arg),
        }
    }
    requests
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
/// client came in on. The packet sent upstream carries, in `options`, `-c
/// pgshift.version=<version>` and a `search_path` with the version schema
/// first, then the client's own search_path (or Postgres's default,
/// `"$user", <schema>`). The client's own `pgshift.version` request is
/// removed from what reaches Postgres.
pub fn route(
    startup: &StartupMessage,
    versions: &Versions,
    rules: &[RouteRule],
    port: Option<u16>,
) -> Result<Route, RoutingError> {
    let mut upstream = startup.clone();
    let requests = take_requests(&mut upstream.params);
    let route_name = rules
        .iter()
        .find(|r| r.matches(&upstream, port))
        .map(|r| r.name.clone());
    let version = choose_version(requests.version, route_name.as_ref(), versions)?;
    let (Some(version_schema), view) = placement(versions, &version) else {
        // No migration: the physical schema is the only version, and Postgres
        // takes pgshift.version as a placeholder setting, so the client's
        // bytes go through unchanged.
        return Ok(Route {
            version,
            route: route_name,
            version_schema: None,
            startup: None,
            view: None,
        });
    };
    let rest = requests
        .search_path
        .unwrap_or_else(|| format!("\"$user\", {}", quote::ident(&versions.schema)));
    let mut options = requests.options;
    options.push("-c".into());
    options.push(format!("{VERSION_SETTING}={version}"));
    options.push("-c".into());
    options.push(format!(
        "search_path={}, {rest}",
        quote::ident(&version_schema)
    ));
    let value = join_options(&options).into_bytes();
    match requests.options_at {
        Some(i) => upstream.params[i].1 = value,
        None => upstream.params.push((b"options".to_vec(), value)),
    }
    Ok(Route {
        version,
        route: route_name,
        version_schema: Some(version_schema),
        startup: Some(upstream.encode()),
        view,
    })
}

#[cfg(test)]
mod tests;
