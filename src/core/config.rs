//! Options and environment → validated settings. Every default is a named constant with its reason.

use crate::error::Error;
use alloc::format;
use alloc::string::{String, ToString};
use core::time::Duration;

/// The link-local address of the GCE-compatible metadata service in Yandex Cloud and on GCE.
pub const DEFAULT_HOST: &str = "169.254.169.254";
pub const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// The Yandex Cloud SDKs' variable, so one setting serves them and us.
pub const ENV_YC_METADATA_ADDR: &str = "YC_METADATA_ADDR";
/// Google's variable, honoured after ours like the Google client libraries do.
pub const ENV_GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";

/// One attempt, connect + response. The service is link-local and answers in milliseconds; a
/// second still covers a slow first token mint while a black hole off-cloud gives up quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The whole call, retries included: inside the shortest handler timeouts users set (3 s), so the
/// caller sees our clear error rather than the platform killing the handler.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(3000);
/// With the backoff in retry.rs, five attempts wait at most 1.5 s in all: a metadata service that
/// refuses connections in the first second of a container gets covered, and nothing listening
/// still fails in under 2 s.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Start refreshing in the background this long before expiry (capped at half the token's
/// lifetime in cache.rs). Below the 5 minutes before expiry at which metadata servers renew the
/// token they hand out, so a refresh rarely gets the old token back.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(240);

/// setTimeout's own ceiling (2^31 - 1 ms, ~24.8 days): no longer wait makes sense.
const MAX_MILLIS: f64 = 2_147_483_647.0;
/// More attempts than this only hides a broken service.
const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// A margin over a day is a mistake: metadata tokens live 12 hours at most.
const MAX_REFRESH_MARGIN_SECS: f64 = 86_400.0;

/// A JavaScript option value as the binding saw it; validation of types happens here.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Absent,
    Number(f64),
    Text(String),
    /// A boolean: a flag of getMetadata (metadata.rs); no token option takes one.
    Bool(bool),
    /// Any other type, by its `typeof` name.
    Other(&'static str),
}

/// The two environment variables, as read from `process.env` (a worker may have its own copy).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub yc_metadata_addr: Option<String>,
    pub gce_metadata_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Settings {
    pub host: String,
    pub timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub refresh_margin: Duration,
}

impl Settings {
    pub fn url(&self) -> String {
        self.url_of(TOKEN_PATH)
    }

    /// The URL of `path` on this host, for messages (the metadata reads name their own key's).
    pub fn url_of(&self, path: &str) -> String {
        // Pieces pushed rather than format!: the wasm module compiles each function at its first
        // call, and this is on the way of every new provider (see `valid_host`).
        let mut url = String::with_capacity(7 + self.host.len() + path.len());
        url.push_str("http://");
        url.push_str(&self.host);
        url.push_str(path);
        url
    }

    /// Where to connect, for a driver that takes the host and port apart (an IPv6 address
    /// without its brackets). The host was validated, so this only splits it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the wasm driver's
    pub fn host_and_port(&self) -> (&str, u16) {
        let host = self.host.as_str();
        let (host, port) = match host.as_bytes().first() {
            Some(b'[') => match find(&host[1..], b']') {
                Some(end) => (&host[1..end + 1], after_colon(&host[end + 2..])),
                None => (&host[1..], None),
            },
            _ => match host.bytes().rposition(|b| b == b':') {
                Some(colon) => (&host[..colon], Some(&host[colon + 1..])),
                None => (host, None),
            },
        };
        (host, port.and_then(parse_u16).unwrap_or(80))
    }
}

/// The defaults but the host, which `settings` always sets: without the default host's string, made
/// only to be dropped.
const DEFAULTS_BUT_HOST: Settings = Settings {
    host: String::new(),
    timeout: DEFAULT_TIMEOUT,
    deadline: DEFAULT_DEADLINE,
    max_attempts: DEFAULT_MAX_ATTEMPTS,
    refresh_margin: DEFAULT_REFRESH_MARGIN,
};

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: DEFAULT_HOST.to_string(),
            ..DEFAULTS_BUT_HOST
        }
    }
}

/// Builds settings from the constructor's options (name, value pairs) and the environment.
pub fn settings(options: &[(String, OptionValue)], env: &Environment) -> Result<Settings, Error> {
    let mut settings = DEFAULTS_BUT_HOST;
    let mut host = None;
    for (name, value) in options {
        match (name.as_str(), value) {
            (_, OptionValue::Absent) => {}
            ("host", value) => host = Some(valid_host(text(name, value)?, HostFrom::Option)?),
            _ => number_option(&mut settings, name, value)?,
        }
    }
    settings.host = match host {
        Some(host) => host,
        None => host_from_env(env)?,
    };
    Ok(settings)
}

/// Sets a number option, or refuses an unknown one. Out of line, unlike `host`: the wasm module
/// compiles a function at its first call, so a provider without these options never compiles this
/// (nor the float formatting of its messages).
#[inline(never)]
fn number_option(settings: &mut Settings, name: &str, value: &OptionValue) -> Result<(), Error> {
    match name {
        "timeoutMs" => settings.timeout = millis(name, value)?,
        "deadlineMs" => settings.deadline = millis(name, value)?,
        "maxAttempts" => {
            let n = number(name, value)?;
            // `n as u32` truncates: equal only for a whole number (no float math in no_std).
            if !(1.0..=MAX_ATTEMPTS_LIMIT as f64).contains(&n) || f64::from(n as u32) != n {
                return Err(invalid(format!(
                    "option maxAttempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}, got {n}"
                )));
            }
            settings.max_attempts = n as u32;
        }
        "refreshMarginSeconds" => {
            let n = number(name, value)?;
            if !(0.0..=MAX_REFRESH_MARGIN_SECS).contains(&n) {
                return Err(invalid(format!(
                    "option refreshMarginSeconds must be from 0 to {MAX_REFRESH_MARGIN_SECS}, got {n}"
                )));
            }
            settings.refresh_margin = Duration::from_secs_f64(n);
        }
        _ => {
            return Err(invalid(format!(
                "unknown option {}; the options are host, timeoutMs, deadlineMs, \
                 maxAttempts and refreshMarginSeconds",
                quoted(name)
            )))
        }
    }
    Ok(())
}

/// The options argument was given but is no object.
pub fn options_not_an_object(type_name: &str) -> Error {
    invalid(format!("options must be an object, got {type_name}"))
}

fn host_from_env(env: &Environment) -> Result<String, Error> {
    let from = [
        (ENV_YC_METADATA_ADDR, &env.yc_metadata_addr),
        (ENV_GCE_METADATA_HOST, &env.gce_metadata_host),
    ];
    for (name, value) in from {
        // An empty variable counts as unset, as in the shell habit `VAR= node app.js`.
        if let Some(value) = value.as_deref().map(trim).filter(|v| !v.is_empty()) {
            return valid_host(value, HostFrom::Env(name));
        }
    }
    Ok(DEFAULT_HOST.to_string())
}

/// `str::trim`, whose Unicode whitespace table only a value that needs it pays for: one that
/// starts and ends with a visible ASCII character (or is empty) has nothing to trim.
fn trim(value: &str) -> &str {
    let visible = |b: Option<&u8>| b.is_none_or(u8::is_ascii_graphic);
    if visible(value.as_bytes().first()) && visible(value.as_bytes().last()) {
        value
    } else {
        value.trim()
    }
}

/// Where a host came from, to name it in the error message.
#[derive(Clone, Copy)]
enum HostFrom {
    Option,
    Env(&'static str),
}

/// Accepts `host[:port]`: an IPv4 address or DNS name, or a bracketed IPv6 address.
///
/// A trailing dot marks a fully-qualified name (`metadata.google.internal.`, the form gcp-metadata
/// uses): it is kept, because it is what stops the resolver from trying its search list first
/// (Kubernetes' `ndots: 5`). Two forms lose it, so that what is dialed is what the URL means:
/// - an IPv4 address (`127.0.0.1.:8080`) is that address, as WHATWG URL parsing reads it (Node's
///   `URL`, browsers); an all-numeric last label is never a
///   DNS name (RFC 1123 2.1), so there is nothing to look up;
/// - `localhost.` and `*.localhost.` are loopback (RFC 6761 6.3) and are answered from /etc/hosts,
///   which glibc matches only without the dot: with it, the lookup fails and goes out to the DNS
///   server instead.
///
/// Byte by byte, with the messages built in `bad_host` alone: the wasm module compiles a function
/// at its first call, and core's substring search, IP address parsers and formatting machinery
/// made this the bulk of what the first provider compiled.
fn valid_host(value: &str, from: HostFrom) -> Result<String, Error> {
    let bad = |why| Err(bad_host(value, from, why));
    if value.as_bytes().windows(3).any(|w| w == b"://") {
        return bad("without a scheme");
    }
    let bracketed = value.as_bytes().starts_with(b"[");
    let (name, port) = if bracketed {
        let rest = &value[1..];
        let Some(end) = find(rest, b']') else {
            return bad("unclosed '['");
        };
        let (inside, after) = (&rest[..end], &rest[end + 1..]);
        if !is_ipv6(inside.as_bytes()) {
            return bad("not an IPv6 address inside [ ]");
        }
        if after.is_empty() {
            (inside, None)
        } else if let Some(port) = after_colon(after) {
            (inside, Some(port))
        } else {
            return bad("junk after ']'");
        }
    } else {
        match find(value, b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    // The name without the trailing dot of a fully-qualified one.
    let mut bare = name;
    // Whether the dot goes: it changes nothing for an IPv4 address or a loopback name (above).
    let mut undot = false;
    let mut numeric = false;
    if !bracketed {
        bare = match name.as_bytes().last() {
            Some(b'.') => &name[..name.len() - 1],
            _ => name,
        };
        let Some(last_label) = last_label(bare) else {
            return bad("with a valid host name or IPv4 address and nothing else");
        };
        numeric = ends_in_number(last_label);
        undot =
            bare.len() < name.len() && (numeric || last_label.eq_ignore_ascii_case("localhost"));
    }
    let port_number = match port.map(port_number) {
        Some(None) => return bad("with a port from 1 to 65535"),
        number => number.flatten(),
    };
    // A last label that is a number makes the whole an IPv4 address to WHATWG URL parsing
    // (reqwest's: `127.1`, `2130706433`, `0x7f.0.0.1` dial 127.0.0.1), while the wasm driver would
    // put it in Host as written or ask DNS. Only the one spelling both read alike passes.
    if numeric && !is_ipv4(bare.as_bytes()) {
        return Err(bad_host(value, from, &not_dotted_quad(bare, port_number)));
    }
    let host = if undot {
        bare
    } else {
        &value[..value.len() - port.map_or(0, |p| p.len() + 1)]
    };
    // A port is one spelling too: the wasm driver put its zeros on the wire in Host.
    if let (Some(port), Some(number)) = (port, port_number) {
        if port.starts_with('0') {
            return Err(bad_host(value, from, &leading_zeros(host, number)));
        }
    }
    if !undot {
        return Ok(value.to_string());
    }
    let mut host = host.to_string();
    if let Some(port) = port {
        host.push(':');
        host.push_str(port);
    }
    Ok(host)
}

/// Why `valid_host` refused `value`: out of line and cold, so that the formatting code it takes is
/// compiled only when a host is refused.
#[cold]
#[inline(never)]
fn bad_host(value: &str, from: HostFrom, why: &str) -> Error {
    let what = match from {
        HostFrom::Option => "option host".to_string(),
        HostFrom::Env(name) => format!("environment variable {name}"),
    };
    invalid(format!(
        "{what} must be \"host\" or \"host:port\" (like 169.254.169.254 or 127.0.0.1:8080), \
         {why}: {}",
        quoted(value)
    ))
}

/// Why a name whose last label is a number was refused: the address WHATWG URL parsing reads in
/// it, in the one spelling to write, or that it reads none.
#[cold]
#[inline(never)]
fn not_dotted_quad(bare: &str, port: Option<u16>) -> String {
    match whatwg_ipv4(bare) {
        Some([a, b, c, d]) => {
            let port = port.map_or(String::new(), |port| format!(":{port}"));
            format!(
                "with an IPv4 address in dotted-quad form, four decimal numbers without leading \
                 zeros (write {a}.{b}.{c}.{d}{port})"
            )
        }
        None => "with a valid host name or IPv4 address: a name whose last label is a number \
                 is read as an IPv4 address, and this one is no IPv4 address"
            .to_string(),
    }
}

/// Why a port with leading zeros was refused, with the one spelling to write.
#[cold]
#[inline(never)]
fn leading_zeros(host: &str, port: u16) -> String {
    format!("with a port from 1 to 65535 without leading zeros (write {host}:{port})")
}

/// The most characters of a caller's value a message quotes: enough to recognize it, while a 50-MB
/// value still makes a message of a few hundred bytes.
const MAX_QUOTED_CHARS: usize = 200;

/// `value` quoted for an error message: whole up to `MAX_QUOTED_CHARS`, else its beginning, an
/// ellipsis and its full length. Every user value a message of the core shows goes through here
/// (index.js and binding.js quote theirs with `quote`, the same rule).
#[cold]
#[inline(never)]
fn quoted(value: &str) -> String {
    // Characters counted by their first bytes (UTF-8 continuation bytes are 0b10xxxxxx).
    let starts = || value.bytes().enumerate().filter(|(_, b)| b & 0xC0 != 0x80);
    match starts().nth(MAX_QUOTED_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!(
            "{:?}… ({} characters in all)",
            &value[..cut],
            starts().count()
        ),
    }
}

// Byte-level helpers: core's `str` methods with a `char` pattern are generic functions of their
// own (and `find` runs memchr's word-at-a-time loop), more code to compile than these loops.

/// The first `byte` (ASCII) in `text`.
fn find(text: &str, byte: u8) -> Option<usize> {
    text.bytes().position(|b| b == byte)
}

/// `text.strip_prefix(':')`.
fn after_colon(text: &str) -> Option<&str> {
    text.as_bytes().starts_with(b":").then(|| &text[1..])
}

/// The last label of `name` if it is a host name or IPv4 address as DNS writes them: labels of 1
/// to 63 letters, digits, '-' or '_' joined by dots, 253 bytes in all.
fn last_label(name: &str) -> Option<&str> {
    if name.len() > 253 {
        return None;
    }
    let mut start = 0; // of the label being read
    for (i, b) in name.bytes().enumerate() {
        if b == b'.' {
            if i == start {
                return None; // an empty label
            }
            start = i + 1;
        } else if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') || i - start >= 63 {
            return None;
        }
    }
    // Empty for "" and a name that ends in a dot.
    (start < name.len()).then(|| &name[start..])
}

/// `text.parse::<u16>().ok()` without core's integer parser: decimal digits after an optional '+'.
fn parse_u16(text: &str) -> Option<u16> {
    let digits = match text.as_bytes().first() {
        Some(b'+') => &text[1..],
        _ => text,
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: u16 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u16::from(b - b'0'))?;
    }
    Some(n)
}

/// A port as `host:port` may write it: decimal digits only (`parse_u16` would also take a '+'),
/// from 1 to 65535.
fn port_number(port: &str) -> Option<u16> {
    let digits = port.bytes().all(|b| b.is_ascii_digit());
    parse_u16(port).filter(|&n| digits && n > 0)
}

/// WHATWG URL's "ends in a number" of a host's last label: decimal digits, or `0x` and hex digits.
/// Such a host is an IPv4 address to a URL parser, never a DNS name (RFC 1123 2.1 agrees).
fn ends_in_number(last_label: &str) -> bool {
    let hex = match last_label.as_bytes() {
        [b'0', b'x' | b'X', hex @ ..] => hex,
        digits => return !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
    };
    hex.iter().all(u8::is_ascii_hexdigit)
}

/// The IPv4 address WHATWG URL parsing reads in `name` (no trailing dot), or None where it reads
/// none: one to four numbers, each decimal, octal after a leading 0 or hex after 0x, the last one
/// filling the bytes the others leave. Only for a message: what passes is the dotted quad alone.
#[cold]
#[inline(never)]
fn whatwg_ipv4(name: &str) -> Option<[u8; 4]> {
    // Past u32 a number is too large for any part: capped there, u64 never overflows.
    const TOO_LARGE: u64 = 1 << 32;
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in name.as_bytes().split(|&b| b == b'.') {
        let (digits, radix) = match part {
            [] => return None,
            [b'0', b'x' | b'X', hex @ ..] => (hex, 16),
            [b'0', octal @ ..] if !octal.is_empty() => (octal, 8),
            decimal => (decimal, 10),
        };
        let mut n: u64 = 0;
        for &b in digits {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' | b'A'..=b'F' => (b | 0x20) - b'a' + 10,
                _ => return None,
            };
            if u64::from(digit) >= radix {
                return None;
            }
            n = (n * radix + u64::from(digit)).min(TOO_LARGE);
        }
        *numbers.get_mut(count)? = n;
        count += 1;
    }
    let (last, leading) = numbers[..count].split_last()?;
    if leading.iter().any(|&n| n > 255) || *last >= 1 << (8 * (4 - leading.len())) {
        return None;
    }
    let mut address = *last;
    for (i, n) in leading.iter().enumerate() {
        address += n << (8 * (3 - i));
    }
    Some((address as u32).to_be_bytes())
}

/// Whether `core::net::Ipv4Addr` parses `s`: four decimal numbers up to 255 joined by dots, with
/// no leading zeros (which other parsers read as octal). Out of line, like `is_ipv6`: only a name
/// with a trailing dot needs it, so the usual host does not compile it.
#[inline(never)]
fn is_ipv4(s: &[u8]) -> bool {
    let mut numbers = 0;
    for n in s.split(|&b| b == b'.') {
        numbers += 1;
        let decimal = matches!(n.len(), 1..=3) && n.iter().all(u8::is_ascii_digit);
        if numbers > 4 || !decimal || (n[0] == b'0' && n.len() > 1) {
            return false;
        }
        if n.iter().fold(0, |v, d| v * 10 + u16::from(d - b'0')) > 255 {
            return false;
        }
    }
    numbers == 4
}

/// Whether `core::net::Ipv6Addr` parses `s`: eight groups of 1 to 4 hex digits joined by ':', or
/// fewer around one "::" that stands for at least one zero group. An IPv4 address may end it in
/// place of the last two groups, but not before the "::". Out of line: only a bracketed host
/// compiles it.
#[inline(never)]
fn is_ipv6(s: &[u8]) -> bool {
    match s.windows(2).position(|w| w == b"::") {
        None => ipv6_groups(s, true) == Some(8),
        Some(gap) => match (
            ipv6_groups(&s[..gap], false),
            ipv6_groups(&s[gap + 2..], true),
        ) {
            (Some(head), Some(tail)) => head + tail <= 7,
            _ => false,
        },
    }
}

/// How many 16-bit groups `s`, groups joined by single colons, holds (none if empty), or None if
/// a part is no group. An IPv4 address, when `ipv4_last` allows it as the last part, counts two.
fn ipv6_groups(s: &[u8], ipv4_last: bool) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let mut count = 0;
    let mut parts = s.split(|&b| b == b':').peekable();
    while let Some(part) = parts.next() {
        if matches!(part.len(), 1..=4) && part.iter().all(u8::is_ascii_hexdigit) {
            count += 1;
        } else if ipv4_last && parts.peek().is_none() && is_ipv4(part) {
            count += 2;
        } else {
            return None;
        }
    }
    Some(count)
}

fn invalid(message: String) -> Error {
    Error::InvalidOption(message)
}

pub fn type_name(value: &OptionValue) -> &'static str {
    match value {
        OptionValue::Absent => "undefined",
        OptionValue::Number(_) => "number",
        OptionValue::Text(_) => "string",
        OptionValue::Bool(_) => "boolean",
        OptionValue::Other(name) => name,
    }
}

fn text<'a>(name: &str, value: &'a OptionValue) -> Result<&'a str, Error> {
    match value {
        OptionValue::Text(text) => Ok(text),
        other => Err(invalid(format!(
            "option {name} must be a string, got {}",
            type_name(other)
        ))),
    }
}

fn number(name: &str, value: &OptionValue) -> Result<f64, Error> {
    match value {
        OptionValue::Number(n) if n.is_finite() => Ok(*n),
        OptionValue::Number(n) => Err(invalid(format!(
            "option {name} must be a finite number, got {n}"
        ))),
        other => Err(invalid(format!(
            "option {name} must be a number, got {}",
            type_name(other)
        ))),
    }
}

fn millis(name: &str, value: &OptionValue) -> Result<Duration, Error> {
    let n = number(name, value)?;
    if !(1.0..=MAX_MILLIS).contains(&n) {
        return Err(invalid(format!(
            "option {name} must be from 1 to {MAX_MILLIS} milliseconds, got {n}"
        )));
    }
    Ok(Duration::from_secs_f64(n / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, OptionValue)]) -> Vec<(String, OptionValue)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn env(yc: Option<&str>, gce: Option<&str>) -> Environment {
        Environment {
            yc_metadata_addr: yc.map(String::from),
            gce_metadata_host: gce.map(String::from),
        }
    }

    fn err_of(pairs: &[(&str, OptionValue)]) -> String {
        match settings(&opts(pairs), &Environment::default()) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }

    /// The code this module had before it parsed by hand (commit caadd8c), kept as the oracle the
    /// byte-level versions are compared with: same hosts accepted, same errors, same splits. Since
    /// then values are quoted by `quoted` (a long one cut short), here as there; numeric names and
    /// ports have one spelling (`refused_now` says where the two differ).
    mod before {
        use super::super::*;

        pub fn valid_host(value: &str, what: &str) -> Result<String, Error> {
            let bad = |why: &str| {
                invalid(format!(
                    "{what} must be \"host\" or \"host:port\" (like 169.254.169.254 or 127.0.0.1:8080), \
                     {why}: {}",
                    quoted(value)
                ))
            };
            if value.contains("://") {
                return Err(bad("without a scheme"));
            }
            let (name, port) = if let Some(rest) = value.strip_prefix('[') {
                let (inside, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                if inside.parse::<core::net::Ipv6Addr>().is_err() {
                    return Err(bad("not an IPv6 address inside [ ]"));
                }
                match after {
                    "" => (inside, None),
                    _ => (
                        inside,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| bad("junk after ']'"))?,
                        ),
                    ),
                }
            } else {
                match value.split_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (value, None),
                }
            };
            let mut undotted = None;
            if !value.starts_with('[') {
                let label_ok = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                };
                let bare = name.strip_suffix('.').unwrap_or(name);
                if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
                    return Err(bad(
                        "with a valid host name or IPv4 address and nothing else",
                    ));
                }
                let last_label = bare.rsplit('.').next().unwrap_or(bare);
                if bare.len() < name.len()
                    && (bare.parse::<core::net::Ipv4Addr>().is_ok()
                        || last_label.eq_ignore_ascii_case("localhost"))
                {
                    undotted = Some(bare);
                }
            }
            if let Some(port) = port {
                let ok = !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u16>().is_ok_and(|p| p > 0);
                if !ok {
                    return Err(bad("with a port from 1 to 65535"));
                }
            }
            Ok(match (undotted, port) {
                (Some(bare), Some(port)) => format!("{bare}:{port}"),
                (Some(bare), None) => bare.to_string(),
                (None, _) => value.to_string(),
            })
        }

        pub fn host_and_port(host: &str) -> (&str, u16) {
            let (host, port) = match host.strip_prefix('[') {
                Some(rest) => match rest.split_once(']') {
                    Some((inside, after)) => (inside, after.strip_prefix(':')),
                    None => (rest, None),
                },
                None => match host.rsplit_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (host, None),
                },
            };
            (host, port.and_then(|p| p.parse().ok()).unwrap_or(80))
        }
    }

    /// Strings made of `pieces`, picked by a fixed pseudo-random sequence (xorshift): the same
    /// inputs on every run, many of them near the edges the pieces mark out.
    fn strings(pieces: &[&str], count: usize, max_pieces: u64) -> Vec<String> {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let n = next() % (max_pieces + 1);
                (0..n)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect()
            })
            .collect()
    }

    /// Every string of up to `max_len` bytes from `alphabet`.
    fn all_strings(alphabet: &[u8], max_len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max_len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&b| format!("{s}{}", b as char)))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    const IP_PIECES: &[&str] = &[
        "0",
        "1",
        "9",
        "00",
        "01",
        "255",
        "256",
        "999",
        "1000",
        "f",
        "FFFF",
        "aBc",
        "0000",
        "12345",
        "fffff",
        "g",
        ":",
        ":",
        ":",
        "::",
        ":::",
        ".",
        ".",
        ".",
        "1.2.3.4",
        "255.255.255.255",
        "1.2.3",
        "0.0.0.0",
        "01.2.3.4",
        "::ffff:",
        "1:2:3:4:",
        "5:6:7",
        " ",
        "+1",
        "-1",
        "é",
        "[",
        "]",
        "%",
    ];

    #[test]
    fn ip_address_checks_agree_with_core_net() {
        let agree = |s: &str| {
            assert_eq!(
                is_ipv4(s.as_bytes()),
                s.parse::<core::net::Ipv4Addr>().is_ok(),
                "IPv4 {s:?}"
            );
            assert_eq!(
                is_ipv6(s.as_bytes()),
                s.parse::<core::net::Ipv6Addr>().is_ok(),
                "IPv6 {s:?}"
            );
        };
        for s in all_strings(b"019af:.", 7) {
            agree(&s);
        }
        for s in strings(IP_PIECES, 300_000, 12) {
            agree(&s);
        }
        let ipv6 = [
            "::",
            "::1",
            "1::",
            "fe80::1",
            "2001:db8::8a2e:370:7334",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:1.2.3.4",
            "::ffff:192.168.0.1",
            "::1.2.3.4",
            "1:2:3:4:5::1.2.3.4",
            "A:B:C:D:E:F:a:b",
        ];
        let not_ipv6 = [
            "",
            ":",
            ":::",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "::1:2:3:4:5:6:7:8",
            "1::2::3",
            "12345::",
            "g::",
            "1.2.3.4",
            "1.2.3.4::",
            "1:2:3:4:5:6::1.2.3.4",
            "::01.2.3.4",
            "::1.2.3.256",
            "::1.2.3.4:5",
            ":1::",
            "::1:",
            "fe80::1%eth0",
        ];
        for s in ipv6.iter().chain(&not_ipv6) {
            agree(s);
        }
        assert!(ipv6.iter().all(|s| is_ipv6(s.as_bytes())));
        assert!(!not_ipv6.iter().any(|s| is_ipv6(s.as_bytes())));
    }

    #[test]
    fn parse_u16_agrees_with_str_parse() {
        let mut inputs = all_strings(b"09+- ", 4);
        for n in (0..70_000)
            .step_by(7)
            .chain([65_535, 65_536, 99_999, 655_350])
        {
            inputs.extend([
                format!("{n}"),
                format!("+{n}"),
                format!("00{n}"),
                format!("-{n}"),
            ]);
        }
        inputs.extend(["٣", "1_0", "0x10", "1e3", "65535 "].map(String::from));
        for s in inputs {
            assert_eq!(parse_u16(&s), s.parse::<u16>().ok(), "{s:?}");
        }
    }

    #[test]
    fn trim_agrees_with_str_trim() {
        let inputs = strings(
            &[
                " ", "\t", "\n", "\x0b", "\x0c", "\r", "\u{85}", "\u{a0}", "\u{2003}", "\u{3000}",
                "a", "1", ":", "é", "\0", "\x7f",
            ],
            20_000,
            6,
        );
        for s in inputs {
            assert_eq!(trim(&s), s.trim(), "{s:?}");
        }
    }

    const HOST_PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "1",
        "127.0.0.1",
        "1.2.3.4",
        "01",
        "256",
        "localhost",
        "LocalHost",
        "-",
        "_",
        ".",
        ".",
        ".",
        ":",
        ":",
        "::",
        "::1",
        "0x",
        "0X1f",
        "0177",
        "08",
        "2130706433",
        "[",
        "]",
        "[::1]",
        "80",
        "8080",
        "0",
        "65535",
        "65536",
        "+80",
        "://",
        "/",
        "@",
        " ",
        "\t",
        "é",
        "fe80::1",
    ];

    /// Whether the rules of now refuse `value`, which the old ones took, and then the form the
    /// message must suggest. Decided by WHATWG URL parsing (the `url` crate: how Node's `URL` and
    /// browsers read a host), independently of `valid_host`: a name WHATWG reads as an IPv4 address
    /// must already be that address in dotted-quad form, one it cannot read is no host at all; a
    /// port is written without leading zeros.
    fn refused_now(value: &str) -> Option<Option<String>> {
        if let Some((address, port)) = value.split_once("]:") {
            let zeros = port.starts_with('0');
            let port = port.parse::<u16>().unwrap();
            return zeros.then(|| Some(format!("{address}]:{port}")));
        }
        if value.starts_with('[') {
            return None;
        }
        let (name, port) = match value.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (value, None),
        };
        let Ok(url) = url::Url::parse(&format!("http://{name}/")) else {
            // The old rules let only letters, digits, '-', '_' and dots through: WHATWG refuses
            // such a name only when its last label is a number and the whole is no IPv4 address.
            return Some(None);
        };
        let host = url.host_str().unwrap().to_string();
        let bare = name.strip_suffix('.').unwrap_or(name);
        let numeric = host.parse::<core::net::Ipv4Addr>().is_ok();
        let zeros = port.is_some_and(|p| p.starts_with('0'));
        if !(numeric && bare != host || zeros) {
            return None;
        }
        let port = port.map(|p| p.parse::<u16>().unwrap());
        Some(Some(match port {
            Some(port) if numeric && bare != host => format!("{host}:{port}"),
            None => host,
            // Only the port is wrong: what the old rules made of it written without the zeros.
            Some(port) => before::valid_host(&format!("{name}:{port}"), "").unwrap(),
        }))
    }

    #[test]
    fn hosts_are_read_as_before_but_numbers_and_ports_canonical() {
        let long_label = "x".repeat(63);
        let mut inputs = strings(HOST_PIECES, 200_000, 8);
        inputs.extend(strings(&[&long_label, "x", ".", ":80", "[::1]"], 2_000, 6));
        // Names of 252 to 255 bytes, around the 253 allowed.
        let names = ["a", "ab", "abc", "abcd"].map(|last| format!("{}{last}", "a.".repeat(126)));
        for name in names {
            inputs.extend(["", ".", ":80", ".:80"].map(|end| format!("{name}{end}")));
        }
        let mut refused = 0;
        for value in &inputs {
            let sources = [
                (HostFrom::Option, "option host"),
                (
                    HostFrom::Env(ENV_YC_METADATA_ADDR),
                    "environment variable YC_METADATA_ADDR",
                ),
            ];
            for (from, what) in sources {
                let new = valid_host(value, from);
                let old = before::valid_host(value, what);
                match (&old, old.is_ok().then(|| refused_now(value)).flatten()) {
                    (Ok(_), Some(suggested)) => {
                        refused += 1;
                        let Err(Error::InvalidOption(message)) = &new else {
                            panic!("{value:?} was taken: {new:?}");
                        };
                        assert!(message.starts_with(what), "{message}");
                        if let Some(form) = suggested {
                            assert!(message.contains(&format!("(write {form})")), "{message}");
                        }
                    }
                    _ => assert_eq!(new, old, "{value:?}"),
                }
            }
        }
        assert!(refused > 1_000, "the inputs reach the new rules: {refused}");
        // The split, of what was accepted and of anything else.
        for host in inputs.iter().chain(&strings(HOST_PIECES, 50_000, 8)) {
            let settings = Settings {
                host: host.clone(),
                ..Settings::default()
            };
            assert_eq!(
                settings.host_and_port(),
                before::host_and_port(host),
                "{host:?}"
            );
        }
    }

    #[test]
    fn a_numeric_name_must_be_a_dotted_quad_ipv4_address() {
        let message = |value: &str| match valid_host(value, HostFrom::Option) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("{value:?}: {other:?}"),
        };
        // WHATWG URL parsing (the native driver) dials these as 127.0.0.1; the wasm driver sent
        // them to DNS or put them in Host as written.
        for (value, form) in [
            ("2130706433", "127.0.0.1"),
            ("2130706433.", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.1.", "127.0.0.1"),
            ("127.1:8080", "127.0.0.1:8080"),
            ("127.1.:8080", "127.0.0.1:8080"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0X7F.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.0.0.01", "127.0.0.1"),
            ("1.2.3.0x", "1.2.3.0"),
            ("0x", "0.0.0.0"),
            ("0", "0.0.0.0"),
            ("4294967295", "255.255.255.255"),
        ] {
            let m = message(value);
            assert!(m.contains(&format!("(write {form})")), "{value}: {m}");
            assert!(m.contains("dotted-quad"), "{value}: {m}");
        }
        // Numeric last labels that are no IPv4 address at all: nothing to suggest.
        for value in [
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "4294967296",
            "a.1",
            "metadata.0x1",
            "0x1g.1",
            "08.0.0.1",
            "99999999999999999999999",
        ] {
            let m = message(value);
            assert!(m.contains("is no IPv4 address"), "{value}: {m}");
            assert!(!m.contains("(write"), "{value}: {m}");
        }
        // Names whose last label is not a number stay names; IPv4 and IPv6 as before.
        for value in [
            "1.2.3.a",
            "1a",
            "a1",
            "0xg",
            "deadbeef",
            "x.1e5",
            "127.0.0.1",
            "127.0.0.1.",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(valid_host(value, HostFrom::Option).is_ok(), "{value}");
        }
    }

    #[test]
    fn a_port_has_no_leading_zeros() {
        for value in ["127.0.0.1:080", "127.0.0.1:000080", "h:01", "[::1]:0080"] {
            let m = match valid_host(value, HostFrom::Option) {
                Err(Error::InvalidOption(m)) => m,
                other => panic!("{value:?}: {other:?}"),
            };
            assert!(m.contains("without leading zeros"), "{value}: {m}");
        }
        let m = err_of(&[("host", OptionValue::Text("h:000080".into()))]);
        assert!(m.contains("(write h:80)"), "{m}");
        // 5000 zeros: refused, in a short message (the wasm driver sent a 5-KB Host header).
        let zeros = format!("127.0.0.1:{}80", "0".repeat(5000));
        let m = err_of(&[("host", OptionValue::Text(zeros))]);
        assert!(m.contains("(write 127.0.0.1:80)"), "{m}");
        assert!(m.len() < 700, "{} bytes", m.len());
    }

    #[test]
    fn messages_quote_at_most_a_few_hundred_characters() {
        let huge = "h".repeat(50 * 1024 * 1024);
        let cases = [
            (
                vec![("host", OptionValue::Text(format!("{huge}/")))],
                Environment::default(),
                huge.len() + 1,
            ),
            (
                vec![],
                env(Some(&format!("http://{huge}")), None),
                huge.len() + 7,
            ),
            (
                vec![],
                env(None, Some(&format!("{huge}:0"))),
                huge.len() + 2,
            ),
        ];
        for (pairs, env, chars) in cases {
            let m = match settings(&opts(&pairs), &env) {
                Err(Error::InvalidOption(m)) => m,
                other => panic!("{other:?}"),
            };
            assert!(m.len() < 700, "{} bytes", m.len());
            assert!(
                m.contains(&format!("\"… ({chars} characters in all)")),
                "{m}"
            );
        }
        // An option's name is the caller's too.
        let name = "n".repeat(1_000_000);
        let m = match settings(&[(name, OptionValue::Number(1.0))], &Environment::default()) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("… (1000000 characters in all)"), "{m}");
        assert!(m.len() < 700, "{} bytes", m.len());
    }

    #[test]
    fn quoted_values_keep_their_first_characters() {
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let limit = "é".repeat(MAX_QUOTED_CHARS);
        assert_eq!(quoted(&limit), format!("{limit:?}"));
        let over = format!("{limit}x");
        assert_eq!(
            quoted(&over),
            format!("{limit:?}… ({} characters in all)", MAX_QUOTED_CHARS + 1)
        );
    }

    #[test]
    fn messages_name_the_source_and_the_fault() {
        let message = |value: &str, from| match valid_host(value, from) {
            Err(Error::InvalidOption(m)) => m,
            other => panic!("{value:?}: {other:?}"),
        };
        assert_eq!(
            message("[::1]x", HostFrom::Option),
            "option host must be \"host\" or \"host:port\" (like 169.254.169.254 or \
             127.0.0.1:8080), junk after ']': \"[::1]x\""
        );
        assert_eq!(
            message("h:0", HostFrom::Env(ENV_GCE_METADATA_HOST)),
            "environment variable GCE_METADATA_HOST must be \"host\" or \"host:port\" (like \
             169.254.169.254 or 127.0.0.1:8080), with a port from 1 to 65535: \"h:0\""
        );
        for (value, why) in [
            ("http://h", "without a scheme"),
            ("[::1", "unclosed '['"),
            ("[1.2.3.4]", "not an IPv6 address inside [ ]"),
            ("[::1]:", "with a port from 1 to 65535"),
            ("[::1]:+80", "with a port from 1 to 65535"),
            ("h:65536", "with a port from 1 to 65535"),
            ("a_b.c-d:", "with a port from 1 to 65535"),
            (
                "é",
                "with a valid host name or IPv4 address and nothing else",
            ),
            (
                "a..b",
                "with a valid host name or IPv4 address and nothing else",
            ),
        ] {
            assert!(message(value, HostFrom::Option).contains(why), "{value}");
        }
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        let host = |h: &str| valid_host(h, HostFrom::Option);
        for h in [
            "[::]",
            "[::1]:1",
            "[fe80::1]:65535",
            "[::ffff:127.0.0.1]:8080",
            "[1:2:3:4:5:6:7:8]",
        ] {
            assert_eq!(host(h).unwrap(), h);
        }
        for h in [
            "[]",
            "[::1]:0",
            "[::1]]",
            "[[::1]]",
            "[::1%lo]",
            "[1:2:3:4:5:6:7]:80",
            "[::1].",
        ] {
            assert!(host(h).is_err(), "{h}");
        }
    }

    #[test]
    fn url_is_built_as_before() {
        for host in ["169.254.169.254", "[::1]:8080", "metadata.google.internal."] {
            let settings = Settings {
                host: host.to_string(),
                ..Settings::default()
            };
            assert_eq!(settings.url(), format!("http://{host}{TOKEN_PATH}"));
        }
    }

    #[test]
    fn defaults() {
        let s = settings(&[], &Environment::default()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(
            s.url(),
            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }

    #[test]
    fn host_precedence_option_then_yc_then_gce() {
        let both = env(Some("10.0.0.1:81"), Some("10.0.0.2"));
        let host = |o: &[(&str, OptionValue)], e: &Environment| settings(&opts(o), e).unwrap().host;
        let opt = [("host", OptionValue::Text("127.0.0.1:9".into()))];
        assert_eq!(host(&opt, &both), "127.0.0.1:9");
        assert_eq!(host(&[], &both), "10.0.0.1:81");
        assert_eq!(host(&[], &env(None, Some("10.0.0.2"))), "10.0.0.2");
        assert_eq!(host(&[], &env(Some(""), Some("10.0.0.2"))), "10.0.0.2");
        assert_eq!(host(&[], &env(None, None)), DEFAULT_HOST);
    }

    #[test]
    fn accepts_host_forms() {
        for h in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "metadata.google.internal",
            "localhost:80",
            "[::1]",
            "[::1]:8080",
        ] {
            let s = settings(
                &opts(&[("host", OptionValue::Text(h.into()))]),
                &Environment::default(),
            );
            assert_eq!(s.unwrap().host, h);
        }
    }

    #[test]
    fn a_trailing_dot_makes_a_fully_qualified_name() {
        let host = |h: &str| {
            settings(
                &opts(&[("host", OptionValue::Text(h.into()))]),
                &Environment::default(),
            )
            .map(|s| s.host)
        };
        // Kept: the dot is what keeps the resolver off its search list.
        for h in [
            "metadata.google.internal.",
            "metadata.google.internal.:80",
            "metadata.",
        ] {
            assert_eq!(host(h).unwrap(), h);
        }
        // Loopback names and IPv4 addresses lose it.
        for (h, want) in [
            ("localhost.", "localhost"),
            ("localhost.:8080", "localhost:8080"),
            ("LocalHost.:8080", "LocalHost:8080"),
            ("metadata.localhost.:8080", "metadata.localhost:8080"),
            ("127.0.0.1.", "127.0.0.1"),
            ("127.0.0.1.:8080", "127.0.0.1:8080"),
            ("169.254.169.254.", "169.254.169.254"),
        ] {
            assert_eq!(host(h).unwrap(), want, "{h}");
        }
        let env = settings(&[], &env(None, Some("metadata.google.internal.")));
        assert_eq!(env.unwrap().host, "metadata.google.internal.");
        // One dot, after a name: an empty label anywhere else is still wrong.
        for h in [
            ".",
            "..",
            ":80",
            ".:80",
            "a..",
            "a..b",
            ".a",
            "[::1].",
            "[::1].:80",
        ] {
            assert!(host(h).is_err(), "{h}");
        }
        let longest = format!(
            "{}.",
            ["a".repeat(63).as_str(); 4].join(".")[..253].trim_end_matches('.')
        );
        assert!(host(&longest).is_ok(), "{}", longest.len());
        assert!(host(&format!("a.{longest}")).is_err());
    }

    #[test]
    fn rejects_bad_hosts_naming_the_option() {
        for h in [
            "http://x/",
            "",
            "x/y",
            "a:0",
            "a:65536",
            "a:b",
            "[::1",
            "[zz]",
            "a b",
            "a:80/x",
            "user@h",
        ] {
            let m = err_of(&[("host", OptionValue::Text(h.into()))]);
            assert!(m.contains("option host"), "{h}: {m}");
        }
        let bad_env = settings(&[], &env(Some("http://10.0.0.1"), None));
        assert!(matches!(bad_env, Err(Error::InvalidOption(m)) if m.contains("YC_METADATA_ADDR")));
    }

    #[test]
    fn splits_host_and_port() {
        let split = |h: &str| {
            let s = settings(
                &opts(&[("host", OptionValue::Text(h.into()))]),
                &Environment::default(),
            )
            .unwrap();
            let (host, port) = s.host_and_port();
            (host.to_string(), port)
        };
        assert_eq!(split("127.0.0.1:8080"), ("127.0.0.1".into(), 8080));
        assert_eq!(
            split("metadata.google.internal"),
            ("metadata.google.internal".into(), 80)
        );
        assert_eq!(split("[::1]:9"), ("::1".into(), 9));
        assert_eq!(split("[::1]"), ("::1".into(), 80));
    }

    #[test]
    fn rejects_bad_numbers_naming_the_option() {
        assert!(err_of(&[("timeoutMs", OptionValue::Number(-1.0))]).contains("timeoutMs"));
        assert!(err_of(&[("timeoutMs", OptionValue::Text("100".into()))])
            .contains("must be a number, got string"));
        assert!(err_of(&[("deadlineMs", OptionValue::Number(f64::NAN))]).contains("deadlineMs"));
        assert!(err_of(&[("maxAttempts", OptionValue::Number(0.0))]).contains("maxAttempts"));
        assert!(err_of(&[("maxAttempts", OptionValue::Number(2.5))]).contains("maxAttempts"));
        assert!(
            err_of(&[("refreshMarginSeconds", OptionValue::Number(-1.0))])
                .contains("refreshMarginSeconds")
        );
        assert!(err_of(&[("host", OptionValue::Other("object"))]).contains("got object"));
        assert!(err_of(&[("timeoutMS", OptionValue::Number(5.0))])
            .contains("unknown option \"timeoutMS\""));
    }

    #[test]
    fn takes_good_numbers() {
        let s = settings(
            &opts(&[
                ("timeoutMs", OptionValue::Number(250.0)),
                ("deadlineMs", OptionValue::Number(900.0)),
                ("maxAttempts", OptionValue::Number(2.0)),
                ("refreshMarginSeconds", OptionValue::Number(0.0)),
                ("host", OptionValue::Absent),
            ]),
            &Environment::default(),
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.deadline, Duration::from_millis(900));
        assert_eq!(s.max_attempts, 2);
        assert_eq!(s.refresh_margin, Duration::ZERO);
    }
}
