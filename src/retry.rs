//! Retry policy: exponential backoff with full jitter, bounded by attempts and an overall deadline.

use crate::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first retry waits up to 100 ms: a metadata service that refuses connections while a
/// container starts is usually up within that.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// No single wait over a second: with 5 attempts the waits add up to at most 1.5 s.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_attempts: u32,
    /// One attempt; cut shorter when less of the deadline is left.
    pub timeout: Duration,
    pub deadline: Duration,
    pub backoff: Backoff,
}

/// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, base × 2^(n-1))],
/// so many clients that failed together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        base: BACKOFF_BASE,
        cap: BACKOFF_CAP,
    };

    /// The ceiling of the n-th wait (n from 1).
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    pub fn delay(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(random_fraction())
    }
}

/// A uniform number in [0, 1). Jitter needs no strong randomness: std's per-instance random hash
/// keys are enough and spare a dependency.
pub fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `attempt(timeout)` until it succeeds, fails for good, or attempts or deadline run out.
/// Returns the last result and how many attempts were made.
pub async fn run<T, F, Fut>(policy: &Policy, mut attempt: F) -> (Result<T, Error>, u32)
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        let left = policy.deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (Err(Error::Timeout), attempts);
        }
        attempts += 1;
        let error = match attempt(policy.timeout.min(left)).await {
            Ok(value) => return (Ok(value), attempts),
            Err(error) => error,
        };
        if !error.is_retryable() || attempts >= policy.max_attempts {
            return (Err(error), attempts);
        }
        let wait = policy.backoff.delay(attempts);
        if start.elapsed() + wait >= policy.deadline {
            // Waiting would only end in a timeout; the real reason is the better error.
            return (Err(error), attempts);
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn policy(max_attempts: u32, deadline_ms: u64) -> Policy {
        Policy {
            max_attempts,
            timeout: Duration::from_millis(50),
            deadline: Duration::from_millis(deadline_ms),
            backoff: Backoff {
                base: Duration::from_millis(1),
                cap: Duration::from_millis(4),
            },
        }
    }

    async fn scripted(
        policy: &Policy,
        script: Vec<Result<u32, Error>>,
    ) -> (Result<u32, Error>, u32) {
        let script = RefCell::new(script.into_iter());
        run(policy, |_| {
            let next = script.borrow_mut().next().expect("script ran out");
            async move { next }
        })
        .await
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let b = Backoff::DEFAULT;
        let ms: Vec<u128> = (1..=6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(200), BACKOFF_CAP);
        // The default policy's waits stay inside the 2-s off-cloud bound.
        let total: Duration = (1..crate::config::DEFAULT_MAX_ATTEMPTS)
            .map(|n| b.ceiling(n))
            .sum();
        assert_eq!(total, Duration::from_millis(1500));
        for n in 1..10 {
            assert!(b.delay(n) <= b.ceiling(n));
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_then_succeeds() {
        let s = vec![Err(Error::Status(503)), Err(Error::Status(503)), Ok(7)];
        assert_eq!(scripted(&policy(5, 1000), s).await, (Ok(7), 3));
    }

    #[tokio::test]
    async fn stops_at_a_permanent_error() {
        let s = vec![Err(Error::NoServiceAccount), Ok(7)];
        assert_eq!(
            scripted(&policy(5, 1000), s).await,
            (Err(Error::NoServiceAccount), 1)
        );
        let s = vec![Err(Error::Unreachable("x")), Err(Error::Status(403)), Ok(7)];
        assert_eq!(
            scripted(&policy(5, 1000), s).await,
            (Err(Error::Status(403)), 2)
        );
    }

    #[tokio::test]
    async fn stops_after_max_attempts_with_the_last_error() {
        let s = vec![
            Err(Error::Timeout),
            Err(Error::Unreachable("connection refused")),
            Ok(7),
        ];
        assert_eq!(
            scripted(&policy(2, 1000), s).await,
            (Err(Error::Unreachable("connection refused")), 2)
        );
    }

    #[tokio::test]
    async fn never_runs_past_the_deadline() {
        let start = Instant::now();
        let p = Policy {
            timeout: Duration::from_secs(10),
            ..policy(100, 120)
        };
        let (result, attempts) = run(&p, |timeout| async move {
            tokio::time::sleep(timeout).await;
            Err::<u32, _>(Error::Timeout)
        })
        .await;
        assert_eq!(result, Err(Error::Timeout));
        assert!(attempts >= 1);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(120) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }
}
