//! An HTTP/1.1 response read from bytes as they arrive, sans I/O: the wasm driver's framing (the
//! native driver reads with hyper). wasm-driver.js writes the request the core built
//! (`fetch::request_head`) to a plain socket and hands every chunk it reads to `Response::feed`,
//! so the first call after load pays neither for loading node:http nor for its first request.
//!
//! Only what a metadata server's answer needs: a status line, headers, and a body framed by
//! Content-Length, chunked coding or the end of the connection (RFC 9112 §6.3). Interim 1xx
//! responses are skipped. Anything else is `Broken::NotHttp`, as hyper's parse errors are.

use alloc::vec::Vec;

/// hyper's own limit is ~400 KB; a metadata server's head is ~300 bytes, and 64 KiB leaves room
/// for any proxy or server in between while a hostile peer cannot make us hold more.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A chunk-size line is a hex number with optional extensions; 1 KiB holds any honest one.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// A token answer of the usual shape, for the wasm driver's warm-up (wasm.rs `warm`).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub const SAMPLE_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 66\r\n\r\n\
{\"access_token\":\"t1.warm\",\"expires_in\":3600,\"token_type\":\"Bearer\"}";

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing new: more bytes (or the end of the connection) are needed.
    More,
    /// The final response's status and whether it came from a metadata service
    /// (`Metadata-Flavor: Google`). Returned once, before its body.
    Head { status: u16, from_metadata: bool },
    /// The whole body. `reusable`: the connection may carry the next request.
    Body { body: Vec<u8>, reusable: bool },
}

/// Why the response cannot be read (fetch.rs turns each into the attempt's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The peer does not speak HTTP/1.x, or broke its framing.
    NotHttp,
    /// The connection ended before the whole response arrived.
    Closed,
    /// The body is longer than the cap.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    /// Body bytes still to come.
    Length(usize),
    /// The next chunk-size line.
    ChunkSize,
    /// Data bytes of the current chunk still to come.
    ChunkData(usize),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    /// Everything up to the end of the connection.
    UntilClose,
    Done,
}

pub struct Response {
    max_body: usize,
    /// Bytes received; those before `pos` are consumed. Consuming moves `pos` rather than the
    /// bytes, so a hostile flood of tiny 1xx heads or trailer lines costs each one O(1), not a
    /// shift of everything behind it; `feed` drops the consumed bytes.
    buf: Vec<u8>,
    pos: usize,
    /// How far past `pos` the search for the end of a head or line got without finding it: a
    /// head trickled in a byte at a time is scanned once, not once per byte.
    scanned: usize,
    phase: Phase,
    body: Vec<u8>,
    closed: bool,
    keep_alive: bool,
}

impl Response {
    pub fn new(max_body: usize) -> Self {
        Response {
            max_body,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            phase: Phase::Head,
            body: Vec::new(),
            closed: false,
            keep_alive: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.scanned = 0;
    }

    /// The peer closed its side of the connection.
    pub fn eof(&mut self) {
        self.closed = true;
    }

    /// Reads on from the bytes fed so far; call again after `Head` for the body.
    pub fn next(&mut self) -> Result<Event, Broken> {
        loop {
            match self.phase {
                Phase::Head => {
                    if !could_be_http(self.unread()) {
                        return Err(Broken::NotHttp);
                    }
                    let end = match head_end(self.unread(), self.scanned) {
                        Ok(end) => end,
                        Err(line_start) => {
                            self.scanned = line_start;
                            if self.unread().len() > MAX_HEAD_BYTES {
                                return Err(Broken::NotHttp);
                            }
                            return self.more();
                        }
                    };
                    if end > MAX_HEAD_BYTES {
                        return Err(Broken::NotHttp);
                    }
                    let head = read_head(&self.unread()[..end]).ok_or(Broken::NotHttp)?;
                    self.consume(end);
                    // 100 Continue, 102, 103 Early Hints: the answer follows (101 is an answer).
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    self.keep_alive = head.keep_alive;
                    self.phase = match head.framing {
                        Framing::Empty => Phase::Length(0),
                        // A length over the cap is refused on the next call, after the status:
                        // an error status decides the attempt whatever its body (as with hyper).
                        Framing::Length(n) => Phase::Length(n),
                        Framing::Chunked => Phase::ChunkSize,
                        Framing::UntilClose => Phase::UntilClose,
                    };
                    return Ok(Event::Head {
                        status: head.status,
                        from_metadata: head.from_metadata,
                    });
                }
                Phase::Length(0) => return Ok(self.finish(true)),
                Phase::Length(left) => {
                    if left > self.max_body - self.body.len() {
                        return Err(Broken::TooLarge);
                    }
                    let take = left.min(self.unread().len());
                    if take == 0 {
                        return self.more();
                    }
                    self.take_body(take)?;
                    self.phase = Phase::Length(left - take);
                }
                Phase::ChunkSize => {
                    let Some(line) = self.line(MAX_CHUNK_LINE_BYTES)? else {
                        return self.more();
                    };
                    // Extensions (";name=value") carry nothing for us.
                    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = parse_number(trim(digits), 16).ok_or(Broken::NotHttp)?;
                    self.phase = match size {
                        0 => Phase::Trailers,
                        _ if size > self.max_body - self.body.len() => {
                            return Err(Broken::TooLarge)
                        }
                        _ => Phase::ChunkData(size),
                    };
                }
                Phase::ChunkData(left) => {
                    let take = left.min(self.unread().len());
                    if take == 0 {
                        return self.more();
                    }
                    self.take_body(take)?;
                    self.phase = match left - take {
                        0 => Phase::ChunkEnd,
                        rest => Phase::ChunkData(rest),
                    };
                }
                Phase::ChunkEnd => match self.line(2)? {
                    Some(line) if line.is_empty() => self.phase = Phase::ChunkSize,
                    Some(_) => return Err(Broken::NotHttp),
                    None => return self.more(),
                },
                Phase::Trailers => match self.line(MAX_HEAD_BYTES)? {
                    Some(line) if line.is_empty() => return Ok(self.finish(true)),
                    Some(_) => {}
                    None => return self.more(),
                },
                Phase::UntilClose => {
                    let take = self.unread().len();
                    self.take_body(take)?;
                    if self.closed {
                        return Ok(self.finish(false));
                    }
                    return Ok(Event::More);
                }
                Phase::Done => return Ok(Event::More),
            }
        }
    }

    /// Waiting for bytes, unless none will come.
    fn more(&self) -> Result<Event, Broken> {
        if self.closed {
            Err(Broken::Closed)
        } else {
            Ok(Event::More)
        }
    }

    fn take_body(&mut self, n: usize) -> Result<(), Broken> {
        if self.body.len() + n > self.max_body {
            return Err(Broken::TooLarge);
        }
        self.body
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.consume(n);
        Ok(())
    }

    fn finish(&mut self, framed: bool) -> Event {
        self.phase = Phase::Done;
        // Bytes after the response are not an answer to anything: that connection is confused.
        let reusable = framed && self.keep_alive && self.unread().is_empty() && !self.closed;
        Event::Body {
            body: core::mem::take(&mut self.body),
            reusable,
        }
    }

    /// The next line without its CRLF (or bare LF), consumed; None while it is incomplete.
    fn line(&mut self, max: usize) -> Result<Option<Vec<u8>>, Broken> {
        let unread = self.unread();
        let Some(lf) = unread[self.scanned..].iter().position(|&b| b == b'\n') else {
            if unread.len() > max {
                return Err(Broken::NotHttp);
            }
            self.scanned = unread.len();
            return Ok(None);
        };
        let lf = self.scanned + lf;
        if lf > max {
            return Err(Broken::NotHttp);
        }
        let line = unread[..lf]
            .strip_suffix(b"\r")
            .unwrap_or(&unread[..lf])
            .to_vec();
        self.consume(lf + 1);
        Ok(Some(line))
    }
}

/// Whether `bytes` can still begin a status line: an SSH banner or a Redis error is refused on
/// its first bytes, not after waiting for a head that never ends.
fn could_be_http(bytes: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = bytes.len().min(PREFIX.len());
    bytes[..n] == PREFIX[..n]
}

/// Where the head ends (after its empty line), searching from `from`, the start of a line; else
/// the start of its last, incomplete line, to search from next time.
fn head_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut start = from;
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + lf];
        if line.is_empty() || line == b"\r" {
            return Ok(start + lf + 1);
        }
        start += lf + 1;
    }
    Err(start)
}

enum Framing {
    /// No body whatever the headers say (1xx, 204, 304).
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    from_metadata: bool,
    keep_alive: bool,
    framing: Framing,
}

fn read_head(head: &[u8]) -> Option<Head> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    // "HTTP/1.1 200 OK": the version, a space, three digits, then a space or the end.
    let status_line = lines.next()?;
    // HTTP/1.0 and HTTP/1.1 only, and a status from 100: what hyper (the native driver) reads.
    let minor = *status_line.get(7)?;
    if !matches!(minor, b'0' | b'1') || status_line.get(8) != Some(&b' ') {
        return None;
    }
    let code = status_line.get(9..12)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(status_line.get(12), None | Some(b' ')) {
        return None;
    }
    let status = parse_number(code, 10)? as u16;
    if status < 100 {
        return None;
    }
    let mut from_metadata = false;
    let mut keep_alive = minor != b'0';
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut encoded = false;
    for line in lines.filter(|line| !line.is_empty()) {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 0x7f) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"metadata-flavor") {
            from_metadata = value.eq_ignore_ascii_case(b"google");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Two different lengths cannot both frame one body (RFC 9112 §6.3).
            let n = parse_number(value, 10)?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoded = true;
            // Chunked counts only as the last coding applied.
            let last = value.split(|&b| b == b',').next_back().map(trim);
            chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if encoded {
        // A coding other than chunked: its end is the connection's (RFC 9112 §6.3, item 4).
        Framing::UntilClose
    } else {
        length.map_or(Framing::UntilClose, Framing::Length)
    };
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    Some(Head {
        status,
        from_metadata,
        keep_alive,
        framing,
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ' && b != b'\t');
    let end = bytes.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &[],
    }
}

/// Digits only (no sign, no spaces), refusing what overflows.
fn parse_number(digits: &[u8], radix: u32) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        let digit = char::from(b).to_digit(radix)?;
        n.checked_mul(radix as usize)?.checked_add(digit as usize)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    const CAP: usize = 100;

    /// Feeds `bytes` (then the end of the connection, if `eof`) in pieces of `step` bytes and
    /// returns every event up to the body or a failure.
    fn read(bytes: &[u8], step: usize, eof: bool) -> Result<Vec<Event>, Broken> {
        let mut r = Response::new(CAP);
        let mut events = Vec::new();
        let mut pieces = bytes.chunks(step.max(1)).peekable();
        loop {
            let event = r.next()?;
            if let Event::Body { .. } = event {
                events.push(event);
                return Ok(events);
            }
            if event != Event::More {
                events.push(event);
                continue;
            }
            match pieces.next() {
                Some(piece) => r.feed(piece),
                None if eof && !r.closed => r.eof(),
                None => return Ok(events),
            }
        }
    }

    /// The same answer however the bytes are split.
    fn every_split(bytes: &str, eof: bool) -> Result<Vec<Event>, Broken> {
        let whole = read(bytes.as_bytes(), bytes.len(), eof);
        for step in 1..bytes.len() {
            assert_eq!(
                read(bytes.as_bytes(), step, eof),
                whole,
                "split every {step}"
            );
        }
        whole
    }

    fn head(status: u16, from_metadata: bool) -> Event {
        Event::Head {
            status,
            from_metadata,
        }
    }

    fn body(text: &str, reusable: bool) -> Event {
        Event::Body {
            body: text.as_bytes().to_vec(),
            reusable,
        }
    }

    #[test]
    fn the_sample_answer_is_a_token_answer() {
        let mut r = Response::new(crate::fetch::MAX_BODY_BYTES);
        r.feed(SAMPLE_ANSWER);
        assert_eq!(r.next(), Ok(head(200, true)));
        let Ok(Event::Body {
            body,
            reusable: true,
        }) = r.next()
        else {
            panic!("no body")
        };
        assert!(crate::fetch::parse(&body).is_ok());
    }

    #[test]
    fn reads_a_length_framed_answer() {
        let r = every_split(
            "HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 5\r\n\r\nhello",
            false,
        );
        assert_eq!(r, Ok(vec![head(200, true), body("hello", true)]));
    }

    #[test]
    fn reads_a_chunked_answer_with_extensions_and_trailers() {
        let r = every_split(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
             3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n",
            false,
        );
        assert_eq!(r, Ok(vec![head(200, false), body("hello", true)]));
    }

    #[test]
    fn reads_to_the_end_of_the_connection_when_unframed() {
        let r = every_split("HTTP/1.0 200 OK\r\n\r\nhello", true);
        assert_eq!(r, Ok(vec![head(200, false), body("hello", false)]));
        // Another coding than chunked last: only the close ends it.
        let r = every_split("HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\nhi", true);
        assert_eq!(r, Ok(vec![head(200, false), body("hi", false)]));
    }

    #[test]
    fn chunked_wins_over_a_length_and_lengths_must_agree() {
        let r = every_split(
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(r, Ok(vec![head(200, false), body("a", true)]));
        let r = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
            99,
            false,
        );
        assert_eq!(r, Ok(vec![head(200, false), body("a", true)]));
        let r = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            99,
            false,
        );
        assert_eq!(r, Err(Broken::NotHttp));
    }

    #[test]
    fn skips_interim_answers_and_reads_bodiless_ones() {
        let r = every_split(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n\
             HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
            false,
        );
        assert_eq!(r, Ok(vec![head(204, false), body("", true)]));
        let r = read(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 99, false);
        assert_eq!(r, Ok(vec![head(101, false), body("", true)]));
    }

    #[test]
    fn many_interim_answers_in_one_read_then_the_answer() {
        let mut bytes = "HTTP/1.1 100 Continue\r\n\r\n".repeat(5000);
        bytes.push_str("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(
            read(bytes.as_bytes(), bytes.len(), false),
            Ok(vec![head(200, false), body("ok", true)])
        );
        assert_eq!(
            read(bytes.as_bytes(), 7, false),
            Ok(vec![head(200, false), body("ok", true)])
        );
    }

    #[test]
    fn connection_headers_decide_reuse() {
        let close =
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(
            every_split(close, false),
            Ok(vec![head(200, false), body("a", false)])
        );
        let kept = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(
            every_split(kept, false),
            Ok(vec![head(200, false), body("a", true)])
        );
        let old = "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na";
        assert_eq!(
            every_split(old, false),
            Ok(vec![head(200, false), body("a", false)])
        );
        // Bytes past the answer: the connection is not trusted again.
        let extra = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", 99, false);
        assert_eq!(extra, Ok(vec![head(200, false), body("a", false)]));
    }

    #[test]
    fn the_flavor_header_is_read_case_insensitively() {
        let r = read(
            b"HTTP/1.1 404 Not Found\r\nmetadata-flavor:  google \r\nContent-Length: 0\r\n\r\n",
            99,
            false,
        );
        assert_eq!(r, Ok(vec![head(404, true), body("", true)]));
        let r = read(
            b"HTTP/1.1 404 Not Found\r\nMetadata-Flavor: Googles\r\nContent-Length: 0\r\n\r\n",
            99,
            false,
        );
        assert_eq!(r, Ok(vec![head(404, false), body("", true)]));
    }

    #[test]
    fn refuses_what_is_not_http_from_its_first_bytes() {
        for banner in [
            "SSH-2.0-OpenSSH_9.6\r\n",
            "-ERR unknown command\r\n",
            "\x16\x03\x01",
            "H",
            "http/1.1 200 OK",
        ] {
            let mut r = Response::new(CAP);
            r.feed(banner.as_bytes());
            let expected = if banner == "H" {
                Ok(Event::More)
            } else {
                Err(Broken::NotHttp)
            };
            assert_eq!(r.next(), expected, "{banner:?}");
        }
    }

    #[test]
    fn refuses_broken_heads_and_framing() {
        for bad in [
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.x 200 OK\r\n\r\n",
            "HTTP/1.2 200 OK\r\n\r\n",
            "HTTP/1.1 000 OK\r\n\r\n",
            "HTTP/1.1 099 OK\r\n\r\n",
            "HTTP/1.1200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naX\r\n",
        ] {
            assert_eq!(
                read(bad.as_bytes(), 99, true),
                Err(Broken::NotHttp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_head_without_end_is_cut_at_the_limit() {
        let mut r = Response::new(CAP);
        r.feed(b"HTTP/1.1 200 OK\r\n");
        let filler = [b'x'; 1024];
        let mut result = Ok(Event::More);
        for _ in 0..=MAX_HEAD_BYTES / filler.len() {
            r.feed(b"X-A: ");
            r.feed(&filler);
            result = r.next();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(Broken::NotHttp));
    }

    #[test]
    fn an_early_end_is_a_closed_connection() {
        let whole = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..whole.len() {
            let r = read(&whole.as_bytes()[..cut], 99, true);
            assert_eq!(r.err(), Some(Broken::Closed), "cut at {cut}");
        }
        let chunked =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        for cut in 0..chunked.len() {
            let r = read(&chunked.as_bytes()[..cut], 99, true);
            assert_eq!(r.err(), Some(Broken::Closed), "cut at {cut}");
        }
    }

    #[test]
    fn the_status_comes_before_a_declared_length_over_the_cap() {
        // The caller classifies the status first: a 503's or a 404's big error page must not
        // turn it into a body-too-large error.
        for status in [503, 404, 302, 200] {
            let mut r = Response::new(CAP);
            r.feed(
                format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n", CAP + 1).as_bytes(),
            );
            assert_eq!(r.next(), Ok(head(status, false)), "{status}");
            assert_eq!(r.next(), Err(Broken::TooLarge), "{status}");
        }
    }

    #[test]
    fn bodies_over_the_cap_are_refused_as_soon_as_known() {
        let declared = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", CAP + 1);
        assert_eq!(read(declared.as_bytes(), 99, false), Err(Broken::TooLarge));
        let at_cap = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {CAP}\r\n\r\n{}",
            "a".repeat(CAP)
        );
        assert!(matches!(read(at_cap.as_bytes(), 7, false), Ok(events) if events.len() == 2));
        let chunk = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            CAP + 1
        );
        assert_eq!(read(chunk.as_bytes(), 99, false), Err(Broken::TooLarge));
        let chunks: String = (0..=CAP / 10).map(|_| "a\r\naaaaaaaaaa\r\n").collect();
        let many = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}");
        assert_eq!(read(many.as_bytes(), 13, false), Err(Broken::TooLarge));
        let endless = format!("HTTP/1.0 200 OK\r\n\r\n{}", "a".repeat(CAP + 1));
        assert_eq!(read(endless.as_bytes(), 13, false), Err(Broken::TooLarge));
    }
}
