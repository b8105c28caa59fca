//! `wirescope conn`: one line per TCP connection when it closes, with the
//! owning process, bytes each way, duration and how it ended; or, with
//! --events, connect/accept/established/close as they happen.

use std::cell::RefCell;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, RingBufferBuilder};
use serde::Serialize;

use crate::addr::{self, Endpoint};
use crate::output::{self, Record, Sink};
use crate::runner::{self, Counters, Limits, LossReporter};
use crate::sys;
use crate::tracing::{self, AttachArg, Method, ProcFilter};

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/conn.skel.rs"));
}
use skel::{types, ConnSkel, ConnSkelBuilder};

pub const MAX_PORTS: usize = types::conn_limits::MAX_CONN_PORTS.0 as usize;
/// Default number of live connections tracked.
pub const MAX_CONNS: u32 = types::conn_limits::MAX_CONNS.0;

#[derive(Clone, Debug)]
pub struct Config {
    pub events: bool,
    /// Live connections tracked at once (size of the kernel map)
    pub max_conns: u32,
    pub ports: Vec<u16>,
    pub family: Option<u8>,
    pub proc: ProcFilter,
    pub attach: AttachArg,
    pub json: bool,
    pub limits: Limits,
    pub ringbuf_size: u32,
    /// Tests only: ignore about one close in N in the kernel (0: never)
    pub inject_missed_closes: u32,
}

// SAFETY: conn_event is a generated #[repr(C)] struct of integers and byte
// arrays with explicit padding: every bit pattern is a valid value.
unsafe impl plain::Plain for types::conn_event {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Accept,
    Established,
    Close,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Accept => "accept",
            Kind::Established => "established",
            Kind::Close => "close",
        }
    }
}

/// A connection event decoded from the kernel's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    pub ts_ns: u64,
    pub kind: Kind,
    /// None when no process context was seen for this socket yet
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: Option<u64>,
    pub family: u8,
    pub laddr: IpAddr,
    /// None when the kernel has not chosen it yet (connect, tracepoint method)
    pub lport: Option<u16>,
    pub raddr: IpAddr,
    pub rport: u16,
    pub netns: u32,
    pub side: Option<&'static str>,
    /// Close events only
    pub tx_bytes: Option<u64>,
    pub rx_bytes: Option<u64>,
    /// None when the connection opened before tracing began
    pub duration_ns: Option<u64>,
    pub end: Option<&'static str>,
    /// A close our programs did not see (the kernel skipped them), found
    /// afterwards: `time` is when it was found, the duration is unknown
    pub recovered: bool,
}

fn end_name(end: u8) -> &'static str {
    match u32::from(end) {
        x if x == types::conn_end::END_LOCAL_CLOSE.0 => "local-close",
        x if x == types::conn_end::END_REMOTE_CLOSE.0 => "remote-close",
        x if x == types::conn_end::END_RESET_RECEIVED.0 => "reset-received",
        x if x == types::conn_end::END_RESET_SENT.0 => "aborted",
        x if x == types::conn_end::END_REFUSED.0 => "refused",
        x if x == types::conn_end::END_CONNECT_FAILED.0 => "connect-failed",
        _ => "unknown",
    }
}

impl Conn {
    pub fn decode(data: &[u8]) -> Option<Conn> {
        let mut ev = types::conn_event::default();
        plain::copy_from_bytes(&mut ev, data).ok()?;
        Conn::try_from(&ev).ok()
    }
}

impl TryFrom<&types::conn_event> for Conn {
    type Error = ();

    fn try_from(ev: &types::conn_event) -> Result<Self, ()> {
        let kind = match u32::from(ev.kind) {
            x if x == types::conn_kind::CONN_CONNECT.0 => Kind::Connect,
            x if x == types::conn_kind::CONN_ACCEPT.0 => Kind::Accept,
            x if x == types::conn_kind::CONN_ESTABLISHED.0 => Kind::Established,
            x if x == types::conn_kind::CONN_CLOSE.0 => Kind::Close,
            _ => return Err(()),
        };
        let laddr = addr::ip_from_bytes(ev.family, &ev.laddr).ok_or(())?;
        let raddr = addr::ip_from_bytes(ev.family, &ev.raddr).ok_or(())?;
        let proc_known = u32::from(ev.flags) & types::conn_flags::FLAG_PROC_KNOWN.0 != 0;
        let start_known = u32::from(ev.flags) & types::conn_flags::FLAG_START_KNOWN.0 != 0;
        let close = kind == Kind::Close;
        let recovered = close && u32::from(ev.flags) & types::conn_flags::FLAG_RECOVERED.0 != 0;
        let bytes = close && u32::from(ev.flags) & types::conn_flags::FLAG_NO_BYTES.0 == 0;
        let comm: Vec<u8> = ev.comm.iter().map(|&c| c as u8).collect();
        Ok(Conn {
            ts_ns: ev.ts_ns,
            kind,
            pid: proc_known.then_some(ev.pid),
            comm: proc_known.then(|| sys::text_until_nul(&comm)),
            cgroup_id: proc_known.then_some(ev.cgroup_id),
            family: ev.family,
            laddr,
            lport: (ev.lport != 0).then_some(ev.lport),
            raddr,
            rport: ev.rport,
            netns: ev.netns,
            side: match u32::from(ev.side) {
                x if x == types::conn_side::SIDE_ACTIVE.0 => Some("active"),
                x if x == types::conn_side::SIDE_PASSIVE.0 => Some("passive"),
                _ => None,
            },
            tx_bytes: bytes.then_some(ev.tx_bytes),
            rx_bytes: bytes.then_some(ev.rx_bytes),
            duration_ns: (close && start_known && !recovered)
                .then(|| ev.ts_ns.saturating_sub(ev.start_ns)),
            end: close.then(|| end_name(ev.end)),
            recovered,
        })
    }
}

#[derive(Serialize)]
struct ConnJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    event: &'static str,
    pid: Option<u32>,
    comm: Option<&'a str>,
    family: &'static str,
    laddr: IpAddr,
    lport: Option<u16>,
    raddr: IpAddr,
    rport: u16,
    tx_bytes: Option<u64>,
    rx_bytes: Option<u64>,
    duration_ms: Option<f64>,
    end: Option<&'static str>,
    side: Option<&'static str>,
    cgroup_id: Option<u64>,
    netns: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    recovered: bool,
}

pub struct ConnLine<'a> {
    pub c: &'a Conn,
    pub wall_ns: i128,
    pub events: bool,
}

fn duration_ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

pub fn table_header(events: bool) -> String {
    format!(
        "{}{:<15} {:>7} {:<15} {:<27} {:<27} {:>10} {:>10} {:>9}  END",
        if events { "EVENT       " } else { "" },
        "TIME(UTC)",
        "PID",
        "COMM",
        "LOCAL",
        "REMOTE",
        "TX_BYTES",
        "RX_BYTES",
        "MS"
    )
}

impl Record for ConnLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let c = self.c;
        let dash = || "-".to_string();
        if self.events {
            write!(w, "{:<11} ", c.kind.name())?;
        }
        writeln!(
            w,
            "{:<15} {:>7} {:<15} {:<27} {:<27} {:>10} {:>10} {:>9}  {}{}",
            output::time_of_day_us(self.wall_ns),
            c.pid.map_or_else(dash, |p| p.to_string()),
            c.comm.clone().unwrap_or_else(dash),
            Endpoint(Some(c.laddr), c.lport).to_string(),
            Endpoint(Some(c.raddr), Some(c.rport)).to_string(),
            c.tx_bytes.map_or_else(dash, |b| b.to_string()),
            c.rx_bytes.map_or_else(dash, |b| b.to_string()),
            c.duration_ns
                .map_or_else(dash, |d| format!("{:.3}", duration_ms(d))),
            c.end.unwrap_or("-"),
            if c.recovered { " (recovered)" } else { "" },
        )
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let c = self.c;
        let j = ConnJson {
            kind: "conn",
            time: output::rfc3339_us(self.wall_ns),
            event: c.kind.name(),
            pid: c.pid,
            comm: c.comm.as_deref(),
            family: if c.family == addr::FAMILY_IPV6 {
                "ipv6"
            } else {
                "ipv4"
            },
            laddr: c.laddr,
            lport: c.lport,
            raddr: c.raddr,
            rport: c.rport,
            tx_bytes: c.tx_bytes,
            rx_bytes: c.rx_bytes,
            duration_ms: c.duration_ns.map(duration_ms),
            end: c.end,
            side: c.side,
            cgroup_id: c.cgroup_id,
            netns: c.netns,
            recovered: c.recovered,
        };
        serde_json::to_writer(&mut *w, &j)?;
        w.write_all(b"\n")
    }
}

fn kernel_config(cfg: &Config) -> types::conn_config {
    let mut ports = [0u16; MAX_PORTS];
    for (slot, p) in ports.iter_mut().zip(&cfg.ports) {
        *slot = *p;
    }
    let comm = cfg.proc.comm_bytes();
    types::conn_config {
        proc: types::proc_filter {
            pid: cfg.proc.pid.unwrap_or(0),
            use_comm: u8::from(cfg.proc.comm.is_some()),
            use_cgroup: u8::from(cfg.proc.cgroup.is_some()),
            comm: comm.map(|b| b as _),
            ..Default::default()
        },
        ports,
        n_ports: cfg.ports.len().min(MAX_PORTS) as u8,
        family: cfg.family.unwrap_or(0),
        events: u8::from(cfg.events),
    }
}

/// Load and attach the programs of one method.
fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    method: Method,
    flavour: &str,
    cfg: &Config,
    cgroup: Option<&std::os::fd::OwnedFd>,
) -> Result<ConnSkel<'obj>> {
    let mut open = ConnSkelBuilder::default()
        .open(storage)
        .context("opening the conn programs")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the conn programs have no read-only data")?;
    rodata.cfg = kernel_config(cfg);
    rodata.tracepoint_method = u8::from(method == Method::Tracepoint);
    rodata.inject_skip_close = cfg.inject_missed_closes;
    open.maps
        .events
        .set_max_entries(cfg.ringbuf_size)
        .context("sizing the ring buffer")?;
    open.maps
        .conns
        .set_max_entries(cfg.max_conns)
        .context("sizing the connection map")?;
    // inet_csk_accept lost two parameters in Linux 6.10; fexit needs the right count.
    let skip: &[&str] = match tracing::kernel_func_params("inet_csk_accept") {
        Some(2) => &["fe_accept4"],
        _ => &["fe_accept2"],
    };
    tracing::enable_method(open.open_object_mut(), method, &[flavour, "sweep_"], skip);
    // the sweep runs when user space reads its iterator, never on its own
    open.progs.sweep_conns.set_autoattach(false);
    let mut skel = open.load().context("loading")?;
    if let Some(fd) = cgroup {
        tracing::set_cgroup_filter(&skel.maps.cgroup_filter, fd)?;
    }
    skel.attach().context("attaching")?;
    Ok(skel)
}

/// The (method, lifecycle flavour) pairs to try, best first.
fn attempts(attach: AttachArg) -> Vec<(Method, &'static str)> {
    let flavours = tracing::tp_flavours();
    tracing::candidates(attach)
        .iter()
        .flat_map(|&m| flavours.map(|(_, prefix)| (m, prefix)))
        .collect()
}

/// Which method `--attach` would use here, and why the better ones failed
/// (for `wirescope probe`): a real load and attach, detached right away.
pub fn trial(attach: AttachArg) -> (Option<Method>, Vec<(Method, String)>) {
    let cfg = Config {
        events: false,
        max_conns: 1024,
        ports: Vec::new(),
        family: None,
        proc: ProcFilter::default(),
        attach,
        json: true,
        limits: Limits::default(),
        ringbuf_size: 4096,
        inject_missed_closes: 0,
    };
    let mut failed: Vec<(Method, String)> = Vec::new();
    let mut refused: Vec<Method> = Vec::new();
    for (m, flavour) in attempts(attach) {
        if refused.contains(&m) {
            continue;
        }
        if let Err(e) = tracing::family_check(m) {
            refused.push(m);
            failed.push((m, format!("{e:#}")));
            continue;
        }
        let mut storage = MaybeUninit::uninit();
        let (attached, _log) =
            sys::capture_libbpf(|| load(&mut storage, m, flavour, &cfg, None).map(drop));
        match attached {
            Ok(()) => return (Some(m), failed),
            // one reason per method (its best flavour's)
            Err(e) if !failed.iter().any(|(f, _)| *f == m) => failed.push((m, format!("{e:#}"))),
            Err(_) => {}
        }
    }
    (None, failed)
}

const OWN_COUNTERS: [(u32, &str); 3] = [
    (types::conn_counter::COUNTER_MAP_FULL.0, "map_full"),
    (
        types::conn_counter::COUNTER_UNTRACKED_CLOSE.0,
        "untracked_close",
    ),
    (
        types::conn_counter::COUNTER_RECOVERED_CLOSE.0,
        "recovered_close",
    ),
];

/// What each method cannot see, told once at start.
fn method_note(m: Method) -> Option<&'static str> {
    match m {
        Method::Tracepoint => Some(
            "the accepting process is learnt from accept()/accept4() returns (not io_uring); \
             connect events have no local port yet",
        ),
        _ => None,
    }
}

/// A little more than the kernel's SWEEP_HOLD_NS (conn.bpf.c).
const SWEEP_CONFIRM: Duration = Duration::from_millis(20);
/// The sweep's usual pause. It visits every tracked connection (about 0.7 µs
/// each: 14 ms for 20,000), so it runs sooner only when there is a reason.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs the kernel's sweep_conns iterator, which reports the closes our
/// lifecycle program did not see. Without it (a kernel that refuses the
/// iterator) those closes stay counted as `missed` only.
struct Sweeper {
    link: Option<libbpf_rs::Link>,
    next: Instant,
    missed: u64,
}

impl Sweeper {
    fn new(skel: &ConnSkel<'_>) -> Self {
        use std::os::fd::AsFd;
        let link = match skel.progs.sweep_conns.attach_iter(skel.maps.conns.as_fd()) {
            Ok(link) => Some(link),
            Err(e) => {
                eprintln!(
                    "wirescope: note: closes the kernel skips cannot be recovered here \
                     (iterator over the connection map: {e}); they are counted as missed"
                );
                None
            }
        };
        Sweeper {
            link,
            next: Instant::now() + SWEEP_EVERY,
            missed: 0,
        }
    }

    /// Called about once a second: sweeps when the kernel counted skipped
    /// runs since the last sweep, when the last sweep left entries to look
    /// at again, or after SWEEP_EVERY (some kernels skip without counting).
    fn tick(&mut self, missed: u64) {
        let now = Instant::now();
        if missed == self.missed && now < self.next {
            return;
        }
        self.missed = missed;
        let again = self.sweep();
        self.next = now + if again { Duration::ZERO } else { SWEEP_EVERY };
    }

    /// One pass over the map; true when it left entries to confirm later.
    /// A failed sweep ends the sweeping, not the tracing (said once).
    fn sweep(&mut self) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        let pass = libbpf_rs::Iter::new(link)
            .context("starting the connection sweep")
            .and_then(|mut it| {
                // one byte per entry that needs another look
                io::copy(&mut it, &mut io::sink()).context("sweeping the connection map")
            });
        match pass {
            Ok(waiting) => waiting > 0,
            Err(e) => {
                eprintln!("wirescope: note: {e:#}; closes the kernel skips are counted as missed from now on");
                self.link = None;
                false
            }
        }
    }
}

pub fn run(cfg: Config) -> Result<()> {
    sys::require_caps(&[sys::CAP_BPF, sys::CAP_PERFMON])?;
    sys::require_btf()?;
    let cgroup = cfg.proc.open_cgroup()?;
    if let Some(pid) = cfg.proc.pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("wirescope: note: no process {pid} runs now; tracing it if it appears");
        }
    }

    let plan = attempts(cfg.attach);
    let mut storage: Vec<MaybeUninit<OpenObject>> =
        plan.iter().map(|_| MaybeUninit::uninit()).collect();
    let mut failed: Vec<(Method, anyhow::Error)> = Vec::new();
    let mut chosen = None;
    let last = plan.len().saturating_sub(1);
    let mut refused: Vec<Method> = Vec::new();
    for (i, (slot, &(m, flavour))) in storage.iter_mut().zip(&plan).enumerate() {
        if refused.contains(&m) {
            continue;
        }
        if let Err(e) = tracing::family_check(m) {
            refused.push(m);
            failed.push((m, e));
            continue;
        }
        let (r, log) = sys::capture_libbpf(|| load(slot, m, flavour, &cfg, cgroup.as_ref()));
        match r {
            Ok(skel) => {
                chosen = Some((m, skel));
                break;
            }
            Err(e) => {
                // The last resort's log (a verifier message) is the one to read.
                if i == last {
                    eprint!("{log}");
                }
                if !failed.iter().any(|(f, _)| *f == m) {
                    failed.push((m, e));
                }
            }
        }
    }
    let Some((method, mut skel)) = chosen else {
        return Err(tracing::no_method(failed));
    };

    let format = if cfg.json {
        output::Format::Json
    } else {
        output::Format::Table
    };
    let sink = RefCell::new(Sink::stdout(format, cfg.limits.count));
    let events = cfg.events;
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let Some(c) = Conn::decode(data) else {
                return 0;
            };
            let mut s = sink.borrow_mut();
            let wall_ns = s.clock.wall_ns(c.ts_ns);
            if s.event(&ConnLine {
                c: &c,
                wall_ns,
                events,
            }) {
                0
            } else {
                runner::CALLBACK_STOP
            }
        })
        .context("setting up the ring buffer")?;
    let rb = builder.build().context("setting up the ring buffer")?;
    let counters = Counters::new(&skel.maps.counters as &dyn MapCore, &OWN_COUNTERS)
        .with_programs(tracing::program_fds(skel.object()));
    let mut losses = LossReporter::new();

    runner::install_signal_handlers()?;
    sink.borrow_mut().header(&table_header(cfg.events));
    let fallbacks: Vec<String> = failed
        .iter()
        .map(|(m, e)| format!("{} unavailable: {e:#}", m.name()))
        .collect();
    if !fallbacks.is_empty() {
        eprintln!("wirescope: {}", fallbacks.join("; "));
    }
    if let Some(note) = method_note(method) {
        eprintln!("wirescope: with {}: {note}", method.name());
    }
    eprintln!(
        "Tracing TCP connections ({}, attached with {}). Ctrl-C to end.",
        if cfg.events { "all events" } else { "at close" },
        method.name()
    );
    let mut sweeper = Sweeper::new(&skel);
    let end = runner::poll(&rb, &sink, &counters, cfg.limits, &mut losses, |_| {
        // an injected skip (tests) stands for a skip the kernel counted
        let injected = counters.get(types::conn_counter::COUNTER_INJECTED_SKIP.0)?;
        sweeper.tick(counters.missed() + injected);
        Ok(())
    });
    // Before detaching (a connection closing after that is not ours to
    // report): two sweeps, so that a close missed just now is confirmed.
    sweeper.sweep();
    std::thread::sleep(SWEEP_CONFIRM);
    sweeper.sweep();
    skel.links = Default::default();
    let end = end?;
    runner::finish(&rb, &sink, &counters, &mut losses, end, || Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u32, flags: u32) -> types::conn_event {
        let mut ev = types::conn_event {
            ts_ns: 5_000_000_000,
            start_ns: 3_750_000_000,
            tx_bytes: 1000,
            rx_bytes: 2000,
            cgroup_id: 77,
            netns: 4026531840,
            pid: 4242,
            lport: 40000,
            rport: 443,
            family: addr::FAMILY_IPV4,
            kind: kind as u8,
            end: types::conn_end::END_LOCAL_CLOSE.0 as u8,
            side: types::conn_side::SIDE_ACTIVE.0 as u8,
            flags: flags as u8,
            ..Default::default()
        };
        for (d, s) in ev.comm.iter_mut().zip(b"curl\0garbage!!!") {
            *d = *s as _;
        }
        ev.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        ev.raddr[..4].copy_from_slice(&[192, 0, 2, 9]);
        ev
    }

    /// One output line for `c`: JSON, or the table (with --events or not).
    fn render(c: &Conn, wall_ns: i128, events: bool, json: bool) -> String {
        output::render(&ConnLine { c, wall_ns, events }, json)
    }

    const KNOWN: u32 = types::conn_flags::FLAG_PROC_KNOWN.0 | types::conn_flags::FLAG_START_KNOWN.0;

    #[test]
    fn decodes_a_close_event_from_bytes() {
        let ev = event(types::conn_kind::CONN_CLOSE.0, KNOWN);
        // SAFETY: conn_event is plain data; viewing it as bytes is fine.
        let bytes = unsafe { plain::as_bytes(&ev) };
        let c = Conn::decode(bytes).unwrap();
        assert_eq!(c.kind, Kind::Close);
        assert_eq!((c.pid, c.comm.as_deref()), (Some(4242), Some("curl")));
        assert_eq!((c.tx_bytes, c.rx_bytes), (Some(1000), Some(2000)));
        assert_eq!(c.duration_ns, Some(1_250_000_000));
        assert_eq!(c.end, Some("local-close"));
        assert_eq!(c.laddr.to_string(), "10.0.0.1");
        assert!(Conn::decode(&bytes[..10]).is_none());
    }

    #[test]
    fn unknown_owner_and_start_are_null_not_zero() {
        let ev = event(types::conn_kind::CONN_CLOSE.0, 0);
        let c = Conn::try_from(&ev).unwrap();
        assert_eq!((c.pid, c.comm.clone(), c.duration_ns), (None, None, None));
        let out = render(&c, 0, false, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["pid"].is_null() && v["comm"].is_null() && v["duration_ms"].is_null());
        assert_eq!(v["tx_bytes"], 1000);
    }

    #[test]
    fn a_recovered_close_has_no_duration_and_says_so() {
        let recovered = types::conn_flags::FLAG_RECOVERED.0;
        let no_bytes = types::conn_flags::FLAG_NO_BYTES.0;
        let c = Conn::try_from(&event(types::conn_kind::CONN_CLOSE.0, KNOWN | recovered)).unwrap();
        assert!(c.recovered);
        assert_eq!((c.pid, c.duration_ns), (Some(4242), None));
        assert_eq!((c.tx_bytes, c.rx_bytes), (Some(1000), Some(2000)));
        let out = render(&c, 0, false, false);
        let text = out;
        assert!(
            text.trim_end().ends_with("local-close (recovered)"),
            "{text}"
        );

        let ev = event(types::conn_kind::CONN_CLOSE.0, KNOWN | recovered | no_bytes);
        let c = Conn::try_from(&ev).unwrap();
        assert_eq!((c.tx_bytes, c.rx_bytes), (None, None));
        let out = render(&c, 0, false, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["recovered"], true);
        assert!(v["tx_bytes"].is_null() && v["rx_bytes"].is_null() && v["duration_ms"].is_null());

        // an ordinary close has no `recovered` field at all
        let c = Conn::try_from(&event(types::conn_kind::CONN_CLOSE.0, KNOWN)).unwrap();
        let out = render(&c, 0, false, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("recovered").is_none() && !c.recovered);
    }

    #[test]
    fn json_fields_of_a_close() {
        let c = Conn::try_from(&event(types::conn_kind::CONN_CLOSE.0, KNOWN)).unwrap();
        let out = render(&c, 1_700_000_000_000_000_000, false, true);
        let text = out;
        assert_eq!(
            text,
            "{\"type\":\"conn\",\"time\":\"2023-11-14T22:13:20.000000Z\",\"event\":\"close\",\
             \"pid\":4242,\"comm\":\"curl\",\"family\":\"ipv4\",\"laddr\":\"10.0.0.1\",\
             \"lport\":40000,\"raddr\":\"192.0.2.9\",\"rport\":443,\"tx_bytes\":1000,\
             \"rx_bytes\":2000,\"duration_ms\":1250.0,\"end\":\"local-close\",\"side\":\"active\",\
             \"cgroup_id\":77,\"netns\":4026531840}\n"
        );
    }

    #[test]
    fn connect_events_carry_no_byte_counts() {
        let c = Conn::try_from(&event(types::conn_kind::CONN_CONNECT.0, KNOWN)).unwrap();
        assert_eq!(
            (c.tx_bytes, c.rx_bytes, c.duration_ns, c.end),
            (None, None, None, None)
        );
        let out = render(&c, 0, true, false);
        let line = out;
        assert!(line.starts_with("connect "), "{line}");
        assert!(
            line.contains("10.0.0.1:40000") && line.contains("192.0.2.9:443"),
            "{line}"
        );
    }

    #[test]
    fn bad_kinds_and_families_are_rejected() {
        assert!(Conn::try_from(&event(99, KNOWN)).is_err());
        let mut ev = event(types::conn_kind::CONN_CLOSE.0, KNOWN);
        ev.family = 0;
        assert!(Conn::try_from(&ev).is_err());
    }
}
