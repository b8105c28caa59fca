//! Just enough rtnetlink to make a veth pair and bring it up, for `probe`'s
//! XDP and TC trials. It is only ever used inside a private network namespace
//! that disappears with the thread that made it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const IFF_UP: u32 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink attribute: header, payload, padding.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut v = Vec::with_capacity(align4(len));
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    v.resize(align4(len), 0);
    v
}

fn name_attr(name: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    attr(IFLA_IFNAME, &b)
}

/// struct ifinfomsg: family, pad, type, index, flags, change.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn message(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    m.extend_from_slice(body);
    m
}

/// The RTM_NEWLINK request that creates veth `a` with peer `b`.
fn veth_request(a: &str, b: &str) -> Vec<u8> {
    let mut peer = ifinfomsg(0, 0, 0).to_vec();
    peer.extend(name_attr(b));
    let data = attr(VETH_INFO_PEER | NLA_F_NESTED, &peer);
    let mut info = attr(IFLA_INFO_KIND, b"veth");
    info.extend(attr(IFLA_INFO_DATA | NLA_F_NESTED, &data));
    let mut body = ifinfomsg(0, 0, 0).to_vec();
    body.extend(name_attr(a));
    body.extend(attr(IFLA_LINKINFO | NLA_F_NESTED, &info));
    message(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &body)
}

struct Rtnl(OwnedFd);

impl Rtnl {
    fn open() -> io::Result<Rtnl> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is ours.
        Ok(Rtnl(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Send one request and read the kernel's acknowledgement.
    fn request(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a valid buffer for the call.
        let n = unsafe { libc::send(self.0.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: buf is a valid, writable buffer for the call.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse_ack(&buf[..n as usize])
    }
}

/// The error code of an NLMSG_ERROR acknowledgement (0 = success).
fn parse_ack(reply: &[u8]) -> io::Result<()> {
    if reply.len() < 20 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink reply",
        ));
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink reply",
        ));
    }
    let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

/// Create veth pair `a`/`b` in the current network namespace and bring both up.
pub fn make_veth_up(a: &str, b: &str) -> io::Result<()> {
    let nl = Rtnl::open()?;
    nl.request(&veth_request(a, b))?;
    for name in [a, b] {
        let index = nix::net::if_::if_nametoindex(name).map_err(io::Error::from)? as i32;
        let body = ifinfomsg(index, IFF_UP, IFF_UP);
        nl.request(&message(RTM_NEWLINK, 0, &body))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        assert_eq!(attr(1, b"veth"), vec![8, 0, 1, 0, b'v', b'e', b't', b'h']);
        assert_eq!(attr(3, b"ab\0"), vec![7, 0, 3, 0, b'a', b'b', 0, 0]);
        let req = veth_request("x0", "x1");
        let len = u32::from_ne_bytes(req[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, req.len());
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), RTM_NEWLINK);
        // ifinfomsg, then IFLA_IFNAME "x0"
        assert_eq!(&req[32..40], &[7, 0, 3, 0, b'x', b'0', 0, 0]);
    }

    #[test]
    fn acks_are_read() {
        let mut ok = vec![0u8; 36];
        ok[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(parse_ack(&ok).is_ok());
        ok[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(parse_ack(&ok).unwrap_err().raw_os_error(), Some(17));
        assert!(parse_ack(&[0; 8]).is_err());
    }
}
