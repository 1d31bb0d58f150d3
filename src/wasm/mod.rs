//! The wasm driver's exports: the core compiled to plain wasm32 (no wasm-bindgen, no WASI), driven
//! by wasm-driver.js, which does the I/O with plain sockets and timers: the core writes the request
//! and reads the response's bytes (http1.rs).
//!
//! The interface is numbers and one byte buffer. Strings travel through `IO` (the JavaScript side
//! writes into it after `io_reserve`, or reads what an export left there: `io_ptr`, `io_len`), and
//! numeric results through `NUMS`. Times come in as milliseconds: `mono` from any fixed origin,
//! `wall` since the Unix epoch.
//!
//! Exports that hand back a step return `token | step << 1`: bit 0 set when a token was answered
//! from memory (in `IO`, its deadlines in `NUMS[0]`, `NUMS[1]`), and the step of the flight:
//! 0 none, 1 send (timeout ms in `NUMS[4]`), 2 sleep (until mono ms in `NUMS[4]`), 3 done with a
//! token (in `IO`, deadlines in `NUMS[0]`, `NUMS[1]`, attempts in `NUMS[2]`), 4 done with an error
//! (`IO` holds "code\nmessage", attempts in `NUMS[2]`, HTTP status or -1 in `NUMS[3]`).
//! When a step ends an attempt, `NUMS[5]` is 1 if its connection can carry the next request.
//! A `peek` or `get` that starts a flight puts its number in `NUMS[8]` (else -1) and the code of
//! its reason (`cache::Reason`) in `NUMS[9]`; a token answered from memory has its failures
//! (`cache::Token::failures`) in `NUMS[10]`. After a done step, `report` tells how the flight
//! went (`cache::Report`).
//! A 32-bit module has one thread, so plain statics behind `RefCell`s hold the state.

use crate::cache::{from_ms, to_ms, Cache, Get, Outcome, Reason, Report, Stamp, Start, Step};
use crate::config::{self, Environment, OptionValue, Settings};
use crate::error::Error;
use crate::fetch::{self, Fetched, Transport};
use crate::http1;
use crate::retry::Policy;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

// isAvailable() and getMetadata(): exports of their own, in this interface.
mod metadata;

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A panic is a bug: the module traps, and wasm-driver.js reports it and starts a fresh instance.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

struct Provider {
    cache: Cache<()>,
    settings: Settings,
    url: String,
    /// The answer of the attempt under way, as its bytes arrive.
    response: Option<http1::Response>,
    /// The report of the flight that ended last, until `report` reads it.
    report: Option<Box<Report>>,
}

/// Numbers in `NUMS`: see the module note.
const NUMS_LEN: usize = 16;

#[derive(Default)]
struct State {
    io: Vec<u8>,
    nums: [f64; NUMS_LEN],
    options: Vec<(String, OptionValue)>,
    not_an_object: Option<&'static str>,
    providers: Vec<Option<Provider>>,
}

struct Global(RefCell<State>);
// wasm32 without the atomics feature runs on one thread.
unsafe impl Sync for Global {}

static STATE: Global = Global(RefCell::new(State {
    io: Vec::new(),
    nums: [0.0; NUMS_LEN],
    options: Vec::new(),
    not_an_object: None,
    providers: Vec::new(),
}));

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    f(&mut STATE.0.borrow_mut())
}

const STEP_NONE: u32 = 0;
const STEP_SEND: u32 = 1;
const STEP_SLEEP: u32 = 2;
const STEP_DONE_TOKEN: u32 = 3;
const STEP_DONE_ERROR: u32 = 4;

/// Transport failures as wasm-driver.js reports them, beside fetch.rs's `Transport` kinds.
const FAILED_TIMEOUT: u32 = 100;

fn stamp(mono_ms: f64, wall_ms: f64) -> Stamp {
    Stamp {
        mono: from_ms(mono_ms),
        wall: from_ms(wall_ms),
    }
}

/// The text wasm-driver.js wrote (always UTF-8: Buffer.from turns a lone surrogate into U+FFFD).
fn text(bytes: &[u8]) -> String {
    match core::str::from_utf8(bytes) {
        Ok(text) => String::from(text),
        Err(_) => lossy(bytes),
    }
}

/// Out of line, never called in practice: V8 compiles a wasm function whole at its first call,
/// and `from_utf8_lossy` inlined into `text` was ~1.2 KB of code on the first token's way.
#[cold]
#[inline(never)]
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl State {
    fn set_io(&mut self, s: &str) {
        self.io.clear();
        self.io.extend_from_slice(s.as_bytes());
    }

    fn provider(&mut self, handle: u32) -> Option<&mut Provider> {
        self.providers.get_mut(handle as usize)?.as_mut()
    }

    /// The URL an error message names: the provider's, or none for a handle that is gone.
    fn url(&self, handle: u32) -> &str {
        match self.providers.get(handle as usize) {
            Some(Some(p)) => &p.url,
            _ => "",
        }
    }

    /// Writes the details of `handle`'s step and returns its code.
    fn step(&mut self, step: Step<()>, handle: u32) -> u32 {
        match step {
            Step::Send { timeout } => {
                self.nums[4] = to_ms(timeout);
                STEP_SEND
            }
            Step::SleepUntil(at) => {
                self.nums[4] = to_ms(at);
                STEP_SLEEP
            }
            Step::Done {
                outcome, report, ..
            } => {
                if let Some(p) = self.provider(handle) {
                    p.report = report;
                }
                self.outcome(outcome, handle)
            }
        }
    }

    fn outcome(&mut self, outcome: Outcome, handle: u32) -> u32 {
        match outcome {
            Ok(token) => {
                (self.nums[0], self.nums[1]) = token.deadlines_ms();
                self.nums[2] = f64::from(token.attempts);
                self.set_io(&token.token);
                STEP_DONE_TOKEN
            }
            Err(failure) => self.failed(failure, handle),
        }
    }

    /// Out of line (formatting): see `failed_settings`.
    #[inline(never)]
    fn failed(&mut self, failure: crate::cache::Failure, handle: u32) -> u32 {
        self.nums[2] = f64::from(failure.attempts);
        self.nums[3] = failure.error.status().map_or(-1.0, f64::from);
        let message = failure.error.describe(self.url(handle), failure.attempts);
        self.set_io(&format!("{}\n{}", failure.error.code(), message));
        STEP_DONE_ERROR
    }

    /// A token answered from memory, beside the step of a flight that may have started.
    fn answer(
        &mut self,
        token: Option<crate::cache::Token>,
        start: Option<Start<()>>,
        handle: u32,
    ) -> u32 {
        self.nums[8] = -1.0;
        let step = match start {
            // A flight over before it began (impossible: a deadline is at least 1 ms) has no
            // caller of its own to tell (a background refresh): the cache has recorded it.
            Some(Start {
                step: Step::Done { waiters, .. },
                ..
            }) if waiters.is_empty() && token.is_some() => STEP_NONE,
            Some(start) => {
                self.nums[8] = start.flight as f64;
                self.nums[9] = f64::from(start.reason.code());
                self.step(start.step, handle)
            }
            None => STEP_NONE,
        };
        let Some(token) = token else {
            return step << 1;
        };
        (self.nums[0], self.nums[1]) = token.deadlines_ms();
        self.nums[10] = f64::from(token.failures);
        self.set_io(&token.token);
        1 | step << 1
    }
}

/// Makes `IO` `len` bytes long and returns where the JavaScript side writes into it.
#[no_mangle]
pub extern "C" fn io_reserve(len: u32) -> *mut u8 {
    with(|s| {
        s.io.resize(len as usize, 0);
        s.io.as_mut_ptr()
    })
}

#[no_mangle]
pub extern "C" fn io_ptr() -> *const u8 {
    with(|s| s.io.as_ptr())
}

#[no_mangle]
pub extern "C" fn io_len() -> u32 {
    with(|s| s.io.len() as u32)
}

#[no_mangle]
pub extern "C" fn nums_ptr() -> *const f64 {
    with(|s| s.nums.as_ptr())
}

/// Adds one option for the next `provider_new`: its name is `IO[..name_len]`, a text value or a
/// type name follows it. `kind`: 0 absent, 1 number, 2 text, 3 another type (its `typeof`), 4 the
/// options argument itself is no object (its `typeof` follows an empty name), 5 a boolean (`number`
/// 1 for true, 0 for false).
#[no_mangle]
pub extern "C" fn option_add(kind: u32, name_len: u32, number: f64) {
    with(|s| {
        let split = (name_len as usize).min(s.io.len());
        let name = text(&s.io[..split]);
        let rest = text(&s.io[split..]);
        let value = match kind {
            1 => OptionValue::Number(number),
            2 => OptionValue::Text(rest),
            3 => OptionValue::Other(type_name(&rest)),
            4 => return s.not_an_object = Some(type_name(&rest)),
            5 => OptionValue::Bool(number != 0.0),
            _ => OptionValue::Absent,
        };
        s.options.push((name, value));
    })
}

fn type_name(name: &str) -> &'static str {
    match name {
        "boolean" => "boolean",
        "number" => "number",
        "string" => "string",
        "symbol" => "symbol",
        "function" => "function",
        _ => "object",
    }
}

/// A provider for the options added since the last call and the two environment variables, in
/// `IO` one after the other (`yc_len`/`gce_len` bytes; -1 for unset). Returns its handle, or -1
/// with "code\nmessage" in `IO`.
#[no_mangle]
pub extern "C" fn provider_new(yc_len: i32, gce_len: i32, seed: f64) -> i32 {
    with(|s| {
        let yc_end = yc_len.max(0) as usize;
        let gce_end = yc_end + gce_len.max(0) as usize;
        let env = Environment {
            yc_metadata_addr: (yc_len >= 0).then(|| text(&s.io[..yc_end.min(s.io.len())])),
            gce_metadata_host: (gce_len >= 0)
                .then(|| text(&s.io[yc_end.min(s.io.len())..gce_end.min(s.io.len())])),
        };
        let options = core::mem::take(&mut s.options);
        let settings = match s.not_an_object.take() {
            Some(type_name) => Err(config::options_not_an_object(type_name)),
            None => config::settings(&options, &env),
        };
        let settings = match settings {
            Ok(settings) => settings,
            Err(error) => return failed_settings(s, error),
        };
        let policy = Policy::of(&settings);
        let provider = Provider {
            cache: Cache::new(policy, settings.refresh_margin, seed.to_bits()),
            url: settings.url(),
            settings,
            response: None,
            report: None,
        };
        let free = s.providers.iter().position(Option::is_none);
        let handle = match free {
            Some(i) => {
                s.providers[i] = Some(provider);
                i
            }
            None => {
                s.providers.push(Some(provider));
                s.providers.len() - 1
            }
        };
        handle as i32
    })
}

/// Refused settings: -1, with "code\nmessage" in `IO`. Out of line, as every error's formatting
/// on the first token's way: V8 compiles a wasm function whole at its first call, so code that
/// only a failure runs is compiled only when one happens.
#[cold]
#[inline(never)]
fn failed_settings(s: &mut State, error: Error) -> i32 {
    s.set_io(&format!("{}\n{}", error.code(), error.describe("", 0)));
    -1
}

/// What to send: in `IO` the URL and the host to connect to, one per line, then the request's
/// bytes; the port in `NUMS[4]`. (Pieces pushed rather than format!: V8 compiles each wasm
/// function at its first call, and integer formatting is ~3 KB of code on the first call's way.)
#[no_mangle]
pub extern "C" fn provider_target(handle: u32) {
    with(|s| {
        let Some(p) = s.provider(handle) else {
            return s.set_io("");
        };
        let (host, port) = p.settings.host_and_port();
        let mut target = p.url.clone();
        for part in ["\n", host, "\n"] {
            target.push_str(part);
        }
        target.push_str(&fetch::request_head(&p.settings.host, config::TOKEN_PATH));
        s.nums[4] = f64::from(port);
        s.set_io(&target);
    })
}

#[no_mangle]
pub extern "C" fn provider_free(handle: u32) {
    with(|s| {
        if let Some(slot) = s.providers.get_mut(handle as usize) {
            *slot = None;
        }
    })
}

/// Runs `f` on the provider and encodes the step it returns; a handle that is gone answers an
/// internal error (wasm-driver.js never uses one).
fn on_step(handle: u32, f: impl FnOnce(&mut Cache<()>) -> Step<()>) -> u32 {
    with(|s| {
        let Some(p) = s.provider(handle) else {
            let failure = crate::cache::Failure {
                error: Error::Internal,
                attempts: 0,
            };
            return s.outcome(Err(failure), handle);
        };
        let step = f(&mut p.cache);
        s.step(step, handle)
    })
}

#[no_mangle]
pub extern "C" fn peek(handle: u32, mono: f64, wall: f64) -> u32 {
    with(|s| {
        let Some(p) = s.provider(handle) else {
            return 0;
        };
        let (token, step) = p.cache.peek(stamp(mono, wall));
        s.answer(token, step, handle)
    })
}

#[no_mangle]
pub extern "C" fn get(handle: u32, mono: f64, wall: f64, force: u32) -> u32 {
    with(|s| {
        let Some(p) = s.provider(handle) else {
            return 0;
        };
        let (got, step) = p.cache.get(stamp(mono, wall), force != 0, ());
        let token = match got {
            Get::Ready(token, ()) => Some(token),
            Get::Joined => None,
        };
        s.answer(token, step, handle)
    })
}

/// `IO[..len]` is the next bytes of the answer: 0 while more are needed, else the step (the
/// attempt is over).
#[no_mangle]
pub extern "C" fn attempt_data(handle: u32, mono: f64, wall: f64, len: u32) -> u32 {
    with(|s| {
        let State { io, providers, .. } = s;
        let p = providers.get_mut(handle as usize).and_then(Option::as_mut);
        if let Some(response) = p.and_then(|p| p.response.as_mut()) {
            response.feed(&io[..(len as usize).min(io.len())]);
        }
    });
    read_on(handle, stamp(mono, wall))
}

/// The peer closed the connection: the step (the attempt is over).
#[no_mangle]
pub extern "C" fn attempt_eof(handle: u32, mono: f64, wall: f64) -> u32 {
    with(|s| {
        if let Some(response) = s.provider(handle).and_then(|p| p.response.as_mut()) {
            response.eof();
        }
    });
    read_on(handle, stamp(mono, wall))
}

/// Reads the answer on as far as its bytes go: 0 while it is incomplete, else the attempt's end.
fn read_on(handle: u32, at: Stamp) -> u32 {
    let read = with(
        |s| match s.provider(handle).and_then(|p| p.response.as_mut()) {
            Some(response) => fetch::read_answer(response)
                .map(|(result, reusable)| (result, reusable, response.status())),
            // No answer under way: this core was made again after a trap (in another provider's
            // call, say) and lost the attempt. The attempt ends with an internal error, which
            // settles its callers; waiting for more bytes would leave them waiting for ever once
            // the connection closes.
            None => Some((Err(Error::Internal), false, None)),
        },
    );
    match read {
        Some((result, reusable, status)) => end_attempt(handle, at, result, reusable, status),
        None => STEP_NONE,
    }
}

/// The attempt under way ended with `result` (read from an answer with `status`, if any): its
/// answer is dropped, `NUMS[5]` says whether its connection is kept, and the cache says what
/// comes next.
fn end_attempt(
    handle: u32,
    at: Stamp,
    result: Result<Fetched, Error>,
    reusable: bool,
    status: Option<u16>,
) -> u32 {
    with(|s| {
        s.nums[5] = if reusable { 1.0 } else { 0.0 };
        if let Some(p) = s.provider(handle) {
            p.response = None;
        }
    });
    on_step(handle, |c| c.attempt_ended(at, result, status))
}

/// Takes a flight of a scratch provider through a canned answer, touching no provider and
/// neither `IO` nor `NUMS`. V8 compiles each wasm function at its first call (~1 ms for the
/// answer's path): wasm-driver.js calls this while the first request is out, so that the
/// compiling happens while the thread would wait anyway, not after the answer arrived.
#[no_mangle]
pub extern "C" fn warm() {
    let at = stamp(1.0, 1.0);
    let settings = Settings::default();
    let mut cache = Cache::new(Policy::of(&settings), settings.refresh_margin, 1);
    let _ = cache.get(at, false, ());
    cache.attempt_sent(at);
    let mut response = fetch::new_answer();
    response.feed(http1::SAMPLE_ANSWER);
    let (result, _) = fetch::read_answer(&mut response).unwrap_or((Err(Error::Internal), false));
    let step = cache.attempt_ended(at, result, response.status());
    State::default().step(step, 0);
}

/// The attempt failed below HTTP: `kind` is a `Transport` in declaration order, or one of the
/// FAILED_* codes.
#[no_mangle]
pub extern "C" fn attempt_failed(handle: u32, mono: f64, wall: f64, kind: u32) -> u32 {
    let error = failure_kind(kind).map_or(Error::Timeout, fetch::transport_error);
    end_attempt(handle, stamp(mono, wall), Err(error), false, None)
}

/// A failure below HTTP as wasm-driver.js reports it: a `Transport` in declaration order, or
/// `FAILED_TIMEOUT` (None). Token attempts and metadata reads alike (src/wasm/metadata.rs).
pub(crate) fn failure_kind(kind: u32) -> Option<Transport> {
    Some(match kind {
        FAILED_TIMEOUT => return None,
        0 => Transport::Refused,
        1 => Transport::NoRoute,
        2 => Transport::Reset,
        3 => Transport::ConnectTimedOut,
        4 => Transport::NameNotFound,
        5 => Transport::NameLookupFailed,
        6 => Transport::Closed,
        7 => Transport::NotHttp,
        _ => Transport::Other,
    })
}

/// The attempt's request went out: see `Cache::attempt_sent`. Its answer is read from here on.
#[no_mangle]
pub extern "C" fn attempt_sent(handle: u32, mono: f64, wall: f64) {
    with(|s| {
        if let Some(p) = s.provider(handle) {
            p.cache.attempt_sent(stamp(mono, wall));
            p.response = Some(fetch::new_answer());
        }
    })
}

/// The kept connection the attempt went on ended: 1 if the attempt goes again on a new connection
/// (`fetch::resend_on_new_connection`; its answer starts afresh), else 0.
#[no_mangle]
pub extern "C" fn resend_on_new_connection(handle: u32) -> u32 {
    with(|s| {
        let Some(response) = s.provider(handle).and_then(|p| p.response.as_mut()) else {
            return 0;
        };
        if !fetch::resend_on_new_connection(true, response) {
            return 0;
        }
        *response = fetch::new_answer();
        1
    })
}

#[no_mangle]
pub extern "C" fn wake(handle: u32, mono: f64, wall: f64) -> u32 {
    on_step(handle, |c| c.wake(stamp(mono, wall)))
}

/// The flight's callers all gave up: it goes on, to fill the cache.
#[no_mangle]
pub extern "C" fn release(handle: u32) {
    with(|s| {
        if let Some(p) = s.provider(handle) {
            p.cache.release(|_| true);
        }
    })
}

/// Milliseconds a token that had `lifetime_ms` when it arrived `elapsed_ms` ago can still be used,
/// or -1 once it is within its expiry skew (`cache::usable_for`).
#[no_mangle]
pub extern "C" fn usable_for_ms(lifetime_ms: f64, elapsed_ms: f64) -> f64 {
    crate::cache::usable_for_ms(lifetime_ms, elapsed_ms).unwrap_or(-1.0)
}

/// 1 if `IO[..len]` passes the rule a fetched token must, RFC 6750's b64token
/// (`fetch::is_b64token`), else 0: for a token the core did not fetch (a Cloud Functions context's).
#[no_mangle]
pub extern "C" fn is_b64token(len: u32) -> u32 {
    with(|s| {
        let bytes = &s.io[..(len as usize).min(s.io.len())];
        u32::from(core::str::from_utf8(bytes).is_ok_and(fetch::is_b64token))
    })
}

/// The name of the reason whose code is `code` (`cache::Reason`), in `IO`; empty for none.
#[no_mangle]
pub extern "C" fn reason_name(code: u32) {
    with(|s| s.set_io(Reason::from_code(code).map_or("", Reason::name)))
}

/// How the flight that ended last went (`cache::Report`), once: `NUMS[0]` its number (-1: no
/// report), `NUMS[1]` its reason's code, `NUMS[2]` 1 if no caller waited, `NUMS[3]` the last
/// attempt's HTTP status or -1, `NUMS[4]` fetches failed in a row; the token held after it:
/// its deadlines in `NUMS[5]`, `NUMS[6]` (-1: none), its failures in `NUMS[7]`; a token that ran
/// out while failing: its failures in `NUMS[8]` (-1: none). `IO` holds the held token, the
/// expired one and the last error code, a line each (tokens hold no control characters).
#[no_mangle]
pub extern "C" fn report(handle: u32) {
    with(|s| {
        let Some(r) = s.provider(handle).and_then(|p| p.report.take()) else {
            s.nums[0] = -1.0;
            return;
        };
        let (held, expires, fresh, held_failures) = match &r.held {
            Some(t) => {
                let (expires, fresh) = t.deadlines_ms();
                (t.token.as_str(), expires, fresh, f64::from(t.failures))
            }
            None => ("", -1.0, -1.0, 0.0),
        };
        let (expired, expired_failures, last_error) = match &r.expired {
            Some(e) => (e.token.as_str(), f64::from(e.failures), e.last_error),
            None => ("", -1.0, ""),
        };
        s.nums[..9].copy_from_slice(&[
            r.flight as f64,
            f64::from(r.reason.code()),
            if r.background { 1.0 } else { 0.0 },
            r.status.map_or(-1.0, f64::from),
            f64::from(r.failures),
            expires,
            fresh,
            held_failures,
            expired_failures,
        ]);
        let mut io = String::with_capacity(held.len() + expired.len() + last_error.len() + 2);
        for part in [held, "\n", expired, "\n", last_error] {
            io.push_str(part);
        }
        s.set_io(&io);
    })
}

/// Counters in `NUMS[0..6]` (requests, retries, fetches, background refreshes, failures, time
/// left in ms or -1), the last error code in `IO`.
#[no_mangle]
pub extern "C" fn stats(handle: u32, mono: f64, wall: f64) {
    with(|s| {
        let Some(p) = s.provider(handle) else {
            return;
        };
        let st = p.cache.stats(stamp(mono, wall));
        s.nums[..6].copy_from_slice(&[
            st.requests as f64,
            st.retries as f64,
            st.fetches as f64,
            st.background_refreshes as f64,
            st.failures as f64,
            st.expires_in.map_or(-1.0, to_ms),
        ]);
        s.set_io(st.last_error.unwrap_or(""));
    })
}
