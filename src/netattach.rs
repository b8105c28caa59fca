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
    /// native if the driver has it (but generic on veth), generic otherwise
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
    /// Why auto chose generic on a driver that has native XDP
    veth: bool,
}

impl XdpLink {
    /// The mode, as the "Tracing ..." line says it.
    pub fn describe(&self) -> &'static str {
        match (self.mode, self.veth) {
            (XdpMode::Native, _) => "native",
            (_, true) => {
                "generic, as on every veth: native would turn off its peer's segmentation offload"
            }
            _ => "generic",
        }
    }
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

/// The driver of an interface (ethtool's "driver" field), e.g. "veth".
pub fn driver_name(ifname: &str) -> Option<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    // struct ethtool_drvinfo: cmd, then driver[32], and more we do not read.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    // SAFETY: ifreq is plain data; all zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return None;
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = info.as_mut_ptr().cast();
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just returned by socket(2) and is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifr points at `info`, which outlives the call and has the
    // size ETHTOOL_GDRVINFO writes.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut ifr) };
    if ret != 0 {
        return None;
    }
    Some(crate::sys::text_until_nul(&info[4..36]))
}

/// Drivers on which `--xdp-mode auto` uses generic XDP: native XDP on a veth
/// end makes the kernel turn off segmentation offload for its peer, which
/// costs the host far more than tracing in the generic path does.
fn auto_prefers_generic(driver: Option<&str>) -> bool {
    driver == Some("veth")
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
    let veth = mode == XdpMode::Auto && auto_prefers_generic(driver_name(ifname).as_deref());
    let mode = if veth { XdpMode::Generic } else { mode };
    let fd = prog.as_fd().as_raw_fd();
    let try_mode = |m: XdpMode| -> io::Result<XdpLink> {
        let flags = match m {
            XdpMode::Native => sys::XDP_FLAGS_DRV_MODE,
            _ => sys::XDP_FLAGS_SKB_MODE,
        };
        xdp_link_create(fd, ifindex, flags).map(|fd| XdpLink {
            _fd: fd,
            mode: m,
            veth,
        })
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
    let mut ret = unsafe { sys::bpf_tc_attach(&hook, &mut opts) };
    if ret == -libc::EEXIST {
        if let Some(id) = stale_filter(&hook, &prog.name().to_string_lossy()) {
            // A wirescope killed with SIGKILL left this filter: nothing runs
            // it any more, so take its place.
            eprintln!(
                "wirescope: replacing the TC filter (program id {id}) that an earlier wirescope \
                 left on {ifname} egress"
            );
            opts.flags = sys::BPF_TC_F_REPLACE;
            opts.prog_id = 0;
            // SAFETY: hook and opts are valid for the call.
            ret = unsafe { sys::bpf_tc_attach(&hook, &mut opts) };
        }
    }
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

/// The id of the program in our filter slot if it is one of ours (same
/// program name) that no process holds any more: left by a killed wirescope.
fn stale_filter(hook: &sys::bpf_tc_hook, our_name: &str) -> Option<u32> {
    let mut q = sys::bpf_tc_opts {
        sz: size_of::<sys::bpf_tc_opts>() as _,
        handle: TC_HANDLE,
        priority: TC_PRIORITY,
        ..Default::default()
    };
    // SAFETY: hook and q are valid for the call.
    if unsafe { sys::bpf_tc_query(hook, &mut q) } != 0 || q.prog_id == 0 {
        return None;
    }
    // SAFETY: plain syscall wrapper; the fd is owned right away.
    let fd = unsafe { sys::bpf_prog_get_fd_by_id(q.prog_id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new program fd that we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = sys::bpf_prog_info::default();
    let mut len = size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: info is a valid, writable bpf_prog_info of `len` bytes.
    if unsafe { sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) } != 0 {
        return None;
    }
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if name != our_name.as_bytes() || prog_held_by_a_process(q.prog_id) {
        return None;
    }
    Some(q.prog_id)
}

/// Does any process (other than this one) hold a file descriptor of this program?
fn prog_held_by_a_process(id: u32) -> bool {
    let me = std::process::id().to_string();
    let needle = format!("prog_id:\t{id}\n");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for p in procs.flatten() {
        let pid = p.file_name();
        if pid.to_string_lossy() == me || !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_to_string(fd.path()).is_ok_and(|t| t.contains(&needle)) {
                return true;
            }
        }
    }
    false
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
