//! The native driver's N-API surface, and only that: JavaScript values in, driver calls,
//! JavaScript values out. The JavaScript side (index.js) turns failures into `Error`s with their
//! `code`; wasm-driver.js offers the same surface over the wasm module.
//!
//! Every method catches panics (`catch_unwind`): a panic crossing the N-API boundary aborts Node;
//! caught, it is thrown as a JavaScript error that index.js reports as `ERR_METADATA_INTERNAL`.

mod driver;
mod metadata;
mod transport;

use crate::cache::{Outcome as CoreOutcome, Token};
use crate::config::{self, Environment, OptionValue};
use crate::error;
use driver::{Provider, Waiter};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A token as JavaScript gets it. Times are wall-clock milliseconds since the epoch, the scale of
/// `Date.now()`, so they stay right however late JavaScript reads them.
#[napi(object)]
pub struct Snapshot {
    pub token: String,
    pub expires_at_ms: f64,
    pub fresh_until_ms: f64,
}

/// The result of a fetch: `token` and times on success, `code` and `message` on failure, only
/// `released` for a caller taken out of the flight by `release()`.
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
        })
    }

    /// The cached token if it is usable now, else `null`. No thread hop, no network.
    #[napi(catch_unwind)]
    pub fn peek(&self) -> Option<Snapshot> {
        self.provider.peek().map(snapshot)
    }

    /// A promise of an `Outcome`; concurrent calls share one upstream fetch.
    #[napi(ts_return_type = "Promise<Outcome>", catch_unwind)]
    pub fn fetch<'env>(&self, env: &'env Env, force: bool) -> napi::Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred()?;
        let url = Arc::clone(&self.url);
        let answer = move |result: Option<CoreOutcome>| {
            deferred.resolve(move |_| Ok(result.map_or_else(released, |r| outcome(r, &url))))
        };
        self.provider.get(
            force,
            Waiter {
                owner: self.id,
                answer: Box::new(answer),
            },
        );
        Ok(promise)
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
}

/// Milliseconds a token that had `lifetime_ms` when it arrived `elapsed_ms` ago can still be used,
/// or `null` once it is within its expiry skew (the rule of `cache::usable_for`, for a Cloud
/// Functions context's token).
#[napi(catch_unwind)]
#[cfg_attr(test, allow(dead_code))] // called from JavaScript only
pub fn usable_for_ms(lifetime_ms: f64, elapsed_ms: f64) -> Option<f64> {
    crate::cache::usable_for_ms(lifetime_ms, elapsed_ms)
}

fn snapshot(t: Token) -> Snapshot {
    let (expires_at_ms, fresh_until_ms) = t.deadlines_ms();
    Snapshot {
        expires_at_ms,
        fresh_until_ms,
        token: t.token,
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
    }
}

fn outcome(result: CoreOutcome, url: &str) -> Outcome {
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
