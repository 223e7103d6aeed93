//! Client latency as this proxy sees it, per version: the time from a
//! request (Query, Sync or FunctionCall) going upstream to its
//! ReadyForQuery coming back ("Message Flow" in the Postgres docs: each is
//! answered by exactly one ReadyForQuery). The heartbeat publishes a
//! summary of each window with the proxy's row in `pgshift.proxies`; the
//! backfill paces itself on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two: about 19% wide.
const SUB: u32 = 4;
/// Buckets: 2^0 .. 2^36 microseconds (about 19 hours).
const BUCKETS: usize = 37 * SUB as usize;

/// A lock-free log-scale histogram of latencies, in microseconds.
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// One window's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Requests completed in the window.
    pub count: u64,
    /// Upper bounds of the buckets holding the median and the 99th
    /// percentile, in microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
}

fn bucket(us: u64) -> usize {
    let us = us.max(1);
    let exp = 63 - us.leading_zeros();
    // The SUB bits under the leading one.
    let frac = if exp >= SUB.trailing_zeros() {
        ((us >> (exp - SUB.trailing_zeros())) as u32) & (SUB - 1)
    } else {
        ((us << (SUB.trailing_zeros() - exp)) as u32) & (SUB - 1)
    };
    ((exp * SUB + frac) as usize).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds, in microseconds.
fn upper(i: usize) -> u64 {
    let exp = i as u32 / SUB;
    let frac = i as u64 % SUB as u64;
    let base = 1u64 << exp;
    base + (base * (frac + 1)) / SUB as u64
}

impl Histogram {
    /// Records one request's latency.
    pub fn record(&self, latency: Duration) {
        self.buckets[bucket(latency.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// The summary of what was recorded since the last `take`, which
    /// starts a new window; `None` when nothing was.
    pub fn take(&self) -> Option<Summary> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return None;
        }
        let at = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper(i);
                }
            }
            upper(BUCKETS - 1)
        };
        Some(Summary {
            count,
            p50_us: at(0.5),
            p99_us: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_quarter() {
        for us in [1u64, 2, 3, 5, 17, 100, 999, 1000, 12_345, 1_000_000] {
            let b = bucket(us);
            assert!(upper(b) >= us, "{us} over its bucket's bound {}", upper(b));
            assert!(
                upper(b) as f64 <= us as f64 * 1.25 + 1.0,
                "{us}: bound {} too loose",
                upper(b)
            );
        }
    }

    #[test]
    fn a_window_gives_its_percentiles_and_the_next_starts_empty() {
        let h = Histogram::default();
        for _ in 0..990 {
            h.record(Duration::from_micros(200));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(50));
        }
        let s = h.take().expect("a window");
        assert_eq!(s.count, 1000);
        assert!((200..=250).contains(&s.p50_us), "{s:?}");
        assert!((200..=250).contains(&s.p99_us), "{s:?}");
        h.record(Duration::from_millis(50));
        h.record(Duration::from_millis(50));
        let s = h.take().expect("a second window");
        assert!((50_000..=62_500).contains(&s.p99_us), "{s:?}");
        assert_eq!(h.take(), None);
    }
}
