//! What the origin answers an HTTP request, sans-IO: the status, the headers and where the
//! body comes from (a range of a served file, or the listing), decided from the request
//! head and the served files' names, sizes and digests alone. `super::server` writes it
//! out; `net::metrics` builds its answers with `reply`.

use std::fmt::Write as _;
use std::rc::Rc;

use super::request::{BadRequest, RangeAsk, Request, parse_range, percent_decode};
use crate::manifest::{Hash, to_hex};

/// A served file as HTTP shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct File<'a> {
    /// The name a request path gives (the HELLO path, §4.1); `None` serves no file.
    pub(crate) name: Option<&'a str>,
    pub(crate) len: u64,
    /// The manifest's root digest (§4.2): the ETag, in hex, as it names these exact bytes.
    pub(crate) digest: &'a Hash,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// The file changed while served: its bytes no longer match the digest.
    pub(crate) changed: bool,
}

/// The files an origin serves, by name (`net::catalog` behind the driver).
pub(crate) trait Files {
    /// The file a request names: its index (for `Answer::file`) and what HTTP shows of it.
    fn find(&self, name: &str) -> Option<(usize, File<'_>)>;
    /// Calls `f` on every file, in the order `GET /` lists them.
    fn each(&self, f: &mut dyn FnMut(&File<'_>));
}

/// One file as a `Files`: a test's, or anything serving exactly one.
impl Files for File<'_> {
    fn find(&self, name: &str) -> Option<(usize, File<'_>)> {
        (self.name == Some(name)).then_some((0, *self))
    }

    fn each(&self, f: &mut dyn FnMut(&File<'_>)) {
        f(self)
    }
}

/// `GET /`'s bodies, rendered at the first request and shared by every answer after it:
/// with 10,000 files a listing is about 1.5 MB, and 64 connections each queueing 16 copies
/// would hold 1.5 GB. The files and their digests do not change while `serve` runs.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    html: Option<Rc<[u8]>>,
    json: Option<Rc<[u8]>>,
}

/// One answer: `bytes` (the head, and a small body if any) go out first, then `shared` (the
/// listing), then `file`'s range (index, offset, length) straight from its mapped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) shared: Option<Rc<[u8]>>,
    pub(crate) file: Option<(usize, u64, u64)>,
    /// Close the connection once this answer is out.
    pub(crate) close: bool,
}

impl Answer {
    fn text(bytes: Vec<u8>, close: bool) -> Answer {
        Answer {
            bytes,
            shared: None,
            file: None,
            close,
        }
    }

    /// Bytes before the file's range: the head and any body held in memory.
    pub(crate) fn prefix_len(&self) -> u64 {
        (self.bytes.len() + self.shared.as_ref().map_or(0, |s| s.len())) as u64
    }
}

/// The answer to the request head `head` (complete, blank line included) about `files`, at
/// `now` (seconds since the epoch, for `Date`).
pub(crate) fn answer(head: &[u8], files: &dyn Files, listings: &mut Listings, now: i64) -> Answer {
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
        return listing(&req, files, listings, &date, body, close);
    }
    let found =
        (req.path.strip_prefix('/').and_then(percent_decode)).and_then(|name| files.find(&name));
    let Some((k, file)) = found else {
        let out = reply(
            404,
            &date,
            "not found; GET / lists the files\n",
            body,
            close,
        );
        return Answer::text(out, close);
    };
    if file.changed {
        let why = "the served file changed; it is served again once serve restarts\n";
        return Answer::text(reply(503, &date, why, body, close), close);
    }
    file_answer(&req, k, &file, &date, body, close)
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

fn file_answer(
    req: &Request,
    k: usize,
    file: &File,
    date: &str,
    body: bool,
    close: bool,
) -> Answer {
    let etag = format!("\"{}\"", to_hex(file.digest));
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
        shared: None,
        file: (body && len > 0).then_some((k, offset, len)),
        close,
    }
}

/// `GET /`: every file as a link (HTML), or as JSON for `Accept: application/json`; the
/// body is rendered once (`Listings`).
fn listing(
    req: &Request,
    files: &dyn Files,
    listings: &mut Listings,
    date: &str,
    body: bool,
    close: bool,
) -> Answer {
    let json = req
        .header("accept")
        .is_some_and(|a| a.contains("application/json"));
    let (kind, cached) = if json {
        ("application/json", &mut listings.json)
    } else {
        ("text/html; charset=utf-8", &mut listings.html)
    };
    let text = cached
        .get_or_insert_with(|| {
            let text = if json {
                render_json(files)
            } else {
                render_html(files)
            };
            Rc::from(text.into_bytes())
        })
        .clone();
    let extra = format!("{date}Content-Type: {kind}\r\nVary: Accept\r\n");
    Answer {
        bytes: head(200, &extra, Some(text.len() as u64), close).into_bytes(),
        shared: body.then_some(text),
        file: None,
        close,
    }
}

/// The JSON listing, written straight into its text: a `serde_json::Value` per file made
/// 10,000 files peak at 18 MiB more than the 1.2 MB of text.
fn render_json(files: &dyn Files) -> String {
    let mut text = String::from("{\"files\":[");
    let mut first = true;
    files.each(&mut |f| {
        if let Some(n) = f.name {
            if !first {
                text.push(',');
            }
            first = false;
            let name = serde_json::to_string(n).expect("a string serializes");
            let _ = write!(
                text,
                "{{\"digest\":\"blake3:{}\",\"name\":{name},\"size\":{}}}",
                to_hex(f.digest),
                f.len
            );
        }
    });
    text.push_str("]}\n");
    text
}

fn render_html(files: &dyn Files) -> String {
    let mut text = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tfttp</title></head>\
         <body>\n<ul>\n",
    );
    files.each(&mut |f| {
        if let Some(n) = f.name {
            // Each '/' of a nested name stays a '/' in the link.
            let href: Vec<String> = n.split('/').map(percent_encode).collect();
            let _ = writeln!(
                text,
                "<li><a href=\"/{}\">{}</a> ({} bytes, blake3:{})</li>",
                href.join("/"),
                html_escape(n),
                f.len,
                to_hex(f.digest)
            );
        }
    });
    text.push_str("</ul>\n</body></html>\n");
    text
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

    const DIGEST: Hash = [0xab; 32];
    const FILE: File = File {
        name: Some("big file.iso"),
        len: 1000,
        digest: &DIGEST,
        mtime: 784_111_777,
        changed: false,
    };

    fn etag_hex() -> String {
        "ab".repeat(32)
    }

    /// The answer's head and in-memory body as text.
    fn text(a: &Answer) -> String {
        let mut b = a.bytes.clone();
        b.extend_from_slice(a.shared.as_deref().unwrap_or(&[]));
        String::from_utf8(b).unwrap()
    }

    fn ask(req: &str) -> (String, Answer) {
        let a = answer(req.as_bytes(), &FILE, &mut Listings::default(), 0);
        (text(&a), a)
    }

    /// Two files, one nested, as a `Files`.
    struct Two([File<'static>; 2]);

    impl Files for Two {
        fn find(&self, name: &str) -> Option<(usize, File<'_>)> {
            (self.0.iter().enumerate())
                .find(|(_, f)| f.name == Some(name))
                .map(|(k, f)| (k, *f))
        }

        fn each(&self, f: &mut dyn FnMut(&File<'_>)) {
            self.0.iter().for_each(f)
        }
    }

    #[test]
    fn test_many_files_each_by_its_name_listing_names_all_rendered_once() {
        let two = Two([
            FILE,
            File {
                name: Some("dir/a&b"),
                len: 7,
                ..FILE
            },
        ]);
        let mut listings = Listings::default();
        let a = answer(b"GET /dir/a%26b HTTP/1.1\r\n\r\n", &two, &mut listings, 0);
        assert_eq!(a.file, Some((1, 0, 7)));
        let a = answer(
            b"GET /big%20file.iso HTTP/1.1\r\n\r\n",
            &two,
            &mut listings,
            0,
        );
        assert_eq!(a.file, Some((0, 0, 1000)));
        let a = answer(b"GET /dir HTTP/1.1\r\n\r\n", &two, &mut listings, 0);
        assert!(a.bytes.starts_with(b"HTTP/1.1 404 "));
        let json = b"GET / HTTP/1.1\r\nAccept: application/json\r\n\r\n";
        let first = answer(json, &two, &mut listings, 0);
        let again = answer(json, &two, &mut listings, 0);
        let (x, y) = (first.shared.unwrap(), again.shared.unwrap());
        assert!(Rc::ptr_eq(&x, &y), "rendered once, shared");
        let v: serde_json::Value = serde_json::from_slice(&x).unwrap();
        assert_eq!(v["files"][1]["name"], "dir/a&b");
        assert_eq!(v["files"][1]["size"], 7);
        let html = answer(b"GET / HTTP/1.1\r\n\r\n", &two, &mut listings, 0);
        let h = text(&html);
        assert!(h.contains("<a href=\"/dir/a%26b\">dir/a&amp;b</a>"), "{h}");
        // HEAD: the listing's length, no body.
        let head = answer(b"HEAD / HTTP/1.1\r\n\r\n", &two, &mut listings, 0);
        assert!(head.shared.is_none());
        let len = format!("Content-Length: {}\r\n", h.len() - html.bytes.len());
        assert!(text(&head).contains(&len), "{}", text(&head));
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
            &format!("ETag: \"{}\"\r\n", etag_hex()),
            "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            "Content-Type: application/octet-stream\r\n",
        ] {
            assert!(h.contains(want), "{want} in {h}");
        }
        assert!(h.ends_with("\r\n\r\n") && !h.contains("Connection: close"));
        assert_eq!(a.file, Some((0, 0, 1000)));
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
        assert_eq!(a.file, Some((0, 100, 100)));
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nRange: bytes=1000-\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 416 "), "{h}");
        assert!(h.contains("Content-Range: bytes */1000\r\n"), "{h}");
        assert_eq!(a.file, None);
        let (h, a) = ask("GET /big%20file.iso HTTP/1.1\r\nRange: bytes=0-1,5-6\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
        assert_eq!(a.file, Some((0, 0, 1000)));
    }

    #[test]
    fn test_if_none_match_with_the_etag_is_304() {
        let req = format!(
            "GET /big%20file.iso HTTP/1.1\r\nIf-None-Match: \"x\", \"{}\"\r\n\r\n",
            etag_hex()
        );
        let (h, a) = ask(&req);
        assert!(h.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{h}");
        assert!(
            !h.contains("Content-Length") && h.contains(&format!("ETag: \"{}\"", etag_hex())),
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
        assert_eq!(v["files"][0]["digest"], format!("blake3:{}", etag_hex()));
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
        let req = b"GET /big%20file.iso HTTP/1.1\r\n\r\n";
        let a = answer(req, &changed, &mut Listings::default(), 0);
        assert!(a.bytes.starts_with(b"HTTP/1.1 503 "));
        assert_eq!(a.file, None);
    }
}
