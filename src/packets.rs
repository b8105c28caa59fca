//! `wirescope packets`: one line per packet at XDP (ingress) and TC (egress).

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, RingBufferBuilder};

use crate::addr::{self, Cidr, Endpoint};
use crate::netattach::{self, XdpMode};
use crate::output::{self, Record, Sink};
use crate::pcap::PcapWriter;
use crate::runner::{self, Counters, Limits, LossReporter};
use crate::sys;

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/xdp_trace.skel.rs"));
}
use skel::{types, XdpTraceSkelBuilder};

/// Bytes a packet record can capture (MAX_SNAPLEN in src/bpf/xdp_trace.h).
pub const MAX_SNAPLEN: u16 = types::xdp_trace_limits::MAX_SNAPLEN.0 as u16;
/// Ports a filter can list (MAX_PORTS in src/bpf/xdp_trace.h).
pub const MAX_PORTS: usize = types::xdp_trace_limits::MAX_PORTS.0 as usize;
const PROTO_ANY_ICMP: u8 = types::xdp_trace_limits::PROTO_ANY_ICMP.0 as u8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtoFilter {
    Tcp,
    Udp,
    /// ICMP and ICMPv6
    Icmp,
}

/// Everything `packets` needs, already checked for usage errors.
#[derive(Clone, Debug)]
pub struct Config {
    pub interface: String,
    pub direction: Direction,
    pub xdp_mode: XdpMode,
    pub proto: Option<ProtoFilter>,
    pub ports: Vec<u16>,
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
    /// 4 or 6; None = both
    pub family: Option<u8>,
    pub sample: u32,
    pub snaplen: u16,
    pub pcap: Option<PathBuf>,
    pub json: bool,
    pub limits: Limits,
    pub ringbuf_size: u32,
}

// SAFETY: pkt_event is a generated #[repr(C)] struct of integers and byte
// arrays with explicit padding fields: every bit pattern is a valid value.
unsafe impl plain::Plain for types::pkt_event {}

/// A packet event decoded from the kernel's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub len: u32,
    pub egress: bool,
    pub family: u8,
    pub ethertype: u16,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// IP protocol number (None for non-IP frames)
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<u8>,
    pub icmp: Option<(u8, u8)>,
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

impl Packet {
    /// Decode one ring-buffer record: the event and the captured bytes after it.
    pub fn decode(data: &[u8]) -> Option<(Packet, &[u8])> {
        let mut ev = types::pkt_event::default();
        plain::copy_from_bytes(&mut ev, data).ok()?;
        let head = std::mem::size_of::<types::pkt_event>();
        let cap = data.get(head..head + usize::from(ev.cap_len))?;
        Some((Packet::from(&ev), cap))
    }
}

impl From<&types::pkt_event> for Packet {
    fn from(ev: &types::pkt_event) -> Self {
        let ip = ev.family == addr::FAMILY_IPV4 || ev.family == addr::FAMILY_IPV6;
        let l4 = ip && ev.has_l4 != 0;
        let ports = l4 && (ev.proto == IPPROTO_TCP || ev.proto == IPPROTO_UDP);
        let icmp = l4 && (ev.proto == IPPROTO_ICMP || ev.proto == IPPROTO_ICMPV6);
        Packet {
            ts_ns: ev.ts_ns,
            ifindex: ev.ifindex,
            len: ev.len,
            egress: ev.direction == types::direction::DIR_EGRESS.0 as u8,
            family: if ip { ev.family } else { 0 },
            ethertype: ev.ethertype,
            src: addr::ip_from_bytes(ev.family, &ev.saddr),
            dst: addr::ip_from_bytes(ev.family, &ev.daddr),
            proto: ip.then_some(ev.proto),
            sport: ports.then_some(ev.sport),
            dport: ports.then_some(ev.dport),
            tcp_flags: (l4 && ev.proto == IPPROTO_TCP).then_some(ev.tcp_flags),
            icmp: icmp.then_some((ev.icmp_type, ev.icmp_code)),
            vlan: (ev.vlans >= 1).then_some(ev.vlan),
            inner_vlan: (ev.vlans >= 2).then_some(ev.inner_vlan),
        }
    }
}

/// TCP flags in the order people read them: SYN, FIN and RST first.
const TCP_FLAG_NAMES: [(u8, &str); 8] = [
    (0x02, "SYN"),
    (0x01, "FIN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
];

/// Appends TCP flags as "SYN,ACK" (nothing when no flag is set).
fn push_tcp_flags(buf: &mut Vec<u8>, flags: u8) {
    let mut first = true;
    for (bit, name) in TCP_FLAG_NAMES {
        if flags & bit != 0 {
            if !first {
                buf.push(b',');
            }
            buf.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
}

fn proto_name(proto: u8) -> Option<&'static str> {
    match proto {
        IPPROTO_TCP => Some("tcp"),
        IPPROTO_UDP => Some("udp"),
        IPPROTO_ICMP => Some("icmp"),
        IPPROTO_ICMPV6 => Some("icmpv6"),
        _ => None,
    }
}

/// Appends an ICMP type and code as people name them ("echo-request",
/// "unreachable code 3", "type 42 code 0").
fn push_icmp_text(buf: &mut Vec<u8>, v6: bool, t: u8, c: u8) {
    let name = match (v6, t) {
        (false, 0) | (true, 129) => "echo-reply",
        (false, 8) | (true, 128) => "echo-request",
        (false, 3) | (true, 1) => "unreachable",
        (false, 11) | (true, 3) => "time-exceeded",
        (true, 2) => "packet-too-big",
        (true, 133) => "router-solicit",
        (true, 134) => "router-advert",
        (true, 135) => "neighbor-solicit",
        (true, 136) => "neighbor-advert",
        _ => "",
    };
    if name.is_empty() {
        buf.extend_from_slice(b"type ");
        output::push_u64(buf, u64::from(t));
        buf.extend_from_slice(b" code ");
        output::push_u64(buf, u64::from(c));
    } else {
        buf.extend_from_slice(name.as_bytes());
        if c != 0 {
            buf.extend_from_slice(b" code ");
            output::push_u64(buf, u64::from(c));
        }
    }
}

/// Appends an ethertype the way `{:#06x}` prints a u16: "0x0800".
fn push_ethertype(buf: &mut Vec<u8>, t: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.extend_from_slice(b"0x");
    for shift in [12u16, 8, 4, 0] {
        buf.push(HEX[usize::from((t >> shift) & 0xf)]);
    }
}

/// `"key":` followed by a number, or null.
fn push_opt_num(buf: &mut Vec<u8>, key: &[u8], v: Option<u64>) {
    buf.extend_from_slice(key);
    match v {
        Some(n) => output::push_u64(buf, n),
        None => buf.extend_from_slice(b"null"),
    }
}

/// `"key":` followed by a quoted address, or null.
fn push_opt_ip(buf: &mut Vec<u8>, key: &[u8], v: Option<IpAddr>) {
    buf.extend_from_slice(key);
    match v {
        Some(ip) => {
            buf.push(b'"');
            output::push_ip(buf, ip);
            buf.push(b'"');
        }
        None => buf.extend_from_slice(b"null"),
    }
}

/// A packet with what it needs to print: the interface name and wall time.
pub struct PacketLine<'a> {
    pub p: &'a Packet,
    pub ifname: &'a str,
    pub wall_ns: i128,
}

pub const TABLE_HEADER: &str = "TIME(UTC)       IFACE      DIR PROTO  SOURCE                 \
                                DESTINATION              LEN  INFO";

/// The line is built in a buffer the sink reuses, without allocation or
/// `fmt` machinery: this runs once per packet, up to millions of times a second.
impl Record for PacketLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(160);
        self.table_line(&mut buf)?;
        w.write_all(&buf)
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(400);
        self.json_line(&mut buf)?;
        w.write_all(&buf)
    }

    /// `{:<15} {:<10} {:<3} {:<6} {:<22} {:<22} {:>5}  {info}`
    fn table_line(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let p = self.p;
        let start = buf.len();
        output::push_time_of_day_us(buf, self.wall_ns);
        output::pad_from(buf, start, 15);
        buf.push(b' ');
        output::push_left(buf, self.ifname, 10);
        buf.push(b' ');
        output::push_left(buf, if p.egress { "out" } else { "in" }, 3);
        buf.push(b' ');
        let start = buf.len();
        match p.proto {
            None => push_ethertype(buf, p.ethertype),
            Some(n) => match proto_name(n) {
                Some(name) => buf.extend_from_slice(name.as_bytes()),
                None => output::push_u64(buf, u64::from(n)),
            },
        }
        output::pad_from(buf, start, 6);
        buf.push(b' ');
        Endpoint(p.src, p.sport).push_padded(buf, 22);
        buf.push(b' ');
        Endpoint(p.dst, p.dport).push_padded(buf, 22);
        buf.push(b' ');
        output::push_right_u64(buf, u64::from(p.len), 5);
        buf.extend_from_slice(b"  ");
        let info = buf.len();
        if let Some(f) = p.tcp_flags {
            push_tcp_flags(buf, f);
        } else if let Some((t, c)) = p.icmp {
            push_icmp_text(buf, p.family == addr::FAMILY_IPV6, t, c);
        }
        if let Some(v) = p.vlan {
            if buf.len() > info {
                buf.push(b' ');
            }
            buf.extend_from_slice(b"vlan ");
            output::push_u64(buf, u64::from(v));
            if let Some(iv) = p.inner_vlan {
                buf.push(b'.');
                output::push_u64(buf, u64::from(iv));
            }
        }
        buf.push(b'\n');
        Ok(())
    }

    /// The fields, their order and null handling are documented in the README.
    fn json_line(&self, buf: &mut Vec<u8>) -> io::Result<()> {
        let p = self.p;
        buf.extend_from_slice(b"{\"type\":\"packet\",\"time\":\"");
        output::push_rfc3339_us(buf, self.wall_ns);
        buf.extend_from_slice(b"\",\"ifname\":");
        output::push_json_str(buf, self.ifname);
        buf.extend_from_slice(if p.egress {
            b",\"direction\":\"egress\""
        } else {
            b",\"direction\":\"ingress\""
        });
        buf.extend_from_slice(match p.family {
            addr::FAMILY_IPV4 => b",\"family\":\"ipv4\"",
            addr::FAMILY_IPV6 => b",\"family\":\"ipv6\"",
            _ => b",\"family\":\"other\"",
        });
        buf.extend_from_slice(b",\"ethertype\":\"");
        push_ethertype(buf, p.ethertype);
        buf.push(b'"');
        push_opt_ip(buf, b",\"src\":", p.src);
        push_opt_ip(buf, b",\"dst\":", p.dst);
        push_opt_num(buf, b",\"sport\":", p.sport.map(u64::from));
        push_opt_num(buf, b",\"dport\":", p.dport.map(u64::from));
        buf.extend_from_slice(b",\"proto\":");
        match p.proto {
            None => buf.extend_from_slice(b"null"),
            Some(n) => match proto_name(n) {
                Some(name) => {
                    buf.push(b'"');
                    buf.extend_from_slice(name.as_bytes());
                    buf.push(b'"');
                }
                None => output::push_u64(buf, u64::from(n)),
            },
        }
        push_opt_num(buf, b",\"len\":", Some(u64::from(p.len)));
        buf.extend_from_slice(b",\"tcp_flags\":");
        match p.tcp_flags {
            None => buf.extend_from_slice(b"null"),
            Some(f) => {
                buf.push(b'"');
                push_tcp_flags(buf, f);
                buf.push(b'"');
            }
        }
        push_opt_num(buf, b",\"icmp_type\":", p.icmp.map(|i| u64::from(i.0)));
        push_opt_num(buf, b",\"icmp_code\":", p.icmp.map(|i| u64::from(i.1)));
        push_opt_num(buf, b",\"vlan\":", p.vlan.map(u64::from));
        push_opt_num(buf, b",\"inner_vlan\":", p.inner_vlan.map(u64::from));
        buf.extend_from_slice(b"}\n");
        Ok(())
    }
}

fn cidr_config(c: Option<&Cidr>) -> types::cidr {
    match c {
        None => types::cidr::default(),
        Some(c) => types::cidr {
            family: c.family(),
            prefix_len: c.prefix(),
            addr: c.addr_bytes(),
        },
    }
}

fn kernel_config(cfg: &Config) -> types::xdp_config {
    let mut ports = [0u16; MAX_PORTS];
    for (slot, p) in ports.iter_mut().zip(&cfg.ports) {
        *slot = *p;
    }
    types::xdp_config {
        sample: cfg.sample,
        snaplen: cfg.snaplen,
        proto: match cfg.proto {
            None => 0,
            Some(ProtoFilter::Tcp) => IPPROTO_TCP,
            Some(ProtoFilter::Udp) => IPPROTO_UDP,
            Some(ProtoFilter::Icmp) => PROTO_ANY_ICMP,
        },
        family: cfg.family.unwrap_or(0),
        n_ports: cfg.ports.len().min(MAX_PORTS) as u8,
        ports,
        src: cidr_config(cfg.src.as_ref()),
        dst: cidr_config(cfg.dst.as_ref()),
    }
}

const OWN_COUNTERS: [(u32, &str); 3] = [
    (types::xdp_trace_counter::COUNTER_MALFORMED.0, "malformed"),
    (types::xdp_trace_counter::COUNTER_NON_IP.0, "non_ip"),
    (
        types::xdp_trace_counter::COUNTER_SAMPLED_OUT.0,
        "sampled_out",
    ),
];

pub fn run(cfg: Config) -> Result<()> {
    let ifindex = sys::ifindex(&cfg.interface)?;
    sys::require_caps(&[sys::CAP_BPF, sys::CAP_PERFMON, sys::CAP_NET_ADMIN])?;
    let ingress = matches!(cfg.direction, Direction::Ingress | Direction::Both);
    let egress = matches!(cfg.direction, Direction::Egress | Direction::Both);

    let mut open_object = std::mem::MaybeUninit::uninit();
    let mut open = XdpTraceSkelBuilder::default()
        .open(&mut open_object)
        .context("opening the packet programs")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the packet programs have no read-only data section")?;
    rodata.cfg = kernel_config(&cfg);
    open.maps
        .events
        .set_max_entries(cfg.ringbuf_size)
        .context("sizing the ring buffer")?;
    open.progs.xdp_ingress.set_autoload(ingress);
    open.progs.tc_egress.set_autoload(egress);
    let skel = open
        .load()
        .context("loading the packet programs into the kernel")?;

    let pcap = match &cfg.pcap {
        Some(path) => Some(PcapWriter::create(path, u32::from(cfg.snaplen))?),
        None => None,
    };
    let pcap = RefCell::new(pcap);

    let mut how = Vec::new();
    let xdp_link = if ingress {
        let l = netattach::attach_xdp(
            &skel.progs.xdp_ingress,
            ifindex,
            &cfg.interface,
            cfg.xdp_mode,
        )?;
        how.push(format!(
            "ingress at XDP ({})",
            if l.mode == XdpMode::Native {
                "native"
            } else {
                "generic"
            }
        ));
        Some(l)
    } else {
        None
    };
    let tc_link = if egress {
        let l = netattach::attach_tc_egress(&skel.progs.tc_egress, ifindex, &cfg.interface)?;
        how.push(format!("egress at TC ({})", l.kind()));
        Some(l)
    } else {
        None
    };

    let format = if cfg.json {
        output::Format::Json
    } else {
        output::Format::Table
    };
    let sink = RefCell::new(Sink::stdout(format, cfg.limits.count));
    let ifname = cfg.interface.as_str();
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let Some((p, cap)) = Packet::decode(data) else {
                return 0;
            };
            let mut s = sink.borrow_mut();
            let wall_ns = s.clock.wall_ns(p.ts_ns);
            if let Some(w) = pcap.borrow_mut().as_mut() {
                if let Err(e) = w.packet(wall_ns, p.len, cap) {
                    s.fail(anyhow::Error::new(e).context("writing the pcap file"));
                    return runner::CALLBACK_STOP;
                }
            }
            let line = PacketLine {
                p: &p,
                ifname,
                wall_ns,
            };
            if s.event(&line) {
                0
            } else {
                runner::CALLBACK_STOP
            }
        })
        .context("setting up the ring buffer")?;
    let rb = builder.build().context("setting up the ring buffer")?;
    let counters = Counters::new(&skel.maps.counters as &dyn MapCore, &OWN_COUNTERS);
    let mut losses = LossReporter::new();

    runner::install_signal_handlers()?;
    sink.borrow_mut().header(TABLE_HEADER);
    eprintln!(
        "Tracing {} on {}. Ctrl-C to end.",
        how.join(" and "),
        cfg.interface
    );
    let flush_pcap = |sink: &RefCell<Sink>| {
        if let Some(w) = pcap.borrow_mut().as_mut() {
            if let Err(e) = w.flush() {
                sink.borrow_mut()
                    .fail(anyhow::Error::new(e).context("writing the pcap file"));
            }
        }
        Ok(())
    };
    let end = runner::poll(&rb, &sink, &counters, cfg.limits, &mut losses, flush_pcap);
    // Detach before draining, so the summary counts a closed set of packets.
    drop(xdp_link);
    drop(tc_link);
    let end = end?;
    // The last packets reach the pcap file while draining; flush it before the summary.
    runner::finish(&rb, &sink, &counters, &mut losses, end, || {
        flush_pcap(&sink)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The JSON line as the first version printed it (serde_json over a
    /// struct); the hand-written writer must print the same bytes.
    fn reference_json(l: &PacketLine<'_>) -> String {
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum ProtoJson {
            Name(&'static str),
            Number(u8),
        }
        #[derive(serde::Serialize)]
        struct PacketJson<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            time: String,
            ifname: &'a str,
            direction: &'static str,
            family: &'static str,
            ethertype: String,
            src: Option<IpAddr>,
            dst: Option<IpAddr>,
            sport: Option<u16>,
            dport: Option<u16>,
            proto: Option<ProtoJson>,
            len: u32,
            tcp_flags: Option<String>,
            icmp_type: Option<u8>,
            icmp_code: Option<u8>,
            vlan: Option<u16>,
            inner_vlan: Option<u16>,
        }
        let p = l.p;
        let flags = |f: u8| {
            let mut b = Vec::new();
            push_tcp_flags(&mut b, f);
            String::from_utf8(b).unwrap()
        };
        let j = PacketJson {
            kind: "packet",
            time: output::rfc3339_us(l.wall_ns),
            ifname: l.ifname,
            direction: if p.egress { "egress" } else { "ingress" },
            family: match p.family {
                addr::FAMILY_IPV4 => "ipv4",
                addr::FAMILY_IPV6 => "ipv6",
                _ => "other",
            },
            ethertype: format!("{:#06x}", p.ethertype),
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            proto: p
                .proto
                .map(|n| proto_name(n).map_or(ProtoJson::Number(n), ProtoJson::Name)),
            len: p.len,
            tcp_flags: p.tcp_flags.map(flags),
            icmp_type: p.icmp.map(|i| i.0),
            icmp_code: p.icmp.map(|i| i.1),
            vlan: p.vlan,
            inner_vlan: p.inner_vlan,
        };
        serde_json::to_string(&j).unwrap() + "\n"
    }

    fn udp4() -> Packet {
        Packet {
            ts_ns: 1,
            ifindex: 2,
            len: 60,
            egress: false,
            family: addr::FAMILY_IPV4,
            ethertype: 0x0800,
            src: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            dst: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 200, 255))),
            proto: Some(IPPROTO_UDP),
            sport: Some(40000),
            dport: Some(53),
            tcp_flags: None,
            icmp: None,
            vlan: None,
            inner_vlan: None,
        }
    }

    fn samples() -> Vec<Packet> {
        let v6a = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1));
        let v6b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xabcd, 0));
        vec![
            udp4(),
            Packet {
                egress: true,
                family: addr::FAMILY_IPV6,
                ethertype: 0x86dd,
                src: Some(v6a),
                dst: Some(v6b),
                proto: Some(IPPROTO_TCP),
                sport: Some(8000),
                dport: Some(58378),
                tcp_flags: Some(0x12),
                len: 94,
                ..udp4()
            },
            Packet {
                proto: Some(IPPROTO_TCP),
                tcp_flags: Some(0),
                vlan: Some(100),
                ..udp4()
            },
            Packet {
                proto: Some(IPPROTO_TCP),
                tcp_flags: Some(0xff),
                vlan: Some(4095),
                inner_vlan: Some(1),
                ..udp4()
            },
            Packet {
                proto: Some(IPPROTO_ICMP),
                sport: None,
                dport: None,
                icmp: Some((3, 3)),
                ..udp4()
            },
            Packet {
                family: addr::FAMILY_IPV6,
                src: Some(v6a),
                dst: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                proto: Some(IPPROTO_ICMPV6),
                sport: None,
                dport: None,
                icmp: Some((200, 7)),
                vlan: Some(7),
                ..udp4()
            },
            Packet {
                proto: Some(132), // SCTP: no name, printed as a number
                sport: None,
                dport: None,
                len: 65535,
                ..udp4()
            },
            Packet {
                family: 0,
                ethertype: 0x88b5,
                src: None,
                dst: None,
                proto: None,
                sport: None,
                dport: None,
                len: 5,
                ..udp4()
            },
        ]
    }

    #[test]
    fn json_lines_are_byte_for_byte_what_serde_printed() {
        let times = [
            0i128,
            1_709_210_096_789_012_345,
            1_709_210_096_999_999_999,
            1_709_210_097_000_000_001,
            -1_000,
        ];
        for ifname in ["eth0", "veth-\"q\"\\", "tab\tnl\n\u{1}", "läné"] {
            for p in samples() {
                for &wall_ns in &times {
                    let l = PacketLine {
                        p: &p,
                        ifname,
                        wall_ns,
                    };
                    let mut buf = Vec::new();
                    l.json_line(&mut buf).unwrap();
                    let got = String::from_utf8(buf).unwrap();
                    assert_eq!(got, reference_json(&l), "{p:?}");
                    let mut w = Vec::new();
                    l.write_json(&mut w).unwrap();
                    assert_eq!(w, got.as_bytes());
                }
            }
        }
    }

    /// The table line as the first version printed it (`format!`).
    fn reference_table(p: &Packet, ifname: &str, wall_ns: i128) -> String {
        let text = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&mut b);
            String::from_utf8(b).unwrap()
        };
        let proto = match p.proto {
            None => format!("{:#06x}", p.ethertype),
            Some(n) => proto_name(n).map_or_else(|| n.to_string(), str::to_string),
        };
        let mut info = String::new();
        if let Some(f) = p.tcp_flags {
            info = text(&|b| push_tcp_flags(b, f));
        } else if let Some((t, c)) = p.icmp {
            info = text(&|b| push_icmp_text(b, p.family == addr::FAMILY_IPV6, t, c));
        }
        if let Some(v) = p.vlan {
            if !info.is_empty() {
                info.push(' ');
            }
            info.push_str(&format!("vlan {v}"));
            if let Some(iv) = p.inner_vlan {
                info.push_str(&format!(".{iv}"));
            }
        }
        format!(
            "{:<15} {:<10} {:<3} {:<6} {:<22} {:<22} {:>5}  {}\n",
            output::time_of_day_us(wall_ns),
            ifname,
            if p.egress { "out" } else { "in" },
            proto,
            Endpoint(p.src, p.sport).to_string(),
            Endpoint(p.dst, p.dport).to_string(),
            p.len,
            info
        )
    }

    fn table(p: &Packet, ifname: &str) -> String {
        let l = PacketLine {
            p,
            ifname,
            wall_ns: 1_709_210_096_789_012_345,
        };
        let mut buf = Vec::new();
        l.table_line(&mut buf).unwrap();
        let mut w = Vec::new();
        l.write_table(&mut w).unwrap();
        assert_eq!(w, buf);
        let got = String::from_utf8(buf).unwrap();
        assert_eq!(got, reference_table(p, ifname, l.wall_ns));
        got
    }

    #[test]
    fn table_lines() {
        let s = samples();
        let want = [
            "12:34:56.789012 eth0       in  udp    10.0.0.1:40000         192.168.200.255:53        60  \n",
            "12:34:56.789012 eth0       out tcp    [fd00:99::1]:8000      [2001:db8:0:1::abcd:0]:58378    94  SYN,ACK\n",
            "12:34:56.789012 eth0       in  tcp    10.0.0.1:40000         192.168.200.255:53        60  vlan 100\n",
            "12:34:56.789012 eth0       in  tcp    10.0.0.1:40000         192.168.200.255:53        60  SYN,FIN,RST,PSH,ACK,URG,ECE,CWR vlan 4095.1\n",
            "12:34:56.789012 eth0       in  icmp   10.0.0.1               192.168.200.255           60  unreachable code 3\n",
            "12:34:56.789012 eth0       in  icmpv6 fd00:99::1             ::1                       60  type 200 code 7 vlan 7\n",
            "12:34:56.789012 eth0       in  132    10.0.0.1               192.168.200.255        65535  \n",
            "12:34:56.789012 eth0       in  0x88b5 -                      -                          5  \n",
        ];
        for (p, w) in s.iter().zip(want) {
            assert_eq!(table(p, "eth0"), w);
        }
        // Names count in characters, as `{:<10}` counts them.
        assert!(table(&s[0], "läné").starts_with("12:34:56.789012 läné       in  udp"));
        let echo = Packet {
            icmp: Some((8, 0)),
            proto: Some(IPPROTO_ICMP),
            ..udp4()
        };
        assert!(table(&echo, "x").ends_with("  echo-request\n"));
    }
}
