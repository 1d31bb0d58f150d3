//! The native driver's N-API surface, and only that: JavaScript values in, driver calls,
//! JavaScript values out. The JavaScript side (index.js) turns failures into `Error`s with their
//! `code`; wasm-driver.js offers the same surface over the wasm module.
//!
//! Every method catches panics (`catch_unwind`): a panic crossing the N-API boundary aborts Node;
//! caught, it is thrown as a JavaScript error that index.js reports as `ERR_METADATA_INTERNAL`.

mod driver;
mod metadata;
mod transport;

use crate::cache::{Outcome as CoreOutcome, Report, Token};
use crate::config::{self, Environment, OptionValue};
use crate::error;
use driver::{Answer, Observer, Provider, Starter, Waiter};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// A token as JavaScript gets it. Times are wall-clock milliseconds since the epoch, the scale of
/// `Date.now()`, so they stay right however late JavaScript reads them.
#[napi(object)]
pub struct Snapshot {
    pub token: String,
    pub expires_at_ms: f64,
    pub fresh_until_ms: f64,
    /// Fetches failed in a row while it is past its refresh point (`cache::Token::failures`).
    pub failures: u32,
}

/// The result of a fetch: `token` and times on success, `code` and `message` on failure, only
/// `released` for a caller taken out of the flight by `release()`. `report` comes to the object
/// that started the flight (`cache::Report`).
#[napi(object)]
pub struct Outcome {
    pub released: bool,
    pub token: Option<String>,
    pub expires_at_ms: Option<f64>,
    pub fresh_until_ms: Option<f64>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub status: Option<u32>,
    pub attempts: u32,
    pub report: Option<FlightReport>,
}

/// `cache::Report` as JavaScript gets it.
#[napi(object)]
pub struct FlightReport {
    pub flight: f64,
    pub reason: String,
    pub background: bool,
    pub status: Option<u32>,
    pub failures: u32,
    pub held: Option<Snapshot>,
    pub expired: Option<ExpiredToken>,
}

/// `cache::Expired` as JavaScript gets it.
#[napi(object)]
pub struct ExpiredToken {
    pub token: String,
    pub failures: u32,
    pub last_error_code: String,
}

#[napi(object)]
pub struct NativeStats {
    pub requests: f64,
    pub retries: f64,
    pub fetches: f64,
    pub background_refreshes: f64,
    pub failures: f64,
    pub last_error_code: Option<String>,
    pub expires_in_ms: Option<f64>,
}

#[napi]
pub struct NativeProvider {
    provider: Arc<Provider>,
    url: Arc<str>,
    /// Tells this object's waiters apart from other threads' in a shared provider's flight.
    id: usize,
    /// Set by `observe`; flights this object starts hand it their end when no caller of this
    /// object waits for them.
    observer: Arc<OnceLock<Observer>>,
}

#[napi]
impl NativeProvider {
    /// Throws an `Error` with `code` `ERR_INVALID_OPTION` for an option it cannot use.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        options: Unknown,
        yc_metadata_addr: Option<String>,
        gce_metadata_host: Option<String>,
        shared: bool,
    ) -> Result<Self, String> {
        let invalid = |e: error::Error| Error::new(e.code().to_string(), e.describe("", 0));
        let options = option_pairs(options).map_err(invalid)?;
        let env = Environment {
            yc_metadata_addr,
            gce_metadata_host,
        };
        let settings = config::settings(&options, &env).map_err(invalid)?;
        let provider = Provider::new(&settings, shared).map_err(invalid)?;
        static IDS: AtomicUsize = AtomicUsize::new(0);
        Ok(NativeProvider {
            url: provider.url().into(),
            provider,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            observer: Arc::default(),
        })
    }

    /// The cached token if it is usable now, else `null`. No thread hop, no network. Inside the
    /// refresh margin a background refresh may start: `onStart(flight, reason)` is called before
    /// it runs, so that an observer it sets sees its end.
    #[napi(catch_unwind)]
    pub fn peek(
        &self,
        on_start: Option<Function<FnArgs<(f64, String)>, ()>>,
    ) -> napi::Result<Option<Snapshot>> {
        let (token, start) = self.provider.peek();
        if let Some(start) = start {
            let told = on_start
                .map(|f| f.call((start.flight as f64, start.reason.name().to_string()).into()));
            // The flight runs whatever the callback did: its waiters must not wait forever.
            self.provider.run(start.step, self.starter());
            told.transpose()?;
        }
        Ok(token.map(snapshot))
    }

    /// A promise of an `Outcome`; concurrent calls share one upstream fetch. When this call
    /// starts one, `onStart(flight, reason)` is called once it is under way.
    #[napi(ts_return_type = "Promise<Outcome>", catch_unwind)]
    pub fn fetch<'env>(
        &self,
        env: &'env Env,
        force: bool,
        on_start: Option<Function<FnArgs<(f64, String)>, ()>>,
    ) -> napi::Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred()?;
        let url = Arc::clone(&self.url);
        let answer = move |result: Answer| {
            deferred.resolve(move |_| {
                Ok(result.map_or_else(released, |(r, report)| outcome(r, report, &url)))
            })
        };
        let waiter = Waiter {
            owner: self.id,
            answer: Box::new(answer),
        };
        if let Some((flight, reason)) = self.provider.get(force, waiter, self.starter()) {
            if let Some(f) = on_start {
                f.call((flight as f64, reason.name().to_string()).into())?;
            }
        }
        Ok(promise)
    }

    /// Has `callback(outcome)` called, on this thread, with the end of each flight this object
    /// starts from now on that no caller of this object waits for (the outcome's `report` says
    /// how it went). Through a thread-safe function made here, once: the first call wins. It is
    /// unref'd, so it never keeps Node alive.
    #[napi(catch_unwind)]
    pub fn observe(&self, callback: Function<Outcome, ()>) -> napi::Result<()> {
        if self.observer.get().is_some() {
            return Ok(());
        }
        let tsfn = callback
            .build_threadsafe_function::<Outcome>()
            .weak::<true>()
            .build()?;
        let url = Arc::clone(&self.url);
        let observer: Observer = Arc::new(move |result, report| {
            // A thread that has ended takes no more calls; its flights' ends go nowhere.
            let _ = tsfn.call(
                outcome(result, Some(report), &url),
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        });
        let _ = self.observer.set(observer);
        Ok(())
    }

    /// Settles this object's pending `fetch` promises as released, at once: their callers gave up,
    /// and a pending promise would keep Node's event loop alive. The flight goes on.
    #[napi(catch_unwind)]
    pub fn release(&self) {
        self.provider.release(self.id);
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> NativeStats {
        let s = self.provider.stats();
        NativeStats {
            requests: s.requests as f64,
            retries: s.retries as f64,
            fetches: s.fetches as f64,
            background_refreshes: s.background_refreshes as f64,
            failures: s.failures as f64,
            last_error_code: s.last_error.map(String::from),
            expires_in_ms: s.expires_in.map(crate::cache::to_ms),
        }
    }

    #[napi(getter, catch_unwind)]
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// The host the attempts connect to (an IPv6 address without brackets).
    #[napi(getter, catch_unwind)]
    pub fn host(&self) -> String {
        self.provider.address().0.to_string()
    }

    #[napi(getter, catch_unwind)]
    pub fn port(&self) -> u32 {
        u32::from(self.provider.address().1)
    }
}

impl NativeProvider {
    fn starter(&self) -> Starter {
        Starter {
            owner: self.id,
            observer: Arc::clone(&self.observer),
        }
    }
}

/// Milliseconds a token that had `lifetime_ms` when it arrived `elapsed_ms` ago can still be used,
/// or `null` once it is within its expiry skew (the rule of `cache::usable_for`, for a Cloud
/// Functions context's token).
#[napi(catch_unwind)]
#[cfg_attr(test, allow(dead_code))] // called from JavaScript only
pub fn usable_for_ms(lifetime_ms: f64, elapsed_ms: f64) -> Option<f64> {
    crate::cache::usable_for_ms(lifetime_ms, elapsed_ms)
}

/// Whether a token the core did not fetch (a Cloud Functions context's) passes the rule a fetched
/// one must: RFC 6750's b64token (`fetch::is_b64token`).
#[napi(js_name = "isB64Token", catch_unwind)]
#[cfg_attr(test, allow(dead_code))] // called from JavaScript only
pub fn is_b64token(token: String) -> bool {
    crate::fetch::is_b64token(&token)
}

fn snapshot(t: Token) -> Snapshot {
    let (expires_at_ms, fresh_until_ms) = t.deadlines_ms();
    Snapshot {
        expires_at_ms,
        fresh_until_ms,
        failures: t.failures,
        token: t.token,
    }
}

fn flight_report(r: Report) -> FlightReport {
    FlightReport {
        flight: r.flight as f64,
        reason: r.reason.name().to_string(),
        background: r.background,
        status: r.status.map(u32::from),
        failures: r.failures,
        held: r.held.map(snapshot),
        expired: r.expired.map(|e| ExpiredToken {
            token: e.token,
            failures: e.failures,
            last_error_code: e.last_error.to_string(),
        }),
    }
}

fn released() -> Outcome {
    Outcome {
        released: true,
        token: None,
        expires_at_ms: None,
        fresh_until_ms: None,
        code: None,
        message: None,
        status: None,
        attempts: 0,
        report: None,
    }
}

fn outcome(result: CoreOutcome, report: Option<Box<Report>>, url: &str) -> Outcome {
    let report = report.map(|r| flight_report(*r));
    match result {
        Ok(t) => {
            let (expires_at_ms, fresh_until_ms) = t.deadlines_ms();
            Outcome {
                released: false,
                expires_at_ms: Some(expires_at_ms),
                fresh_until_ms: Some(fresh_until_ms),
                attempts: t.attempts,
                token: Some(t.token),
                code: None,
                message: None,
                status: None,
                report,
            }
        }
        Err(f) => Outcome {
            released: false,
            token: None,
            expires_at_ms: None,
            fresh_until_ms: None,
            code: Some(f.error.code().to_string()),
            message: Some(f.error.describe(url, f.attempts)),
            status: f.error.status().map(u32::from),
            attempts: f.attempts,
            report,
        },
    }
}

/// The options object as (name, value) pairs; `undefined` and `null` count as absent.
fn option_pairs(options: Unknown) -> std::result::Result<Vec<(String, OptionValue)>, error::Error> {
    let js_error = |_| error::Error::InvalidOption("options could not be read".into());
    match options.get_type().map_err(js_error)? {
        ValueType::Undefined | ValueType::Null => return Ok(Vec::new()),
        ValueType::Object => {}
        other => return Err(config::options_not_an_object(type_name(other))),
    }
    let object = unsafe { options.cast::<Object>() }.map_err(js_error)?;
    let mut pairs = Vec::new();
    for name in Object::keys(&object).map_err(js_error)? {
        let value: Unknown = object.get_named_property(&name).map_err(js_error)?;
        let value = match value.get_type().map_err(js_error)? {
            ValueType::Undefined | ValueType::Null => OptionValue::Absent,
            ValueType::Number => {
                OptionValue::Number(unsafe { value.cast::<f64>() }.map_err(js_error)?)
            }
            ValueType::String => {
                OptionValue::Text(unsafe { value.cast::<String>() }.map_err(js_error)?)
            }
            ValueType::Boolean => {
                OptionValue::Bool(unsafe { value.cast::<bool>() }.map_err(js_error)?)
            }
            other => OptionValue::Other(type_name(other)),
        };
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Boolean => "boolean",
        ValueType::Number => "number",
        ValueType::String => "string",
        ValueType::Symbol => "symbol",
        ValueType::Function => "function",
        ValueType::Null => "null",
        ValueType::Undefined => "undefined",
        _ => "object",
    }
}
