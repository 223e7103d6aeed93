//! The shared test harness: a throwaway Postgres cluster and a pgshift proxy on
//! port 0 per test, a raw wire-protocol client for messages that drivers do not
//! send, and small helpers. Everything stops when the [`Env`] drops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pgshift::cluster::{ClusterOptions, TempCluster};
use pgshift::net::UpstreamConfig;
use pgshift::proxy::config::ProxyConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Installs a log subscriber once per test binary. It writes through the test
/// harness's capture, so logs show only for failing tests; RUST_LOG sets the level.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// A throwaway cluster with a proxy in front of it.
pub struct Env {
    pub cluster: TempCluster,
    pub proxy: SocketAddr,
    pub config: ProxyConfig,
    _shutdown: oneshot::Sender<()>,
    task: Option<JoinHandle<()>>,
}

impl Env {
    /// Default cluster, default proxy settings.
    pub async fn start() -> Env {
        Env::with(ClusterOptions::default(), |_| {}).await
    }

    /// A cluster set up by `options`, and a proxy whose settings `tweak` adjusts.
    pub async fn with(options: ClusterOptions, tweak: impl FnOnce(&mut ProxyConfig)) -> Env {
        init_logs();
        let cluster = tokio::task::spawn_blocking(move || TempCluster::start(&options))
            .await
            .unwrap()
            .expect("starting a throwaway cluster");
        let upstream = UpstreamConfig::from_url(&cluster.url("postgres")).unwrap();
        let mut config = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), Some(upstream));
        tweak(&mut config);
        let (proxy, shutdown, task) = spawn_proxy(&mut config).await;
        Env {
            cluster,
            proxy,
            config,
            _shutdown: shutdown,
            task: Some(task),
        }
    }

    /// A libpq-style URL that reaches the cluster through the proxy.
    pub fn proxy_url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@{}/{db}?sslmode=disable", self.proxy)
    }

    /// A libpq-style URL that reaches the cluster directly.
    pub fn direct_url(&self) -> String {
        self.cluster.url("postgres")
    }

    /// A tokio-postgres client through the proxy, as `postgres`.
    pub async fn connect(&self) -> Client {
        connect(&self.proxy_url("postgres", "postgres")).await
    }

    /// A tokio-postgres client straight to the cluster, for checks.
    pub async fn direct(&self) -> Client {
        connect(&self.direct_url()).await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts `pgshift::proxy::run` on `config.listen` (port 0 picks a free
/// port, and `config.listen` then holds the bound addresses); returns the
/// first listener's address.
pub async fn spawn_proxy(
    config: &mut ProxyConfig,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let mut listeners = Vec::new();
    for addr in &mut config.listen {
        let listener = pgshift::proxy::bind(*addr).unwrap();
        *addr = listener.local_addr().unwrap();
        listeners.push(listener);
    }
    let addr = config.listen[0];
    let config = config.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        pgshift::proxy::run(listeners, config, async {
            let _ = rx.await;
        })
        .await
        .expect("proxy run");
    });
    (addr, tx, task)
}

/// Starts the `pgshift proxy` binary on a free port in front of the
/// `upstream` URL and returns it with the address it printed.
pub async fn spawn_binary(
    upstream: &str,
    extra: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgshift"))
        .args(["proxy", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--upstream")
        .arg(upstream)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = stdout.next_line().await.unwrap().expect("a banner line");
    let addr = banner
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(';').parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));
    (child, addr)
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(url: &str) -> Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// Like [`connect`] but returns the error.
pub async fn try_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The SQLSTATE of a tokio-postgres error, or "" when it has none.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// An error's text with the server's message, which `Display` leaves out.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The first column of every row of `sql`, as text.
pub async fn texts(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The live columns of `table`, in order.
pub async fn columns(client: &Client, table: &str) -> Vec<String> {
    texts(
        client,
        &format!(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = {}::regclass
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            pgshift::quote::literal(table)
        ),
    )
    .await
}

/// Polls `check` every 50 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows of pg_stat_activity for client backends whose application_name is `app`.
pub async fn backends_named(direct: &Client, app: &str) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

/// The path of a Postgres client program (psql, pgbench) of the cluster's version.
pub fn pg_program(env: &Env, name: &str) -> PathBuf {
    let candidate = env.cluster.bindir().join(name);
    if candidate.exists() {
        candidate
    } else {
        PathBuf::from(name)
    }
}

/// pgbench with a custom script (`-f`) through the proxy, 2 clients for
/// `seconds`, with `extra` arguments (`-M prepared`). Returns whether it
/// succeeded and its output. pgbench aborts a client at its first error.
pub async fn pgbench_script(
    env: &Env,
    app: &str,
    script: &str,
    seconds: u32,
    dir: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    pgbench_as(env, app, None, script, seconds, dir, extra).await
}

/// [`pgbench_script`] for the sessions of `version` (`PGOPTIONS=-c
/// pgshift.version=...`), or of the default version with `None`.
pub async fn pgbench_as(
    env: &Env,
    app: &str,
    version: Option<&str>,
    script: &str,
    seconds: u32,
    dir: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    let path = dir.join(format!("{app}.sql"));
    std::fs::write(&path, script).unwrap();
    let out = tokio::process::Command::new(pg_program(env, "pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &env.proxy.port().to_string(),
            "-U",
            "postgres",
            "-n",
            "-c",
            "2",
            "-j",
            "1",
        ])
        .args(extra)
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&path)
        .arg("postgres")
        .env("PGAPPNAME", app)
        .env(
            "PGOPTIONS",
            version.map_or(String::new(), |v| format!("-c pgshift.version={v}")),
        )
        .output()
        .await
        .expect("pgbench must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("aborted"), text)
}

/// One backend message: type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl Msg {
    /// For ErrorResponse/NoticeResponse: the value of field `code` ('C', 'M', ...).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut body = &self.body[..];
        while !body.is_empty() && body[0] != 0 {
            let field = body[0];
            let end = body[1..].iter().position(|b| *b == 0)? + 1;
            let value = String::from_utf8_lossy(&body[1..end]).into_owned();
            if field == code {
                return Some(value);
            }
            body = &body[end + 1..];
        }
        None
    }
}

/// A raw protocol client: sends whatever bytes a test builds, reads messages.
pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    /// Opens a TCP connection to `addr`; no startup yet.
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    /// Connects and completes a trust-auth startup as `postgres`, returning the
    /// messages up to and including the first ReadyForQuery.
    pub async fn startup(addr: SocketAddr, extra: &[(&str, &str)]) -> (Raw, Vec<Msg>) {
        let mut raw = Raw::connect(addr).await;
        let mut params = vec![("user", "postgres"), ("database", "postgres")];
        params.extend_from_slice(extra);
        raw.send(&startup_message(&params)).await;
        let msgs = raw.until_ready().await;
        assert_eq!(
            msgs.last().map(|m| m.tag),
            Some(b'Z'),
            "startup failed: {msgs:?}"
        );
        (raw, msgs)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` when the peer closed. Panics after 20 s.
    pub async fn recv(&mut self) -> Option<Msg> {
        tokio::time::timeout(Duration::from_secs(20), self.recv_inner())
            .await
            .expect("no message within 20 s")
    }

    async fn recv_inner(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = (&self.buf[1..5]).get_u32() as usize;
                if self.buf.len() > len {
                    let frame = self.buf.split_to(len + 1);
                    return Some(Msg {
                        tag: frame[0],
                        body: Bytes::copy_from_slice(&frame[5..]),
                    });
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Messages up to and including the next ReadyForQuery, or up to EOF.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(msg) = self.recv().await {
            let done = msg.tag == b'Z';
            out.push(msg);
            if done {
                break;
            }
        }
        out
    }

    /// Reads until EOF and returns the first ErrorResponse's SQLSTATE, if any.
    pub async fn error_then_close(&mut self) -> Option<String> {
        let mut code = None;
        while let Some(msg) = self.recv().await {
            if msg.tag == b'E' && code.is_none() {
                code = msg.field(b'C');
            }
        }
        code
    }
}

/// A StartupMessage for protocol 3.0 with `params`.
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u32(196608);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A frontend message with type `tag` and `body`.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A Query message for `sql`.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// A test certificate authority and a server certificate it signed for
/// `localhost` and 127.0.0.1, written as PEM files into a temporary directory
/// readable by the cluster's user.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pgshift test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki {
            dir,
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(pki.path("server.pem"), &pki.cert_pem).unwrap();
        std::fs::write(pki.path("server.key"), &pki.key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["ca.pem", "server.pem"] {
            std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Runs psql with `conninfo` and `sql`; returns stdout, or stderr on failure.
pub async fn psql(conninfo: &str, sql: &str, password: Option<&str>) -> Result<String, String> {
    let mut command = tokio::process::Command::new("psql");
    command
        .arg(conninfo)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let out = command
        .output()
        .await
        .expect("psql must be installed (apt-get install postgresql-client)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The resident set size of process `pid`, in KiB, from `/proc/PID/status`
/// (`VmRSS`). Panics when the process is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status of a live process")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
