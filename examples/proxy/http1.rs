//! HTTP/1.1 framing for the proxy.
//!
//! Heads are parsed with `httparse` and rewritten for the next hop without
//! the hop-by-hop headers (RFC 9110 §7.6.1). Bodies pass through unchanged:
//! [`Framing`] only finds where a body ends, by `Content-Length` or, for
//! `Transfer-Encoding: chunked`, with a small state machine over the chunk
//! framing ([`Chunked`]) that never copies or decodes the data.
//!
//! [`Buf`] is the fixed-capacity byte buffer each connection owns for each
//! direction: allocated once per connection slot, reused for every request.

use std::io::{self, Read};

/// Most headers a head may have; more is answered with 431 (requests) or
/// 502 (responses).
pub const MAX_HEADERS: usize = 64;

/// A fixed-capacity buffer: bytes are appended at the end and consumed from
/// the front. It never grows; a full buffer is the proxy's backpressure.
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn new(capacity: usize) -> Buf {
        Buf {
            data: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The bytes held, oldest first.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Room for more bytes, counting what compaction would free.
    pub fn room(&self) -> usize {
        self.data.len() - self.len()
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Keeps only the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.end = self.start + n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads once from `src` into the free space (moving the held bytes to
    /// the front first if the tail is full). `Ok(0)` is EOF; the caller does
    /// not call this on a full buffer.
    pub fn read_from(&mut self, src: &mut impl Read) -> io::Result<usize> {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        debug_assert!(self.end < self.data.len(), "read into a full buffer");
        let n = src.read(&mut self.data[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Free space at the tail: a read of fewer bytes than this drained the
    /// socket.
    pub fn tail_room(&self) -> usize {
        if self.end == self.data.len() {
            self.start
        } else {
            self.data.len() - self.end
        }
    }
}

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// This many body bytes are left (0: no body, or it is complete).
    Length(u64),
    /// `Transfer-Encoding: chunked`, in the given framing state.
    Chunked(Chunked),
    /// The body runs until the connection closes (responses only).
    Close,
}

/// A malformed chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadChunk;

impl Framing {
    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Length(0) | Framing::Chunked(Chunked::Done))
    }

    /// Takes `data`, which follows what was seen so far: returns how many of
    /// its bytes belong to the body (the rest belong to the next message).
    /// The body is complete when [`is_done`](Framing::is_done) says so.
    pub fn advance(&mut self, data: &[u8]) -> Result<usize, BadChunk> {
        match self {
            Framing::Length(left) => {
                let n = usize::try_from(*left).map_or(data.len(), |l| l.min(data.len()));
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked(state) => state.advance(data),
            Framing::Close => Ok(data.len()),
        }
    }
}

/// Where a chunked body's framing is (RFC 9112 §7.1):
///
/// ```text
/// chunk      = size [ ";" ext ] CRLF data CRLF     (size > 0)
/// last-chunk = "0" [ ";" ext ] CRLF
/// trailers   = *( field-line CRLF ) CRLF
/// ```
///
/// A state per position; the data of a chunk is skipped in one step. CR
/// must be followed by LF (no bare LF), sizes have at most 15 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// At the start of a chunk-size line.
    SizeStart,
    /// In the hex digits; the size so far and the digit count.
    Size(u64, u8),
    /// After the size: optional whitespace and extensions, up to CR.
    Ext(u64),
    /// After the size line's CR.
    SizeLf(u64),
    /// In a chunk's data: bytes left.
    Data(u64),
    /// After the data: expecting CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer line, up to CR.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
    /// The body is complete.
    Done,
}

impl Chunked {
    fn advance(&mut self, data: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < data.len() && *self != Chunked::Done {
            let b = data[i];
            *self = match *self {
                Chunked::SizeStart => Chunked::Size(u64::from(hex(b)?), 1),
                Chunked::Size(n, digits) => match hex(b) {
                    Ok(d) if digits < 15 => Chunked::Size(n << 4 | u64::from(d), digits + 1),
                    Ok(_) => return Err(BadChunk),
                    Err(_) => Chunked::Ext(n).after_size(b)?,
                },
                Chunked::Ext(n) => Chunked::Ext(n).after_size(b)?,
                Chunked::SizeLf(n) => match (b, n) {
                    (b'\n', 0) => Chunked::TrailerStart,
                    (b'\n', n) => Chunked::Data(n),
                    _ => return Err(BadChunk),
                },
                Chunked::Data(left) => {
                    let take =
                        usize::try_from(left).map_or(data.len() - i, |l| l.min(data.len() - i));
                    i += take;
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(left)
                    };
                    continue;
                }
                Chunked::DataCr if b == b'\r' => Chunked::DataLf,
                Chunked::DataLf if b == b'\n' => Chunked::SizeStart,
                Chunked::DataCr | Chunked::DataLf => return Err(BadChunk),
                Chunked::TrailerStart if b == b'\r' => Chunked::EndLf,
                Chunked::TrailerStart | Chunked::Trailer if b == b'\n' => return Err(BadChunk),
                Chunked::TrailerStart | Chunked::Trailer if b == b'\r' => Chunked::TrailerLf,
                Chunked::TrailerStart | Chunked::Trailer => Chunked::Trailer,
                Chunked::TrailerLf if b == b'\n' => Chunked::TrailerStart,
                Chunked::EndLf if b == b'\n' => Chunked::Done,
                Chunked::TrailerLf | Chunked::EndLf => return Err(BadChunk),
                Chunked::Done => unreachable!("loop stops at Done"),
            };
            i += 1;
        }
        Ok(i)
    }

    /// A byte after a chunk size: whitespace or an extension up to CR.
    fn after_size(self, b: u8) -> Result<Chunked, BadChunk> {
        let Chunked::Ext(n) = self else {
            return Err(BadChunk);
        };
        match b {
            b'\r' => Ok(Chunked::SizeLf(n)),
            b'\n' => Err(BadChunk),
            // Extensions are passed on, not interpreted.
            b' ' | b'\t' | b';' | b'=' | b'"' | 0x21..=0x7e => Ok(Chunked::Ext(n)),
            _ => Err(BadChunk),
        }
    }
}

fn hex(b: u8) -> Result<u8, BadChunk> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(BadChunk),
    }
}

/// Why a head cannot be forwarded; the proxy answers with the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400: malformed, or ambiguous framing (both `Content-Length` and
    /// `Transfer-Encoding`, differing lengths, a coding other than chunked).
    Bad,
    /// 431 / 502: more than [`MAX_HEADERS`] headers.
    TooManyHeaders,
    /// 501: a method the proxy does not carry (CONNECT).
    NotImplemented,
}

/// What the proxy needs to know about a request it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    pub body: Framing,
    /// The client keeps the connection after the response: HTTP/1.1 without
    /// `Connection: close`.
    pub keep_alive: bool,
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// A HEAD request: the response has no body whatever it says.
    pub head_method: bool,
}

/// What the proxy needs to know about a response it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub body: Framing,
    /// The upstream keeps the connection after this response.
    pub keep_alive: bool,
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete.
/// On success the head to send upstream is written to `out` (cleared
/// first): the request line as HTTP/1.1 (HTTP/1.0 as 1.0 with
/// `Connection: keep-alive`, so that the upstream keeps the connection when
/// it can), and every header but the hop-by-hop ones.
pub fn parse_request(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Bad),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Bad);
    };
    if method == "CONNECT" {
        return Err(HeadError::NotImplemented);
    }
    let info = Hop::scan(req.headers, version)?;
    let body = match (info.chunked, info.length) {
        (Some(true), None) => Framing::Chunked(Chunked::SizeStart),
        (Some(_), _) => return Err(HeadError::Bad),
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::Length(0),
    };
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(if version == 0 {
        b" HTTP/1.0\r\nConnection: keep-alive\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    info.write_end_to_end(req.headers, out);
    out.extend_from_slice(b"\r\n");
    Ok(Some(RequestHead {
        len,
        body,
        keep_alive: info.keep_alive,
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        head_method: method == "HEAD",
    }))
}

/// Parses a response head at the start of `buf`, for a request that was
/// HEAD or not. `Ok(None)`: incomplete. On success the head to send to the
/// client is appended to `out`: the status line as received and every header
/// but the hop-by-hop ones, plus `Connection: close` when `close_client`.
/// Interim (1xx) responses are returned too: the caller forwards them and
/// parses again.
pub fn parse_response(
    buf: &[u8],
    head_method: bool,
    close_client: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Bad),
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Err(HeadError::Bad);
    };
    let info = Hop::scan(resp.headers, version)?;
    let interim = (100..200).contains(&status);
    let body = if interim || head_method || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        match (info.chunked, info.length) {
            (Some(true), _) => Framing::Chunked(Chunked::SizeStart),
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    let line_end = buf.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    out.extend_from_slice(&buf[..line_end]);
    info.write_end_to_end(resp.headers, out);
    if (close_client || body == Framing::Close) && !interim {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        status,
        body,
        keep_alive: info.keep_alive && body != Framing::Close,
    }))
}

/// What a head's headers say about the connection and the body.
struct Hop<'h> {
    /// `Transfer-Encoding` present: whether its last coding is chunked.
    chunked: Option<bool>,
    length: Option<u64>,
    keep_alive: bool,
    /// The `Connection` header's values: the headers it names are
    /// hop-by-hop too.
    connection: [&'h [u8]; 4],
}

impl<'h> Hop<'h> {
    fn scan(headers: &[httparse::Header<'h>], version: u8) -> Result<Hop<'h>, HeadError> {
        let mut hop = Hop {
            chunked: None,
            length: None,
            keep_alive: version == 1,
            connection: [b""; 4],
        };
        let mut named = 0;
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value).ok_or(HeadError::Bad)?;
                if hop.length.is_some_and(|l| l != n) {
                    return Err(HeadError::Bad);
                }
                hop.length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                hop.chunked = Some(trim(last).eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        hop.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        hop.keep_alive = true;
                    } else if !token.is_empty() {
                        // More than a few named headers: the extra ones
                        // pass (none of them is a framing header).
                        if let Some(slot) = hop.connection.get_mut(named) {
                            *slot = token;
                            named += 1;
                        }
                    }
                }
            }
        }
        // HTTP/1.0 keeps the connection only on request; 1.1 unless closed.
        if version == 0 {
            hop.keep_alive = headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection")
                    && h.value
                        .split(|&b| b == b',')
                        .any(|t| trim(t).eq_ignore_ascii_case(b"keep-alive"))
            });
        }
        if hop.chunked.is_some() && hop.length.is_some() {
            return Err(HeadError::Bad);
        }
        Ok(hop)
    }

    fn is_hop_by_hop(&self, name: &str) -> bool {
        const HOP: [&str; 7] = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
            "proxy-authenticate",
            "proxy-authorization",
        ];
        HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || self
                .connection
                .iter()
                .any(|c| !c.is_empty() && name.as_bytes().eq_ignore_ascii_case(c))
    }

    fn write_end_to_end(&self, headers: &[httparse::Header<'_>], out: &mut Vec<u8>) {
        for h in headers {
            if self.is_hop_by_hop(h.name) {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &v[start..end]
}
