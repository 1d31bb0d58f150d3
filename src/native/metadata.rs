//! The native driver's side of isAvailable() and getMetadata(): each attempt on a connection of
//! its own (transport::exchange_alone) on the runtime thread the token's fetches use, the core
//! (probe.rs, metadata.rs) deciding everything. Probes and reads are shared by every thread of
//! the process, one per set of settings, as the default provider's cache is.

use super::driver::{now, runtime, seed};
use super::transport::{self, Failed, Target};
use crate::cache::Failure;
use crate::config::{Environment, OptionValue, Settings};
use crate::error;
use crate::fetch;
use crate::metadata::{self, Got, Reads, Value};
use crate::probe::{self, Asked, Attempt, Probe};
use crate::retry::Policy;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How a read ended, in the core's terms (napi's prelude has a `Result` of its own).
type ReadOutcome = std::result::Result<Value, Failure>;

/// A getMetadata outcome: `value` (JSON text when `json`) on success, `code` and `message` on
/// failure.
#[napi(object)]
pub struct MetadataOutcome {
    pub value: Option<String>,
    pub json: bool,
    pub code: Option<String>,
    pub message: Option<String>,
    pub status: Option<u32>,
    pub attempts: u32,
}

/// A promise of whether a metadata service answers at the address the options and environment
/// name. Throws an `Error` with `code` `ERR_INVALID_OPTION` for options it cannot use.
#[napi(ts_return_type = "Promise<boolean>", catch_unwind)]
#[cfg_attr(test, allow(dead_code))] // called from JavaScript only
pub fn is_available<'env>(
    env: &'env Env,
    options: Unknown,
    yc_metadata_addr: Option<String>,
    gce_metadata_host: Option<String>,
) -> Result<Object<'env>, String> {
    let options = super::option_pairs(options).map_err(invalid)?;
    let environment = Environment {
        yc_metadata_addr,
        gce_metadata_host,
    };
    let settings = probe::probe_settings(&options, &environment).map_err(invalid)?;
    let (deferred, promise) = env.create_deferred().map_err(napi_failure)?;
    let answer = move |available: Option<bool>| {
        deferred.resolve(move |_| match available {
            Some(available) => Ok(available),
            None => Err(napi::Error::from_reason("the probe was lost")),
        })
    };
    Prober::of(&settings).ask(settings.timeout, Box::new(answer));
    Ok(promise)
}

/// A promise of the `MetadataOutcome` of reading `key`. Throws an `Error` with `code`
/// `ERR_INVALID_OPTION` for a key or options it cannot use; nothing is sent then.
#[napi(ts_return_type = "Promise<MetadataOutcome>", catch_unwind)]
#[cfg_attr(test, allow(dead_code))] // called from JavaScript only
pub fn read_metadata<'env>(
    env: &'env Env,
    key: Unknown,
    options: Unknown,
    yc_metadata_addr: Option<String>,
    gce_metadata_host: Option<String>,
) -> Result<Object<'env>, String> {
    let key = match key.get_type().map_err(napi_failure)? {
        ValueType::String => {
            OptionValue::Text(unsafe { key.cast::<String>() }.map_err(napi_failure)?)
        }
        other => OptionValue::Other(super::type_name(other)),
    };
    let options = super::option_pairs(options).map_err(invalid)?;
    let environment = Environment {
        yc_metadata_addr,
        gce_metadata_host,
    };
    let (settings, read) = metadata::read_request(&key, &options, &environment).map_err(invalid)?;
    let (deferred, promise) = env.create_deferred().map_err(napi_failure)?;
    let url = settings.url_of(&read.path);
    let answer =
        move |outcome: ReadOutcome| deferred.resolve(move |_| Ok(metadata_outcome(outcome, &url)));
    Reader::of(&settings).get(&read, Policy::of(&settings), Box::new(answer));
    Ok(promise)
}

fn invalid(e: error::Error) -> napi::Error<String> {
    napi::Error::new(e.code().to_string(), e.describe("", 0))
}

fn napi_failure(e: napi::Error) -> napi::Error<String> {
    napi::Error::new(e.status.as_ref().to_string(), e.reason.clone())
}

fn metadata_outcome(outcome: ReadOutcome, url: &str) -> MetadataOutcome {
    match outcome {
        Ok(value) => MetadataOutcome {
            value: Some(value.text),
            json: value.json,
            code: None,
            message: None,
            status: None,
            attempts: 0,
        },
        Err(f) => MetadataOutcome {
            value: None,
            json: false,
            code: Some(f.error.code().to_string()),
            message: Some(f.error.describe(url, f.attempts)),
            status: f.error.status().map(u32::from),
            attempts: f.attempts,
        },
    }
}

/// The one of each per address in the process (`settings.host`): found by it, made at first use.
fn shared<T>(
    all: &Mutex<Vec<(String, Arc<T>)>>,
    settings: &Settings,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    let mut all = lock(all);
    if let Some((_, found)) = all.iter().find(|(host, _)| *host == settings.host) {
        return Arc::clone(found);
    }
    let made = Arc::new(make());
    all.push((settings.host.clone(), Arc::clone(&made)));
    made
}

/// A panic elsewhere never leaves the core's state half-written (each update is a plain
/// assignment), so a poisoned lock is safe to keep using.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where an attempt goes: the settings' address, with the core's request for `path`.
fn target(settings: &Settings, path: &str) -> Target {
    let (host, port) = settings.host_and_port();
    Target::new(
        host,
        port,
        fetch::request_head(&settings.host, path).into_bytes(),
    )
}

// ---- isAvailable ---------------------------------------------------------------------------------

/// Told the answer, or None when the probe was lost (a panic).
type ProbeWaiter = Box<dyn FnOnce(Option<bool>) + Send>;

struct Prober {
    probe: Mutex<Probe<ProbeWaiter>>,
    target: Target,
}

impl Prober {
    fn of(settings: &Settings) -> Arc<Prober> {
        static PROBERS: Mutex<Vec<(String, Arc<Prober>)>> = Mutex::new(Vec::new());
        shared(&PROBERS, settings, || Prober {
            probe: Mutex::new(Probe::default()),
            target: target(settings, probe::PROBE_PATH),
        })
    }

    /// `timeout`: the whole probe's, if this caller starts one.
    fn ask(self: Arc<Self>, timeout: Duration, waiter: ProbeWaiter) {
        let (asked, step) = lock(&self.probe).ask(now(), timeout, waiter);
        if let Asked::Known(available, waiter) = asked {
            return waiter(Some(available));
        }
        let Some(step) = step else { return };
        // Starting the runtime can fail (no thread allowed in a tight container): the waiters
        // must still be answered.
        let runtime = match std::panic::catch_unwind(runtime) {
            Ok(runtime) => runtime,
            Err(_) => return self.lost(),
        };
        runtime.spawn(async move {
            let flying = Arc::clone(&self);
            if tokio::spawn(flying.fly(step)).await.is_err() {
                self.lost();
            }
        });
    }

    async fn fly(self: Arc<Self>, mut step: probe::Step<ProbeWaiter>) {
        loop {
            step = match step {
                probe::Step::Send { timeout } => {
                    let answer = probe::new_answer();
                    let attempt = match transport::exchange_alone(
                        &self.target,
                        timeout,
                        answer,
                        probe::read_head,
                    )
                    .await
                    {
                        Ok(attempt) => attempt,
                        Err(Failed::TimedOut) => Attempt::TimedOut,
                        Err(Failed::Transport(failure)) => Attempt::Failed(failure),
                    };
                    lock(&self.probe).attempt_ended(now(), attempt)
                }
                probe::Step::Done { available, waiters } => {
                    for waiter in waiters {
                        waiter(Some(available));
                    }
                    return;
                }
            }
        }
    }

    fn lost(&self) {
        let waiters = lock(&self.probe).abandon();
        for waiter in waiters {
            waiter(None);
        }
    }
}

// ---- getMetadata ---------------------------------------------------------------------------------

type ReadWaiter = Box<dyn FnOnce(ReadOutcome) + Send>;

struct Reader {
    reads: Mutex<Reads<ReadWaiter>>,
    /// The settings of the call that made it: only their address is used.
    settings: Settings,
}

impl Reader {
    fn of(settings: &Settings) -> Arc<Reader> {
        static READERS: Mutex<Vec<(String, Arc<Reader>)>> = Mutex::new(Vec::new());
        shared(&READERS, settings, || Reader {
            reads: Mutex::new(Reads::new(seed())),
            settings: settings.clone(),
        })
    }

    fn get(self: Arc<Self>, read: &metadata::Read, policy: Policy, waiter: ReadWaiter) {
        let (got, step) = lock(&self.reads).get(now().mono, read, policy, waiter);
        if let Got::Remembered(value, waiter) = got {
            return waiter(Ok(value));
        }
        let Some(step) = step else { return };
        let flight = match step {
            metadata::Step::Send { flight, .. } | metadata::Step::SleepUntil { flight, .. } => {
                flight
            }
            metadata::Step::Done { .. } => return deliver(step),
        };
        let runtime = match std::panic::catch_unwind(runtime) {
            Ok(runtime) => runtime,
            Err(_) => {
                let lost = lock(&self.reads).abandon(flight);
                return deliver(lost);
            }
        };
        runtime.spawn(async move {
            let flying = Arc::clone(&self);
            if tokio::spawn(flying.fly(step)).await.is_err() {
                let lost = lock(&self.reads).abandon(flight);
                deliver(lost);
            }
        });
    }

    async fn fly(self: Arc<Self>, mut step: metadata::Step<ReadWaiter>) {
        loop {
            step = match step {
                metadata::Step::Send { flight, timeout } => {
                    let path = lock(&self.reads).path(flight).map(String::from);
                    let result = match path {
                        Some(path) => {
                            let target = target(&self.settings, &path);
                            let answer = metadata::new_answer();
                            transport::exchange_alone(
                                &target,
                                timeout,
                                answer,
                                metadata::read_answer,
                            )
                            .await
                            .unwrap_or_else(|failed| Err(failure(failed)))
                        }
                        None => Err(error::Error::Internal),
                    };
                    lock(&self.reads).attempt_ended(now().mono, flight, result)
                }
                metadata::Step::SleepUntil { flight, at } => {
                    tokio::time::sleep(at.saturating_sub(now().mono)).await;
                    lock(&self.reads).wake(now().mono, flight)
                }
                metadata::Step::Done { .. } => return deliver(step),
            }
        }
    }
}

fn failure(failed: Failed) -> error::Error {
    match failed {
        Failed::TimedOut => error::Error::Timeout,
        Failed::Transport(kind) => fetch::transport_error(kind),
    }
}

/// Hands a finished read's outcome to its waiters, outside the lock.
fn deliver(step: metadata::Step<ReadWaiter>) {
    if let metadata::Step::Done {
        outcome, waiters, ..
    } = step
    {
        for waiter in waiters {
            waiter(outcome.clone());
        }
    }
}
