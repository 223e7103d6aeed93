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
