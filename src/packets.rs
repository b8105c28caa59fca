//! `wirescope packets`: one line per packet at XDP (ingress) and TC (egress).

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, RingBufferBuilder};
use serde::Serialize;

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

/// TCP flags as "SYN,ACK" (SYN, FIN and RST first, as people read them).
pub fn tcp_flags_text(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join(",")
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

fn icmp_text(v6: bool, t: u8, c: u8) -> String {
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
        format!("type {t} code {c}")
    } else if c != 0 {
        format!("{name} code {c}")
    } else {
        name.to_string()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum ProtoJson {
    Name(&'static str),
    Number(u8),
}

#[derive(Serialize)]
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

/// A packet with what it needs to print: the interface name and wall time.
pub struct PacketLine<'a> {
    pub p: &'a Packet,
    pub ifname: &'a str,
    pub wall_ns: i128,
}

pub const TABLE_HEADER: &str = "TIME(UTC)       IFACE      DIR PROTO  SOURCE                 \
                                DESTINATION              LEN  INFO";

impl Record for PacketLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let p = self.p;
        let proto = match p.proto {
            None => format!("{:#06x}", p.ethertype),
            Some(n) => proto_name(n).map_or_else(|| n.to_string(), str::to_string),
        };
        let mut info = String::new();
        if let Some(f) = p.tcp_flags {
            info = tcp_flags_text(f);
        } else if let Some((t, c)) = p.icmp {
            info = icmp_text(p.family == addr::FAMILY_IPV6, t, c);
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
        writeln!(
            w,
            "{:<15} {:<10} {:<3} {:<6} {:<22} {:<22} {:>5}  {}",
            output::time_of_day_us(self.wall_ns),
            self.ifname,
            if p.egress { "out" } else { "in" },
            proto,
            Endpoint(p.src, p.sport).to_string(),
            Endpoint(p.dst, p.dport).to_string(),
            p.len,
            info
        )
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let p = self.p;
        let j = PacketJson {
            kind: "packet",
            time: output::rfc3339_us(self.wall_ns),
            ifname: self.ifname,
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
            tcp_flags: p.tcp_flags.map(tcp_flags_text),
            icmp_type: p.icmp.map(|i| i.0),
            icmp_code: p.icmp.map(|i| i.1),
            vlan: p.vlan,
            inner_vlan: p.inner_vlan,
        };
        serde_json::to_writer(&mut *w, &j)?;
        w.write_all(b"\n")
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
