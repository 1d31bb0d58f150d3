//! Property tests of one native attempt over a real socket: whatever a server on loopback sends
//! (any status, any headers, any body, any way of ending the connection) ends in a token or a
//! classified error within the attempt's timeout, without a panic, and no error message repeats
//! the token.

use crate::error::Error;
use crate::fetch::properties::{token_body, SECRET};
use crate::fetch::{self, MAX_BODY_BYTES};
use crate::native::transport;
use proptest::prelude::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let port = listener.local_addr().unwrap().port();
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
    let request = fetch::request_head(&format!("127.0.0.1:{port}"), "/token").into_bytes();
    let target = transport::Target::new("127.0.0.1", port, request);
    let (result, _) = transport::attempt(&target, timeout).await;
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

#[test]
fn a_peer_that_is_not_http_is_a_bad_response_and_closing_early_is_unreachable() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |raw: &[u8], ending| {
        runtime
            .block_on(attempt_against(
                raw.to_vec(),
                ending,
                Duration::from_secs(2),
            ))
            .unwrap_err()
    };
    for banner in [
        &b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"[..],
        b"-ERR unknown command 'GET'\r\n",
        b"\x00\x01\x02garbage\xff\r\n\r\n",
    ] {
        let e = run(banner, Ending::Close);
        assert_eq!(e.code(), "ERR_METADATA_BAD_RESPONSE", "{banner:?}: {e:?}");
        assert!(!e.is_retryable());
    }
    assert_eq!(run(b"", Ending::Close).code(), "ERR_METADATA_UNREACHABLE");
    let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"access_token\"";
    let e = run(cut, Ending::Close);
    assert_eq!(e.code(), "ERR_METADATA_UNREACHABLE");
    assert!(e.is_retryable());
}

#[test]
fn a_404_counts_as_no_service_account_only_with_the_flavor_header() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = |flavor: &str| {
        let raw = format!("HTTP/1.1 404 Not Found\r\n{flavor}Content-Length: 9\r\n\r\nNot Found");
        runtime
            .block_on(attempt_against(
                raw.into_bytes(),
                Ending::Close,
                Duration::from_secs(2),
            ))
            .unwrap_err()
    };
    assert_eq!(
        answer("Metadata-Flavor: Google\r\n"),
        Error::NoServiceAccount
    );
    assert_eq!(answer("").code(), "ERR_METADATA_BAD_RESPONSE");
}
