//! The native driver's one HTTP attempt: reqwest on tokio. It sends what fetch.rs says to send,
//! and reports what came back in fetch.rs's terms; it decides nothing itself.

use crate::error::Error;
use crate::fetch::{self, Fetched, Transport, MAX_BODY_BYTES};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// A client that never uses a proxy (a proxy would see the token) and never follows a redirect
/// (the Location would get the Metadata-Flavor header and the token request).
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in fetch::REQUEST_HEADERS {
        headers.insert(name, reqwest::header::HeaderValue::from_static(value));
    }
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        // One kept-alive connection is all a single-flight client ever needs.
        .pool_max_idle_per_host(1)
        .dns_resolver(std::sync::Arc::new(ThreadPerLookup))
        .build()
        .expect("a plain HTTP client without TLS always builds")
}

/// One attempt, bounded by `timeout` from the name lookup to the last byte of the body.
pub async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    timeout: Duration,
) -> Result<Fetched, Error> {
    tokio::time::timeout(timeout, attempt_untimed(client, url))
        .await
        .unwrap_or(Err(Error::Timeout))
}

async fn attempt_untimed(client: &reqwest::Client, url: &reqwest::Url) -> Result<Fetched, Error> {
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| fetch::transport_error(failure(&e)))?;
    let from_metadata = response
        .headers()
        .get("metadata-flavor")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"));
    fetch::classify_status(response.status().as_u16(), from_metadata)?;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(fetch::too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch::transport_error(failure(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(fetch::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    fetch::parse(&body)
}

/// What went wrong on the wire, from the innermost error that says: our own lookup's, hyper's
/// (an answer that does not parse as HTTP), or the I/O error's kind.
fn failure(error: &reqwest::Error) -> Transport {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(lookup) = e.downcast_ref::<LookupFailed>() {
            return lookup.0;
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_parse() || hyper.is_parse_status() || spoke_first(hyper) {
                return Transport::NotHttp;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                ConnectionRefused => Transport::Refused,
                HostUnreachable | NetworkUnreachable => Transport::NoRoute,
                ConnectionReset | ConnectionAborted => Transport::Reset,
                TimedOut => Transport::ConnectTimedOut,
                // hyper's body decoder: a chunk size or chunk end that is not one (a socket
                // never fails with these kinds), and a body cut short by the close. The wasm
                // driver's reader (http1.rs) calls these NotHttp and Closed.
                InvalidData | InvalidInput => Transport::NotHttp,
                UnexpectedEof => Transport::Closed,
                _ => Transport::Other,
            };
        }
        source = e.source();
    }
    if error.is_connect() {
        Transport::Other
    } else {
        Transport::Closed
    }
}

/// Bytes from the peer before our request went out (hyper's "unexpected message"): an HTTP server
/// never speaks first, and an SSH or Redis banner that wins the race against the request is not
/// HTTP any more than one read after it (seen in the suite under load: three attempts, each a
/// "closed connection", before one saw the parse error). hyper has no predicate for this kind; its
/// message is pinned by Cargo.lock, and errors.test.js's non-HTTP peers check the outcome.
fn spoke_first(error: &hyper::Error) -> bool {
    error
        .to_string()
        .starts_with("received unexpected message from connection")
}

/// Name lookups, each name on a thread of its own. The system resolver blocks; on a shared pool one
/// hung lookup would hold up every later one (another provider's, of another name). An attempt
/// that times out abandons its lookup, but the next attempt for the same name joins it rather than
/// asking again: a resolver that answers in 1.2 s then still yields a token within the deadline,
/// though every attempt's timeout is 1 s. Hosts given as IP addresses never get here.
struct ThreadPerLookup;

type Lookup = Result<Vec<SocketAddr>, Transport>;

/// The lookups under way, by name, with the attempts waiting for each.
fn pending() -> &'static Mutex<HashMap<String, Vec<oneshot::Sender<Lookup>>>> {
    static PENDING: OnceLock<Mutex<HashMap<String, Vec<oneshot::Sender<Lookup>>>>> =
        OnceLock::new();
    PENDING.get_or_init(Mutex::default)
}

#[derive(Debug)]
struct LookupFailed(Transport);

impl std::fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "name lookup failed: {:?}", self.0)
    }
}

impl std::error::Error for LookupFailed {}

impl reqwest::dns::Resolve for ThreadPerLookup {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = pending().lock().unwrap_or_else(|p| p.into_inner());
            let waiting = pending.entry(host.clone()).or_default();
            waiting.push(tx);
            waiting.len() == 1
        };
        if first {
            let spawned = std::thread::Builder::new()
                .name("yc-metadata-token-dns".into())
                .spawn({
                    let host = host.clone();
                    move || answer(&host, lookup(&host))
                });
            if spawned.is_err() {
                answer(&host, Err(Transport::NameLookupFailed));
            }
        }
        Box::pin(async move {
            match rx.await.unwrap_or(Err(Transport::NameLookupFailed)) {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(kind) => Err(Box::new(LookupFailed(kind)) as _),
            }
        })
    }
}

/// Hands a finished lookup to every attempt waiting for it (the ones that gave up are gone).
fn answer(host: &str, result: Lookup) {
    let waiting = pending()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(host)
        .unwrap_or_default();
    for tx in waiting {
        let _ = tx.send(result.clone());
    }
}

fn lookup(host: &str) -> Lookup {
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) if name_does_not_exist(&e) => Err(Transport::NameNotFound),
        Err(_) => Err(Transport::NameLookupFailed),
    }
}

/// std reports getaddrinfo's failures in words (gai_strerror) on Unix and as WSA codes on Windows;
/// these are the "no such name" ones, as glibc, musl and macOS word them.
fn name_does_not_exist(e: &std::io::Error) -> bool {
    const WSAHOST_NOT_FOUND: i32 = 11001;
    const WSANO_DATA: i32 = 11004;
    if cfg!(windows) {
        return matches!(e.raw_os_error(), Some(WSAHOST_NOT_FOUND | WSANO_DATA));
    }
    let text = e.to_string();
    [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
        "nodename nor servname provided",
    ]
    .iter()
    .any(|words| text.contains(words))
}

#[cfg(test)]
#[path = "transport_properties.rs"]
mod properties;
