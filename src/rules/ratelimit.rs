//! Bounds on rollout storms: a global token bucket, and the per-workload minimum interval.

use std::time::{Duration, Instant};

/// A token bucket: `burst` rollouts at once, refilled at `rate` per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// How long a workload last rolled at `last` must still wait, `None` when it may roll now.
pub fn cooldown(
    last: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
    min_interval: Duration,
) -> Option<Duration> {
    let since = now.duration_since(last?).unwrap_or(Duration::ZERO);
    (since < min_interval).then(|| min_interval - since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        let wait = b.try_take(t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(490) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(b.try_take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long it idled.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn cooldown_after_a_rollout() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let min = Duration::from_secs(10);
        assert_eq!(cooldown(None, now, min), None);
        assert_eq!(
            cooldown(Some(now - Duration::from_secs(4)), now, min),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            cooldown(Some(now - Duration::from_secs(10)), now, min),
            None
        );
        // A clock that went backwards waits the full interval rather than rolling at once.
        assert_eq!(
            cooldown(Some(now + Duration::from_secs(5)), now, min),
            Some(min)
        );
    }
}
