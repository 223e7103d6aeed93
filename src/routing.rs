//! Which schema version a session gets, decided once at startup (design.md,
//! "How a session finds its version"): the version the client asks for
//! (startup `options=-c pgshift.version=<name>`, as libpq's PGOPTIONS sends
//! it, or a `pgshift.version` startup parameter), else the default route: the
//! old version while a migration runs, the only version otherwise. Pure: the
//! startup packet and the known versions in, the packet to send upstream out.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::quote;

/// The setting that carries a session's version; the triggers read it.
pub const VERSION_SETTING: &str = "pgshift.version";

/// The versions that exist in one schema, as the state schema says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// The physical schema (`public`).
    pub schema: String,
    /// The version clients use outside a migration.
    pub current: String,
    /// While a migration runs: (old version, its schema, new version, its schema).
    pub migration: Option<Migration>,
    /// Operator pins: route name → version (`pgshift pin ROUTE VERSION`).
    pub pins: BTreeMap<String, String>,
}

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
    fn matches(&self, params: &[(Vec<u8>, Vec<u8>)], port: Option<u16>) -> bool {
        let get = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
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

/// Where a migration stands, as far as routing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `start` runs and the old version's views exist: only the old version
    /// is live, served by its views (the physical tables are about to change).
    Starting,
    /// Both versions are live.
    Active,
    /// `complete` runs: only the new version is live.
    Completing,
    /// `rollback` runs: only the old version is live.
    RollingBack,
}

/// The versions of a running migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub phase: Phase,
    pub old: String,
    pub old_schema: String,
    pub new: String,
    pub new_schema: String,
    /// Each version schema's views: view name → (physical table, its
    /// columns as (view column, table column)).
    pub old_views: BTreeMap<String, (String, Vec<(String, String)>)>,
    pub new_views: BTreeMap<String, (String, Vec<(String, String)>)>,
}

impl Migration {
    /// What the rewriter needs for a session of `version` in `schema`.
    pub fn view_of(&self, schema: &str, version: &str) -> Option<crate::rewrite::VersionView> {
        let (version_schema, views) = if version == self.new {
            (&self.new_schema, &self.new_views)
        } else if version == self.old {
            (&self.old_schema, &self.old_views)
        } else {
            return None;
        };
        Some(crate::rewrite::VersionView {
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
            migrating: self
                .old_views
                .values()
                .chain(self.new_views.values())
                .map(|(t, _)| t.clone())
                .collect(),
        })
    }
}

impl Versions {
    /// Every version a session may ask for now, with its version schema
    /// (`None`: the physical schema serves it).
    pub fn live(&self) -> BTreeMap<String, Option<String>> {
        let Some(m) = &self.migration else {
            return BTreeMap::from([(self.current.clone(), None)]);
        };
        let old = (m.old.clone(), Some(m.old_schema.clone()));
        let new = (m.new.clone(), Some(m.new_schema.clone()));
        match m.phase {
            Phase::Starting | Phase::RollingBack => BTreeMap::from([old]),
            Phase::Active => BTreeMap::from([old, new]),
            Phase::Completing => BTreeMap::from([new]),
        }
    }

    /// What a session of `version` stands on now: the version schema that
    /// heads its search_path (`None`: the physical schema) and, while a
    /// migration runs, the view map its statements are rewritten against.
    /// A version that is no longer live gets neither.
    pub fn placement(
        &self,
        version: &str,
    ) -> (Option<String>, Option<crate::rewrite::VersionView>) {
        let Some(version_schema) = self.live().remove(version) else {
            return (None, None);
        };
        let view = self
            .migration
            .as_ref()
            .and_then(|m| m.view_of(&self.schema, version));
        (version_schema, view)
    }

    /// The version a session gets when neither its request nor a route
    /// decides: the new version once `complete` runs, else the old (or only) one.
    pub fn default_version(&self) -> &str {
        match &self.migration {
            Some(m) if m.phase == Phase::Completing => &m.new,
            Some(m) => &m.old,
            None => &self.current,
        }
    }
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
    #[error("the startup packet's parameters are malformed")]
    Malformed,
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
    pub view: Option<crate::rewrite::VersionView>,
}

/// Decides the version of a session from its raw StartupMessage (length
/// word included), the live versions and the configured route rules: the
/// client's request, else its route's pin, else the default route; `port`
/// is the listener port the client came in on. The packet sent upstream carries,
/// in `options`, `-c pgshift.version=<version>` and a `search_path` with the
/// version schema first, then the client's own search_path (or Postgres's
/// default, `"$user", <schema>`). The client's own `pgshift.version`
/// request is removed from what reaches Postgres.
pub fn route(
    raw: &[u8],
    versions: &Versions,
    rules: &[RouteRule],
    port: Option<u16>,
) -> Result<Route, RoutingError> {
    let mut params = parse_params(raw).ok_or(RoutingError::Malformed)?;
    let mut requested = None;
    if let Some(i) = params
        .iter()
        .position(|(k, _)| k == VERSION_SETTING.as_bytes())
    {
        requested = Some(String::from_utf8_lossy(&params.remove(i).1).into_owned());
    }
    let mut options: Vec<String> = Vec::new();
    let mut client_search_path = None;
    let options_at = params.iter().position(|(k, _)| k == b"options");
    if let Some(i) = options_at {
        let args = split_options(&String::from_utf8_lossy(&params[i].1));
        let mut kept = Vec::new();
        let mut iter = args.into_iter().peekable();
        while let Some(arg) = iter.next() {
            let setting = if arg == "-c" {
                iter.next().map(|s| (s, true))
            } else {
                arg.strip_prefix("--").map(|s| (s.to_string(), false))
            };
            match setting {
                Some((s, _)) if s.starts_with(&format!("{VERSION_SETTING}=")) => {
                    requested = Some(s[VERSION_SETTING.len() + 1..].to_string());
                }
                Some((s, _)) if s.starts_with("search_path=") => {
                    client_search_path = Some(s["search_path=".len()..].to_string());
                }
                Some((s, true)) => {
                    kept.push("-c".to_string());
                    kept.push(s);
                }
                Some((s, false)) => kept.push(format!("--{s}")),
                None => kept.push(arg),
            }
        }
        options = kept;
    }
    let live = versions.live();
    let route_name = rules
        .iter()
        .find(|r| r.matches(&params, port))
        .map(|r| r.name.clone());
    let version = match requested {
        Some(v) if live.contains_key(&v) => v,
        Some(v) => {
            return Err(RoutingError::UnknownVersion {
                requested: v,
                existing: live.keys().cloned().collect(),
            });
        }
        None => {
            let pinned = route_name
                .as_ref()
                .and_then(|r| versions.pins.get(r).map(|v| (r.clone(), v.clone())));
            match pinned {
                Some((_, version)) if live.contains_key(&version) => version,
                Some((route, version)) => {
                    return Err(RoutingError::StalePin {
                        route,
                        version,
                        existing: live.keys().cloned().collect(),
                    });
                }
                None => versions.default_version().to_string(),
            }
        }
    };
    let Some(version_schema) = live.get(&version).cloned().flatten() else {
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
    let rest = client_search_path
        .unwrap_or_else(|| format!("\"$user\", {}", quote::ident(&versions.schema)));
    options.push("-c".into());
    options.push(format!("{VERSION_SETTING}={version}"));
    options.push("-c".into());
    options.push(format!(
        "search_path={}, {rest}",
        quote::ident(&version_schema)
    ));
    let (_, view) = versions.placement(&version);
    Ok(Route {
        version,
        route: route_name,
        version_schema: Some(version_schema),
        startup: Some(encode(&mut params, options_at, &options)),
        view,
    })
}

/// The StartupMessage `raw` with parameter `key` set to `value` (added when
/// missing); `None` when `raw` is malformed.
pub fn with_param(raw: &[u8], key: &str, value: &str) -> Option<Bytes> {
    let mut params = parse_params(raw)?;
    match params.iter_mut().find(|(k, _)| k == key.as_bytes()) {
        Some((_, v)) => *v = value.as_bytes().to_vec(),
        None => params.push((key.as_bytes().to_vec(), value.as_bytes().to_vec())),
    }
    // No options to replace: the parameters go back as they are.
    Some(encode(&mut params, None, &[]))
}

/// The (name, value) byte pairs of a StartupMessage, in order.
fn parse_params(raw: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut rest = raw.get(8..)?;
    let mut out = Vec::new();
    loop {
        let end = rest.iter().position(|b| *b == 0)?;
        if end == 0 {
            return Some(out);
        }
        let key = rest[..end].to_vec();
        rest = &rest[end + 1..];
        let vend = rest.iter().position(|b| *b == 0)?;
        out.push((key, rest[..vend].to_vec()));
        rest = &rest[vend + 1..];
    }
}

/// Re-encodes a StartupMessage (protocol 3.0 request code kept from the
/// original) with `options` replaced by `args`.
fn encode(
    params: &mut Vec<(Vec<u8>, Vec<u8>)>,
    options_at: Option<usize>,
    args: &[String],
) -> Bytes {
    let value = join_options(args).into_bytes();
    match options_at {
        Some(i) => params[i].1 = value,
        None if !args.is_empty() => params.push((b"options".to_vec(), value)),
        None => {}
    }
    let mut body = BytesMut::new();
    body.put_u32(196608);
    for (k, v) in params.iter() {
        body.put_slice(k);
        body.put_u8(0);
        body.put_slice(v);
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(&body);
    out.freeze()
}

/// Splits a startup `options` string as the server does (pg_split_opts):
/// on whitespace, with a backslash taking the next character literally.
pub fn split_options(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(current);
    }
    out
}

/// Joins arguments into an `options` string, escaping whitespace and
/// backslashes so that [`split_options`] gives them back.
pub fn join_options(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let mut s = String::new();
            for c in a.chars() {
                if c == '\\' || c.is_ascii_whitespace() {
                    s.push('\\');
                }
                s.push(c);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
