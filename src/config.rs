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
        format!("http://{}{}", self.host, TOKEN_PATH)
    }

    /// Where to connect, for a driver that takes the host and port apart (an IPv6 address
    /// without its brackets). The host was validated, so this only splits it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the wasm driver's
    pub fn host_and_port(&self) -> (&str, u16) {
        let (host, port) = match self.host.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((inside, after)) => (inside, after.strip_prefix(':')),
                None => (rest, None),
            },
            None => match self.host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (self.host.as_str(), None),
            },
        };
        (host, port.and_then(|p| p.parse().ok()).unwrap_or(80))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: DEFAULT_HOST.to_string(),
            timeout: DEFAULT_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
        }
    }
}

/// Builds settings from the constructor's options (name, value pairs) and the environment.
pub fn settings(options: &[(String, OptionValue)], env: &Environment) -> Result<Settings, Error> {
    let mut settings = Settings::default();
    let mut host = None;
    for (name, value) in options {
        if *value == OptionValue::Absent {
            continue;
        }
        match name.as_str() {
            "host" => host = Some(valid_host(text(name, value)?, "option host")?),
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
                    "unknown option {name:?}; the options are host, timeoutMs, deadlineMs, \
                     maxAttempts and refreshMarginSeconds"
                )))
            }
        }
    }
    settings.host = match host {
        Some(host) => host,
        None => host_from_env(env)?,
    };
    Ok(settings)
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
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            return valid_host(value, &format!("environment variable {name}"));
        }
    }
    Ok(DEFAULT_HOST.to_string())
}

/// Accepts `host[:port]`: an IPv4 address or DNS name, or a bracketed IPv6 address.
///
/// A trailing dot marks a fully-qualified name (`metadata.google.internal.`, the form gcp-metadata
/// uses): it is kept, because it is what stops the resolver from trying its search list first
/// (Kubernetes' `ndots: 5`). Two forms lose it, so that what is dialed is what the URL means:
/// - an IPv4 address (`127.0.0.1.:8080`) is that address, as WHATWG URL parsing reads it (Node's
///   `URL`, browsers, and the `url` crate under reqwest); an all-numeric last label is never a
///   DNS name (RFC 1123 2.1), so there is nothing to look up;
/// - `localhost.` and `*.localhost.` are loopback (RFC 6761 6.3) and are answered from /etc/hosts,
///   which glibc matches only without the dot: with it, the lookup fails and goes out to the DNS
///   server instead.
fn valid_host(value: &str, what: &str) -> Result<String, Error> {
    let bad = |why: &str| {
        invalid(format!(
            "{what} must be \"host\" or \"host:port\" (like 169.254.169.254 or 127.0.0.1:8080), \
             {why}: {value:?}"
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

fn invalid(message: String) -> Error {
    Error::InvalidOption(message)
}

fn type_name(value: &OptionValue) -> &'static str {
    match value {
        OptionValue::Absent => "undefined",
        OptionValue::Number(_) => "number",
        OptionValue::Text(_) => "string",
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
        // Why: reqwest's URL reads the dotted IPv4 address as the address already (so the URL in
        // messages now says what is dialed), but keeps `localhost.` for getaddrinfo to look up.
        let dialed = |h: &str| {
            let url = reqwest::Url::parse(&format!("http://{h}/")).unwrap();
            url.host_str().unwrap().to_string()
        };
        assert_eq!(dialed("127.0.0.1.:8080"), "127.0.0.1");
        assert_eq!(dialed("localhost.:8080"), "localhost.");
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
