//! The backfill's pace (README.md, "The backfill's pace"): by default it
//! adapts, going as fast as the database allows without hurting its
//! clients. The signal is client latency as the proxies measure it (each
//! publishes a p99 per version with its heartbeat); the control is
//! additive-increase, multiplicative-decrease on the time each batch aims
//! at and the pause after it, as TCP paces a sender. While the clients'
//! p99 stays within `--max-latency-factor` of its level before the
//! backfill (or no client is measured), batches grow and pauses shrink;
//! once it goes over, batches halve and pauses double. Replica lag is
//! the other signal ([`super::lag`]). Given `--backfill-batch-time` or
//! `--backfill-batch-delay`, the pace is fixed at what they say.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::state::proxies;

/// The shortest and longest time a batch aims at when adapting. The
/// slowest adaptive pace (this, with [`MAX_DELAY`]) is about the fixed
/// pace that was the default before it adapted: a backfill under heavy
/// load still makes progress.
pub const MIN_BATCH_TIME: Duration = Duration::from_micros(300);
pub const MAX_BATCH_TIME: Duration = Duration::from_millis(50);
/// The longest pause between batches when adapting.
pub const MAX_DELAY: Duration = Duration::from_millis(10);
/// The most rows in one batch when adapting, as a multiple of
/// `--backfill-batch-size` (the first batch).
pub const ADAPTIVE_BATCH_FACTOR: i64 = 50;
/// A proxy's window counts only with at least this many requests.
pub const MIN_REQUESTS: i64 = 20;
/// How often the pace looks at the proxies' latency, at most.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// What the proxies' latency says, one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// No proxy measured enough requests: nothing to protect.
    Quiet,
    /// The clients' worst p99 across proxies and versions, in µs.
    P99(f64),
}

/// The backfill's pace: the batch time aimed at, the pause after each
/// batch, and the largest batch.
#[derive(Debug, Clone)]
pub struct Pace {
    adaptive: bool,
    batch_time: Duration,
    delay: Duration,
    max_batch: i64,
    factor: f64,
    /// The clients' p99 before the backfill, µs.
    baseline: Option<f64>,
    /// What holds the backfill back now, as `status` shows it.
    holding: Option<String>,
    last_look: Option<Instant>,
    /// The last window seen, to act once per window.
    last_window: Vec<(String, String, i64, i64)>,
}

impl Pace {
    /// A fixed pace: every batch aims at `batch_time`, `delay` after it,
    /// at most `max_batch` rows.
    pub fn fixed(batch_time: Duration, delay: Duration, max_batch: i64) -> Pace {
        Pace {
            adaptive: false,
            batch_time,
            delay,
            max_batch,
            factor: 0.0,
            baseline: None,
            holding: None,
            last_look: None,
            last_window: Vec::new(),
        }
    }

    /// An adaptive pace that starts at `batch_time` and `delay`, with
    /// batches of up to [`ADAPTIVE_BATCH_FACTOR`] × `first_batch` rows, and
    /// keeps the clients' p99 within `factor` of its level before the
    /// backfill.
    pub fn adaptive(batch_time: Duration, delay: Duration, first_batch: i64, factor: f64) -> Pace {
        let max_batch = first_batch.max(1).saturating_mul(ADAPTIVE_BATCH_FACTOR);
        Pace {
            adaptive: true,
            factor: factor.max(1.0),
            ..Pace::fixed(batch_time, delay, max_batch)
        }
    }

    pub fn batch_time(&self) -> Duration {
        self.batch_time
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn max_batch(&self) -> i64 {
        self.max_batch
    }

    /// What holds the backfill back now (client latency), if anything.
    pub fn holding(&self) -> Option<&str> {
        self.holding.as_deref()
    }

    /// The ratio to the clients' level past which the pace backs off: a
    /// quarter of the way short of `factor`, so that the oscillation of
    /// AIMD around it stays within the limit.
    fn threshold(&self) -> f64 {
        1.0 + 0.75 * (self.factor - 1.0)
    }

    /// Applies one window's signal. Returns true when what holds the
    /// backfill back changed. Pure.
    pub fn step(&mut self, signal: Signal) -> bool {
        if !self.adaptive {
            return false;
        }
        let before = self.holding.clone();
        let over = match (signal, self.baseline) {
            (Signal::Quiet, _) => {
                // No client measured: nothing to protect, full speed at once.
                self.batch_time = MAX_BATCH_TIME;
                self.delay = Duration::ZERO;
                self.holding = None;
                return before != self.holding;
            }
            (Signal::P99(p99), None) => {
                self.baseline = Some(p99);
                None
            }
            (Signal::P99(p99), Some(base)) if p99 > self.threshold() * base => Some((p99, base)),
            // The level is the best window seen: the one just before the
            // backfill may still hold the expand's lock waits.
            (Signal::P99(p99), Some(base)) => {
                self.baseline = Some(base.min(p99));
                None
            }
        };
        match over {
            None => {
                // Additive increase (with a multiplicative part, so that
                // clients well within the limit see full speed within
                // seconds).
                self.batch_time =
                    (self.batch_time.mul_f64(1.25) + Duration::from_millis(1)).min(MAX_BATCH_TIME);
                self.delay = self.delay.saturating_sub(Duration::from_millis(1));
                self.holding = None;
            }
            Some((p99, base)) => {
                self.batch_time = (self.batch_time / 2).max(MIN_BATCH_TIME);
                self.delay = (self.delay * 2).clamp(Duration::from_millis(2), MAX_DELAY);
                self.holding = Some(format!(
                    "client latency: p99 {:.1} ms, {:.1}x its {:.1} ms before the backfill (limit {}x)",
                    p99 / 1000.0,
                    p99 / base,
                    base / 1000.0,
                    self.factor
                ));
            }
        }
        before != self.holding
    }

    /// Looks at the latency the proxies of `schema` published, at most
    /// every 250 ms, and steps once per new window. Returns true when what
    /// holds the backfill back changed.
    pub async fn look(
        &mut self,
        client: &Client,
        schema: &str,
    ) -> Result<bool, tokio_postgres::Error> {
        if !self.adaptive || self.last_look.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return Ok(false);
        }
        self.last_look = Some(Instant::now());
        let window: Vec<(String, String, i64, i64)> = proxies::latency(client, schema)
            .await?
            .into_iter()
            .filter(|(.., count, _)| *count >= MIN_REQUESTS)
            .collect();
        let signal = match window.iter().map(|(.., p99)| *p99).max() {
            None => Signal::Quiet,
            // The same window again: nothing new to act on.
            Some(_) if window == self.last_window => return Ok(false),
            Some(p99) => Signal::P99(p99 as f64),
        };
        self.last_window = window;
        Ok(self.step(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> Pace {
        Pace::adaptive(
            Duration::from_micros(500),
            Duration::from_millis(2),
            1000,
            2.0,
        )
    }

    #[test]
    fn with_no_client_measured_the_backfill_goes_full_speed_at_once() {
        let mut pace = start();
        pace.step(Signal::Quiet);
        assert_eq!(
            (pace.batch_time(), pace.delay()),
            (MAX_BATCH_TIME, Duration::ZERO)
        );
        assert_eq!(pace.holding(), None);
    }

    #[test]
    fn clients_within_the_limit_let_the_backfill_reach_full_speed_within_seconds() {
        let mut pace = start();
        let mut steps = 0;
        while pace.batch_time() < MAX_BATCH_TIME || !pace.delay().is_zero() {
            pace.step(Signal::P99(1000.0));
            steps += 1;
        }
        // One step per new window (a second): about 13 s from the cautious start.
        assert!(steps <= 14, "{steps} steps");
        assert_eq!(pace.holding(), None);
    }

    #[test]
    fn latency_over_the_factor_halves_batches_and_says_why() {
        let mut pace = start();
        for _ in 0..20 {
            pace.step(Signal::P99(1000.0));
        }
        assert_eq!(pace.batch_time(), MAX_BATCH_TIME);
        // 1 ms was the level before the backfill; 2.5 ms is over 2x.
        assert!(pace.step(Signal::P99(2500.0)));
        assert_eq!(pace.batch_time(), MAX_BATCH_TIME / 2);
        assert_eq!(pace.delay(), Duration::from_millis(2));
        let why = pace.holding().expect("held back").to_string();
        assert!(why.contains("p99 2.5 ms, 2.5x its 1.0 ms"), "{why}");
        for _ in 0..20 {
            pace.step(Signal::P99(2500.0));
        }
        assert_eq!(
            (pace.batch_time(), pace.delay()),
            (MIN_BATCH_TIME, MAX_DELAY)
        );
        // Back within the factor: it speeds up again, and says nothing holds it.
        assert!(pace.step(Signal::P99(1500.0)));
        assert_eq!(pace.holding(), None);
        assert!(pace.batch_time() > MIN_BATCH_TIME && pace.delay() < MAX_DELAY);
    }

    #[test]
    fn the_level_is_the_best_window_and_the_pace_backs_off_short_of_the_limit() {
        let mut pace = start();
        // The window before the backfill still held the expand's waits.
        pace.step(Signal::P99(8000.0));
        pace.step(Signal::P99(1000.0));
        // 1.9 ms is within 2x of 1 ms but past 1.75x: it backs off.
        assert!(pace.step(Signal::P99(1900.0)));
        let why = pace.holding().expect("held back").to_string();
        assert!(why.contains("1.9x its 1.0 ms"), "{why}");
    }

    #[test]
    fn a_fixed_pace_never_moves() {
        let mut pace = Pace::fixed(Duration::from_millis(5), Duration::from_millis(3), 1000);
        assert!(!pace.step(Signal::P99(1e9)));
        assert_eq!(
            (pace.batch_time(), pace.delay(), pace.max_batch()),
            (Duration::from_millis(5), Duration::from_millis(3), 1000)
        );
    }
}
