//! Which address a log line names as the client (`--trusted-proxy CIDR`).
//!
//! Only when the peer is a trusted proxy does fserve believe what the request says about
//! the client: the `Forwarded` field (RFC 7239) if present, else `X-Forwarded-For`. Each
//! hop appends the address it received from, so the list is read from the right and the
//! first address that is not itself a trusted proxy is the client (the "rightmost untrusted
//! hop"); addresses further left were written by the client and prove nothing. A value that
//! does not parse leaves the peer's own address.

use std::net::IpAddr;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR[/PREFIX]`; the error is one line naming what is wrong.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an address block; write e.g. 10.0.0.0/8 or 2001:db8::/32")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports) as
/// the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address for a request from `peer` carrying these fields.
pub(crate) fn client_addr(
    peer: IpAddr,
    trusted: &[Cidr],
    forwarded: Option<&[u8]>,
    x_forwarded_for: Option<&[u8]>,
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    // Read from the right, without collecting the list (no allocation per request).
    match (forwarded, x_forwarded_for) {
        (Some(f), _) => match std::str::from_utf8(f) {
            Ok(f) => rightmost_untrusted(peer, f.rsplit(',').map(forwarded_for), is_trusted),
            Err(_) => peer,
        },
        (None, Some(x)) => rightmost_untrusted(
            peer,
            x.rsplit(|&b| b == b',').map(|h| {
                std::str::from_utf8(h.trim_ascii())
                    .ok()
                    .and_then(parse_node)
            }),
            is_trusted,
        ),
        (None, None) => peer,
    }
}

/// The first hop, from the right, that is not a trusted proxy; `peer` if a hop cannot be
/// read (an obfuscated or unparsable hop: nothing to the left of it can be trusted).
fn rightmost_untrusted(
    peer: IpAddr,
    hops_from_the_right: impl Iterator<Item = Option<IpAddr>>,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    for hop in hops_from_the_right {
        match hop {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return canonical(ip),
            None => return peer,
        }
    }
    peer
}

/// The `for=` node of one element of a `Forwarded` field (RFC 7239 §4).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(v.trim().trim_matches('"')))
            .flatten()
    })
}

/// A node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_membership() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
        assert!(Cidr::parse("192.0.2.1").unwrap().contains(ip("192.0.2.1")));
        assert!(!Cidr::parse("192.0.2.1").unwrap().contains(ip("192.0.2.2")));
        for bad in ["10.0.0.0/33", "x/8", "::/129", "10.0.0.0/", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_are_never_overridden() {
        let t = cidrs(&["10.0.0.0/8"]);
        let xff: &[u8] = b"203.0.113.9";
        assert_eq!(
            client_addr(ip("198.51.100.1"), &t, None, Some(xff)),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_addr(ip("10.0.0.1"), &[], None, Some(xff)),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rightmost_untrusted_hop_wins() {
        let t = cidrs(&["10.0.0.0/8"]);
        // The client forged the leftmost entry.
        let xff: &[u8] = b"1.2.3.4, 203.0.113.9, 10.0.0.7";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, None, Some(xff)),
            ip("203.0.113.9")
        );
        // Every hop trusted: the leftmost is the best we know.
        let all: &[u8] = b"10.0.0.9, 10.0.0.7";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, None, Some(all)),
            ip("10.0.0.1")
        );
        // Garbage in the chain stops the walk at the peer.
        let junk: &[u8] = b"203.0.113.9, junk";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, None, Some(junk)),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let t = cidrs(&["10.0.0.0/8"]);
        let fwd: &[u8] = b"for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"";
        let xff: &[u8] = b"203.0.113.9";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, Some(fwd), Some(xff)),
            ip("2001:db8:cafe::17")
        );
        let hidden: &[u8] = b"for=_hidden";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, Some(hidden), None),
            ip("10.0.0.1")
        );
        let port: &[u8] = b"For=192.0.2.43:8080";
        assert_eq!(
            client_addr(ip("10.0.0.1"), &t, Some(port), None),
            ip("192.0.2.43")
        );
    }
}
