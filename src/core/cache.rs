//! The token cache, sans I/O: freshness on two clocks, single flight, refresh ahead of expiry in
//! the background, and static stability (a failed refresh never reaches callers while the cached
//! token is valid). The driver hands it every event with the time it happened and does what it
//! answers: send an attempt, sleep until a time, or hand the waiting callers a result.
//!
//! Every margin is a fraction of the token's lifetime (capped by a fixed ceiling), so the rules
//! hold for a token that lives 2 seconds as for one that lives 12 hours.
//!
//! Upstream requests stay bounded: a refresh starts only when the token is within its margin,
//! which is at most half of its lifetime, so each refresh leaves the new token fresh for at least
//! half of what the server granted. A server that keeps handing back the same near-expiry token is
//! asked again after half of the remaining time each time (about log2 of the margin in seconds
//! per token, 8 for the default 240 s), and background refreshes start at least
//! `BACKGROUND_MIN_INTERVAL` apart: at most 60 background fetches a minute even for 2-second
//! tokens, each of at most `maxAttempts` requests. Failed refreshes back off exponentially up to
//! `BACKGROUND_BACKOFF.cap`. Callers wait for a fetch (one at a time, shared) only when no usable
//! token is held, so those fetches are bounded by the tokens' lifetimes and by the callers.

use crate::error::Error;
use crate::fetch::Fetched;
use crate::retry::{Attempts, Backoff, Next, Policy, Rng};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

/// Treat a token as expired this much before the server's expiry, so a caller has time to use it
/// against an API; at most a tenth of the token's lifetime.
pub const MAX_EXPIRY_SKEW: Duration = Duration::from_secs(10);
const EXPIRY_SKEW_DIVISOR: u32 = 10;
/// The refresh margin is at most half the lifetime: see the module note on request bounds.
const REFRESH_MARGIN_DIVISOR: u32 = 2;
/// Background refreshes never come closer together than this, whatever the tokens' lifetimes.
pub const BACKGROUND_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// After failed background refreshes: 1 s, 2 s, 4 s … up to a minute, but always early enough to
/// try again before the cached token expires.
pub const BACKGROUND_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
};

/// A reading of both clocks, taken by the driver: `mono` from any fixed origin, `wall` since the
/// Unix epoch. The monotonic clock stops while a VM is suspended; the wall clock does not, but can
/// be stepped back. The time between two stamps is the larger of the two readings, so a frozen
/// container or a suspended VM never makes a token look younger than it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub mono: Duration,
    pub wall: Duration,
}

impl Stamp {
    pub fn since(&self, earlier: &Stamp) -> Duration {
        let mono = self.mono.saturating_sub(earlier.mono);
        let wall = self.wall.saturating_sub(earlier.wall);
        mono.max(wall)
    }
}

/// What a caller gets: the token, the time it has left and how long it needs no refresh, both as
/// of the wall-clock reading `at` (the caller may see it later: a JavaScript thread can be busy
/// when a fetch ends), and the requests made for it (0 when answered from memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expires_in: Duration,
    pub fresh_for: Duration,
    pub at: Duration,
    pub attempts: u32,
    /// Fetches that failed in a row while this token was past its refresh point: it is served
    /// stale because the service failed (static stability). 0 while it is fresh.
    pub failures: u32,
}

impl Token {
    /// Wall-clock deadlines in whole milliseconds since the epoch, rounded down like `Date.now()`:
    /// a deadline of "now" must not look a fraction of a millisecond ahead of what JavaScript
    /// reads just after. (expires at, fresh until)
    pub fn deadlines_ms(&self) -> (f64, f64) {
        let ms = |d: Duration| d.as_millis() as f64;
        (ms(self.at + self.expires_in), ms(self.at + self.fresh_for))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: Error,
    pub attempts: u32,
}

pub type Outcome = Result<Token, Failure>;

/// Why a flight started. The drivers pass it on with the flight's first step, for observers
/// (diagnostics_channel in index.js); the names are public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing was ever fetched.
    First = 0,
    /// The token held ran out (it is within its expiry skew).
    Expired = 1,
    /// The token held is inside its refresh margin: a refresh in the background.
    RefreshAhead = 2,
    /// A caller asked for a new token whatever is held.
    Forced = 3,
    /// Nothing is held because the last fetch failed.
    RetryAfterFailure = 4,
}

impl Reason {
    /// Its name, as observers see it (public API: README "Tracing and metrics").
    pub fn name(self) -> &'static str {
        match self {
            Reason::First => "first",
            Reason::Expired => "expired",
            Reason::RefreshAhead => "refresh-ahead",
            Reason::Forced => "forced",
            Reason::RetryAfterFailure => "retry-after-failure",
        }
    }

    /// The number the wasm driver passes; `from_code` reads it back.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the wasm driver's
    pub fn code(self) -> u32 {
        self as u32
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the wasm driver's
    pub fn from_code(code: u32) -> Option<Reason> {
        [
            Reason::First,
            Reason::Expired,
            Reason::RefreshAhead,
            Reason::Forced,
            Reason::RetryAfterFailure,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// A flight that started: its number (unique per cache, from 1), why, and its first step.
#[derive(Debug)]
pub struct Start<W> {
    pub flight: u64,
    pub reason: Reason,
    pub step: Step<W>,
}

/// A token the cache held that ran out while fetches were failing: static stability came to its
/// end. Noticed once per token, when a caller finds it run out or when a failed fetch leaves it
/// so, and reported with the end of the flight under way then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub token: String,
    /// Fetches that had failed in a row.
    pub failures: u32,
    pub last_error: &'static str,
}

/// How a flight ended, beyond its outcome: what observers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub flight: u64,
    pub reason: Reason,
    /// The HTTP status of the last attempt, if it got an answer's head.
    pub status: Option<u16>,
    /// No caller was waiting for it when it ended (a refresh ahead of expiry, or one whose callers
    /// all gave up).
    pub background: bool,
    /// Fetches that have failed in a row, this one included (0 after a success).
    pub failures: u32,
    /// The token the cache serves after this flight, if any: the new one, or after a failure the
    /// one still served.
    pub held: Option<Token>,
    pub expired: Option<Expired>,
}

/// What the driver does next for the flight under way.
#[derive(Debug)]
pub enum Step<W> {
    /// Send one attempt with this timeout, then report how it ended (`attempt_ended`).
    Send { timeout: Duration },
    /// Sleep until this monotonic time, then call `wake`.
    SleepUntil(Duration),
    /// The flight is over: hand `outcome` to these waiters (none for a background refresh), and
    /// `report` (none if there was no flight) to whoever observes it.
    Done {
        outcome: Outcome,
        waiters: Vec<W>,
        report: Option<Box<Report>>,
    },
}

/// How `get` answered a caller.
#[derive(Debug)]
pub enum Get<W> {
    /// From memory; the waiter comes back to be answered at once.
    Ready(Token, W),
    /// The waiter joined the flight and is handed its outcome when that ends.
    Joined,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    pub retries: u64,
    /// Fetches started (each may make several requests), background ones included.
    pub fetches: u64,
    pub background_refreshes: u64,
    pub failures: u64,
    pub last_error: Option<&'static str>,
    /// Time left on the cached token, if there is one that is not expired.
    pub expires_in: Option<Duration>,
}

/// The token as fetched. Its expiry counts from when the request was sent: the server issued it
/// no earlier, so the estimate errs on the early side.
#[derive(Debug)]
struct Held {
    token: String,
    lifetime: Duration,
    sent: Stamp,
}

impl Held {
    fn remaining(&self, now: &Stamp) -> Duration {
        self.lifetime.saturating_sub(now.since(&self.sent))
    }

    fn skew(&self) -> Duration {
        skew(self.lifetime)
    }

    /// `usable_for`, for the token held.
    fn usable_for(&self, now: &Stamp) -> Option<Duration> {
        usable_for(self.lifetime, now.since(&self.sent))
    }

    fn margin(&self, configured: Duration) -> Duration {
        configured
            .min(self.lifetime / REFRESH_MARGIN_DIVISOR)
            .max(self.skew())
    }
}

fn skew(lifetime: Duration) -> Duration {
    MAX_EXPIRY_SKEW.min(lifetime / EXPIRY_SKEW_DIVISOR)
}

/// The time a token that had `lifetime` when it arrived `elapsed` ago can still be used, or `None`
/// once it is within its expiry skew: the rule for tokens the cache does not hold (a Cloud
/// Functions context's).
pub fn usable_for(lifetime: Duration, elapsed: Duration) -> Option<Duration> {
    let left = lifetime.saturating_sub(elapsed);
    (left > skew(lifetime)).then_some(left)
}

/// `usable_for` in the drivers' terms: milliseconds in and out, any number a caller may pass.
pub fn usable_for_ms(lifetime_ms: f64, elapsed_ms: f64) -> Option<f64> {
    usable_for(from_ms(lifetime_ms), from_ms(elapsed_ms)).map(to_ms)
}

/// Milliseconds as the drivers pass them (JavaScript numbers) to a duration: anything not positive
/// (NaN included) is zero, and anything past ~31,000 years is capped there, so no reading panics.
pub fn from_ms(ms: f64) -> Duration {
    Duration::from_secs_f64(if ms > 0.0 { ms.min(1e15) / 1000.0 } else { 0.0 })
}

/// A duration as the drivers hand it to JavaScript.
pub fn to_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug)]
struct Flight<W> {
    /// When the attempt under way was sent: a token's expiry counts from the request that got it,
    /// as the server issued it no earlier.
    sent: Stamp,
    attempts: Attempts,
    waiters: Vec<W>,
    id: u64,
    reason: Reason,
    /// The status of the last attempt that got an answer's head.
    status: Option<u16>,
    /// A usable token was held when it started: a token that runs out before it ends ran out
    /// while this refresh was failing.
    refreshing: bool,
    expired: Option<Expired>,
}

/// One provider's cache. `W` is whatever the driver uses to answer a waiting caller.
#[derive(Debug)]
pub struct Cache<W> {
    policy: Policy,
    refresh_margin: Duration,
    rng: Rng,
    held: Option<Held>,
    flight: Option<Flight<W>>,
    /// The earliest moment (monotonic) for the next background refresh.
    refresh_not_before: Option<Duration>,
    refresh_failures: u32,
    /// The held token's expiry while failing was noticed (`Expired`): it is reported once.
    expiry_noticed: bool,
    stats: Stats,
}

impl<W> Cache<W> {
    pub fn new(policy: Policy, refresh_margin: Duration, seed: u64) -> Cache<W> {
        Cache {
            policy,
            refresh_margin,
            rng: Rng::new(seed),
            held: None,
            flight: None,
            refresh_not_before: None,
            refresh_failures: 0,
            expiry_noticed: false,
            stats: Stats::default(),
        }
    }

    /// The cached token if it can be used now, without waiting. Inside the refresh margin this
    /// also starts a background refresh: the step is the driver's to run.
    pub fn peek(&mut self, now: Stamp) -> (Option<Token>, Option<Start<W>>) {
        let token = self.view(&now);
        let start = match &token {
            Some(t) if self.refresh_due(t, &now) => {
                self.stats.background_refreshes += 1;
                Some(self.start_flight(now, Reason::RefreshAhead, None))
            }
            _ => None,
        };
        (token, start)
    }

    /// A token for `waiter`: from memory unless `force`, else when the flight under way (or one
    /// started now, whose first step is returned) ends. Concurrent callers share one flight.
    pub fn get(&mut self, now: Stamp, force: bool, waiter: W) -> (Get<W>, Option<Start<W>>) {
        if !force {
            let (token, start) = self.peek(now);
            if let Some(token) = token {
                return (Get::Ready(token, waiter), start);
            }
        }
        // Fetches failed since the token was fetched, and now it is gone.
        let expired = self.notice_expiry(&now, self.refresh_failures > 0);
        let start = match self.flight.as_mut() {
            Some(flight) => {
                flight.expired = flight.expired.take().or(expired);
                None
            }
            None => {
                let reason = if force {
                    Reason::Forced
                } else if self.held.is_some() {
                    Reason::Expired
                } else if self.stats.fetches > 0 {
                    Reason::RetryAfterFailure
                } else {
                    Reason::First
                };
                Some(self.start_flight(now, reason, expired))
            }
        };
        if let Some(flight) = self.flight.as_mut() {
            flight.waiters.push(waiter);
        }
        (Get::Joined, start)
    }

    /// Callers waiting for the flight under way (0 for a background refresh or none).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.flight.as_ref().map_or(0, |f| f.waiters.len())
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// The attempt under way ended with `result` (see fetch.rs for how a driver makes it);
    /// `status` is the answer's HTTP status if its head was read.
    pub fn attempt_ended(
        &mut self,
        now: Stamp,
        result: Result<Fetched, Error>,
        status: Option<u16>,
    ) -> Step<W> {
        let Some(flight) = self.flight.as_mut() else {
            return self.finish(now, Err(Error::Internal));
        };
        flight.status = status;
        match result {
            Ok(fetched) => self.finish(now, Ok(fetched)),
            Err(error) => match flight.attempts.failed(now.mono, error, &mut self.rng) {
                Next::GiveUp(error) => self.finish(now, Err(error)),
                Next::RetryAt(at) => Step::SleepUntil(at),
            },
        }
    }

    /// The sleep the flight asked for is over.
    pub fn wake(&mut self, now: Stamp) -> Step<W> {
        let Some(flight) = self.flight.as_mut() else {
            return self.finish(now, Err(Error::Internal));
        };
        match flight.attempts.start_attempt(now.mono) {
            Ok(timeout) => {
                flight.sent = now;
                Step::Send { timeout }
            }
            Err(error) => self.finish(now, Err(error)),
        }
    }

    /// The attempt under way actually went out now, later than its step said (a driver whose
    /// thread was busy): its token's lifetime counts from here.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the wasm driver's
    pub fn attempt_sent(&mut self, now: Stamp) {
        if let Some(flight) = self.flight.as_mut() {
            flight.sent = now;
        }
    }

    /// Takes the waiters `drop_if` picks out of the flight (their callers gave up); the flight
    /// goes on for the others, and to fill the cache.
    pub fn release(&mut self, drop_if: impl Fn(&W) -> bool) -> Vec<W> {
        let Some(flight) = self.flight.as_mut() else {
            return Vec::new();
        };
        let (gone, kept) = core::mem::take(&mut flight.waiters)
            .into_iter()
            .partition(drop_if);
        flight.waiters = kept;
        gone
    }

    /// The driver lost the flight (a panic, a runtime that could not start): its waiters get an
    /// internal error instead of waiting forever.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the native driver's: wasm aborts
    pub fn abandon(&mut self, now: Stamp) -> Step<W> {
        self.finish(now, Err(Error::Internal))
    }

    pub fn stats(&self, now: Stamp) -> Stats {
        let mut stats = self.stats.clone();
        stats.expires_in = self.view(&now).map(|t| t.expires_in);
        stats
    }

    fn refresh_due(&self, token: &Token, now: &Stamp) -> bool {
        token.fresh_for.is_zero()
            && self.flight.is_none()
            && self.refresh_not_before.is_none_or(|t| now.mono >= t)
    }

    /// The held token as seen `now`, or `None` once it is within its expiry skew.
    fn view(&self, now: &Stamp) -> Option<Token> {
        let held = self.held.as_ref()?;
        held.usable_for(now)?;
        Some(self.token_at(held, now, 0))
    }

    /// The held token as seen `now`, whatever is left of it.
    fn token_at(&self, held: &Held, now: &Stamp, attempts: u32) -> Token {
        let remaining = held.remaining(now);
        let fresh_for = remaining.saturating_sub(held.margin(self.refresh_margin));
        Token {
            token: held.token.clone(),
            expires_in: remaining,
            fresh_for,
            at: now.wall,
            attempts,
            failures: if fresh_for.is_zero() {
                self.refresh_failures
            } else {
                0
            },
        }
    }

    /// The held token's end while fetches were `failing`, the first time it is seen.
    fn notice_expiry(&mut self, now: &Stamp, failing: bool) -> Option<Expired> {
        let held = self.held.as_ref()?;
        if self.expiry_noticed || !failing || held.usable_for(now).is_some() {
            return None;
        }
        self.expiry_noticed = true;
        Some(Expired {
            token: held.token.clone(),
            failures: self.refresh_failures,
            last_error: self.stats.last_error.unwrap_or(Error::Internal.code()),
        })
    }

    fn start_flight(&mut self, now: Stamp, reason: Reason, expired: Option<Expired>) -> Start<W> {
        let mut attempts = Attempts::new(self.policy, now.mono);
        self.stats.fetches += 1;
        let first = attempts.start_attempt(now.mono);
        let id = self.stats.fetches;
        self.flight = Some(Flight {
            sent: now,
            attempts,
            waiters: Vec::new(),
            id,
            reason,
            status: None,
            refreshing: self.view(&now).is_some(),
            expired,
        });
        let step = match first {
            Ok(timeout) => Step::Send { timeout },
            Err(error) => self.finish(now, Err(error)),
        };
        Start {
            flight: id,
            reason,
            step,
        }
    }

    fn finish(&mut self, now: Stamp, result: Result<Fetched, Error>) -> Step<W> {
        let flight = self.flight.take();
        let failing_before = self.refresh_failures > 0;
        let (sent, attempts) = match &flight {
            Some(f) => (f.sent, f.attempts.made()),
            None => (now, 0),
        };
        self.stats.requests += u64::from(attempts);
        self.stats.retries += u64::from(attempts.saturating_sub(1));
        let outcome = match result {
            Ok(fetched) => {
                let held = Held {
                    token: fetched.token,
                    lifetime: fetched.expires_in,
                    sent,
                };
                self.refresh_failures = 0;
                self.expiry_noticed = false;
                self.refresh_not_before = Some(now.mono + BACKGROUND_MIN_INTERVAL);
                // Waiters take the token even inside its skew: it is not expired, and a fetch
                // slower than a tenth of the token's life will not go faster when repeated.
                let token = self.token_at(&held, &now, attempts);
                self.held = Some(held);
                if token.expires_in.is_zero() {
                    Err(Failure {
                        error: Error::BadResponse("the token expired before it arrived".into()),
                        attempts,
                    })
                } else {
                    Ok(token)
                }
            }
            Err(error) => {
                self.stats.failures += 1;
                self.stats.last_error = Some(error.code());
                self.refresh_failures += 1;
                let backoff = BACKGROUND_BACKOFF.ceiling(self.refresh_failures);
                let jittered = backoff.mul_f64(0.5 + self.rng.fraction() / 2.0);
                // Try again before the cached token runs out, however far the backoff has grown.
                let usable = self.held.as_ref().map_or(Duration::ZERO, |h| {
                    h.remaining(&now).saturating_sub(h.skew())
                });
                let wait = jittered.min(usable / 2).max(BACKGROUND_MIN_INTERVAL);
                self.refresh_not_before = Some(now.mono + wait);
                Err(Failure { error, attempts })
            }
        };
        let mut expired = None;
        if outcome.is_err()
            && self
                .held
                .as_ref()
                .and_then(|h| h.usable_for(&now))
                .is_none()
        {
            // Static stability ran out: earlier fetches had failed, or this one failed while
            // refreshing a token that was still usable. (A token that ran out unnoticed and
            // whose first fetch then failed did not expire while the service was failing.)
            let refreshing = flight.as_ref().is_some_and(|f| f.refreshing);
            expired = self.notice_expiry(&now, failing_before || refreshing);
            // Nothing usable is held: drop the expired token rather than keep it around.
            self.held = None;
        }
        let Some(flight) = flight else {
            return Step::Done {
                outcome,
                waiters: Vec::new(),
                report: None,
            };
        };
        let report = Box::new(Report {
            flight: flight.id,
            reason: flight.reason,
            status: flight.status,
            background: flight.waiters.is_empty(),
            failures: self.refresh_failures,
            held: self.view(&now),
            expired: flight.expired.or(expired),
        });
        Step::Done {
            outcome,
            waiters: flight.waiters,
            report: Some(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT};

    const POLICY: Policy = Policy {
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        timeout: DEFAULT_TIMEOUT,
        deadline: DEFAULT_DEADLINE,
        backoff: Backoff::DEFAULT,
    };

    /// A driver on a fake clock: time moves only when the test says.
    struct Clock(Stamp);

    impl Clock {
        fn new() -> Clock {
            Clock(Stamp {
                mono: Duration::from_secs(1000),
                wall: Duration::from_secs(1_700_000_000),
            })
        }

        fn now(&self) -> Stamp {
            self.0
        }

        fn advance(&mut self, secs: f64) {
            let by = Duration::from_secs_f64(secs);
            self.0.mono += by;
            self.0.wall += by;
        }

        /// A suspended VM: the wall clock moves, the monotonic one does not.
        fn suspend(&mut self, secs: f64) {
            self.0.wall += Duration::from_secs_f64(secs);
        }
    }

    fn token(name: &str, secs: u64) -> Result<Fetched, Error> {
        Ok(Fetched {
            token: name.into(),
            expires_in: Duration::from_secs(secs),
        })
    }

    fn cache() -> Cache<u32> {
        Cache::new(POLICY, Duration::from_secs(240), 1)
    }

    impl From<Start<u32>> for Step<u32> {
        fn from(start: Start<u32>) -> Step<u32> {
            start.step
        }
    }

    /// Runs a flight to its end, answering its attempts from `script` (each taking `took` seconds);
    /// returns the outcome and the waiters handed it.
    fn fly(
        cache: &mut Cache<u32>,
        clock: &mut Clock,
        step: impl Into<Step<u32>>,
        script: &mut Vec<Result<Fetched, Error>>,
        took: f64,
    ) -> (Outcome, Vec<u32>) {
        let (outcome, waiters, _) = fly_reported(cache, clock, step, script, took);
        (outcome, waiters)
    }

    /// `fly`, with the flight's report. An answer's status is 200 for a token, else the error's.
    fn fly_reported(
        cache: &mut Cache<u32>,
        clock: &mut Clock,
        step: impl Into<Step<u32>>,
        script: &mut Vec<Result<Fetched, Error>>,
        took: f64,
    ) -> (Outcome, Vec<u32>, Report) {
        let mut step = step.into();
        loop {
            step = match step {
                Step::Send { timeout } => {
                    assert!(timeout > Duration::ZERO);
                    clock.advance(took);
                    let result = script.remove(0);
                    let status = match &result {
                        Ok(_) => Some(200),
                        Err(e) => e.status(),
                    };
                    cache.attempt_ended(clock.now(), result, status)
                }
                Step::SleepUntil(at) => {
                    let by = at - clock.now().mono;
                    clock.0.mono += by;
                    clock.0.wall += by;
                    cache.wake(clock.now())
                }
                Step::Done {
                    outcome,
                    waiters,
                    report,
                } => return (outcome, waiters, *report.expect("a flight's report")),
            }
        }
    }

    fn get(
        cache: &mut Cache<u32>,
        clock: &Clock,
        force: bool,
        id: u32,
    ) -> (Option<Token>, Option<Start<u32>>) {
        match cache.get(clock.now(), force, id) {
            (Get::Ready(t, back), step) => {
                assert_eq!(back, id);
                (Some(t), step)
            }
            (Get::Joined, step) => (None, step),
        }
    }

    /// Caller `id` asks while nothing is held: the flight it starts runs on `script`.
    fn fetch(
        cache: &mut Cache<u32>,
        clock: &mut Clock,
        id: u32,
        mut script: Vec<Result<Fetched, Error>>,
        took: f64,
    ) -> (Outcome, Vec<u32>) {
        let (got, step) = get(cache, clock, false, id);
        assert!(got.is_none());
        fly(
            cache,
            clock,
            step.expect("a flight starts"),
            &mut script,
            took,
        )
    }

    /// A cache holding `name`, fetched just now.
    fn filled(clock: &mut Clock, name: &str, secs: u64) -> Cache<u32> {
        let mut cache = cache();
        let _ = fetch(&mut cache, clock, 0, vec![token(name, secs)], 0.001);
        cache
    }

    #[test]
    fn clocks_take_the_larger_reading() {
        let a = Clock::new().now();
        let suspended = Stamp {
            mono: a.mono + Duration::from_secs(1),
            wall: a.wall + Duration::from_secs(60),
        };
        assert_eq!(suspended.since(&a), Duration::from_secs(60));
        let stepped_back = Stamp {
            mono: a.mono + Duration::from_secs(5),
            wall: a.wall - Duration::from_secs(60),
        };
        assert_eq!(stepped_back.since(&a), Duration::from_secs(5));
    }

    #[test]
    fn margins_scale_with_lifetime() {
        let held = |secs: u64| Held {
            token: "t".into(),
            lifetime: Duration::from_secs(secs),
            sent: Clock::new().now(),
        };
        let margin = Duration::from_secs(240);
        assert_eq!(held(43_200).margin(margin), margin);
        assert_eq!(held(43_200).skew(), MAX_EXPIRY_SKEW);
        assert_eq!(held(2).margin(margin), Duration::from_secs(1));
        assert_eq!(held(2).skew(), Duration::from_millis(200));
        assert_eq!(held(2).margin(Duration::ZERO), Duration::from_millis(200));
        // The same rule for a context's token.
        let s = Duration::from_secs;
        assert_eq!(usable_for(s(43_200), s(100)), Some(s(43_100)));
        assert_eq!(usable_for(s(43_200), s(43_190)), None);
        assert_eq!(
            usable_for(s(2), Duration::from_millis(1700)),
            Some(Duration::from_millis(300))
        );
        assert_eq!(usable_for(s(2), Duration::from_millis(1800)), None);
    }

    #[test]
    fn concurrent_callers_share_one_flight() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (_, first) = get(&mut cache, &clock, false, 0);
        for id in 1..1000 {
            let (got, step) = get(&mut cache, &clock, false, id);
            assert!(got.is_none() && step.is_none());
        }
        assert_eq!(cache.waiting(), 1000);
        let (outcome, waiters) = fly(
            &mut cache,
            &mut clock,
            first.unwrap(),
            &mut vec![token("a", 3600)],
            0.02,
        );
        assert_eq!(outcome.unwrap().token, "a");
        assert_eq!(waiters, (0..1000).collect::<Vec<_>>());
        let stats = cache.stats(clock.now());
        assert_eq!((stats.fetches, stats.requests), (1, 1));
    }

    #[test]
    fn fresh_token_answers_from_memory() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        for _ in 0..100 {
            clock.advance(10.0);
            let (got, step) = cache.peek(clock.now());
            assert_eq!(got.unwrap().token, "a");
            assert!(step.is_none());
        }
        let (got, step) = get(&mut cache, &clock, false, 1);
        assert!(got.unwrap().fresh_for > Duration::ZERO && step.is_none());
        assert_eq!(cache.stats(clock.now()).fetches, 1);
    }

    #[test]
    fn inside_the_margin_answers_at_once_and_refreshes_in_the_background() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        clock.advance(3500.0);
        let (during, step) = cache.peek(clock.now());
        let during = during.unwrap();
        assert_eq!(during.token, "a");
        assert!(during.fresh_for.is_zero());
        // Callers during the refresh still get the old token at once; no second flight starts.
        let (again, none) = get(&mut cache, &clock, false, 1);
        assert_eq!(again.unwrap().token, "a");
        assert!(none.is_none());
        let (outcome, waiters) = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![token("b", 3600)],
            0.03,
        );
        assert_eq!(outcome.unwrap().token, "b");
        assert!(waiters.is_empty());
        assert_eq!(cache.peek(clock.now()).0.unwrap().token, "b");
        let stats = cache.stats(clock.now());
        assert_eq!((stats.fetches, stats.background_refreshes), (2, 1));
    }

    #[test]
    fn an_expired_token_is_never_returned() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 20);
        clock.advance(18.5); // 1.5 s left, inside the 2-s skew of a 20-s token
        assert!(cache.peek(clock.now()).0.is_none());
        let (got, step) = get(&mut cache, &clock, false, 1);
        assert!(got.is_none());
        let (outcome, _) = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![token("b", 20)],
            0.01,
        );
        assert_eq!(outcome.unwrap().token, "b");
    }

    #[test]
    fn suspended_time_counts() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        clock.suspend(3595.0);
        assert!(cache.peek(clock.now()).0.is_none());
        assert_eq!(cache.stats(clock.now()).expires_in, None);
    }

    #[test]
    fn a_failed_background_refresh_is_not_the_callers_problem() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        clock.advance(3500.0);
        let (got, step) = cache.peek(clock.now());
        assert_eq!(got.unwrap().token, "a");
        let (outcome, _) = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![Err(Error::Status(403))],
            0.01,
        );
        assert_eq!(outcome.unwrap_err().error, Error::Status(403));
        // Still served; the next refresh waits for its backoff (at least a second), then goes ahead.
        let (got, step) = cache.peek(clock.now());
        assert_eq!(got.unwrap().token, "a");
        assert!(step.is_none());
        assert_eq!(
            cache.stats(clock.now()).last_error,
            Some("ERR_METADATA_STATUS")
        );
        clock.advance(1.0);
        let (got, step) = cache.peek(clock.now());
        assert_eq!(got.unwrap().token, "a");
        let _ = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![token("b", 3600)],
            0.01,
        );
        assert_eq!(cache.peek(clock.now()).0.unwrap().token, "b");
        assert_eq!(cache.stats(clock.now()).fetches, 3);
    }

    #[test]
    fn background_backoff_grows_but_retries_before_expiry() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        clock.advance(3400.0);
        let mut gaps = Vec::new();
        let mut last = clock.now().mono;
        loop {
            let (got, step) = cache.peek(clock.now());
            if got.is_none() {
                break;
            }
            if let Some(step) = step {
                gaps.push((clock.now().mono - last).as_secs_f64());
                last = clock.now().mono;
                let _ = fly(
                    &mut cache,
                    &mut clock,
                    step,
                    &mut vec![Err(Error::Status(403))],
                    0.0,
                );
            }
            clock.advance(0.25);
        }
        // The gaps grow (jittered between half and all of 1, 2, 4 … 60 s) and the last refresh
        // came before the token ran out.
        assert!(gaps.len() >= 6, "{gaps:?}");
        assert!(gaps.iter().skip(1).all(|g| *g <= 60.25), "{gaps:?}");
        assert!(gaps[6] > gaps[1], "{gaps:?}");
    }

    #[test]
    fn the_same_near_expiry_token_does_not_cause_a_storm() {
        // The server keeps returning one token whose time runs out: each refresh brings it back
        // with what is left of it, so the refreshes over its last 240 s stay logarithmic.
        let mut clock = Clock::new();
        let expiry = clock.now().mono + Duration::from_secs(3600);
        let mut cache = filled(&mut clock, "a", 3600);
        let mut refreshes = 0;
        while clock.now().mono < expiry {
            if let (_, Some(step)) = cache.peek(clock.now()) {
                refreshes += 1;
                let left = (expiry - clock.now().mono).as_secs().max(1);
                let _ = fly(
                    &mut cache,
                    &mut clock,
                    step,
                    &mut vec![token("a", left)],
                    0.0,
                );
            }
            clock.advance(0.5);
        }
        assert!(refreshes <= 10, "{refreshes}");
    }

    #[test]
    fn force_refresh_bypasses_the_cache_but_not_the_flight() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        let (none, step) = get(&mut cache, &clock, true, 1);
        assert!(none.is_none());
        let (none, joined) = get(&mut cache, &clock, true, 2);
        assert!(none.is_none() && joined.is_none());
        let (outcome, waiters) = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![token("b", 3600)],
            0.02,
        );
        assert_eq!(outcome.unwrap().token, "b");
        assert_eq!(waiters, [1, 2]);
    }

    #[test]
    fn retries_within_one_flight_and_counts_them() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let script = vec![
            Err(Error::Unreachable("connection refused")),
            Err(Error::Status(503)),
            token("a", 60),
        ];
        let (outcome, _) = fetch(&mut cache, &mut clock, 1, script, 0.001);
        assert_eq!(outcome.unwrap().attempts, 3);
        let stats = cache.stats(clock.now());
        assert_eq!((stats.requests, stats.retries, stats.fetches), (3, 2, 1));
    }

    #[test]
    fn a_flight_never_runs_past_its_deadline() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let started = clock.now().mono;
        let timeouts = vec![Err(Error::Timeout); 5];
        let (outcome, _) = fetch(&mut cache, &mut clock, 1, timeouts, 1.0);
        assert_eq!(outcome.unwrap_err().error, Error::Timeout);
        assert!(clock.now().mono - started <= DEFAULT_DEADLINE + Duration::from_secs(1));
    }

    #[test]
    fn failures_reach_waiters_and_the_next_call_tries_again() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (outcome, waiters) = fetch(
            &mut cache,
            &mut clock,
            1,
            vec![Err(Error::NoServiceAccount)],
            0.001,
        );
        assert_eq!((outcome.unwrap_err().attempts, waiters), (1, vec![1]));
        let (outcome, _) = fetch(&mut cache, &mut clock, 2, vec![token("a", 60)], 0.001);
        assert_eq!(outcome.unwrap().token, "a");
    }

    #[test]
    fn an_abandoned_flight_fails_its_waiters_and_frees_the_flight() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (_, step) = get(&mut cache, &clock, false, 1);
        assert!(matches!(
            step,
            Some(Start {
                step: Step::Send { .. },
                ..
            })
        ));
        match cache.abandon(clock.now()) {
            Step::Done {
                outcome, waiters, ..
            } => {
                assert_eq!(outcome.unwrap_err().error, Error::Internal);
                assert_eq!(waiters, [1]);
            }
            other => panic!("{other:?}"),
        }
        assert!(!cache.in_flight());
        let (outcome, _) = fetch(&mut cache, &mut clock, 2, vec![token("a", 60)], 0.001);
        assert_eq!(outcome.unwrap().token, "a");
    }

    #[test]
    fn released_waiters_leave_the_flight_which_still_fills_the_cache() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (_, step) = get(&mut cache, &clock, false, 1);
        get(&mut cache, &clock, false, 2);
        assert_eq!(cache.release(|w| *w == 1), [1]);
        assert_eq!(cache.waiting(), 1);
        let (_, waiters) = fly(
            &mut cache,
            &mut clock,
            step.unwrap(),
            &mut vec![token("a", 60)],
            0.01,
        );
        assert_eq!(waiters, [2]);
        assert_eq!(cache.peek(clock.now()).0.unwrap().token, "a");
    }

    #[test]
    fn a_token_slower_than_its_life_is_a_bad_response() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (outcome, _) = fetch(&mut cache, &mut clock, 1, vec![token("a", 1)], 1.5);
        assert_eq!(
            outcome.unwrap_err().error.code(),
            "ERR_METADATA_BAD_RESPONSE"
        );
    }

    /// The reason of the flight `start` began.
    fn reason(start: &Option<Start<u32>>) -> Reason {
        start.as_ref().expect("a flight starts").reason
    }

    #[test]
    fn each_flight_says_why_it_started() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (_, first) = get(&mut cache, &clock, false, 1);
        assert_eq!(
            (reason(&first), first.as_ref().unwrap().flight),
            (Reason::First, 1)
        );
        let _ = fly(
            &mut cache,
            &mut clock,
            first.unwrap(),
            &mut vec![Err(Error::NoServiceAccount)],
            0.01,
        );
        let (_, retry) = get(&mut cache, &clock, false, 2);
        assert_eq!(
            (reason(&retry), retry.as_ref().unwrap().flight),
            (Reason::RetryAfterFailure, 2)
        );
        let _ = fly(
            &mut cache,
            &mut clock,
            retry.unwrap(),
            &mut vec![token("a", 3600)],
            0.01,
        );
        let (_, forced) = get(&mut cache, &clock, true, 3);
        assert_eq!(reason(&forced), Reason::Forced);
        let _ = fly(
            &mut cache,
            &mut clock,
            forced.unwrap(),
            &mut vec![token("a", 3600)],
            0.01,
        );
        clock.advance(3500.0);
        let (_, ahead) = cache.peek(clock.now());
        assert_eq!(reason(&ahead), Reason::RefreshAhead);
        let _ = fly(
            &mut cache,
            &mut clock,
            ahead.unwrap(),
            &mut vec![token("b", 3600)],
            0.01,
        );
        clock.advance(3600.0);
        let (_, expired) = get(&mut cache, &clock, false, 4);
        assert_eq!(reason(&expired), Reason::Expired);
        // The names are public API (README "Tracing and metrics"); the codes travel to wasm.
        let all = [
            Reason::First,
            Reason::Expired,
            Reason::RefreshAhead,
            Reason::Forced,
            Reason::RetryAfterFailure,
        ];
        let names: Vec<_> = all.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "first",
                "expired",
                "refresh-ahead",
                "forced",
                "retry-after-failure"
            ]
        );
        assert!(all.iter().all(|r| Reason::from_code(r.code()) == Some(*r)));
        assert_eq!(Reason::from_code(5), None);
    }

    #[test]
    fn a_report_says_how_a_flight_ended() {
        let mut clock = Clock::new();
        let mut cache = cache();
        let (_, start) = get(&mut cache, &clock, false, 1);
        let script = &mut vec![Err(Error::Status(503)), token("a", 3600)];
        let (_, waiters, report) =
            fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert_eq!(waiters, [1]);
        assert_eq!(
            (report.flight, report.reason, report.status),
            (1, Reason::First, Some(200))
        );
        assert!(!report.background && report.failures == 0 && report.expired.is_none());
        assert_eq!(report.held.unwrap().token, "a");

        // A refresh ahead that fails: nobody waited, and the token held is still served.
        clock.advance(3500.0);
        let (_, start) = cache.peek(clock.now());
        let script = &mut vec![Err(Error::Status(403))];
        let (outcome, waiters, report) =
            fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert!(outcome.is_err() && waiters.is_empty());
        assert_eq!(
            (report.reason, report.status, report.failures),
            (Reason::RefreshAhead, Some(403), 1)
        );
        assert!(report.background);
        let held = report.held.unwrap();
        assert_eq!((held.token.as_str(), held.failures), ("a", 1));
        // Calls now get it past its refresh point, and are told why.
        let (served, _) = cache.peek(clock.now());
        assert_eq!(served.unwrap().failures, 1);

        // Callers that join a refresh ahead make it a foreground flight; a transport failure has
        // no status.
        clock.advance(2.0);
        let (_, start) = cache.peek(clock.now());
        let (_, joined) = get(&mut cache, &clock, true, 7);
        assert!(joined.is_none());
        let script = &mut vec![Err(Error::BadResponse("x".into()))];
        let (_, waiters, report) =
            fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert_eq!(
            (waiters, report.background, report.failures),
            (vec![7], false, 2)
        );
        let script = &mut vec![Err(Error::Unreachable("connection refused")); 5];
        let (_, start) = get(&mut cache, &clock, true, 8);
        let (_, _, report) = fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert_eq!((report.status, report.failures), (None, 3));

        // A fresh token is not served stale, whatever failed before.
        let (_, start) = get(&mut cache, &clock, true, 9);
        let _ = fly(
            &mut cache,
            &mut clock,
            start.unwrap(),
            &mut vec![token("b", 3600)],
            0.01,
        );
        assert_eq!(cache.peek(clock.now()).0.unwrap().failures, 0);
    }

    #[test]
    fn a_token_that_expires_while_refreshes_fail_is_reported_once() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 3600);
        clock.advance(3500.0);
        let (_, start) = cache.peek(clock.now());
        let script = &mut vec![Err(Error::Status(503)); 5];
        let (_, _, report) = fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert!(report.expired.is_none(), "still usable");
        // It runs out with nobody asking; the first caller after finds it so.
        clock.advance(200.0);
        let (_, start) = get(&mut cache, &clock, false, 1);
        assert_eq!(reason(&start), Reason::Expired);
        let script = &mut vec![Err(Error::Status(503)); 5];
        let (_, _, report) = fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        let expired = report.expired.expect("reported with the flight under way");
        assert_eq!(
            (expired.token.as_str(), expired.failures, expired.last_error),
            ("a", 1, "ERR_METADATA_STATUS")
        );
        let (_, start) = get(&mut cache, &clock, false, 2);
        assert_eq!(reason(&start), Reason::RetryAfterFailure);
        let (_, _, report) = fly_reported(
            &mut cache,
            &mut clock,
            start.unwrap(),
            &mut vec![token("b", 60)],
            0.01,
        );
        assert!(report.expired.is_none(), "once per token");
    }

    #[test]
    fn a_refresh_that_fails_past_the_tokens_end_reports_it() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 20);
        clock.advance(15.0);
        let (_, start) = cache.peek(clock.now());
        // Each timeout takes 1 s: the token (usable until 18 s) runs out during the refresh.
        let script = &mut vec![Err(Error::Timeout); 5];
        let (_, _, report) = fly_reported(&mut cache, &mut clock, start.unwrap(), script, 1.0);
        assert!(report.held.is_none());
        assert_eq!(report.expired.unwrap().failures, 1);
    }

    #[test]
    fn a_caller_joining_a_failing_refresh_of_a_token_run_out_reports_it_with_that_refresh() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 20);
        clock.advance(15.0);
        let (_, start) = cache.peek(clock.now());
        let _ = fly(
            &mut cache,
            &mut clock,
            start.unwrap(),
            &mut vec![Err(Error::Status(403))],
            0.01,
        );
        clock.advance(1.5);
        let (_, retry) = cache.peek(clock.now());
        let retry = retry.expect("the refresh is tried again");
        clock.advance(2.0);
        let (_, joined) = get(&mut cache, &clock, false, 1);
        assert!(joined.is_none(), "joins the refresh under way");
        let (outcome, waiters, report) = fly_reported(
            &mut cache,
            &mut clock,
            retry,
            &mut vec![token("b", 20)],
            0.01,
        );
        assert_eq!(
            (outcome.unwrap().token, waiters),
            ("b".to_string(), vec![1])
        );
        assert_eq!(report.expired.unwrap().token, "a");
    }

    #[test]
    fn a_token_run_out_unnoticed_whose_fetch_fails_did_not_expire_while_failing() {
        let mut clock = Clock::new();
        let mut cache = filled(&mut clock, "a", 60);
        clock.advance(3600.0);
        let (_, start) = get(&mut cache, &clock, false, 1);
        assert_eq!(reason(&start), Reason::Expired);
        let script = &mut vec![Err(Error::Status(500)); 5];
        let (_, _, report) = fly_reported(&mut cache, &mut clock, start.unwrap(), script, 0.01);
        assert!(report.expired.is_none() && report.held.is_none());
    }

    #[test]
    fn deadlines_are_whole_milliseconds() {
        let t = Token {
            token: "a".into(),
            expires_in: Duration::from_micros(1_999_900),
            fresh_for: Duration::from_micros(900),
            at: Duration::from_micros(1_000_000_500),
            attempts: 0,
            failures: 0,
        };
        assert_eq!(t.deadlines_ms(), (1_002_000.0, 1_000_001.0));
    }
}
