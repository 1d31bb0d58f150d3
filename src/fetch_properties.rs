//! Property tests of the response handling: whatever the metadata service sends (any status, any
//! headers, any body, any way of ending the connection) ends in a token or a classified error,
//! within the attempt's timeout, without a panic, and no error message repeats the token.
//!
//! `PROPTEST_CASES=10000 cargo test properties` runs longer; `fuzz/` has the coverage-guided
//! targets for runs of hours. (Unit tests rather than tests/: an integration test binary would
//! link the N-API registration, whose symbols only Node provides.)

use crate::error::Error;
use crate::fetch::{self, MAX_BODY_BYTES, MAX_EXPIRES_IN_SECS};
use proptest::prelude::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A marker no message template contains, so finding it in a message means the token leaked.
const SECRET: &str = "SECRETxq7";

/// The checks every parsed body must pass, whatever it was.
fn check_parse(body: &[u8]) {
    match fetch::parse(body) {
        Ok(f) => {
            assert!(!f.token.is_empty());
            assert!(!f.token.chars().any(char::is_control));
            let secs = f.expires_in.as_secs();
            assert!((1..=MAX_EXPIRES_IN_SECS).contains(&secs));
            assert_eq!(f.expires_in.subsec_nanos(), 0);
        }
        Err(Error::BadResponse(message)) => {
            assert!(!message.contains(SECRET), "{message}");
            let described = Error::BadResponse(message).describe("http://h/p", 1);
            assert!(!described.contains(SECRET), "{described}");
        }
        Err(other) => panic!("parse returned {other:?}"),
    }
}

/// Any JSON value, the secret sprinkled into its strings.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z]{0,8}".prop_map(|s| Value::String(format!("{SECRET}{s}"))),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A token body with each field present or not, right or wrong.
fn token_body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        "[A-Za-z0-9._-]{0,40}".prop_map(|s| serde_json::Value::String(format!("{SECRET}{s}"))),
        "\\PC{0,20}".prop_map(|s| serde_json::Value::String(format!("{SECRET}{s}"))),
        "[\\x00-\\x1f]{1,3}".prop_map(|s| serde_json::Value::String(format!("{SECRET}{s}"))),
        json_value(),
    ];
    let expires = prop_oneof![
        (0u64..100_000).prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        json_value(),
    ];
    (
        proptest::option::of(token),
        proptest::option::of(expires),
        prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..3),
    )
        .prop_map(|(token, expires, extra)| {
            let mut object: serde_json::Map<String, serde_json::Value> =
                extra.into_iter().collect();
            if let Some(t) = token {
                object.insert("access_token".into(), t);
            }
            if let Some(e) = expires {
                object.insert("expires_in".into(), e);
            }
            serde_json::to_vec(&serde_json::Value::Object(object)).unwrap()
        })
}

#[test]
fn every_status_is_classified() {
    for status in 0..=u16::MAX {
        let result = fetch::classify_status(status);
        match status {
            200..=299 => assert_eq!(result, Ok(())),
            404 => assert_eq!(result, Err(Error::NoServiceAccount)),
            300..=399 => assert!(matches!(result, Err(Error::BadResponse(_)))),
            _ => assert_eq!(result, Err(Error::Status(status))),
        }
        if let Err(e) = result {
            // Only overload and server errors are worth another attempt.
            assert_eq!(e.is_retryable(), status == 429 || status >= 500, "{status}");
            assert!(!e.describe("http://h/p", 3).is_empty());
        }
    }
}

proptest! {
    #[test]
    fn parse_survives_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_parse(&body);
    }

    #[test]
    fn parse_survives_any_json(value in json_value()) {
        check_parse(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn parse_takes_exactly_the_valid_token_bodies(body in token_body()) {
        check_parse(&body);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let valid = matches!(value.get("access_token"), Some(serde_json::Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control))
            && value.get("expires_in").and_then(serde_json::Value::as_f64).map(f64::floor).is_some_and(|n| (1.0..=MAX_EXPIRES_IN_SECS as f64).contains(&n));
        prop_assert_eq!(fetch::parse(&body).is_ok(), valid);
        let with_bom = [&b"\xEF\xBB\xBF"[..], &body].concat();
        prop_assert_eq!(fetch::parse(&with_bom), fetch::parse(&body));
    }
}

/// How the fake server ends its answer.
#[derive(Debug, Clone)]
enum Ending {
    Close,
    /// Keeps the connection open after writing: the client must time out.
    Hang,
    Reset,
}

/// Raw bytes of an HTTP response: mostly well-formed enough to reach the body handling, sometimes
/// not at all.
fn raw_response() -> impl Strategy<Value = (Vec<u8>, Ending)> {
    let status = prop_oneof![Just(200u16), Just(404), Just(503), Just(302), 100u16..1000];
    let body = prop_oneof![
        token_body(),
        prop::collection::vec(any::<u8>(), 0..256),
        (MAX_BODY_BYTES - 2..MAX_BODY_BYTES + 64).prop_map(|n| vec![b' '; n]),
    ];
    let framing = prop_oneof![
        Just("length"),
        Just("wrong-length"),
        Just("chunked"),
        Just("bad-chunked"),
        Just("none"),
    ];
    let extra_headers = prop::collection::vec("[A-Za-z-]{1,12}: [ -~]{0,20}", 0..4);
    let garbage = prop::collection::vec(any::<u8>(), 0..200);
    let ending = prop_oneof![Just(Ending::Close), Just(Ending::Hang), Just(Ending::Reset)];
    prop_oneof![
        8 => (status, body, framing, extra_headers, any::<u16>()).prop_map(|(status, body, framing, extra, wrong)| {
            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n");
            for h in extra {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            let body = match framing {
                "length" => { head.push_str(&format!("Content-Length: {}\r\n", body.len())); body }
                "wrong-length" => { head.push_str(&format!("Content-Length: {wrong}\r\n")); body }
                "chunked" | "bad-chunked" => {
                    head.push_str("Transfer-Encoding: chunked\r\n");
                    let mut out = Vec::new();
                    for piece in body.chunks(97) {
                        let size = if framing == "chunked" { piece.len() } else { piece.len() + usize::from(wrong % 7) };
                        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    out
                }
                _ => body,
            };
            head.push_str("\r\n");
            let mut raw = head.into_bytes();
            raw.extend_from_slice(&body);
            raw
        }),
        1 => garbage,
    ]
    .prop_flat_map(move |raw| (Just(raw), ending.clone()))
}

/// One attempt against a server on 127.0.0.1 that answers `raw` and then ends as told.
async fn attempt_against(
    raw: Vec<u8>,
    ending: Ending,
    timeout: Duration,
) -> Result<fetch::Fetched, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 4096];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(&raw).await;
        match ending {
            Ending::Close => drop(socket.shutdown().await),
            Ending::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
            Ending::Reset => drop(socket.set_zero_linger()),
        }
    });
    let url = reqwest::Url::parse(&url).expect("a loopback URL parses");
    let result = fetch::attempt(&fetch::client(), &url, timeout).await;
    server.abort();
    result
}

/// A short timeout keeps the cases that hang fast.
const FUZZ_TIMEOUT: Duration = Duration::from_millis(150);
/// Scheduling slack on a busy 2-core machine on top of the timeout.
const FUZZ_SLACK: Duration = Duration::from_millis(850);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_response_ends_in_a_token_or_an_error_in_time((raw, ending) in raw_response()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let start = Instant::now();
        let result = runtime.block_on(attempt_against(raw, ending, FUZZ_TIMEOUT));
        let took = start.elapsed();
        prop_assert!(took < FUZZ_TIMEOUT + FUZZ_SLACK, "took {took:?}");
        match result {
            Ok(f) => prop_assert!(!f.token.is_empty()),
            Err(e) => {
                prop_assert!(e.code().starts_with("ERR_METADATA_"));
                prop_assert!(!e.describe("http://h/p", 1).contains(SECRET));
            }
        }
    }
}

#[test]
fn a_well_formed_answer_is_a_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = br#"{"access_token":"abc","expires_in":60}"#;
    let raw = [
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat();
    let fetched = runtime
        .block_on(attempt_against(raw, Ending::Close, Duration::from_secs(2)))
        .unwrap();
    assert_eq!(fetched.token, "abc");
}
