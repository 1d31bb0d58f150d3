//! Any metadata key (getMetadata), sans I/O: which keys may be read, the request for one, what
//! its answer means, and the reads under way and remembered. A driver sends what a `Step` asks on
//! a connection of its own and reports how each attempt ended; retries follow retry.rs with the
//! caller's settings, as the token's do.
//!
//! A key cannot leave `/computeMetadata/v1/`: it is a relative path of plain names (letters,
//! digits and `-_.~@`), so no `..`, no escapes (`%2e`), no query or fragment, no line end, no
//! backslash and no absolute URL ever reaches the wire: such a key is refused before any I/O.
//!
//! Concurrent reads of one key share one request. A value is remembered only when a caller asks
//! (`cache: true`, for what never changes while the instance lives: its id, zone, folder, cloud),
//! and only such a call takes a remembered value: a plain call always asks the service. Drivers
//! keep one `Reads` per address; each read brings its own retry policy (a caller may compute its
//! deadline per call), and reads share a flight only when they share the policy too.

use crate::cache::Failure;
use crate::config::{self, Environment, OptionValue, Settings};
use crate::error::Error;
use crate::fetch;
use crate::http1::Response;
use crate::retry::{Attempts, Next, Policy, Rng};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

/// Where every key lives.
pub const PREFIX: &str = "/computeMetadata/v1/";
/// GCE caps all of an instance's metadata at 512 KB together (each value at 256 KiB, user-data
/// included), and a recursive answer is that tree as JSON, escapes added: 1 MiB holds it whole,
/// while a hostile server still cannot make us hold more.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// GCE's attribute names are under 128 bytes: a path of a few of them, a service account's email
/// included, stays far below this.
pub const MAX_KEY_BYTES: usize = 1024;
/// Remembered values together, paths included: the values that never change for an instance are
/// a few hundred bytes, and even two whole trees fit. A value past it is returned, not remembered.
pub const MAX_CACHE_BYTES: usize = 2 * MAX_BODY_BYTES;

/// The options getMetadata takes besides the connection's, for the message that names them.
const OPTIONS: &str = "host, timeoutMs, deadlineMs, maxAttempts, recursive, json and cache";

/// What one getMetadata call reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The request's path: `PREFIX`, the key, and `?recursive=true` when asked.
    pub path: String,
    /// The answer is JSON: checked here; the caller's side parses it.
    pub json: bool,
    /// Take a remembered value, and remember this one.
    pub cache: bool,
}

/// A key's value as the caller gets it: text, which is valid JSON when `json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub json: bool,
}

/// The settings (host, timeouts, attempts: the connection's, as config.rs reads them for a token)
/// and the read that getMetadata's `key` and `options` ask for, or why they cannot be used.
pub fn read_request(
    key: &OptionValue,
    options: &[(String, OptionValue)],
    env: &Environment,
) -> Result<(Settings, Read), Error> {
    let key = match key {
        OptionValue::Text(key) => key,
        other => {
            return Err(Error::InvalidOption(format!(
                "key must be a string, like \"instance/id\", got {}",
                config::type_name(other)
            )))
        }
    };
    check_key(key)?;
    let mut connection = Vec::new();
    let (mut recursive, mut json, mut cache) = (false, None, false);
    for (name, value) in options {
        match name.as_str() {
            _ if *value == OptionValue::Absent => {}
            "recursive" => recursive = flag(name, value)?,
            "json" => json = Some(flag(name, value)?),
            "cache" => cache = flag(name, value)?,
            "host" | "timeoutMs" | "deadlineMs" | "maxAttempts" => {
                connection.push((name.clone(), value.clone()))
            }
            _ => {
                return Err(Error::InvalidOption(format!(
                    "unknown option {name:?} of getMetadata; its options are {OPTIONS}"
                )))
            }
        }
    }
    let settings = config::settings(&connection, env)?;
    let mut path = String::with_capacity(PREFIX.len() + key.len() + 15);
    path.push_str(PREFIX);
    path.push_str(key);
    if recursive {
        path.push_str("?recursive=true");
    }
    let read = Read {
        path,
        // A recursive answer is JSON unless asked otherwise (GCE's `alt` defaults so).
        json: json.unwrap_or(recursive),
        cache,
    };
    Ok((settings, read))
}

fn flag(name: &str, value: &OptionValue) -> Result<bool, Error> {
    match value {
        OptionValue::Bool(b) => Ok(*b),
        other => Err(Error::InvalidOption(format!(
            "option {name} must be a boolean, got {}",
            config::type_name(other)
        ))),
    }
}

/// A key is a relative path of plain names under `PREFIX`; a directory's ends in '/'. Byte by
/// byte, as config.rs reads hosts: core's generic string searches were most of this function's
/// code in the wasm module.
fn check_key(key: &str) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidOption(format!(
            "key must be at most {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| !is_key_char(*c)) {
        return Err(Error::InvalidOption(format!(
            "key {key:?} has {c:?}: a key is a path of letters, digits, '-', '_', '.', '~' and \
             '@' joined by '/' (no query, fragment, escape or URL: it is read under {PREFIX})"
        )));
    }
    let bytes = key.as_bytes();
    if bytes.is_empty() {
        return Err(bad_key(
            key,
            "is empty: name a metadata key, like \"instance/id\"",
        ));
    }
    if bytes[0] == b'/' {
        return Err(bad_key(
            key,
            "starts with '/': keys are relative to /computeMetadata/v1/, like \"instance/id\"",
        ));
    }
    // The names, without the '/' that ends a directory's key.
    let names = &bytes[..bytes.len() - usize::from(bytes[bytes.len() - 1] == b'/')];
    let (mut start, mut index, mut token) = (0, 0, true);
    for end in 0..=names.len() {
        if end < names.len() && names[end] != b'/' {
            continue;
        }
        let name = &names[start..end];
        if name.is_empty() {
            return Err(bad_key(key, "has an empty name ('//')"));
        }
        if name == b"." || name == b".." {
            return Err(bad_key(
                key,
                "has a '.' or '..' name: a key cannot leave the tree",
            ));
        }
        token &= match index {
            0 => name == b"instance",
            1 => name == b"service-accounts",
            3 => name == b"token",
            _ => index < 4,
        };
        (start, index) = (end + 1, index + 1);
    }
    if token && index == 4 {
        return Err(bad_key(
            key,
            "is the service account's token, which has a call of its own: getToken() caches it \
             and refreshes it before it expires",
        ));
    }
    Ok(())
}

/// Why `key` is refused: out of line and cold, so that the formatting is compiled only for a key
/// that is refused (the wasm module compiles a function at its first call).
#[cold]
#[inline(never)]
fn bad_key(key: &str, why: &str) -> Error {
    Error::InvalidOption(format!("key {key:?} {why}"))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '@' | '/')
}

/// A reader for one attempt's answer.
pub fn new_answer() -> Response {
    Response::new(MAX_BODY_BYTES)
}

/// What the answer's bytes so far say: nothing yet (None), or the attempt's body or error. The
/// connection is not kept: metadata reads are few, and each has a connection of its own.
pub fn read_answer(response: &mut Response) -> Option<Result<Vec<u8>, Error>> {
    fetch::read_body(response, judge_head).map(|(body, _)| body)
}

/// Only a metadata service's answer is a value: a 2xx without `Metadata-Flavor: Google` comes
/// from something else at that address (a captive portal, another web server). A 404 from the
/// service means the key does not exist; every other status is judged as the token's.
fn judge_head(status: u16, from_metadata: bool) -> Result<(), Error> {
    match status {
        200..=299 if from_metadata => Ok(()),
        200..=299 => Err(Error::BadResponse(
            "an answer without the Metadata-Flavor: Google header, so this is not a metadata \
             service"
                .into(),
        )),
        300..=399 => Err(Error::BadResponse(format!(
            "a redirect (HTTP {status}), which is never followed (a directory's key ends in '/', \
             like \"instance/\")"
        ))),
        404 if from_metadata => Err(Error::NotFound),
        _ => fetch::classify_status(status, from_metadata),
    }
}

/// The value in a body: text, and valid JSON when the read asked for JSON. Messages never quote
/// the body.
fn judge_body(body: Vec<u8>, json: bool) -> Result<Value, Error> {
    let bad = |what: &str| Error::BadResponse(what.to_string());
    let text = String::from_utf8(body).map_err(|_| bad("the value is not UTF-8 text"))?;
    if !json {
        return Ok(Value { text, json });
    }
    // One byte-order mark may precede JSON (RFC 8259), as fetch.rs allows for the token.
    let text = match text.strip_prefix('\u{FEFF}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    // The token's JSON reader (json.rs), which refuses exactly what serde_json does: one parser
    // in the wasm module.
    if crate::json::read(text.as_bytes()).is_err() {
        return Err(bad(
            "the value is not valid JSON (read it without json: true to get its text)",
        ));
    }
    Ok(Value { text, json })
}

/// What the driver does next for a flight (one key's request and its retries).
#[derive(Debug)]
pub enum Step<W> {
    /// Send one attempt for `flight` (its path: `Reads::path`) with this timeout, then report how
    /// it ended (`attempt_ended`).
    Send {
        // The wasm driver keeps the flight it asked about.
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        flight: u32,
        timeout: Duration,
    },
    /// Sleep until this monotonic time, then call `wake`.
    SleepUntil {
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        flight: u32,
        at: Duration,
    },
    /// The flight is over: hand `outcome` to these waiters.
    Done {
        outcome: Result<Value, Failure>,
        // The wasm driver keeps its waiters itself.
        #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
        waiters: Vec<W>,
    },
}

/// How `get` answered a caller.
#[derive(Debug)]
pub enum Got<W> {
    /// A remembered value; the waiter comes back to be answered at once.
    Remembered(Value, W),
    /// The waiter joined this flight and is handed its outcome when that ends.
    Joined {
        // The native driver's waiters are in the flight; the wasm driver keeps its own by flight.
        #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
        flight: u32,
    },
}

#[derive(Debug)]
struct Flight<W> {
    id: u32,
    path: String,
    json: bool,
    policy: Policy,
    /// A caller asked to remember the value.
    cache: bool,
    attempts: Attempts,
    waiters: Vec<W>,
}

#[derive(Debug)]
struct Remembered {
    path: String,
    value: Value,
}

/// The reads of one address. `W` is whatever the driver uses to answer a waiting caller.
#[derive(Debug)]
pub struct Reads<W> {
    rng: Rng,
    flights: Vec<Flight<W>>,
    next_flight: u32,
    remembered: Vec<Remembered>,
    remembered_bytes: usize,
}

impl<W> Reads<W> {
    pub fn new(seed: u64) -> Reads<W> {
        Reads {
            rng: Rng::new(seed),
            flights: Vec::new(),
            next_flight: 0,
            remembered: Vec::new(),
            remembered_bytes: 0,
        }
    }

    /// A value for `waiter`: a remembered one if the read asks for it, else when the flight for
    /// the same read with the same `policy` (under way, or started now: its first step is
    /// returned) ends.
    pub fn get(
        &mut self,
        now: Duration,
        read: &Read,
        policy: Policy,
        waiter: W,
    ) -> (Got<W>, Option<Step<W>>) {
        if read.cache {
            let same = |r: &&Remembered| r.path == read.path && r.value.json == read.json;
            if let Some(r) = self.remembered.iter().find(same) {
                return (Got::Remembered(r.value.clone(), waiter), None);
            }
        }
        let same =
            |f: &&mut Flight<W>| f.path == read.path && f.json == read.json && f.policy == policy;
        if let Some(flight) = self.flights.iter_mut().find(same) {
            flight.cache |= read.cache;
            flight.waiters.push(waiter);
            return (Got::Joined { flight: flight.id }, None);
        }
        let id = self.next_flight;
        self.next_flight = self.next_flight.wrapping_add(1);
        let mut attempts = Attempts::new(policy, now);
        let first = attempts.start_attempt(now);
        self.flights.push(Flight {
            id,
            path: read.path.clone(),
            json: read.json,
            policy,
            cache: read.cache,
            attempts,
            waiters: alloc::vec![waiter],
        });
        let step = match first {
            Ok(timeout) => Step::Send {
                flight: id,
                timeout,
            },
            Err(error) => self.finish(id, Err(error)),
        };
        (Got::Joined { flight: id }, Some(step))
    }

    /// The request path of a flight under way.
    pub fn path(&self, flight: u32) -> Option<&str> {
        self.flights
            .iter()
            .find(|f| f.id == flight)
            .map(|f| f.path.as_str())
    }

    /// The attempt under way for `flight` ended with `result` (`read_answer`'s, or the driver's
    /// transport error).
    pub fn attempt_ended(
        &mut self,
        now: Duration,
        flight: u32,
        result: Result<Vec<u8>, Error>,
    ) -> Step<W> {
        let Some(f) = self.flights.iter().find(|f| f.id == flight) else {
            return self.finish(flight, Err(Error::Internal));
        };
        match result.and_then(|body| judge_body(body, f.json)) {
            Ok(value) => self.finish(flight, Ok(value)),
            Err(error) => match f.attempts.failed(now, error, &mut self.rng) {
                Next::GiveUp(error) => self.finish(flight, Err(error)),
                Next::RetryAt(at) => Step::SleepUntil { flight, at },
            },
        }
    }

    /// The sleep `flight` asked for is over.
    pub fn wake(&mut self, now: Duration, flight: u32) -> Step<W> {
        let Some(f) = self.flights.iter_mut().find(|f| f.id == flight) else {
            return self.finish(flight, Err(Error::Internal));
        };
        match f.attempts.start_attempt(now) {
            Ok(timeout) => Step::Send { flight, timeout },
            Err(error) => self.finish(flight, Err(error)),
        }
    }

    /// The driver lost `flight` (a panic): its waiters get an internal error instead of waiting
    /// forever.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the native driver's: wasm aborts
    pub fn abandon(&mut self, flight: u32) -> Step<W> {
        self.finish(flight, Err(Error::Internal))
    }

    fn finish(&mut self, flight: u32, result: Result<Value, Error>) -> Step<W> {
        let Some(at) = self.flights.iter().position(|f| f.id == flight) else {
            let failure = Failure {
                error: Error::Internal,
                attempts: 0,
            };
            return Step::Done {
                outcome: Err(failure),
                waiters: Vec::new(),
            };
        };
        let f = self.flights.swap_remove(at);
        let attempts = f.attempts.made();
        if let (Ok(value), true) = (&result, f.cache) {
            self.remember(f.path, value.clone());
        }
        Step::Done {
            outcome: result.map_err(|error| Failure { error, attempts }),
            waiters: f.waiters,
        }
    }

    fn remember(&mut self, path: String, value: Value) {
        let same = |r: &Remembered| r.path == path && r.value.json == value.json;
        if let Some(at) = self.remembered.iter().position(same) {
            let old = self.remembered.swap_remove(at);
            self.remembered_bytes -= old.path.len() + old.value.text.len();
        }
        let bytes = path.len() + value.text.len();
        if self.remembered_bytes + bytes <= MAX_CACHE_BYTES {
            self.remembered_bytes += bytes;
            self.remembered.push(Remembered { path, value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Backoff;
    use proptest::prelude::*;

    /// The path a server makes of a request path: the query and fragment cut off, escapes
    /// decoded, backslashes read as '/' (as some servers do), and dot segments removed (RFC 3986
    /// 5.2.4). A key that escaped the prefix would show here.
    fn as_served(path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut decoded = String::new();
        let bytes = path.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(hi), Some(lo)) => {
                    decoded.push(char::from((hi * 16 + lo) as u8));
                    i += 3;
                }
                (b'\\', _, _) => {
                    decoded.push('/');
                    i += 1;
                }
                (b, _, _) => {
                    decoded.push(char::from(b));
                    i += 1;
                }
            }
        }
        let mut out: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        out.join("/")
    }

    proptest! {
        /// Whatever the key, a key that is taken is read under the prefix, its request line one
        /// line of plain characters with the path it names.
        #[test]
        fn a_key_that_is_taken_stays_under_the_prefix(
            key in proptest::string::string_regex(
                "([a-z./%?#@~:\\\\ \r\n-]|2e|2E|5c|2f|\\.\\.|token|instance|service-accounts|default|/)*"
            ).unwrap(),
            recursive in any::<bool>(),
        ) {
            let options = [("recursive".into(), OptionValue::Bool(recursive))];
            let env = Environment { yc_metadata_addr: Some("127.0.0.1:8080".into()), gce_metadata_host: None };
            if let Ok((_, read)) = read_request(&OptionValue::Text(key.clone()), &options, &env) {
                let served = as_served(&read.path);
                prop_assert!(served.starts_with(PREFIX), "{key:?} -> {served:?}");
                let names: Vec<&str> = served[PREFIX.len()..].trim_end_matches('/').split('/').collect();
                let token = names.len() == 4 && names[0] == "instance" && names[1] == "service-accounts" && names[3] == "token";
                prop_assert!(!token, "{key:?}");
                prop_assert_eq!(served.as_str(), &format!("{PREFIX}{key}"));
                prop_assert!(read.path.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
                let head = fetch::request_head("127.0.0.1:8080", &read.path);
                let line = format!("GET {} HTTP/1.1", read.path);
                prop_assert_eq!(head.lines().next(), Some(line.as_str()));
            }
        }
    }

    fn text(s: &str) -> OptionValue {
        OptionValue::Text(s.into())
    }

    fn options(pairs: &[(&str, OptionValue)]) -> Vec<(String, OptionValue)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn env() -> Environment {
        Environment {
            yc_metadata_addr: Some("127.0.0.1:8080".into()),
            gce_metadata_host: None,
        }
    }

    fn read(key: &str, pairs: &[(&str, OptionValue)]) -> Result<Read, Error> {
        read_request(&text(key), &options(pairs), &env()).map(|(_, r)| r)
    }

    fn refused(key: &str) -> String {
        match read(key, &[]) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("{key:?}: expected InvalidOption, got {other:?}"),
        }
    }

    #[test]
    fn a_key_becomes_a_path_under_the_prefix() {
        let r = read("instance/id", &[]).unwrap();
        assert_eq!(
            r,
            Read {
                path: "/computeMetadata/v1/instance/id".into(),
                json: false,
                cache: false
            }
        );
        let r = read(
            "instance/service-accounts/sa@folder.iam.gserviceaccount.com/email",
            &[],
        )
        .unwrap();
        assert!(r.path.ends_with("/sa@folder.iam.gserviceaccount.com/email"));
        let r = read("instance/", &[("recursive", OptionValue::Bool(true))]).unwrap();
        assert_eq!(r.path, "/computeMetadata/v1/instance/?recursive=true");
        assert!(r.json, "a recursive answer is JSON unless asked otherwise");
        let r = read(
            "instance/",
            &[
                ("recursive", OptionValue::Bool(true)),
                ("json", OptionValue::Bool(false)),
            ],
        )
        .unwrap();
        assert!(!r.json);
        let r = read(
            "instance/vendor/identity/document",
            &[
                ("json", OptionValue::Bool(true)),
                ("cache", OptionValue::Bool(true)),
            ],
        )
        .unwrap();
        assert_eq!(
            (r.path.as_str(), r.json, r.cache),
            (
                "/computeMetadata/v1/instance/vendor/identity/document",
                true,
                true
            )
        );
        // Names of dots that are not '.' or '..' are plain names.
        assert!(read("instance/attributes/a...b", &[]).is_ok());
    }

    #[test]
    fn no_key_escapes_the_prefix() {
        for (key, why) in [
            ("../token", "'..'"),
            ("instance/../../x", "'..'"),
            ("instance/./id", "'.'"),
            ("..", "'..'"),
            ("instance/%2e%2e/id", "'%'"),
            ("%2E%2E/x", "'%'"),
            ("instance/id?alt=json", "'?'"),
            ("instance/id#x", "'#'"),
            ("instance/id\r\nX-Evil: 1", "'\\r'"),
            ("instance/id\nx", "'\\n'"),
            ("instance\\..\\id", "'\\\\'"),
            ("http://evil.example/x", "':'"),
            ("//evil.example/x", "starts with '/'"),
            ("/instance/id", "starts with '/'"),
            ("instance//id", "empty name"),
            ("instance/id x", "' '"),
            ("instance/ід", "'і'"),
            ("instance/service-accounts/default/token", "getToken()"),
            ("instance/service-accounts/any@x/token/", "getToken()"),
        ] {
            let m = refused(key);
            assert!(m.contains(why), "{key:?}: {m}");
        }
        assert!(refused("").contains("is empty"));
        let long = "a/".repeat(MAX_KEY_BYTES);
        assert!(refused(&long).contains("at most 1024 bytes"));
        // The token's directory is an ordinary key.
        assert!(read("instance/service-accounts/default/email", &[]).is_ok());
    }

    #[test]
    fn options_are_typed_and_named() {
        let m = |r: Result<Read, Error>| match r {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("expected InvalidOption, got {other:?}"),
        };
        assert!(m(read("instance/id", &[("recursive", text("yes"))]))
            .contains("option recursive must be a boolean, got string"));
        assert!(
            m(read("instance/id", &[("json", OptionValue::Number(1.0))]))
                .contains("option json must be a boolean, got number")
        );
        assert!(m(read(
            "instance/id",
            &[("refreshMarginSeconds", OptionValue::Number(1.0))]
        ))
        .contains("unknown option \"refreshMarginSeconds\" of getMetadata"));
        assert!(m(read("instance/id", &[("host", text("http://x"))])).contains("option host"));
        let key = read_request(&OptionValue::Number(5.0), &[], &env()).unwrap_err();
        assert!(matches!(key, Error::InvalidOption(m) if m.contains("key must be a string")));
        // Absent options are skipped; the connection's settings come from config.rs.
        let (settings, _) = read_request(
            &text("instance/id"),
            &options(&[
                ("cache", OptionValue::Absent),
                ("timeoutMs", OptionValue::Number(250.0)),
            ]),
            &env(),
        )
        .unwrap();
        assert_eq!(settings.host, "127.0.0.1:8080");
        assert_eq!(settings.timeout, Duration::from_millis(250));
    }

    fn answer(bytes: &str) -> Result<Vec<u8>, Error> {
        let mut r = new_answer();
        r.feed(bytes.as_bytes());
        r.eof();
        read_answer(&mut r).expect("an answer whose connection ended is over")
    }

    #[test]
    fn an_answer_counts_only_from_a_metadata_service() {
        let ok =
            answer("HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 2\r\n\r\nid");
        assert_eq!(ok, Ok(b"id".to_vec()));
        let plain = answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nid").unwrap_err();
        assert_eq!(plain.code(), "ERR_METADATA_BAD_RESPONSE");
        let missing = answer("HTTP/1.1 404 Not Found\r\nMetadata-Flavor: Google\r\n\r\n");
        assert_eq!(missing, Err(Error::NotFound));
        assert!(!Error::NotFound.is_retryable());
        let page = answer("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert_eq!(page.code(), "ERR_METADATA_BAD_RESPONSE");
        let moved =
            answer("HTTP/1.1 301 Moved\r\nMetadata-Flavor: Google\r\nLocation: /x/\r\n\r\n");
        assert!(matches!(moved, Err(Error::BadResponse(m)) if m.contains("ends in '/'")));
        assert_eq!(
            answer("HTTP/1.1 503 Busy\r\nMetadata-Flavor: Google\r\n\r\n"),
            Err(Error::Status(503))
        );
        let huge = format!(
            "HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert!(
            matches!(answer(&huge), Err(Error::BadResponse(m)) if m.contains("larger than 1048576"))
        );
    }

    #[test]
    fn a_body_is_text_and_json_when_asked() {
        assert_eq!(
            judge_body(b"ru-central1-a".to_vec(), false),
            Ok(Value {
                text: "ru-central1-a".into(),
                json: false
            })
        );
        assert_eq!(
            judge_body(b"\xEF\xBB\xBF{\"a\":1}".to_vec(), true)
                .unwrap()
                .text,
            "{\"a\":1}"
        );
        for (body, json, why) in [
            (&b"\xff\xfe"[..], false, "UTF-8"),
            (b"not json {secret}", true, "not valid JSON"),
            (b"", true, "not valid JSON"),
        ] {
            match judge_body(body.to_vec(), json) {
                Err(Error::BadResponse(m)) => {
                    assert!(m.contains(why) && !m.contains("secret"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    const POLICY: Policy = Policy {
        max_attempts: 3,
        timeout: Duration::from_millis(100),
        deadline: Duration::from_secs(2),
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(40),
        },
    };

    fn plain(key: &str, cache: bool) -> Read {
        Read {
            path: format!("{PREFIX}{key}"),
            json: false,
            cache,
        }
    }

    /// Runs a flight to its end, answering its attempts from `script`; returns the outcome and
    /// the waiters handed it.
    fn fly(
        reads: &mut Reads<u32>,
        mut step: Step<u32>,
        script: &mut Vec<Result<Vec<u8>, Error>>,
    ) -> (Result<Value, Failure>, Vec<u32>) {
        let mut now = Duration::from_secs(10);
        loop {
            step = match step {
                Step::Send { flight, timeout } => {
                    assert!(timeout > Duration::ZERO && reads.path(flight).is_some());
                    now += Duration::from_millis(1);
                    reads.attempt_ended(now, flight, script.remove(0))
                }
                Step::SleepUntil { flight, at } => {
                    now = at;
                    reads.wake(now, flight)
                }
                Step::Done {
                    outcome, waiters, ..
                } => return (outcome, waiters),
            }
        }
    }

    fn start(reads: &mut Reads<u32>, read: &Read, id: u32) -> Option<Step<u32>> {
        match reads.get(Duration::from_secs(10), read, POLICY, id) {
            (Got::Joined { .. }, step) => step,
            (Got::Remembered(..), _) => panic!("remembered"),
        }
    }

    #[test]
    fn concurrent_reads_of_one_key_share_one_flight() {
        let mut reads = Reads::new(1);
        let first = start(&mut reads, &plain("instance/id", false), 0).unwrap();
        for id in 1..100 {
            assert!(start(&mut reads, &plain("instance/id", id % 2 == 0), id).is_none());
        }
        // Another key, or the same key read as JSON, is another flight.
        assert!(start(&mut reads, &plain("instance/zone", false), 100).is_some());
        let as_json = Read {
            json: true,
            ..plain("instance/id", false)
        };
        assert!(start(&mut reads, &as_json, 101).is_some());
        // So is the same read with another policy (a caller's own deadline).
        let patient = Policy {
            deadline: Duration::from_secs(9),
            ..POLICY
        };
        let other = reads.get(
            Duration::from_secs(10),
            &plain("instance/id", false),
            patient,
            102,
        );
        assert!(matches!(other, (Got::Joined { .. }, Some(_))));
        let (outcome, waiters) = fly(&mut reads, first, &mut vec![Ok(b"i-1".to_vec())]);
        assert_eq!(outcome.unwrap().text, "i-1");
        assert_eq!(waiters, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn only_a_read_that_asks_takes_or_leaves_a_remembered_value() {
        let mut reads = Reads::new(1);
        let step = start(&mut reads, &plain("instance/id", true), 0).unwrap();
        fly(&mut reads, step, &mut vec![Ok(b"i-1".to_vec())])
            .0
            .unwrap();
        match reads.get(
            Duration::from_secs(11),
            &plain("instance/id", true),
            POLICY,
            1,
        ) {
            (Got::Remembered(value, 1), None) => assert_eq!(value.text, "i-1"),
            other => panic!("{other:?}"),
        }
        // A plain read asks the service, and does not replace what is remembered.
        let step = start(&mut reads, &plain("instance/id", false), 2).unwrap();
        fly(&mut reads, step, &mut vec![Ok(b"i-2".to_vec())])
            .0
            .unwrap();
        match reads.get(
            Duration::from_secs(12),
            &plain("instance/id", true),
            POLICY,
            3,
        ) {
            (Got::Remembered(value, _), _) => assert_eq!(value.text, "i-1"),
            other => panic!("{other:?}"),
        }
        // Nothing is remembered of a read that nobody asked to remember, or of a failure.
        let step = start(&mut reads, &plain("instance/zone", false), 4).unwrap();
        fly(&mut reads, step, &mut vec![Ok(b"z".to_vec())])
            .0
            .unwrap();
        let step = start(&mut reads, &plain("instance/zone", true), 5).unwrap();
        fly(&mut reads, step, &mut vec![Err(Error::NotFound)])
            .0
            .unwrap_err();
        assert!(start(&mut reads, &plain("instance/zone", true), 6).is_some());
    }

    #[test]
    fn remembered_values_stay_under_their_cap() {
        let mut reads = Reads::new(1);
        let big = alloc::vec![b'x'; MAX_BODY_BYTES];
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            let step = start(&mut reads, &plain(key, true), i as u32).unwrap();
            fly(&mut reads, step, &mut vec![Ok(big.clone())]).0.unwrap();
        }
        assert!(reads.remembered_bytes <= MAX_CACHE_BYTES);
        assert_eq!(reads.remembered.len(), 1);
        // The third was returned but not remembered.
        assert!(start(&mut reads, &plain("c", true), 9).is_some());
    }

    #[test]
    fn retries_what_is_worth_it_and_stops_at_a_missing_key() {
        let mut reads = Reads::new(1);
        let step = start(&mut reads, &plain("instance/id", false), 0).unwrap();
        let script = &mut vec![
            Err(Error::Status(503)),
            Err(Error::Unreachable("connection refused")),
            Ok(b"i".to_vec()),
        ];
        assert_eq!(fly(&mut reads, step, script).0.unwrap().text, "i");
        let step = start(&mut reads, &plain("instance/nope", false), 0).unwrap();
        let failure = fly(&mut reads, step, &mut vec![Err(Error::NotFound)])
            .0
            .unwrap_err();
        assert_eq!((failure.error, failure.attempts), (Error::NotFound, 1));
        // A body that is not the JSON asked for is a bad response, not retried.
        let step = start(
            &mut reads,
            &Read {
                json: true,
                ..plain("instance/x", false)
            },
            0,
        )
        .unwrap();
        let failure = fly(&mut reads, step, &mut vec![Ok(b"{".to_vec())])
            .0
            .unwrap_err();
        assert_eq!(
            (failure.error.code(), failure.attempts),
            ("ERR_METADATA_BAD_RESPONSE", 1)
        );
        let step = start(&mut reads, &plain("instance/y", false), 0).unwrap();
        let failure = fly(&mut reads, step, &mut vec![Err(Error::Timeout); 3])
            .0
            .unwrap_err();
        assert_eq!((failure.error, failure.attempts), (Error::Timeout, 3));
    }

    #[test]
    fn a_lost_flight_fails_its_waiters_and_frees_the_key() {
        let mut reads = Reads::new(1);
        let Some(Step::Send { flight, .. }) = start(&mut reads, &plain("instance/id", false), 7)
        else {
            panic!("no flight")
        };
        match reads.abandon(flight) {
            Step::Done {
                outcome, waiters, ..
            } => {
                assert_eq!(outcome.unwrap_err().error, Error::Internal);
                assert_eq!(waiters, [7]);
            }
            other => panic!("{other:?}"),
        }
        assert!(start(&mut reads, &plain("instance/id", false), 8).is_some());
        // Events for a flight that is gone end nothing else.
        assert!(matches!(
            reads.wake(Duration::ZERO, flight),
            Step::Done { waiters, .. } if waiters.is_empty()
        ));
    }
}
