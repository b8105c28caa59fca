//! `wirescope probe`: what this kernel really allows (each attach family is
//! tried with a tiny program, loaded and attached, then removed), and which
//! method each command will use here.

use std::io::{self, Write};
use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;
use serde::Serialize;

use crate::netattach::{self, XdpMode};
use crate::output;
use crate::sys;
use crate::tracing::{AttachArg, Method};
use crate::{conn, netlink, sendlat};

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}
use skel::{ProbeSkel, ProbeSkelBuilder};

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub ok: bool,
    /// Why not, when not
    pub error: Option<String>,
}

impl Check {
    fn from(r: Result<()>) -> Check {
        match r {
            Ok(()) => Check {
                ok: true,
                error: None,
            },
            Err(e) => Check {
                ok: false,
                error: Some(format!("{e:#}")),
            },
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Features {
    pub ringbuf: Check,
    pub fentry: Check,
    pub kprobe: Check,
    pub tracepoint: Check,
    pub tp_btf: Check,
    pub xdp_native: Check,
    pub xdp_generic: Check,
    pub tcx: Check,
    pub clsact: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The method the command will use, null when none works
    pub method: Option<String>,
    /// Why the better methods cannot be used (sendlat: every method that
    /// cannot, worse ones included)
    pub unavailable: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    pub kernel: String,
    /// Path of the kernel BTF, null when the kernel has none
    pub btf: Option<&'static str>,
    pub features: Features,
    /// Where the XDP/TC trials ran
    pub interface: String,
    pub commands: Commands,
}

#[derive(Clone, Debug, Serialize)]
pub struct Commands {
    pub packets: Plan,
    /// http attaches like packets, both directions
    pub http: Plan,
    pub conn: Plan,
    pub sendlat: Plan,
}

fn open_probe<'obj>(
    storage: &'obj mut MaybeUninit<OpenObject>,
    only: &[&str],
) -> Result<ProbeSkel<'obj>> {
    let mut open = ProbeSkelBuilder::default()
        .open(storage)
        .context("opening the probe programs")?;
    for mut p in open.open_object_mut().progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        p.set_autoload(only.contains(&name.as_str()));
    }
    open.load().context("load")
}

/// Load one tracing program and attach it where its section says.
pub fn try_tracing(prog: &str) -> Result<()> {
    let (r, _log) = sys::capture_libbpf(|| -> Result<()> {
        let mut storage = MaybeUninit::uninit();
        let skel = open_probe(&mut storage, &[prog])?;
        let p = skel
            .object()
            .progs_mut()
            .find(|p| p.name() == prog)
            .context("program missing")?;
        let _link = p.attach().context("attach")?;
        Ok(())
    });
    r
}

fn try_ringbuf() -> Result<()> {
    // SAFETY: plain syscall wrapper creating a map we close right away.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_RINGBUF,
            std::ptr::null(),
            0,
            0,
            4096,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd)).context("creating a ring buffer map");
    }
    // SAFETY: fd is ours to close.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

struct NetChecks {
    interface: String,
    xdp_native: Check,
    xdp_generic: Check,
    tcx: Check,
    clsact: Check,
}

/// XDP and TC trials on `ifname` in the current network namespace.
fn net_checks(ifname: &str) -> Result<NetChecks> {
    let ifindex = sys::ifindex(ifname)?;
    let (r, _log) = sys::capture_libbpf(|| -> Result<NetChecks> {
        let mut storage = MaybeUninit::uninit();
        let skel = open_probe(&mut storage, &["probe_xdp", "probe_tc"])?;
        let xdp = |mode| {
            netattach::attach_xdp(&skel.progs.probe_xdp, ifindex, ifname, mode).and_then(|l| {
                if l.mode == mode {
                    Ok(())
                } else {
                    anyhow::bail!("attached in another mode")
                }
            })
        };
        let xdp_native = Check::from(xdp(XdpMode::Native));
        let xdp_generic = Check::from(xdp(XdpMode::Generic));
        let tcx = Check::from(
            netattach::attach_tcx_egress(&skel.progs.probe_tc, ifindex)
                .map(drop)
                .context("tcx link"),
        );
        let clsact = Check::from(
            netattach::attach_clsact_egress(&skel.progs.probe_tc, ifindex, ifname).map(drop),
        );
        Ok(NetChecks {
            interface: ifname.to_string(),
            xdp_native,
            xdp_generic,
            tcx,
            clsact,
        })
    });
    r
}

/// The same trials on a veth pair in a private network namespace that
/// vanishes when the thread ends: nothing on the host is touched.
fn net_checks_private() -> Result<NetChecks> {
    std::thread::spawn(|| -> Result<NetChecks> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("making a private network namespace")?;
        netlink::make_veth_up("wsprobe0", "wsprobe1").context("making a veth pair")?;
        let mut c = net_checks("wsprobe0")?;
        c.interface = "veth (temporary, private namespace)".into();
        Ok(c)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the network trial thread failed"))?
}

fn method_plan(r: (Option<Method>, Vec<(Method, String)>)) -> Plan {
    Plan {
        method: r.0.map(|m| m.name().to_string()),
        unavailable: r
            .1
            .iter()
            .map(|(m, e)| format!("{}: {e}", m.name()))
            .collect(),
    }
}

pub fn report(interface: Option<&str>) -> Result<Report> {
    sys::require_caps(&[sys::CAP_BPF, sys::CAP_PERFMON, sys::CAP_NET_ADMIN])?;
    let btf = std::path::Path::new(sys::KERNEL_BTF)
        .exists()
        .then_some(sys::KERNEL_BTF);
    let net = match interface {
        Some(i) => net_checks(i)?,
        None => net_checks_private()?,
    };
    let packets = Plan {
        method: match (
            &net.xdp_native.ok,
            &net.xdp_generic.ok,
            &net.tcx.ok,
            &net.clsact.ok,
        ) {
            (_, false, _, _) => None,
            (native, true, tcx, clsact) => Some(format!(
                "xdp-{}+{}",
                if *native {
                    "native(generic-on-veth)"
                } else {
                    "generic"
                },
                if *tcx {
                    "tcx"
                } else if *clsact {
                    "clsact"
                } else {
                    "no-egress"
                }
            )),
        },
        unavailable: [("xdp native", &net.xdp_native), ("tcx", &net.tcx)]
            .iter()
            .filter_map(|(n, c)| c.error.as_ref().map(|e| format!("{n}: {e}")))
            .collect(),
    };
    let no_btf = || Plan {
        method: None,
        unavailable: vec!["no kernel BTF".into()],
    };
    let conn = if btf.is_some() {
        method_plan(conn::trial(AttachArg::Auto))
    } else {
        no_btf()
    };
    let sendlat = if btf.is_some() {
        method_plan(sendlat::trial())
    } else {
        no_btf()
    };
    Ok(Report {
        kind: "probe",
        time: output::rfc3339_us(output::Clock::new().now_ns()),
        kernel: sys::kernel_release(),
        btf,
        features: Features {
            ringbuf: Check::from(try_ringbuf()),
            fentry: Check::from(try_tracing("probe_fentry")),
            kprobe: Check::from(try_tracing("probe_kprobe")),
            tracepoint: Check::from(try_tracing("probe_tracepoint")),
            tp_btf: Check::from(try_tracing("probe_tp_btf")),
            xdp_native: net.xdp_native,
            xdp_generic: net.xdp_generic,
            tcx: net.tcx,
            clsact: net.clsact,
        },
        interface: net.interface,
        commands: Commands {
            http: packets.clone(),
            packets,
            conn,
            sendlat,
        },
    })
}

fn write_table(r: &Report, w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{:<13} {}", "kernel", r.kernel)?;
    writeln!(
        w,
        "{:<13} {}",
        "btf",
        r.btf.unwrap_or("none (CO-RE commands cannot run)")
    )?;
    writeln!(w, "{:<13} {}", "trials on", r.interface)?;
    writeln!(w)?;
    let f = &r.features;
    for (name, c) in [
        ("ring buffer", &f.ringbuf),
        ("fentry", &f.fentry),
        ("kprobe", &f.kprobe),
        ("tracepoint", &f.tracepoint),
        ("tp_btf", &f.tp_btf),
        ("xdp native", &f.xdp_native),
        ("xdp generic", &f.xdp_generic),
        ("tcx", &f.tcx),
        ("clsact", &f.clsact),
    ] {
        match &c.error {
            None => writeln!(w, "{name:<13} yes")?,
            Some(e) => writeln!(w, "{name:<13} no   {e}")?,
        }
    }
    writeln!(w)?;
    writeln!(
        w,
        "{:<9} {:<32} WHY NOT THE BETTER ONES",
        "COMMAND", "WILL USE"
    )?;
    for (name, p) in [
        ("packets", &r.commands.packets),
        ("http", &r.commands.http),
        ("conn", &r.commands.conn),
        ("sendlat", &r.commands.sendlat),
    ] {
        writeln!(
            w,
            "{name:<9} {:<32} {}",
            p.method.as_deref().unwrap_or("nothing works"),
            if p.unavailable.is_empty() {
                "-".to_string()
            } else {
                p.unavailable.join("; ")
            }
        )?;
    }
    Ok(())
}

pub fn run(json: bool, interface: Option<&str>) -> Result<()> {
    let r = report(interface)?;
    let mut out = io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut out, &r)
            .map_err(io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
    } else {
        write_table(&r, &mut out)
    };
    match written.and_then(|_| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
