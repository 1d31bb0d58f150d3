//! The wasm driver's exports for isAvailable() and getMetadata(), in mod.rs's interface: strings
//! through `IO`, numbers through `NUMS`, options added with `option_add` before the call that
//! takes them. wasm-driver.js gives each attempt a connection of its own and hands its bytes here;
//! the core (probe.rs, metadata.rs) decides everything.
//!
//! Probe calls answer `PROBE_*`: wait (for more bytes, or for the probe under way), send an
//! attempt (timeout ms in `NUMS[4]`), no, or yes. Probes and readers are one per address. Read calls answer `READ_*`: wait, send an
//! attempt (timeout ms in `NUMS[4]`), sleep (until mono ms in `NUMS[4]`), a value (in `IO`,
//! `NUMS[0]` 1 when it is JSON), or an error ("code\nmessage" in `IO`, attempts in `NUMS[2]`,
//! HTTP status or -1 in `NUMS[3]`).

use super::{failure_kind, stamp, text, with, State};
use crate::cache::{from_ms, to_ms, Failure};
use crate::config::{Environment, OptionValue, Settings};
use crate::error::Error;
use crate::fetch::{self, Transport};
use crate::http1::Response;
use crate::metadata::{self, Got, Reads, Value};
use crate::probe::{self, Asked, Attempt, Probe};
use crate::retry::Policy;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

const PROBE_WAIT: u32 = 0;
const PROBE_SEND: u32 = 1;
const PROBE_NO: u32 = 2;
const PROBE_YES: u32 = 3;

const READ_WAIT: u32 = 0;
const READ_SEND: u32 = 1;
const READ_SLEEP: u32 = 2;
const READ_VALUE: u32 = 3;
const READ_ERROR: u32 = 4;

/// The events of an attempt: its answer's bytes, its end, or a failure below HTTP (this plus a
/// `Transport` in declaration order, as `attempt_failed` reads them, or plus `FAILED_TIMEOUT`).
const EVENT_DATA: u32 = 0;
const EVENT_EOF: u32 = 1;
const EVENT_FAILED: u32 = 2;

/// One per address: the settings of the call that made it (only their address is used).
struct Prober {
    settings: Settings,
    probe: Probe<()>,
    /// The answer of the attempt under way, as its bytes arrive.
    answer: Option<Response>,
}

/// One per address, as `Prober`.
struct Reader {
    settings: Settings,
    reads: Reads<()>,
    /// The answers of the attempts under way, by flight.
    answers: Vec<(u32, Response)>,
}

struct Beyond {
    probers: Vec<Prober>,
    readers: Vec<Reader>,
}

struct Global(RefCell<Beyond>);
// wasm32 without the atomics feature runs on one thread.
unsafe impl Sync for Global {}

static BEYOND: Global = Global(RefCell::new(Beyond {
    probers: Vec::new(),
    readers: Vec::new(),
}));

fn beyond<T>(f: impl FnOnce(&mut Beyond) -> T) -> T {
    f(&mut BEYOND.0.borrow_mut())
}

/// The options added since the last call, and the environment variables in `IO` from `start`
/// (`yc_len`/`gce_len` bytes one after the other; -1 for unset), as provider_new reads them.
fn options_and_env(
    s: &mut State,
    start: usize,
    yc_len: i32,
    gce_len: i32,
) -> (Result<Vec<(String, OptionValue)>, Error>, Environment) {
    let io = &s.io[start.min(s.io.len())..];
    let yc_end = (yc_len.max(0) as usize).min(io.len());
    let gce_end = (yc_end + gce_len.max(0) as usize).min(io.len());
    let env = Environment {
        yc_metadata_addr: (yc_len >= 0).then(|| text(&io[..yc_end])),
        gce_metadata_host: (gce_len >= 0).then(|| text(&io[yc_end..gce_end])),
    };
    let options = core::mem::take(&mut s.options);
    let options = match s.not_an_object.take() {
        Some(type_name) => Err(crate::config::options_not_an_object(type_name)),
        None => Ok(options),
    };
    (options, env)
}

fn refuse(s: &mut State, error: &Error) -> i32 {
    s.set_io(&format!("{}\n{}", error.code(), error.describe("", 0)));
    -1
}

/// The handle of the one of each per address: found by it, made at first use.
fn handle_of<T>(all: &mut Vec<T>, same: impl Fn(&T) -> bool, make: impl FnOnce() -> T) -> usize {
    match all.iter().position(same) {
        Some(found) => found,
        None => {
            all.push(make());
            all.len() - 1
        }
    }
}

/// What to send to `settings`' address: `IO` = host "\n" request, the port in `NUMS[4]`.
fn set_target(s: &mut State, settings: &Settings, path: &str) {
    let (host, port) = settings.host_and_port();
    let mut target = String::from(host);
    target.push('\n');
    target.push_str(&fetch::request_head(&settings.host, path));
    s.nums[4] = f64::from(port);
    s.set_io(&target);
}

// ---- isAvailable ---------------------------------------------------------------------------------

/// Asks the probe of the address that the options added since the last call and the environment
/// variables in `IO` name (see the module note for the answer; its handle is in `NUMS[1]`), or -1
/// with "code\nmessage" in `IO`.
#[no_mangle]
pub extern "C" fn probe_ask(yc_len: i32, gce_len: i32, mono: f64, wall: f64) -> i32 {
    let settings = with(|s| {
        let (options, env) = options_and_env(s, 0, yc_len, gce_len);
        options
            .and_then(|o| probe::probe_settings(&o, &env))
            .map_err(|error| refuse(s, &error))
    });
    let settings = match settings {
        Ok(settings) => settings,
        Err(refused) => return refused,
    };
    let (handle, (asked, step)) = beyond(|b| {
        let same = |p: &Prober| p.settings.host == settings.host;
        let handle = handle_of(&mut b.probers, same, || Prober {
            probe: Probe::default(),
            settings: settings.clone(),
            answer: None,
        });
        let asked = b.probers[handle]
            .probe
            .ask(stamp(mono, wall), settings.timeout, ());
        (handle, asked)
    });
    with(|s| s.nums[1] = handle as f64);
    let code = match asked {
        Asked::Known(true, ()) => PROBE_YES,
        Asked::Known(false, ()) => PROBE_NO,
        Asked::Joined => step.map_or(PROBE_WAIT, probe_step),
    };
    code as i32
}

fn probe_step(step: probe::Step<()>) -> u32 {
    match step {
        probe::Step::Send { timeout } => {
            with(|s| s.nums[4] = to_ms(timeout));
            PROBE_SEND
        }
        probe::Step::Done {
            available: true, ..
        } => PROBE_YES,
        probe::Step::Done { .. } => PROBE_NO,
    }
}

/// The probe's attempt: what it sends (`IO` = host "\n" request, the port in `NUMS[4]`); its
/// answer is read from here on.
#[no_mangle]
pub extern "C" fn probe_send(handle: u32) {
    let settings = beyond(|b| {
        let p = b.probers.get_mut(handle as usize)?;
        p.answer = Some(probe::new_answer());
        Some(p.settings.clone())
    });
    with(|s| match settings {
        Some(settings) => set_target(s, &settings, probe::PROBE_PATH),
        None => s.set_io(""),
    })
}

/// An event of the probe's attempt: `EVENT_DATA` (`IO[..len]` is the next bytes of the answer),
/// `EVENT_EOF` (the peer closed the connection), or a failure below HTTP (`EVENT_FAILED` + the
/// kind `transport` reads). Answers `PROBE_WAIT` while more bytes are needed, else what comes next.
#[no_mangle]
pub extern "C" fn probe_event(handle: u32, mono: f64, wall: f64, event: u32, len: u32) -> u32 {
    let attempt = match event {
        EVENT_DATA | EVENT_EOF => {
            let read = with(|s| {
                let bytes = &s.io[..(len as usize).min(s.io.len())];
                beyond(|b| {
                    let answer = b.probers.get_mut(handle as usize)?.answer.as_mut()?;
                    match event {
                        EVENT_DATA => answer.feed(bytes),
                        _ => answer.eof(),
                    }
                    Some(probe::read_head(answer))
                })
            });
            match read {
                Some(None) => return PROBE_WAIT,
                Some(Some(attempt)) => attempt,
                // No answer under way: an instance made again after a trap lost it.
                None => Attempt::Failed(Transport::Closed),
            }
        }
        failed => failure_kind(failed - EVENT_FAILED).map_or(Attempt::TimedOut, Attempt::Failed),
    };
    let step = beyond(|b| {
        let p = b.probers.get_mut(handle as usize)?;
        p.answer = None;
        Some(p.probe.attempt_ended(stamp(mono, wall), attempt))
    });
    step.map_or(PROBE_NO, probe_step)
}

// ---- getMetadata ---------------------------------------------------------------------------------

/// The JavaScript `typeof` of a key that is no string ("null" for null).
fn key_type(name: &str) -> &'static str {
    match name {
        "undefined" => "undefined",
        "null" => "null",
        "boolean" => "boolean",
        "number" => "number",
        "bigint" => "bigint",
        "symbol" => "symbol",
        "function" => "function",
        _ => "object",
    }
}

/// Starts a read: the key is `IO[..key_len]` (`key_kind` 2: its text; else its `typeof`), the
/// environment variables follow it (`yc_len`/`gce_len`), the options were added before. Answers
/// `READ_VALUE` (a remembered value), `READ_WAIT` (joined the read under way), `READ_SEND` (a new
/// read: its first attempt), or -1 with "code\nmessage" in `IO`. The reader's handle is in
/// `NUMS[1]`, the flight's in `NUMS[2]`. `seed`: the jitter's, for a reader made now.
#[no_mangle]
pub extern "C" fn read_start(
    key_kind: u32,
    key_len: u32,
    yc_len: i32,
    gce_len: i32,
    mono: f64,
    seed: f64,
) -> i32 {
    with(|s| {
        let key_end = (key_len as usize).min(s.io.len());
        let key = match key_kind {
            2 => OptionValue::Text(text(&s.io[..key_end])),
            _ => OptionValue::Other(key_type(&text(&s.io[..key_end]))),
        };
        let (options, env) = options_and_env(s, key_end, yc_len, gce_len);
        let request = options.and_then(|o| metadata::read_request(&key, &o, &env));
        let (settings, read) = match request {
            Ok(request) => request,
            Err(error) => return refuse(s, &error),
        };
        let (reader, got, step) = beyond(|b| {
            let same = |r: &Reader| r.settings.host == settings.host;
            let reader = handle_of(&mut b.readers, same, || Reader {
                reads: Reads::new(seed.to_bits()),
                settings: settings.clone(),
                answers: Vec::new(),
            });
            let policy = Policy::of(&settings);
            let (got, step) = b.readers[reader]
                .reads
                .get(from_ms(mono), &read, policy, ());
            (reader, got, step)
        });
        s.nums[1] = reader as f64;
        match got {
            Got::Remembered(value, ()) => set_value(s, value) as i32,
            Got::Joined { flight } => {
                s.nums[2] = f64::from(flight);
                let url = settings.url_of(&read.path);
                step.map_or(READ_WAIT, |step| read_step(s, step, &url)) as i32
            }
        }
    })
}

fn set_value(s: &mut State, value: Value) -> u32 {
    s.nums[0] = if value.json { 1.0 } else { 0.0 };
    s.set_io(&value.text);
    READ_VALUE
}

/// Writes the details of a step and returns its code; `url` names the read in an error message.
fn read_step(s: &mut State, step: metadata::Step<()>, url: &str) -> u32 {
    match step {
        metadata::Step::Send { timeout, .. } => {
            s.nums[4] = to_ms(timeout);
            READ_SEND
        }
        metadata::Step::SleepUntil { at, .. } => {
            s.nums[4] = to_ms(at);
            READ_SLEEP
        }
        metadata::Step::Done {
            outcome: Ok(value), ..
        } => set_value(s, value),
        metadata::Step::Done {
            outcome: Err(Failure { error, attempts }),
            ..
        } => {
            s.nums[2] = f64::from(attempts);
            s.nums[3] = error.status().map_or(-1.0, f64::from);
            s.set_io(&format!(
                "{}\n{}",
                error.code(),
                error.describe(url, attempts)
            ));
            READ_ERROR
        }
    }
}

/// Runs `f` on a reader and its flight's URL, and encodes the step it returns; a reader or flight
/// that is gone (lost with a trapped instance) ends in an internal error.
fn on_read(reader: u32, flight: u32, f: impl FnOnce(&mut Reader) -> metadata::Step<()>) -> u32 {
    let stepped = beyond(|b| {
        let r = b.readers.get_mut(reader as usize)?;
        let url = r.settings.url_of(r.reads.path(flight)?);
        Some((f(r), url))
    });
    with(|s| match stepped {
        Some((step, url)) => read_step(s, step, &url),
        None => {
            let lost = metadata::Step::Done {
                outcome: Err(Failure {
                    error: Error::Internal,
                    attempts: 0,
                }),
                waiters: Vec::new(),
            };
            read_step(s, lost, "")
        }
    })
}

/// The flight's attempt: what it sends (`IO` = host "\n" request, the port in `NUMS[4]`); its
/// answer is read from here on.
#[no_mangle]
pub extern "C" fn read_send(reader: u32, flight: u32) {
    let target = beyond(|b| {
        let r = b.readers.get_mut(reader as usize)?;
        let path = String::from(r.reads.path(flight)?);
        r.answers.retain(|(f, _)| *f != flight);
        r.answers.push((flight, metadata::new_answer()));
        Some((r.settings.clone(), path))
    });
    with(|s| match target {
        Some((settings, path)) => set_target(s, &settings, &path),
        None => s.set_io(""),
    })
}

/// An event of the flight's attempt, as `probe_event`'s. Answers `READ_WAIT` while more bytes are
/// needed, else what comes next.
#[no_mangle]
pub extern "C" fn read_event(reader: u32, flight: u32, mono: f64, event: u32, len: u32) -> u32 {
    let result = match event {
        EVENT_DATA | EVENT_EOF => {
            let read = with(|s| {
                let bytes = &s.io[..(len as usize).min(s.io.len())];
                beyond(|b| {
                    let answer = b
                        .readers
                        .get_mut(reader as usize)
                        .and_then(|r| r.answers.iter_mut().find(|(id, _)| *id == flight));
                    match answer {
                        Some((_, answer)) => {
                            match event {
                                EVENT_DATA => answer.feed(bytes),
                                _ => answer.eof(),
                            }
                            metadata::read_answer(answer)
                        }
                        // No answer under way: an instance made again after a trap lost it.
                        None => Some(Err(Error::Internal)),
                    }
                })
            });
            match read {
                Some(result) => result,
                None => return READ_WAIT,
            }
        }
        failed => {
            Err(failure_kind(failed - EVENT_FAILED).map_or(Error::Timeout, fetch::transport_error))
        }
    };
    on_read(reader, flight, |r| {
        r.answers.retain(|(f, _)| *f != flight);
        r.reads.attempt_ended(from_ms(mono), flight, result)
    })
}

/// The sleep the flight asked for is over.
#[no_mangle]
pub extern "C" fn read_wake(reader: u32, flight: u32, mono: f64) -> u32 {
    on_read(reader, flight, |r| r.reads.wake(from_ms(mono), flight))
}
