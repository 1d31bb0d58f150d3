//! One HTTP attempt, sans I/O: the request to send, and what a response or a transport failure
//! means. The drivers (src/native/, the wasm driver) do the sending and report here: both write
//! `request_head`'s bytes and read the answer with `read_answer` over http1.rs.

use crate::error::Error;
use crate::http1::{Broken, Event, Response};
use crate::json::{self, Field, NotJson};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

/// A token response is a few hundred bytes (Yandex IAM tokens ~300, Google access tokens under
/// 2 KiB); 16 KiB leaves room for any real one and stops a hostile or wrong server at once.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Tokens live 12 hours at most; anything beyond ~136 years is a broken server, and capping it
/// keeps every time computation far from overflow.
pub const MAX_EXPIRES_IN_SECS: u64 = u32::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub token: String,
    pub expires_in: Duration,
}

/// The request every attempt sends: `GET <TOKEN_PATH>` on the configured host with these headers.
/// The metadata service refuses a request without Metadata-Flavor (and one that looks proxied).
pub const REQUEST_HEADERS: [(&str, &str); 2] = [
    ("Metadata-Flavor", "Google"),
    (
        "User-Agent",
        concat!("yc-metadata-token/", env!("CARGO_PKG_VERSION")),
    ),
];

/// The whole request, the same bytes from both drivers. `host` is the configured `host[:port]`,
/// which is what the Host header carries.
pub fn request_head(host: &str, path: &str) -> String {
    let mut head = String::with_capacity(160);
    for part in ["GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\n"] {
        head.push_str(part);
    }
    for (name, value) in REQUEST_HEADERS {
        for part in [name, ": ", value, "\r\n"] {
            head.push_str(part);
        }
    }
    head.push_str("\r\n");
    head
}

/// How an attempt failed below HTTP, as the driver saw it. Each driver maps its own errors (io
/// kinds, Node's `err.code`) onto these; what each means is decided here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Refused,
    NoRoute,
    Reset,
    /// The operating system gave up connecting (not our own timeout).
    ConnectTimedOut,
    /// The name does not exist (NXDOMAIN): another attempt asks the same resolver the same question.
    NameNotFound,
    /// The resolver failed or did not answer: worth another attempt.
    NameLookupFailed,
    /// The connection closed before a whole response arrived (before any byte, or mid-body).
    Closed,
    /// The peer answered with something that is not HTTP: the address points at another service.
    NotHttp,
    /// Any other network error.
    Other,
}

/// The error of an attempt that failed below HTTP.
pub fn transport_error(failure: Transport) -> Error {
    match failure {
        Transport::Refused => Error::Unreachable("connection refused"),
        Transport::NoRoute => Error::Unreachable("no route to host"),
        Transport::Reset => Error::Unreachable("connection reset"),
        Transport::ConnectTimedOut => Error::Unreachable("connection timed out"),
        Transport::NameNotFound => Error::NameNotFound,
        Transport::NameLookupFailed => Error::Unreachable("the name lookup failed"),
        Transport::Closed => {
            Error::Unreachable("connection closed before the whole response arrived")
        }
        Transport::NotHttp => Error::BadResponse(
            "the answer is not HTTP (is another kind of server listening there?)".into(),
        ),
        Transport::Other => Error::Unreachable("network error"),
    }
}

/// What the answer's bytes so far say: nothing yet (None), or the attempt's result and whether its
/// connection can carry the next request. A non-2xx answer ends the attempt at its status line
/// and its connection is closed: its body is never read, so it could not be reused.
pub fn read_answer(response: &mut Response) -> Option<(Result<Fetched, Error>, bool)> {
    let (body, reusable) = read_body(response, classify_status)?;
    Some((body.and_then(|body| parse(&body)), reusable))
}

/// The reading every request shares (the token's above, a metadata key's in metadata.rs): nothing
/// yet (None), or the body once `judge_head` passed the final answer's status and whether it came
/// from a metadata service, and whether the connection can carry the next request. A head that
/// `judge_head` refuses ends the attempt there: its body is never read, so its connection is closed.
pub fn read_body(
    response: &mut Response,
    judge_head: impl Fn(u16, bool) -> Result<(), Error>,
) -> Option<(Result<Vec<u8>, Error>, bool)> {
    loop {
        let failed = |error| Some((Err(error), false));
        match response.next() {
            Ok(Event::More) => return None,
            Ok(Event::Head {
                status,
                from_metadata,
            }) => {
                if let Err(error) = judge_head(status, from_metadata) {
                    return failed(error);
                }
            }
            Ok(Event::Body { body, reusable }) => return Some((Ok(body), reusable)),
            Err(Broken::NotHttp) => return failed(transport_error(Transport::NotHttp)),
            Err(Broken::Closed) => return failed(transport_error(Transport::Closed)),
            Err(Broken::TooLarge) => return failed(too_large_for(response.max_body())),
        }
    }
}

/// A reader for one attempt's answer.
pub fn new_answer() -> Response {
    Response::new(MAX_BODY_BYTES)
}

/// Whether an attempt goes again, once, on a new connection: the kept connection it was sent on
/// ended (closed, reset) before a byte of the answer came. Servers close idle connections at
/// their whim, and one closed just as the request went out says nothing about the service, as
/// browsers and node:http's callers treat it too. Both drivers follow this rule.
pub fn resend_on_new_connection(reused: bool, answer: &Response) -> bool {
    reused && !answer.answered()
}

/// For a body longer than the reader's cap `max_body` (`MAX_BODY_BYTES` for a token), by its
/// Content-Length or as it arrives.
pub fn too_large_for(max_body: usize) -> Error {
    Error::BadResponse(format!("body larger than {max_body} bytes"))
}

/// 2xx passes; everything else becomes its error. A 404 means "no service account" only from a
/// metadata service: a plain web server's 404 page means the address is wrong.
pub fn classify_status(status: u16, from_metadata: bool) -> Result<(), Error> {
    match status {
        200..=299 => Ok(()),
        300..=399 => Err(Error::BadResponse(format!(
            "a redirect (HTTP {status}), which is never followed"
        ))),
        404 if from_metadata => Err(Error::NoServiceAccount),
        404 => Err(Error::NotFoundWithoutFlavor),
        _ => Err(Error::Status(status)),
    }
}

/// Validates `{"access_token": non-empty string, "expires_in": number of seconds >= 1}`. Messages
/// name the field and its JSON type, never its value: the value may be the token.
pub fn parse(body: &[u8]) -> Result<Fetched, Error> {
    let bad = |what: &str| Error::BadResponse(what.to_string());
    // RFC 8259 lets a parser ignore one UTF-8 byte-order mark, and `fetch().json()` does: servers
    // written on Windows or in .NET send it.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let fields = match json::read(body) {
        Ok(Some(fields)) => fields,
        Ok(None) => return Err(bad("the body is not a JSON object")),
        Err(NotJson) => return Err(bad("the body is not valid JSON")),
    };
    let token = match fields.access_token {
        None => return Err(bad("field access_token is missing")),
        Some(Field::String(s)) if s.is_empty() => {
            return Err(bad("field access_token is an empty string"))
        }
        // Anything else could split the Authorization header or add a credential to it.
        Some(Field::String(s)) if !is_b64token(&s) => {
            return Err(bad(
                "field access_token is not an RFC 6750 b64token (letters, digits, \
                 - . _ ~ + / and = only at the end)",
            ))
        }
        Some(Field::String(s)) => s,
        Some(other) => {
            return Err(Error::BadResponse(format!(
                "field access_token must be a string, got {}",
                other.type_name()
            )))
        }
    };
    let expires_in = match fields.expires_in {
        None => return Err(bad("field expires_in is missing")),
        Some(Field::Unsigned(0)) => return Err(bad("field expires_in must be positive, got 0")),
        Some(Field::Unsigned(secs)) if secs <= MAX_EXPIRES_IN_SECS => Duration::from_secs(secs),
        Some(Field::Unsigned(_)) => return Err(bad("field expires_in is implausibly large")),
        // JSON has one number type: `3600.0` (Python's json.dumps of a float) and `3.6e3` are
        // the same 3600 that `fetch().json()` reads. A fraction of a second is dropped rather
        // than refused: rounding down never makes the token look longer-lived than the server
        // said, and a server counting down in floats (3599.87) still works.
        Some(Field::Float(f)) if f < 0.0 => {
            return Err(bad(
                "field expires_in must be positive, got a negative number",
            ))
        }
        // floor(f) > MAX, without float math (the wasm core is no_std).
        Some(Field::Float(f)) if f >= (MAX_EXPIRES_IN_SECS + 1) as f64 => {
            return Err(bad("field expires_in is implausibly large"))
        }
        // -0.0 included.
        Some(Field::Float(f)) if f < 1.0 => {
            return Err(bad("field expires_in must be at least one second"))
        }
        // In range and at least 1, so the cast truncates exactly as floor would.
        Some(Field::Float(f)) => Duration::from_secs(f as u64),
        Some(other) => {
            return Err(Error::BadResponse(format!(
                "field expires_in must be a number, got {}",
                other.type_name()
            )))
        }
    };
    Ok(Fetched { token, expires_in })
}

/// RFC 6750 2.1's `b64token`, `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`: what
/// `Authorization: Bearer` carries as it is. Yandex IAM tokens (`t1.…`) and Google's (`ya29.…`)
/// are such. The one rule for a token, whether fetched here or handed over by a Cloud Functions
/// context (both drivers export it to index.js).
pub fn is_b64token(token: &str) -> bool {
    let bytes = token.as_bytes();
    let end = bytes
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |last| last + 1);
    end > 0
        && bytes[..end].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
#[path = "fetch_properties.rs"]
pub mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(Error::BadResponse(m)) => m,
            other => panic!("{body}: expected BadResponse, got {other:?}"),
        }
    }

    #[test]
    fn the_request_head_is_one_get_with_our_headers() {
        assert_eq!(
            request_head("127.0.0.1:8080", "/a/b"),
            concat!(
                "GET /a/b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nMetadata-Flavor: Google\r\n",
                "User-Agent: yc-metadata-token/",
                env!("CARGO_PKG_VERSION"),
                "\r\n\r\n"
            )
        );
    }

    #[test]
    fn parses_a_token() {
        let f = parse(br#"{"access_token":"t1.abc","expires_in":3600,"token_type":"Bearer"}"#);
        assert_eq!(
            f.unwrap(),
            Fetched {
                token: "t1.abc".into(),
                expires_in: Duration::from_secs(3600)
            }
        );
    }

    #[test]
    fn names_the_wrong_field_without_echoing_it() {
        assert!(bad("not json").contains("not valid JSON"));
        assert!(bad("[1]").contains("not a JSON object"));
        assert!(bad(r#"{"expires_in":1}"#).contains("access_token is missing"));
        assert!(bad(r#"{"access_token":"","expires_in":1}"#).contains("empty"));
        assert!(
            bad(r#"{"access_token":5,"expires_in":1}"#).contains("must be a string, got number")
        );
        assert!(bad(r#"{"access_token":"a\nb","expires_in":1}"#).contains("b64token"));
        assert!(bad(r#"{"access_token":"secret-x"}"#).contains("expires_in is missing"));
        assert!(bad(r#"{"access_token":"secret-x","expires_in":"3600"}"#).contains("got string"));
        assert!(bad(r#"{"access_token":"secret-x","expires_in":0}"#).contains("positive"));
        assert!(bad(r#"{"access_token":"secret-x","expires_in":-5}"#).contains("negative"));
        assert!(bad(r#"{"access_token":"secret-x","expires_in":99999999999}"#).contains("large"));
        for body in [
            r#"{"access_token":"secret-x","expires_in":null}"#,
            r#"{"access_token":"secret-x","expires_in":-1}"#,
        ] {
            assert!(!bad(body).contains("secret-x"));
        }
    }

    /// RFC 6750's `b64token`: what `Authorization: Bearer` carries unchanged. A hostile server
    /// must not smuggle a second credential or a header break through `getAuthorizationHeader()`.
    #[test]
    fn the_token_is_an_rfc_6750_b64token() {
        for token in [
            "t1.9euelZqVkJGOmY6ZzZWMnJWazpCNm-3rnpWak5yQmZCeyc_Kl5fLx8mJkJDl8_dzGUJa-e8kYVZm_t3z9zNHP1r57yRhVmb-zef1656VmsiXyo6Jj8yej5eLko-dko6a7_zF656VmsiXyo6Jj8yej5eLko-dko6a.Wm9u2QJrTW5Z3TVBxZtUqsa-zp1Cg",
            "ya29.a0AfB_byC-Z~x/y+z",
            "abc",
            "abc=",
            "abc==",
            "a-b.c_d~e+f/g",
            "0",
        ] {
            let body = format!(r#"{{"access_token":"{token}","expires_in":60}}"#);
            assert_eq!(parse(body.as_bytes()).unwrap().token, token);
        }
        for token in [
            "abc, Basic YWRtaW46YWRtaW4=",
            "abc def",
            "abc\tdef",
            "abc\r\nX-Evil: 1",
            // A latin1 header writer turns these into CR LF.
            "\u{010D}\u{010A}",
            "t1.é",
            "=",
            "==abc",
            "a=b",
            "abc=d",
            "abc\"",
            "abc;",
            "abc:def",
            "abc\0",
        ] {
            // Still no b64token with the marker after it: the message must not show it.
            for token in [token.to_string(), format!("{token}SECRETxq7")] {
                let body = serde_json::json!({ "access_token": token, "expires_in": 60 });
                let m = bad(&body.to_string());
                assert!(m.contains("RFC 6750 b64token"), "{token:?}: {m}");
                assert!(!m.contains("SECRETxq7"), "{token:?}: {m}");
            }
        }
    }

    fn secs(body: &[u8]) -> u64 {
        match parse(body) {
            Ok(f) => f.expires_in.as_secs(),
            Err(e) => panic!("{}: {e:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn expires_in_is_any_json_number_rounded_down() {
        for (text, want) in [
            ("3600", 3600),
            ("3600.0", 3600),
            ("3.6e3", 3600),
            ("36E2", 3600),
            ("360000e-2", 3600),
            ("3599.999", 3599),
            ("1.5", 1),
            ("1", 1),
            ("4294967295.9", MAX_EXPIRES_IN_SECS),
        ] {
            let body = format!(r#"{{"access_token":"t","expires_in":{text}}}"#);
            assert_eq!(secs(body.as_bytes()), want, "{text}");
        }
        for (text, why) in [
            ("0.0", "at least one second"),
            ("0.999", "at least one second"),
            ("-0.0", "at least one second"),
            ("-0.5", "negative"),
            ("-3600.0", "negative"),
            ("4294967296.0", "large"),
            ("1e300", "large"),
        ] {
            let m = bad(&format!(
                r#"{{"access_token":"secret-x","expires_in":{text}}}"#
            ));
            assert!(m.contains(why), "{text}: {m}");
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_json_is_ignored() {
        let body = b"\xEF\xBB\xBF{\"access_token\":\"t\",\"expires_in\":3600}";
        assert_eq!(secs(body), 3600);
        // Only the one mark RFC 8259 allows for, and only at the start.
        assert!(bad("\u{FEFF}\u{FEFF}{}").contains("not valid JSON"));
        assert!(bad(" \u{FEFF}{}").contains("not valid JSON"));
        assert!(bad("\u{FEFF}").contains("not valid JSON"));
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify_status(200, true), Ok(()));
        assert_eq!(classify_status(404, true), Err(Error::NoServiceAccount));
        assert_eq!(classify_status(503, false), Err(Error::Status(503)));
        assert!(
            matches!(classify_status(302, true), Err(Error::BadResponse(m)) if m.contains("redirect"))
        );
    }

    #[test]
    fn a_404_without_the_flavor_header_is_not_a_metadata_service() {
        let e = classify_status(404, false).unwrap_err();
        assert_eq!(e.code(), "ERR_METADATA_BAD_RESPONSE");
        assert!(!e.is_retryable());
        assert!(e
            .describe("http://h/p", 1)
            .contains("not a metadata service"));
    }

    #[test]
    fn transport_failures_are_retried_unless_they_cannot_change() {
        use Transport::*;
        for t in [
            Refused,
            NoRoute,
            Reset,
            ConnectTimedOut,
            NameLookupFailed,
            Closed,
            Other,
        ] {
            let e = transport_error(t);
            assert_eq!(e.code(), "ERR_METADATA_UNREACHABLE", "{t:?}");
            assert!(e.is_retryable(), "{t:?}");
        }
        let missing = transport_error(NameNotFound);
        assert_eq!(missing.code(), "ERR_METADATA_UNREACHABLE");
        assert!(!missing.is_retryable());
        assert!(missing
            .describe("http://nowhere.example/p", 1)
            .contains("name not found"));
        let not_http = transport_error(NotHttp);
        assert_eq!(not_http.code(), "ERR_METADATA_BAD_RESPONSE");
        assert!(!not_http.is_retryable());
    }
}
