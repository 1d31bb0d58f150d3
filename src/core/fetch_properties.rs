//! Property tests of the response handling: whatever the metadata service sends (any status, any
//! body) ends in a token or a classified error without a panic, and no error message repeats the
//! token. src/native/transport_properties.rs does the same over real sockets.
//!
//! `PROPTEST_CASES=10000 cargo test properties` runs longer; `fuzz/` has the coverage-guided
//! targets for runs of hours. (Unit tests rather than tests/: an integration test binary would
//! link the N-API registration, whose symbols only Node provides.)

use crate::error::Error;
use crate::fetch::{self, MAX_EXPIRES_IN_SECS};
use proptest::prelude::*;

/// A marker no message template contains, so finding it in a message means the token leaked.
pub const SECRET: &str = "SECRETxq7";

/// The checks every parsed body must pass, whatever it was.
fn check_parse(body: &[u8]) {
    match fetch::parse(body) {
        Ok(f) => {
            assert!(b64token(&f.token), "{:?}", f.token);
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

/// RFC 6750's `b64token`, read off its grammar: its characters, at least one before the `=`s,
/// and nothing after the first `=` but more of them.
fn b64token(s: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let padding_at_end = s
        .find('=')
        .is_none_or(|i| i > 0 && s[i..].bytes().all(|b| b == b'='));
    !s.is_empty() && s.chars().all(allowed) && padding_at_end
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
pub fn token_body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        "[A-Za-z0-9._-]{0,40}".prop_map(|s| serde_json::Value::String(format!("{SECRET}{s}"))),
        "[A-Za-z0-9._~+/=, -]{0,12}"
            .prop_map(|s| serde_json::Value::String(format!("{SECRET}{s}"))),
        "[=~+/]{0,3}[A-Za-z0-9]{0,3}={0,3}".prop_map(serde_json::Value::String),
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
        let result = fetch::classify_status(status, true);
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
        let valid = matches!(value.get("access_token"), Some(serde_json::Value::String(s)) if b64token(s))
            && value.get("expires_in").and_then(serde_json::Value::as_f64).map(f64::floor).is_some_and(|n| (1.0..=MAX_EXPIRES_IN_SECS as f64).contains(&n));
        prop_assert_eq!(fetch::parse(&body).is_ok(), valid);
        let with_bom = [&b"\xEF\xBB\xBF"[..], &body].concat();
        prop_assert_eq!(fetch::parse(&with_bom), fetch::parse(&body));
    }
}
