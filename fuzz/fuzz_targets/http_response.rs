//! Any bytes as the whole HTTP response (status line, headers, body) from a server on loopback:
//! one attempt ends in a token or an error within its timeout, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(dead_code)]
#[path = "../../src/core/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../../src/core/fetch.rs"]
mod fetch;

/// Short, so inputs that leave the response unfinished cost little.
const TIMEOUT: Duration = Duration::from_millis(100);
/// The attempt must end this soon after its timeout, however busy the machine.
const SLACK: Duration = Duration::from_secs(2);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

fuzz_target!(|raw: &[u8]| {
    let raw = raw.to_vec();
    let start = Instant::now();
    let result = runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(&raw).await;
            let _ = socket.shutdown().await;
        });
        let result = fetch::attempt(&fetch::client(), &url, TIMEOUT).await;
        server.abort();
        result
    });
    assert!(start.elapsed() < TIMEOUT + SLACK, "took {:?}", start.elapsed());
    if let Ok(f) = result {
        assert!(!f.token.is_empty());
    }
});
