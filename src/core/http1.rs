//! An HTTP/1.1 response read from bytes as they arrive, sans I/O: how both drivers read the
//! answer. Each driver writes the request the core built (`fetch::request_head`) to a plain
//! socket and hands every chunk it reads to `Response::feed`; `fetch::read_answer` turns the
//! events into the attempt's result. One reader means one outcome for the same bytes, whichever
//! driver, however the bytes are split.
//!
//! The rules are RFC 9112/9110's, and hyper's where those leave a choice (issue 18 lists each):
//! - Strict framing: one valid Content-Length (a list of equal values counts as one), or chunked
//!   as the last transfer coding, else the body runs to the close. Chunk lines and trailers end
//!   in CRLF; a Transfer-Encoding on HTTP/1.0, a chunk size that is not hex, or data not followed
//!   by CRLF are broken framing.
//! - Every line of a head is judged as soon as its LF arrives, so a broken head fails at once,
//!   whatever the reads: field names are tokens, values hold no control but HTAB (obs-text is
//!   allowed), the reason phrase likewise. Empty lines before a status line are skipped.
//! - `Connection: close` anywhere is final. 1xx answers but 101 end at their empty line whatever
//!   their fields, and are skipped.
//!
//! Anything else is `Broken::NotHttp`.

use alloc::vec::Vec;

/// A metadata server's head is ~300 bytes; 64 KiB leaves room for any proxy or server in between
/// while a hostile peer cannot make us hold more. Counted from the first byte of each head
/// (leading empty lines included), and for a chunked body's trailers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// hyper's limit; a metadata server sends ~5 fields, and a flood of tiny ones is not an answer.
pub const MAX_FIELDS: usize = 100;
/// A chunk-size line is a hex number with optional extensions; 1 KiB holds any honest one.
const MAX_CHUNK_LINE_BYTES: usize = 1024;

/// A token answer of the usual shape, for the wasm driver's warm-up (src/wasm `warm`).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub const SAMPLE_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nMetadata-Flavor: Google\r\nContent-Length: 66\r\n\r\n\
{\"access_token\":\"t1.warm\",\"expires_in\":3600,\"token_type\":\"Bearer\"}";

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing new: more bytes (or the end of the connection) are needed.
    More,
    /// The final response's status and whether it came from a metadata service (its one
    /// `Metadata-Flavor` field says `Google`). Returned once, before its body.
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
    /// Lines of a head, up to its empty line.
    Head,
    /// Body bytes still to come (u64: a valid length of 4 GiB or more is still a number on
    /// wasm32, and refused for the cap, not as broken framing).
    Length(u64),
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
    /// bytes, so a hostile flood of tiny lines costs each one O(1), not a shift of everything
    /// behind it; `feed` drops the consumed bytes.
    buf: Vec<u8>,
    pos: usize,
    /// How far past `pos` the search for the end of a line got without finding it: a line
    /// trickled in a byte at a time is scanned once, not once per byte.
    scanned: usize,
    phase: Phase,
    /// The head being read (its lines are judged and consumed one by one).
    head: Head,
    /// Bytes of the current head, or of the trailers, so far.
    section_bytes: usize,
    body: Vec<u8>,
    /// A byte of the answer arrived.
    received: bool,
    closed: bool,
    keep_alive: bool,
    /// The final answer's status, once its head is read (for observers: see `status`).
    status: Option<u16>,
}

/// What the lines of a head said so far.
#[derive(Default)]
struct Head {
    /// (status, HTTP/1.1) once the status line is read.
    status: Option<(u16, bool)>,
    fields: usize,
    flavor_fields: usize,
    flavor_google: bool,
    /// A Content-Length field: Some(Some(n)) valid so far, Some(None) invalid or disagreeing.
    length: Option<Option<u64>>,
    /// A Transfer-Encoding field, and whether chunked is the last coding of the combined value.
    encoded: bool,
    chunked: bool,
    close: bool,
    keep_alive_token: bool,
}

impl Response {
    pub fn new(max_body: usize) -> Self {
        Response {
            max_body,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            phase: Phase::Head,
            head: Head::default(),
            section_bytes: 0,
            body: Vec::new(),
            received: false,
            closed: false,
            keep_alive: false,
            status: None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.received |= !bytes.is_empty();
    }

    /// The body cap this reader was made with (for the error that names it).
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Whether any byte of the answer has arrived (a kept connection that closes before one did
    /// was closed by the server while idle: see `fetch::resend_on_new_connection`).
    pub fn answered(&self) -> bool {
        self.received
    }

    /// The final answer's status once its head has been read (interim 1xx heads do not count).
    pub fn status(&self) -> Option<u16> {
        self.status
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
                    if self.head.status.is_none() {
                        self.skip_empty_lines()?;
                        if !could_be_http(self.unread()) {
                            return Err(Broken::NotHttp);
                        }
                    }
                    let Some(line) = self.section_line(false)? else {
                        return self.more();
                    };
                    if let Some(event) = self.head_line(&line)? {
                        return Ok(event);
                    }
                }
                Phase::Length(0) => return Ok(self.finish(true)),
                Phase::Length(left) => {
                    let room = (self.max_body - self.body.len()) as u64;
                    if left > room {
                        return Err(Broken::TooLarge);
                    }
                    // `left` fits the cap, so it fits a usize.
                    let take = (left as usize).min(self.unread().len());
                    if take == 0 {
                        return self.more();
                    }
                    self.take_body(take)?;
                    self.phase = Phase::Length(left - take as u64);
                }
                Phase::ChunkSize | Phase::ChunkData(_) | Phase::ChunkEnd | Phase::Trailers => {
                    if let Some(event) = self.chunked()? {
                        return Ok(event);
                    }
                }
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

    /// One step of a chunked body: a chunk-size line, chunk data, the CRLF after it, or a trailer
    /// line; Some when it ends the read. Out of line: V8 compiles a wasm function whole at its
    /// first call, and a token answer with a Content-Length (every metadata service's) then
    /// never compiles this.
    #[inline(never)]
    fn chunked(&mut self) -> Result<Option<Event>, Broken> {
        match self.phase {
            Phase::ChunkSize => {
                let Some(line) = self.crlf_line(MAX_CHUNK_LINE_BYTES)? else {
                    return self.more().map(Some);
                };
                let size = chunk_size(&line).ok_or(Broken::NotHttp)?;
                self.phase = match size {
                    0 => {
                        self.section_bytes = 0;
                        self.head.fields = 0;
                        Phase::Trailers
                    }
                    _ if size > (self.max_body - self.body.len()) as u64 => {
                        return Err(Broken::TooLarge)
                    }
                    _ => Phase::ChunkData(size as usize),
                };
            }
            Phase::ChunkData(left) => {
                let take = left.min(self.unread().len());
                if take == 0 {
                    return self.more().map(Some);
                }
                self.take_body(take)?;
                self.phase = match left - take {
                    0 => Phase::ChunkEnd,
                    rest => Phase::ChunkData(rest),
                };
            }
            Phase::ChunkEnd => {
                let unread = self.unread();
                if unread.first().is_some_and(|&b| b != b'\r')
                    || unread.get(1).is_some_and(|&b| b != b'\n')
                {
                    return Err(Broken::NotHttp);
                }
                if unread.len() < 2 {
                    return self.more().map(Some);
                }
                self.consume(2);
                self.phase = Phase::ChunkSize;
            }
            Phase::Trailers => {
                let Some(line) = self.section_line(true)? else {
                    return self.more().map(Some);
                };
                if line.is_empty() {
                    return Ok(Some(self.finish(true)));
                }
                self.head.fields += 1;
                if self.head.fields > MAX_FIELDS {
                    return Err(Broken::NotHttp);
                }
                field(&line).ok_or(Broken::NotHttp)?;
            }
            _ => {}
        }
        Ok(None)
    }

    /// One line of a head, judged: the status line, a field, or the empty line that ends it
    /// (then the final answer's `Head` event; an interim 1xx starts the next head).
    fn head_line(&mut self, line: &[u8]) -> Result<Option<Event>, Broken> {
        let Some((status, http11)) = self.head.status else {
            self.head.status = Some(status_line(line).ok_or(Broken::NotHttp)?);
            return Ok(None);
        };
        if !line.is_empty() {
            self.head.fields += 1;
            if self.head.fields > MAX_FIELDS {
                return Err(Broken::NotHttp);
            }
            let (name, value) = field(line).ok_or(Broken::NotHttp)?;
            self.head.read(name, value);
            return Ok(None);
        }
        let head = core::mem::take(&mut self.head);
        self.section_bytes = 0;
        // 100 Continue, 102, 103 Early Hints: the answer follows (101 is an answer). They end
        // at their empty line whatever their fields say (RFC 9112 §6.3).
        if (100..200).contains(&status) && status != 101 {
            return Ok(None);
        }
        let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
        self.keep_alive = !head.close && (http11 || head.keep_alive_token);
        self.phase = if bodiless {
            Phase::Length(0)
        } else if head.encoded {
            // A coding on HTTP/1.0 cannot be framed (RFC 9112 §6.1).
            if !http11 {
                return Err(Broken::NotHttp);
            }
            // Both framings given: chunked wins (RFC 9112 §6.3), and a connection that sent an
            // ambiguous answer is not trusted with the next request.
            if head.length.is_some() {
                self.keep_alive = false;
            }
            if head.chunked {
                Phase::ChunkSize
            } else {
                // Another coding last: its end is the connection's (RFC 9112 §6.3, item 4).
                Phase::UntilClose
            }
        } else {
            match head.length {
                // A length over the cap is refused on the next call, after the status: an error
                // status decides the attempt whatever its body.
                Some(Some(n)) => Phase::Length(n),
                Some(None) => return Err(Broken::NotHttp),
                None => Phase::UntilClose,
            }
        };
        if self.phase == Phase::UntilClose {
            self.keep_alive = false;
        }
        self.status = Some(status);
        Ok(Some(Event::Head {
            status,
            from_metadata: head.flavor_fields == 1 && head.flavor_google,
        }))
    }

    /// Empty lines before a status line are skipped (RFC 9112 §2.2, as hyper and Node do); they
    /// count toward the head's bytes.
    fn skip_empty_lines(&mut self) -> Result<(), Broken> {
        loop {
            let unread = self.unread();
            let n = match unread {
                [b'\n', ..] => 1,
                [b'\r', b'\n', ..] => 2,
                _ => return Ok(()),
            };
            self.section_bytes += n;
            if self.section_bytes > MAX_HEAD_BYTES {
                return Err(Broken::NotHttp);
            }
            self.consume(n);
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

    /// The next line of a head or of the trailers, without its line end, consumed; None while
    /// it is incomplete. A head's lines may end in a bare LF (RFC 9112 §2.2); trailers, like
    /// every line of chunked framing, end in CRLF. The section's bytes are capped.
    fn section_line(&mut self, crlf_only: bool) -> Result<Option<Vec<u8>>, Broken> {
        let room = MAX_HEAD_BYTES.saturating_sub(self.section_bytes);
        let Some((line, used)) = self.find_line(room, crlf_only)? else {
            return Ok(None);
        };
        self.section_bytes += used;
        Ok(Some(line))
    }

    /// A line of chunked framing: CRLF-ended and at most `max` bytes.
    fn crlf_line(&mut self, max: usize) -> Result<Option<Vec<u8>>, Broken> {
        Ok(self.find_line(max, true)?.map(|(line, _)| line))
    }

    /// The next line (without its end) and the bytes it used, consumed; Err when it is longer
    /// than `max` bytes or, with `crlf_only`, ends in a bare LF.
    fn find_line(
        &mut self,
        max: usize,
        crlf_only: bool,
    ) -> Result<Option<(Vec<u8>, usize)>, Broken> {
        let unread = self.unread();
        let Some(lf) = unread[self.scanned..].iter().position(|&b| b == b'\n') else {
            if unread.len() > max {
                return Err(Broken::NotHttp);
            }
            self.scanned = unread.len();
            return Ok(None);
        };
        let lf = self.scanned + lf;
        if lf + 1 > max {
            return Err(Broken::NotHttp);
        }
        let line = match unread[..lf].strip_suffix(b"\r") {
            Some(line) => line,
            None if crlf_only => return Err(Broken::NotHttp),
            None => &unread[..lf],
        };
        let line = line.to_vec();
        self.consume(lf + 1);
        Ok(Some((line, lf + 1)))
    }
}

impl Head {
    /// Takes in one valid field of a head.
    fn read(&mut self, name: &[u8], value: &[u8]) {
        if name.eq_ignore_ascii_case(b"metadata-flavor") {
            // Two fields combine into "Google, Other" (RFC 9110 §5.3): not a metadata service's.
            self.flavor_fields += 1;
            self.flavor_google = value.eq_ignore_ascii_case(b"google");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // A list of equal values is one length (RFC 9110 §8.6); two different lengths cannot
            // both frame one body.
            let mut n = self.length.unwrap_or(None);
            let mut valid = true;
            for item in value.split(|&b| b == b',').map(trim) {
                match (parse_decimal(item), n) {
                    (Some(v), Some(m)) if v != m => valid = false,
                    (Some(v), _) => n = Some(v),
                    (None, _) => valid = false,
                }
            }
            let agrees = !matches!(self.length, Some(None));
            self.length = Some(n.filter(|_| valid && agrees));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.encoded = true;
            // Chunked counts only as the last coding of the combined value.
            let last = value.split(|&b| b == b',').next_back().map(trim);
            self.chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive_token = true;
                }
            }
        }
    }
}

/// Whether `bytes` can still begin a status line ("HTTP/1.0 " or "HTTP/1.1 "): an SSH banner, a
/// Redis error or another version is refused on its first bytes, not after waiting for a line end
/// that may never come. (A lone CR may still be the start of an empty line.)
fn could_be_http(bytes: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = bytes.len().min(PREFIX.len());
    bytes == b"\r"
        || (bytes[..n] == PREFIX[..n]
            && bytes.get(7).is_none_or(|&b| b == b'0' || b == b'1')
            && bytes.get(8).is_none_or(|&b| b == b' '))
}

/// "HTTP/1.1 200 OK": HTTP/1.0 or 1.1, a space, three digits from 100, then the end or a space
/// and a reason phrase of visible characters, spaces and tabs. Returns (status, HTTP/1.1).
fn status_line(line: &[u8]) -> Option<(u16, bool)> {
    let http11 = match line.get(..9)? {
        b"HTTP/1.1 " => true,
        b"HTTP/1.0 " => false,
        _ => return None,
    };
    let code = line.get(9..12)?;
    if !code.iter().all(u8::is_ascii_digit) || code[0] == b'0' {
        return None;
    }
    let status = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match line.get(12..) {
        Some([]) => {}
        Some([b' ', reason @ ..]) if reason.iter().all(|&b| field_byte(b)) => {}
        _ => return None,
    }
    Some((status, http11))
}

/// A field line "name: value": the name a token (RFC 9110 §5.1), the value without controls but
/// HTAB (§5.5), both trimmed of spaces and tabs. None for anything else (an obs-fold included).
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| tchar(b)) || !value.iter().all(|&b| field_byte(b)) {
        return None;
    }
    Some((name, trim(value)))
}

/// RFC 9110 §5.6.2's tchar.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A byte a field value or reason phrase may hold: HTAB, SP, visible ASCII, obs-text.
fn field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// A chunk-size line: hex digits, spaces or tabs, then the end or ";" and extensions, which carry
/// nothing for us but must hold no control but HTAB. None for anything else or an overflow.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = trim_start(&line[digits..]);
    if !(rest.is_empty() || rest[0] == b';') || !line.iter().all(|&b| field_byte(b)) {
        return None;
    }
    parse_number(&line[..digits], 16)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = trim_start(bytes);
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |e| e + 1);
    &bytes[..end]
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    parse_number(digits, 10)
}

/// Digits only (no sign, no spaces), refusing what overflows.
fn parse_number(digits: &[u8], radix: u32) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(radix)?;
        n.checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))
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
        // D12: an invalid length beside chunked is ignored too; the connection is not kept.
        for length in ["99", "x"] {
            let r = every_split(
                &format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
                false,
            );
            assert_eq!(r, Ok(vec![head(200, false), body("a", false)]), "{length}");
        }
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

    /// Issue 18's items, each as the rule both drivers now follow.
    #[test]
    fn d1_a_length_of_4_gib_or_more_is_a_number_refused_for_the_cap() {
        let mut r = Response::new(CAP);
        r.feed(b"HTTP/1.1 503 X\r\nContent-Length: 4294967296\r\n\r\n");
        assert_eq!(r.next(), Ok(head(503, false)));
        assert_eq!(r.next(), Err(Broken::TooLarge));
        let huge = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert_eq!(read(huge.as_bytes(), 99, false), Err(Broken::TooLarge));
        let over = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n";
        assert_eq!(read(over.as_bytes(), 99, false), Err(Broken::NotHttp));
    }

    #[test]
    fn d2_connection_close_is_final() {
        for fields in [
            "Connection: close, keep-alive\r\n",
            "Connection: close\r\nConnection: keep-alive\r\n",
            "Connection: keep-alive\r\nConnection: CLOSE\r\n",
        ] {
            let r = every_split(
                &format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 1\r\n\r\na"),
                false,
            );
            assert_eq!(
                r,
                Ok(vec![head(200, false), body("a", false)]),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn d3_empty_lines_before_the_status_line_are_skipped() {
        for before in ["\r\n", "\n", "\r\n\r\n\n"] {
            let r = every_split(
                &format!("{before}HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
                false,
            );
            assert_eq!(r, Ok(vec![head(200, false), body("a", true)]), "{before:?}");
        }
        // Not an empty line, and not HTTP.
        assert_eq!(
            read(b"\r\rHTTP/1.1 200 OK\r\n\r\n", 99, true),
            Err(Broken::NotHttp)
        );
        // Endless empty lines are cut at the head's limit, in linear time.
        let flood = "\r\n".repeat(MAX_HEAD_BYTES);
        assert_eq!(
            read(flood.as_bytes(), flood.len(), false),
            Err(Broken::NotHttp)
        );
    }

    #[test]
    fn d4_a_transfer_coding_on_http_1_0_is_broken_framing() {
        for coding in ["chunked", "gzip"] {
            let r = read(
                format!(
                    "HTTP/1.0 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n1\r\na\r\n0\r\n\r\n"
                )
                .as_bytes(),
                99,
                true,
            );
            assert_eq!(r, Err(Broken::NotHttp), "{coding}");
        }
    }

    #[test]
    fn d5_d10_controls_in_values_and_the_reason_are_broken() {
        for bad in ["\0", "\x01", "\x7f", "\r", "a\rb", "\x1b[0m"] {
            let value = read(
                format!("HTTP/1.1 200 OK\r\nX-A: {bad}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                99,
                false,
            );
            assert_eq!(value, Err(Broken::NotHttp), "value {bad:?}");
            let reason = read(
                format!("HTTP/1.1 200 O{bad}K\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                99,
                false,
            );
            assert_eq!(reason, Err(Broken::NotHttp), "reason {bad:?}");
        }
        // HTAB and obs-text are allowed.
        let ok = read(
            b"HTTP/1.1 200 \tO\xe9K\r\nX-A: a\tb\xff\r\nContent-Length: 0\r\n\r\n",
            99,
            false,
        );
        assert_eq!(ok, Ok(vec![head(200, false), body("", true)]));
    }

    #[test]
    fn d6_field_names_are_tokens() {
        for name in ["X(a)", "X@a", "X/a", "X a", "X ", " X", "X\"a", "X\u{e9}"] {
            let r = read(
                format!("HTTP/1.1 200 OK\r\n{name}: b\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                99,
                false,
            );
            assert_eq!(r, Err(Broken::NotHttp), "{name:?}");
        }
        let ok = read(
            b"HTTP/1.1 200 OK\r\nX-!#$%&'*+.^_`|~1: b\r\nContent-Length: 0\r\n\r\n",
            99,
            false,
        );
        assert_eq!(ok, Ok(vec![head(200, false), body("", true)]));
    }

    #[test]
    fn d7_chunk_lines_end_in_crlf() {
        for chunks in [
            "1\na\r\n0\r\n\r\n",
            " 1\r\na\r\n0\r\n\r\n",
            "1\r\na\n0\r\n\r\n",
            "1\r\naXY0\r\n\r\n",
            "1\r\na\r\n0\n\r\n",
            "+1\r\na\r\n0\r\n\r\n",
            "1;a\x01\r\na\r\n0\r\n\r\n",
            "1\r\na\r\n10000000000000000\r\n",
        ] {
            let r = read(
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}").as_bytes(),
                99,
                true,
            );
            assert_eq!(r, Err(Broken::NotHttp), "{chunks:?}");
        }
        // Spaces after the size (hyper's BWS) and extensions are fine.
        let ok = every_split(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 \t\r\na\r\n1 ; x=\"y z\"\r\nb\r\n0\r\n\r\n",
            false,
        );
        assert_eq!(ok, Ok(vec![head(200, false), body("ab", true)]));
    }

    #[test]
    fn d8_trailers_are_fields_ended_by_crlf_and_capped() {
        for trailers in [
            "Bad Name: x\r\n\r\n",
            "X: a\x01\r\n\r\n",
            "X: a\n\r\n",
            "X: a\r\n\n",
            "no colon\r\n\r\n",
        ] {
            let r = read(
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{trailers}")
                    .as_bytes(),
                99,
                true,
            );
            assert_eq!(r, Err(Broken::NotHttp), "{trailers:?}");
        }
        let mut long = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
        for _ in 0..MAX_FIELDS {
            long.push_str(&format!(
                "X: {}\r\n",
                "a".repeat(MAX_HEAD_BYTES / MAX_FIELDS)
            ));
        }
        assert_eq!(read(long.as_bytes(), 4096, false), Err(Broken::NotHttp));
    }

    #[test]
    fn d9_an_interim_answer_ends_at_its_empty_line_whatever_its_fields() {
        let r = every_split(
            "HTTP/1.1 100 Continue\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
            false,
        );
        assert_eq!(r, Ok(vec![head(200, false), body("a", true)]));
    }

    #[test]
    fn d11_more_than_100_fields_are_not_an_answer() {
        let head_with = |n: usize| {
            let mut h = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n - 1 {
                h.push_str(&format!("X-{i}: a\r\n"));
            }
            h.push_str("Content-Length: 0\r\n\r\n");
            h
        };
        assert_eq!(
            read(head_with(MAX_FIELDS).as_bytes(), 99, false),
            Ok(vec![head(200, false), body("", true)])
        );
        assert_eq!(
            read(head_with(MAX_FIELDS + 1).as_bytes(), 99, false),
            Err(Broken::NotHttp)
        );
    }

    #[test]
    fn d13_a_list_of_equal_lengths_is_one_length() {
        let r = every_split("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\na", false);
        assert_eq!(r, Ok(vec![head(200, false), body("a", true)]));
        for bad in ["1, 2", "1,", ",1", "1\r\nContent-Length: 1, 2"] {
            let r = read(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\na").as_bytes(),
                99,
                false,
            );
            assert_eq!(r, Err(Broken::NotHttp), "{bad:?}");
        }
    }

    #[test]
    fn d14_a_chunk_line_over_1_kib_is_refused() {
        let line = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_LINE_BYTES));
        let r = read(
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{line}").as_bytes(),
            99,
            false,
        );
        assert_eq!(r, Err(Broken::NotHttp));
    }

    #[test]
    fn d16_the_flavor_is_the_combined_value() {
        for (fields, from_metadata) in [
            ("Metadata-Flavor: Google\r\n", true),
            (
                "Metadata-Flavor: Google\r\nMetadata-Flavor: Other\r\n",
                false,
            ),
            (
                "Metadata-Flavor: Other\r\nMetadata-Flavor: Google\r\n",
                false,
            ),
            (
                "Metadata-Flavor: Google\r\nmetadata-flavor: Google\r\n",
                false,
            ),
            ("Metadata-Flavor: Google, Google\r\n", false),
        ] {
            let r = read(
                format!("HTTP/1.1 404 Not Found\r\n{fields}Content-Length: 0\r\n\r\n").as_bytes(),
                99,
                false,
            );
            assert_eq!(
                r,
                Ok(vec![head(404, from_metadata), body("", true)]),
                "{fields:?}"
            );
        }
    }

    #[test]
    fn d18_each_head_line_is_judged_when_it_is_complete() {
        // No closing empty line, and the connection kept open: refused all the same, however
        // the bytes are split.
        let bytes = b"HTTP/1.1 200 OK\r\nBad Name: x\r\n";
        for step in 1..=bytes.len() {
            assert_eq!(
                read(bytes, step, false),
                Err(Broken::NotHttp),
                "step {step}"
            );
        }
        let status = b"HTTP/1.1 2x0 OK\r\n";
        for step in 1..=status.len() {
            assert_eq!(
                read(status, step, false),
                Err(Broken::NotHttp),
                "step {step}"
            );
        }
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
    fn the_status_is_the_final_answers_once_its_head_is_read() {
        let mut r = Response::new(64);
        r.feed(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Len");
        assert_eq!(r.next(), Ok(Event::More));
        assert_eq!(r.status(), None, "an interim answer is not the answer");
        r.feed(b"gth: 0\r\n\r\n");
        assert_eq!(r.next(), Ok(head(503, false)));
        assert_eq!(r.status(), Some(503));
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
            "HTTP/1.s",
            "HTTP/1.1x",
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
