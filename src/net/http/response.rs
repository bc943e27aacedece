//! What the origin answers an HTTP request, sans-IO: the status, the headers and where the
//! body comes from (a range of the served file, or a few bytes of listing), decided from
//! the request head alone. `super::server` writes it out; `net::metrics` builds its
//! answers with `reply`.

use std::fmt::Write as _;

use super::request::{BadRequest, RangeAsk, Request, parse_range, percent_decode};

/// The served file as HTTP shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct File<'a> {
    /// The name a request path gives (the HELLO path, §4.1); `None` serves no file.
    pub(crate) name: Option<&'a str>,
    pub(crate) len: u64,
    /// The manifest's root digest in hex (§4.2): the ETag, as it names these exact bytes.
    pub(crate) digest_hex: &'a str,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// The file changed while served: its bytes no longer match the digest.
    pub(crate) changed: bool,
}

/// One answer: `bytes` (the head, and a small body if any) go out first, then `file`'s
/// range (offset, length) straight from the mapped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) file: Option<(u64, u64)>,
    /// Close the connection once this answer is out.
    pub(crate) close: bool,
}

impl Answer {
    fn text(bytes: Vec<u8>, close: bool) -> Answer {
        Answer {
            bytes,
            file: None,
            close,
        }
    }
}

/// The answer to the request head `head` (complete, blank line included) about `file`, at
/// `now` (seconds since the epoch, for `Date`).
pub(crate) fn answer(head: &[u8], file: &File, now: i64) -> Answer {
    let Ok(req) = Request::parse(head) else {
        return bad_request(BadRequest);
    };
    let close = !req.keep_alive();
    let body = req.method != "HEAD";
    if req.method != "GET" && req.method != "HEAD" {
        let out = reply(
            405,
            "Allow: GET, HEAD\r\n",
            "only GET and HEAD\n",
            body,
            close,
        );
        return Answer::text(out, close);
    }
    let date = format!("Date: {}\r\n", imf_fixdate(now));
    if req.path == "/" {
        return Answer::text(listing(&req, file, &date, body, close), close);
    }
    let name = req.path.strip_prefix('/').and_then(percent_decode);
    if name.is_none() || name.as_deref() != file.name {
        let out = reply(404, &date, "not found; GET / lists the file\n", body, close);
        return Answer::text(out, close);
    }
    if file.changed {
        let why = "the served file changed; it is served again once serve restarts\n";
        return Answer::text(reply(503, &date, why, body, close), close);
    }
    file_answer(&req, file, &date, body, close)
}

/// 400 to a head that is not a request; the connection closes, as nothing after it can be
/// trusted to start a request.
pub(crate) fn bad_request(_: BadRequest) -> Answer {
    Answer::text(reply(400, "", "bad request\n", true, true), true)
}

/// 431 to a head longer than the server reads; closes.
pub(crate) fn too_large() -> Answer {
    Answer::text(reply(431, "", "request head too large\n", true, true), true)
}

/// 503 to a connection beyond the server's limit; closes.
pub(crate) fn busy() -> Answer {
    let extra = "Retry-After: 1\r\n";
    Answer::text(
        reply(503, extra, "too many connections\n", true, true),
        true,
    )
}

fn file_answer(req: &Request, file: &File, date: &str, body: bool, close: bool) -> Answer {
    let etag = format!("\"{}\"", file.digest_hex);
    let mut extra = format!(
        "{date}Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\
         ETag: {etag}\r\nLast-Modified: {}\r\n",
        imf_fixdate(file.mtime)
    );
    // RFC 9110 §13.1.2: a match answers 304 whatever else the request asks.
    if let Some(v) = req.header("if-none-match")
        && v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    {
        return Answer::text(head(304, &extra, None, close).into_bytes(), close);
    }
    let range = req
        .header("range")
        .map_or(RangeAsk::Whole, |v| parse_range(v, file.len));
    let (code, offset, len) = match range {
        RangeAsk::Whole => (200, 0, file.len),
        RangeAsk::One { start, end } => {
            let _ = write!(extra, "Content-Range: bytes {start}-{end}/{}\r\n", file.len);
            (206, start, end - start + 1)
        }
        RangeAsk::Unsatisfiable => {
            let _ = write!(extra, "Content-Range: bytes */{}\r\n", file.len);
            let out = reply(416, &extra, "range not satisfiable\n", body, close);
            return Answer::text(out, close);
        }
    };
    Answer {
        bytes: head(code, &extra, Some(len), close).into_bytes(),
        file: (body && len > 0).then_some((offset, len)),
        close,
    }
}

/// `GET /`: the file as a link (HTML), or as JSON for `Accept: application/json`.
fn listing(req: &Request, file: &File, date: &str, body: bool, close: bool) -> Vec<u8> {
    let json = req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    let (kind, text) = if json {
        let files: Vec<_> = file
            .name
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n,
                    "size": file.len,
                    "digest": format!("blake3:{}", file.digest_hex),
                })
            })
            .collect();
        let text = serde_json::json!({ "files": files }).to_string() + "\n";
        ("application/json", text)
    } else {
        let mut text = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tfttp</title></head>\
             <body>\n<ul>\n",
        );
        if let Some(n) = file.name {
            let _ = writeln!(
                text,
                "<li><a href=\"/{}\">{}</a> ({} bytes, blake3:{})</li>",
                percent_encode(n),
                html_escape(n),
                file.len,
                file.digest_hex
            );
        }
        text.push_str("</ul>\n</body></html>\n");
        ("text/html; charset=utf-8", text)
    };
    let extra = format!("{date}Content-Type: {kind}\r\nVary: Accept\r\n");
    reply(200, &extra, &text, body, close)
}

/// A status line, `extra` headers (each ending in CRLF), `Content-Length` if given, and
/// `Connection: close` if the connection ends after this answer.
pub(crate) fn head(code: u16, extra: &str, len: Option<u64>, close: bool) -> String {
    let mut out = format!("HTTP/1.1 {code} {}\r\n{extra}", reason(code));
    if let Some(n) = len {
        let _ = write!(out, "Content-Length: {n}\r\n");
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out
}

/// A whole answer with a text body (left out for `HEAD`, its length kept).
pub(crate) fn reply(code: u16, extra: &str, text: &str, body: bool, close: bool) -> Vec<u8> {
    let mut out = head(code, extra, Some(text.len() as u64), close).into_bytes();
    if body {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// RFC 9110 §5.6.7's IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`, for `secs` since the
/// epoch. Days to a civil date as in Howard Hinnant's `civil_from_days`.
pub(crate) fn imf_fixdate(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Escapes every byte but RFC 3986's unreserved characters, for a link's path.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: File = File {
        name: Some("big file.iso"),
        len: 1000,
        digest_hex: "ab12",
        mtime: 784_111_777,
        changed: false,
    };

    fn ask(req: &str) -> (String, Answer) {
        let a = answer(req.as_bytes(), &FILE, 0);
        (String::from_utf8(a.bytes.clone()).unwrap(), a)
    }

    #[test]
    fn test_imf_fixdate_matches_rfc_example_and_epoch() {
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn test_get_file_is_whole_from_the_map_with_validators() {
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        for want in [
            "Content-Length: 1000\r\n",
            "Accept-Ranges: bytes\r\n",
            "ETag: \"ab12\"\r\n",
            "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            "Content-Type: application/octet-stream\r\n",
        ] {
            assert!(h.contains(want), "{want} in {h}");
        }
        assert!(h.ends_with("\r\n\r\n") && !h.contains("Connection: close"));
        assert_eq!(a.file, Some((0, 1000)));
        assert!(!a.close);
    }

    #[test]
    fn test_head_has_the_length_and_no_body() {
        let (h, a) = ask("HEAD /big%20file.iso HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(h.contains("Content-Length: 1000\r\n") && h.contains("Connection: close"));
        assert_eq!(a.file, None);
        assert!(a.close);
    }

    #[test]
    fn test_range_answers_206_or_416() {
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nRange: bytes=100-199\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{h}");
        assert!(h.contains("Content-Range: bytes 100-199/1000\r\n"), "{h}");
        assert!(h.contains("Content-Length: 100\r\n"), "{h}");
        assert_eq!(a.file, Some((100, 100)));
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nRange: bytes=1000-\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 416 "), "{h}");
        assert!(h.contains("Content-Range: bytes */1000\r\n"), "{h}");
        assert_eq!(a.file, None);
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nRange: bytes=0-1,5-6\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
        assert_eq!(a.file, Some((0, 1000)));
    }

    #[test]
    fn test_if_none_match_with_the_etag_is_304() {
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nIf-None-Match: \"x\", \"ab12\"\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{h}");
        assert!(
            !h.contains("Content-Length") && h.contains("ETag: \"ab12\""),
            "{h}"
        );
        assert_eq!(a.file, None);
        let (h, _) = ask("GET /big%20file.iso HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
    }

    #[test]
    fn test_listing_html_and_json() {
        let (h, _) = ask("GET / HTTP/1.1\r\n\r\n");
        assert!(h.contains("Content-Type: text/html"), "{h}");
        assert!(
            h.contains("<a href=\"/big%20file.iso\">big file.iso</a>"),
            "{h}"
        );
        let (h, _) = ask("GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n");
        let body = &h[h.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["files"][0]["name"], "big file.iso");
        assert_eq!(v["files"][0]["size"], 1000);
        assert_eq!(v["files"][0]["digest"], "blake3:ab12");
    }

    #[test]
    fn test_other_paths_methods_and_garbage() {
        assert!(
            ask("GET /other HTTP/1.1\r\n\r\n")
                .0
                .starts_with("HTTP/1.1 404 ")
        );
        assert!(
            ask("GET /big file.iso HTTP/1.1\r\n\r\n")
                .0
                .starts_with("HTTP/1.1 400 ")
        );
        assert!(
            ask("GET /%zz HTTP/1.1\r\n\r\n")
                .0
                .starts_with("HTTP/1.1 404 ")
        );
        let (h, a) = ask("POST /big%20file.iso HTTP/1.1\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 405 ") && h.contains("Allow: GET, HEAD"),
            "{h}"
        );
        assert!(!a.close);
        let (h, a) = ask("BREW / HTTP/1.1\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 405 ") && a.file.is_none());
        let (h, a) = ask("GET / HTTP/9\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 400 ") && a.close);
    }

    #[test]
    fn test_a_changed_file_is_not_served() {
        let changed = File {
            changed: true,
            ..FILE
        };
        let a = answer(b"GET /big%20file.iso HTTP/1.1\r\n\r\n", &changed, 0);
        assert!(a.bytes.starts_with(b"HTTP/1.1 503 "));
        assert_eq!(a.file, None);
    }
}
