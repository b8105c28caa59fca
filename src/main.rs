//! wirescope: trace a Linux host's network from inside the kernel with eBPF.
//! This file is the command line and dispatch only; each command lives in its
//! own module.

mod addr;
mod conn;
mod hist;
mod http;
mod netattach;
mod netlink;
mod output;
mod packets;
mod pcap;
mod probe;
mod runner;
mod sendlat;
mod sys;
mod tracing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

use addr::Cidr;
use netattach::XdpMode;

const EXAMPLES: &str = "\
Examples:
  wirescope packets -i eth0                       every packet arriving on eth0
  wirescope packets -i eth0 --direction both -P 443 --json
  wirescope packets -i eth0 --src 10.0.0.0/8 --proto tcp --count 100
  wirescope packets -i eth0 --pcap /tmp/x.pcap --snaplen 128 --duration 10
  wirescope conn                                  every TCP connection, when it closes
  wirescope conn --events -P 443 --comm nginx     connect/accept/established/close
  wirescope conn --cgroup /sys/fs/cgroup/system.slice/nginx.service --json
  wirescope sendlat --min-us 1000                 every send that took 1 ms or more
  wirescope sendlat --hist --per comm --interval 5   latency histograms per process name
  wirescope probe                                 what this kernel supports
  wirescope http -i eth0                          HTTP/1.x requests, status and latency
  wirescope http -i eth0 -P 80,8080 --method POST,PUT --no-query --json
  wirescope http -i eth0 --host api.example.com --path-prefix /v2/ --timeout 5

Run as root, or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.";

#[derive(Parser, Debug)]
#[command(
    name = "wirescope",
    version,
    about = "Trace this host's network from inside the kernel with eBPF",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Packet by packet: XDP at ingress, TC at egress
    #[command(after_help = EXAMPLES)]
    Packets(PacketsArgs),
    /// HTTP/1.x requests with their status and latency, read from packets
    #[command(after_help = EXAMPLES)]
    Http(HttpArgs),
    /// TCP connections: owning process, bytes each way, duration, how they ended
    #[command(after_help = EXAMPLES)]
    Conn(ConnArgs),
    /// Time spent sending on TCP sockets (tcp_sendmsg): per call, or as histograms
    #[command(after_help = EXAMPLES)]
    Sendlat(SendlatArgs),
    /// What this kernel supports, and which attach method each command will use
    Probe(ProbeArgs),
}

#[derive(Args, Debug)]
struct ProbeArgs {
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// Try XDP and TC on this interface (default: a temporary veth pair in a
    /// private network namespace, so nothing on the host is touched)
    #[arg(short, long, value_name = "IFACE")]
    interface: Option<String>,
}

/// -p, --comm, --cgroup: which processes (tracing commands).
#[derive(Args, Debug, Clone)]
struct ProcArgs {
    /// Only this process (PID, i.e. thread group id)
    #[arg(short = 'p', long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pid: Option<u32>,
    /// Only processes with this name (the kernel keeps the first 15 bytes)
    #[arg(long, value_name = "NAME", value_parser = parse_comm)]
    comm: Option<String>,
    /// Only processes in this cgroup v2 directory or below it
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
}

impl ProcArgs {
    fn filter(self) -> tracing::ProcFilter {
        tracing::ProcFilter {
            pid: self.pid,
            comm: self.comm,
            cgroup: self.cgroup,
        }
    }
}

/// Which sockets a hooking command follows (conn, sendlat), and how it hooks
/// the kernel.
#[derive(Args, Debug)]
struct SockArgs {
    /// Only connections with one of these ports, local or remote (comma-separated, up to 8)
    #[arg(short = 'P', long = "port", value_name = "PORTS", value_delimiter = ',',
          value_parser = addr::parse_port)]
    ports: Vec<u16>,
    /// Only IPv4
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    #[command(flatten)]
    proc: ProcArgs,
    /// How to hook the kernel
    #[arg(long, value_enum, default_value = "auto")]
    attach: tracing::AttachArg,
}

/// SockArgs, checked.
struct SockFilter {
    ports: Vec<u16>,
    family: Option<u8>,
    proc: tracing::ProcFilter,
    attach: tracing::AttachArg,
}

impl SockArgs {
    /// Checked against the command's own port limit (the size of its kernel array).
    fn checked(self, max_ports: usize) -> Result<SockFilter, String> {
        if self.ports.len() > max_ports {
            return Err(format!("at most {max_ports} ports can be given to --port"));
        }
        Ok(SockFilter {
            ports: self.ports,
            family: family_of(self.ipv4, self.ipv6, None, None)?,
            proc: self.proc.filter(),
            attach: self.attach,
        })
    }
}

fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("a process name is 1 to 15 bytes without NUL".into());
    }
    Ok(s.to_string())
}

#[derive(Args, Debug)]
struct ConnArgs {
    /// Stream connect, accept, established and close events (default: one line at close)
    #[arg(long)]
    events: bool,
    /// Live connections tracked at once; beyond it they are counted as map_full
    #[arg(long, value_name = "N", default_value_t = conn::MAX_CONNS,
          value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    max_conns: u32,
    /// Tests only: the kernel side ignores about one close in N, as if the
    /// kernel had skipped it, to exercise the recovery of missed closes
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    inject_missed_closes: u32,
    #[command(flatten)]
    sock: SockArgs,
    #[command(flatten)]
    common: CommonArgs,
}

impl ConnArgs {
    fn into_config(self) -> Result<conn::Config, String> {
        let sock = self.sock.checked(conn::MAX_PORTS)?;
        Ok(conn::Config {
            events: self.events,
            max_conns: self.max_conns,
            inject_missed_closes: self.inject_missed_closes,
            ports: sock.ports,
            family: sock.family,
            proc: sock.proc,
            attach: sock.attach,
            json: self.common.json,
            limits: self.common.limits(),
            ringbuf_size: self.common.ringbuf_size.unwrap_or(DEFAULT_RINGBUF),
        })
    }
}

#[derive(Args, Debug)]
struct SendlatArgs {
    /// Aggregate latencies into log2 histograms in the kernel instead of printing each call
    #[arg(long)]
    hist: bool,
    /// With --hist: one histogram per process or per process name
    #[arg(long, value_enum, requires = "hist")]
    per: Option<sendlat::Per>,
    /// With --hist: print the histograms every SECS seconds, not only at exit
    #[arg(long, value_name = "SECS", requires = "hist",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: Option<u64>,
    /// Only calls that took at least N microseconds (filtered in the kernel)
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=sendlat::MAX_MIN_US))]
    min_us: u64,
    #[command(flatten)]
    sock: SockArgs,
    #[command(flatten)]
    common: CommonArgs,
}

impl SendlatArgs {
    fn into_config(self) -> Result<sendlat::Config, String> {
        let sock = self.sock.checked(sendlat::MAX_PORTS)?;
        if self.hist && self.common.count.is_some() {
            return Err(
                "--count counts per-call lines and --hist prints none: end a --hist run \
                 with --duration or Ctrl-C"
                    .into(),
            );
        }
        Ok(sendlat::Config {
            hist: self.hist.then(|| sendlat::HistConfig {
                per: self.per,
                interval: self.interval.map(Duration::from_secs),
            }),
            min_us: self.min_us,
            ports: sock.ports,
            family: sock.family,
            proc: sock.proc,
            attach: sock.attach,
            json: self.common.json,
            limits: self.common.limits(),
            ringbuf_size: self.common.ringbuf_size.unwrap_or(DEFAULT_RINGBUF),
        })
    }
}

/// Options every tracing command has.
#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Print JSON Lines instead of a table
    #[arg(long)]
    json: bool,
    /// End after SECS seconds (fractions allowed)
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// End after N events
    #[arg(short = 'c', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Ring buffer size: a power of two from 4K to 1G (suffixes K, M, G);
    /// default 4M, and 8M for `packets --pcap`
    #[arg(long, value_name = "BYTES", value_parser = parse_ringbuf_size)]
    ringbuf_size: Option<u32>,
}

/// The ring buffer when --ringbuf-size is not given.
const DEFAULT_RINGBUF: u32 = 4 << 20;
/// ... and for records that carry packet bytes (up to 1.6 KB each).
const DEFAULT_RINGBUF_CAPTURE: u32 = 8 << 20;

impl CommonArgs {
    fn limits(&self) -> runner::Limits {
        runner::Limits {
            duration: self.duration,
            count: self.count,
        }
    }
}

#[derive(Args, Debug)]
struct PacketsArgs {
    /// Interface to trace
    #[arg(short, long, value_name = "IFACE")]
    interface: String,
    /// Which packets: arriving (XDP), leaving (TC), or both
    #[arg(long, value_enum, default_value = "ingress")]
    direction: packets::Direction,
    /// How to attach XDP
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpMode,
    /// Only this transport protocol (icmp means ICMP and ICMPv6)
    #[arg(long, value_enum)]
    proto: Option<packets::ProtoFilter>,
    /// Only packets with one of these ports on either side (comma-separated, up to 8)
    #[arg(short = 'P', long = "port", value_name = "PORTS", value_delimiter = ',',
          value_parser = addr::parse_port)]
    ports: Vec<u16>,
    /// Only packets from this network (CIDR or address)
    #[arg(long, value_name = "CIDR")]
    src: Option<Cidr>,
    /// Only packets to this network (CIDR or address)
    #[arg(long, value_name = "CIDR")]
    dst: Option<Cidr>,
    /// Only IPv4
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Keep 1 in N of the matching packets (counted per CPU)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    sample: Option<u32>,
    /// Bytes of each packet to capture into --pcap (default and most: 1536)
    #[arg(long, value_name = "BYTES", requires = "pcap",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(packets::MAX_SNAPLEN)))]
    snaplen: Option<u16>,
    /// Write the matching packets to this pcap file (created mode 0600)
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct HttpArgs {
    /// Interface to trace (requests and responses in both directions)
    #[arg(short, long, value_name = "IFACE")]
    interface: String,
    /// How to attach XDP
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: XdpMode,
    /// Only servers on these ports (comma-separated, up to 8; default: any port)
    #[arg(short = 'P', long = "port", value_name = "PORTS", value_delimiter = ',',
          value_parser = addr::parse_port)]
    ports: Vec<u16>,
    /// Only requests with these methods (comma-separated)
    #[arg(
        long = "method",
        value_name = "METHODS",
        value_delimiter = ',',
        value_enum,
        ignore_case = true
    )]
    methods: Vec<http::Method>,
    /// Only requests whose Host is one of these (a name without a port matches any port)
    #[arg(long = "host", value_name = "HOST", value_delimiter = ',', value_parser = parse_host)]
    hosts: Vec<String>,
    /// Only requests whose target starts with this (repeatable)
    #[arg(long = "path-prefix", value_name = "PREFIX", value_parser = parse_path_prefix)]
    path_prefixes: Vec<String>,
    /// Only clients in this network (CIDR or address)
    #[arg(long, value_name = "CIDR")]
    src: Option<Cidr>,
    /// Only servers in this network (CIDR or address)
    #[arg(long, value_name = "CIDR")]
    dst: Option<Cidr>,
    /// Only IPv4
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    ipv4: bool,
    /// Only IPv6
    #[arg(short = '6', long = "ipv6")]
    ipv6: bool,
    /// Drop query strings (from the first '?') before anything is printed
    #[arg(long)]
    no_query: bool,
    /// Report a request as unanswered after SECS seconds without a response
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    common: CommonArgs,
}

/// A Host value as it appears in requests: a name or address, optionally with
/// a port. A bare IPv6 address gets the brackets it has in a Host header.
fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|c| c > b' ' && c != 0x7f && c != b'/') {
        return Err(format!(
            "{s:?} is not a host name (like example.com or example.com:8080)"
        ));
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{s}]"));
    }
    Ok(s.to_string())
}

fn parse_path_prefix(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|c| c > b' ' && c != 0x7f) {
        return Err(format!(
            "{s:?} is not a request target prefix (like /api/); spaces and control characters \
             never appear in one"
        ));
    }
    Ok(s.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{s:?}: the duration must be more than 0 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes"))?;
    let bytes = n.saturating_mul(mult);
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "{s:?}: the ring buffer size must be a power of two from 4K to 1G"
        ));
    }
    Ok(bytes as u32)
}

impl PacketsArgs {
    /// Checks clap cannot express; Err is a usage error.
    fn into_config(self) -> Result<packets::Config, String> {
        if self.ports.len() > packets::MAX_PORTS {
            return Err(format!(
                "at most {} ports can be given to --port",
                packets::MAX_PORTS
            ));
        }
        if !self.ports.is_empty() && self.proto == Some(packets::ProtoFilter::Icmp) {
            return Err("--port cannot be combined with --proto icmp: ICMP has no ports".into());
        }
        let family = family_of(self.ipv4, self.ipv6, self.src.as_ref(), self.dst.as_ref())?;
        Ok(packets::Config {
            interface: self.interface,
            direction: self.direction,
            xdp_mode: self.xdp_mode,
            proto: self.proto,
            ports: self.ports,
            src: self.src,
            dst: self.dst,
            family,
            sample: self.sample.unwrap_or(1),
            snaplen: match (&self.pcap, self.snaplen) {
                (None, _) => 0,
                (Some(_), n) => n.unwrap_or(packets::MAX_SNAPLEN),
            },
            ringbuf_size: self.common.ringbuf_size.unwrap_or(if self.pcap.is_some() {
                DEFAULT_RINGBUF_CAPTURE
            } else {
                DEFAULT_RINGBUF
            }),
            pcap: self.pcap,
            json: self.common.json,
            limits: self.common.limits(),
        })
    }
}

impl HttpArgs {
    /// Checks clap cannot express; Err is a usage error.
    fn into_config(self) -> Result<http::Config, String> {
        if self.ports.len() > http::MAX_PORTS {
            return Err(format!(
                "at most {} ports can be given to --port",
                http::MAX_PORTS
            ));
        }
        let family = family_of(self.ipv4, self.ipv6, self.src.as_ref(), self.dst.as_ref())?;
        Ok(http::Config {
            interface: self.interface,
            xdp_mode: self.xdp_mode,
            ports: self.ports,
            client: self.src,
            server: self.dst,
            family,
            select: http::Select {
                methods: self.methods,
                hosts: self.hosts,
                path_prefixes: self.path_prefixes,
                no_query: self.no_query,
            },
            timeout: self.timeout,
            json: self.common.json,
            limits: self.common.limits(),
            ringbuf_size: self.common.ringbuf_size.unwrap_or(DEFAULT_RINGBUF),
        })
    }
}

/// The address family the flags ask for, or a usage error if they disagree.
fn family_of(
    ipv4: bool,
    ipv6: bool,
    src: Option<&Cidr>,
    dst: Option<&Cidr>,
) -> Result<Option<u8>, String> {
    let mut family = if ipv4 {
        Some(addr::FAMILY_IPV4)
    } else if ipv6 {
        Some(addr::FAMILY_IPV6)
    } else {
        None
    };
    for (flag, c) in [("--src", src), ("--dst", dst)] {
        let Some(c) = c else { continue };
        match family {
            Some(f) if f != c.family() => {
                return Err(format!(
                    "{flag} {c} is IPv{} but the other options ask for IPv{f} only",
                    c.family()
                ))
            }
            _ => family = Some(c.family()),
        }
    }
    Ok(family)
}

fn usage_error(msg: String) -> ! {
    Cli::command()
        .error(ErrorKind::ArgumentConflict, msg)
        .exit()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, sys::libbpf_print)));
    let result = match cli.command {
        Command::Packets(a) => {
            let cfg = a.into_config().unwrap_or_else(|m| usage_error(m));
            packets::run(cfg)
        }
        Command::Conn(a) => {
            let cfg = a.into_config().unwrap_or_else(|m| usage_error(m));
            conn::run(cfg)
        }
        Command::Sendlat(a) => {
            let cfg = a.into_config().unwrap_or_else(|m| usage_error(m));
            sendlat::run(cfg)
        }
        Command::Probe(a) => probe::run(a.json, a.interface.as_deref()),
        Command::Http(a) => {
            let cfg = a.into_config().unwrap_or_else(|m| usage_error(m));
            http::run(cfg)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wirescope: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wirescope").chain(args.iter().copied()))
    }

    fn packets(args: &[&str]) -> Result<packets::Config, String> {
        let mut all = vec!["packets"];
        all.extend_from_slice(args);
        match parse(&all).map_err(|e| e.to_string())?.command {
            Command::Packets(a) => a.into_config(),
            c => panic!("not packets: {c:?}"),
        }
    }

    fn http(args: &[&str]) -> Result<http::Config, String> {
        let mut all = vec!["http"];
        all.extend_from_slice(args);
        match parse(&all).map_err(|e| e.to_string())?.command {
            Command::Http(a) => a.into_config(),
            c => panic!("not http: {c:?}"),
        }
    }

    #[test]
    fn http_defaults() {
        let c = http(&["-i", "eth0"]).unwrap();
        assert_eq!(c.interface, "eth0");
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert!(c.ports.is_empty() && c.client.is_none() && c.server.is_none());
        assert_eq!(c.family, None);
        assert_eq!(c.timeout, Duration::from_secs(30));
        let s = &c.select;
        assert!(s.methods.is_empty() && s.hosts.is_empty() && s.path_prefixes.is_empty());
        assert!(!s.no_query && !c.json);
    }

    #[test]
    fn http_full_options() {
        let c = http(&[
            "-i",
            "veth0",
            "--xdp-mode",
            "generic",
            "-P",
            "80,8080",
            "--method",
            "get,POST",
            "--method",
            "Delete",
            "--host",
            "example.com,api.example.com:8443",
            "--path-prefix",
            "/api/",
            "--path-prefix",
            "/v2",
            "--src",
            "10.0.0.0/8",
            "--dst",
            "10.1.2.3",
            "--no-query",
            "--timeout",
            "2.5",
            "--json",
            "--count",
            "3",
        ])
        .unwrap();
        assert_eq!(c.ports, vec![80, 8080]);
        assert_eq!(
            c.select.methods,
            vec![http::Method::Get, http::Method::Post, http::Method::Delete]
        );
        assert_eq!(c.select.hosts, vec!["example.com", "api.example.com:8443"]);
        assert_eq!(c.select.path_prefixes, vec!["/api/", "/v2"]);
        assert_eq!(c.client.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(c.server.unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(c.family, Some(addr::FAMILY_IPV4));
        assert!(c.select.no_query && c.json);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.limits.count, Some(3));
        let c = http(&["-i", "x", "--host", "fd00::1,[fd00::2]:80,10.0.0.1:80"]).unwrap();
        assert_eq!(
            c.select.hosts,
            vec!["[fd00::1]", "[fd00::2]:80", "10.0.0.1:80"]
        );
        for m in http::Method::ALL {
            let c = http(&["-i", "x", "--method", &m.as_str().to_lowercase()]).unwrap();
            assert_eq!(c.select.methods, vec![m]);
        }
    }

    #[test]
    fn http_usage_errors() {
        for (args, why) in [
            (&["http"][..], "--interface"),
            (&["http", "-i", "x", "--method", "FETCH"], "FETCH"),
            (&["http", "-i", "x", "--host", ""], "not a host name"),
            (&["http", "-i", "x", "--host", "a b"], "not a host name"),
            (
                &["http", "-i", "x", "--path-prefix", "/a b"],
                "not a request target prefix",
            ),
            (&["http", "-i", "x", "--timeout", "0"], "more than 0"),
            (&["http", "-i", "x", "-P", "0"], "not a port"),
            (
                &["http", "-i", "x", "--src", "10.0.0.0/33"],
                "prefix length",
            ),
            (&["http", "-i", "x", "-4", "-6"], "cannot be used with"),
            (&["http", "-i", "x", "--proto", "tcp"], "--proto"),
            (&["http", "-i", "x", "--pcap", "f"], "--pcap"),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(why), "{args:?}: {e}");
        }
        for (args, why) in [
            (
                &["-i", "x", "-P", "1,2,3,4,5,6,7,8,9"][..],
                "at most 8 ports",
            ),
            (&["-i", "x", "-6", "--src", "10.0.0.1"], "IPv4 but"),
            (
                &["-i", "x", "--src", "fd00::1", "--dst", "10.0.0.1"],
                "IPv4 but",
            ),
        ] {
            let e = http(args).expect_err(&format!("{args:?} should fail"));
            assert!(e.contains(why), "{args:?}: {e}");
        }
    }

    #[test]
    fn packets_defaults() {
        let c = packets(&["-i", "eth0"]).unwrap();
        assert_eq!(c.interface, "eth0");
        assert_eq!(c.direction, packets::Direction::Ingress);
        assert_eq!(c.xdp_mode, XdpMode::Auto);
        assert_eq!((c.sample, c.snaplen, c.family), (1, 0, None));
        assert_eq!(c.ringbuf_size, 4 << 20);
        assert!(c.ports.is_empty() && c.pcap.is_none() && !c.json);
    }

    #[test]
    fn packets_full_options() {
        let c = packets(&[
            "-i",
            "veth0",
            "--direction",
            "both",
            "--xdp-mode",
            "generic",
            "--proto",
            "udp",
            "-P",
            "53,5353",
            "-P",
            "123",
            "--src",
            "10.0.0.0/8",
            "--dst",
            "192.0.2.1",
            "--sample",
            "10",
            "--pcap",
            "/tmp/x.pcap",
            "--snaplen",
            "96",
            "--json",
            "--duration",
            "2.5",
            "--count",
            "7",
            "--ringbuf-size",
            "64K",
        ])
        .unwrap();
        assert_eq!(c.ports, vec![53, 5353, 123]);
        assert_eq!(c.family, Some(addr::FAMILY_IPV4));
        assert_eq!((c.sample, c.snaplen), (10, 96));
        assert_eq!(c.limits.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.limits.count, Some(7));
        assert_eq!(c.ringbuf_size, 65536);
        assert!(c.json);
        // --pcap alone captures the most bytes
        let c = packets(&["-i", "lo", "--pcap", "f"]).unwrap();
        assert_eq!(c.snaplen, packets::MAX_SNAPLEN);
        assert_eq!(c.ringbuf_size, 8 << 20, "captures get a larger ring buffer");
    }

    #[test]
    fn packets_usage_errors() {
        for (args, why) in [
            (&["packets"][..], "--interface"),
            (
                &["packets", "-i", "x", "--src", "10.0.0.0/40"],
                "prefix length",
            ),
            (&["packets", "-i", "x", "-P", "0"], "not a port"),
            (&["packets", "-i", "x", "-P", "http"], "not a port"),
            (&["packets", "-i", "x", "-4", "-6"], "cannot be used with"),
            (&["packets", "-i", "x", "--snaplen", "64"], "--pcap"),
            (
                &["packets", "-i", "x", "--pcap", "f", "--snaplen", "5000"],
                "5000",
            ),
            (&["packets", "-i", "x", "--sample", "0"], "0"),
            (&["packets", "-i", "x", "--proto", "sctp"], "sctp"),
            (&["packets", "-i", "x", "--xdp-mode", "hw"], "hw"),
            (&["packets", "-i", "x", "--duration", "0"], "more than 0"),
            (
                &["packets", "-i", "x", "--duration", "abc"],
                "number of seconds",
            ),
            (
                &["packets", "-i", "x", "--ringbuf-size", "5000"],
                "power of two",
            ),
            (
                &["packets", "-i", "x", "--ringbuf-size", "2G"],
                "power of two",
            ),
            (&["packets", "-i", "x", "--count", "0"], "0"),
            (&["frobnicate"], "frobnicate"),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(why), "{args:?}: {e}");
        }
    }

    #[test]
    fn packets_semantic_conflicts() {
        for (args, why) in [
            (
                &["-i", "x", "-P", "1,2,3,4,5,6,7,8,9"][..],
                "at most 8 ports",
            ),
            (
                &["-i", "x", "--proto", "icmp", "-P", "80"],
                "ICMP has no ports",
            ),
            (&["-i", "x", "-4", "--src", "fd00::/8"], "IPv6 but"),
            (&["-i", "x", "-6", "--dst", "10.0.0.1"], "IPv4 but"),
            (
                &["-i", "x", "--src", "10.0.0.1", "--dst", "::1"],
                "IPv6 but",
            ),
        ] {
            let e = packets(args).expect_err(&format!("{args:?} should fail"));
            assert!(e.contains(why), "{args:?}: {e}");
        }
        assert_eq!(
            packets(&["-i", "x", "-6", "--src", "fd00::/8"])
                .unwrap()
                .family,
            Some(addr::FAMILY_IPV6)
        );
    }

    fn sendlat(args: &[&str]) -> Result<sendlat::Config, String> {
        let mut all = vec!["sendlat"];
        all.extend_from_slice(args);
        match parse(&all).map_err(|e| e.to_string())?.command {
            Command::Sendlat(a) => a.into_config(),
            _ => Err("not sendlat".into()),
        }
    }

    #[test]
    fn sendlat_options() {
        let c = sendlat(&[]).unwrap();
        assert_eq!((c.hist, c.min_us, c.family), (None, 0, None));
        assert_eq!(c.attach, tracing::AttachArg::Auto);
        let c = sendlat(&[
            "--hist",
            "--per",
            "comm",
            "--interval",
            "5",
            "--min-us",
            "1000",
            "-P",
            "80,443",
            "-6",
            "-p",
            "12",
            "--comm",
            "nginx",
            "--attach",
            "kprobe",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            c.hist,
            Some(sendlat::HistConfig {
                per: Some(sendlat::Per::Comm),
                interval: Some(Duration::from_secs(5)),
            })
        );
        assert_eq!((c.min_us, c.family), (1000, Some(addr::FAMILY_IPV6)));
        assert_eq!(c.ports, vec![80, 443]);
        assert_eq!(
            (c.proc.pid, c.proc.comm.as_deref()),
            (Some(12), Some("nginx"))
        );
        assert_eq!(c.attach, tracing::AttachArg::Kprobe);
        assert!(c.json);
        // --count is fine for per-call lines
        assert_eq!(sendlat(&["--count", "3"]).unwrap().limits.count, Some(3));
    }

    #[test]
    fn sendlat_usage_errors() {
        for (args, why) in [
            (&["sendlat", "--interval", "1"][..], "--hist"),
            (&["sendlat", "--per", "pid"], "--hist"),
            (&["sendlat", "--hist", "--per", "cgroup"], "cgroup"),
            (&["sendlat", "--hist", "--interval", "0"], "0"),
            (&["sendlat", "--hist", "--interval", "0.5"], "0.5"),
            (&["sendlat", "--min-us", "-1"], "-1"),
            (&["sendlat", "--min-us", "3600000001"], "3600000001"),
            (&["sendlat", "-4", "-6"], "cannot be used with"),
            (&["sendlat", "-P", "0"], "not a port"),
            (&["sendlat", "-p", "0"], "0"),
            (&["sendlat", "--attach", "uprobe"], "uprobe"),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} should fail"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains(why), "{args:?}: {e}");
        }
        for (args, why) in [
            (&["--hist", "--count", "5"][..], "--duration"),
            (&["-P", "1,2,3,4,5,6,7,8,9"], "at most 8 ports"),
        ] {
            let e = sendlat(args).expect_err(&format!("{args:?} should fail"));
            assert!(e.contains(why), "{args:?}: {e}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_ringbuf_size("4096"), Ok(4096));
        assert_eq!(parse_ringbuf_size("1G"), Ok(1 << 30));
        assert_eq!(parse_ringbuf_size("8m"), Ok(8 << 20));
        for bad in ["2048", "3M", "", "M", "-4K", "99999999999999999999K"] {
            assert!(parse_ringbuf_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        for bad in ["-1", "nan", "inf", "", "1e20"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
