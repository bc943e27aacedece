//! What `get` is pointed at: `tfttp://HOST[:PORT]/NAME[#blake3=HEX]` or the older
//! `HOST:PORT[/NAME]`; and the URLs `serve` prints for a user to hand out. The URL syntax
//! is RFC 3986's, cut down to what a TFTTP origin needs: no user info, no query.

use tfttp::manifest::{self, Hash};
use tfttp::wire;

/// The port a `tfttp://` URL without one means: `serve`'s default listen port.
pub const DEFAULT_PORT: u16 = 6880;

/// Where a download comes from, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `HOST:PORT` (`[V6]:PORT` for an IPv6 literal), resolved when the command runs.
    pub server: String,
    /// The file's name as the HELLO carries it (percent-decoded); empty for the server's
    /// only file.
    pub path: String,
    /// The fragment's `blake3=HEX`: the digest the manifest must have.
    pub digest: Option<Hash>,
}

/// Parses what `get` was given. Errors are one line naming what is wrong.
pub fn parse(s: &str) -> Result<Target, String> {
    match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("tfttp") => parse_url(s, rest),
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Err(format!(
                "'{s}' is an HTTP URL; tfttp speaks its own protocol (give tfttp://HOST[:PORT]/NAME), \
                 use curl or wget for HTTP"
            ))
        }
        Some((scheme, _)) => Err(format!(
            "'{s}': unknown scheme '{scheme}' (give tfttp://HOST[:PORT]/NAME or HOST:PORT[/NAME])"
        )),
        None => parse_host_port(s),
    }
}

/// `HOST:PORT[/NAME]`, as before URLs: a numeric port is required, the name is taken as is.
fn parse_host_port(s: &str) -> Result<Target, String> {
    let (server, path) = s.split_once('/').unwrap_or((s, ""));
    let ok = server
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !ok {
        return Err(format!(
            "'{s}' is not HOST:PORT[/NAME] or tfttp://HOST[:PORT]/NAME"
        ));
    }
    Ok(Target {
        server: server.to_string(),
        path: checked_name(path)?,
        digest: None,
    })
}

/// The part of a `tfttp://` URL after the scheme.
fn parse_url(url: &str, rest: &str) -> Result<Target, String> {
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    if rest.contains('?') {
        return Err(format!("'{url}': a tfttp URL takes no query ('?')"));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(format!("'{url}': a tfttp URL takes no user name ('@')"));
    }
    let server = authority_to_server(url, authority)?;
    let path = percent_decode(path).map_err(|e| format!("'{url}': {e}"))?;
    let digest = fragment.map(|f| fragment_digest(url, f)).transpose()?;
    Ok(Target {
        server,
        path: checked_name(&path)?,
        digest,
    })
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` as the `HOST:PORT` the resolver takes.
fn authority_to_server(url: &str, a: &str) -> Result<String, String> {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}': '[' without ']' around an IPv6 address"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{url}': '{addr}' is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("'{url}': expected ':PORT' after ']', got '{p}'"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        };
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.is_empty() || !host.chars().all(name_char) {
            return Err(format!(
                "'{url}': '{host}' is not a host name or address (an IPv6 address goes in [])"
            ));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("'{url}': '{p}' is not a port (1 to 65535)")),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// The fragment: `blake3=HEX`, the digest `serve` prints.
fn fragment_digest(url: &str, f: &str) -> Result<Hash, String> {
    f.strip_prefix("blake3=")
        .and_then(manifest::parse_digest)
        .ok_or_else(|| {
            format!("'{url}': the fragment must be #blake3= and 64 hex digits, got '#{f}'")
        })
}

/// A NAME the protocol would refuse anyway is a usage error (docs/PROTOCOL.md §4.1).
fn checked_name(path: &str) -> Result<String, String> {
    if path.len() > wire::MAX_PATH_LEN || !wire::path_is_safe(path) {
        return Err(format!(
            "'{path}' is not a file name a server can serve (at most {} bytes, no empty, \
             '.' or '..' component)",
            wire::MAX_PATH_LEN
        ));
    }
    Ok(path.to_string())
}

/// `%XX` escapes to bytes; the result must be UTF-8, as a HELLO's path is.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("'%' not followed by two hex digits in '{s}'"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' does not decode to UTF-8"))
}

/// Escapes all but RFC 3986's unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of the file `name` served at `addr` with `digest`: what `serve` prints.
pub fn format(addr: std::net::SocketAddr, name: Option<&str>, digest: &Hash) -> String {
    // SocketAddr's Display puts an IPv6 address in brackets, as a URL needs.
    format!(
        "tfttp://{addr}/{}#blake3={}",
        name.map(percent_encode).unwrap_or_default(),
        manifest::to_hex(digest)
    )
}

/// The URL with a host name instead of an address (`serve`'s fallback).
pub fn format_host(host: &str, port: u16, name: Option<&str>, digest: &Hash) -> String {
    format!(
        "tfttp://{host}:{port}/{}#blake3={}",
        name.map(percent_encode).unwrap_or_default(),
        manifest::to_hex(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn target(server: &str, path: &str) -> Target {
        Target {
            server: server.into(),
            path: path.into(),
            digest: None,
        }
    }

    #[test]
    fn test_host_port_forms_keep_working() {
        assert_eq!(parse("127.0.0.1:9"), Ok(target("127.0.0.1:9", "")));
        assert_eq!(parse("h:9/big.iso"), Ok(target("h:9", "big.iso")));
        assert_eq!(parse("[::1]:9"), Ok(target("[::1]:9", "")));
        assert_eq!(parse("h:9/a/b"), Ok(target("h:9", "a/b")));
    }

    #[test]
    fn test_url_every_form() {
        assert_eq!(parse("tfttp://h"), Ok(target("h:6880", "")));
        assert_eq!(parse("tfttp://h/"), Ok(target("h:6880", "")));
        assert_eq!(parse("tfttp://h:7/f"), Ok(target("h:7", "f")));
        assert_eq!(
            parse("TFTTP://h.example/f"),
            Ok(target("h.example:6880", "f"))
        );
        assert_eq!(
            parse("tfttp://10.0.0.1/f"),
            Ok(target("10.0.0.1:6880", "f"))
        );
        assert_eq!(parse("tfttp://[::1]/f"), Ok(target("[::1]:6880", "f")));
        assert_eq!(
            parse("tfttp://[fd00::2]:9/f"),
            Ok(target("[fd00::2]:9", "f"))
        );
        assert_eq!(
            parse("tfttp://h/my%20file%C3%A9.iso"),
            Ok(target("h:6880", "my file\u{e9}.iso"))
        );
        assert_eq!(parse("tfttp://h/a/b"), Ok(target("h:6880", "a/b")));
        let t = parse(&format!("tfttp://h:1/f#blake3={HEX}")).unwrap();
        assert_eq!(t.digest.map(|d| manifest::to_hex(&d)), Some(HEX.into()));
        assert_eq!((t.server.as_str(), t.path.as_str()), ("h:1", "f"));
        let t = parse(&format!("tfttp://h#blake3={}", HEX.to_uppercase())).unwrap();
        assert_eq!((t.path.as_str(), t.digest.is_some()), ("", true));
    }

    #[test]
    fn test_url_every_bad_form() {
        for bad in [
            "tfttp://",
            "tfttp:///f",
            "tfttp://h:/f",
            "tfttp://h:0/f",
            "tfttp://h:65536/f",
            "tfttp://h:+80/f",
            "tfttp://h:x/f",
            "tfttp://::1/f",
            "tfttp://[::1/f",
            "tfttp://[nothex]/f",
            "tfttp://[::1]x/f",
            "tfttp://u@h/f",
            "tfttp://h/f?x=1",
            "tfttp://h/f#sha256=00",
            "tfttp://h/f#blake3=12",
            "tfttp://h/f#",
            "tfttp://h/%zz",
            "tfttp://h/%4",
            "tfttp://h/%ff",
            "tfttp://h/%2e%2e",
            "tfttp://h/a//b",
            "tfttp://h/a/",
            "tfttp://h/./a",
            "tfttp://h/%00",
            "ftp://h/f",
            "nohost",
            "h:9/../x",
            ":9",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.lines().count(), 1, "{bad}: {e}");
        }
        let long = format!("tfttp://h/{}", "a".repeat(wire::MAX_PATH_LEN + 1));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn test_http_url_is_refused_with_a_pointer_to_curl() {
        for u in ["http://h/f", "HTTPS://h:443/f"] {
            let e = parse(u).unwrap_err();
            assert!(e.contains("curl") && e.contains("own protocol"), "{e}");
        }
    }

    #[test]
    fn test_format_round_trips_through_parse() {
        let d = manifest::parse_digest(HEX).unwrap();
        for (addr, name) in [
            ("127.0.0.1:6880", Some("big file+1.iso")),
            ("[fd00::1]:9", Some("x")),
            ("10.1.2.3:1", None),
        ] {
            let url = format(addr.parse().unwrap(), name, &d);
            let t = parse(&url).unwrap();
            assert_eq!(t.server, addr, "{url}");
            assert_eq!(t.path, name.unwrap_or(""), "{url}");
            assert_eq!(t.digest, Some(d), "{url}");
        }
        assert_eq!(
            format_host("box", 7, Some("a b"), &d),
            format!("tfttp://box:7/a%20b#blake3={HEX}")
        );
    }
}
