//! Property tests of the response handling: whatever the metadata service sends (any status, any
//! body) ends in a token or a classified error without a panic, and no error message repeats the
//! token. src/native/transport_properties.rs does the same over real sockets.
//!
//! `PROPTEST_CASES=10000 cargo test properties` runs longer; `fuzz/` has the coverage-guided
//! targets for runs of hours. (Unit tests rather than tests/: an integration test binary would
//! link the N-API registration, whose symbols only Node provides.)

use crate::error::Error;
use crate::fetch::{self, Fetched, MAX_EXPIRES_IN_SECS};
use core::time::Duration;
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

/// `fetch::parse` as it was written over `serde_json::Value`, before src/core/json.rs took its
/// place on the first token's way: the oracle that the new reader must agree with, body for body
/// and message for message.
fn parse_with_serde_json(body: &[u8]) -> Result<Fetched, Error> {
    let bad = |what: &str| Error::BadResponse(what.to_string());
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad("the body is not a JSON object"))?;
    let token = match object.get("access_token") {
        None => return Err(bad("field access_token is missing")),
        Some(serde_json::Value::String(s)) if s.is_empty() => {
            return Err(bad("field access_token is an empty string"))
        }
        Some(serde_json::Value::String(s)) if !fetch::is_b64token(s) => {
            return Err(bad(
                "field access_token is not an RFC 6750 b64token (letters, digits, \
                 - . _ ~ + / and = only at the end)",
            ))
        }
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(Error::BadResponse(format!(
                "field access_token must be a string, got {}",
                json_type(other)
            )))
        }
    };
    let expires_in = match object.get("expires_in") {
        None => return Err(bad("field expires_in is missing")),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(0) => return Err(bad("field expires_in must be positive, got 0")),
            Some(secs) if secs <= MAX_EXPIRES_IN_SECS => Duration::from_secs(secs),
            Some(_) => return Err(bad("field expires_in is implausibly large")),
            None => match n.as_f64() {
                Some(f) if f < 0.0 => {
                    return Err(bad(
                        "field expires_in must be positive, got a negative number",
                    ))
                }
                Some(f) if f >= (MAX_EXPIRES_IN_SECS + 1) as f64 => {
                    return Err(bad("field expires_in is implausibly large"))
                }
                Some(f) if f < 1.0 => {
                    return Err(bad("field expires_in must be at least one second"))
                }
                Some(f) => Duration::from_secs(f as u64),
                None => return Err(bad("field expires_in is not a number of seconds")),
            },
        },
        Some(other) => {
            return Err(Error::BadResponse(format!(
                "field expires_in must be a number, got {}",
                json_type(other)
            )))
        }
    };
    Ok(Fetched { token, expires_in })
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The new reader and the oracle agree on `body`: the same token and lifetime, or the same error
/// and message. And the reader's own view: valid JSON exactly when serde_json says so, with the
/// same numbers (to the bit) in the two fields it keeps.
fn agrees_with_serde_json(body: &[u8]) {
    assert_eq!(
        fetch::parse(body),
        parse_with_serde_json(body),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    let oracle = serde_json::from_slice::<serde_json::Value>(body);
    let ours = crate::json::read(body);
    assert_eq!(
        ours.is_ok(),
        oracle.is_ok(),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    if let (Ok(Some(fields)), Ok(serde_json::Value::Object(object))) = (ours, oracle) {
        for (field, value) in [
            (fields.access_token, object.get("access_token")),
            (fields.expires_in, object.get("expires_in")),
        ] {
            use crate::json::Field;
            match (field, value) {
                (None, None) => {}
                (Some(Field::String(a)), Some(serde_json::Value::String(b))) => assert_eq!(&a, b),
                (Some(Field::Unsigned(a)), Some(serde_json::Value::Number(b))) => {
                    assert_eq!(Some(a), b.as_u64())
                }
                (Some(Field::Float(a)), Some(serde_json::Value::Number(b))) => {
                    assert_eq!(b.as_u64(), None);
                    assert_eq!(Some(a.to_bits()), b.as_f64().map(f64::to_bits), "{a} {b}");
                }
                (Some(a), Some(b)) => assert_eq!(a.type_name(), json_type(b)),
                (a, b) => panic!("{a:?} against {b:?}"),
            }
        }
    }
}

/// A JSON number as a server might write it, tricky ones included: long digit runs (past what a
/// u64 holds), fractions, exponents at and beyond f64's range and i32's, -0, signs.
fn number_text() -> impl Strategy<Value = String> {
    let digits = |max: usize| proptest::string::string_regex(&format!("[0-9]{{1,{max}}}")).unwrap();
    (
        any::<bool>(),
        prop_oneof![
            Just("0".to_string()),
            "[1-9][0-9]{0,3}",
            "[1-9][0-9]{15,24}",
            "[1-9][0-9]{300,320}",
            "(0|[1-9])(0{0,40})"
        ],
        proptest::option::of(prop_oneof![digits(4), digits(25), "0{0,30}[0-9]{1,3}"]),
        proptest::option::of((
            prop_oneof![Just("e"), Just("E")],
            prop_oneof![Just(""), Just("+"), Just("-")],
            prop_oneof![
                "[0-9]{1,3}",
                "30[0-9]",
                "32[0-9]",
                "[0-9]{9,12}",
                "0{0,20}[0-9]{1,3}"
            ],
        )),
    )
        .prop_map(|(negative, int, fraction, exponent)| {
            let mut n = String::new();
            if negative {
                n.push('-');
            }
            n.push_str(&int);
            if let Some(f) = fraction {
                n.push('.');
                n.push_str(&f);
            }
            if let Some((e, sign, digits)) = exponent {
                n.push_str(e);
                n.push_str(sign);
                n.push_str(&digits);
            }
            n
        })
}

/// Bodies written by hand rather than by serde_json: odd numbers, escapes, whitespace, duplicate
/// and escaped keys, nesting, and small breaks in the syntax.
fn written_body() -> impl Strategy<Value = Vec<u8>> {
    let string = prop_oneof![
        "[A-Za-z0-9._~+/=-]{0,12}",
        r#"(\\[\\"/bfnrt]|\\u[0-9a-fA-F]{4}|\\u[dD][89abAB][0-9a-fA-F]{2}(\\u[dD][c-fC-F][0-9a-fA-F]{2})?|[a-z]|é|\x01|\\x|\\u12)*"#,
    ]
    .prop_map(|s| format!("\"{s}\""));
    let leaf = prop_oneof![
        number_text(),
        string.clone(),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("nul".to_string()),
        Just("tru".to_string()),
    ];
    let value = leaf.prop_recursive(4, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[a-z_]{1,12}".prop_map(|k| format!("\"{k}\"")),
                        Just(r#""access\u005ftoken""#.to_string())
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|v| format!(
                "{{{}}}",
                v.into_iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    });
    let key = prop_oneof![
        Just(r#""access_token""#.to_string()),
        Just(r#""expires_in""#.to_string()),
        Just(r#""expires\u005Fin""#.to_string()),
        "[a-z_]{1,10}".prop_map(|k| format!("\"{k}\"")),
    ];
    let whitespace = prop_oneof![
        Just(""),
        Just(" "),
        Just("\n\t\r "),
        Just("\u{a0}"),
        Just("\x0c")
    ];
    (
        prop::collection::vec((key, value, whitespace.clone()), 0..5),
        whitespace,
        proptest::option::of((
            any::<prop::sample::Index>(),
            prop_oneof![
                Just(b','),
                Just(b'}'),
                Just(b'"'),
                Just(b'\\'),
                Just(b'0'),
                Just(b'.'),
                Just(b' '),
                Just(0xff)
            ],
        )),
    )
        .prop_map(|(entries, outer, edit)| {
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}{w}"))
                .collect();
            let mut body = format!("{outer}{{{}}}{outer}", inner.join(",")).into_bytes();
            // One byte changed, inserted or removed: where most syntax errors are.
            if let Some((at, byte)) = edit {
                let i = at.index(body.len() + 1);
                match byte {
                    b' ' if i < body.len() => {
                        body.remove(i);
                    }
                    _ => body.insert(i, byte),
                }
            }
            body
        })
}

#[test]
fn the_reader_agrees_with_serde_json_at_the_edges() {
    let mut bodies: Vec<String> = Vec::new();
    for n in [
        "0",
        "-0",
        "-0.0",
        "0e0",
        "-0e-5",
        "1",
        "-1",
        "1.0",
        "1.5",
        "0.999",
        "0.99999999999999999999",
        "3599.99999999999999999",
        "4294967295",
        "4294967295.9",
        "4294967295.99999999999",
        "4294967296",
        "4294967296.0",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e308",
        "1.7976931348623157e308",
        "1.8e308",
        "1e309",
        "1e-400",
        "-1e-400",
        "0e99999999999",
        "1e99999999999",
        "1e-99999999999",
        "-1e-99999999999",
        "123456789012345678901234567890",
        "1234567890123456789012345678901234567890e-20",
        "0.000000000000000000000000000000000000001e39",
        "2.5e-324",
        "5e-324",
        "1e2147483647",
        "1e2147483648",
        "1e-2147483648",
        "1e-2147483649",
        "00",
        "01",
        "-",
        "-a",
        "1.",
        "1.e5",
        ".5",
        "1e",
        "1e+",
        "+1",
        "1x",
        "0x10",
        "Infinity",
        "NaN",
        "1_000",
    ] {
        bodies.push(format!(r#"{{"access_token":"t","expires_in":{n}}}"#));
        bodies.push(format!(
            r#"{{"access_token":"t","expires_in":3600,"other":[{n}]}}"#
        ));
        bodies.push(n.to_string());
    }
    for s in [
        r#""t1.abc""#,
        r#""t1\u002eabc""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        r#""\ude00""#,
        r#""\ud83dx""#,
        r#""\ud83d\n""#,
        r#""\ud83d\u0041""#,
        r#""\u00""#,
        r#""\x41""#,
        "\"a\x01\"",
        "\"a\x7f\"",
        "\"a\x1f\"",
        "\"\x00\"",
        "\"a\tb\"",
        "\"a\x20\"",
        "\"\u{e9}\"",
        "\"\u{fffd}\"",
        "\"\\\"",
        "\"abc",
        "\"\\u00e9\"",
    ] {
        bodies.push(format!(r#"{{"access_token":{s},"expires_in":60}}"#));
        bodies.push(format!(r#"{{{s}:1,"access_token":"t","expires_in":60}}"#));
    }
    for other in [
        "",
        " ",
        "{}",
        "[]",
        "null",
        "true",
        "\"s\"",
        "{",
        "}",
        "{,}",
        "[1,]",
        "[,1]",
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":}"#,
        r#"{1:2}"#,
        "{}{}",
        "{} x",
        "{}\n",
        " \t\r\n{}",
        "\u{feff}{}",
        r#"{"access_token":"a","access_token":"b","expires_in":5,"expires_in":"x"}"#,
        r#"{"access_token":5,"access_token":"b","expires_in":"x","expires_in":7}"#,
        r#"{"access_token":"a","expires_in":1,"x":nul}"#,
        r#"{"access_token":"a","expires_in":1,"x":truex}"#,
    ] {
        bodies.push(other.to_string());
    }
    for depth in [1, 126, 127, 128, 129] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        bodies.push(nested.clone());
        bodies.push(format!(
            r#"{{"access_token":"a","expires_in":1,"x":{nested}}}"#
        ));
        bodies.push(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)));
    }
    for body in bodies {
        agrees_with_serde_json(body.as_bytes());
        agrees_with_serde_json(&[&b"\xEF\xBB\xBF"[..], body.as_bytes()].concat());
    }
    let raw: &[&[u8]] = &[
        b"{\"access_token\":\"\xff\",\"expires_in\":1}",
        b"{\"\xc3\":1}",
        b"\"\xed\xa0\x80\"",
        b"{\"access_token\":\"t\",\"expires_in\":1}\xff",
    ];
    for body in raw {
        agrees_with_serde_json(body);
    }
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
    fn the_reader_agrees_with_serde_json_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
        agrees_with_serde_json(&body);
    }

    #[test]
    fn the_reader_agrees_with_serde_json_on_bytes_near_json(body in prop::collection::vec(prop::sample::select(b"{}[],:\"\\ 0123456789.eE+-tuflnrsa_\xc3\xa9".to_vec()), 0..48)) {
        agrees_with_serde_json(&body);
    }

    #[test]
    fn the_reader_agrees_with_serde_json_on_any_json(value in json_value()) {
        agrees_with_serde_json(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn the_reader_agrees_with_serde_json_on_token_bodies(body in token_body()) {
        agrees_with_serde_json(&body);
    }

    #[test]
    fn the_reader_agrees_with_serde_json_on_written_bodies(body in written_body()) {
        agrees_with_serde_json(&body);
    }

    #[test]
    fn the_reader_agrees_with_serde_json_on_numbers(n in number_text()) {
        agrees_with_serde_json(format!(r#"{{"access_token":"t","expires_in":{n}}}"#).as_bytes());
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
