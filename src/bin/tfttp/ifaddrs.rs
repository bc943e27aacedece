//! The host's own addresses (getifaddrs(3)), for the URLs `serve` prints: an address a user
//! can hand out instead of `0.0.0.0`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses of the interfaces that are up, without loopback, link-local (they need a
/// zone to be dialled and do not cross a router), multicast or unspecified ones, in the
/// kernel's order, each once. Empty if getifaddrs fails.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; on failure it is untouched.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 {
            continue;
        }
        // SAFETY: ifa_addr is non-null and its family says which sockaddr it is.
        let ip = unsafe {
            match (*ifa.ifa_addr).sa_family as libc::c_int {
                libc::AF_INET => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if is_shareable(ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// An address another host may be able to dial: IPv4 other than loopback and 169.254/16;
/// IPv6 global or unique-local (fc00::/7), not link-local (fe80::/10).
pub fn is_shareable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast())
        }
        IpAddr::V6(a) => {
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            let mapped = a.to_ipv4_mapped().is_some();
            !(a.is_loopback() || link_local || mapped || a.is_unspecified() || a.is_multicast())
        }
    }
}

/// The host's name (gethostname(2)), `None` if it has none.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_shareable_skips_loopback_and_link_local() {
        for bad in [
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::",
            "ff02::1",
        ] {
            assert!(!is_shareable(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "10.0.0.2",
            "192.168.1.5",
            "203.0.113.7",
            "fd00::5",
            "2001:db8::1",
        ] {
            assert!(is_shareable(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn test_host_addresses_are_all_shareable() {
        assert!(host_addresses().into_iter().all(is_shareable));
    }
}
