//! Privileged tests of `wirescope http`: a real HTTP server (tests/httpd.py,
//! Python's http.server) in one network namespace, curl or raw sockets in the
//! other, and the real binary on either side, asserting the exact requests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const IP4_A2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const IP4_B2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const IP6_A2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x11);
const IP6_B2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x12);

/// Fail, with the fix, when a program the test runs is missing.
fn require_tool(tool: &str, arg: &str) {
    let ok = Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs `{tool}`: install it (scripts/deps.sh test, or apt-get install {tool})"
    );
}

/// A background program in a namespace, stopped when dropped.
struct Daemon {
    child: Child,
    what: String,
}

impl Daemon {
    /// Start `cmd args` in `ns` and wait until its stdout shows `ready`.
    fn start(ns: &Netns, cmd: &str, args: &[&str], ready: &str) -> Daemon {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, cmd])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let marker = ready.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.contains(&marker) {
                    let _ = tx.send(());
                }
            }
        });
        let what = format!("{cmd} {args:?}");
        if rx.recv_timeout(patience()).is_err() {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} did not get ready: {err}");
        }
        Daemon { child, what }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.what;
    }
}

fn httpd(ns: &Netns, ports: &[&str]) -> Daemon {
    require_tool("python3", "--version");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/httpd.py");
    let mut args = vec![script];
    args.extend_from_slice(ports);
    Daemon::start(ns, "python3", &args, "ready")
}

/// Run curl in `ns` (one invocation: one connection, reused for every URL);
/// returns "status local_port" per URL.
fn curl(ns: &Netns, opts: &[&str], urls: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = vec![
        "-sS",
        "--max-time",
        "20",
        "-w",
        "%{http_code} %{local_port}\\n",
    ];
    args.extend_from_slice(opts);
    for u in urls {
        args.extend_from_slice(&["-o", "/dev/null", u]);
    }
    ns.exec("curl", &args).lines().map(str::to_string).collect()
}

fn url(server: IpAddr, port: u16, path: &str) -> String {
    match server {
        IpAddr::V4(a) => format!("http://{a}:{port}{path}"),
        IpAddr::V6(a) => format!("http://[{a}]:{port}{path}"),
    }
}

/// The Host header curl sends for a server on port 80.
fn host80(server: IpAddr) -> String {
    match server {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The fields of an http line the tests compare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    event: String,
    method: String,
    path: String,
    host: Option<String>,
    status: Option<u64>,
}

fn seen(v: &Value) -> Seen {
    Seen {
        event: v["event"].as_str().unwrap_or_default().to_string(),
        method: v["method"].as_str().unwrap_or_default().to_string(),
        path: v["path"].as_str().unwrap_or_default().to_string(),
        host: v["host"].as_str().map(str::to_string),
        status: v["status"].as_u64(),
    }
}

fn answered(method: &str, path: &str, host: &str, status: u64) -> Seen {
    Seen {
        event: "answered".into(),
        method: method.into(),
        path: path.into(),
        host: Some(host.into()),
        status: Some(status),
    }
}

/// Every packet the hooks saw ended up in exactly one counter.
fn assert_counters_add_up(sum: &std::collections::HashMap<String, u64>) {
    let parts = [
        "malformed",
        "no_payload",
        "not_http",
        "tls",
        "http2",
        "filtered",
        "delivered",
        "lost",
    ];
    let total: u64 = parts.iter().map(|k| sum[*k]).sum();
    assert_eq!(sum["seen"], total, "{sum:?}");
    let ends: u64 = ["answered", "timeouts", "pending", "missed", "overflow"]
        .iter()
        .map(|k| sum[*k])
        .sum();
    assert_eq!(sum["requests"], ends, "{sum:?}");
}

const LONG_PATH_LEN: usize = 1200;

fn long_path() -> String {
    let mut p = String::from("/long/");
    while p.len() < LONG_PATH_LEN {
        p.push_str("abcdefghij-");
    }
    p.truncate(LONG_PATH_LEN);
    p
}

/// Run the known list of requests from `lab.a` to `server` (port 80), with
/// one curl each except the keep-alive trio; returns what must be printed,
/// in order, and the client ports of the keep-alive connection.
fn known_requests(lab: &Lab, server: IpAddr) -> (Vec<Seen>, Vec<String>) {
    let host = host80(server);
    let u = |p: &str| url(server, 80, p);
    let mut want = Vec::new();
    let run = |method: &str, opts: &[&str], path: &str, printed_path: &str, status: u64| {
        let out = curl(&lab.a, opts, &[&u(path)]);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].starts_with(&status.to_string()),
            "{method} {path}: {out:?}"
        );
        answered(method, printed_path, &host, status)
    };
    want.push(run("GET", &[], "/index.html", "/index.html", 200));
    want.push(run("HEAD", &["-I"], "/head", "/head", 200));
    want.push(run(
        "POST",
        &["-d", "name=wirescope"],
        "/post",
        "/post",
        200,
    ));
    want.push(run("PUT", &["-X", "PUT", "-d", "x=1"], "/put", "/put", 200));
    want.push(run(
        "DELETE",
        &["-X", "DELETE"],
        "/delete/7",
        "/delete/7",
        200,
    ));
    want.push(run(
        "PATCH",
        &["-X", "PATCH", "-d", "y=2"],
        "/patch",
        "/patch",
        200,
    ));
    want.push(run(
        "OPTIONS",
        &["-X", "OPTIONS"],
        "/options",
        "/options",
        200,
    ));
    let authority = format!("{host}:443");
    want.push(run(
        "CONNECT",
        &["-X", "CONNECT", "--request-target", &authority],
        "/",
        &authority,
        200,
    ));
    want.push(run("TRACE", &["-X", "TRACE"], "/trace", "/trace", 200));
    let long = long_path();
    want.push(run("GET", &[], &long, &long, 200));
    want.push(run(
        "GET",
        &[],
        "/search?q=wire+scope&page=2",
        "/search?q=wire+scope&page=2",
        200,
    ));
    // keep-alive: three requests on one connection, the last a 404
    let ka = curl(&lab.a, &[], &[&u("/ka/1"), &u("/ka/2"), &u("/status/404")]);
    let statuses: Vec<&str> = ka.iter().map(|l| &l[..3]).collect();
    assert_eq!(statuses, ["200", "200", "404"]);
    for (p, s) in [("/ka/1", 200), ("/ka/2", 200), ("/status/404", 404)] {
        want.push(answered("GET", p, &host, s));
    }
    let ports: Vec<String> = ka
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or_default().to_string())
        .collect();
    assert!(
        ports.iter().all(|p| p == &ports[0]),
        "one connection: {ka:?}"
    );
    // a 500 after a known delay
    want.push(run("GET", &[], "/slow/300/500", "/slow/300/500", 500));
    (want, ports)
}

#[test]
fn known_requests_seen_exactly_once_from_server_and_client_ipv4_and_ipv6() {
    require_privileges();
    require_tool("curl", "--version");
    let lab = Lab::new();
    let _srv = httpd(&lab.b, &["80"]);
    for (client, server) in [
        (IpAddr::V4(IP4_A), IpAddr::V4(IP4_B)),
        (IpAddr::V6(IP6_A), IpAddr::V6(IP6_B)),
    ] {
        // one tracer on the server's side, one on the client's
        let on_b = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json"]);
        let on_a = Tracer::start(&lab.a, &["http", "-i", IF_A, "--json"]);
        let (want, ka_ports) = known_requests(&lab, server);
        for (t, side) in [(&on_b, "server"), (&on_a, "client")] {
            t.wait_for(&format!("{} http lines on the {side}", want.len()), |ls| {
                ls.iter()
                    .filter(|l| l.contains("\"type\":\"http\""))
                    .count()
                    >= want.len()
            });
        }
        for (t, side, direction) in [(on_b, "server", "ingress"), (on_a, "client", "egress")] {
            let out = t.stop();
            assert_eq!(out.code, Some(0), "{side}: {}", out.stderr);
            let lines = out.of_type("http");
            let got: Vec<Seen> = lines.iter().map(seen).collect();
            assert_eq!(got, want, "{side} side, {server}");
            for v in &lines {
                assert_eq!(v["ifname"], if side == "server" { IF_B } else { IF_A });
                assert_eq!(v["direction"], direction, "{v}");
                assert_eq!(v["version"], "HTTP/1.1");
                assert_eq!(v["client"], client.to_string());
                assert_eq!(v["server"], server.to_string());
                assert_eq!(v["sport"], 80);
                assert!(v["latency_ms"].as_f64().unwrap() >= 0.0);
            }
            // the keep-alive trio shares one client port, the others do not
            let cports: Vec<String> = lines.iter().map(|v| v["cport"].to_string()).collect();
            assert_eq!(
                &cports[11..14],
                &[
                    ka_ports[0].clone(),
                    ka_ports[0].clone(),
                    ka_ports[0].clone()
                ]
            );
            let mut distinct = cports.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), want.len() - 2, "{cports:?}");
            // the slow 500 took at least its delay
            let slow = &lines[14];
            assert_eq!(slow["status"], 500);
            assert!(
                slow["latency_ms"].as_f64().unwrap() >= 300.0,
                "{side}: {slow}"
            );
            let sum = out.summary();
            assert_counters_add_up(&sum);
            for k in [
                "invalid",
                "unmatched",
                "missed",
                "truncated",
                "unseen",
                "lost",
                "skipped",
            ] {
                assert_eq!(sum[k], 0, "{side} {k}: {sum:?}");
            }
            assert_eq!(sum["requests"], want.len() as u64, "{sum:?}");
            assert_eq!(sum["answered"], want.len() as u64, "{sum:?}");
            assert_eq!(sum["printed"], want.len() as u64, "{sum:?}");
        }
    }
}

#[test]
fn pipelined_requests_in_one_segment_pair_in_order() {
    require_privileges();
    let lab = Lab::new();
    let _srv = httpd(&lab.b, &["80"]);
    let t = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json"]);
    for server in [IpAddr::V4(IP4_B), IpAddr::V6(IP6_B)] {
        let host = host80(server);
        let burst = format!(
            "GET /p/1 HTTP/1.1\r\nHost: {host}\r\n\r\n\
             POST /p/2 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello\
             GET /status/404 HTTP/1.1\r\nHost: {host}\r\n\r\n\
             DELETE /status/204 HTTP/1.1\r\nHost: {host}\r\n\r\n"
        );
        let addr = SocketAddr::new(server, 80);
        let got = lab.a.run_in(move || {
            let mut c =
                TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // one write: all four requests leave in one segment
            c.write_all(burst.as_bytes()).expect("write");
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(20);
            while all.windows(9).filter(|w| w == b"HTTP/1.1 ").count() < 4
                && Instant::now() < deadline
            {
                let n = c.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        assert_eq!(got.matches("HTTP/1.1 ").count(), 4, "{got}");
        let _ = host;
    }
    t.wait_json("http", 8);
    let out = t.stop();
    let got: Vec<Seen> = out.of_type("http").iter().map(seen).collect();
    let mut want = Vec::new();
    for server in [IpAddr::V4(IP4_B), IpAddr::V6(IP6_B)] {
        let h = host80(server);
        want.push(answered("GET", "/p/1", &h, 200));
        want.push(answered("POST", "/p/2", &h, 200));
        want.push(answered("GET", "/status/404", &h, 404));
        want.push(answered("DELETE", "/status/204", &h, 204));
    }
    assert_eq!(got, want);
    let sum = out.summary();
    assert_counters_add_up(&sum);
    assert_eq!(
        (sum["requests"], sum["answered"], sum["unmatched"]),
        (8, 8, 0),
        "{sum:?}"
    );
}

/// Bytes that start no HTTP message (a fixed pseudo-random sequence).
fn binary_payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // never a method's or a status line's first letter, never a TLS record
    if let Some(b) = v.first_mut() {
        if b.is_ascii_uppercase() || (20..=23).contains(b) {
            *b = 0xff;
        }
    }
    v
}

#[test]
fn tls_and_binary_payloads_on_port_80_produce_no_events() {
    require_privileges();
    require_tool("curl", "--version");
    require_tool("openssl", "version");
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("wirescope-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-subj",
            "/CN=wirescope-test",
            "-days",
            "1",
        ],
    );
    let t = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json"]);
    {
        // HTTPS on port 80: the HTTP inside is encrypted
        let _tls = Daemon::start(
            &lab.b,
            "openssl",
            &[
                "s_server",
                "-accept",
                "80",
                "-cert",
                cert.to_str().unwrap(),
                "-key",
                key.to_str().unwrap(),
                "-www",
            ],
            "ACCEPT",
        );
        for server in [IpAddr::V4(IP4_B), IpAddr::V6(IP6_B)] {
            let u = url(server, 80, "/secret/path").replacen("http:", "https:", 1);
            let out = curl(&lab.a, &["-k"], &[&u]);
            assert!(out[0].starts_with("200"), "{out:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    {
        // binary protocols to a real HTTP server on port 80
        let _srv = httpd(&lab.b, &["80"]);
        for (i, server) in [IpAddr::V4(IP4_B), IpAddr::V6(IP6_B)]
            .into_iter()
            .enumerate()
        {
            let addr = SocketAddr::new(server, 80);
            lab.a.run_in(move || {
                for (j, len) in [8usize, 100, 1000, 3000].into_iter().enumerate() {
                    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                        .expect("connect");
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    c.set_nodelay(true).unwrap();
                    c.write_all(&binary_payload(len, (i * 10 + j) as u64 + 7))
                        .expect("write");
                    // the server may have given up on the connection already
                    let _ = c.write_all(&binary_payload(64, (i * 10 + j) as u64 + 99));
                    let _ = c.shutdown(std::net::Shutdown::Write);
                    // whatever the server makes of it, wait until it is done
                    let mut sink = Vec::new();
                    let _ = c.read_to_end(&mut sink);
                }
            });
        }
    }
    let out = t.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.of_type("http").is_empty(), "{:#?}", out.lines);
    let sum = out.summary();
    assert_counters_add_up(&sum);
    assert_eq!(sum["requests"], 0, "{sum:?}");
    assert!(
        sum["tls"] >= 4,
        "TLS records from both sides, both families: {sum:?}"
    );
    assert!(sum["not_http"] >= 8, "{sum:?}");
    assert_eq!(sum["printed"], 0);
}

/// One request of the filter test's traffic.
struct Mixed {
    client: IpAddr,
    server: IpAddr,
    port: u16,
    method: &'static str,
    path: &'static str,
    host: Option<&'static str>,
    status: u64,
}

impl Mixed {
    /// The Host header it is sent with.
    fn host(&self) -> String {
        match self.host {
            Some(h) => h.to_string(),
            None if self.port == 80 => host80(self.server),
            None => format!("{}:{}", host80(self.server), self.port),
        }
    }
}

fn traffic() -> Vec<Mixed> {
    let a4 = IpAddr::V4(IP4_A);
    let b4 = IpAddr::V4(IP4_B);
    let a6 = IpAddr::V6(IP6_A);
    let b6 = IpAddr::V6(IP6_B);
    let m = |client, server, port, method, path, host, status| Mixed {
        client,
        server,
        port,
        method,
        path,
        host,
        status,
    };
    vec![
        m(a4, b4, 80, "GET", "/a?x=1", None, 200),
        m(a4, b4, 8080, "POST", "/api/items", None, 200),
        m(a6, b6, 80, "GET", "/api/v2/list?token=s3cret", None, 200),
        m(a6, b6, 8080, "DELETE", "/api/items/7", None, 200),
        m(
            a4,
            IpAddr::V4(IP4_B2),
            80,
            "GET",
            "/other",
            Some("www.example.com"),
            200,
        ),
        m(
            IpAddr::V4(IP4_A2),
            b4,
            80,
            "PUT",
            "/api/x?k=v",
            Some("API.Example.com:8080"),
            200,
        ),
        m(
            IpAddr::V6(IP6_A2),
            IpAddr::V6(IP6_B2),
            8080,
            "GET",
            "/status/404",
            None,
            404,
        ),
        m(a4, b4, 80, "HEAD", "/api/head", None, 200),
    ]
}

fn send_traffic(lab: &Lab, mix: &[Mixed]) {
    for m in mix {
        let mut opts: Vec<String> = vec!["--interface".into(), m.client.to_string()];
        match m.method {
            "HEAD" => opts.push("-I".into()),
            "POST" => opts.extend(["-d".into(), "v=1".into()]),
            "GET" => {}
            other => opts.extend(["-X".into(), other.into()]),
        }
        if let Some(h) = m.host {
            opts.extend(["-H".into(), format!("Host: {h}")]);
        }
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let out = curl(&lab.a, &opts, &[&url(m.server, m.port, m.path)]);
        assert!(
            out[0].starts_with(&m.status.to_string()),
            "{}: {out:?}",
            m.path
        );
    }
}

#[test]
fn each_filter_keeps_exactly_the_right_requests() {
    require_privileges();
    require_tool("curl", "--version");
    let lab = Lab::new();
    lab.a
        .ip(&["addr", "add", &format!("{IP4_A2}/24"), "dev", IF_A]);
    lab.a
        .ip(&["addr", "add", &format!("{IP6_A2}/64"), "dev", IF_A, "nodad"]);
    lab.b
        .ip(&["addr", "add", &format!("{IP4_B2}/24"), "dev", IF_B]);
    lab.b
        .ip(&["addr", "add", &format!("{IP6_B2}/64"), "dev", IF_B, "nodad"]);
    let _srv = httpd(&lab.b, &["80", "8080"]);
    type Keep = Box<dyn Fn(&Mixed) -> bool>;
    let in4 = |ip: IpAddr, a: Ipv4Addr| ip == IpAddr::V4(a);
    let cases: Vec<(&[&str], Keep)> = vec![
        (&[], Box::new(|_: &Mixed| true)),
        (&["-P", "8080"], Box::new(|m: &Mixed| m.port == 8080)),
        (&["-P", "80,8080"], Box::new(|_: &Mixed| true)),
        (
            &["--method", "post,DELETE"],
            Box::new(|m: &Mixed| m.method == "POST" || m.method == "DELETE"),
        ),
        (
            &["--host", "www.example.com"],
            Box::new(|m: &Mixed| m.host == Some("www.example.com")),
        ),
        (
            &["--host", "api.example.com"],
            Box::new(|m: &Mixed| m.path == "/api/x?k=v"),
        ),
        (
            &["--host", "api.example.com:9999"],
            Box::new(|_: &Mixed| false),
        ),
        (
            &["--path-prefix", "/api/"],
            Box::new(|m: &Mixed| m.path.starts_with("/api/")),
        ),
        (&["-4"], Box::new(|m: &Mixed| m.server.is_ipv4())),
        (&["-6"], Box::new(|m: &Mixed| m.server.is_ipv6())),
        (
            &["--src", "10.77.0.11"],
            Box::new(move |m: &Mixed| in4(m.client, IP4_A2)),
        ),
        (
            &["--src", "fd00:77::11/128"],
            Box::new(|m: &Mixed| m.client == IpAddr::V6(IP6_A2)),
        ),
        (
            &["--dst", "10.77.0.12/32"],
            Box::new(move |m: &Mixed| in4(m.server, IP4_B2)),
        ),
        (
            &["--dst", "fd00:77::/64"],
            Box::new(|m: &Mixed| m.server.is_ipv6()),
        ),
        (
            &["-6", "-P", "8080", "--method", "DELETE"],
            Box::new(|m: &Mixed| m.server.is_ipv6() && m.port == 8080 && m.method == "DELETE"),
        ),
    ];
    for (args, keep) in cases {
        let mut all = vec!["http", "-i", IF_B, "--json"];
        all.extend_from_slice(args);
        let t = Tracer::start(&lab.b, &all);
        let mix = traffic();
        send_traffic(&lab, &mix);
        let out = t.stop();
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        let want: Vec<Seen> = mix
            .iter()
            .filter(|m| keep(m))
            .map(|m| answered(m.method, m.path, &m.host(), m.status))
            .collect();
        let lines = out.of_type("http");
        let got: Vec<Seen> = lines.iter().map(seen).collect();
        assert_eq!(got, want, "{args:?}");
        for (v, m) in lines.iter().zip(mix.iter().filter(|m| keep(m))) {
            assert_eq!(v["client"], m.client.to_string(), "{args:?}");
            assert_eq!(v["server"], m.server.to_string(), "{args:?}");
            assert_eq!(v["sport"], m.port, "{args:?}");
        }
        let sum = out.summary();
        assert_counters_add_up(&sum);
        // kernel filters drop whole flows; the others skip requests after pairing
        let user_side = args
            .iter()
            .any(|a| ["--method", "--host", "--path-prefix"].contains(a));
        if !user_side {
            assert_eq!(sum["requests"], want.len() as u64, "{args:?}: {sum:?}");
        } else {
            assert_eq!(
                sum["requests"] - sum["skipped"],
                want.len() as u64,
                "{args:?}: {sum:?}"
            );
        }
        assert_eq!(sum["unmatched"], 0, "{args:?}: {sum:?}");
    }
}

#[test]
fn no_query_keeps_query_strings_out_of_the_output() {
    require_privileges();
    require_tool("curl", "--version");
    let lab = Lab::new();
    lab.a
        .ip(&["addr", "add", &format!("{IP4_A2}/24"), "dev", IF_A]);
    lab.a
        .ip(&["addr", "add", &format!("{IP6_A2}/64"), "dev", IF_A, "nodad"]);
    lab.b
        .ip(&["addr", "add", &format!("{IP4_B2}/24"), "dev", IF_B]);
    lab.b
        .ip(&["addr", "add", &format!("{IP6_B2}/64"), "dev", IF_B, "nodad"]);
    let _srv = httpd(&lab.b, &["80", "8080"]);
    for format in [&["--json"][..], &[]] {
        let mut args = vec!["http", "-i", IF_B, "--no-query"];
        args.extend_from_slice(format);
        let t = Tracer::start(&lab.b, &args);
        let mix = traffic();
        send_traffic(&lab, &mix);
        let out = t.stop();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let text = out.lines.join("\n");
        for secret in ["?", "token", "s3cret", "x=1", "k=v"] {
            assert!(!text.contains(secret), "{secret:?} printed: {text}");
        }
        if format.is_empty() {
            // table: header and one line per request, paths without queries
            assert!(out.lines[0].starts_with("TIME(UTC)"), "{:?}", out.lines);
            assert_eq!(out.lines.len(), 1 + mix.len(), "{:?}", out.lines);
            for (line, m) in out.lines[1..].iter().zip(&mix) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                let want = [
                    m.method.to_string(),
                    m.status.to_string(),
                    cols[5].to_string(),
                    m.host(),
                    m.path.split('?').next().unwrap().to_string(),
                ];
                assert_eq!(cols[3..], want, "{line}");
                assert!(cols[5].parse::<f64>().is_ok(), "latency: {line}");
            }
        } else {
            let paths: Vec<String> = out
                .of_type("http")
                .iter()
                .map(|v| v["path"].as_str().unwrap().to_string())
                .collect();
            let want: Vec<&str> = mix
                .iter()
                .map(|m| m.path.split('?').next().unwrap())
                .collect();
            assert_eq!(paths, want);
        }
    }
}

#[test]
fn unanswered_requests_end_as_timeouts_or_pending() {
    require_privileges();
    require_tool("curl", "--version");
    let lab = Lab::new();
    let _srv = httpd(&lab.b, &["80"]);
    let server = SocketAddr::new(IpAddr::V4(IP4_B), 80);
    let h = host80(server.ip());
    // A request the server never answers, on a connection that stays open.
    let hang = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {h}\r\n\r\n");
        lab.a.run_in(move || {
            let mut c =
                TcpStream::connect_timeout(&server, Duration::from_secs(10)).expect("connect");
            c.write_all(req.as_bytes()).expect("write");
            c
        })
    };
    let unanswered = |event: &str, path: &str| Seen {
        event: event.into(),
        method: "GET".into(),
        path: path.into(),
        host: Some(h.clone()),
        status: None,
    };

    // --timeout 1: reported about a second later, while the connection waits
    let t = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json", "--timeout", "1"]);
    let started = Instant::now();
    let c1 = hang("/hang/1");
    t.wait_json("http", 1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "timed out after {waited:?}"
    );
    // answered ones are not disturbed by it
    let ok = curl(&lab.a, &[], &[&url(server.ip(), 80, "/fine")]);
    assert!(ok[0].starts_with("200"));
    let out = t.stop();
    drop(c1);
    let got: Vec<Seen> = out.of_type("http").iter().map(seen).collect();
    assert_eq!(
        got,
        vec![
            unanswered("timeout", "/hang/1"),
            answered("GET", "/fine", &h, 200)
        ]
    );

    // the default timeout (30 s): still waiting at exit
    let t = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json"]);
    let c2 = hang("/hang/2");
    // sent after /hang/2: once it is answered, /hang/2 has been seen
    let ok = curl(&lab.a, &[], &[&url(server.ip(), 80, "/fine")]);
    assert!(ok[0].starts_with("200"));
    let out = t.stop();
    drop(c2);
    let got: Vec<Seen> = out.of_type("http").iter().map(seen).collect();
    assert_eq!(
        got,
        vec![
            answered("GET", "/fine", &h, 200),
            unanswered("pending", "/hang/2")
        ]
    );
    for v in out.of_type("http") {
        if v["event"] != "answered" {
            assert!(v["latency_ms"].is_null() && v["status"].is_null(), "{v}");
        }
    }
    let sum = out.summary();
    assert_counters_add_up(&sum);
    assert_eq!(
        (sum["timeouts"], sum["pending"], sum["answered"]),
        (0, 1, 1),
        "{sum:?}"
    );
}

#[test]
fn request_lines_longer_than_what_is_seen_are_counted_and_do_not_disturb_pairing() {
    require_privileges();
    require_tool("curl", "--version");
    let lab = Lab::new();
    let _srv = httpd(&lab.b, &["80"]);
    let on_b = Tracer::start(&lab.b, &["http", "-i", IF_B, "--json"]);
    let on_a = Tracer::start(&lab.a, &["http", "-i", IF_A, "--json"]);
    // longer than a segment (server side) and than the window (client side)
    let huge = format!("/huge/{}", "z".repeat(3000));
    let server = IpAddr::V4(IP4_B);
    let out = curl(
        &lab.a,
        &[],
        &[
            &url(server, 80, &huge),
            &url(server, 80, "/status/201"),
            &url(server, 80, "/after"),
        ],
    );
    assert_eq!(out.len(), 3);
    let h = host80(server);
    for t in [on_b, on_a] {
        let out = t.stop();
        let got: Vec<Seen> = out.of_type("http").iter().map(seen).collect();
        assert_eq!(
            got,
            vec![
                answered("GET", "/status/201", &h, 201),
                answered("GET", "/after", &h, 200)
            ]
        );
        let sum = out.summary();
        assert_counters_add_up(&sum);
        assert_eq!(
            (sum["truncated"], sum["requests"], sum["unmatched"]),
            (1, 2, 0),
            "{sum:?}"
        );
    }
}

#[test]
fn usage_and_runtime_errors_for_http() {
    require_privileges();
    let r = wirescope(&["http", "-i", "ws-nosuch0"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no such interface: ws-nosuch0"),
        "{}",
        r.stderr
    );
    for args in [
        &["http", "-i", "lo", "--method", "FETCH"][..],
        &["http", "-i", "lo", "--timeout", "-1"],
        &["http", "-i", "lo", "-6", "--dst", "10.0.0.1"],
        &["http", "-i", "lo", "-P", "1,2,3,4,5,6,7,8,9"],
        &["http", "-i", "lo", "--path-prefix", ""],
    ] {
        let r = wirescope(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error:"), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    // a clean end leaves nothing attached
    let lab = Lab::new();
    let t = Tracer::start(&lab.b, &["http", "-i", IF_B]);
    assert!(lab.b.ip(&["link", "show", IF_B]).contains("xdp"));
    let out = t.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert!(!lab.b.ip(&["link", "show", IF_B]).contains("xdp"));
    assert!(!lab
        .b
        .exec("tc", &["qdisc", "show", "dev", IF_B])
        .contains("clsact"));
}
