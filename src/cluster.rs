//! Throwaway local Postgres clusters, started from the installed server binaries:
//! the upstream of `pgshift proxy` when none is given, and the test harness's
//! database. A cluster lives in a temporary directory and is stopped and
//! removed when its [`TempCluster`] is dropped.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use thiserror::Error;

/// Why a throwaway cluster could not be started or controlled.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked at $PGSHIFT_PG_BINDIR, `pg_config --bindir` and /usr/lib/postgresql/*/bin); install them with `apt-get install -y postgresql` or pass --upstream"
    )]
    NoBinaries,
    #[error(
        "running as root, but there is no `postgres` user to run the cluster as (initdb refuses root); install the postgresql package or run pgshift as another user"
    )]
    NoUnprivilegedUser,
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
    #[error("I/O error while preparing the cluster directory: {0}")]
    Io(#[from] std::io::Error),
}

/// How to set up a throwaway cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Server certificate and key (PEM text); when set, the cluster runs with `ssl = on`.
    pub ssl: Option<(String, String)>,
    /// Full `pg_hba.conf` text; the default trusts every local and loopback connection.
    pub hba: Option<String>,
    /// Extra `postgresql.conf` settings, written as `name = value` lines.
    pub settings: Vec<(String, String)>,
}

/// A running throwaway cluster. The superuser is `postgres`; with the default
/// `pg_hba.conf` it needs no password on loopback.
pub struct TempCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    owner: Option<(u32, u32)>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

/// Finds the server binaries: `$PGSHIFT_PG_BINDIR`, then `pg_config --bindir`,
/// then the highest version under `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PGSHIFT_PG_BINDIR").map(PathBuf::from)
        && has_initdb(&dir)
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or(ClusterError::NoBinaries)
}

/// The (uid, gid) to run Postgres as: `postgres` when we are root, else ourselves.
fn cluster_owner() -> Result<Option<(u32, u32)>, ClusterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
        _ => Err(ClusterError::NoUnprivilegedUser),
    }
}

fn free_port() -> Result<u16, ClusterError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TempCluster {
    /// Runs initdb in a new temporary directory and starts the server on a free
    /// loopback port. Blocks until the server accepts connections.
    pub fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        let bindir = find_bindir()?;
        let owner = cluster_owner()?;
        let dir = tempfile::Builder::new().prefix("pgshift-pg-").tempdir()?;
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(dir.path(), Some(uid.into()), Some(gid.into()))
                .map_err(std::io::Error::from)?;
        }
        let mut cluster = TempCluster {
            dir,
            bindir,
            owner,
            port: 0,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        )?;
        cluster.configure(options)?;
        let mut last_error = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                // Another process may take the port between our probe and the bind.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn configure(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let mut conf = String::from(
            "\n# pgshift throwaway cluster\nlisten_addresses = '127.0.0.1'\nfsync = off\nfull_page_writes = off\nmax_connections = 300\nlog_min_messages = warning\n",
        );
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            self.dir.path().display()
        ));
        if let Some((cert, key)) = &options.ssl {
            self.write_owned(&data.join("server.crt"), cert, 0o600)?;
            self.write_owned(&data.join("server.key"), key, 0o600)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for (name, value) in &options.settings {
            conf.push_str(&format!("{name} = {value}\n"));
        }
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf"))?;
        existing.push_str(&conf);
        self.write_owned(&data.join("postgresql.conf"), &existing, 0o600)?;
        if let Some(hba) = &options.hba {
            self.write_owned(&data.join("pg_hba.conf"), hba, 0o600)?;
        }
        Ok(())
    }

    fn write_owned(&self, path: &Path, text: &str, mode: u32) -> Result<(), ClusterError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
                .map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let data = self.data_dir();
        let log = self.log_path();
        let opts = format!("-p {}", self.port);
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        )
        .map(|_| ())
    }

    /// A streaming replica of this cluster, as an operator makes one:
    /// `pg_basebackup -R -X stream` over the Unix-domain socket (the
    /// default `pg_hba.conf` trusts local replication), then a second
    /// postmaster on a free loopback port. It reports itself to the
    /// primary as `name` (`cluster_name`, which the WAL receiver sends as
    /// its application_name). Blocks until it accepts connections.
    pub fn start_replica(&self, name: &str) -> Result<TempCluster, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix("pgshift-replica-")
            .tempdir()?;
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(dir.path(), Some(uid.into()), Some(gid.into()))
                .map_err(std::io::Error::from)?;
        }
        let mut replica = TempCluster {
            dir,
            bindir: self.bindir.clone(),
            owner: self.owner,
            port: 0,
        };
        let data = replica.data_dir();
        let source = format!(
            "host={} port={} user=postgres",
            self.socket_dir().display(),
            self.port
        );
        replica.run(
            "pg_basebackup",
            &["-D", path_str(&data), "-R", "-X", "stream", "-d", &source],
        )?;
        replica.configure(&ClusterOptions {
            settings: vec![("cluster_name".into(), format!("'{name}'"))],
            ..Default::default()
        })?;
        let mut last_error = None;
        for _ in 0..5 {
            replica.port = free_port()?;
            match replica.pg_ctl_start() {
                Ok(()) => return Ok(replica),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Starts the server again after [`TempCluster::stop`], on the same port.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        self.pg_ctl_start()
    }

    /// Stops the server with pg_ctl's `mode` (`smart`, `fast` or `immediate`).
    pub fn stop(&self, mode: &str) -> Result<(), ClusterError> {
        let data = self.data_dir();
        self.run("pg_ctl", &["-D", path_str(&data), "-m", mode, "-w", "stop"])
            .map(|_| ())
    }

    /// A connection URL for `dbname` as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// A connection URL for `dbname` over the cluster's Unix-domain socket.
    pub fn socket_url(&self, dbname: &str) -> String {
        format!(
            "postgres:///{dbname}?host={}&port={}&user=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The directory holding the Unix-domain socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory holding the server binaries in use (psql, pgbench, ...).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let mut command = Command::new(self.bindir.join(program));
        // A process group of its own: a Ctrl-C meant for pgshift must not reach
        // the postmaster before pgshift has drained its sessions.
        command
            .args(args)
            .current_dir(self.dir.path())
            .process_group(0);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        let out = command.output().map_err(|e| ClusterError::Command {
            command: program.to_string(),
            detail: e.to_string(),
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            Err(ClusterError::Command {
                command: format!("{program} {}", args.join(" ")),
                detail: format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if tail.is_empty() {
                        ""
                    } else {
                        "; server log: "
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            })
        }
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if data.join("postmaster.pid").exists() {
            let _ = self.run(
                "pg_ctl",
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            );
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
