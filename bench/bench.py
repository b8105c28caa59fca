#!/usr/bin/env python3
"""`make bench`: wirescope side by side with the tools users would pick instead
(no tracer, bpftrace, xdpdump, tcpdump), on the same work in the same run.

Each workload runs its variants in alternation (baseline, tracer A, tracer B,
baseline, ...) several times; the report gives medians, the spread (min-max),
and ratios to the no-tracer run of the same round. Figures are goals, not
assertions: a missed goal is reported, never a failure.

Traffic stays on loopback or between network namespaces made here; every
loop is bounded in count and time; namespaces and processes are removed on
every exit path.

    python3 bench/bench.py [--quick] [--bin PATH] [--out BENCHMARKS.md] [--only NAME,...]
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lab  # noqa: E402
import testrun  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
READY_WS = r"Ctrl-C to end"  # what every wirescope command prints once attached
READY_BT = r"^Attaching \d+ probes?"
MiB = 1024 * 1024


class Settings:
    def __init__(self, quick):
        self.quick = quick
        self.reps = 1 if quick else 3  # rounds of alternation per workload
        self.startup_reps = 2 if quick else 5
        self.seconds = 2 if quick else 5  # length of one iperf3/ab run
        self.pipeline_events = 1_000_000 if quick else 3_000_000
        self.pipeline_rate = 1_000_000  # events/s: the goal
        self.ladder = [] if quick else [1_500_000, 2_000_000, 3_000_000]
        self.callgrind = not quick


# ---------------------------------------------------------------- helpers


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def fmt(v, unit="", digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        s = f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    else:
        s = f"{v:,}"
    return s + unit


def fmt_range(xs, unit="", digits=3):
    lo, hi = spread(xs)
    if lo is None:
        return "-"
    return f"{fmt(lo, unit, digits)} - {fmt(hi, unit, digits)}"


def summary_counts(stderr):
    """The counters of wirescope's exit line: 'wirescope: <why>: N seen, N filtered, ...'."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("wirescope:") and " seen, " in line:
            return {k: int(v) for v, k in re.findall(r"(\d+) (\w+)", line.split(":", 2)[2])}
    return {}


def has_command(ws, cmd):
    return subprocess.run([ws, cmd, "--help"], capture_output=True).returncode == 0


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


# ---------------------------------------------------------------- tracers


class Variant:
    """One column of a workload: no tracer, or a tracer command line.
    `{ws}`, `{if}`, `{tmp}` and `{bench}` are filled in when it starts;
    `ns`: "b" runs it in the pair's namespace b (packet tracers), "ctx" in the
    workload's own namespace (ctx.ns)."""

    def __init__(self, name, cmd=None, ready=None, ns=None, requires=None, counts=None):
        self.name = name
        self.cmd = cmd
        self.ready = ready
        self.ns = ns
        self.requires = requires  # wirescope command this variant needs
        self.counts = counts  # how to read what it captured: "ws", "pcap-tool"

    @property
    def baseline(self):
        return self.cmd is None


def start_tracer(v, ctx):
    if v.baseline:
        return None
    args = [a.format(ws=ctx.ws, tmp=ctx.tmp, bench=HERE, **{"if": ctx.ifname})
            for a in v.cmd]
    ns = ctx.pair.b if (v.ns == "b" and ctx.pair) else None
    if v.ns == "ctx":
        ns = ctx.ns
    p = lab.Proc(args, ns=ns, watch_stdout=args[0] == "bpftrace")
    p.wait_line(v.ready, timeout=60)
    return p


def stop_tracer(p, v, r):
    """Stop a tracer and add what it tells to the result `r`."""
    if p is None:
        return
    code = p.stop()
    u, s = p.cpu
    r["tracer_cpu_s"] = u + s
    r["tracer_user_s"] = u
    r["tracer_wall_s"] = p.wall
    r["rss_kib"] = p.maxrss_kib
    err = p.stderr()
    if v.counts == "ws":
        c = summary_counts(err)
        r["captured"] = c.get("delivered")
        r["lost"] = c.get("lost")
        r["seen"] = c.get("seen")
    elif v.counts == "pcap-tool":
        m = re.search(r"(\d+) packets? captured", err)
        d = re.search(r"(\d+) packets? dropped by (kernel|perf ring)", err)
        r["captured"] = int(m.group(1)) if m else None
        r["lost"] = int(d.group(1)) if d else None
    if code not in (0, None) and v.counts == "ws":
        r["error"] = f"exit {code}: {err[-300:]}"


class Ctx:
    def __init__(self, ws, tmp, settings, compare=None):
        self.ws = ws
        self.compare = compare
        self.tmp = tmp
        self.s = settings
        self.pair = None
        self.ifname = "lo"


# ---------------------------------------------------------------- workloads
# Each workload: a name, the wirescope commands it needs, its variants (the
# first is the baseline where there is one), and functions to set up, drive
# the load once, and judge the goals. To add a row, add a Variant; to add a
# workload, add an entry to WORKLOADS.


def iperf3_json(out):
    import json
    data = json.loads(out)
    end = data.get("end", {})
    bps = (end.get("sum_received") or end.get("sum") or {}).get("bits_per_second")
    return bps / 1e9 if bps else None


def veth_setup(ctx):
    ctx.pair = lab.Pair("veth")
    ctx.ifname = ctx.pair.if_b
    ctx.server = lab.Proc(["iperf3", "-s", "-B", lab.Pair.B_IP, "-p", "5201"], ns=ctx.pair.b,
                          stdout=subprocess.DEVNULL)
    time.sleep(0.5)


def veth_load(ctx, v, tracer, r):
    before = ctx.pair.counters_b()
    out = lab.sh("iperf3", "-c", lab.Pair.B_IP, "-p", "5201", "-t", ctx.s.seconds, "-J",
                 ns=ctx.pair.a, timeout=ctx.s.seconds + 30)
    after = ctx.pair.counters_b()
    r["value"] = iperf3_json(out)
    rx, tx = after[0] - before[0], after[1] - before[1]
    # xdpdump sees ingress only; the others both directions
    r["wire"] = rx if v.name.startswith("xdpdump") else rx + tx


def veth_after_run(ctx, v, r):
    ctx.pair.assert_clean()
    for f in os.listdir(ctx.tmp):
        if f.endswith(".pcap"):
            os.remove(os.path.join(ctx.tmp, f))


def veth_teardown(ctx):
    ctx.server.stop()
    ctx.pair.delete()
    ctx.pair = None


def veth_goals(res, base):
    out = []
    tcp = res.get("tcpdump -w")
    if not tcp:
        return ["tcpdump did not run: no comparison"]
    tcp_cap = median(x.get("capture") for x in tcp)
    tcp_ratio = median(x.get("ratio") for x in tcp)
    for name in ("wirescope packets --json", "wirescope packets --pcap",
                 "wirescope packets --json --xdp-mode generic"):
        rs = res.get(name)
        if not rs:
            continue
        cap = median(x.get("capture") for x in rs)
        ratio = median(x.get("ratio") for x in rs)
        ok_cap = cap is not None and tcp_cap is not None and cap >= tcp_cap
        ok_speed = ratio is not None and tcp_ratio is not None and ratio > tcp_ratio
        out.append(f"{name}: captures {fmt(cap)} of the packets (tcpdump {fmt(tcp_cap)}): "
                   f"**{'met' if ok_cap else 'not met'}**; throughput {fmt(ratio)} of no tracer "
                   f"(tcpdump {fmt(tcp_ratio)}), less slowdown than tcpdump: "
                   f"**{'met' if ok_speed else 'not met'}**")
    return out


def netns_setup(ctx):
    """One namespace of its own; the load runs on its loopback."""
    ctx.ns = f"wsb-lo-{os.getpid()}"
    lab.sh("ip", "netns", "add", ctx.ns)
    lab._namespaces.append(ctx.ns)
    lab.sh("ip", "link", "set", "lo", "up", ns=ctx.ns)


def netns_teardown(ctx):
    subprocess.run(["ip", "netns", "del", ctx.ns], capture_output=True)
    if ctx.ns in lab._namespaces:
        lab._namespaces.remove(ctx.ns)


NGINX_CONF = """
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen 127.0.0.1:18080;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def conn_setup(ctx):
    netns_setup(ctx)
    conf = os.path.join(ctx.tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=ctx.tmp))
    ctx.server = lab.Proc(["nginx", "-c", conf, "-p", ctx.tmp], ns=ctx.ns)
    deadline = time.time() + 10
    while time.time() < deadline:
        r = subprocess.run(["ip", "netns", "exec", ctx.ns, "ab", "-q", "-n", "1",
                            "http://127.0.0.1:18080/"], capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("nginx did not answer: " + ctx.server.stderr()[-300:])


def conn_load(ctx, v, tracer, r):
    # no keep-alive (ab's default): every request is a new TCP connection
    out = lab.sh("ab", "-q", "-t", ctx.s.seconds, "-n", "10000000", "-c", "8",
                 "-s", "5", "http://127.0.0.1:18080/", ns=ctx.ns, timeout=ctx.s.seconds + 30)
    m = re.search(r"Requests per second:\s+([\d.]+)", out)
    r["value"] = float(m.group(1)) if m else None


def conn_teardown(ctx):
    ctx.server.stop(timeout=10)
    netns_teardown(ctx)


def cpu_pct(x):
    return 100 * x["tracer_cpu_s"] / x["tracer_wall_s"] if x.get("tracer_wall_s") else None


def conn_goals(res, base):
    ws, bt = res.get("wirescope conn --json"), res.get("bpftrace conn.bt")
    if not ws or not bt:
        return ["wirescope conn or bpftrace did not run: no comparison"]
    ratio, bt_ratio = median(x.get("ratio") for x in ws), median(x.get("ratio") for x in bt)
    cpu, bt_cpu = median(cpu_pct(x) for x in ws), median(cpu_pct(x) for x in bt)
    ok1 = ratio is not None and ratio >= 0.97
    ok2 = ratio is not None and bt_ratio is not None and ratio > bt_ratio
    ok3 = cpu is not None and bt_cpu is not None and cpu < bt_cpu
    return [f"throughput >= 97% of no tracer: {fmt(ratio)}: **{'met' if ok1 else 'not met'}**",
            f"above bpftrace's ({fmt(bt_ratio)}): **{'met' if ok2 else 'not met'}**",
            f"tracer CPU {fmt(cpu, '%')} below bpftrace's {fmt(bt_cpu, '%')}: "
            f"**{'met' if ok3 else 'not met'}**"]


def sendlat_setup(ctx):
    netns_setup(ctx)
    ctx.server = lab.Proc(["iperf3", "-s", "-B", "127.0.0.1", "-p", "5202"], ns=ctx.ns)
    time.sleep(0.5)


def sendlat_load(ctx, v, tracer, r):
    # many small writes: 256 bytes each
    out = lab.sh("iperf3", "-c", "127.0.0.1", "-p", "5202", "-l", "256", "-t", ctx.s.seconds,
                 "-J", ns=ctx.ns, timeout=ctx.s.seconds + 30)
    r["value"] = iperf3_json(out)


def sendlat_teardown(ctx):
    ctx.server.stop()
    netns_teardown(ctx)


def sendlat_goals(res, base):
    bt = res.get("bpftrace sendlat.bt")
    bt_ratio = median(x.get("ratio") for x in bt) if bt else None
    out = []
    for name in ("wirescope sendlat --hist", "wirescope sendlat --min-us 1000"):
        rs = res.get(name)
        if not rs:
            continue
        ratio = median(x.get("ratio") for x in rs)
        ok1 = ratio is not None and ratio >= 0.97
        ok2 = ratio is not None and bt_ratio is not None and ratio > bt_ratio
        out.append(f"{name}: {fmt(ratio)} of no tracer, >= 97%: **{'met' if ok1 else 'not met'}**"
                   f"; ahead of bpftrace ({fmt(bt_ratio)}): **{'met' if ok2 else 'not met'}**")
    return out


WORKLOADS = [
    dict(
        name="conn",
        title="New TCP connections per second against a local nginx (ab, no keep-alive)",
        requires="conn",
        unit="requests/s",
        setup=conn_setup, load=conn_load, teardown=conn_teardown, goals=conn_goals,
        variants=[
            Variant("no tracer"),
            Variant("wirescope conn --json", ["{ws}", "conn", "--json"], READY_WS,
                    requires="conn", counts="ws"),
            Variant("bpftrace conn.bt", ["bpftrace", "{bench}/conn.bt"], READY_BT),
            # every request and response on nginx's loopback, for its cost and memory
            Variant("wirescope http -i lo --json", ["{ws}", "http", "-i", "lo", "--json"],
                    READY_WS, ns="ctx", requires="http", counts="ws"),
        ],
        goal="throughput >= 97% of no tracer and above bpftrace's; tracer CPU below bpftrace's",
    ),
    dict(
        name="veth",
        title="iperf3 (TCP) over a veth pair between two namespaces, tracers on the receiver's end",
        requires="packets",
        unit="Gbit/s",
        setup=veth_setup, load=veth_load, teardown=veth_teardown, goals=veth_goals,
        after_run=veth_after_run,
        variants=[
            Variant("no tracer"),
            Variant("wirescope packets --json",
                    ["{ws}", "packets", "-i", "{if}", "--direction", "both", "--json"],
                    READY_WS, ns="b", requires="packets", counts="ws"),
            Variant("wirescope packets --pcap",
                    ["{ws}", "packets", "-i", "{if}", "--direction", "both", "--pcap",
                     "{tmp}/ws.pcap"], READY_WS, ns="b", requires="packets", counts="ws"),
            # Native XDP on a veth end makes the kernel turn off segmentation
            # offload (GSO) on its peer; generic XDP leaves the peer as it is.
            Variant("wirescope packets --json --xdp-mode generic",
                    ["{ws}", "packets", "-i", "{if}", "--direction", "both", "--json",
                     "--xdp-mode", "generic"], READY_WS, ns="b", requires="packets",
                    counts="ws"),
            Variant("xdpdump -w", ["xdpdump", "-i", "{if}", "--load-xdp-program", "-s", "1536",
                                   "-w", "{tmp}/xdpdump.pcap"], r"listening on", ns="b",
                    counts="pcap-tool"),
            Variant("tcpdump -w", ["tcpdump", "-n", "-i", "{if}", "-s", "1536",
                                   "-w", "{tmp}/tcpdump.pcap"], r"listening on", ns="b",
                    counts="pcap-tool"),
        ],
        goal="capture everything that tcpdump captures, with less slowdown than tcpdump",
    ),
    dict(
        name="sendlat",
        title="iperf3 on loopback, many small writes (256 bytes)",
        requires="sendlat",
        unit="Gbit/s",
        setup=sendlat_setup, load=sendlat_load, teardown=sendlat_teardown, goals=sendlat_goals,
        variants=[
            Variant("no tracer"),
            Variant("wirescope sendlat --hist", ["{ws}", "sendlat", "--hist"], READY_WS,
                    requires="sendlat", counts="ws"),
            Variant("wirescope sendlat --min-us 1000", ["{ws}", "sendlat", "--min-us", "1000"],
                    READY_WS, requires="sendlat", counts="ws"),
            Variant("bpftrace sendlat.bt", ["bpftrace", "{bench}/sendlat.bt"], READY_BT),
        ],
        goal=">= 97% of no tracer, ahead of bpftrace",
    ),
]


def run_workload(w, ctx, report, memory):
    """Run the rounds of one workload; append its section to `report`."""
    s = ctx.s
    missing = w["requires"] and not has_command(ctx.ws, w["requires"])
    report.append(f"### {w['title']}\n")
    report.append(f"Goal: {w['goal']}.\n")
    if missing:
        report.append(f"Not available: wirescope has no `{w['requires']}` command yet "
                      f"(`wirescope {w['requires']} --help` fails); this workload was skipped.\n")
        print(f"bench: {w['name']}: skipped, no `{w['requires']}` command", flush=True)
        return
    load0 = lab.loadavg()
    t0 = time.time()
    w["setup"](ctx)
    results = {v.name: [] for v in w["variants"]}
    try:
        for rnd in range(s.reps):
            for v in w["variants"]:
                r = {"round": rnd}
                tracer = start_tracer(v, ctx)
                try:
                    w["load"](ctx, v, tracer, r)
                finally:
                    time.sleep(0.3)  # let the last packets reach the tracer
                    stop_tracer(tracer, v, r)
                if "after_run" in w:
                    w["after_run"](ctx, v, r)
                results[v.name].append(r)
                if r.get("rss_kib"):
                    memory.setdefault(v.name, []).append(r["rss_kib"])
                print(f"bench: {w['name']} round {rnd + 1}/{s.reps}: {v.name}: "
                      f"{fmt(r.get('value'))} {w['unit']}", flush=True)
    finally:
        w["teardown"](ctx)
    base_name = w["variants"][0].name
    for v in w["variants"]:
        for r in results[v.name]:
            b = results[base_name][r["round"]].get("value")
            r["ratio"] = r["value"] / b if r.get("value") and b else None
            if r.get("captured") is not None and r.get("wire"):
                r["capture"] = r["captured"] / r["wire"]
    has_capture = any("wire" in r for rs in results.values() for r in rs)
    head = f"| variant | {w['unit']} (median) | min - max | ratio to no tracer (median, min - max) | tracer CPU % |"
    sep = "| --- | --- | --- | --- | --- |"
    if has_capture:
        head += " captured / packets on the wire (median) | lost or dropped (max) |"
        sep += " --- | --- |"
    report += [head, sep]
    for v in w["variants"]:
        rs = results[v.name]
        vals = [r.get("value") for r in rs]
        ratios = [r.get("ratio") for r in rs]
        row = (f"| {v.name} | {fmt(median(vals))} | {fmt_range(vals)} | "
               f"{fmt(median(ratios))} ({fmt_range(ratios)}) | "
               f"{fmt(median(cpu_pct(r) for r in rs) if not v.baseline else None, '%')} |")
        if has_capture:
            caps = [r.get("capture") for r in rs]
            lost = [r.get("lost") for r in rs if r.get("lost") is not None]
            capd = median(r.get("captured") for r in rs)
            wire = median(r.get("wire") for r in rs)
            row += (f" {fmt(median(caps), digits=4)} ({fmt(capd)} of {fmt(wire)}) | "
                    f"{fmt(max(lost)) if lost else '-'} |")
        report.append(row)
        errs = [r["error"] for r in rs if r.get("error")]
        if errs:
            report.append(f"\n{v.name} failed: `{errs[0]}`\n")
    report.append("")
    report += [f"- {g}" for g in w["goals"](results, base_name)]
    report.append(f"\n{s.reps} round(s) of {s.seconds} s each; load average before "
                  f"{load0}, after {lab.loadavg()}; took {time.time() - t0:.0f} s.\n")


# ---------------------------------------------------------------- event pipeline


def pipeline_run(ctx, fmt_json, total, rate, wrap=(), ws=None):
    """wirescope packets on b's veth end; the test-run source feeds its XDP program."""
    args = list(wrap) + [ws or ctx.ws, "packets", "-i", ctx.pair.if_b] + (["--json"] if fmt_json else [])
    p = lab.Proc(args, ns=ctx.pair.b, stdout=subprocess.DEVNULL)
    try:
        p.wait_line(READY_WS, timeout=120)
        prog = ctx.pair.xdp_prog_id_b()
        src = testrun.Source(prog)
        try:
            n, secs = src.emit(total, rate, max_seconds=60)
        finally:
            src.close()
        time.sleep(0.5 if not wrap else 3)
    finally:
        p.stop(timeout=60)
    ctx.pair.assert_clean()
    c = summary_counts(p.stderr())
    d = c.get("delivered", 0)
    u, s = p.cpu
    return {"emitted": n, "secs": secs, "delivered": d, "lost": c.get("lost"),
            "rate": d / secs if secs else None,
            "user_ns": u * 1e9 / d if d else None, "sys_ns": s * 1e9 / d if d else None,
            "rss_kib": p.maxrss_kib, "proc": p}


def callgrind_ir(ctx, fmt_json, total, rate, ws=None):
    """User-space instructions of one run under callgrind (kernel work not counted)."""
    out = os.path.join(ctx.tmp, "callgrind.out")
    r = pipeline_run(ctx, fmt_json, total, rate, ws=ws,
                     wrap=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    ir = None
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                ir = int(line.split()[1])
    os.remove(out)
    return ir, r


def run_pipeline(ctx, report, memory):
    s = ctx.s
    report.append("### Event pipeline: events delivered through the ring buffer to the output\n")
    report.append("Goal: >= 1M events/s delivered with zero loss, <= 300 ns of user CPU per event.\n")
    report.append(
        "Source: `bench/testrun.py` runs wirescope's own loaded XDP program with "
        "BPF_PROG_TEST_RUN on a 60-byte UDP frame, in batches of 20,000 runs paced to a "
        "target rate; each run is one packet event (the kernel side is the real program; "
        "no network stack around it, so the source is not the bottleneck). wirescope "
        "`packets -i <veth>` writes to /dev/null with the default 4 MiB ring buffer. "
        "Delivered and lost come from its summary line; CPU time from wait4(2).\n")
    load0 = lab.loadavg()
    t0 = time.time()
    ctx.pair = lab.Pair("pipe")
    rows = {True: [], False: []}
    ladder = {True: [], False: []}
    irs = {}
    # --compare BIN: the same runs with another build, alternating with this one
    other = {True: [], False: []}
    other_irs = {}
    try:
        for rnd in range(s.reps):
            for fj in (True, False):
                if ctx.compare:
                    other[fj].append(pipeline_run(ctx, fj, s.pipeline_events, s.pipeline_rate,
                                                  ws=ctx.compare))
                r = pipeline_run(ctx, fj, s.pipeline_events, s.pipeline_rate)
                rows[fj].append(r)
                memory.setdefault("wirescope packets --json" if fj else "wirescope packets (table)",
                                  []).append(r["rss_kib"])
                print(f"bench: pipeline round {rnd + 1}/{s.reps}: {'json' if fj else 'table'}: "
                      f"{r['delivered']} delivered, {r['lost']} lost, "
                      f"{fmt(r['user_ns'])} ns user/event", flush=True)
        for fj in (True, False):
            for rate in s.ladder + [None]:
                r = pipeline_run(ctx, fj, s.pipeline_events, rate)
                ladder[fj].append((rate, r))
                print(f"bench: pipeline ladder {'json' if fj else 'table'} at "
                      f"{rate or 'full speed'}: {r['delivered']} delivered, {r['lost']} lost",
                      flush=True)
        if s.callgrind and shutil.which("valgrind"):
            for fj in (True, False):
                small, big = 20_000, 120_000
                ir1, _ = callgrind_ir(ctx, fj, small, 20_000)
                ir2, _ = callgrind_ir(ctx, fj, big, 20_000)
                if ir1 and ir2:
                    irs[fj] = (ir2 - ir1) / (big - small)
                if ctx.compare:
                    ir1, _ = callgrind_ir(ctx, fj, small, 20_000, ws=ctx.compare)
                    ir2, _ = callgrind_ir(ctx, fj, big, 20_000, ws=ctx.compare)
                    if ir1 and ir2:
                        other_irs[fj] = (ir2 - ir1) / (big - small)
                print(f"bench: callgrind {'json' if fj else 'table'}: "
                      f"{fmt(irs.get(fj))} instructions/event", flush=True)
    finally:
        ctx.pair.delete()
        ctx.pair = None
    report.append(f"Paced at {s.pipeline_rate:,} events/s, {s.pipeline_events:,} events per run, "
                  f"{s.reps} round(s), JSON and table alternating:\n")
    report.append("| output | delivered events/s (median) | min - max | lost (max of runs) | "
                  "user ns/event (median) | min - max | system ns/event (median) | "
                  "user instructions/event (callgrind) | peak RSS |")
    report.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [(fj, rows[fj], irs, "") for fj in (True, False)]
    if ctx.compare:
        lines += [(fj, other[fj], other_irs, f" ({os.path.basename(ctx.compare)})")
                  for fj in (True, False)]
    for fj, rs, ir, label in lines:
        report.append(
            f"| {'--json' if fj else 'table'}{label} | {fmt(median(r['rate'] for r in rs))} | "
            f"{fmt_range([r['rate'] for r in rs])} | {fmt(max(r['lost'] or 0 for r in rs))} | "
            f"{fmt(median(r['user_ns'] for r in rs))} | {fmt_range([r['user_ns'] for r in rs])} | "
            f"{fmt(median(r['sys_ns'] for r in rs))} | {fmt(ir.get(fj), digits=4)} | "
            f"{fmt(max(r['rss_kib'] for r in rs) / 1024, ' MiB')} |")
    if any(ladder.values()):
        report.append("\nHigher rates, one run each (stops being zero-loss where the consumer "
                      "or the CPU it shares with the source runs out):\n")
        report.append("| output | target events/s | source achieved | delivered events/s | lost |")
        report.append("| --- | --- | --- | --- | --- |")
        for fj in (True, False):
            for rate, r in ladder[fj]:
                report.append(f"| {'--json' if fj else 'table'} | "
                              f"{fmt(rate) if rate else 'full speed'} | "
                              f"{fmt(r['emitted'] / r['secs'])} | {fmt(r['rate'])} | "
                              f"{fmt(r['lost'])} |")
    report.append("")
    for fj in (True, False):
        rs = rows[fj]
        zero = all((r["lost"] or 0) == 0 for r in rs)
        rate = median(r["rate"] for r in rs)
        ok1 = zero and rate is not None and rate >= 0.99 * s.pipeline_rate
        ns = median(r["user_ns"] for r in rs)
        ok2 = ns is not None and ns <= 300
        best = max([rt for rt, r in ladder[fj] if rt and (r["lost"] or 0) == 0] +
                   ([s.pipeline_rate] if zero else []), default=None)
        report.append(f"- {'--json' if fj else 'table'}: {fmt(rate)} events/s delivered, "
                      f"{'zero loss in every run' if zero else 'losses in some run'}: "
                      f"**{'met' if ok1 else 'not met'}** (highest zero-loss rate tried: "
                      f"{fmt(best)}); {fmt(ns)} ns of user CPU per event: "
                      f"**{'met' if ok2 else 'not met'}**")
    report.append(f"\nUser ns/event is the process's user CPU time (wait4) over events "
                  f"delivered: it moves with the load of the machine. The callgrind column "
                  f"counts user-space instructions per event (difference of a 20,000- and a "
                  f"120,000-event run, so start-up cancels out) and does not depend on load. "
                  f"Load average before {load0}, after {lab.loadavg()}; took "
                  f"{time.time() - t0:.0f} s.\n")


# ---------------------------------------------------------------- start-up


def run_startup(ctx, report, memory):
    s = ctx.s
    report.append("### Start-up: time from exec until attached and ready\n")
    report.append("Goal: <= 100 ms, and at least 10x faster than bpftrace (wirescope conn "
                  "against a bpftrace script on the same tracepoint).\n")
    report.append("wirescope is ready when it prints `... Ctrl-C to end.` on stderr (after "
                  "attaching); bpftrace when it prints `Attaching N probes...` (before it "
                  "attaches, which favours bpftrace).\n")
    load0 = lab.loadavg()
    ctx.pair = lab.Pair("start")
    variants = [
        ("wirescope packets -i veth", [ctx.ws, "packets", "-i", ctx.pair.if_b], ctx.pair.b,
         READY_WS, "packets"),
        ("wirescope conn", [ctx.ws, "conn"], None, READY_WS, "conn"),
        ("bpftrace conn.bt", ["bpftrace", os.path.join(HERE, "conn.bt")], None, READY_BT, None),
    ]
    times = {name: [] for name, *_ in variants}
    cpu = {name: [] for name, *_ in variants}
    missing = {name: req for name, _, _, _, req in variants
               if req and not has_command(ctx.ws, req)}
    try:
        for _ in range(s.startup_reps):
            for name, args, ns, ready, req in variants:
                if name in missing:
                    continue
                p = lab.Proc(args, ns=ns, watch_stdout=args[0] == "bpftrace")
                try:
                    times[name].append(p.wait_line(ready, timeout=60))
                    cpu_ns = p.cpu_ns_now()
                    cpu[name].append(cpu_ns / 1e6 if cpu_ns is not None else None)
                finally:
                    p.stop()
                if name.startswith("wirescope"):
                    memory.setdefault(name, []).append(p.maxrss_kib)
        ctx.pair.assert_clean()
    finally:
        ctx.pair.delete()
        ctx.pair = None
    report.append("| command | ms to ready (median) | min - max | CPU ms until ready, main thread (median) |")
    report.append("| --- | --- | --- | --- |")
    for name, *_ in variants:
        if name in missing:
            report.append(f"| {name} | not available: wirescope has no `{missing[name]}` "
                          f"command yet | | |")
            continue
        ms = [t * 1000 for t in times[name]]
        report.append(f"| {name} | {fmt(median(ms))} | {fmt_range(ms)} | {fmt(median(cpu[name]))} |")
    report.append("")
    bt = median(times["bpftrace conn.bt"])
    for name in ("wirescope conn", "wirescope packets -i veth"):
        if name in missing:
            continue
        t = median(times[name])
        ok1, ok2 = t <= 0.1, bt is not None and t * 10 <= bt
        ref = "" if name == "wirescope conn" else " (for reference)"
        report.append(f"- {name}{ref}: {fmt(t * 1000)} ms <= 100 ms: "
                      f"**{'met' if ok1 else 'not met'}**; {fmt(bt / t if bt else None)}x "
                      f"faster than bpftrace: **{'met' if ok2 else 'not met'}**")
    if "wirescope conn" in missing:
        report.append("- wirescope conn: not available yet; the goal is judged once it exists.")
    report.append(f"\n{s.startup_reps} rounds, alternating; load average before {load0}, "
                  f"after {lab.loadavg()}. The wall time waits for the CPU when the machine is "
                  f"busy; the CPU time (from /proc/PID/schedstat at the ready line, kernel work "
                  f"such as BPF verification included) does not.\n")


# ---------------------------------------------------------------- report


def machine():
    model, cores = "?", os.cpu_count()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return model, cores, mem_kib


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round, short runs (~2 minutes)")
    ap.add_argument("--bin", default="target/x86_64-unknown-linux-gnu/release/wirescope")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--compare", metavar="BIN",
                    help="also run the event pipeline with this other wirescope build "
                         "(before/after a change), alternating with --bin")
    ap.add_argument("--only", default="", help="comma-separated: veth,pipeline,startup,conn,sendlat")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (network namespaces, BPF, bpftrace)")
    ws = os.path.abspath(a.bin)
    if not os.access(ws, os.X_OK):
        sys.exit(f"bench: no wirescope binary at {ws} (make build)")
    only = set(filter(None, a.only.split(",")))
    s = Settings(a.quick)
    lab.install_cleanup()
    lab.ensure_tracefs()
    tmp = tempfile.mkdtemp(prefix="wsbench-")
    lab.at_exit(lambda: shutil.rmtree(tmp, ignore_errors=True))
    ctx = Ctx(ws, tmp, s, os.path.abspath(a.compare) if a.compare else None)

    t_start = time.time()
    load_start = lab.loadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    sections, memory = [], {}

    def want(name):
        return not only or name in only

    by_name = {w["name"]: w for w in WORKLOADS}
    for name in ("conn", "veth", "sendlat"):
        if want(name):
            part = []
            run_workload(by_name[name], ctx, part, memory)
            sections.append(part)
    if want("pipeline"):
        part = []
        run_pipeline(ctx, part, memory)
        sections.append(part)
    if want("startup"):
        part = []
        run_startup(ctx, part, memory)
        sections.append(part)

    # memory: every wirescope command that exists, and the other tools for context
    mem = ["### Memory: peak RSS of every command\n",
           "Goal: <= 32 MiB for every wirescope command. Peak RSS (VmHWM of the tool's "
           "own image, read just before it is stopped) over all runs above, ring buffer "
           "pages included.\n",
           "| command | peak RSS (max of runs) | runs | goal |", "| --- | --- | --- | --- |"]
    for name in sorted(memory, key=lambda n: (not n.startswith("wirescope"), n)):
        kib = max(memory[name])
        goal = ("**met**" if kib <= 32 * 1024 else "**not met**") if name.startswith("wirescope") else "(reference)"
        mem.append(f"| {name} | {kib / 1024:.1f} MiB | {len(memory[name])} | {goal} |")
    for cmd in ("conn", "sendlat", "http"):
        if not has_command(ws, cmd):
            mem.append(f"| wirescope {cmd} | not available: wirescope has no `{cmd}` command yet | | |")
    sections.append(mem)

    model, cores, mem_kib = machine()
    took = time.time() - t_start
    head = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/bench.py`); do not edit by hand. Each workload runs "
        "its variants in alternation (no tracer, tracer A, tracer B, no tracer, ...) and "
        "compares only figures of the same run: ratios are taken within each round against "
        "that round's no-tracer run, then the median of those ratios is given. Figures are "
        "goals for a benchmark, not test assertions.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; mode: {'quick' if s.quick else 'full'}; "
        f"took {took / 60:.1f} min",
        f"- machine: {model}, {cores} cores, {mem_kib / MiB:.1f} GiB memory",
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- load average (1, 5, 15 min) at start: {load_start}; at end: {lab.loadavg()} "
        "(other work shared the machine: figures from wall time are noisy, ratios within a "
        "round less so, instruction counts not at all)",
        f"- wirescope: {version([ws, '--version'])}, {ws}",
        f"- tools: {version(['bpftrace', '--version'])}; {version(['xdpdump', '--version'])}; "
        f"{version(['tcpdump', '--version'])}; {version(['iperf3', '--version'])}; "
        f"{version(['nginx', '-v'])}; ab {version(['ab', '-V']).split()[-1]}; "
        f"{version(['valgrind', '--version'])}",
        "",
        "## Results",
        "",
    ]
    text = "\n".join(head + [line for part in sections for line in part]) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(f"bench: wrote {a.out} in {took / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
