//! What the process may do and what the host has: capabilities, interfaces,
//! clocks, kernel release. Everything here returns errors that tell the user
//! what to do next.

use std::fs;

use anyhow::{bail, Context, Result};

/// Capability numbers from linux/capability.h.
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

fn cap_name(cap: u32) -> &'static str {
    match cap {
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        CAP_SYS_ADMIN => "CAP_SYS_ADMIN",
        CAP_PERFMON => "CAP_PERFMON",
        CAP_BPF => "CAP_BPF",
        _ => "an unknown capability",
    }
}

/// Parse the `CapEff:` line of /proc/self/status.
fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Which of `needed` are missing from `eff`. CAP_SYS_ADMIN stands in for
/// CAP_BPF and CAP_PERFMON (kernels before 5.8 know only it).
fn missing_caps(eff: u64, needed: &[u32]) -> Vec<u32> {
    let has = |c: u32| eff & (1u64 << c) != 0;
    needed
        .iter()
        .copied()
        .filter(|&c| !(has(c) || matches!(c, CAP_BPF | CAP_PERFMON) && has(CAP_SYS_ADMIN)))
        .collect()
}

/// Fail with a message naming the missing capabilities and the fix.
pub fn require_caps(needed: &[u32]) -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let eff = parse_cap_eff(&status).context("no CapEff line in /proc/self/status")?;
    let missing = missing_caps(eff, needed);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|&c| cap_name(c)).collect();
    let all: Vec<String> = needed
        .iter()
        .map(|&c| cap_name(c).trim_start_matches("CAP_").to_lowercase())
        .collect();
    bail!(
        "permission denied: missing {}. Run as root (sudo wirescope ...), or grant the \
         capabilities once: sudo setcap {}+ep \"$(command -v wirescope)\"",
        names.join(", "),
        all.join(",")
    )
}

/// The interface index of `name` in this network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        bail!("invalid interface name {name:?}");
    }
    nix::net::if_::if_nametoindex(name).map_err(|_| {
        anyhow::anyhow!("no such interface: {name} (see `ip link` for the interfaces here)")
    })
}

/// Offset to add to a CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) to get
/// nanoseconds since the Unix epoch.
pub fn monotonic_to_realtime_ns() -> i128 {
    use nix::time::{clock_gettime, ClockId};
    let ns = |id| {
        clock_gettime(id)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0)
    };
    // Read realtime between two monotonic reads and use their midpoint.
    let m1 = ns(ClockId::CLOCK_MONOTONIC);
    let r = ns(ClockId::CLOCK_REALTIME);
    let m2 = ns(ClockId::CLOCK_MONOTONIC);
    r - (m1 + m2) / 2
}

/// Kernel release, e.g. "6.1.0-27-amd64".
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// CO-RE programs need the running kernel's BTF.
pub fn require_btf() -> Result<()> {
    if std::path::Path::new(KERNEL_BTF).exists() {
        Ok(())
    } else {
        bail!(
            "this kernel exposes no BTF ({KERNEL_BTF} is missing): wirescope needs a kernel \
             built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels since \
             2020 have it)"
        )
    }
}

/// libbpf's messages (a verifier log when a load fails) normally go to
/// stderr; while an attach method is only being tried they are kept instead,
/// and shown only if that attempt is the one the user depends on.
static LIBBPF_CAPTURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The print callback for libbpf (warnings and errors).
pub fn libbpf_print(level: libbpf_rs::PrintLevel, msg: String) {
    if level != libbpf_rs::PrintLevel::Warn {
        return;
    }
    if let Ok(mut cap) = LIBBPF_CAPTURE.lock() {
        if let Some(buf) = cap.as_mut() {
            buf.push_str(&msg);
            return;
        }
    }
    eprint!("{msg}");
}

/// Run `f` with libbpf's messages kept; returns them with f's result.
/// Nests: an outer capture still receives what an inner one kept.
pub fn capture_libbpf<T>(f: impl FnOnce() -> T) -> (T, String) {
    let outer = LIBBPF_CAPTURE
        .lock()
        .ok()
        .and_then(|mut cap| cap.replace(String::new()));
    let r = f();
    let log = LIBBPF_CAPTURE
        .lock()
        .ok()
        .and_then(|mut cap| {
            let log = cap.take();
            *cap = outer.map(|o| o + log.as_deref().unwrap_or(""));
            log
        })
        .unwrap_or_default();
    (r, log)
}

/// A kernel string field (comm, an ethtool driver name): the bytes up to the
/// first NUL, as lossy UTF-8.
pub fn text_until_nul(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_read_from_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn missing_caps_are_named() {
        let needed = [CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN];
        assert_eq!(missing_caps(0, &needed), needed.to_vec());
        assert!(missing_caps(u64::MAX, &needed).is_empty());
        // CAP_SYS_ADMIN covers BPF and PERFMON, not NET_ADMIN
        assert_eq!(
            missing_caps(1 << CAP_SYS_ADMIN, &needed),
            vec![CAP_NET_ADMIN]
        );
        let only_bpf = 1 << CAP_BPF | 1 << CAP_NET_ADMIN;
        assert_eq!(missing_caps(only_bpf, &needed), vec![CAP_PERFMON]);
    }

    #[test]
    fn bad_interface_names_are_rejected() {
        assert!(ifindex("").is_err());
        assert!(ifindex("a/b").is_err());
        assert!(ifindex("waytoolonginterfacename").is_err());
        let e = ifindex("ws-nosuch0").unwrap_err().to_string();
        assert!(e.contains("no such interface: ws-nosuch0"), "{e}");
    }
}
