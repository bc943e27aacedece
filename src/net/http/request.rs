//! HTTP/1.1 request heads, sans-IO (RFC 9112 §2–3, RFC 9110 §14 for `Range`): where a head
//! ends in a buffer, its request line and headers, and a single byte range. The bytes come
//! from whoever read the socket (`super::server`, `net::metrics`); nothing here does I/O.

/// The blank line that ends a head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// Where the head at the start of `buf` ends (just after its blank line), if it has.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(HEAD_END.len())
        .position(|w| w == HEAD_END)
        .map(|i| i + HEAD_END.len())
}

/// A head that is not an HTTP/1.x request: answered 400 and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadRequest;

/// One parsed request head, borrowing from the buffer it was read into.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The path with any query string removed, still percent-encoded.
    pub(crate) path: &'a str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    head: &'a str,
}

impl<'a> Request<'a> {
    /// Parses a whole head (request line, header lines, blank line). Header values are not
    /// checked beyond being text: the server looks only at the few it uses.
    pub(crate) fn parse(head: &'a [u8]) -> Result<Request<'a>, BadRequest> {
        let head = std::str::from_utf8(head).map_err(|_| BadRequest)?;
        let line = head.split("\r\n").next().unwrap_or("");
        let mut words = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(BadRequest);
        };
        let minor = match version {
            "HTTP/1.1" => 1,
            "HTTP/1.0" => 0,
            _ => return Err(BadRequest),
        };
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(BadRequest);
        }
        let path = target.split('?').next().unwrap_or("");
        Ok(Request {
            method,
            path,
            minor,
            head,
        })
    }

    /// The value of header `name` (case-insensitive), trimmed; the first if repeated.
    pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Whether the connection stays open after the answer: HTTP/1.1 unless `Connection:
    /// close`, HTTP/1.0 only with `Connection: keep-alive` (RFC 9112 §9.3).
    pub(crate) fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.minor >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

/// What a `Range` header asks of a representation of `len` bytes (RFC 9110 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No range, one this server ignores (another unit, bad syntax), or several ranges:
    /// the whole file, 200.
    Whole,
    /// Bytes `start..=end`, within the file: 206.
    One { start: u64, end: u64 },
    /// A range that starts past the end (or a zero-length suffix): 416.
    Unsatisfiable,
}

/// Reads a `Range` value for a file of `len` bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n`.
/// Several ranges get the whole file, which RFC 9110 §14.2 allows ("a server MAY ignore
/// the Range header field"); so does a syntax error, as it requires.
pub(crate) fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some(spec) = strip_prefix_ignore_case(value.trim(), "bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (Ok(first), Ok(last)) = (bound(first), bound(last)) else {
        return RangeAsk::Whole;
    };
    match (first, last) {
        // A suffix: the last n bytes.
        (None, Some(n)) => {
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::One {
                    start: len - n.min(len),
                    end: len - 1,
                }
            }
        }
        (Some(a), last) => {
            if last.is_some_and(|b| b < a) {
                return RangeAsk::Whole;
            }
            if a >= len {
                return RangeAsk::Unsatisfiable;
            }
            let end = last.map_or(len - 1, |b| b.min(len - 1));
            RangeAsk::One { start: a, end }
        }
        (None, None) => RangeAsk::Whole,
    }
}

/// One end of a range: `Ok(None)` when left out, `Err` for anything but ASCII digits (or a
/// number too large for a file).
fn bound(s: &str) -> Result<Option<u64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map(Some).map_err(|_| ())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Decodes `%XX` escapes in a path segment. `None` for a bad escape or bytes that are not
/// UTF-8 once decoded (a served name is always UTF-8).
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn parse(head: &str) -> Request<'_> {
        Request::parse(head.as_bytes()).expect("a valid head")
    }

    #[test]
    fn test_head_end_after_blank_line_only() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn test_request_line_and_headers() {
        let r = parse("GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nRANGE:  bytes=0-9 \r\n\r\n");
        assert_eq!((r.method, r.path, r.minor), ("GET", "/a%20b", 1));
        assert_eq!(r.header("range"), Some("bytes=0-9"));
        assert_eq!(r.header("Host"), Some("h"));
        assert_eq!(r.header("accept"), None);
        assert!(r.keep_alive());
    }

    #[test]
    fn test_connection_close_and_http10_end_the_connection() {
        assert!(!parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive());
    }

    #[test]
    fn test_malformed_request_lines_are_bad_requests() {
        for head in [
            "GET /\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 x\r\n\r\n",
            "\x00\x00\x00\x2b\x01\r\n\r\n",
        ] {
            assert_eq!(Request::parse(head.as_bytes()), Err(BadRequest), "{head:?}");
        }
        assert_eq!(
            Request::parse(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(BadRequest)
        );
    }

    #[test]
    fn test_range_forms_within_the_file() {
        let one = |start, end| RangeAsk::One { start, end };
        assert_eq!(parse_range("bytes=100-199", 1000), one(100, 199));
        assert_eq!(parse_range("bytes=100-", 1000), one(100, 999));
        assert_eq!(parse_range("bytes=-100", 1000), one(900, 999));
        assert_eq!(parse_range("Bytes = 0-0", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("BYTES=0-0", 1000), one(0, 0));
        // An end past the file is cut to it; a suffix longer than the file is all of it.
        assert_eq!(parse_range("bytes=990-5000", 1000), one(990, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), one(0, 999));
    }

    #[test]
    fn test_range_past_the_end_is_unsatisfiable() {
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=1000-1001", 1000),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn test_range_ignored_when_multiple_or_malformed() {
        for v in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "items=0-1",
            "bytes=99999999999999999999999-",
            "",
        ] {
            assert_eq!(parse_range(v, 1000), RangeAsk::Whole, "{v}");
        }
    }

    #[test]
    fn test_percent_decode() {
        assert_eq!(percent_decode("a%20b.iso").as_deref(), Some("a b.iso"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
