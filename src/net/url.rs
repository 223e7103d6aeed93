//! Where the upstream Postgres is: a `postgres://` URL parsed with libpq's
//! rules (PostgreSQL docs, "libpq: Connection Strings" and "SSL Support"),
//! for the proxy's sessions and for pgshift's own connections alike.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A `postgres://` URL that cannot be used, with what to change. The
/// password in `value` is redacted.
#[derive(Debug, Error)]
#[error("setting `upstream` = {value:?} is not valid: {reason}")]
pub struct UrlError {
    pub value: String,
    pub reason: String,
}

/// How upstream connections use TLS, with the meaning of libpq's `sslmode`
/// (PostgreSQL docs, "libpq: SSL Support", table "SSL Mode Descriptions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Try TLS and fall back to plain if the server refuses; no certificate check.
    Prefer,
    /// Require TLS; no certificate check.
    Require,
    /// Require TLS, check the chain against `sslrootcert` and the host name.
    VerifyFull,
}

/// Where the upstream Postgres is and how to reach it. Parsed from a
/// `postgres://user:password@host:port/dbname?sslmode=..&sslrootcert=..` URL.
/// As in libpq, a `host` that starts with `/` (in the URL's authority or as a
/// `host=` query parameter) is the directory of a Unix-domain socket, which
/// is cheaper than loopback TCP; TLS is never used on it.
///
/// Client sessions use only `host`, `port` and the TLS settings: the user and
/// database come from each client's own startup packet. `user`, `password` and
/// `dbname` are for pgshift's own connections to the database.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// A host name, an IP address, or a Unix-socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub dbname: Option<String>,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password: Debug output reaches logs.
        f.debug_struct("UpstreamConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

impl UpstreamConfig {
    /// Parses a `postgres://` or `postgresql://` URL.
    ///
    /// Errors: a URL that does not parse, another scheme, a missing host, an
    /// unknown `sslmode`, or `verify-full` without `sslrootcert`.
    pub fn from_url(raw: &str) -> Result<Self, UrlError> {
        let invalid = |reason: String| UrlError {
            value: redact_url(raw),
            reason,
        };
        let url = url::Url::parse(raw)
            .map_err(|e| invalid(format!("{e}; expected postgres://user@host:port/dbname")))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(invalid(
                "the scheme must be postgres:// or postgresql://".into(),
            ));
        }
        let mut host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string());
        let mut port = url.port().unwrap_or(5432);
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let mut user = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let mut password = url.password().map(decode);
        let mut dbname = Some(url.path().trim_start_matches('/'))
            .filter(|d| !d.is_empty())
            .map(decode);
        let mut sslmode = SslMode::Prefer;
        let mut sslrootcert = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    sslmode = match value.as_ref() {
                        "disable" => SslMode::Disable,
                        "prefer" | "allow" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(invalid(format!(
                                "sslmode={other} is not supported; use disable, prefer, require or verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => sslrootcert = Some(PathBuf::from(value.as_ref())),
                "host" => host = Some(value.into_owned()),
                "user" => user = Some(value.into_owned()),
                "password" => password = Some(value.into_owned()),
                "dbname" => dbname = Some(value.into_owned()),
                "port" => {
                    port = value
                        .parse()
                        .map_err(|_| invalid(format!("port={value} is not a port number")))?
                }
                // Harmless libpq parameters that only matter to other clients.
                "application_name" | "connect_timeout" => {}
                other => {
                    return Err(invalid(format!(
                        "URL parameter `{other}` is not supported; supported: host, port, user, password, dbname, sslmode, sslrootcert"
                    )));
                }
            }
        }
        let host = host.ok_or_else(|| {
            invalid("the URL names no host; write postgres://host:port/db or postgres:///db?host=/socket/dir".into())
        })?;
        if sslmode == SslMode::VerifyFull && sslrootcert.is_none() {
            return Err(invalid(
                "sslmode=verify-full needs sslrootcert=/path/to/ca.pem to check the server's certificate".into(),
            ));
        }
        Ok(UpstreamConfig {
            host,
            port,
            user,
            password,
            dbname,
            sslmode,
            sslrootcert,
        })
    }
}

impl UpstreamConfig {
    /// The Unix-socket path (`<dir>/.s.PGSQL.<port>`) when `host` is a directory.
    pub fn unix_socket(&self) -> Option<PathBuf> {
        self.host
            .starts_with('/')
            .then(|| Path::new(&self.host).join(format!(".s.PGSQL.{}", self.port)))
    }
}

/// Returns the URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparseable URL>".to_string(),
    }
}

#[cfg(test)]
mod tests;
