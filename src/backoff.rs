//! Exponential backoff with jitter. Sans-IO: the caller passes the attempt number and a random
//! number, so the schedule is deterministic under test.

use std::time::Duration;

/// Delays grow by `multiplier` per attempt from `initial` up to `max`, each spread by ±`jitter`
/// (a fraction) so that many clients restarting together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
}

impl Default for Backoff {
    /// librdkafka's reconnect defaults: 100 ms doubling to 10 s, ±20 %.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry). `random` is uniform in [0, 1).
    /// Never exceeds `max`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * random.clamp(0.0, 1.0);
        Duration::from_secs_f64((capped * spread).min(self.max.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_then_caps() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(10));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn jitter_spreads_within_bounds_and_never_exceeds_max() {
        let b = Backoff::default();
        let low = b.delay(2, 0.0);
        let high = b.delay(2, 0.999);
        assert!(low >= Duration::from_millis(319) && low <= Duration::from_millis(321));
        assert!(high > Duration::from_millis(470) && high <= Duration::from_millis(480));
        for attempt in 0..40 {
            for r in [0.0, 0.3, 0.999, 1.0] {
                assert!(b.delay(attempt, r) <= b.max);
            }
        }
    }
}
