//! Retry policy: exponential backoff with full jitter, bounded by attempts and an overall deadline.
//! Sans I/O: `Attempts` is told when each attempt ends and answers what to do next; the driver
//! sends and sleeps.

use crate::config::Settings;
use crate::error::Error;
use core::time::Duration;

/// The first retry waits up to 100 ms: a metadata service that refuses connections while a
/// container starts is usually up within that.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// No single wait over a second: with 5 attempts the waits add up to at most 1.5 s.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_attempts: u32,
    /// One attempt; cut shorter when less of the deadline is left.
    pub timeout: Duration,
    pub deadline: Duration,
    pub backoff: Backoff,
}

impl Policy {
    /// The policy the settings ask for, with the default backoff.
    pub fn of(settings: &Settings) -> Policy {
        Policy {
            max_attempts: settings.max_attempts,
            timeout: settings.timeout,
            deadline: settings.deadline,
            backoff: Backoff::DEFAULT,
        }
    }
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
}

/// Jitter needs no strong randomness, and the core reads nothing from its surroundings: the driver
/// seeds this once (xorshift64*, Vigna 2016).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift must not start at zero; mixing spreads seeds that differ in few bits.
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    /// A uniform number in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The attempts of one fetch. Times are the driver's monotonic readings.
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Policy,
    started: Duration,
    made: u32,
}

/// What the retry policy says after an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Wait until this monotonic time, then call `start_attempt` for the next one.
    RetryAt(Duration),
    /// Give up with this error.
    GiveUp(Error),
}

impl Attempts {
    pub fn new(policy: Policy, now: Duration) -> Attempts {
        Attempts {
            policy,
            started: now,
            made: 0,
        }
    }

    /// Attempts made so far.
    pub fn made(&self) -> u32 {
        self.made
    }

    /// Counts an attempt about to start and returns its timeout: the policy's, cut to what is left
    /// of the deadline. `Err(Timeout)` when nothing is left.
    pub fn start_attempt(&mut self, now: Duration) -> Result<Duration, Error> {
        let left = self.left(now);
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        self.made += 1;
        Ok(self.policy.timeout.min(left))
    }

    /// After the attempt under way failed with `error`: retry after a jittered wait, or give up.
    pub fn failed(&self, now: Duration, error: Error, rng: &mut Rng) -> Next {
        if !error.is_retryable() || self.made >= self.policy.max_attempts {
            return Next::GiveUp(error);
        }
        let wait = self
            .policy
            .backoff
            .ceiling(self.made)
            .mul_f64(rng.fraction());
        if wait >= self.left(now) {
            // Waiting would only end in a timeout; the real reason is the better error.
            return Next::GiveUp(error);
        }
        Next::RetryAt(now + wait)
    }

    fn left(&self, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.started);
        self.policy.deadline.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const MS: Duration = Duration::from_millis(1);

    /// Plays `script` against the policy with attempts that take `took` each, as a driver would.
    fn play(
        policy: Policy,
        took: Duration,
        script: Vec<Result<u32, Error>>,
    ) -> (Result<u32, Error>, u32) {
        let mut rng = Rng::new(7);
        let mut now = Duration::from_secs(100);
        let mut attempts = Attempts::new(policy, now);
        for outcome in script {
            if let Err(e) = attempts.start_attempt(now) {
                return (Err(e), attempts.made());
            }
            now += took;
            match outcome {
                Ok(v) => return (Ok(v), attempts.made()),
                Err(e) => match attempts.failed(now, e, &mut rng) {
                    Next::GiveUp(e) => return (Err(e), attempts.made()),
                    Next::RetryAt(at) => {
                        assert!(at >= now);
                        now = at;
                    }
                },
            }
        }
        panic!("script ran out")
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
    }

    #[test]
    fn jitter_is_uniform_in_zero_to_one() {
        let mut rng = Rng::new(0);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        assert_ne!(Rng::new(1).fraction(), Rng::new(2).fraction());
    }

    #[test]
    fn retries_transient_errors_then_succeeds() {
        let s = vec![Err(Error::Status(503)), Err(Error::Status(503)), Ok(7)];
        assert_eq!(play(policy(5, 1000), MS, s), (Ok(7), 3));
    }

    #[test]
    fn stops_at_a_permanent_error() {
        let s = vec![Err(Error::NoServiceAccount), Ok(7)];
        assert_eq!(
            play(policy(5, 1000), MS, s),
            (Err(Error::NoServiceAccount), 1)
        );
        let s = vec![Err(Error::Unreachable("x")), Err(Error::Status(403)), Ok(7)];
        assert_eq!(play(policy(5, 1000), MS, s), (Err(Error::Status(403)), 2));
    }

    #[test]
    fn stops_after_max_attempts_with_the_last_error() {
        let s = vec![
            Err(Error::Timeout),
            Err(Error::Unreachable("connection refused")),
            Ok(7),
        ];
        assert_eq!(
            play(policy(2, 1000), MS, s),
            (Err(Error::Unreachable("connection refused")), 2)
        );
    }

    #[test]
    fn never_runs_past_the_deadline() {
        let p = Policy {
            timeout: Duration::from_secs(10),
            ..policy(100, 120)
        };
        let mut attempts = Attempts::new(p, Duration::ZERO);
        // The first attempt gets only what is left of the deadline.
        assert_eq!(attempts.start_attempt(Duration::ZERO), Ok(120 * MS));
        assert_eq!(attempts.start_attempt(120 * MS), Err(Error::Timeout));
        // A wait that would end past the deadline gives up with the real reason.
        let mut rng = Rng::new(3);
        assert_eq!(
            attempts.failed(
                Duration::from_millis(119) + MS,
                Error::Status(503),
                &mut rng
            ),
            Next::GiveUp(Error::Status(503))
        );
    }
}
