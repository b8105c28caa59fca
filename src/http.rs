//! `wirescope http`: HTTP/1.x requests and their responses, read from packets
//! at XDP (ingress) and TC (egress), paired per flow, one line per request.

mod pair;
pub mod parse;

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, RingBufferBuilder};
use serde::Serialize;

use crate::addr::{self, Cidr, Endpoint};
use crate::netattach::{self, XdpMode};
use crate::output::{self, Record, Sink};
use crate::runner::{self, Counters, Limits, LossReporter};
use crate::sys;

pub use pair::Select;
use pair::{Exchange, FlowKey, Outcome, Segment, Tracker};
pub use parse::Method;

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/http.skel.rs"));
}
use skel::{types, HttpSkelBuilder};

/// Payload bytes of a segment the kernel copies (HTTP_WINDOW in src/bpf/http.h).
pub const WINDOW: usize = types::http_limits::HTTP_WINDOW.0 as usize;
/// Server ports a filter can list (HTTP_MAX_PORTS in src/bpf/http.h).
pub const MAX_PORTS: usize = types::http_limits::HTTP_MAX_PORTS.0 as usize;
const KIND_REQUEST: u8 = types::http_kind::HTTP_REQUEST.0 as u8;
const KIND_RESPONSE: u8 = types::http_kind::HTTP_RESPONSE.0 as u8;

/// Everything `http` needs, already checked for usage errors.
#[derive(Clone, Debug)]
pub struct Config {
    pub interface: String,
    pub xdp_mode: XdpMode,
    /// server ports; empty = any
    pub ports: Vec<u16>,
    /// client network (--src)
    pub client: Option<Cidr>,
    /// server network (--dst)
    pub server: Option<Cidr>,
    /// 4 or 6; None = both
    pub family: Option<u8>,
    pub select: Select,
    pub timeout: Duration,
    pub json: bool,
    pub limits: Limits,
    pub ringbuf_size: u32,
}

// SAFETY: http_event is a generated #[repr(C)] struct of integers and byte
// arrays with explicit padding fields: every bit pattern is a valid value.
unsafe impl plain::Plain for types::http_event {}

/// What the kernel reported about one segment (the payload bytes follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wire {
    pub ts_ns: u64,
    pub request: bool,
    pub ingress: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub payload_len: u32,
}

impl Wire {
    /// Decode one ring-buffer record: the event and the payload window after it.
    pub fn decode(data: &[u8]) -> Option<(Wire, &[u8])> {
        let mut ev = types::http_event::default();
        plain::copy_from_bytes(&mut ev, data).ok()?;
        let head = std::mem::size_of::<types::http_event>();
        let len = usize::from(ev.cap_len).min(WINDOW);
        let bytes = data.get(head..head + len)?;
        let request = match ev.kind {
            KIND_REQUEST => true,
            KIND_RESPONSE => false,
            _ => return None,
        };
        let w = Wire {
            ts_ns: ev.ts_ns,
            request,
            ingress: ev.direction == types::http_direction::HTTP_DIR_INGRESS.0 as u8,
            src: addr::ip_from_bytes(ev.family, &ev.saddr)?,
            dst: addr::ip_from_bytes(ev.family, &ev.daddr)?,
            sport: ev.sport,
            dport: ev.dport,
            seq: ev.seq,
            ack: ev.ack,
            payload_len: ev.payload_len,
        };
        Some((w, bytes))
    }

    /// The flow, by role: a request goes from client to server, a response back.
    pub fn flow(&self) -> FlowKey {
        if self.request {
            FlowKey {
                client: self.src,
                cport: self.sport,
                server: self.dst,
                sport: self.dport,
            }
        } else {
            FlowKey {
                client: self.dst,
                cport: self.dport,
                server: self.src,
                sport: self.sport,
            }
        }
    }
}

/// A finished request with what it needs to print.
pub struct HttpLine<'a> {
    pub x: &'a Exchange,
    pub ifname: &'a str,
    pub wall_ns: i128,
}

pub const TABLE_HEADER: &str = "TIME(UTC)       CLIENT                 SERVER                 \
                                METHOD  STATUS  LATENCY(ms)  HOST                  PATH";

/// Milliseconds with microsecond resolution.
fn millis(ns: u64) -> f64 {
    (ns / 1000) as f64 / 1000.0
}

#[derive(Serialize)]
struct HttpJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    event: &'static str,
    ifname: &'a str,
    direction: &'static str,
    method: &'static str,
    path: &'a str,
    version: &'static str,
    host: Option<&'a str>,
    status: Option<u16>,
    latency_ms: Option<f64>,
    client: IpAddr,
    cport: u16,
    server: IpAddr,
    sport: u16,
}

impl Record for HttpLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let x = self.x;
        let status = x.status.map_or_else(|| "-".to_string(), |s| s.to_string());
        let latency = match (x.outcome, x.latency_ns) {
            (Outcome::Answered, Some(ns)) => format!("{:.3}", millis(ns)),
            (o, _) => o.as_str().to_string(),
        };
        writeln!(
            w,
            "{:<15} {:<22} {:<22} {:<7} {:>6} {:>12}  {:<20}  {}",
            output::time_of_day_us(self.wall_ns),
            Endpoint(Some(x.key.client), Some(x.key.cport)).to_string(),
            Endpoint(Some(x.key.server), Some(x.key.sport)).to_string(),
            x.req.method.as_str(),
            status,
            latency,
            x.req.host.as_deref().unwrap_or("-"),
            x.req.path
        )
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let x = self.x;
        let j = HttpJson {
            kind: "http",
            time: output::rfc3339_us(self.wall_ns),
            event: x.outcome.as_str(),
            ifname: self.ifname,
            direction: if x.req.ingress { "ingress" } else { "egress" },
            method: x.req.method.as_str(),
            path: &x.req.path,
            version: x.req.version.as_str(),
            host: x.req.host.as_deref(),
            status: x.status,
            latency_ms: x.latency_ns.map(millis),
            client: x.key.client,
            cport: x.key.cport,
            server: x.key.server,
            sport: x.key.sport,
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

fn kernel_config(cfg: &Config) -> types::http_config {
    let mut ports = [0u16; MAX_PORTS];
    for (slot, p) in ports.iter_mut().zip(&cfg.ports) {
        *slot = *p;
    }
    types::http_config {
        family: cfg.family.unwrap_or(0),
        n_ports: cfg.ports.len().min(MAX_PORTS) as u8,
        ports,
        client: cidr_config(cfg.client.as_ref()),
        server: cidr_config(cfg.server.as_ref()),
    }
}

const OWN_COUNTERS: [(u32, &str); 5] = [
    (types::http_counter::HTTP_COUNTER_MALFORMED.0, "malformed"),
    (types::http_counter::HTTP_COUNTER_NO_PAYLOAD.0, "no_payload"),
    (types::http_counter::HTTP_COUNTER_NOT_HTTP.0, "not_http"),
    (types::http_counter::HTTP_COUNTER_TLS.0, "tls"),
    (types::http_counter::HTTP_COUNTER_HTTP2.0, "http2"),
];

fn monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

pub fn run(cfg: Config) -> Result<()> {
    let ifindex = sys::ifindex(&cfg.interface)?;
    sys::require_caps(&[sys::CAP_BPF, sys::CAP_PERFMON, sys::CAP_NET_ADMIN])?;

    let mut open_object = std::mem::MaybeUninit::uninit();
    let mut open = HttpSkelBuilder::default()
        .open(&mut open_object)
        .context("opening the http programs")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the http programs have no read-only data section")?;
    rodata.cfg = kernel_config(&cfg);
    open.maps
        .events
        .set_max_entries(cfg.ringbuf_size)
        .context("sizing the ring buffer")?;
    let skel = open
        .load()
        .context("loading the http programs into the kernel")?;

    let xdp_link = netattach::attach_xdp(
        &skel.progs.http_ingress,
        ifindex,
        &cfg.interface,
        cfg.xdp_mode,
    )?;
    let tc_link = netattach::attach_tc_egress(&skel.progs.http_egress, ifindex, &cfg.interface)?;
    let how = format!(
        "ingress at XDP ({}) and egress at TC ({})",
        if xdp_link.mode == XdpMode::Native {
            "native"
        } else {
            "generic"
        },
        tc_link.kind()
    );

    let format = if cfg.json {
        output::Format::Json
    } else {
        output::Format::Table
    };
    let sink = RefCell::new(Sink::stdout(format, cfg.limits.count));
    let timeout_ns = u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX);
    let tracker = RefCell::new(Tracker::new(timeout_ns, cfg.select.clone()));
    let ifname = cfg.interface.as_str();
    let print = |s: &mut Sink, x: Exchange| {
        let wall_ns = s.clock.wall_ns(x.req.ts_ns);
        s.event(&HttpLine {
            x: &x,
            ifname,
            wall_ns,
        });
    };

    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let Some((w, bytes)) = Wire::decode(data) else {
                return 0;
            };
            let seg = Segment {
                key: w.flow(),
                ts_ns: w.ts_ns,
                seq: w.seq,
                ack: w.ack,
                payload_len: w.payload_len,
                bytes,
                ingress: w.ingress,
            };
            let mut t = tracker.borrow_mut();
            if w.request {
                t.request(&seg);
                return 0;
            }
            let mut s = sink.borrow_mut();
            t.response(&seg, &mut |x| print(&mut s, x));
            if s.stopped().is_some() {
                runner::CALLBACK_STOP
            } else {
                0
            }
        })
        .context("setting up the ring buffer")?;
    let rb = builder.build().context("setting up the ring buffer")?;
    let counters = Counters::new(&skel.maps.counters as &dyn MapCore, &OWN_COUNTERS);
    let mut losses = LossReporter::new();

    runner::install_signal_handlers()?;
    sink.borrow_mut().header(TABLE_HEADER);
    eprintln!(
        "Tracing HTTP/1.x {how} on {}. Ctrl-C to end.",
        cfg.interface
    );
    let expire = |sink: &RefCell<Sink>| {
        let mut s = sink.borrow_mut();
        tracker
            .borrow_mut()
            .expire(monotonic_ns(), &mut |x| print(&mut s, x));
        Ok(())
    };
    let end = runner::poll(&rb, &sink, &counters, cfg.limits, &mut losses, expire);
    // Detach before draining, so the summary counts a closed set of packets.
    drop(xdp_link);
    drop(tc_link);
    let end = end?;
    runner::finish_with(&rb, &sink, &counters, &mut losses, end, || {
        let mut t = tracker.borrow_mut();
        {
            let mut s = sink.borrow_mut();
            // Requests still waiting now will not get an answer we can see.
            t.expire(monotonic_ns(), &mut |x| print(&mut s, x));
            t.finish(&mut |x| print(&mut s, x));
        }
        Ok(t.counts.fields().to_vec())
    })
}
