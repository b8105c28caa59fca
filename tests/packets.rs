//! Privileged tests of `wirescope packets`: real traffic and crafted frames
//! between two network namespaces, asserting the exact events.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::frame::{self, ETH_8021AD, ETH_8021Q, ETH_IP, ETH_IPV6};
use common::*;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// The fields of a packet event the tests compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Seen {
    direction: String,
    family: String,
    src: Option<String>,
    dst: Option<String>,
    sport: Option<u64>,
    dport: Option<u64>,
    proto: Option<String>,
    len: u64,
    tcp_flags: Option<String>,
    icmp: Option<(u64, u64)>,
    vlan: Option<u64>,
    inner_vlan: Option<u64>,
}

fn seen(v: &Value) -> Seen {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let n = |k: &str| v[k].as_u64();
    Seen {
        direction: s("direction").unwrap_or_default(),
        family: s("family").unwrap_or_default(),
        src: s("src"),
        dst: s("dst"),
        sport: n("sport"),
        dport: n("dport"),
        proto: if v["proto"].is_null() {
            None
        } else {
            Some(v["proto"].to_string().trim_matches('"').to_string())
        },
        len: n("len").unwrap_or(0),
        tcp_flags: s("tcp_flags"),
        icmp: n("icmp_type").zip(n("icmp_code")),
        vlan: n("vlan"),
        inner_vlan: n("inner_vlan"),
    }
}

fn packets(f: &Finished) -> Vec<Seen> {
    f.of_type("packet").iter().map(seen).collect()
}

fn udp_seen(src: SocketAddr, dst: SocketAddr, payload: usize) -> Seen {
    let (family, ip_len) = if src.is_ipv4() {
        ("ipv4", 20)
    } else {
        ("ipv6", 40)
    };
    Seen {
        direction: "ingress".into(),
        family: family.into(),
        src: Some(src.ip().to_string()),
        dst: Some(dst.ip().to_string()),
        sport: Some(u64::from(src.port())),
        dport: Some(u64::from(dst.port())),
        proto: Some("udp".into()),
        len: 14 + ip_len + 8 + payload as u64,
        tcp_flags: None,
        icmp: None,
        vlan: None,
        inner_vlan: None,
    }
}

#[test]
fn udp_datagrams_of_known_sizes_over_ipv4_and_ipv6() {
    require_privileges();
    let lab = Lab::new();
    let t = Tracer::start(&lab.b, &["packets", "-i", IF_B, "--json", "-P", "5555"]);
    let sizes = [0usize, 1, 100, 1400];
    let sent: Vec<(SocketAddr, SocketAddr, usize)> = lab.a.run_in(move || {
        let mut sent = Vec::new();
        for (bind, dst) in [
            ("10.77.0.1:0", SocketAddr::from((IP4_B, 5555))),
            ("[fd00:77::1]:0", SocketAddr::from((IP6_B, 5555))),
        ] {
            let s = UdpSocket::bind(bind).expect("bind");
            for &n in &sizes {
                s.send_to(&vec![0x5a; n], dst).expect("send");
                sent.push((s.local_addr().unwrap(), dst, n));
            }
        }
        sent
    });
    t.wait_json("packet", sent.len());
    let out = t.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let expected: Vec<Seen> = sent.iter().map(|&(s, d, n)| udp_seen(s, d, n)).collect();
    assert_eq!(packets(&out), expected);
    let sum = out.summary();
    assert_eq!(sum["delivered"], 8);
    assert_eq!(sum["lost"], 0);
    assert_eq!(sum["printed"], 8);
}

#[test]
fn tcp_connection_shows_handshake_flags_and_ports_both_directions() {
    require_privileges();
    let lab = Lab::new();
    for server in [
        SocketAddr::from((IP4_B, 8080)),
        SocketAddr::from((IP6_B, 8080)),
    ] {
        let t = Tracer::start(
            &lab.b,
            &[
                "packets",
                "-i",
                IF_B,
                "--direction",
                "both",
                "--json",
                "-P",
                "8080",
            ],
        );
        let listener = lab
            .b
            .run_in(move || TcpListener::bind(server).expect("listen"));
        let srv = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("read");
            c.write_all(b"pong").expect("write");
            // wait for the client's FIN, then close
            let _ = c.read(&mut buf);
        });
        let client_port = lab.a.run_in(move || {
            let mut c =
                TcpStream::connect_timeout(&server, Duration::from_secs(10)).expect("connect");
            let port = c.local_addr().unwrap().port();
            c.write_all(b"ping").expect("write");
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).expect("read");
            assert_eq!(&buf, b"pong");
            drop(c);
            port
        });
        srv.join().unwrap();
        // Both FINs seen (one each way) means the exchange is complete.
        t.wait_for("both FINs", |ls| {
            ls.iter().filter(|l| l.contains("FIN")).count() >= 2
        });
        let out = t.stop();
        let ps = packets(&out);
        let fam = if server.is_ipv4() { "ipv4" } else { "ipv6" };
        let ip_len = if server.is_ipv4() { 20 } else { 40 };
        let cport = u64::from(client_port);
        for p in &ps {
            assert_eq!(p.family, fam);
            assert_eq!(p.proto.as_deref(), Some("tcp"));
            if p.direction == "ingress" {
                assert_eq!((p.sport, p.dport), (Some(cport), Some(8080)), "{p:?}");
            } else {
                assert_eq!((p.sport, p.dport), (Some(8080), Some(cport)), "{p:?}");
            }
        }
        let flags = |dir: &str| -> Vec<String> {
            ps.iter()
                .filter(|p| p.direction == dir)
                .map(|p| p.tcp_flags.clone().unwrap_or_default())
                .collect()
        };
        let inn = flags("ingress");
        let eg = flags("egress");
        // SYN with options: MSS, SACK-permitted, timestamps, window scale (20 bytes)
        assert_eq!(inn[0], "SYN", "{ps:#?}");
        assert_eq!(
            ps.iter().find(|p| p.direction == "ingress").unwrap().len,
            14 + ip_len + 40
        );
        assert_eq!(eg[0], "SYN,ACK", "{ps:#?}");
        assert_eq!(inn[1], "ACK", "{ps:#?}");
        // "ping" with timestamps: 32-byte TCP header + 4 bytes
        assert!(
            ps.iter().any(|p| p.direction == "ingress"
                && p.tcp_flags.as_deref() == Some("PSH,ACK")
                && p.len == 14 + ip_len + 32 + 4),
            "{ps:#?}"
        );
        assert!(eg.iter().any(|f| f == "PSH,ACK"), "{eg:?}");
        assert_eq!(
            inn.iter().filter(|f| f.contains("FIN")).count(),
            1,
            "{inn:?}"
        );
        assert_eq!(eg.iter().filter(|f| f.contains("FIN")).count(), 1, "{eg:?}");
        assert_eq!(inn.iter().filter(|f| f.contains("SYN")).count(), 1);
        assert_eq!(eg.iter().filter(|f| f.contains("SYN")).count(), 1);
    }
}

/// One ICMP/ICMPv6 echo request from a raw socket (the kernel answers it).
fn ping_once(dst: IpAddr) {
    let (domain, proto, kind) = match dst {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8),
    };
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe { libc::socket(domain, libc::SOCK_RAW, proto) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut msg = vec![kind, 0, 0, 0, 0x12, 0x34, 0, 1];
    msg.extend_from_slice(b"wirescope");
    if dst.is_ipv4() {
        let mut sum: u32 = msg
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        msg[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    let addr = nix::sys::socket::SockaddrStorage::from(SocketAddr::new(dst, 0));
    nix::sys::socket::sendto(
        sock.as_raw_fd(),
        &msg,
        &addr,
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("sending echo request");
}

#[test]
fn icmp_echo_request_and_reply() {
    require_privileges();
    let lab = Lab::new();
    let t = Tracer::start(
        &lab.b,
        &[
            "packets",
            "-i",
            IF_B,
            "--direction",
            "both",
            "--proto",
            "icmp",
            "--json",
        ],
    );
    lab.a.run_in(|| {
        ping_once(IpAddr::V4(IP4_B));
        ping_once(IpAddr::V6(IP6_B));
    });
    let is_echo = |l: &String| {
        [
            "\"icmp_type\":8,",
            "\"icmp_type\":0,",
            "\"icmp_type\":128,",
            "\"icmp_type\":129,",
        ]
        .iter()
        .any(|n| l.contains(n))
    };
    t.wait_for("4 echo packets", |ls| {
        ls.iter().filter(|l| is_echo(l)).count() >= 4
    });
    let out = t.stop();
    let echoes: Vec<Seen> = packets(&out)
        .into_iter()
        .filter(|p| matches!(p.icmp, Some((0 | 8 | 128 | 129, _))))
        .collect();
    let want =
        |dir: &str, fam: &str, proto: &str, src: String, dst: String, t: u64, len: u64| Seen {
            direction: dir.into(),
            family: fam.into(),
            src: Some(src),
            dst: Some(dst),
            sport: None,
            dport: None,
            proto: Some(proto.into()),
            len,
            tcp_flags: None,
            icmp: Some((t, 0)),
            vlan: None,
            inner_vlan: None,
        };
    let (a4, b4, a6, b6) = (
        IP4_A.to_string(),
        IP4_B.to_string(),
        IP6_A.to_string(),
        IP6_B.to_string(),
    );
    // 17 bytes of ICMP message after the IP header
    assert_eq!(
        echoes,
        vec![
            want(
                "ingress",
                "ipv4",
                "icmp",
                a4.clone(),
                b4.clone(),
                8,
                14 + 20 + 17
            ),
            want("egress", "ipv4", "icmp", b4, a4, 0, 14 + 20 + 17),
            want(
                "ingress",
                "ipv6",
                "icmpv6",
                a6.clone(),
                b6.clone(),
                128,
                14 + 40 + 17
            ),
            want("egress", "ipv6", "icmpv6", b6, a6, 129, 14 + 40 + 17),
        ]
    );
}

const SRC4: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd02, 0, 0, 0, 0, 0, 0, 2);

fn eth(tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
    frame::eth(MAC_B, MAC_A, tags, ethertype)
}

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    frame::cat(&[
        &eth(&[], ETH_IP),
        &frame::ipv4(src, dst, UDP, &[], &frame::udp(sport, dport, payload)),
    ])
}

fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    frame::cat(&[
        &eth(&[], ETH_IPV6),
        &frame::ipv6(src, dst, UDP, &frame::udp(sport, dport, payload)),
    ])
}

fn crafted(
    family: &str,
    src: &str,
    dst: &str,
    ports: Option<(u64, u64)>,
    proto: &str,
    len: usize,
) -> Seen {
    Seen {
        direction: "ingress".into(),
        family: family.into(),
        src: Some(src.into()),
        dst: Some(dst.into()),
        sport: ports.map(|p| p.0),
        dport: ports.map(|p| p.1),
        proto: Some(proto.into()),
        len: len as u64,
        tcp_flags: None,
        icmp: None,
        vlan: None,
        inner_vlan: None,
    }
}

#[test]
fn crafted_frames_vlan_qinq_ipv4_options_ipv6_extensions_fragments_non_ip() {
    require_privileges();
    let lab = Lab::quiet();
    let t = Tracer::start(&lab.b, &["packets", "-i", IF_B, "--json"]);
    let payload = b"hello";
    let ip4_udp = frame::ipv4(SRC4, DST4, UDP, &[], &frame::udp(1111, 2222, payload));
    let ip6_udp = frame::ipv6(SRC6, DST6, UDP, &frame::udp(3333, 4444, payload));
    // hop-by-hop (8 bytes) then destination options (16 bytes) then TCP
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[TCP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ext.extend_from_slice(&frame::tcp(5555, 80, 0x02, &[]));
    // IPv4 with 8 bytes of options (NOP x3, EOL, padding)
    let opts = [1, 1, 1, 0, 0, 0, 0, 0];
    // non-first IPv4 fragment: offset 185 (x8 bytes), no transport header to read
    let mut frag = frame::ipv4(SRC4, DST4, UDP, &[], &[0xab; 16]);
    frag[6] = 0x00;
    frag[7] = 185;
    let frames = vec![
        frame::cat(&[&eth(&[(ETH_8021Q, 100)], ETH_IP), &ip4_udp]),
        frame::cat(&[
            &eth(&[(ETH_8021AD, 200), (ETH_8021Q, 300)], ETH_IPV6),
            &ip6_udp,
        ]),
        frame::cat(&[
            &eth(&[], ETH_IP),
            &frame::ipv4(SRC4, DST4, UDP, &opts, &frame::udp(7, 9, payload)),
        ]),
        frame::cat(&[&eth(&[], ETH_IPV6), &frame::ipv6(SRC6, DST6, 0, &ext)]),
        frame::cat(&[&eth(&[], ETH_IP), &frag]),
        frame::cat(&[&eth(&[], 0x88b5), &[0u8; 46]]),
        frame::cat(&[
            &eth(&[], ETH_IP),
            &frame::ipv4(SRC4, DST4, ICMP, &[], &frame::icmp(8, 0)),
        ]),
    ];
    let lens: Vec<usize> = frames.iter().map(Vec::len).collect();
    inject(&lab.a, IF_A, frames);
    t.wait_json("packet", 7);
    let out = t.stop();
    let (s4, d4, s6, d6) = (
        SRC4.to_string(),
        DST4.to_string(),
        SRC6.to_string(),
        DST6.to_string(),
    );
    let mut want = vec![
        Seen {
            vlan: Some(100),
            ..crafted("ipv4", &s4, &d4, Some((1111, 2222)), "udp", lens[0])
        },
        Seen {
            vlan: Some(200),
            inner_vlan: Some(300),
            ..crafted("ipv6", &s6, &d6, Some((3333, 4444)), "udp", lens[1])
        },
        crafted("ipv4", &s4, &d4, Some((7, 9)), "udp", lens[2]),
        Seen {
            tcp_flags: Some("SYN".into()),
            ..crafted("ipv6", &s6, &d6, Some((5555, 80)), "tcp", lens[3])
        },
        crafted("ipv4", &s4, &d4, None, "udp", lens[4]),
        Seen {
            family: "other".into(),
            src: None,
            dst: None,
            proto: None,
            ..crafted("", "", "", None, "", lens[5])
        },
        Seen {
            icmp: Some((8, 0)),
            ..crafted("ipv4", &s4, &d4, None, "icmp", lens[6])
        },
    ];
    want[5].family = "other".into();
    assert_eq!(packets(&out), want);
    let other = &out.of_type("packet")[5];
    assert_eq!(other["ethertype"], "0x88b5");
    let sum = out.summary();
    assert_eq!((sum["seen"], sum["malformed"], sum["non_ip"]), (7, 0, 1));
}

/// Frames that end too early or say impossible things.
fn malformed_frames() -> Vec<Vec<u8>> {
    let good4 = frame::ipv4(SRC4, DST4, UDP, &[], &frame::udp(1, 2, b"x"));
    let tcp4 = frame::ipv4(SRC4, DST4, TCP, &[], &frame::tcp(1, 2, 0x10, &[]));
    let good6 = frame::ipv6(SRC6, DST6, UDP, &frame::udp(1, 2, b"x"));
    let mut ihl3 = good4.clone();
    ihl3[0] = 0x43;
    let mut ihl15 = good4.clone();
    ihl15[0] = 0x4f; // 60-byte header, but the packet is shorter
    let mut v6_in_v4 = good4.clone();
    v6_in_v4[0] = 0x65;
    let mut doff2 = tcp4.clone();
    doff2[20 + 12] = 2 << 4;
    let mut ext_cut = frame::ipv6(SRC6, DST6, 0, &[]);
    ext_cut.extend_from_slice(&[UDP, 0]); // hop-by-hop header cut after 2 bytes
    vec![
        frame::cat(&[&eth(&[], ETH_IP), &good4[..10]]), // IPv4 header cut
        frame::cat(&[&eth(&[], ETH_IP), &ihl3]),        // IHL below 5
        frame::cat(&[&eth(&[], ETH_IP), &ihl15]),       // options beyond the end
        frame::cat(&[&eth(&[], ETH_IP), &v6_in_v4]),    // version 6 in an IPv4 frame
        frame::cat(&[&eth(&[], ETH_IP), &tcp4[..30]]),  // TCP header cut
        frame::cat(&[&eth(&[], ETH_IP), &doff2]),       // TCP data offset below 5
        frame::cat(&[&eth(&[], ETH_IPV6), &good6[..30]]), // IPv6 header cut
        frame::cat(&[&eth(&[], ETH_IPV6), &ext_cut]),   // extension header cut
        frame::cat(&[&eth(&[], ETH_IPV6), &good6[..44]]), // UDP header cut
        eth(&[(ETH_8021Q, 5)], ETH_IP)[..16].to_vec(),  // VLAN tag cut
    ]
}

#[test]
fn truncated_and_impossible_frames_are_counted_as_malformed_and_passed() {
    require_privileges();
    let lab = Lab::new();
    let t = Tracer::start(&lab.b, &["packets", "-i", IF_B, "--json", "-P", "7777"]);
    let bad = malformed_frames();
    let n_bad = bad.len() as u64;
    let rx = lab
        .b
        .run_in(|| UdpSocket::bind((IP4_B, 7777)).expect("bind"));
    inject(&lab.a, IF_A, bad);
    // Traffic keeps flowing: a real datagram still arrives, and is traced.
    lab.a.run_in(|| {
        let s = UdpSocket::bind("10.77.0.1:7000").unwrap();
        s.send_to(b"after", (IP4_B, 7777)).unwrap();
    });
    rx.set_read_timeout(Some(patience())).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = rx
        .recv_from(&mut buf)
        .expect("the datagram after the bad frames arrives");
    assert_eq!(
        (&buf[..n], from),
        (&b"after"[..], SocketAddr::from((IP4_A, 7000)))
    );
    t.wait_json("packet", 1);
    let out = t.stop();
    assert_eq!(out.code, Some(0));
    let ps = packets(&out);
    assert_eq!(
        ps,
        vec![udp_seen(
            SocketAddr::from((IP4_A, 7000)),
            SocketAddr::from((IP4_B, 7777)),
            5
        )]
    );
    let sum = out.summary();
    assert_eq!(sum["malformed"], n_bad, "{sum:?}");
    assert_eq!(
        sum["seen"],
        sum["malformed"] + sum["filtered"] + sum["sampled_out"] + sum["delivered"] + sum["lost"],
        "{sum:?}"
    );
}

/// The traffic mix of the filter test: (frame, what a filter looks at).
struct Mixed {
    frame: Vec<u8>,
    family: u8,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
}

fn traffic_mix() -> Vec<Mixed> {
    let s4b = Ipv4Addr::new(10, 2, 0, 1);
    let mut v = Vec::new();
    let mut add = |frame: Vec<u8>, family, proto, src: IpAddr, dst: IpAddr, ports| {
        v.push(Mixed {
            frame,
            family,
            proto,
            src,
            dst,
            ports,
        })
    };
    add(
        udp4(SRC4, DST4, 1000, 53, b"q"),
        4,
        UDP,
        SRC4.into(),
        DST4.into(),
        Some((1000, 53)),
    );
    add(
        frame::cat(&[
            &eth(&[], ETH_IP),
            &frame::ipv4(s4b, DST4, TCP, &[], &frame::tcp(40000, 80, 2, &[])),
        ]),
        4,
        TCP,
        s4b.into(),
        DST4.into(),
        Some((40000, 80)),
    );
    add(
        udp6(SRC6, DST6, 5353, 53, b"q"),
        6,
        UDP,
        SRC6.into(),
        DST6.into(),
        Some((5353, 53)),
    );
    add(
        frame::cat(&[
            &eth(&[], ETH_IPV6),
            &frame::ipv6(DST6, SRC6, TCP, &frame::tcp(443, 50000, 0x12, &[])),
        ]),
        6,
        TCP,
        DST6.into(),
        SRC6.into(),
        Some((443, 50000)),
    );
    add(
        frame::cat(&[
            &eth(&[], ETH_IP),
            &frame::ipv4(DST4, SRC4, ICMP, &[], &frame::icmp(0, 0)),
        ]),
        4,
        ICMP,
        DST4.into(),
        SRC4.into(),
        None,
    );
    add(
        frame::cat(&[
            &eth(&[], ETH_IPV6),
            &frame::ipv6(SRC6, DST6, ICMPV6, &frame::icmp(128, 0)),
        ]),
        6,
        ICMPV6,
        SRC6.into(),
        DST6.into(),
        None,
    );
    add(
        udp4(DST4, s4b, 80, 9999, b"r"),
        4,
        UDP,
        DST4.into(),
        s4b.into(),
        Some((80, 9999)),
    );
    v
}

#[test]
fn each_filter_keeps_exactly_the_matching_packets() {
    require_privileges();
    let lab = Lab::quiet();
    let in_net = |ip: IpAddr, net: &str| -> bool {
        let (a, p) = net.split_once('/').unwrap();
        let a: IpAddr = a.parse().unwrap();
        let p: u32 = p.parse().unwrap();
        match (ip, a) {
            (IpAddr::V4(x), IpAddr::V4(y)) => {
                p == 0 || (u32::from(x) ^ u32::from(y)) >> (32 - p) == 0
            }
            (IpAddr::V6(x), IpAddr::V6(y)) => {
                p == 0 || (u128::from(x) ^ u128::from(y)) >> (128 - p) == 0
            }
            _ => false,
        }
    };
    let has_port = |m: &Mixed, p: u16| m.ports.is_some_and(|(s, d)| s == p || d == p);
    type Keep = Box<dyn Fn(&Mixed) -> bool>;
    let cases: Vec<(&[&str], Keep)> = vec![
        (&["--proto", "tcp"], Box::new(|m: &Mixed| m.proto == TCP)),
        (&["--proto", "udp"], Box::new(|m: &Mixed| m.proto == UDP)),
        (
            &["--proto", "icmp"],
            Box::new(|m: &Mixed| m.proto == ICMP || m.proto == ICMPV6),
        ),
        (&["-P", "53"], Box::new(move |m: &Mixed| has_port(m, 53))),
        (
            &["-P", "80,443"],
            Box::new(move |m: &Mixed| has_port(m, 80) || has_port(m, 443)),
        ),
        (
            &["--src", "10.2.0.0/16"],
            Box::new(move |m: &Mixed| in_net(m.src, "10.2.0.0/16")),
        ),
        (
            &["--dst", "fd02::/16"],
            Box::new(move |m: &Mixed| in_net(m.dst, "fd02::/16")),
        ),
        (
            &["--dst", "10.1.1.2"],
            Box::new(move |m: &Mixed| in_net(m.dst, "10.1.1.2/32")),
        ),
        (&["-4"], Box::new(|m: &Mixed| m.family == 4)),
        (&["-6"], Box::new(|m: &Mixed| m.family == 6)),
        (
            &["-6", "--proto", "tcp", "-P", "443"],
            Box::new(move |m: &Mixed| m.family == 6 && m.proto == TCP && has_port(m, 443)),
        ),
    ];
    for (args, keep) in cases {
        let mix = traffic_mix();
        // End with a frame the filter keeps: once it is printed, all came through.
        let last = mix.iter().position(&keep).expect("a matching frame");
        let mut order: Vec<usize> = (0..mix.len()).collect();
        order.push(last);
        let expected: Vec<(String, String, Option<u64>)> = order
            .iter()
            .map(|&i| &mix[i])
            .filter(|m| keep(m))
            .map(|m| {
                (
                    m.src.to_string(),
                    m.dst.to_string(),
                    m.ports.map(|p| u64::from(p.0)),
                )
            })
            .collect();
        let mut full = vec!["packets", "-i", IF_B, "--json"];
        full.extend_from_slice(args);
        let t = Tracer::start(&lab.b, &full);
        inject(
            &lab.a,
            IF_A,
            order.iter().map(|&i| mix[i].frame.clone()).collect(),
        );
        t.wait_json("packet", expected.len());
        let out = t.stop();
        let got: Vec<(String, String, Option<u64>)> = packets(&out)
            .into_iter()
            .map(|p| {
                (
                    p.src.unwrap_or_default(),
                    p.dst.unwrap_or_default(),
                    p.sport,
                )
            })
            .collect();
        assert_eq!(got, expected, "filter {args:?}");
        let sum = out.summary();
        assert_eq!(sum["seen"], order.len() as u64, "filter {args:?}: {sum:?}");
        assert_eq!(
            sum["filtered"],
            (order.len() - expected.len()) as u64,
            "filter {args:?}"
        );
    }
}

#[test]
fn sample_keeps_one_in_n_matching_packets() {
    require_privileges();
    let lab = Lab::quiet();
    // 91 matching frames (sport 1001..=1091) with non-matching ones in between.
    let mut frames = Vec::new();
    for i in 1001..=1091u16 {
        frames.push(udp4(SRC4, DST4, i, 53, b"s"));
        frames.push(udp4(SRC4, DST4, i, 54, b"n"));
    }
    frames.pop();
    // Sampling counts per CPU. Generic XDP runs on the sending CPU, and the
    // sender stays on one CPU: the kept frames are exactly the 1st, 11th, ... 91st.
    let t = Tracer::start(
        &lab.b,
        &[
            "packets",
            "-i",
            IF_B,
            "--xdp-mode",
            "generic",
            "--json",
            "--sample",
            "10",
            "-P",
            "53",
        ],
    );
    inject(&lab.a, IF_A, frames.clone());
    t.wait_json("packet", 10);
    let out = t.stop();
    let sports: Vec<u64> = packets(&out).iter().filter_map(|p| p.sport).collect();
    assert_eq!(sports, (0..10).map(|k| 1001 + 10 * k).collect::<Vec<u64>>());
    let sum = out.summary();
    assert_eq!(
        (sum["delivered"], sum["sampled_out"], sum["filtered"]),
        (10, 81, 90),
        "{sum:?}"
    );

    // Native XDP on veth may poll on another CPU: 1 in 10 per CPU, so between
    // 91/10 and that plus one per CPU.
    let t = Tracer::start(
        &lab.b,
        &[
            "packets", "-i", IF_B, "--json", "--sample", "10", "-P", "53",
        ],
    );
    inject(&lab.a, IF_A, frames);
    std::thread::sleep(Duration::from_millis(300));
    let out = t.stop();
    let sum = out.summary();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert_eq!(sum["delivered"] + sum["sampled_out"], 91, "{sum:?}");
    assert!((9..=10 + cpus).contains(&sum["delivered"]), "{sum:?}");
    assert_eq!(out.of_type("packet").len() as u64, sum["delivered"]);
}

/// Records of a pcap file as (captured bytes, original length), read by tcpdump.
fn tcpdump_read(path: &std::path::Path) -> Vec<Vec<u8>> {
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .args(["-n", "-xx", "-K"])
        .output()
        .expect("tcpdump runs (apt-get install tcpdump)");
    assert!(
        out.status.success(),
        "tcpdump -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(hex) = t
            .strip_prefix("0x")
            .and_then(|r| r.split_once(':'))
            .map(|(_, h)| h)
        {
            let bytes = hex
                .split_whitespace()
                .flat_map(|w| {
                    (0..w.len())
                        .step_by(2)
                        .map(move |i| u8::from_str_radix(&w[i..i + 2], 16).unwrap())
                })
                .collect::<Vec<u8>>();
            packets
                .last_mut()
                .expect("a packet line first")
                .extend(bytes);
        } else if !line.starts_with(char::is_whitespace) {
            packets.push(Vec::new());
        }
    }
    packets
}

/// Our own reading of the record headers: (caplen, origlen) per record.
fn pcap_lengths(bytes: &[u8]) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let cap = u32::from_le_bytes(bytes[off + 8..off + 12].try_into().unwrap());
        let orig = u32::from_le_bytes(bytes[off + 12..off + 16].try_into().unwrap());
        v.push((cap, orig));
        off += 16 + cap as usize;
    }
    assert_eq!(off, bytes.len(), "pcap ends on a record boundary");
    v
}

#[test]
fn pcap_holds_exactly_the_reported_packets_byte_for_byte() {
    require_privileges();
    let lab = Lab::quiet();
    let dir = std::env::temp_dir().join(format!("ws-pcap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full = dir.join("full.pcap");
    let cut = dir.join("cut.pcap");
    let frames: Vec<Vec<u8>> = vec![
        udp4(SRC4, DST4, 4000, 4242, &[1u8; 10]),
        udp4(
            SRC4,
            DST4,
            4001,
            4242,
            &(0..=255u8).cycle().take(1000).collect::<Vec<u8>>(),
        ),
        udp6(SRC6, DST6, 4002, 4242, &[7u8; 1400]),
        udp4(SRC4, DST4, 4003, 9, &[2u8; 30]), // filtered out: not in the pcap
        frame::cat(&[
            &eth(&[(ETH_8021Q, 42)], ETH_IP),
            &frame::ipv4(SRC4, DST4, UDP, &[], &frame::udp(4004, 4242, &[9u8; 64])),
        ]),
    ];
    for (path, snap) in [(&full, None), (&cut, Some("64"))] {
        let p = path.to_str().unwrap();
        let mut args = vec!["packets", "-i", IF_B, "--json", "-P", "4242", "--pcap", p];
        if let Some(s) = snap {
            args.extend_from_slice(&["--snaplen", s]);
        }
        let t = Tracer::start(&lab.b, &args);
        inject(&lab.a, IF_A, frames.clone());
        t.wait_json("packet", 4);
        let out = t.stop();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let reported: Vec<u64> = packets(&out).iter().map(|p| p.len).collect();
        let kept: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|f| f.len() != frames[3].len())
            .collect();
        assert_eq!(
            reported,
            kept.iter().map(|f| f.len() as u64).collect::<Vec<_>>()
        );
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "pcap mode");
        let read = tcpdump_read(path);
        let lens = pcap_lengths(&read_all(path));
        match snap {
            None => {
                assert_eq!(read, kept.iter().map(|f| f.to_vec()).collect::<Vec<_>>());
                assert!(lens.iter().all(|(c, o)| c == o));
            }
            Some(_) => {
                let want: Vec<Vec<u8>> =
                    kept.iter().map(|f| f[..64.min(f.len())].to_vec()).collect();
                assert_eq!(read, want);
                let want_lens: Vec<(u32, u32)> = kept
                    .iter()
                    .map(|f| (64.min(f.len()) as u32, f.len() as u32))
                    .collect();
                assert_eq!(lens, want_lens);
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pcap_at_egress_holds_the_bytes_sent() {
    require_privileges();
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("ws-pcap-eg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("eg.pcap");
    let t = Tracer::start(
        &lab.b,
        &[
            "packets",
            "-i",
            IF_B,
            "--direction",
            "egress",
            "--json",
            "-P",
            "6000",
            "--pcap",
            path.to_str().unwrap(),
        ],
    );
    let payloads: Vec<Vec<u8>> = vec![b"first".to_vec(), vec![0xee; 1200], (0..200u8).collect()];
    let p2 = payloads.clone();
    lab.b.run_in(move || {
        let s = UdpSocket::bind((IP4_B, 6000)).unwrap();
        for p in &p2 {
            s.send_to(p, (IP4_A, 6001)).unwrap();
        }
    });
    t.wait_json("packet", 3);
    let out = t.stop();
    let read = tcpdump_read(&path);
    assert_eq!(read.len(), 3);
    for (frame, payload) in read.iter().zip(&payloads) {
        assert_eq!(&frame[..6], &MAC_A, "destination MAC");
        assert_eq!(&frame[14 + 12..14 + 16], &IP4_B.octets());
        assert_eq!(&frame[14 + 20 + 8..], payload.as_slice());
    }
    assert!(packets(&out)
        .iter()
        .all(|p| p.direction == "egress" && p.dport == Some(6001)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_ring_buffer_losses_are_counted_exactly() {
    require_privileges();
    let lab = Lab::quiet();
    // A 4 KiB ring buffer and a reader that does not read until the burst is
    // over: most records find the ring full.
    let t = Tracer::start_held(
        &lab.b,
        &[
            "packets",
            "-i",
            IF_B,
            "--json",
            "--ringbuf-size",
            "4096",
            "-P",
            "9999",
        ],
    );
    let n = 3000u64;
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| udp4(SRC4, DST4, 1 + (i % 60000) as u16, 9999, b"burst"))
        .collect();
    inject(&lab.a, IF_A, frames);
    // let the last frames pass XDP before reading resumes
    std::thread::sleep(Duration::from_millis(300));
    t.release();
    let out = t.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let sum = out.summary();
    let printed = out.of_type("packet").len() as u64;
    assert!(sum["lost"] > 0, "expected losses: {sum:?}");
    assert_eq!(sum["delivered"] + sum["lost"], n, "{sum:?}");
    assert_eq!(printed, sum["delivered"], "{sum:?}");
    let reported: u64 = out
        .of_type("lost")
        .iter()
        .filter_map(|v| v["count"].as_u64())
        .sum();
    assert_eq!(reported, sum["lost"], "lost lines add up to the summary");
    assert!(
        out.stderr.contains(&format!("{} lost", sum["lost"])),
        "{}",
        out.stderr
    );
}

fn link_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("link_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids
}

fn link_exists(id: u32) -> bool {
    // SAFETY: plain syscall wrapper.
    let fd = unsafe { libbpf_sys::bpf_link_get_fd_by_id(id) };
    if fd >= 0 {
        // SAFETY: the fd is ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        true
    } else {
        false
    }
}

#[test]
fn kill_9_leaves_nothing_attached() {
    require_privileges();
    let lab = Lab::new();
    let t = Tracer::start(&lab.b, &["packets", "-i", IF_B, "--direction", "both"]);
    // Egress has a link (tcx) only from Linux 6.6 on; before, it is a clsact
    // filter, which a killed process cannot remove (the kernel matrix runs both).
    let tcx = kernel_at_least(6, 6);
    let method = if tcx { "tcx" } else { "clsact" };
    assert!(
        t.stderr_text()
            .contains(&format!("egress at TC ({method})")),
        "egress should use {method} on this kernel: {}",
        t.stderr_text()
    );
    let ids = link_ids(t.pid());
    if tcx {
        assert_eq!(ids.len(), 2, "an XDP and a tcx link: {ids:?}");
    } else {
        assert_eq!(ids.len(), 1, "an XDP link: {ids:?}");
    }
    assert!(ids.iter().all(|&id| link_exists(id)));
    assert!(lab.b.ip(&["link", "show", IF_B]).contains("xdp"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(t.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = t.collect();
    assert_eq!(out.code, None, "killed by a signal");
    // Links go when the last fd closes; the kernel frees them shortly after.
    let deadline = std::time::Instant::now() + patience();
    while ids.iter().any(|&id| link_exists(id)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        ids.iter().all(|&id| !link_exists(id)),
        "links left: {ids:?}"
    );
    assert!(
        !lab.b.ip(&["link", "show", IF_B]).contains("xdp"),
        "XDP left on {IF_B}"
    );
    let qdiscs = lab.b.exec("tc", &["qdisc", "show", "dev", IF_B]);
    if tcx {
        assert!(
            !qdiscs.contains("clsact"),
            "clsact left on {IF_B}: {qdiscs}"
        );
    } else {
        // Known limit without tcx: the egress filter outlives a SIGKILL...
        let filters = lab.b.exec("tc", &["filter", "show", "dev", IF_B, "egress"]);
        assert!(
            filters.contains("tc_egress"),
            "expected the clsact filter a killed wirescope cannot remove: {filters}"
        );
        // ...and the next run takes its place, then removes it on exit.
        let again = Tracer::start(&lab.b, &["packets", "-i", IF_B, "--direction", "egress"]);
        assert!(
            again.stderr_text().contains("replacing the TC filter"),
            "{}",
            again.stderr_text()
        );
        let out = again.stop();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let filters = lab.b.exec("tc", &["filter", "show", "dev", IF_B, "egress"]);
        assert!(!filters.contains("tc_egress"), "filter left: {filters}");
    }
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[test]
fn refuses_to_replace_an_xdp_program_attached_by_something_else() {
    require_privileges();
    let lab = Lab::new();
    let first = Tracer::start(&lab.b, &["packets", "-i", IF_B]);
    let second = Tracer::start_cmd(&lab.b, &["packets", "-i", IF_B], false).collect();
    assert_eq!(second.code, Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains("already has an XDP program"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("panicked"));
    // the first one is still attached and working
    assert!(lab.b.ip(&["link", "show", IF_B]).contains("xdp"));
    let out = first.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!lab.b.ip(&["link", "show", IF_B]).contains("xdp"));
}

#[test]
fn clear_errors_for_bad_input_and_missing_privileges() {
    require_privileges();
    let r = wirescope(&["packets", "-i", "ws-nosuch0"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no such interface: ws-nosuch0"),
        "{}",
        r.stderr
    );
    for args in [
        &["packets", "-i", "lo", "--src", "300.1.1.1/8"][..],
        &["packets", "-i", "lo", "-P", "99999"],
        &["packets", "-i", "lo", "-4", "--dst", "fd00::/8"],
        &["packets", "-i", "lo", "--bogus"],
    ] {
        let r = wirescope(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{}",
            r.stderr
        );
    }
    // An unprivileged user is told what is missing and how to fix it.
    let out = Command::new(wirescope_bin())
        .args(["packets", "-i", "lo"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_BPF") && err.contains("setcap"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn table_output_and_closed_pipe() {
    require_privileges();
    let lab = Lab::quiet();
    let t = Tracer::start(&lab.b, &["packets", "-i", IF_B]);
    inject(&lab.a, IF_A, vec![udp6(SRC6, DST6, 1234, 53, b"x")]);
    t.wait_for("a table line", |ls| ls.len() >= 2);
    let out = t.stop();
    assert!(out.lines[0].starts_with("TIME(UTC)"), "{:?}", out.lines);
    let cols: Vec<&str> = out.lines[1].split_whitespace().collect();
    assert_eq!(
        &cols[1..7],
        &[IF_B, "in", "udp", "[fd01::1]:1234", "[fd02::2]:53", "63"]
    );
    // `| head -1` style: the reader goes away; wirescope ends quietly with 0.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.b.name])
        .arg(wirescope_bin())
        .args(["packets", "-i", IF_B, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    let a = lab.a.name.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let feeder = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + patience();
        while !d2.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline
        {
            inject_in(&a, IF_A, vec![udp4(SRC4, DST4, 1, 2, b"p")]);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    feeder.join().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("output closed"), "{err}");
}
