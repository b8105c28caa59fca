//! Addresses as users type them (CIDRs, port lists) and as the kernel gives
//! them (16 network-order bytes plus a family).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::output;

/// `family` values of the kernel side (enum family in src/bpf/common.h).
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// An IPv4 or IPv6 network: address with host bits cleared, and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn family(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => FAMILY_IPV4,
            IpAddr::V6(_) => FAMILY_IPV6,
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address as 16 bytes (IPv4 in the first four).
    pub fn addr_bytes(&self) -> [u8; 16] {
        ip_to_bytes(self.addr)
    }

    #[cfg(test)]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip_to_bytes(ip), self.prefix) == self.addr_bytes()
            }
            _ => false,
        }
    }
}

fn mask(mut bytes: [u8; 16], prefix: u8) -> [u8; 16] {
    for (i, b) in bytes.iter_mut().enumerate() {
        let bit = i as u32 * 8;
        let p = u32::from(prefix);
        if p <= bit {
            *b = 0;
        } else if p < bit + 8 {
            *b &= 0xffu8 << (8 - (p - bit));
        }
    }
    bytes
}

pub fn ip_to_bytes(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out = a.octets(),
    }
    out
}

/// The address the kernel reported, or None for a family that has none.
pub fn ip_from_bytes(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        FAMILY_IPV4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        FAMILY_IPV6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/64`, or a bare address (a /32 or /128).
    /// Host bits may be set; they are cleared (`10.1.2.3/24` is `10.1.2.0/24`).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match p {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| {
                    format!("prefix length {p:?} is not a number from 0 to {max}")
                })?,
            };
        let bytes = mask(ip_to_bytes(addr), prefix);
        let addr = ip_from_bytes(
            if addr.is_ipv4() {
                FAMILY_IPV4
            } else {
                FAMILY_IPV6
            },
            &bytes,
        )
        .unwrap_or(addr);
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A TCP/UDP port from 1 to 65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{s:?} is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// `addr:port`, with brackets around IPv6 addresses.
pub struct Endpoint(pub Option<IpAddr>, pub Option<u16>);

impl Endpoint {
    /// Appends the endpoint as `Display` prints it, padded with spaces to
    /// `width` characters, without allocating (for per-event table lines).
    pub fn push_padded(&self, buf: &mut Vec<u8>, width: usize) {
        let start = buf.len();
        match (self.0, self.1) {
            (None, _) => buf.push(b'-'),
            (Some(ip @ IpAddr::V6(_)), Some(p)) => {
                buf.push(b'[');
                output::push_ip(buf, ip);
                buf.extend_from_slice(b"]:");
                output::push_u64(buf, u64::from(p));
            }
            (Some(ip), Some(p)) => {
                output::push_ip(buf, ip);
                buf.push(b':');
                output::push_u64(buf, u64::from(p));
            }
            (Some(ip), None) => output::push_ip(buf, ip),
        }
        output::pad_from(buf, start, width);
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (None, _) => f.write_str("-"),
            (Some(IpAddr::V6(a)), Some(p)) => write!(f, "[{a}]:{p}"),
            (Some(a), Some(p)) => write!(f, "{a}:{p}"),
            (Some(a), None) => write!(f, "{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_mask() {
        let c: Cidr = "10.1.2.3/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.2.0/24");
        assert_eq!(c.family(), FAMILY_IPV4);
        assert!(c.contains("10.1.2.200".parse().unwrap()));
        assert!(!c.contains("10.1.3.1".parse().unwrap()));
        assert!(!c.contains("::a01:203".parse().unwrap()));

        let c: Cidr = "fd00:0:ffff::5/33".parse().unwrap();
        assert_eq!(c.to_string(), "fd00:0:8000::/33");
        assert!(c.contains("fd00:0:8000::1".parse().unwrap()));
        assert!(c.contains("fd00:0:ffff::1".parse().unwrap()));
        assert!(!c.contains("fd00:0:7fff::1".parse().unwrap()));
        assert!(!c.contains("fd00:1:8000::1".parse().unwrap()));

        let c: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!((c.prefix(), c.to_string().as_str()), (32, "192.0.2.7/32"));
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains("203.0.113.9".parse().unwrap()));
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix(), 128);
    }

    #[test]
    fn bad_cidrs_say_why() {
        for (s, why) in [
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("fd00::/129", "prefix length"),
            ("10.0.0/8", "not an IPv4 or IPv6"),
            ("", "not an IPv4 or IPv6"),
            ("example.com/8", "not an IPv4 or IPv6"),
            ("10.0.0.0/", "prefix length"),
        ] {
            let e = s.parse::<Cidr>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("80"), Ok(80));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "http", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kernel_bytes_round_trip() {
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(ip_from_bytes(FAMILY_IPV6, &ip_to_bytes(v6)), Some(v6));
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(ip_from_bytes(FAMILY_IPV4, &ip_to_bytes(v4)), Some(v4));
        assert_eq!(ip_from_bytes(0, &[0; 16]), None);
        assert_eq!(Endpoint(Some(v6), Some(80)).to_string(), "[fd00::1]:80");
        assert_eq!(Endpoint(Some(v4), None).to_string(), "10.0.0.1");
        assert_eq!(Endpoint(None, None).to_string(), "-");
    }
}
