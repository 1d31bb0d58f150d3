//! The native driver: runs the core's flights on one small tokio runtime (transport.rs does each
//! attempt), and keeps the default provider's cache shared by every thread of the process.

use super::transport::{self, Target};
use crate::cache::{Cache, Get, Outcome, Reason, Report, Stamp, Start, Stats, Step, Token};
use crate::config::{self, Settings};
use crate::error::Error;
use crate::fetch;
use crate::retry::Policy;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Instant, SystemTime};

/// The runtime, started on the first fetch: loading the addon or answering from the cache starts
/// no thread. One thread drives every fetch of the process (they are a few idle sockets), which
/// suits one-vCPU containers; its tasks never keep Node's event loop alive. Name lookups run on
/// threads of their own (transport.rs), so the runtime needs no blocking pool.
pub(super) fn runtime() -> tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the tokio runtime must start");
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("yc-metadata-token".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .expect("the runtime thread must start");
            handle
        })
        .clone()
}

/// The origin of the monotonic readings the core gets.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

pub(super) fn now() -> Stamp {
    Stamp {
        mono: origin().elapsed(),
        wall: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    }
}

/// A caller waiting for a flight: which JavaScript object asked (for `release`), and how to answer
/// it (`None`: released, its callers gave up). The flight's report comes along for the object
/// that started the flight.
pub struct Waiter {
    pub owner: usize,
    pub answer: Box<dyn FnOnce(Answer) + Send>,
}

pub type Answer = Option<(Outcome, Option<Box<Report>>)>;

/// Hands the end of a flight to the JavaScript thread that started it, when no caller of that
/// thread waits for it (a background refresh, or callers that all gave up).
pub type Observer = Arc<dyn Fn(Outcome, Box<Report>) + Send + Sync>;

/// The JavaScript object that started a flight. Its observer is looked up when the flight ends,
/// so one set while the flight starts (index.js does so as it learns of the start) is used.
pub struct Starter {
    pub owner: usize,
    pub observer: Arc<OnceLock<Observer>>,
}

pub struct Provider {
    cache: Mutex<Cache<Waiter>>,
    /// For error messages.
    url: String,
    target: Target,
}

impl Provider {
    /// A cache of its own for a `new TokenProvider()`; for the default provider, the one cache the
    /// whole process (every worker thread) shares for these settings.
    pub fn new(settings: &Settings, shared: bool) -> Result<Arc<Provider>, Error> {
        if !shared {
            return Provider::unshared(settings);
        }
        static SHARED: Mutex<Vec<(Settings, Arc<Provider>)>> = Mutex::new(Vec::new());
        let mut providers = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, provider)) = providers.iter().find(|(s, _)| s == settings) {
            return Ok(Arc::clone(provider));
        }
        let provider = Provider::unshared(settings)?;
        providers.push((settings.clone(), Arc::clone(&provider)));
        Ok(provider)
    }

    fn unshared(settings: &Settings) -> Result<Arc<Provider>, Error> {
        let (host, port) = settings.host_and_port();
        let request = fetch::request_head(&settings.host, config::TOKEN_PATH).into_bytes();
        let policy = Policy::of(settings);
        let cache = Cache::new(policy, settings.refresh_margin, seed());
        Ok(Arc::new(Provider {
            cache: Mutex::new(cache),
            url: settings.url(),
            target: Target::new(host, port, request),
        }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn address(&self) -> (&str, u16) {
        self.target.address()
    }

    /// The cached token if it is usable now; inside the refresh margin this starts a background
    /// refresh, whose first step is the caller's to `run`.
    pub fn peek(&self) -> (Option<Token>, Option<Start<Waiter>>) {
        self.lock().peek(now())
    }

    /// Answers `waiter` from memory unless `force`, else when the flight ends; a flight started
    /// for it is under way on return.
    pub fn get(
        self: &Arc<Self>,
        force: bool,
        waiter: Waiter,
        starter: Starter,
    ) -> Option<(u64, Reason)> {
        let (got, start) = self.lock().get(now(), force, waiter);
        let started = start.map(|start| {
            self.run(start.step, starter);
            (start.flight, start.reason)
        });
        if let Get::Ready(token, waiter) = got {
            (waiter.answer)(Some((Ok(token), None)));
        }
        started
    }

    /// Takes `owner`'s waiters out of the flight under way and answers them as released; the
    /// flight goes on to fill the cache.
    pub fn release(&self, owner: usize) {
        let gone = self.lock().release(|w| w.owner == owner);
        for waiter in gone {
            (waiter.answer)(None);
        }
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats(now())
    }

    fn lock(&self) -> MutexGuard<'_, Cache<Waiter>> {
        // A panic elsewhere never leaves the cache half-written (each update is a plain
        // assignment), so a poisoned lock is safe to keep using.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a flight from its first step on the runtime.
    pub fn run(self: &Arc<Self>, step: Step<Waiter>, starter: Starter) {
        if let Step::Done { .. } = step {
            return deliver(step, &starter);
        }
        // Starting the runtime can fail (no thread allowed in a tight container). The flight must
        // still end, or every later caller would wait on it forever.
        let runtime = match std::panic::catch_unwind(runtime) {
            Ok(runtime) => runtime,
            Err(_) => return deliver(self.lock().abandon(now()), &starter),
        };
        let provider = Arc::clone(self);
        runtime.spawn(async move {
            // The flight runs as a task of its own so that a panic in it ends as an error for
            // the waiters instead of leaving them waiting forever.
            let flying = Arc::clone(&provider);
            match tokio::spawn(flying.fly(step)).await {
                Ok(done) => deliver(done, &starter),
                Err(_) => deliver(provider.lock().abandon(now()), &starter),
            }
        });
    }

    /// Runs a flight to its end, which it returns.
    async fn fly(self: Arc<Self>, mut step: Step<Waiter>) -> Step<Waiter> {
        loop {
            step = match step {
                Step::Send { timeout } => {
                    let (result, status) = transport::attempt(&self.target, timeout).await;
                    self.lock().attempt_ended(now(), result, status)
                }
                Step::SleepUntil(at) => {
                    let wait = at.saturating_sub(now().mono);
                    tokio::time::sleep(wait).await;
                    self.lock().wake(now())
                }
                Step::Done { .. } => return step,
            }
        }
    }
}

/// Hands a finished flight's outcome to its waiters, outside the lock, and its report to the
/// object that started it: with that object's own answer if it waits, else to its observer.
fn deliver(step: Step<Waiter>, starter: &Starter) {
    let Step::Done {
        outcome,
        waiters,
        mut report,
    } = step
    else {
        return;
    };
    if !waiters.iter().any(|w| w.owner == starter.owner) {
        if let (Some(report), Some(observer)) = (report.take(), starter.observer.get()) {
            observer(outcome.clone(), report);
        }
    }
    for waiter in waiters {
        let report = if waiter.owner == starter.owner {
            report.take()
        } else {
            None
        };
        (waiter.answer)(Some((outcome.clone(), report)));
    }
}

/// Jitter's seed: std's per-instance random hash keys are random enough and spare a dependency.
pub(super) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
