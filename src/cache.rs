//! The token cache: freshness, single flight, refresh ahead of expiry in the background, and
//! static stability (a failed refresh never reaches callers while the cached token is valid).
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
use crate::retry::{random_fraction, Backoff};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

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

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where tokens come from: one upstream fetch, retries included, with the number of requests made.
pub trait Upstream: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<(Result<Fetched, Error>, u32)>;
}

/// A reading of both clocks. The monotonic clock stops while a VM is suspended; the wall clock
/// does not, but can be stepped back. The time between two stamps is the larger of the two
/// readings, so a frozen container or a suspended VM never makes a token look younger than it is.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub fn since(&self, earlier: &Stamp) -> Duration {
        let mono = self.mono.saturating_duration_since(earlier.mono);
        let wall = self.wall.duration_since(earlier.wall).unwrap_or_default();
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
    pub at: SystemTime,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: Error,
    pub attempts: u32,
}

pub type Waiter = Box<dyn FnOnce(Result<Token, Failure>) + Send>;

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
        MAX_EXPIRY_SKEW.min(self.lifetime / EXPIRY_SKEW_DIVISOR)
    }

    fn margin(&self, configured: Duration) -> Duration {
        configured
            .min(self.lifetime / REFRESH_MARGIN_DIVISOR)
            .max(self.skew())
    }
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    /// `Some` while a fetch is under way: the callers waiting for it.
    flight: Option<Vec<Waiter>>,
    /// The earliest moment for the next background refresh, after a fetch or a failure.
    refresh_not_before: Option<Instant>,
    refresh_failures: u32,
    stats: Stats,
}

pub struct Cache {
    upstream: Box<dyn Upstream>,
    refresh_margin: Duration,
    /// Where fetches run; a function so the runtime starts only when the first fetch does.
    runtime: fn() -> tokio::runtime::Handle,
    state: Mutex<State>,
}

enum Lookup {
    Ready(Token),
    /// Ready, and the caller that saw it is to start a background refresh.
    ReadyRefresh(Token),
    Missing,
}

impl Cache {
    pub fn new(
        upstream: Box<dyn Upstream>,
        refresh_margin: Duration,
        runtime: fn() -> tokio::runtime::Handle,
    ) -> Arc<Cache> {
        Arc::new(Cache {
            upstream,
            refresh_margin,
            runtime,
            state: Mutex::default(),
        })
    }

    /// The cached token if it can be used now, without waiting; inside the refresh margin this
    /// also starts a background refresh.
    pub fn peek(self: &Arc<Self>) -> Option<Token> {
        let now = Stamp::now();
        let mut state = self.lock();
        match self.lookup(&mut state, &now) {
            Lookup::Ready(token) => Some(token),
            Lookup::ReadyRefresh(token) => {
                drop(state);
                self.start_flight(now);
                Some(token)
            }
            Lookup::Missing => None,
        }
    }

    /// Hands `waiter` a token: at once from memory unless `force`, else when the fetch under way
    /// (or one started now) ends. All callers waiting at the same time share one fetch.
    pub fn get(self: &Arc<Self>, force: bool, waiter: Waiter) {
        let now = Stamp::now();
        let mut state = self.lock();
        if !force {
            match self.lookup(&mut state, &now) {
                Lookup::Ready(token) => {
                    drop(state);
                    return waiter(Ok(token));
                }
                Lookup::ReadyRefresh(token) => {
                    drop(state);
                    self.start_flight(now);
                    return waiter(Ok(token));
                }
                Lookup::Missing => {}
            }
        }
        match &mut state.flight {
            Some(waiters) => waiters.push(waiter),
            None => {
                state.flight = Some(vec![waiter]);
                drop(state);
                self.start_flight(now);
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let now = Stamp::now();
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.expires_in = state
            .held
            .as_ref()
            .and_then(|h| self.view(h, &now))
            .map(|t| t.expires_in);
        stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere never leaves State half-written (each update is a plain assignment),
        // so a poisoned lock is safe to keep using.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A token from memory if one is usable now. Marks the flight as taken when the caller is to
    /// start a background refresh.
    fn lookup(&self, state: &mut State, now: &Stamp) -> Lookup {
        let Some(token) = state.held.as_ref().and_then(|held| self.view(held, now)) else {
            return Lookup::Missing;
        };
        let due = token.fresh_for.is_zero()
            && state.flight.is_none()
            && state.refresh_not_before.is_none_or(|t| now.mono >= t);
        if !due {
            return Lookup::Ready(token);
        }
        state.flight = Some(Vec::new());
        state.stats.background_refreshes += 1;
        Lookup::ReadyRefresh(token)
    }

    /// The held token as seen `now`, or `None` once it is within its expiry skew.
    fn view(&self, held: &Held, now: &Stamp) -> Option<Token> {
        let token = self.token_at(held, now, 0);
        (token.expires_in > held.skew()).then_some(token)
    }

    /// The held token as seen `now`, whatever is left of it.
    fn token_at(&self, held: &Held, now: &Stamp, attempts: u32) -> Token {
        let remaining = held.remaining(now);
        Token {
            token: held.token.clone(),
            expires_in: remaining,
            fresh_for: remaining.saturating_sub(held.margin(self.refresh_margin)),
            at: now.wall,
            attempts,
        }
    }

    /// Runs one fetch on the runtime. The flight must already be marked taken in the state.
    fn start_flight(self: &Arc<Self>, sent: Stamp) {
        let cache = Arc::clone(self);
        let fetch = self.upstream.fetch();
        self.lock().stats.fetches += 1;
        // Starting the runtime can fail (no thread allowed in a tight container). The flight must
        // still end, or every later caller would wait on it forever.
        let runtime = match std::panic::catch_unwind(self.runtime) {
            Ok(runtime) => runtime,
            Err(_) => return self.finish(sent, (Err(Error::Internal), 0)),
        };
        runtime.spawn(async move {
            // The fetch runs as a task of its own so that a panic in it ends as an error for the
            // waiters instead of leaving them waiting forever.
            let outcome = match tokio::spawn(fetch).await {
                Ok(outcome) => outcome,
                Err(_) => (Err(Error::Internal), 1),
            };
            cache.finish(sent, outcome);
        });
    }

    fn finish(&self, sent: Stamp, (result, attempts): (Result<Fetched, Error>, u32)) {
        let now = Stamp::now();
        let mut state = self.lock();
        state.stats.requests += u64::from(attempts);
        state.stats.retries += u64::from(attempts.saturating_sub(1));
        let result = match result {
            Ok(fetched) => {
                let held = Held {
                    token: fetched.token,
                    lifetime: fetched.expires_in,
                    sent,
                };
                state.refresh_failures = 0;
                state.refresh_not_before = Some(now.mono + BACKGROUND_MIN_INTERVAL);
                // Waiters take the token even inside its skew: it is not expired, and a fetch
                // slower than a tenth of the token's life will not go faster when repeated.
                let token = self.token_at(&held, &now, attempts);
                state.held = Some(held);
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
                state.stats.failures += 1;
                state.stats.last_error = Some(error.code());
                state.refresh_failures += 1;
                let backoff = BACKGROUND_BACKOFF.ceiling(state.refresh_failures);
                let jittered = backoff.mul_f64(0.5 + random_fraction() / 2.0);
                // Try again before the cached token runs out, however far the backoff has grown.
                let usable = state.held.as_ref().map_or(Duration::ZERO, |h| {
                    h.remaining(&now).saturating_sub(h.skew())
                });
                let wait = jittered.min(usable / 2).max(BACKGROUND_MIN_INTERVAL);
                state.refresh_not_before = Some(now.mono + wait);
                Err(Failure { error, attempts })
            }
        };
        if result.is_err() && !matches!(state.held, Some(ref h) if h.remaining(&now) > h.skew()) {
            // Nothing usable is held: drop the expired token rather than keep it around.
            state.held = None;
        }
        let waiters = state.flight.take().unwrap_or_default();
        drop(state);
        for waiter in waiters {
            waiter(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::oneshot;

    /// Plays back scripted outcomes, each after an optional delay, and counts the fetches.
    struct Script {
        outcomes: Mutex<VecDeque<(Duration, Result<Fetched, Error>)>>,
        fetches: Arc<AtomicU32>,
    }

    impl Upstream for Script {
        fn fetch(&self) -> BoxFuture<(Result<Fetched, Error>, u32)> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let next = self.outcomes.lock().unwrap().pop_front();
            Box::pin(async move {
                let (delay, result) = next.expect("the script ran out of outcomes");
                tokio::time::sleep(delay).await;
                if let Err(Error::Internal) = result {
                    panic!("scripted panic");
                }
                (result, 1)
            })
        }
    }

    fn token(name: &str, secs: u64) -> Result<Fetched, Error> {
        Ok(Fetched {
            token: name.into(),
            expires_in: Duration::from_secs(secs),
        })
    }

    fn cache(
        margin_secs: u64,
        script: Vec<(u64, Result<Fetched, Error>)>,
    ) -> (Arc<Cache>, Arc<AtomicU32>) {
        let fetches = Arc::new(AtomicU32::new(0));
        let outcomes = script
            .into_iter()
            .map(|(ms, r)| (Duration::from_millis(ms), r))
            .collect();
        let upstream = Script {
            outcomes: Mutex::new(outcomes),
            fetches: fetches.clone(),
        };
        let cache = Cache::new(
            Box::new(upstream),
            Duration::from_secs(margin_secs),
            tokio::runtime::Handle::current,
        );
        (cache, fetches)
    }

    /// Calls `get` now; the future resolves with what its waiter was handed.
    fn get(
        cache: &Arc<Cache>,
        force: bool,
    ) -> impl Future<Output = Result<Token, Failure>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        cache.get(force, Box::new(move |r| drop(tx.send(r))));
        async move { rx.await.unwrap() }
    }

    /// Pretends the held token was fetched `secs` ago.
    fn age(cache: &Cache, secs: f64) {
        let mut state = cache.lock();
        let held = state.held.as_mut().unwrap();
        let by = Duration::from_secs_f64(secs);
        held.sent = Stamp {
            mono: held.sent.mono - by,
            wall: held.sent.wall - by,
        };
        state.refresh_not_before = None;
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[test]
    fn clocks_take_the_larger_reading() {
        let a = Stamp::now();
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
            sent: Stamp::now(),
        };
        let margin = Duration::from_secs(240);
        assert_eq!(held(43_200).margin(margin), margin);
        assert_eq!(held(43_200).skew(), MAX_EXPIRY_SKEW);
        assert_eq!(held(2).margin(margin), Duration::from_secs(1));
        assert_eq!(held(2).skew(), Duration::from_millis(200));
        assert_eq!(held(2).margin(Duration::ZERO), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let (cache, fetches) = cache(240, vec![(20, token("a", 3600))]);
        let calls: Vec<_> = (0..1000).map(|_| get(&cache, false)).collect();
        let results = futures_join(calls).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|r| r.as_ref().unwrap().token == "a"));
        assert_eq!(cache.stats().requests, 1);
    }

    #[tokio::test]
    async fn fresh_token_answers_from_memory() {
        let (cache, fetches) = cache(240, vec![(0, token("a", 3600))]);
        let first = get(&cache, false).await.unwrap();
        assert_eq!(first.expires_in.as_secs_f64().ceil() as u64, 3600);
        for _ in 0..100 {
            assert_eq!(cache.peek().unwrap().token, "a");
        }
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn inside_the_margin_answers_at_once_and_refreshes_in_the_background() {
        let (cache, fetches) = cache(240, vec![(0, token("a", 3600)), (30, token("b", 3600))]);
        get(&cache, false).await.unwrap();
        age(&cache, 3500.0);
        let during = cache.peek().unwrap();
        assert_eq!(during.token, "a");
        assert!(during.fresh_for.is_zero());
        // Callers during the refresh still get the old token at once; no second fetch starts.
        assert_eq!(get(&cache, false).await.unwrap().token, "a");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.peek().unwrap().token, "b");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().background_refreshes, 1);
    }

    #[tokio::test]
    async fn an_expired_token_is_never_returned() {
        let (cache, fetches) = cache(240, vec![(0, token("a", 20)), (10, token("b", 20))]);
        get(&cache, false).await.unwrap();
        age(&cache, 18.5); // 1.5 s left, inside the 2-s skew of a 20-s token
        assert!(cache.peek().is_none());
        assert_eq!(get(&cache, false).await.unwrap().token, "b");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_background_refresh_is_not_the_callers_problem() {
        let (cache, fetches) = cache(
            240,
            vec![
                (0, token("a", 3600)),
                (0, Err(Error::Status(503))),
                (0, token("b", 3600)),
            ],
        );
        get(&cache, false).await.unwrap();
        age(&cache, 3500.0);
        assert_eq!(cache.peek().unwrap().token, "a");
        settle().await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Still served; the next refresh waits for its backoff, then goes ahead.
        assert_eq!(get(&cache, false).await.unwrap().token, "a");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats().last_error, Some("ERR_METADATA_STATUS"));
        cache.lock().refresh_not_before = None;
        cache.peek().unwrap();
        settle().await;
        assert_eq!(cache.peek().unwrap().token, "b");
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_same_near_expiry_token_does_not_cause_a_storm() {
        // The server keeps returning one token whose time runs out; each refresh halves the
        // margin, so the number of refreshes over the token's last 240 s stays logarithmic.
        let mut script = vec![(0, token("a", 3600))];
        script.extend((0..40).map(|_| (0, token("a", 1))));
        let (cache, fetches) = cache(240, script);
        get(&cache, false).await.unwrap();
        let mut left = 240.0f64;
        let mut refreshes = 0;
        while left > 1.0 {
            {
                let mut state = cache.lock();
                let held = state.held.as_mut().unwrap();
                held.lifetime = Duration::from_secs_f64(left);
                held.sent = Stamp::now();
                state.refresh_not_before = None;
            }
            if cache.peek().is_some_and(|t| t.fresh_for.is_zero()) {
                refreshes += 1;
            }
            left /= 2.0; // a refresh answered with the same token, now half as far from expiry
        }
        assert!(refreshes <= 9, "{refreshes}");
        settle().await;
        assert!(fetches.load(Ordering::SeqCst) <= 10);
    }

    #[tokio::test]
    async fn force_refresh_bypasses_the_cache_but_not_the_flight() {
        let (cache, fetches) = cache(240, vec![(0, token("a", 3600)), (20, token("b", 3600))]);
        get(&cache, false).await.unwrap();
        let both = futures_join(vec![get(&cache, true), get(&cache, true)]).await;
        assert!(both.iter().all(|r| r.as_ref().unwrap().token == "b"));
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_reach_waiters_and_the_next_call_tries_again() {
        let (cache, fetches) = cache(
            240,
            vec![(0, Err(Error::NoServiceAccount)), (0, token("a", 60))],
        );
        let err = get(&cache, false).await.unwrap_err();
        assert_eq!(err.error, Error::NoServiceAccount);
        assert_eq!(get(&cache, false).await.unwrap().token, "a");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panic_becomes_an_internal_error() {
        let (cache, _) = cache(240, vec![(0, Err(Error::Internal)), (0, token("a", 60))]);
        assert_eq!(get(&cache, false).await.unwrap_err().error, Error::Internal);
        assert_eq!(get(&cache, false).await.unwrap().token, "a");
    }

    #[tokio::test]
    async fn a_runtime_that_cannot_start_fails_the_flight_instead_of_leaving_it_open() {
        static STARTS: AtomicU32 = AtomicU32::new(0);
        fn flaky_runtime() -> tokio::runtime::Handle {
            if STARTS.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("no thread for the runtime");
            }
            tokio::runtime::Handle::current()
        }
        // The first outcome is taken by the flight that never runs.
        let outcomes = [
            (Duration::ZERO, token("never", 60)),
            (Duration::ZERO, token("a", 60)),
        ];
        let upstream = Script {
            outcomes: Mutex::new(outcomes.into()),
            fetches: Arc::default(),
        };
        let cache = Cache::new(Box::new(upstream), Duration::from_secs(240), flaky_runtime);
        assert_eq!(get(&cache, false).await.unwrap_err().error, Error::Internal);
        assert!(cache.lock().flight.is_none());
        assert_eq!(get(&cache, false).await.unwrap().token, "a");
    }

    async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
