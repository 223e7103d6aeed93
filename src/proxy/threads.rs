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

/// Each session thread's stack: enough to parse a statement of a few
/// kilobytes in place, however it nests (the rewriter moves deeper work to
/// a stack of its own). Address space only, until used.
pub const SESSION_STACK: usize = 16 << 20;

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
                .stack_size(SESSION_STACK)
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
mod tests;
