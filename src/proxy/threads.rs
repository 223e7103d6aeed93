//! Session threads: the runtimes that client sessions run on, one
//! single-threaded tokio runtime per thread, sessions dealt round-robin.
//!
//! Why not one multi-threaded runtime: its work stealing wakes idle worker
//! threads to take tasks over, and on machines where waking a thread on
//! another core is dear (a virtual machine whose idle vCPUs halt, say)
//! those wake-ups cost more than the relay itself. A session that stays on
//! one thread is woken only by its own sockets. Measured with pgbench -S at
//! 16 clients on 2 cores: 0.65x -> 0.71x of direct Postgres (simple) and
//! 0.60x -> 0.66x (prepared); bench/README.md has the figures.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::watch;

/// A fixed set of threads, each running a current-thread tokio runtime
/// (timers and I/O enabled) until the `SessionThreads` is dropped; tasks
/// still running then are dropped with their runtime.
pub struct SessionThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropping it ends every thread's runtime.
    _stop: watch::Sender<()>,
}

impl SessionThreads {
    /// Starts `count` threads (0: one per core, as
    /// `std::thread::available_parallelism` tells), named
    /// `pgshift-session-N`. Errors: the OS refused a thread or a runtime's
    /// I/O driver.
    pub fn start(count: usize) -> std::io::Result<SessionThreads> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (stop, stopped) = watch::channel(());
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("pgshift-session-{i}"))
                .spawn(move || {
                    // Resolves once the sender is dropped.
                    runtime.block_on(async move { while stopped.changed().await.is_ok() {} });
                })?;
        }
        Ok(SessionThreads {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// Runs `task` on the next thread in turn. Sockets must be created or
    /// registered inside the task (see `TcpStream::from_std`), so that they
    /// belong to that thread's runtime.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn tasks_are_dealt_round_robin_and_run_on_their_threads() {
        let threads = SessionThreads::start(2).unwrap();
        assert_eq!(threads.handles.len(), 2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let (seen, tx) = (Arc::clone(&seen), tx.clone());
            threads.spawn(async move {
                // Timers work on these runtimes.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                let name = std::thread::current().name().unwrap_or("").to_string();
                seen.lock().unwrap().push(name);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..4 {
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                "pgshift-session-0",
                "pgshift-session-0",
                "pgshift-session-1",
                "pgshift-session-1"
            ]
        );
    }

    #[test]
    fn zero_means_one_per_core() {
        let threads = SessionThreads::start(0).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads.handles.len(), cores);
    }
}
