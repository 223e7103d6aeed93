//! The floor of what any proxy costs: a byte relay with no protocol
//! awareness, two blocking threads per connection (one per direction), so
//! that every hop is a plain kernel wakeup of the thread that waits for it.
//! `bench/proxy.py --with-relay` runs it beside pgshift and pgbouncer to
//! show how much of pgshift's overhead against direct Postgres is the extra
//! hop itself. Not part of pgshift; it speaks no Postgres.
//!
//! Usage: `byte_relay LISTEN_ADDR UPSTREAM`, where UPSTREAM is `host:port`
//! or the path of a Unix-domain socket (such as `/tmp/x/.s.PGSQL.5432`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;

/// Bytes asked of the kernel per read, as pgshift's relay asks.
const CHUNK: usize = 32 * 1024;

/// One connection's upstream: TCP or a Unix-domain socket.
enum Upstream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Upstream {
    /// Connects to `target`: a path (it contains '/') or `host:port`.
    fn connect(target: &str) -> std::io::Result<Upstream> {
        if target.contains('/') {
            UnixStream::connect(target).map(Upstream::Unix)
        } else {
            let tcp = TcpStream::connect(target)?;
            tcp.set_nodelay(true)?;
            Ok(Upstream::Tcp(tcp))
        }
    }

    /// A second handle on the same socket, for the other direction.
    fn try_clone(&self) -> std::io::Result<Upstream> {
        Ok(match self {
            Upstream::Tcp(s) => Upstream::Tcp(s.try_clone()?),
            Upstream::Unix(s) => Upstream::Unix(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Upstream::Tcp(s) => s.shutdown(Shutdown::Both),
            Upstream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Upstream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Upstream::Tcp(s) => s.read(buf),
            Upstream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Upstream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Upstream::Tcp(s) => s.write(buf),
            Upstream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `from` to `to` chunk by chunk until either side closes. (Not
/// `std::io::copy`, which may go through a pipe with splice.)
fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn serve(client: TcpStream, target: &str) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let upstream = Upstream::connect(target)?;
    let (client_in, upstream_out, upstream_in) = (
        client.try_clone()?,
        upstream.try_clone()?,
        upstream.try_clone()?,
    );
    let up = thread::spawn(move || pump(client_in, upstream_out));
    pump(upstream_in, &client);
    upstream.shutdown();
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, target] = args.as_slice() else {
        eprintln!("usage: byte_relay LISTEN_ADDR UPSTREAM (host:port or a Unix socket path)");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("byte_relay: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    for client in listener.incoming().flatten() {
        let target = target.clone();
        thread::spawn(move || {
            if let Err(e) = serve(client, &target) {
                eprintln!("byte_relay: {e}");
            }
        });
    }
}
