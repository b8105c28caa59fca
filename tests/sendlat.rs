//! Privileged tests of `wirescope sendlat`: real processes (python3) sending
//! over a veth pair between two namespaces, every attach method this kernel
//! has (or those WIRESCOPE_TEST_ATTACH names). The tracepoint method needs
//! sock:sock_send_length (Linux 6.3+): where the kernel lacks it, one test
//! asserts that `--attach tracepoint` fails and says why, and the others run
//! the remaining methods.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Receiver: accept `count` connections and read each to its end; in mode
/// `hold`, read nothing from a connection until a line arrives on stdin.
/// `rcvbuf` > 0 sets a small receive buffer (inherited by accepted sockets).
const RECEIVER: &str = r#"
import socket, sys, threading
addr, port, mode, count, rcvbuf = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if rcvbuf:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind((addr, port))
s.listen(16)
print('ready', flush=True)
total = [0]
def drain(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        total[0] += len(d)
    c.close()
threads = []
for _ in range(count):
    c, _ = s.accept()
    if mode == 'hold':
        sys.stdin.readline()
    t = threading.Thread(target=drain, args=(c,))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
print('got', total[0], flush=True)
"#;

/// Sender: name itself, connect, print its local port, then follow the plan,
/// a comma-separated list of steps:
///   send:N  write:N                one call of N bytes (each must send all)
///   sendmsg:A+B  writev:A+B        one call of several buffers
///   sendmmsg:A/B                   one sendmmsg of messages of A and B bytes
///   stamp:WORD                     print WORD and CLOCK_MONOTONIC in ns
///   wait                           read a line from stdin
///   badsend                        a send(2) that fails with EFAULT up front
///   udp:N  unix:N  unixdgram:N  pipe:N  file:N   the same bytes elsewhere
const SENDER: &str = r#"
import ctypes, os, socket, sys, tempfile, time
addr, port, name, plan, sndbuf = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, name.encode(), 0, 0, 0)
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
c = socket.socket(fam)
if sndbuf:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
c.connect((addr, port))
print('lport', c.getsockname()[1], flush=True)

class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32),
                ('iov', ctypes.POINTER(iovec)), ('iovlen', ctypes.c_size_t),
                ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t),
                ('flags', ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [('hdr', msghdr), ('len', ctypes.c_uint)]

def sendmmsg(sizes):
    bufs = [ctypes.create_string_buffer(b'm' * n, n) for n in sizes]
    iovs = [iovec(ctypes.cast(b, ctypes.c_void_p), n) for b, n in zip(bufs, sizes)]
    msgs = (mmsghdr * len(sizes))()
    for i, v in enumerate(iovs):
        msgs[i].hdr.iov = ctypes.pointer(v)
        msgs[i].hdr.iovlen = 1
    n = libc.sendmmsg(c.fileno(), msgs, len(sizes), 0)
    assert n == len(sizes), (n, ctypes.get_errno())
    assert [msgs[i].len for i in range(n)] == sizes, [m.len for m in msgs]

def check(got, want, what):
    if got != want:
        sys.exit('%s sent %d of %d' % (what, got, want))

udp = socket.socket(fam, socket.SOCK_DGRAM)
ux, uy = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
dx, dy = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
pr, pw = os.pipe()
tmp = tempfile.TemporaryFile()
for step in plan.split(','):
    kind, _, arg = step.partition(':')
    parts = [int(x) for x in arg.replace('/', '+').split('+')] if arg and arg[0].isdigit() else []
    if kind == 'send':
        check(c.send(b's' * parts[0]), parts[0], step)
    elif kind == 'write':
        check(os.write(c.fileno(), b'w' * parts[0]), parts[0], step)
    elif kind == 'sendmsg':
        check(c.sendmsg([b'g' * p for p in parts]), sum(parts), step)
    elif kind == 'writev':
        check(os.writev(c.fileno(), [b'v' * p for p in parts]), sum(parts), step)
    elif kind == 'sendmmsg':
        sendmmsg(parts)
    elif kind == 'badsend':
        # a buffer in kernel space: refused before the socket is even looked up
        r = libc.send(c.fileno(), ctypes.c_void_p(0xffff800000000000), 100, 0)
        if r != -1 or ctypes.get_errno() != 14:
            sys.exit('badsend: %d, errno %d' % (r, ctypes.get_errno()))
    elif kind == 'stamp':
        print(arg, time.monotonic_ns(), flush=True)
    elif kind == 'wait':
        sys.stdin.readline()
    elif kind == 'udp':
        check(udp.sendto(b'u' * parts[0], (addr, port)), parts[0], step)
    elif kind == 'unix':
        check(ux.send(b'x' * parts[0]), parts[0], step)
        check(os.write(ux.fileno(), b'y' * parts[0]), parts[0], step)
        uy.recv(1 << 20)
    elif kind == 'unixdgram':
        check(dx.send(b'd' * parts[0]), parts[0], step)
        check(dx.sendmsg([b'e' * parts[0]]), parts[0], step)
    elif kind == 'pipe':
        check(os.write(pw, b'p' * parts[0]), parts[0], step)
    elif kind == 'file':
        check(os.write(tmp.fileno(), b'f' * parts[0]), parts[0], step)
    else:
        sys.exit('unknown step ' + step)
c.close()
print('done', flush=True)
"#;

/// A python3 process in a namespace, its stdout read line by line.
struct Py {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Py {
    /// `held`: the process starts only once `release()` is called (so the
    /// test can learn its pid and move it into a cgroup first).
    fn start(ns: &Netns, script: &str, args: &[String], held: bool) -> Py {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]);
        if held {
            cmd.args([
                "sh",
                "-c",
                "read go && exec python3 -c \"$0\" \"$@\"",
                script,
            ]);
        } else {
            cmd.args(["python3", "-c", script]);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 in {}: {e}", ns.name));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py {
            stdin: child.stdin.take(),
            child,
            lines: rx,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line; it must start with `word`. Returns the rest.
    fn expect(&mut self, word: &str) -> String {
        match self.lines.recv_timeout(patience()) {
            Ok(l) if l.split_whitespace().next() == Some(word) => {
                l[word.len()..].trim().to_string()
            }
            Ok(l) => panic!("expected {word:?} from python, got {l:?}"),
            Err(_) => {
                let st = self.child.try_wait();
                panic!(
                    "no {word:?} line from python within {:?} ({st:?})",
                    patience()
                )
            }
        }
    }

    fn say(&mut self, line: &str) {
        let w = self.stdin.as_mut().expect("piped stdin");
        writeln!(w, "{line}").expect("writing to python");
        w.flush().expect("writing to python");
    }

    fn release(&mut self) {
        self.say("go");
    }

    fn wait_ok(&mut self, what: &str) {
        wait_ok(&mut self.child, what);
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(ns: &Netns, addr: &str, port: u16, mode: &str, count: usize, rcvbuf: usize) -> Py {
    let args = [
        addr.to_string(),
        port.to_string(),
        mode.to_string(),
        count.to_string(),
        rcvbuf.to_string(),
    ];
    let mut r = Py::start(ns, RECEIVER, &args, false);
    r.expect("ready");
    r
}

fn sender(
    ns: &Netns,
    addr: &str,
    port: u16,
    name: &str,
    plan: &str,
    sndbuf: usize,
    held: bool,
) -> Py {
    let args = [
        addr.to_string(),
        port.to_string(),
        name.to_string(),
        plan.to_string(),
        sndbuf.to_string(),
    ];
    Py::start(ns, SENDER, &args, held)
}

/// Whether this kernel has sock:sock_send_length, asked of tracefs (not of
/// wirescope, which reads BTF).
fn kernel_has_send_length() -> bool {
    let events = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_dir())
    .expect(
        "tracefs is not mounted; these tests need it (mount -t tracefs tracefs \
             /sys/kernel/tracing)",
    );
    events.join("sock/sock_send_length").is_dir()
}

/// The methods to run the behaviour tests with: attach_methods(), less the
/// tracepoint method where the kernel cannot have it (asserted to fail, with
/// its reason, by `tracepoint_method_needs_sock_send_length`).
fn sendlat_methods() -> Vec<String> {
    let has = kernel_has_send_length();
    let all = attach_methods();
    let methods: Vec<String> = all
        .iter()
        .filter(|m| has || m.as_str() != "tracepoint")
        .cloned()
        .collect();
    if methods.len() < all.len() {
        eprintln!(
            "note: no sock:sock_send_length in this kernel: the tracepoint method is tested \
             to fail there, and these tests run with {methods:?}"
        );
    }
    assert!(
        !methods.is_empty(),
        "no attach method for sendlat here: {all:?}, sock_send_length: {has}"
    );
    methods
}

/// One sendlat test at a time: attaching or detaching fentry/fexit programs
/// rebuilds tcp_sendmsg's trampoline, and a send in progress then returns
/// without its fexit programs (counted as no_return, but not reported): the
/// tracers one test starts and stops must not land in another test's sends.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // a test that failed holding it leaves nothing to repair
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn start(method: &str, extra: &[&str]) -> Tracer {
    Tracer::start_attached("sendlat", method, extra)
}

fn calls(f: &Finished) -> Vec<Value> {
    f.of_type("sendlat")
}

/// Bucket counts of every `hist` line (one key), summed by bucket low bound.
fn merged_buckets(lines: &[Value]) -> BTreeMap<u64, (Option<u64>, u64)> {
    let mut m = BTreeMap::new();
    for h in lines {
        for b in h["buckets"].as_array().expect("buckets") {
            let low = b["low"].as_u64().unwrap();
            let e = m.entry(low).or_insert((b["high"].as_u64(), 0));
            e.1 += b["count"].as_u64().unwrap();
        }
    }
    m
}

/// A histogram line's own consistency: buckets add up to count, percentiles
/// inside the buckets, mean present when there are calls.
fn check_hist_line(h: &Value) {
    let b = h["buckets"].as_array().expect("buckets");
    let sum: u64 = b.iter().map(|x| x["count"].as_u64().unwrap()).sum();
    assert_eq!(Some(sum), h["count"].as_u64(), "{h}");
    assert_eq!(h["unit"], "us");
    if sum == 0 {
        assert!(h["mean"].is_null() && h["p50"].is_null(), "{h}");
        return;
    }
    let lo = b[0]["low"].as_f64().unwrap();
    let hi = b[b.len() - 1]["high"].as_f64().unwrap_or(f64::MAX);
    for p in ["p50", "p90", "p99"] {
        let v = h[p].as_f64().unwrap_or_else(|| panic!("{p}: {h}"));
        assert!(v >= lo && v <= hi, "{p} {v} outside [{lo}, {hi}]: {h}");
    }
    assert!(h["p50"].as_f64() <= h["p90"].as_f64() && h["p90"].as_f64() <= h["p99"].as_f64());
    assert!(h["mean"].as_f64().unwrap() > 0.0, "{h}");
}

/// The syscall a thread is blocked in (/proc/PID/syscall), if any.
fn blocked_in(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Wait until the sender's main thread is blocked in sendto(2).
fn wait_blocked_in_sendto(tx: &Py) {
    let deadline = Instant::now() + patience();
    while blocked_in(tx.pid()) != Some(libc::SYS_sendto as u64) {
        assert!(
            Instant::now() < deadline,
            "the sender never blocked in sendto (/proc/{}/syscall)",
            tx.pid()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn k_sends_of_known_sizes_exact_events_and_histograms() {
    require_privileges();
    let _serial = serial();
    let lab = Lab::new();
    // one call each, except sendmmsg: two messages, two calls
    let plan = "send:100,sendmsg:10+20,write:7,writev:3+4+5,sendmmsg:50/60,send:65536,send:1";
    let sizes: Vec<u64> = vec![100, 30, 7, 12, 50, 60, 65536, 1];
    let k = sizes.len() as u64;
    for method in sendlat_methods() {
        for (i, (server, client)) in [
            (IP4_B.to_string(), IP4_A.to_string()),
            (IP6_B.to_string(), IP6_A.to_string()),
        ]
        .into_iter()
        .enumerate()
        {
            let port = 23000 + i as u16;
            let p = port.to_string();
            let per_call = start(&method, &["-P", &p]);
            let mut hists = vec![("all", start(&method, &["--hist", "-P", &p]))];
            // the per-process keys once per method (IPv4): tracers are slow
            // to start in emulated guests
            if i == 0 {
                hists.push(("pid", start(&method, &["--hist", "--per", "pid", "-P", &p])));
                hists.push((
                    "comm",
                    start(&method, &["--hist", "--per", "comm", "-P", &p]),
                ));
            }
            let mut rx = receiver(&lab.b, &server, port, "drain", 1, 0);
            let mut tx = sender(&lab.a, &server, port, "wsksends", plan, 0, false);
            let lport: u64 = tx.expect("lport").parse().unwrap();
            tx.expect("done");
            tx.wait_ok("sender");
            let total: u64 = sizes.iter().sum();
            assert_eq!(rx.expect("got"), total.to_string());
            rx.wait_ok("receiver");
            per_call.wait_json("sendlat", k as usize);
            let out = per_call.stop();
            let cs = calls(&out);
            let what = format!("{method} {server}");
            assert_eq!(cs.len() as u64, k, "{what}: {cs:#?}");
            let family = if server.contains(':') { "ipv6" } else { "ipv4" };
            for (c, &size) in cs.iter().zip(&sizes) {
                assert_eq!(
                    (c["size"].as_u64(), c["sent"].as_u64()),
                    (Some(size), Some(size)),
                    "{what}: {c}"
                );
                assert_eq!(c["pid"], tx.pid(), "{what}: {c}");
                assert_eq!(c["comm"], "wsksends", "{what}: {c}");
                assert_eq!(c["family"], family);
                assert_eq!(
                    (c["laddr"].as_str(), c["lport"].as_u64()),
                    (Some(client.as_str()), Some(lport)),
                    "{what}: {c}"
                );
                assert_eq!(
                    (c["raddr"].as_str(), c["rport"].as_u64()),
                    (Some(server.as_str()), Some(u64::from(port))),
                    "{what}: {c}"
                );
                let lat = c["latency_us"].as_f64().unwrap();
                assert!(lat > 0.0 && lat < 60e6, "{what}: {c}");
            }
            let sum = out.summary();
            assert_eq!((sum["delivered"], sum["lost"]), (k, 0), "{what}: {sum:?}");
            assert_eq!(
                (sum["under_min"], sum["in_hist"]),
                (0, 0),
                "{what}: {sum:?}"
            );

            for (per, t) in hists {
                let key = match per {
                    "pid" => Value::from(tx.pid()),
                    "comm" => Value::from("wsksends"),
                    _ => Value::Null,
                };
                let out = t.stop();
                let hs = out.of_type("hist");
                assert_eq!(hs.len(), 1, "{what} {key}: {hs:#?}\n{}", out.stderr);
                let h = &hs[0];
                check_hist_line(h);
                assert_eq!(h["key"], key, "{what}: {h}");
                assert_eq!(h["count"].as_u64(), Some(k), "{what} {key}: {h}");
                let bucket_sum: u64 = merged_buckets(&hs).values().map(|v| v.1).sum();
                assert_eq!(bucket_sum, k, "{what} {key}: {h}");
                let sum = out.summary();
                assert_eq!(
                    (sum["in_hist"], sum["delivered"]),
                    (k, 0),
                    "{what} {key}: {sum:?}"
                );
                assert_eq!(sum["hist_full"], 0);
            }
        }
    }
}

#[test]
fn a_slow_send_is_reported_with_its_pause_in_the_right_bucket() {
    require_privileges();
    let _serial = serial();
    let lab = Lab::new();
    let server = IP4_B.to_string();
    let pause = Duration::from_millis(600);
    let pause_us = pause.as_micros() as u64;
    let fast = 10u64;
    let big = 4 << 20; // far more than both small socket buffers hold
    let mut plan: Vec<String> = (0..fast).map(|_| "send:100".to_string()).collect();
    plan.push("stamp:before".into());
    plan.push(format!("send:{big}"));
    plan.push("stamp:after".into());
    let plan = plan.join(",");
    for method in sendlat_methods() {
        let port = 23100u16;
        let p = port.to_string();
        let slow = start(&method, &["-P", &p, "--min-us", "100000"]);
        let hist = start(&method, &["-P", &p, "--hist", "--interval", "1"]);
        let mut rx = receiver(&lab.b, &server, port, "hold", 1, 4096);
        let mut tx = sender(&lab.a, &server, port, "wsslow", &plan, 4096, false);
        tx.expect("lport");
        let before: u64 = tx.expect("before").parse().unwrap();
        // the big send is in progress once the sender blocks in sendto(2);
        // from then on nothing drains until the receiver is told to read
        wait_blocked_in_sendto(&tx);
        thread::sleep(pause);
        rx.release();
        let after: u64 = tx.expect("after").parse().unwrap();
        tx.expect("done");
        tx.wait_ok("sender");
        rx.wait_ok("receiver");
        // the call began after `before` and ended before `after`
        let upper_us = (after - before) / 1000;
        hist.wait_json("hist", 2);

        // the call ended before `after` was printed; stopping drains the ring
        // buffer, so it is in the output if it was ever reported
        let out = slow.stop();
        let cs = calls(&out);
        assert_eq!(
            cs.len(),
            1,
            "{method}: only the slow send: {cs:#?}\n{}",
            out.stderr
        );
        let c = &cs[0];
        assert_eq!(
            (c["size"].as_u64(), c["sent"].as_u64()),
            (Some(big), Some(big))
        );
        assert_eq!(
            (&c["pid"], &c["comm"]),
            (&Value::from(tx.pid()), &Value::from("wsslow"))
        );
        let lat = c["latency_us"].as_f64().unwrap();
        assert!(
            lat >= pause_us as f64 && lat <= upper_us as f64,
            "{method}: latency {lat} us, pause {pause_us} us, at most {upper_us} us"
        );
        let sum = out.summary();
        assert_eq!(
            (sum["under_min"], sum["delivered"]),
            (fast, 1),
            "{method}: the fast sends stay out: {sum:?}"
        );
        assert!(sum["filtered"] >= fast, "{sum:?}");

        let out = hist.stop();
        let hs = out.of_type("hist");
        assert!(
            hs.len() >= 3,
            "{method}: two intervals and the end: {hs:#?}"
        );
        for h in &hs {
            check_hist_line(h);
            assert!(h["key"].is_null());
        }
        let total: u64 = hs.iter().map(|h| h["count"].as_u64().unwrap()).sum();
        assert_eq!(total, fast + 1, "{method}: {hs:#?}");
        // the slow call's bucket holds a value in [pause, upper], and it is
        // the only call at or above the bucket of the pause
        let buckets = merged_buckets(&hs);
        let pause_low = 1u64 << (63 - pause_us.leading_zeros());
        let slow_ones: Vec<(u64, Option<u64>, u64)> = buckets
            .iter()
            .filter(|(&low, v)| low >= pause_low && v.1 > 0)
            .map(|(&low, v)| (low, v.0, v.1))
            .collect();
        assert_eq!(slow_ones.len(), 1, "{method}: {buckets:?}");
        let (low, high, n) = slow_ones[0];
        assert_eq!(n, 1, "{method}: {buckets:?}");
        let high = high.unwrap_or(u64::MAX);
        assert!(
            low <= upper_us && high > pause_us,
            "{method}: bucket [{low}, {high}) cannot hold a latency in [{pause_us}, {upper_us}]"
        );
        // the two tracers time the same call a few microseconds apart
        assert!(
            low as f64 <= lat + 50.0 && lat < high as f64 + 50.0,
            "{method}: the per-call latency {lat} us is in another bucket than [{low}, {high})"
        );
        assert_eq!(out.summary()["in_hist"], fast + 1);
    }
}

#[test]
fn sends_on_udp_and_unix_sockets_are_not_reported() {
    require_privileges();
    let _serial = serial();
    let lab = Lab::new();
    let server = IP4_B.to_string();
    let port = 23200u16;
    let plan = "udp:300,unix:400,unixdgram:500,pipe:600,file:700,send:11,udp:300,send:22";
    for method in sendlat_methods() {
        let t = start(&method, &["--comm", "wsothers"]);
        let mut rx = receiver(&lab.b, &server, port, "drain", 1, 0);
        let mut tx = sender(&lab.a, &server, port, "wsothers", plan, 0, false);
        tx.expect("lport");
        tx.expect("done");
        tx.wait_ok("sender");
        assert_eq!(rx.expect("got"), "33");
        rx.wait_ok("receiver");
        t.wait_json("sendlat", 2);
        thread::sleep(Duration::from_millis(300));
        let out = t.stop();
        let cs = calls(&out);
        let got: Vec<(u64, u64)> = cs
            .iter()
            .map(|c| (c["size"].as_u64().unwrap(), c["rport"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![(11, u64::from(port)), (22, u64::from(port))],
            "{method}: only the two TCP sends: {cs:#?}"
        );
        let sum = out.summary();
        if method == "tracepoint" {
            // 2 UDP sends, 2 on a Unix stream socket, 2 on a Unix datagram one
            // (other processes' sends on other sockets may add to it)
            assert!(sum["other_sockets"] >= 6, "{sum:?}");
        } else {
            assert_eq!(sum["other_sockets"], 0, "{sum:?}");
        }
    }
}

#[test]
fn each_filter_keeps_exactly_the_right_calls() {
    require_privileges();
    let _serial = serial();
    let lab = Lab::new();
    let cg = Cgroup::new("sendlat");
    let v4 = IP4_B.to_string();
    let v6 = IP6_B.to_string();
    let (p1, p2) = (23301u16, 23302u16);
    let (p1s, both) = (p1.to_string(), format!("{p1},{p2}"));
    for method in sendlat_methods() {
        // alpha: IPv4 to p1, in our cgroup, 1 send; beta: IPv6 to p2, 2 sends;
        // gamma: IPv4 to p2, 3 sends
        let mut rx1 = receiver(&lab.b, &v4, p1, "drain", 1, 0);
        let mut rx2 = receiver(&lab.b, &v4, p2, "drain", 1, 0);
        let mut rx3 = receiver(&lab.b, &v6, p2, "drain", 1, 0);
        let mut alpha = sender(&lab.a, &v4, p1, "wsalpha", "send:1", 0, true);
        let a = alpha.pid();
        std::fs::write(cg.path.join("cgroup.procs"), a.to_string())
            .expect("moving alpha into the cgroup");
        let a_s = a.to_string();
        let cgroup = cg.path.display().to_string();
        let filters: Vec<(&str, Vec<&str>)> = vec![
            ("none", vec!["-P", &both]),
            ("--comm", vec!["--comm", "wsbeta", "-P", &both]),
            ("-P", vec!["-P", &p1s]),
            ("-4", vec!["-4", "-P", &both]),
            ("-6", vec!["-6", "-P", &both]),
            ("--cgroup", vec!["--cgroup", &cgroup, "-P", &both]),
            ("-p", vec!["-p", &a_s, "-P", &both]),
        ];
        let tracers: Vec<(&str, Tracer)> = filters
            .iter()
            .map(|(name, args)| (*name, start(&method, args)))
            .collect();
        alpha.release();
        alpha.expect("lport");
        alpha.expect("done");
        alpha.wait_ok("alpha");
        let mut beta = sender(&lab.a, &v6, p2, "wsbeta", "send:2,send:2", 0, false);
        beta.expect("lport");
        beta.expect("done");
        beta.wait_ok("beta");
        let mut gamma = sender(&lab.a, &v4, p2, "wsgamma", "send:3,send:3,send:3", 0, false);
        gamma.expect("lport");
        gamma.expect("done");
        gamma.wait_ok("gamma");
        for (r, what) in [(&mut rx1, "r1"), (&mut rx2, "r2"), (&mut rx3, "r3")] {
            r.expect("got");
            r.wait_ok(what);
        }
        let (b, g) = (beta.pid(), gamma.pid());
        for (name, t) in tracers {
            let want: Vec<(u32, u64)> = match name {
                "none" => vec![(a, 1), (b, 2), (b, 2), (g, 3), (g, 3), (g, 3)],
                "--comm" => vec![(b, 2), (b, 2)],
                "-P" | "--cgroup" | "-p" => vec![(a, 1)],
                "-4" => vec![(a, 1), (g, 3), (g, 3), (g, 3)],
                "-6" => vec![(b, 2), (b, 2)],
                _ => unreachable!(),
            };
            // gamma's calls come last and most filters keep them; give the
            // others a moment either way
            t.wait_json("sendlat", want.len());
            thread::sleep(Duration::from_millis(300));
            let out = t.stop();
            let mut got: Vec<(u32, u64)> = calls(&out)
                .iter()
                .map(|c| {
                    (
                        c["pid"].as_u64().unwrap() as u32,
                        c["size"].as_u64().unwrap(),
                    )
                })
                .collect();
            got.sort();
            assert_eq!(got, want, "{method} filter {name}: {:#?}", calls(&out));
        }
    }
}

#[test]
fn tracepoint_method_needs_sock_send_length() {
    require_privileges();
    let _serial = serial();
    let has = kernel_has_send_length();
    let out = wirescope(&["probe", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let probe: Value = serde_json::from_str(&out.lines.join("\n")).expect("probe JSON");
    let plan = &probe["commands"]["sendlat"];
    let tp_reason: Vec<&str> = plan["unavailable"]
        .as_array()
        .expect("unavailable list")
        .iter()
        .filter_map(|r| r.as_str())
        .filter(|r| r.starts_with("tracepoint:"))
        .collect();
    let run = wirescope(&["sendlat", "--attach", "tracepoint", "--duration", "0.5"]);
    if has {
        assert!(tp_reason.is_empty(), "{plan}");
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(
            run.stderr.contains("attached with tracepoint"),
            "{}",
            run.stderr
        );
    } else {
        assert_eq!(tp_reason.len(), 1, "{plan}");
        assert!(
            tp_reason[0].contains("sock:sock_send_length") && tp_reason[0].contains("Linux 6.3"),
            "{plan}"
        );
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr.contains("cannot attach with tracepoint")
                && run
                    .stderr
                    .contains("no sock:sock_send_length tracepoint (Linux 6.3"),
            "{}",
            run.stderr
        );
        assert!(run.lines.is_empty(), "{:?}", run.lines);
        // and auto still works there, with a better method
        assert!(plan["method"].is_string(), "{plan}");
    }
}

#[test]
fn calls_without_a_return_are_counted_not_reported() {
    require_privileges();
    let _serial = serial();
    let lab = Lab::new();
    let server = IP4_B.to_string();
    let big: u64 = 4 << 20;
    let plan = format!("badsend,send:5,stamp:before,send:{big},stamp:after,send:6");
    for method in sendlat_methods() {
        let port = 23400u16;
        let p = port.to_string();
        let first = start(&method, &["-P", &p]);
        let mut rx = receiver(&lab.b, &server, port, "hold", 1, 4096);
        let mut tx = sender(&lab.a, &server, port, "wsnoreturn", &plan, 4096, false);
        tx.expect("lport");
        tx.expect("before");
        wait_blocked_in_sendto(&tx);
        // another tracer on the same function while the big send is blocked
        let second = start(&method, &["-P", &p]);
        rx.release();
        tx.expect("after");
        tx.expect("done");
        tx.wait_ok("sender");
        rx.wait_ok("receiver");

        let sizes = |f: &Finished| -> Vec<u64> {
            calls(f)
                .iter()
                .map(|c| c["size"].as_u64().unwrap())
                .collect()
        };
        let out = first.stop();
        let sum = out.summary();
        let what = format!("{method}: {:#?}\n{}", calls(&out), out.stderr);
        match method.as_str() {
            // the second tracer's fentry programs rebuilt tcp_sendmsg's
            // trampoline: the blocked call returned without fexit programs,
            // and its start was found again when the thread sent 6 bytes
            "fentry" => {
                assert_eq!(sizes(&out), [5, 6], "{what}");
                assert!(sum["no_return"] >= 1, "{what}");
            }
            // the failed send began at the syscall's entry and never reached
            // the socket; the next send found its start
            "tracepoint" => {
                assert_eq!(sizes(&out), [5, big, 6], "{what}");
                assert!(sum["no_return"] >= 1, "{what}");
            }
            _ => assert_eq!(sizes(&out), [5, big, 6], "{what}"),
        }
        // the second tracer saw the big send begin before it was there
        let out = second.stop();
        assert_eq!(sizes(&out), [6], "{method}: {}", out.stderr);
    }
}
