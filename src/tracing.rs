//! What the function-tracing commands (conn, sendlat) share: choosing an
//! attach method by a real trial, and the process filters.
//!
//! Each tracing object carries every method's programs, named by prefix:
//! `fe_` (fentry/fexit), `kp_` (kprobe/kretprobe), `tp_` (tracepoints only),
//! and `all_` for programs every method uses. Exactly one method's programs
//! are loaded.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachArg {
    /// the first that works: fentry, then kprobe, then tracepoint
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Fentry => "fentry",
            Method::Kprobe => "kprobe",
            Method::Tracepoint => "tracepoint",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Method::Fentry => "fe_",
            Method::Kprobe => "kp_",
            Method::Tracepoint => "tp_",
        }
    }
}

/// The methods to try, best first.
pub fn candidates(arg: AttachArg) -> &'static [Method] {
    match arg {
        AttachArg::Auto => &[Method::Fentry, Method::Kprobe, Method::Tracepoint],
        AttachArg::Fentry => &[Method::Fentry],
        AttachArg::Kprobe => &[Method::Kprobe],
        AttachArg::Tracepoint => &[Method::Tracepoint],
    }
}

/// Flavours of the tracepoint programs every method uses: (name, program
/// name prefix).
const TP_BTF: (&str, &str) = ("tp_btf", "lbtf_");
const TP_CLASSIC: (&str, &str) = ("tracepoint", "ltp_");

/// Which flavour to try first. The kernel skips a tracing program's run when
/// it would nest (a softirq interrupting it on the same CPU). Classic
/// tracepoints share that guard with every kprobe and tracepoint program, and
/// Linux counts their skipped runs only from 6.7; BTF tracepoints have no
/// guard on 5.10 and a per-program, counted one later. Measured with 10,000
/// connections: on 5.10 tp_btf lost nothing; on 6.1 tp_btf's skips were all
/// counted while classic tracepoints lost closes uncounted; on 6.18 tp_btf
/// lost a close with no skip counted in about 1 run in 4, classic
/// tracepoints in 1 run of 26. So: tp_btf before 6.7, classic from 6.7 on;
/// the other as fallback.
pub fn tp_flavours() -> [(&'static str, &'static str); 2] {
    if kernel_at_least(&crate::sys::kernel_release(), 6, 7) {
        [TP_CLASSIC, TP_BTF]
    } else {
        [TP_BTF, TP_CLASSIC]
    }
}

/// Whether a release string like "6.1.0-27-amd64" is at least major.minor.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// Load only the programs of `method`, those whose names start with one of
/// `also`, and none named in `skip`.
pub fn enable_method(obj: &mut OpenObject, method: Method, also: &[&str], skip: &[&str]) {
    for mut prog in obj.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let on = (name.starts_with(method.prefix()) || also.iter().any(|p| name.starts_with(p)))
            && !skip.contains(&name.as_str());
        prog.set_autoload(on);
    }
}

/// File descriptors of the loaded programs of an object (for their statistics).
pub fn program_fds(obj: &libbpf_rs::Object) -> Vec<i32> {
    use std::os::fd::AsFd;
    obj.progs()
        .map(|p| p.as_fd().as_raw_fd())
        .filter(|&fd| fd >= 0)
        .collect()
}

/// The error when no method could attach: each method's reason, and the fix.
pub fn no_method(tried: Vec<(Method, anyhow::Error)>) -> anyhow::Error {
    let forced = tried.len() == 1;
    let reasons: Vec<String> = tried
        .iter()
        .map(|(m, e)| format!("{}: {e:#}", m.name()))
        .collect();
    if forced {
        anyhow::anyhow!(
            "cannot attach with {} (try --attach auto)",
            reasons.join("")
        )
    } else {
        anyhow::anyhow!(
            "no attach method works on this kernel ({}); see `wirescope probe`",
            reasons.join("; ")
        )
    }
}

/// Number of parameters of a kernel function, from the kernel's BTF
/// (parsed once per name: the kernel's BTF is megabytes).
pub fn kernel_func_params(name: &str) -> Option<usize> {
    use libbpf_rs::btf::types::{Func, FuncProto};
    use libbpf_rs::ReferencesType;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Option<usize>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(name).copied()) {
        return v;
    }
    let count = (|| {
        let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
        let func: Func<'_> = btf.type_by_name(name)?;
        let proto: FuncProto<'_> = btf.type_by_id(func.referenced_type_id())?;
        Some(proto.len())
    })();
    if let Ok(mut c) = cache.lock() {
        c.insert(name.to_string(), count);
    }
    count
}

/// A cheap first check that the method's program family loads and attaches
/// here at all (one tiny program), so a family the kernel refuses costs
/// milliseconds instead of a full load of the command's programs. The full
/// load and attach still decide.
pub fn family_check(method: Method) -> Result<()> {
    match method {
        Method::Fentry => crate::probe::try_tracing("probe_fentry"),
        Method::Kprobe => crate::probe::try_tracing("probe_kprobe"),
        Method::Tracepoint => Ok(()),
    }
}

/// Whether the kernel has the tracepoint `name` (from its BTF: every
/// tracepoint has a `btf_trace_<name>` type there, tracefs mounted or not).
pub fn kernel_has_tracepoint(name: &str) -> bool {
    use libbpf_rs::btf::types::Typedef;
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return false;
    };
    let found: Option<Typedef<'_>> = btf.type_by_name(&format!("btf_trace_{name}"));
    found.is_some()
}

/// The `events` directory of a mounted tracefs, where classic tracepoints
/// are found (libbpf looks in the same two places).
pub fn tracefs_events() -> Option<PathBuf> {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_dir())
}

/// -p/--pid, --comm, --cgroup as the user gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcFilter {
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup: Option<PathBuf>,
}

/// Kernel task names are 15 bytes and a NUL.
pub const COMM_MAX: usize = 15;

impl ProcFilter {
    /// `comm` as the kernel compares it: at most 15 bytes, NUL-padded.
    pub fn comm_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(c) = &self.comm {
            let b = c.as_bytes();
            let n = b.len().min(COMM_MAX);
            out[..n].copy_from_slice(&b[..n]);
        }
        out
    }

    /// Open the --cgroup directory (cgroup v2) for the filter map.
    pub fn open_cgroup(&self) -> Result<Option<OwnedFd>> {
        let Some(path) = &self.cgroup else {
            return Ok(None);
        };
        Ok(Some(open_cgroup2_dir(path)?))
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn open_cgroup2_dir(path: &Path) -> Result<OwnedFd> {
    let file =
        File::open(path).with_context(|| format!("--cgroup {}: cannot open it", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_dir() {
        bail!("--cgroup {}: not a directory", path.display());
    }
    let fs =
        nix::sys::statfs::fstatfs(&file).with_context(|| format!("--cgroup {}", path.display()))?;
    if fs.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
        bail!(
            "--cgroup {}: not a cgroup v2 directory (e.g. /sys/fs/cgroup/system.slice/foo.service)",
            path.display()
        );
    }
    Ok(OwnedFd::from(file))
}

/// Put the --cgroup directory into slot 0 of a program's `cgroup_filter` map.
pub fn set_cgroup_filter(map: &dyn MapCore, fd: &OwnedFd) -> Result<()> {
    let key = 0u32.to_ne_bytes();
    let value = (fd.as_raw_fd() as u32).to_ne_bytes();
    map.update(&key, &value, MapFlags::ANY)
        .context("setting the --cgroup filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_cut_like_the_kernel_does() {
        let f = ProcFilter {
            comm: Some("systemd-resolved".into()),
            ..Default::default()
        };
        assert_eq!(&f.comm_bytes()[..16], b"systemd-resolve\0");
        let f = ProcFilter {
            comm: Some("nginx".into()),
            ..Default::default()
        };
        assert_eq!(&f.comm_bytes()[..6], b"nginx\0");
    }

    #[test]
    fn kernel_versions_compare() {
        assert!(kernel_at_least("6.18.44-fc-v595", 6, 7));
        assert!(kernel_at_least("6.7.0", 6, 7));
        assert!(!kernel_at_least("6.1.0-27-amd64", 6, 7));
        assert!(!kernel_at_least("5.10.0-46-amd64", 6, 7));
        assert!(kernel_at_least("7.0.1", 6, 7));
        assert!(!kernel_at_least("garbage", 6, 7));
    }

    #[test]
    fn method_order() {
        assert_eq!(
            candidates(AttachArg::Auto),
            &[Method::Fentry, Method::Kprobe, Method::Tracepoint]
        );
        assert_eq!(candidates(AttachArg::Kprobe), &[Method::Kprobe]);
        let e = no_method(vec![(Method::Fentry, anyhow::anyhow!("EPERM"))]).to_string();
        assert!(e.contains("cannot attach with fentry: EPERM"), "{e}");
    }

    #[test]
    fn cgroup_must_be_a_cgroup2_dir() {
        let f = ProcFilter {
            cgroup: Some("/nonexistent/cg".into()),
            ..Default::default()
        };
        assert!(f
            .open_cgroup()
            .unwrap_err()
            .to_string()
            .contains("cannot open"));
        let f = ProcFilter {
            cgroup: Some("/proc".into()),
            ..Default::default()
        };
        assert!(f
            .open_cgroup()
            .unwrap_err()
            .to_string()
            .contains("not a cgroup v2"));
    }
}
