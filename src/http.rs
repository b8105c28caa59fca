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
        xdp_link.describe(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use pair::Request;
    use parse::Version;

    fn event_bytes(ev: &types::http_event, payload: &[u8]) -> Vec<u8> {
        // SAFETY: http_event is plain data (see the Plain impl above); the
        // slice covers exactly the value and lives no longer than it.
        let head = unsafe {
            std::slice::from_raw_parts(
                (ev as *const types::http_event).cast::<u8>(),
                std::mem::size_of::<types::http_event>(),
            )
        };
        [head, payload].concat()
    }

    #[test]
    fn decode_from_kernel_bytes() {
        let mut ev = types::http_event {
            ts_ns: 123_456_789,
            seq: 0xdead_beef,
            ack: 7,
            payload_len: 3000,
            ifindex: 2,
            sport: 80,
            dport: 40312,
            cap_len: 17,
            kind: KIND_RESPONSE,
            family: addr::FAMILY_IPV6,
            direction: types::http_direction::HTTP_DIR_EGRESS.0 as u8,
            ..Default::default()
        };
        ev.saddr = addr::ip_to_bytes("fd00::2".parse().unwrap());
        ev.daddr = addr::ip_to_bytes("fd00::1".parse().unwrap());
        let bytes = event_bytes(&ev, b"HTTP/1.1 200 OK\r\n and more");
        let (w, payload) = Wire::decode(&bytes).unwrap();
        assert_eq!(payload, b"HTTP/1.1 200 OK\r\n");
        assert_eq!(
            w,
            Wire {
                ts_ns: 123_456_789,
                request: false,
                ingress: false,
                src: "fd00::2".parse().unwrap(),
                dst: "fd00::1".parse().unwrap(),
                sport: 80,
                dport: 40312,
                seq: 0xdead_beef,
                ack: 7,
                payload_len: 3000,
            }
        );
        // a response's flow: the client is its destination
        let k = w.flow();
        assert_eq!(
            (k.client, k.cport, k.server, k.sport),
            (w.dst, 40312, w.src, 80)
        );
        let req = Wire { request: true, ..w };
        assert_eq!(req.flow().client, w.src);

        // a short record, a cap_len past the end, an unknown kind, no family
        assert!(Wire::decode(&bytes[..10]).is_none());
        let mut bad = ev;
        bad.cap_len = 100;
        assert!(Wire::decode(&event_bytes(&bad, b"HTTP/1.1")).is_none());
        bad = ev;
        bad.kind = 9;
        assert!(Wire::decode(&event_bytes(&bad, b"HTTP/1.1 200 OK\r\n")).is_none());
        bad = ev;
        bad.family = 0;
        assert!(Wire::decode(&event_bytes(&bad, b"HTTP/1.1 200 OK\r\n")).is_none());
    }

    fn exchange(outcome: Outcome) -> Exchange {
        let answered = outcome == Outcome::Answered;
        Exchange {
            key: FlowKey {
                client: "10.0.0.1".parse().unwrap(),
                cport: 40312,
                server: "10.0.0.2".parse().unwrap(),
                sport: 8080,
            },
            req: Request {
                ts_ns: 0,
                method: Method::Post,
                path: "/api/v1/items".into(),
                version: Version(1),
                host: Some("api.example.com".into()),
                ingress: true,
            },
            outcome,
            status: answered.then_some(201),
            latency_ns: answered.then_some(12_345_678),
        }
    }

    fn render(x: &Exchange, json: bool) -> String {
        let line = HttpLine {
            x,
            ifname: "eth0",
            wall_ns: 1_709_210_096_789_012_345,
        };
        output::render(&line, json)
    }

    #[test]
    fn json_schema() {
        let text = render(&exchange(Outcome::Answered), true);
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = vec![
            "type",
            "time",
            "event",
            "ifname",
            "direction",
            "method",
            "path",
            "version",
            "host",
            "status",
            "latency_ms",
            "client",
            "cport",
            "server",
            "sport",
        ];
        want.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, want);
        assert_eq!(
            v,
            serde_json::json!({
                "type": "http",
                "time": "2024-02-29T12:34:56.789012Z",
                "event": "answered",
                "ifname": "eth0",
                "direction": "ingress",
                "method": "POST",
                "path": "/api/v1/items",
                "version": "HTTP/1.1",
                "host": "api.example.com",
                "status": 201,
                "latency_ms": 12.345,
                "client": "10.0.0.1",
                "cport": 40312,
                "server": "10.0.0.2",
                "sport": 8080
            })
        );
        // unanswered: status and latency are null, the event says why
        for o in [Outcome::Timeout, Outcome::Pending, Outcome::Missed] {
            let mut x = exchange(o);
            x.req.host = None;
            let v: serde_json::Value = serde_json::from_str(&render(&x, true)).unwrap();
            assert_eq!(v["event"], o.as_str());
            assert!(v["status"].is_null() && v["latency_ms"].is_null() && v["host"].is_null());
        }
    }

    #[test]
    fn table_lines() {
        let cols = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
        assert_eq!(
            cols(&render(&exchange(Outcome::Answered), false)),
            [
                "12:34:56.789012",
                "10.0.0.1:40312",
                "10.0.0.2:8080",
                "POST",
                "201",
                "12.345",
                "api.example.com",
                "/api/v1/items"
            ]
        );
        let mut x = exchange(Outcome::Timeout);
        x.req.host = None;
        assert_eq!(
            cols(&render(&x, false))[3..],
            ["POST", "-", "timeout", "-", "/api/v1/items"]
        );
        // the columns line up under the header
        let line = render(&exchange(Outcome::Answered), false);
        for name in ["METHOD", "HOST", "PATH"] {
            let at = TABLE_HEADER.find(name).unwrap();
            assert_ne!(line.as_bytes()[at], b' ', "{name} column: {line}");
            assert_eq!(line.as_bytes()[at - 1], b' ', "{name} column: {line}");
        }
        let status_end = TABLE_HEADER.find("STATUS").unwrap() + "STATUS".len();
        assert_eq!(&line[status_end - 3..status_end], "201");
        let lat_end = TABLE_HEADER.find("LATENCY(ms)").unwrap() + "LATENCY(ms)".len();
        assert_eq!(&line[lat_end - 6..lat_end], "12.345");
    }

    #[test]
    fn kernel_config_from_flags() {
        let cfg = Config {
            interface: "eth0".into(),
            xdp_mode: XdpMode::Auto,
            ports: vec![80, 8080],
            client: Some("10.1.0.0/16".parse().unwrap()),
            server: None,
            family: Some(addr::FAMILY_IPV4),
            select: Select::default(),
            timeout: Duration::from_secs(1),
            json: false,
            limits: Limits::default(),
            ringbuf_size: 1 << 20,
        };
        let k = kernel_config(&cfg);
        assert_eq!((k.family, k.n_ports), (4, 2));
        assert_eq!(k.ports[..3], [80, 8080, 0]);
        assert_eq!((k.client.family, k.client.prefix_len), (4, 16));
        assert_eq!(k.client.addr[..4], [10, 1, 0, 0]);
        assert_eq!(k.server.family, 0);
    }
}
