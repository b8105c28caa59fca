//! Shared pieces of the privileged integration tests: throwaway hosts (two
//! network namespaces joined by a veth pair), the real wirescope binary run in
//! one of them, traffic made from the test itself, and crafted frames.
//!
//! These tests need root and BPF. Without them they fail with the reason;
//! skip them by running only the unit tests (`cargo test --bins`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::Value;

/// How long to wait for anything the kernel or the binary should do promptly.
/// Generous: the same tests run in virtual machines under software emulation.
pub fn patience() -> Duration {
    let secs = std::env::var("WIRESCOPE_TEST_PATIENCE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// The binary under test: the one cargo built with these tests, or
/// WIRESCOPE_BIN (the kernel matrix runs copies, safe from rebuilds).
pub fn wirescope_bin() -> PathBuf {
    std::env::var_os("WIRESCOPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wirescope")))
}

/// Fail loudly, never pass, when the test cannot run here.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this privileged test needs root (euid is {euid}): run it as root, or run only the \
         unit tests with `cargo test --bins`"
    );
    assert!(
        std::path::Path::new("/sys/fs/bpf").exists()
            || std::path::Path::new("/sys/kernel/btf").exists(),
        "this privileged test needs a kernel with BPF"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.map(|o| o.status.success()).unwrap_or(false),
        "this privileged test needs iproute2's `ip` command"
    );
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace that is deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "ws-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Run `ip -n NS ...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Set a sysctl of this namespace (e.g. "net.ipv6.conf.all.forwarding").
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        self.run_in(move || {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"))
        });
    }

    /// Start `cmd ARGS` inside the namespace (stdout piped, stderr inherited).
    /// `ip netns exec` execs the command, so the child's pid is the command's.
    pub fn command(&self, cmd: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd} in {}: {e}", self.name))
    }

    /// Run `f` on a thread that has entered this namespace.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter_netns(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Start `f` on a thread inside the namespace and return its handle.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter_netns(&path);
            f()
        })
    }

    /// The interface index of `ifname` inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> u32 {
        let name = ifname.to_string();
        self.run_in(move || nix::net::if_::if_nametoindex(name.as_str()).expect("interface exists"))
    }
}

fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("entering {path}: {e}"));
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
pub const IF_A: &str = "wsa0";
pub const IF_B: &str = "wsb0";
pub const IP4_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const IP4_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const IP6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
pub const IP6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Two hosts, a and b, joined by a veth pair (wsa0 <-> wsb0).
pub struct Lab {
    pub a: Netns,
    pub b: Netns,
}

impl Lab {
    /// Both ends with IPv4 and IPv6 addresses (10.77.0.1/2, fd00:77::1/2),
    /// static neighbours (no ARP/ND on the wire) and no router solicitations.
    pub fn new() -> Lab {
        let lab = Lab::bare();
        for (ns, ifname, v4, v6, peer4, peer6, peer_mac) in [
            (&lab.a, IF_A, IP4_A, IP6_A, IP4_B, IP6_B, MAC_B),
            (&lab.b, IF_B, IP4_B, IP6_B, IP4_A, IP6_A, MAC_A),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
            ns.ip(&["link", "set", ifname, "up"]);
            let mac = mac_text(peer_mac);
            ns.ip(&[
                "neigh",
                "replace",
                &peer4.to_string(),
                "lladdr",
                &mac,
                "dev",
                ifname,
                "nud",
                "permanent",
            ]);
            ns.ip(&[
                "neigh",
                "replace",
                &peer6.to_string(),
                "lladdr",
                &mac,
                "dev",
                ifname,
                "nud",
                "permanent",
            ]);
        }
        lab
    }

    /// Only the veth pair, up, with IPv6 off on a's side: nothing but what a
    /// test injects crosses to b (no ARP, ND, MLD or router solicitations).
    pub fn quiet() -> Lab {
        let lab = Lab::bare();
        lab.a
            .sysctl(&format!("net.ipv6.conf.{IF_A}.disable_ipv6"), "1");
        lab.a.ip(&["link", "set", IF_A, "up"]);
        lab.b.ip(&["link", "set", IF_B, "up"]);
        lab
    }

    fn bare() -> Lab {
        let a = Netns::new("a");
        let b = Netns::new("b");
        for ns in [&a, &b] {
            ns.sysctl("net.ipv6.conf.default.router_solicitations", "0");
            ns.sysctl("net.ipv6.conf.all.router_solicitations", "0");
        }
        run(
            "ip",
            &[
                "link",
                "add",
                IF_A,
                "address",
                &mac_text(MAC_A),
                "netns",
                &a.name,
                "type",
                "veth",
                "peer",
                "name",
                IF_B,
                "address",
                &mac_text(MAC_B),
                "netns",
                &b.name,
            ],
        );
        for (ns, ifname) in [(&a, IF_A), (&b, IF_B)] {
            ns.sysctl(&format!("net.ipv6.conf.{ifname}.router_solicitations"), "0");
        }
        Lab { a, b }
    }
}

/// Send raw Ethernet frames out of `ifname` from inside `ns` (AF_PACKET).
pub fn inject(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) {
    inject_in(&ns.name, ifname, frames)
}

/// `inject` by namespace name (for threads that do not own the Netns).
pub fn inject_in(ns_name: &str, ifname: &str, frames: Vec<Vec<u8>>) {
    let path = format!("/run/netns/{ns_name}");
    let ifname = ifname.to_string();
    thread::spawn(move || {
        enter_netns(&path);
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).expect("interface exists");
        // Stay on one CPU so per-CPU sampling sees every frame in order.
        let mut set = nix::sched::CpuSet::new();
        let _ = set.set(0);
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just returned by socket(2).
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        for f in &frames {
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid start value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&f[..6]);
            // SAFETY: buffer and address are valid for the call.
            let n = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                n,
                f.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

/// A running `wirescope` inside a namespace, with its output collected.
pub struct Tracer {
    child: Child,
    gate: Arc<(Mutex<bool>, Condvar)>,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    stderr: Arc<Mutex<String>>,
    stdout_thread: Option<thread::JoinHandle<()>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

pub struct Finished {
    /// stdout lines
    pub lines: Vec<String>,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Finished {
    pub fn json(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
            .collect()
    }

    /// The JSON objects of one "type".
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }

    /// The counters of the JSON summary line.
    pub fn summary(&self) -> HashMap<String, u64> {
        let s = self.of_type("summary");
        assert_eq!(
            s.len(),
            1,
            "one summary line expected; stderr: {}",
            self.stderr
        );
        s[0].as_object()
            .expect("summary is an object")
            .iter()
            .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
            .collect()
    }
}

impl Tracer {
    /// Start `wirescope ARGS` in `ns` and wait until it says it is tracing.
    pub fn start(ns: &Netns, args: &[&str]) -> Tracer {
        Self::spawn(Some(ns), args, true, true)
    }

    /// `wirescope COMMAND --json --attach METHOD EXTRA...` in the test's own
    /// namespace, checked to say that it attached with METHOD.
    pub fn start_attached(command: &str, method: &str, extra: &[&str]) -> Tracer {
        let mut args = vec![command, "--json", "--attach", method];
        args.extend_from_slice(extra);
        let t = Tracer::start_here(&args);
        assert!(
            t.stderr_text().contains(&format!("attached with {method}")),
            "{}",
            t.stderr_text()
        );
        t
    }

    /// Start in the test's own (the host's) network namespace.
    pub fn start_here(args: &[&str]) -> Tracer {
        Self::spawn(None, args, true, true)
    }

    /// Start, but do not read its stdout until `release()`: once the pipe is
    /// full, wirescope blocks on output and its ring buffer fills up.
    pub fn start_held(ns: &Netns, args: &[&str]) -> Tracer {
        Self::spawn(Some(ns), args, true, false)
    }

    /// Let a held tracer's output be read.
    pub fn release(&self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
    }

    /// Start without waiting for readiness (for runs expected to fail).
    pub fn start_cmd(ns: &Netns, args: &[&str], wait_ready: bool) -> Tracer {
        Self::spawn(Some(ns), args, wait_ready, true)
    }

    fn spawn(ns: Option<&Netns>, args: &[&str], wait_ready: bool, open: bool) -> Tracer {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(wirescope_bin());
                c
            }
            None => Command::new(wirescope_bin()),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wirescope");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let l2 = lines.clone();
        let gate = Arc::new((Mutex::new(open), Condvar::new()));
        let g2 = gate.clone();
        let stdout_thread = thread::spawn(move || {
            let (m, cv) = &*g2;
            let mut open = m.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            drop(open);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*l2;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        let e2 = stderr.clone();
        let l3 = lines.clone();
        let stderr_thread = thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = String::new();
            loop {
                buf.clear();
                match r.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        e2.lock().unwrap().push_str(&buf);
                        l3.1.notify_all();
                    }
                }
            }
        });
        let mut t = Tracer {
            child,
            gate,
            lines,
            stderr,
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
        };
        if wait_ready {
            t.wait_ready();
        }
        t
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + patience();
        loop {
            if self.stderr.lock().unwrap().contains("Ctrl-C to end") {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "wirescope exited ({st}) before it was ready: {}",
                    self.stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "wirescope not ready after {:?}: {}",
                patience(),
                self.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `pred` holds for the stdout lines so far.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + patience();
        let (m, cv) = &*self.lines;
        let mut g = m.lock().unwrap();
        while !pred(&g) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; output so far:\n{}\nstderr: {}",
                g.join("\n"),
                self.stderr.lock().unwrap()
            );
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Like `wait_for`, but says whether `pred` came true instead of failing.
    pub fn try_wait_for(&self, pred: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + patience();
        let (m, cv) = &*self.lines;
        let mut g = m.lock().unwrap();
        while !pred(&g) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
        true
    }

    /// Wait until at least `n` JSON lines of type `kind` arrived.
    pub fn wait_json(&self, kind: &str, n: usize) {
        let needle = format!("\"type\":\"{kind}\"");
        self.wait_for(&format!("{n} {kind} lines"), |ls| {
            ls.iter().filter(|l| l.contains(&needle)).count() >= n
        });
    }

    /// How many stdout lines so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// How many stdout lines arrived so far.
    pub fn line_count(&self) -> usize {
        self.lines.0.lock().unwrap().len()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT, then collect everything it printed.
    pub fn stop(self) -> Finished {
        self.release();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        self.collect()
    }

    /// Wait for it to end by itself (--duration, --count).
    pub fn collect(mut self) -> Finished {
        self.release();
        let deadline = Instant::now() + patience();
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("wirescope did not exit; stderr: {}", self.stderr_text());
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let lines = std::mem::take(&mut *self.lines.0.lock().unwrap());
        Finished {
            lines,
            stderr: self.stderr_text(),
            code: status.code(),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run wirescope to completion (for usage/runtime errors), without a namespace.
pub fn wirescope(args: &[&str]) -> Finished {
    let out = Command::new(wirescope_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running wirescope");
    Finished {
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// Read lines from a child's stdout until one equals `want` (within patience).
pub fn wait_for_line(child: &mut Child, want: &str) -> Vec<String> {
    let out = child.stdout.take().expect("piped stdout");
    let wanted = want.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut seen = Vec::new();
        let mut lines = BufReader::new(out).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let done = line == wanted;
            seen.push(line);
            if done {
                break;
            }
        }
        let _ = tx.send(seen);
        // keep the pipe open and drained for whatever the child prints later
        for _ in lines {}
    });
    let seen = rx
        .recv_timeout(patience())
        .unwrap_or_else(|_| panic!("no {want:?} line from the child within {:?}", patience()));
    assert!(
        seen.last().map(String::as_str) == Some(want),
        "the child ended without printing {want:?}: {seen:?}"
    );
    seen
}

/// Wait for a child to exit successfully (within patience).
pub fn wait_ok(child: &mut Child, what: &str) {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(st) = child.try_wait().expect("waiting") {
            assert!(st.success(), "{what} failed: {st}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {:?}", patience());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Attach methods to test for conn/sendlat: WIRESCOPE_TEST_ATTACH (e.g. the
/// kernel-matrix guests set "fentry,kprobe,tracepoint", and each must work),
/// else every method `wirescope probe` finds working here.
pub fn attach_methods() -> Vec<String> {
    if let Ok(list) = std::env::var("WIRESCOPE_TEST_ATTACH") {
        return list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    let out = Command::new(wirescope_bin())
        .args(["probe", "--json"])
        .output()
        .expect("running wirescope probe");
    assert!(
        out.status.success(),
        "wirescope probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("probe prints JSON");
    let methods: Vec<String> = ["fentry", "kprobe", "tracepoint"]
        .iter()
        .filter(|m| v["features"][**m]["ok"] == true)
        .map(|m| m.to_string())
        .collect();
    assert!(!methods.is_empty(), "no attach method works here: {v}");
    methods
}

/// A cgroup v2 directory of our own, removed on drop (processes must have left).
pub struct Cgroup {
    pub path: PathBuf,
    mounted: Option<PathBuf>,
}

impl Cgroup {
    pub fn new(tag: &str) -> Cgroup {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let existing = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(PathBuf::from);
        let (root, mounted) = match existing {
            Some(r) => (r, None),
            None => {
                let r = std::env::temp_dir().join(format!("ws-cgroup2-{}", std::process::id()));
                std::fs::create_dir_all(&r).unwrap();
                run("mount", &["-t", "cgroup2", "none", r.to_str().unwrap()]);
                (r.clone(), Some(r))
            }
        };
        let path = root.join(format!(
            "ws-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Cgroup { path, mounted }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg(m).status();
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// Read a whole file.
pub fn read_all(path: &std::path::Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    v
}

/// Frame builders for crafted traffic.
pub mod frame {
    use std::net::{Ipv4Addr, Ipv6Addr};

    pub const ETH_IP: u16 = 0x0800;
    pub const ETH_IPV6: u16 = 0x86dd;
    pub const ETH_8021Q: u16 = 0x8100;
    pub const ETH_8021AD: u16 = 0x88a8;

    pub fn eth(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], ethertype: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        for &(tpid, vid) in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            sum += u32::from(w);
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// IPv4 header (with `options`, a multiple of 4 bytes) + payload.
    pub fn ipv4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let ihl = 5 + options.len() / 4;
        let total = ihl * 4 + payload.len();
        let mut h = vec![
            (4 << 4) | ihl as u8,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            proto,
            0,
            0,
        ];
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(options);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(next);
        h.push(64);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(payload);
        h
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(payload);
        h
    }

    pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&1000u32.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes());
        h.push(5 << 4);
        h.push(flags);
        h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        h.extend_from_slice(payload);
        h
    }

    pub fn icmp(kind: u8, code: u8) -> Vec<u8> {
        vec![kind, code, 0, 0, 0, 1, 0, 1]
    }

    pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }
}
