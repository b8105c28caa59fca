//! `wirescope sendlat`: how long each send on a TCP socket spends in the
//! kernel (tcp_sendmsg), one line per call with the process, connection,
//! bytes asked and sent; or, with --hist, log2 histograms built in the kernel
//! and printed every --interval and at exit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject, RingBufferBuilder};
use serde::Serialize;

use crate::addr::{self, Endpoint};
use crate::hist::{self, Log2Hist};
use crate::output::{self, Format, Record, Sink};
use crate::runner::{self, Counters, Limits, LossReporter};
use crate::sys;
use crate::tracing::{self, AttachArg, Method, ProcFilter};

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/sendlat.skel.rs"));
}
use skel::{types, SendlatSkel, SendlatSkelBuilder};

pub const MAX_PORTS: usize = types::sendlat_limits::MAX_SENDLAT_PORTS.0 as usize;
const HIST_SLOTS: usize = types::sendlat_limits::HIST_SLOTS.0 as usize;
const MAX_HIST_KEYS: u32 = types::sendlat_limits::MAX_HIST_KEYS.0;
/// --min-us at most an hour (so that it fits in nanoseconds with room).
pub const MAX_MIN_US: u64 = 3_600_000_000;

/// The tracepoint that ends a call with the tracepoint method.
const SEND_LENGTH_TP: &str = "sock_send_length";

/// One histogram per what, with --hist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Per {
    /// one histogram per process (PID)
    Pid,
    /// one histogram per process name
    Comm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistConfig {
    pub per: Option<Per>,
    /// Print every this often (and at exit); None: only at exit
    pub interval: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Some: histograms instead of one line per call
    pub hist: Option<HistConfig>,
    pub min_us: u64,
    pub ports: Vec<u16>,
    pub family: Option<u8>,
    pub proc: ProcFilter,
    pub attach: AttachArg,
    pub json: bool,
    pub limits: Limits,
    pub ringbuf_size: u32,
}

// SAFETY: sendlat_event is a generated #[repr(C)] struct of integers and byte
// arrays with explicit padding: every bit pattern is a valid value.
unsafe impl plain::Plain for types::sendlat_event {}
// SAFETY: hist_key is a generated #[repr(C)] struct of an integer and a byte
// array without padding: every bit pattern is a valid value.
unsafe impl plain::Plain for types::hist_key {}
// SAFETY: hist_value is a generated #[repr(C)] struct of integers and a byte
// array without padding: every bit pattern is a valid value.
unsafe impl plain::Plain for types::hist_value {}

/// One send, decoded from the kernel's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub ts_ns: u64,
    pub latency_ns: u64,
    pub pid: u32,
    pub comm: String,
    pub family: u8,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    /// Bytes asked to send; None when the method could not learn it
    pub size: Option<u64>,
    /// The return value: bytes sent, or a negative errno
    pub ret: i64,
}

impl Call {
    pub fn decode(data: &[u8]) -> Option<Call> {
        let mut ev = types::sendlat_event::default();
        plain::copy_from_bytes(&mut ev, data).ok()?;
        Call::try_from(&ev).ok()
    }
}

impl TryFrom<&types::sendlat_event> for Call {
    type Error = ();

    fn try_from(ev: &types::sendlat_event) -> Result<Self, ()> {
        let laddr = addr::ip_from_bytes(ev.family, &ev.laddr).ok_or(())?;
        let raddr = addr::ip_from_bytes(ev.family, &ev.raddr).ok_or(())?;
        let comm: Vec<u8> = ev.comm.iter().map(|&c| c as u8).collect();
        let size_known = u32::from(ev.flags) & types::sendlat_flags::FLAG_SIZE_KNOWN.0 != 0;
        Ok(Call {
            ts_ns: ev.ts_ns,
            latency_ns: ev.latency_ns,
            pid: ev.pid,
            comm: sys::text_until_nul(&comm),
            family: ev.family,
            laddr,
            lport: ev.lport,
            raddr,
            rport: ev.rport,
            size: size_known.then_some(ev.size),
            ret: ev.ret,
        })
    }
}

fn family_name(family: u8) -> &'static str {
    if family == addr::FAMILY_IPV6 {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// Microseconds with nanosecond resolution.
fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The name of a negative return value (errno), for the table.
fn errno_text(ret: i64) -> String {
    let name = i32::try_from(-ret)
        .ok()
        .map(nix::errno::Errno::from_raw)
        .filter(|e| *e != nix::errno::Errno::UnknownErrno);
    match name {
        Some(e) => format!("-{e:?}"),
        None => ret.to_string(),
    }
}

#[derive(Serialize)]
struct CallJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    pid: u32,
    comm: &'a str,
    family: &'static str,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
    size: Option<u64>,
    sent: i64,
    latency_us: f64,
}

pub struct CallLine<'a> {
    pub c: &'a Call,
    pub wall_ns: i128,
}

pub fn table_header() -> String {
    format!(
        "{:<15} {:>7} {:<15} {:<27} {:<27} {:>9} {:>9} {:>12}",
        "TIME(UTC)", "PID", "COMM", "LOCAL", "REMOTE", "SIZE", "SENT", "LAT(us)"
    )
}

impl Record for CallLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let c = self.c;
        writeln!(
            w,
            "{:<15} {:>7} {:<15} {:<27} {:<27} {:>9} {:>9} {:>12.3}",
            output::time_of_day_us(self.wall_ns),
            c.pid,
            c.comm,
            Endpoint(Some(c.laddr), Some(c.lport)).to_string(),
            Endpoint(Some(c.raddr), Some(c.rport)).to_string(),
            c.size.map_or_else(|| "-".to_string(), |s| s.to_string()),
            if c.ret < 0 {
                errno_text(c.ret)
            } else {
                c.ret.to_string()
            },
            micros(c.latency_ns),
        )
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let c = self.c;
        let j = CallJson {
            kind: "sendlat",
            time: output::rfc3339_us(self.wall_ns),
            pid: c.pid,
            comm: &c.comm,
            family: family_name(c.family),
            laddr: c.laddr,
            lport: c.lport,
            raddr: c.raddr,
            rport: c.rport,
            size: c.size,
            sent: c.ret,
            latency_us: micros(c.latency_ns),
        };
        serde_json::to_writer(&mut *w, &j)?;
        w.write_all(b"\n")
    }
}

/// What a histogram covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HistKey {
    All,
    Pid(u32),
    Comm(String),
}

impl HistKey {
    fn decode(k: &types::hist_key, per: Option<Per>) -> HistKey {
        match per {
            None => HistKey::All,
            Some(Per::Pid) => HistKey::Pid(k.pid),
            Some(Per::Comm) => {
                let comm: Vec<u8> = k.comm.iter().map(|&c| c as u8).collect();
                HistKey::Comm(sys::text_until_nul(&comm))
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            HistKey::All => serde_json::Value::Null,
            HistKey::Pid(p) => (*p).into(),
            HistKey::Comm(c) => c.as_str().into(),
        }
    }
}

#[derive(Serialize)]
struct HistJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    key: serde_json::Value,
    unit: &'static str,
    buckets: &'a [hist::Bucket],
    count: u64,
    mean: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
}

/// One histogram, printed as a block (table) or a `hist` line (JSON).
pub struct HistLine<'a> {
    pub key: &'a HistKey,
    /// With --per pid: the process name when its histogram was made
    pub comm: Option<&'a str>,
    pub h: &'a Log2Hist,
    pub wall_ns: i128,
}

impl Record for HistLine<'_> {
    fn write_table(&self, w: &mut dyn Write) -> io::Result<()> {
        let what = match self.key {
            HistKey::All => "all processes".to_string(),
            HistKey::Pid(p) => format!("pid {p} ({})", self.comm.unwrap_or("?")),
            HistKey::Comm(c) => format!("comm {c}"),
        };
        let stat = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        writeln!(
            w,
            "{} tcp_sendmsg latency, {what}: {} calls, mean {} us, p50 {} us, p90 {} us, p99 {} us",
            output::time_of_day_us(self.wall_ns),
            self.h.count(),
            stat(self.h.mean_us()),
            stat(self.h.percentile(0.50)),
            stat(self.h.percentile(0.90)),
            stat(self.h.percentile(0.99)),
        )?;
        self.h.write_bars(w, "    ")?;
        writeln!(w)
    }

    fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let buckets = self.h.buckets();
        let j = HistJson {
            kind: "hist",
            time: output::rfc3339_us(self.wall_ns),
            key: self.key.json(),
            unit: "us",
            buckets: &buckets,
            count: self.h.count(),
            mean: self.h.mean_us().map(hist::round3),
            p50: self.h.percentile(0.50).map(hist::round3),
            p90: self.h.percentile(0.90).map(hist::round3),
            p99: self.h.percentile(0.99).map(hist::round3),
        };
        serde_json::to_writer(&mut *w, &j)?;
        w.write_all(b"\n")
    }
}

/// The kernel's histograms as they stand, by key.
type Snapshot = HashMap<HistKey, (Log2Hist, Option<String>)>;

fn read_hists(map: &dyn MapCore, per: Option<Per>) -> Result<Snapshot> {
    let mut out = Snapshot::new();
    for raw_key in map.keys() {
        let Some(raw) = map
            .lookup(&raw_key, MapFlags::ANY)
            .context("reading a histogram")?
        else {
            continue; // removed meanwhile
        };
        let mut k = types::hist_key::default();
        let mut v = types::hist_value::default();
        if plain::copy_from_bytes(&mut k, &raw_key).is_err()
            || plain::copy_from_bytes(&mut v, &raw).is_err()
        {
            continue;
        }
        let comm: Vec<u8> = v.comm.iter().map(|&c| c as u8).collect();
        let comm = (per == Some(Per::Pid)).then(|| sys::text_until_nul(&comm));
        out.insert(
            HistKey::decode(&k, per),
            (Log2Hist::new(v.slots.to_vec(), v.sum_ns), comm),
        );
    }
    Ok(out)
}

/// Prints what the histograms gained since the last print.
struct HistPrinter {
    per: Option<Per>,
    interval: Option<Duration>,
    last: Instant,
    prev: HashMap<HistKey, Log2Hist>,
}

impl HistPrinter {
    fn new(cfg: &HistConfig) -> Self {
        HistPrinter {
            per: cfg.per,
            interval: cfg.interval,
            last: Instant::now(),
            prev: HashMap::new(),
        }
    }

    fn due(&self) -> bool {
        self.interval.is_some_and(|i| self.last.elapsed() >= i)
    }

    /// Print every histogram with new calls (and, without --per, the one
    /// histogram even when it has none).
    fn print(&mut self, map: &dyn MapCore, sink: &RefCell<Sink>) -> Result<()> {
        self.last = Instant::now();
        let now = read_hists(map, self.per)?;
        let mut keys: Vec<&HistKey> = now.keys().collect();
        keys.sort();
        let empty = Log2Hist::new(vec![0; HIST_SLOTS], 0);
        let mut lines: Vec<(HistKey, Option<String>, Log2Hist)> = Vec::new();
        for key in keys {
            let (h, comm) = &now[key];
            let delta = h.since(self.prev.get(key).unwrap_or(&empty));
            if delta.count() > 0 || self.per.is_none() {
                lines.push((key.clone(), comm.clone(), delta));
            }
        }
        if self.per.is_none() && lines.is_empty() {
            lines.push((HistKey::All, None, empty.clone()));
        }
        let mut s = sink.borrow_mut();
        let wall_ns = s.clock.now_ns();
        let format = s.format;
        for (key, comm, h) in &lines {
            let line = HistLine {
                key,
                comm: comm.as_deref(),
                h,
                wall_ns,
            };
            s.aux(|w| match format {
                Format::Json => line.write_json(w),
                Format::Table => line.write_table(w),
            });
        }
        s.flush();
        self.prev = now.into_iter().map(|(k, (h, _))| (k, h)).collect();
        Ok(())
    }
}

fn kernel_config(cfg: &Config) -> types::sendlat_config {
    let mut ports = [0u16; MAX_PORTS];
    for (slot, p) in ports.iter_mut().zip(&cfg.ports) {
        *slot = *p;
    }
    let comm = cfg.proc.comm_bytes();
    let per = match cfg.hist.as_ref().and_then(|h| h.per) {
        None => types::hist_per::PER_NONE,
        Some(Per::Pid) => types::hist_per::PER_PID,
        Some(Per::Comm) => types::hist_per::PER_COMM,
    };
    types::sendlat_config {
        proc: types::proc_filter {
            pid: cfg.proc.pid.unwrap_or(0),
            use_comm: u8::from(cfg.proc.comm.is_some()),
            use_cgroup: u8::from(cfg.proc.cgroup.is_some()),
            comm: comm.map(|b| b as _),
            ..Default::default()
        },
        min_ns: cfg.min_us.min(MAX_MIN_US) * 1000,
        ports,
        n_ports: cfg.ports.len().min(MAX_PORTS) as u8,
        family: cfg.family.unwrap_or(0),
        hist: u8::from(cfg.hist.is_some()),
        per: per.0 as u8,
        ..Default::default()
    }
}

/// What the tracepoint method needs besides what every method needs.
fn tracepoint_method_possible() -> Result<()> {
    if !tracing::kernel_has_tracepoint(SEND_LENGTH_TP) {
        bail!(
            "this kernel has no sock:{SEND_LENGTH_TP} tracepoint (Linux 6.3 added it), which \
             the tracepoint method needs to see a send return"
        );
    }
    let Some(events) = tracing::tracefs_events() else {
        bail!(
            "tracefs is not mounted, and the tracepoint method attaches through it \
             (mount -t tracefs tracefs /sys/kernel/tracing)"
        );
    };
    if !events.join("syscalls/sys_enter_sendto").is_dir() {
        bail!(
            "this kernel has no syscall tracepoints ({} has no syscalls/sys_enter_sendto; \
             CONFIG_FTRACE_SYSCALLS), which the tracepoint method needs",
            events.display()
        );
    }
    Ok(())
}

/// Programs of the tracepoint method that this kernel has no tracepoint for.
fn missing_syscall_tracepoints() -> Vec<&'static str> {
    // send(2) is a syscall of its own only on some architectures
    let has_send =
        tracing::tracefs_events().is_some_and(|e| e.join("syscalls/sys_enter_send").is_dir());
    if has_send {
        Vec::new()
    } else {
        vec!["tp_enter_send"]
    }
}

/// Load and attach the programs of one method.
fn load<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    method: Method,
    cfg: &Config,
    cgroup: Option<&std::os::fd::OwnedFd>,
) -> Result<SendlatSkel<'obj>> {
    if method == Method::Tracepoint {
        tracepoint_method_possible()?;
    }
    let mut open = SendlatSkelBuilder::default()
        .open(storage)
        .context("opening the sendlat programs")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the sendlat programs have no read-only data")?;
    rodata.cfg = kernel_config(cfg);
    // With --hist nothing goes through the ring buffer: the smallest one.
    let ringbuf = if cfg.hist.is_some() {
        4096
    } else {
        cfg.ringbuf_size
    };
    open.maps
        .events
        .set_max_entries(ringbuf)
        .context("sizing the ring buffer")?;
    let keys = match &cfg.hist {
        Some(HistConfig { per: Some(_), .. }) => MAX_HIST_KEYS,
        _ => 1,
    };
    open.maps
        .hists
        .set_max_entries(keys)
        .context("sizing the histogram map")?;
    let skip = if method == Method::Tracepoint {
        missing_syscall_tracepoints()
    } else {
        Vec::new()
    };
    tracing::enable_method(open.open_object_mut(), method, &[], &skip);
    let mut skel = open.load().context("loading")?;
    if let Some(fd) = cgroup {
        tracing::set_cgroup_filter(&skel.maps.cgroup_filter, fd)?;
    }
    skel.attach().context("attaching")?;
    Ok(skel)
}

/// Every method tried for real here (loaded, attached, detached right away),
/// for `wirescope probe`: the first that works, and why each other one does
/// not (worse ones included: where the tracepoint fallback cannot work, probe
/// says so even when a better method works).
pub fn trial() -> (Option<Method>, Vec<(Method, String)>) {
    let cfg = Config {
        hist: None,
        min_us: 0,
        ports: Vec::new(),
        family: None,
        proc: ProcFilter::default(),
        attach: AttachArg::Auto,
        json: true,
        limits: Limits::default(),
        ringbuf_size: 4096,
    };
    let mut chosen = None;
    let mut failed: Vec<(Method, String)> = Vec::new();
    for &m in tracing::candidates(AttachArg::Auto) {
        if let Err(e) = tracing::family_check(m) {
            failed.push((m, format!("{e:#}")));
            continue;
        }
        let mut storage = MaybeUninit::uninit();
        let (attached, _log) = sys::capture_libbpf(|| load(&mut storage, m, &cfg, None).map(drop));
        match attached {
            Ok(()) => {
                chosen.get_or_insert(m);
            }
            Err(e) => failed.push((m, format!("{e:#}"))),
        }
    }
    (chosen, failed)
}

const OWN_COUNTERS: [(u32, &str); 7] = [
    (types::sendlat_counter::COUNTER_UNDER_MIN.0, "under_min"),
    (types::sendlat_counter::COUNTER_IN_HIST.0, "in_hist"),
    (types::sendlat_counter::COUNTER_UNPAIRED.0, "unpaired"),
    (types::sendlat_counter::COUNTER_NO_RETURN.0, "no_return"),
    (
        types::sendlat_counter::COUNTER_OTHER_SOCKET.0,
        "other_sockets",
    ),
    (types::sendlat_counter::COUNTER_START_FULL.0, "start_full"),
    (types::sendlat_counter::COUNTER_HIST_FULL.0, "hist_full"),
];

/// What each method measures, told once at start.
fn method_note(m: Method) -> &'static str {
    match m {
        Method::Fentry | Method::Kprobe => "timing each call of tcp_sendmsg",
        Method::Tracepoint => {
            "timing from the entry of write/writev/sendto/sendmsg/sendmmsg on a TCP socket \
             to sock:sock_send_length (sends by io_uring, sendfile and 32-bit processes \
             are not seen)"
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

    let plan = tracing::candidates(cfg.attach);
    let mut storage: Vec<MaybeUninit<OpenObject>> =
        plan.iter().map(|_| MaybeUninit::uninit()).collect();
    let mut failed: Vec<(Method, anyhow::Error)> = Vec::new();
    let mut chosen = None;
    let last = plan.len().saturating_sub(1);
    for (i, (slot, &m)) in storage.iter_mut().zip(plan).enumerate() {
        // a family the kernel refuses costs one tiny program, not a full load
        if let Err(e) = tracing::family_check(m) {
            failed.push((m, e));
            continue;
        }
        let (r, log) = sys::capture_libbpf(|| load(slot, m, &cfg, cgroup.as_ref()));
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
                failed.push((m, e));
            }
        }
    }
    let Some((method, mut skel)) = chosen else {
        return Err(tracing::no_method(failed));
    };

    let format = if cfg.json {
        Format::Json
    } else {
        Format::Table
    };
    let sink = RefCell::new(Sink::stdout(format, cfg.limits.count));
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let Some(c) = Call::decode(data) else {
                return 0;
            };
            let mut s = sink.borrow_mut();
            let wall_ns = s.clock.wall_ns(c.ts_ns);
            if s.event(&CallLine { c: &c, wall_ns }) {
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
    let printer = cfg.hist.as_ref().map(|h| RefCell::new(HistPrinter::new(h)));
    let hists = &skel.maps.hists as &dyn MapCore;

    runner::install_signal_handlers()?;
    if cfg.hist.is_none() {
        sink.borrow_mut().header(&table_header());
    }
    let fallbacks: Vec<String> = failed
        .iter()
        .map(|(m, e)| format!("{} unavailable: {e:#}", m.name()))
        .collect();
    if !fallbacks.is_empty() {
        eprintln!("wirescope: {}", fallbacks.join("; "));
    }
    eprintln!("wirescope: {}", method_note(method));
    let what = match &cfg.hist {
        None => "each call".to_string(),
        Some(h) => format!(
            "histograms{}, printed {}",
            match h.per {
                None => "",
                Some(Per::Pid) => " per process",
                Some(Per::Comm) => " per process name",
            },
            match h.interval {
                None => "at exit".to_string(),
                Some(i) => format!("every {}s and at exit", i.as_secs()),
            }
        ),
    };
    eprintln!(
        "Tracing time in tcp_sendmsg ({what}, attached with {}). Ctrl-C to end.",
        method.name()
    );
    let end = runner::poll(
        &rb,
        &sink,
        &counters,
        cfg.limits,
        &mut losses,
        |sink| match &printer {
            Some(p) if p.borrow().due() => p.borrow_mut().print(hists, sink),
            _ => Ok(()),
        },
    );
    let hists_map = &skel.maps.hists;
    // Detach first: the final histograms then hold every call that ended.
    skel.links = Default::default();
    let end = end?;
    runner::finish(&rb, &sink, &counters, &mut losses, end, || match &printer {
        Some(p) => p.borrow_mut().print(hists_map, &sink),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(family: u8) -> types::sendlat_event {
        let mut ev = types::sendlat_event {
            ts_ns: 5_000_000_000,
            latency_ns: 1_234_567,
            size: 65536,
            ret: 65536,
            pid: 4242,
            lport: 40000,
            rport: 443,
            family,
            flags: types::sendlat_flags::FLAG_SIZE_KNOWN.0 as u8,
            ..Default::default()
        };
        for (d, s) in ev.comm.iter_mut().zip(b"curl\0garbage!!!") {
            *d = *s as _;
        }
        if family == addr::FAMILY_IPV6 {
            ev.laddr = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
            ev.raddr = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        } else {
            ev.laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
            ev.raddr[..4].copy_from_slice(&[192, 0, 2, 9]);
        }
        ev
    }

    fn json_of(r: &dyn Record) -> String {
        output::render(r, true)
    }

    fn table_of(r: &dyn Record) -> String {
        output::render(r, false)
    }

    #[test]
    fn decodes_an_event_from_bytes() {
        let ev = event(addr::FAMILY_IPV4);
        // SAFETY: sendlat_event is plain data; viewing it as bytes is fine.
        let bytes = unsafe { plain::as_bytes(&ev) };
        let c = Call::decode(bytes).unwrap();
        assert_eq!((c.pid, c.comm.as_str()), (4242, "curl"));
        assert_eq!(
            (c.size, c.ret, c.latency_ns),
            (Some(65536), 65536, 1_234_567)
        );
        assert_eq!(c.laddr.to_string(), "10.0.0.1");
        assert_eq!((c.raddr.to_string().as_str(), c.rport), ("192.0.2.9", 443));
        assert!(Call::decode(&bytes[..bytes.len() - 1]).is_none());
        let mut ev = event(addr::FAMILY_IPV4);
        ev.family = 0;
        assert!(Call::try_from(&ev).is_err());
        ev.family = addr::FAMILY_IPV4;
        ev.flags = 0;
        assert_eq!(Call::try_from(&ev).unwrap().size, None);
    }

    #[test]
    fn json_of_a_call() {
        let c = Call::try_from(&event(addr::FAMILY_IPV6)).unwrap();
        let text = json_of(&CallLine {
            c: &c,
            wall_ns: 1_700_000_000_000_000_000,
        });
        assert_eq!(
            text,
            "{\"type\":\"sendlat\",\"time\":\"2023-11-14T22:13:20.000000Z\",\"pid\":4242,\
             \"comm\":\"curl\",\"family\":\"ipv6\",\"laddr\":\"fd00::1\",\"lport\":40000,\
             \"raddr\":\"fd00::2\",\"rport\":443,\"size\":65536,\"sent\":65536,\
             \"latency_us\":1234.567}\n"
        );
    }

    #[test]
    fn failed_sends_and_unknown_sizes_in_both_formats() {
        let mut ev = event(addr::FAMILY_IPV4);
        ev.ret = -11;
        ev.flags = 0;
        let c = Call::try_from(&ev).unwrap();
        let line = CallLine { c: &c, wall_ns: 0 };
        let v: serde_json::Value = serde_json::from_str(&json_of(&line)).unwrap();
        assert_eq!(v["sent"], -11);
        assert!(v["size"].is_null());
        let t = table_of(&line);
        assert!(t.contains("-EAGAIN"), "{t}");
        assert!(
            t.contains("10.0.0.1:40000") && t.contains("192.0.2.9:443"),
            "{t}"
        );
        assert!(t.trim_end().ends_with("1234.567"), "{t}");
        assert_eq!(errno_text(-9999), "-9999");
    }

    fn sample_hist() -> Log2Hist {
        let mut slots = vec![0; HIST_SLOTS];
        slots[3] = 2; // [4, 8) us
        slots[10] = 1; // [512, 1024) us
        Log2Hist::new(slots, 5_000 + 6_000 + 700_000)
    }

    #[test]
    fn json_of_a_histogram() {
        let h = sample_hist();
        let text = json_of(&HistLine {
            key: &HistKey::All,
            comm: None,
            h: &h,
            wall_ns: 1_700_000_000_000_000_000,
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "hist");
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000Z");
        assert!(v["key"].is_null());
        assert_eq!(v["unit"], "us");
        assert_eq!(v["count"], 3);
        assert_eq!(v["mean"], 237.0);
        let b = v["buckets"].as_array().unwrap();
        assert_eq!(b.len(), 8, "from [4, 8) to [512, 1024): {text}");
        assert_eq!(b[0], serde_json::json!({"low": 4, "high": 8, "count": 2}));
        assert_eq!(
            b[7],
            serde_json::json!({"low": 512, "high": 1024, "count": 1})
        );
        let sum: u64 = b.iter().map(|x| x["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, 3);
        // rank 1.5 is 3/4 into [4, 8); ranks 2.7 and 2.97 are 0.7 and 0.97
        // into the one call of [512, 1024)
        assert_eq!(v["p50"], 7.0);
        assert_eq!(v["p90"], 870.4);
        assert_eq!(v["p99"], 1008.64);
        // per-pid and per-comm keys
        let pid = json_of(&HistLine {
            key: &HistKey::Pid(77),
            comm: Some("nginx"),
            h: &h,
            wall_ns: 0,
        });
        assert!(pid.contains("\"key\":77,"), "{pid}");
        let comm = json_of(&HistLine {
            key: &HistKey::Comm("nginx".into()),
            comm: None,
            h: &h,
            wall_ns: 0,
        });
        assert!(comm.contains("\"key\":\"nginx\","), "{comm}");
    }

    #[test]
    fn an_empty_histogram_has_null_statistics() {
        let h = Log2Hist::new(vec![0; HIST_SLOTS], 0);
        let v: serde_json::Value = serde_json::from_str(&json_of(&HistLine {
            key: &HistKey::All,
            comm: None,
            h: &h,
            wall_ns: 0,
        }))
        .unwrap();
        assert_eq!(v["count"], 0);
        assert!(v["mean"].is_null() && v["p50"].is_null() && v["p99"].is_null());
        assert_eq!(v["buckets"], serde_json::json!([]));
    }

    #[test]
    fn histogram_table_block() {
        let h = sample_hist();
        let t = table_of(&HistLine {
            key: &HistKey::Pid(77),
            comm: Some("nginx"),
            h: &h,
            wall_ns: 0,
        });
        let first = t.lines().next().unwrap();
        assert_eq!(
            first,
            "00:00:00.000000 tcp_sendmsg latency, pid 77 (nginx): 3 calls, mean 237.000 us, \
             p50 7.000 us, p90 870.400 us, p99 1008.640 us"
        );
        assert!(t.contains("4 -> 8") && t.contains("512 -> 1024"), "{t}");
    }

    #[test]
    fn kernel_config_from_options() {
        let cfg = Config {
            hist: Some(HistConfig {
                per: Some(Per::Comm),
                interval: None,
            }),
            min_us: 1500,
            ports: vec![80, 443],
            family: Some(addr::FAMILY_IPV6),
            proc: ProcFilter {
                pid: Some(7),
                comm: Some("nginx".into()),
                cgroup: None,
            },
            attach: AttachArg::Auto,
            json: false,
            limits: Limits::default(),
            ringbuf_size: 4096,
        };
        let k = kernel_config(&cfg);
        assert_eq!((k.min_ns, k.n_ports, k.family), (1_500_000, 2, 6));
        assert_eq!(&k.ports[..3], &[80, 443, 0]);
        assert_eq!((k.hist, k.per), (1, types::hist_per::PER_COMM.0 as u8));
        assert_eq!((k.proc.pid, k.proc.use_comm, k.proc.use_cgroup), (7, 1, 0));
    }
}
