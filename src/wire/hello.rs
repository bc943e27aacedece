//! HELLO, the first frame each side sends (docs/PROTOCOL.md §4.1): who the sender is, which
//! file it wants, whether it will prove it holds the swarm secret, and the nonce the other
//! side's proof must cover. Version 2 adds the flags, the nonce and the path to version 1's
//! fixed 24 bytes; the version byte sits where version 1 had it, so either version can tell
//! the other "unsupported version" (§7).

use super::{MAGIC, VERSION, WireError, be_u64, ty};

/// Flag bit 0: the sender holds a swarm secret and sends AUTH right after it has our HELLO.
pub const FLAG_AUTH: u8 = 0x01;
/// Bytes of the per-connection nonce (128 bits: a nonce never repeats by chance).
pub const NONCE_LEN: usize = 16;
/// Longest path in a HELLO. With the fixed part (43 bytes) the whole HELLO stays within
/// `MAX_HELLO_LEN` (256), the bound every version 1 receiver applies before it reads the
/// version byte, so a version 1 node can read a version 2 HELLO and answer ERROR 2.
pub const MAX_PATH_LEN: usize = 200;
/// HELLO before its path: magic, version, role, flags, node id, file id, listen port,
/// nonce, path length.
pub const HELLO_FIXED_LEN: usize = 4 + 1 + 1 + 1 + 8 + 8 + 2 + NONCE_LEN + 2;
const _: () = assert!(HELLO_FIXED_LEN + MAX_PATH_LEN <= super::MAX_HELLO_LEN);

/// Who a node is in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server that holds the file, hands out fresh pieces and names peers.
    Origin,
    /// A downloader that also uploads to other clients.
    Client,
}

/// A version 2 HELLO body. HELLOs of another version never get this far: parsing them
/// gives [`WireError::Version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello<'a> {
    /// Whether the sender is the origin or a client.
    pub role: Role,
    /// The sender holds the swarm secret and will send AUTH ([`FLAG_AUTH`]).
    pub auth: bool,
    /// Random per process, never 0; detects self-connections and duplicate connections.
    pub node_id: u64,
    /// The manifest's file id; 0 from a client that has not seen the manifest yet.
    pub file_id: u64,
    /// TCP port the sender accepts peers on, 0 if it accepts none.
    pub listen_port: u16,
    /// Random per connection: the other side's AUTH tag covers it, so a tag seen on one
    /// connection is worthless on another.
    pub nonce: [u8; NONCE_LEN],
    /// The requested file, '/'-separated and relative; empty for "the only file", and in
    /// every HELLO but a client's to the origin. Checked for length and UTF-8 here; what
    /// it may name is the origin's business ([`path_is_safe`]).
    pub path: &'a str,
}

impl Hello<'_> {
    /// The same HELLO without its path, to keep after the handshake (only the handshake
    /// reads the path).
    pub fn without_path(&self) -> Hello<'static> {
        Hello {
            role: self.role,
            auth: self.auth,
            node_id: self.node_id,
            file_id: self.file_id,
            listen_port: self.listen_port,
            nonce: self.nonce,
            path: "",
        }
    }

    /// Appends the body (no frame head).
    pub(super) fn emit_body(&self, out: &mut Vec<u8>) {
        let path = &self.path.as_bytes()[..self.path.len().min(MAX_PATH_LEN)];
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(match self.role {
            Role::Origin => 0,
            Role::Client => 1,
        });
        out.push(if self.auth { FLAG_AUTH } else { 0 });
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.extend_from_slice(&self.file_id.to_be_bytes());
        out.extend_from_slice(&self.listen_port.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path);
    }

    /// Parses a HELLO body. The magic is checked first, then the version, whatever the
    /// body's length: a HELLO of another version is [`WireError::Version`] (answered with
    /// ERROR 2), never "malformed".
    pub(super) fn parse(body: &[u8]) -> Result<Hello<'_>, WireError> {
        if body.len() < 4 || body[0..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        let Some(&version) = body.get(4) else {
            return Err(WireError::BadBody(ty::HELLO));
        };
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        if body.len() < HELLO_FIXED_LEN {
            return Err(WireError::BadBody(ty::HELLO));
        }
        let role = match body[5] {
            0 => Role::Origin,
            1 => Role::Client,
            _ => return Err(WireError::BadField(ty::HELLO)),
        };
        // Bits other than AUTH are reserved: sent as 0, ignored on receipt.
        let auth = body[6] & FLAG_AUTH != 0;
        let node_id = be_u64(&body[7..15]);
        if node_id == 0 {
            return Err(WireError::ZeroNodeId);
        }
        let file_id = be_u64(&body[15..23]);
        let listen_port = u16::from_be_bytes([body[23], body[24]]);
        let nonce: [u8; NONCE_LEN] = body[25..41].try_into().expect("16 bytes");
        let path_len = u16::from_be_bytes([body[41], body[42]]) as usize;
        if path_len > MAX_PATH_LEN || body.len() != HELLO_FIXED_LEN + path_len {
            return Err(WireError::BadBody(ty::HELLO));
        }
        let path = std::str::from_utf8(&body[HELLO_FIXED_LEN..])
            .map_err(|_| WireError::BadField(ty::HELLO))?;
        Ok(Hello {
            role,
            auth,
            node_id,
            file_id,
            listen_port,
            nonce,
            path,
        })
    }
}

/// Whether `path` may name a file: empty, or '/'-separated components none of which is
/// empty, `.` or `..`, without a leading '/' or a NUL (docs/PROTOCOL.md §4.1). A path that
/// fails is answered with ERROR 11 whatever the origin serves, so no path can climb out of
/// what a server publishes.
pub fn path_is_safe(path: &str) -> bool {
    path.is_empty()
        || (!path.contains('\0')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MAX_HELLO_LEN, Message};

    fn sample(path: &str) -> Hello<'_> {
        Hello {
            role: Role::Client,
            auth: true,
            node_id: 9,
            file_id: 8,
            listen_port: 6881,
            nonce: [0xa5; NONCE_LEN],
            path,
        }
    }

    fn body(h: &Hello) -> Vec<u8> {
        let mut b = Vec::new();
        h.emit_body(&mut b);
        b
    }

    #[test]
    fn test_hello_v2_fixed_bytes_both_ways() {
        let mut bytes = b"TFTT".to_vec();
        bytes.extend_from_slice(&[2, 1, FLAG_AUTH]);
        bytes.extend_from_slice(&9u64.to_be_bytes());
        bytes.extend_from_slice(&8u64.to_be_bytes());
        bytes.extend_from_slice(&[0x1a, 0xe1]);
        bytes.extend_from_slice(&[0xa5; 16]);
        bytes.extend_from_slice(&[0, 5]);
        bytes.extend_from_slice(b"a/b.c");
        assert_eq!(bytes.len(), HELLO_FIXED_LEN + 5);
        assert_eq!(Hello::parse(&bytes), Ok(sample("a/b.c")));
        assert_eq!(body(&sample("a/b.c")), bytes);
    }

    #[test]
    fn test_hello_v2_roundtrip_longest_path_fits_max_hello_len() {
        let long = "p".repeat(MAX_PATH_LEN);
        let h = sample(&long);
        let b = body(&h);
        assert!(b.len() <= MAX_HELLO_LEN, "{}", b.len());
        assert_eq!(Hello::parse(&b), Ok(h));
        assert_eq!(Hello::parse(&body(&sample(""))), Ok(sample("")));
    }

    #[test]
    fn test_hello_other_versions_are_version_errors_whatever_their_length() {
        for v in [0u8, 1, 3, 255] {
            for extra in [0usize, 19, 24, MAX_HELLO_LEN - 5] {
                let mut b = b"TFTT".to_vec();
                b.push(v);
                b.extend(std::iter::repeat_n(0xee, extra));
                assert_eq!(
                    Hello::parse(&b),
                    Err(WireError::Version(v)),
                    "v{v} +{extra}"
                );
            }
        }
        // A real version 1 HELLO (24 bytes).
        let v1 = [
            b'T', b'F', b'T', b'T', 1, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 8, 0x1a,
            0xe1,
        ];
        assert_eq!(Hello::parse(&v1), Err(WireError::Version(1)));
    }

    #[test]
    fn test_hello_bad_magic_before_anything() {
        assert_eq!(Hello::parse(b"HTTP/1.1 200"), Err(WireError::BadMagic));
        assert_eq!(Hello::parse(b"TF"), Err(WireError::BadMagic));
        assert_eq!(Hello::parse(b"TFTT"), Err(WireError::BadBody(ty::HELLO)));
    }

    #[test]
    fn test_hello_v2_malformed_cases() {
        let good = body(&sample("ab"));
        // Shorter than the fixed part.
        for n in 5..HELLO_FIXED_LEN {
            assert_eq!(
                Hello::parse(&good[..n]),
                Err(WireError::BadBody(ty::HELLO)),
                "{n}"
            );
        }
        // Path length beyond the body, or short of it (trailing bytes).
        let mut b = good.clone();
        b[42] = 3;
        assert_eq!(Hello::parse(&b), Err(WireError::BadBody(ty::HELLO)));
        let mut b = good.clone();
        b[42] = 1;
        assert_eq!(Hello::parse(&b), Err(WireError::BadBody(ty::HELLO)));
        // Path length over MAX_PATH_LEN, even with the bytes there.
        let mut b = body(&sample(""));
        b[41..43].copy_from_slice(&(MAX_PATH_LEN as u16 + 1).to_be_bytes());
        b.extend(std::iter::repeat_n(b'x', MAX_PATH_LEN + 1));
        assert_eq!(Hello::parse(&b), Err(WireError::BadBody(ty::HELLO)));
        // Role 2, node id 0, a path that is not UTF-8.
        let mut b = good.clone();
        b[5] = 2;
        assert_eq!(Hello::parse(&b), Err(WireError::BadField(ty::HELLO)));
        let mut b = good.clone();
        b[7..15].fill(0);
        assert_eq!(Hello::parse(&b), Err(WireError::ZeroNodeId));
        let mut b = good.clone();
        b[HELLO_FIXED_LEN] = 0xff;
        assert_eq!(Hello::parse(&b), Err(WireError::BadField(ty::HELLO)));
    }

    #[test]
    fn test_hello_reserved_flag_bits_ignored() {
        let mut b = body(&sample(""));
        b[6] = 0xfe;
        assert!(!Hello::parse(&b).unwrap().auth);
        b[6] = 0xff;
        assert!(Hello::parse(&b).unwrap().auth);
    }

    #[test]
    fn test_hello_emit_cuts_an_overlong_path() {
        let long = "q".repeat(MAX_PATH_LEN + 50);
        let mut out = Vec::new();
        Message::Hello(sample(&long)).emit(&mut out);
        assert!(out.len() - 5 <= MAX_HELLO_LEN);
    }

    #[test]
    fn test_path_is_safe() {
        for ok in ["", "a", "a.iso", "dir/sub/file", "..a", "a..", "é/ü"] {
            assert!(path_is_safe(ok), "{ok}");
        }
        for bad in [
            "/a", "a/", "a//b", "..", "a/../b", "../a", ".", "a/./b", "a\0b", "/",
        ] {
            assert!(!path_is_safe(bad), "{bad:?}");
        }
    }
}
