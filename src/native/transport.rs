//! The native driver's one HTTP attempt: a tokio socket that writes the core's request bytes
//! (`fetch::request_head`) and hands every read to the core's reader (`fetch::read_answer`, over
//! http1.rs), the same as the wasm driver does over `node:net`. It decides nothing itself: no
//! proxy can apply and no redirect is followed, since nothing here would do either.

use crate::error::Error;
use crate::fetch::{self, Fetched, Transport};
use crate::http1::Response;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A read's buffer: a token answer (~500 bytes) comes in one read; the body cap is 16 KiB.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Where a provider's attempts go, and what they send.
pub struct Target {
    /// As configured (a name, an IPv4 address, or an IPv6 address without brackets).
    host: String,
    port: u16,
    request: Vec<u8>,
}

impl Target {
    pub fn new(host: &str, port: u16, request: Vec<u8>) -> Target {
        Target {
            host: host.to_owned(),
            port,
            request,
        }
    }

    /// The host (an IPv6 address without brackets) and port the attempts connect to.
    pub fn address(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    /// The key of the connection kept for this address.
    fn key(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

/// The connections kept for the next request, one per address: the metadata service is one
/// address, and a second kept connection would never be used. They live on the runtime thread's
/// reactor (driver.rs), where every attempt runs.
fn idle() -> &'static Mutex<HashMap<(String, u16), TcpStream>> {
    static IDLE: OnceLock<Mutex<HashMap<(String, u16), TcpStream>>> = OnceLock::new();
    IDLE.get_or_init(Mutex::default)
}

/// What an attempt came to, and the HTTP status of its answer when the core read one (the wasm
/// driver reports the same: a status only with a result read from an answer).
pub type Attempted = (Result<Fetched, Error>, Option<u16>);

/// One attempt, bounded by `timeout` from the name lookup to the last byte of the body.
pub async fn attempt(target: &Target, timeout: Duration) -> Attempted {
    tokio::time::timeout(timeout, attempt_untimed(target))
        .await
        .unwrap_or((Err(Error::Timeout), None))
}

async fn attempt_untimed(target: &Target) -> Attempted {
    let kept = idle()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&target.key());
    if let Some(stream) = kept.filter(still_idle) {
        if let Some(attempted) = exchange(stream, target, true).await {
            return attempted;
        }
    }
    let stream = match connect(target).await {
        Ok(stream) => stream,
        Err(failure) => return (Err(fetch::transport_error(failure)), None),
    };
    exchange(stream, target, false)
        .await
        .unwrap_or((Err(fetch::transport_error(Transport::Closed)), None))
}

/// Sends the request on `stream` and reads the answer; None when the core says to send it again
/// on a new connection (a kept one that ended before answering).
async fn exchange(mut stream: TcpStream, target: &Target, reused: bool) -> Option<Attempted> {
    let mut answer = fetch::new_answer();
    let read = converse(
        &mut stream,
        &target.request,
        &mut answer,
        fetch::read_answer,
    )
    .await;
    let (result, status, reusable) = match read {
        Ok((result, reusable)) => (result, answer.status(), reusable),
        Err(kind) => (Err(fetch::transport_error(kind)), None, false),
    };
    if result.is_err() && fetch::resend_on_new_connection(reused, &answer) {
        return None;
    }
    if reusable {
        let mut idle = idle().lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(target.key()).or_insert(stream);
    }
    Some((result, status))
}

/// Writes `request` on `stream` and hands every read to `answer` until `read` says it is over;
/// the failure below HTTP that stopped it otherwise. Every request of the driver goes this way.
async fn converse<T>(
    stream: &mut TcpStream,
    request: &[u8],
    answer: &mut Response,
    mut read: impl FnMut(&mut Response) -> Option<T>,
) -> Result<T, Transport> {
    let broken = |e: std::io::Error| io_failure(&e);
    stream.write_all(request).await.map_err(broken)?;
    let mut buffer = [0u8; READ_BUFFER_BYTES];
    loop {
        if let Some(done) = read(answer) {
            return Ok(done);
        }
        match stream.read(&mut buffer).await.map_err(broken)? {
            0 => {
                answer.eof();
                // The reader ends every answer at the end of its connection.
                return read(answer).ok_or(Transport::Closed);
            }
            n => answer.feed(&buffer[..n]),
        }
    }
}

/// How an exchange on a connection of its own failed: the time ran out, or below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    TimedOut,
    Transport(Transport),
}

/// One request on a connection of its own, closed when done, bounded by `timeout` from the name
/// lookup to the end: `read` is asked after every read of the socket until it says the answer is
/// over. For the metadata reads and the probe (src/native/metadata.rs), which are few: a kept
/// connection would buy them nothing.
pub async fn exchange_alone<T>(
    target: &Target,
    timeout: Duration,
    mut answer: Response,
    read: impl FnMut(&mut Response) -> Option<T>,
) -> Result<T, Failed> {
    let exchange = async {
        let mut stream = connect(target).await.map_err(Failed::Transport)?;
        converse(&mut stream, &target.request, &mut answer, read)
            .await
            .map_err(Failed::Transport)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(Failed::TimedOut))
}

/// Whether a kept connection is as it was left: bytes or an end that came while it was idle are
/// not an answer to anything, and it cannot be trusted with the next request.
fn still_idle(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A connection to the target's first address that takes one, in the order the resolver gave
/// them; the error of the last one tried when none does.
async fn connect(target: &Target) -> Result<TcpStream, Transport> {
    let addresses = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => resolve(&target.host, target.port).await?,
    };
    let mut failure = Transport::Other;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // The request is one write; nothing gains from waiting to batch it.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => failure = io_failure(&e),
        }
    }
    Err(failure)
}

/// What an I/O error on the socket means, in the core's terms.
fn io_failure(error: &std::io::Error) -> Transport {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => Transport::Refused,
        HostUnreachable | NetworkUnreachable => Transport::NoRoute,
        ConnectionReset | ConnectionAborted | BrokenPipe => Transport::Reset,
        TimedOut => Transport::ConnectTimedOut,
        UnexpectedEof => Transport::Closed,
        _ => Transport::Other,
    }
}

/// Name lookups, each name on a thread of its own. The system resolver blocks; on a shared pool one
/// hung lookup would hold up every later one (another provider's, of another name). An attempt
/// that times out abandons its lookup, but the next attempt for the same name joins it rather than
/// asking again: a resolver that answers in 1.2 s then still yields a token within the deadline,
/// though every attempt's timeout is 1 s. Hosts given as IP addresses never get here.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Transport> {
    let (tx, rx) = oneshot::channel();
    let first = {
        let mut pending = pending().lock().unwrap_or_else(|p| p.into_inner());
        let waiting = pending.entry(host.to_owned()).or_default();
        waiting.push(tx);
        waiting.len() == 1
    };
    if first {
        let spawned = std::thread::Builder::new()
            .name("yc-metadata-token-dns".into())
            .spawn({
                let host = host.to_owned();
                move || answer(&host, lookup(&host))
            });
        if spawned.is_err() {
            answer(host, Err(Transport::NameLookupFailed));
        }
    }
    let addresses = rx.await.unwrap_or(Err(Transport::NameLookupFailed))?;
    Ok(addresses
        .into_iter()
        .map(|a| SocketAddr::new(a.ip(), port))
        .collect())
}

type Lookup = Result<Vec<SocketAddr>, Transport>;

/// The lookups under way, by name, with the attempts waiting for each.
fn pending() -> &'static Mutex<HashMap<String, Vec<oneshot::Sender<Lookup>>>> {
    static PENDING: OnceLock<Mutex<HashMap<String, Vec<oneshot::Sender<Lookup>>>>> =
        OnceLock::new();
    PENDING.get_or_init(Mutex::default)
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
