//! Attaching packet programs to an interface, always in a way that cannot be
//! left behind: XDP through a bpf_link (kernel >= 5.9), TC egress through a tcx
//! link (kernel >= 6.6) or else a clsact filter that Drop removes again.
//! Nothing that another tool attached is ever replaced.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use libbpf_rs::ProgramMut;
use libbpf_sys as sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    /// native if the driver has it, generic otherwise
    Auto,
    /// in the driver (fast; not every driver has it)
    Native,
    /// in the kernel's generic path (every interface)
    Generic,
}

/// An XDP program attached through a bpf_link: closing the fd (also by a
/// killed process) detaches it.
pub struct XdpLink {
    _fd: OwnedFd,
    pub mode: XdpMode,
}

fn errno_of(ret: i32) -> io::Error {
    io::Error::from_raw_os_error(ret.saturating_abs())
}

/// The id of the XDP program on `ifindex` (0 = none) and its mode name.
fn xdp_attached(ifindex: u32) -> (u32, &'static str) {
    let mut opts = sys::bpf_xdp_query_opts {
        sz: size_of::<sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_xdp_query_opts that outlives the call.
    let ret = unsafe { sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret != 0 {
        return (0, "");
    }
    let mode = match u32::from(opts.attach_mode) {
        sys::XDP_ATTACHED_DRV => "native",
        sys::XDP_ATTACHED_SKB => "generic",
        sys::XDP_ATTACHED_HW => "offloaded",
        sys::XDP_ATTACHED_MULTI => "several modes",
        _ => "",
    };
    let id = [
        opts.prog_id,
        opts.drv_prog_id,
        opts.skb_prog_id,
        opts.hw_prog_id,
    ]
    .into_iter()
    .find(|&id| id != 0)
    .unwrap_or(0);
    (id, mode)
}

fn xdp_link_create(prog_fd: i32, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper; opts is valid for the call.
    let fd = unsafe { sys::bpf_link_create(prog_fd, ifindex as i32, sys::BPF_XDP, &opts) };
    if fd < 0 {
        return Err(errno_of(fd));
    }
    // SAFETY: bpf_link_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn refuse_existing(ifname: &str, id: u32, mode: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{ifname} already has an XDP program (id {id}{}); wirescope only observes and will not \
         replace it. See it with `bpftool net show dev {ifname}`",
        if mode.is_empty() {
            String::new()
        } else {
            format!(", {mode}")
        }
    )
}

pub fn attach_xdp(
    prog: &ProgramMut<'_>,
    ifindex: u32,
    ifname: &str,
    mode: XdpMode,
) -> Result<XdpLink> {
    let (id, current) = xdp_attached(ifindex);
    if id != 0 {
        return Err(refuse_existing(ifname, id, current));
    }
    let fd = prog.as_fd().as_raw_fd();
    let try_mode = |m: XdpMode| -> io::Result<XdpLink> {
        let flags = match m {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            _ => sys::XDP_FLAGS_SKB_MODE,
        };
        xdp_link_create(fd, ifindex, flags).map(|fd| XdpLink { _fd: fd, mode: m })
    };
    let busy = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST));
    let first = match mode {
        XdpMode::Auto | XdpMode::Native => XdpMode::Native,
        XdpMode::Generic => XdpMode::Generic,
    };
    match try_mode(first) {
        Ok(l) => Ok(l),
        Err(e) if busy(&e) => {
            let (id, current) = xdp_attached(ifindex);
            Err(refuse_existing(ifname, id, current))
        }
        Err(e) if mode == XdpMode::Auto => match try_mode(XdpMode::Generic) {
            Ok(l) => Ok(l),
            Err(e2) if busy(&e2) => {
                let (id, current) = xdp_attached(ifindex);
                Err(refuse_existing(ifname, id, current))
            }
            Err(e2) => bail!(
                "cannot attach XDP to {ifname}: native: {e}; generic: {e2}{}",
                link_hint(&e2)
            ),
        },
        Err(e) if mode == XdpMode::Native => bail!(
            "cannot attach native XDP to {ifname}: {e} (its driver may have no XDP support: \
             try --xdp-mode generic){}",
            link_hint(&e)
        ),
        Err(e) => bail!(
            "cannot attach generic XDP to {ifname}: {e}{}",
            link_hint(&e)
        ),
    }
}

fn link_hint(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EINVAL) {
        " (XDP links need Linux 5.9 or later)"
    } else {
        ""
    }
}

/// A TC egress program: tcx link, or a clsact filter (removed on drop).
pub enum TcLink {
    /// the link fd: closing it (also by a killed process) detaches
    Tcx(#[allow(dead_code)] OwnedFd),
    Clsact {
        hook: sys::bpf_tc_hook,
        opts: sys::bpf_tc_opts,
        created_qdisc: bool,
    },
}

impl TcLink {
    pub fn kind(&self) -> &'static str {
        match self {
            TcLink::Tcx(_) => "tcx",
            TcLink::Clsact { .. } => "clsact",
        }
    }
}

/// The handle and priority of our clsact filter ("WS"); a filter that another
/// tool put there makes attach fail rather than be replaced.
const TC_HANDLE: u32 = 0x5753;
const TC_PRIORITY: u32 = 1;

/// Attach a `SEC("tc")` program at egress, first in line, so it sees every
/// packet: a tcx link where the kernel has tcx (6.6+), else a clsact filter.
pub fn attach_tc_egress(prog: &ProgramMut<'_>, ifindex: u32, ifname: &str) -> Result<TcLink> {
    match attach_tcx_egress(prog, ifindex) {
        Ok(link) => Ok(link),
        // no tcx in this kernel (< 6.6): fall back to clsact
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT)
            ) =>
        {
            attach_clsact_egress(prog, ifindex, ifname)
        }
        Err(e) => bail!("cannot attach TC egress program to {ifname} (tcx): {e}"),
    }
}

/// A tcx egress link, first in the chain.
pub fn attach_tcx_egress(prog: &ProgramMut<'_>, ifindex: u32) -> io::Result<TcLink> {
    // libbpf's bpf_program__attach_tcx() takes the attach type from the program's
    // expected type, which a SEC("tc") program loadable on old kernels lacks;
    // the link is made directly instead. BPF_F_BEFORE with no relative program
    // means first; the tcx member of the options union stays zeroed.
    let opts = sys::bpf_link_create_opts {
        sz: size_of::<sys::bpf_link_create_opts>() as _,
        flags: sys::BPF_F_BEFORE,
        ..Default::default()
    };
    let prog_fd = prog.as_fd().as_raw_fd();
    // SAFETY: plain syscall wrapper; opts is valid for the call.
    let fd = unsafe { sys::bpf_link_create(prog_fd, ifindex as i32, sys::BPF_TCX_EGRESS, &opts) };
    if fd < 0 {
        return Err(errno_of(fd));
    }
    // SAFETY: bpf_link_create returned a new fd that nothing else owns.
    Ok(TcLink::Tcx(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// A clsact egress filter (removed again when the TcLink is dropped).
pub fn attach_clsact_egress(prog: &ProgramMut<'_>, ifindex: u32, ifname: &str) -> Result<TcLink> {
    let mut hook = sys::bpf_tc_hook {
        sz: size_of::<sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: sys::BPF_TC_EGRESS,
        ..Default::default()
    };
    // SAFETY: hook is a valid, sized bpf_tc_hook.
    let ret = unsafe { sys::bpf_tc_hook_create(&mut hook) };
    let created_qdisc = match ret {
        0 => true,
        r if r == -libc::EEXIST => false,
        r => bail!(
            "cannot add a clsact qdisc to {ifname}: {} (is the sch_ingress module available?)",
            errno_of(r)
        ),
    };
    let mut opts = sys::bpf_tc_opts {
        sz: size_of::<sys::bpf_tc_opts>() as _,
        prog_fd: prog.as_fd().as_raw_fd(),
        handle: TC_HANDLE,
        priority: TC_PRIORITY,
        ..Default::default()
    };
    // SAFETY: hook and opts are valid for the call.
    let ret = unsafe { sys::bpf_tc_attach(&hook, &mut opts) };
    if ret != 0 {
        let err = errno_of(ret);
        if created_qdisc {
            destroy_clsact(&mut hook);
        }
        if ret == -libc::EEXIST {
            bail!(
                "{ifname} egress already has a TC filter at priority {TC_PRIORITY} handle \
                 {TC_HANDLE:#x}; wirescope will not replace it (see `tc filter show dev {ifname} \
                 egress`)"
            );
        }
        bail!("cannot attach TC egress filter to {ifname}: {err}");
    }
    Ok(TcLink::Clsact {
        hook,
        opts,
        created_qdisc,
    })
}

fn destroy_clsact(hook: &mut sys::bpf_tc_hook) {
    let mut all = *hook;
    all.attach_point = sys::BPF_TC_INGRESS | sys::BPF_TC_EGRESS;
    // SAFETY: valid hook; destroying the qdisc we created ourselves.
    unsafe { sys::bpf_tc_hook_destroy(&mut all) };
}

impl Drop for TcLink {
    fn drop(&mut self) {
        if let TcLink::Clsact {
            hook,
            opts,
            created_qdisc,
        } = self
        {
            let detach = sys::bpf_tc_opts {
                sz: size_of::<sys::bpf_tc_opts>() as _,
                handle: opts.handle,
                priority: opts.priority,
                ..Default::default()
            };
            // SAFETY: valid hook and opts naming only our own filter.
            let ret = unsafe { sys::bpf_tc_detach(hook, &detach) };
            if ret != 0 {
                eprintln!(
                    "wirescope: could not remove the TC filter (ifindex {}): {}",
                    hook.ifindex,
                    errno_of(ret)
                );
            }
            if *created_qdisc {
                destroy_clsact(hook);
            }
        }
    }
}
