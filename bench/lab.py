"""What the benchmarks run on: throwaway network namespaces joined by a veth
pair, processes whose CPU time and peak memory are measured, and a cleanup
that runs on every exit path (namespaces deleted, every process we started
ended by its own id)."""

import atexit
import json
import os
import re
import signal
import subprocess
import threading
import time

_children = []  # Proc objects still running
_namespaces = []  # names of namespaces we created
_cleanups = []  # other callables (temporary dirs)


def sh(*args, check=True, ns=None, **kw):
    """Run a command (in namespace `ns`), return its stdout."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def cleanup():
    for p in list(_children):
        p.kill()
    for ns in list(_namespaces):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        _namespaces.remove(ns)
    while _cleanups:
        _cleanups.pop()()


def _on_signal(signum, _frame):
    raise SystemExit(f"bench: stopped by signal {signum}")


def install_cleanup():
    atexit.register(cleanup)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)


def at_exit(fn):
    _cleanups.append(fn)


class Pair:
    """Namespaces `a` and `b` joined by a veth pair: a=10.203.0.1, b=10.203.0.2.
    IPv6 is off on both ends so that only the benchmark's own traffic flows."""

    A_IP = "10.203.0.1"
    B_IP = "10.203.0.2"

    def __init__(self, tag):
        pid = os.getpid()
        self.a = f"wsb-{tag}-a-{pid}"
        self.b = f"wsb-{tag}-b-{pid}"
        self.if_a = "wsba"
        self.if_b = "wsbb"
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
            _namespaces.append(ns)
        sh("ip", "link", "add", self.if_a, "netns", self.a, "type", "veth",
           "peer", "name", self.if_b, "netns", self.b)
        for ns, ifname, ip in ((self.a, self.if_a, self.A_IP), (self.b, self.if_b, self.B_IP)):
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=ns)
            sh("ip", "addr", "add", f"{ip}/24", "dev", ifname, ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "set", ifname, "up", ns=ns)

    def counters_b(self):
        """(rx packets, tx packets) of b's end of the veth."""
        info = json.loads(sh("ip", "-s", "-j", "link", "show", self.if_b, ns=self.b))
        st = info[0]["stats64"]
        return st["rx"]["packets"], st["tx"]["packets"]

    def xdp_prog_id_b(self):
        info = json.loads(sh("ip", "-j", "-d", "link", "show", self.if_b, ns=self.b))
        xdp = info[0].get("xdp")
        return xdp["prog"]["id"] if xdp else None

    def assert_clean(self):
        """Nothing of a tracer may stay attached after it ended."""
        for ns, ifname in ((self.a, self.if_a), (self.b, self.if_b)):
            link = sh("ip", "-d", "link", "show", ifname, ns=ns)
            if "xdp" in link.split("\n", 1)[0] or "prog/xdp" in link:
                raise RuntimeError(f"an XDP program was left on {ifname}")
            qdisc = sh("tc", "qdisc", "show", "dev", ifname, ns=ns)
            if "clsact" in qdisc:
                raise RuntimeError(f"a clsact qdisc was left on {ifname}")

    def delete(self):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            if ns in _namespaces:
                _namespaces.remove(ns)


class Proc:
    """A process whose stderr lines are collected with their arrival time, and
    whose CPU time and peak RSS come from wait4(2) when it ends."""

    def __init__(self, args, ns=None, stdout=subprocess.DEVNULL, env=None, watch_stdout=False):
        cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
        self.cmd = cmd
        self.lines = []  # (seconds since start, text)
        self.cond = threading.Condition()
        self.t0 = time.perf_counter()
        # `ip netns exec` execs the command in place: the pid is the tool's own.
        # watch_stdout: the ready line comes on stdout (bpftrace's "Attaching N probes");
        # the first lines are kept with stderr's, the rest read and thrown away.
        if watch_stdout:
            stdout = subprocess.PIPE
        self.p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  env=env)
        self.rusage = None
        self.hwm_kib = None
        self.status = None
        self.wall = None
        _children.append(self)
        self.reader = threading.Thread(target=self._read, args=(self.p.stderr,), daemon=True)
        self.reader.start()
        if watch_stdout:
            threading.Thread(target=self._read, args=(self.p.stdout, 20), daemon=True).start()

    def _read(self, stream, keep=None):
        kept = 0
        for raw in stream:
            if keep is not None:
                kept += 1
                if kept > keep:
                    while stream.read1(65536):
                        pass
                    break
            line = raw.decode(errors="replace").rstrip("\n")
            with self.cond:
                self.lines.append((time.perf_counter() - self.t0, line))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, pattern, timeout):
        """Seconds from the start until a stderr line matched `pattern`."""
        rx = re.compile(pattern)
        deadline = time.perf_counter() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    if rx.search(line):
                        return t
                left = deadline - time.perf_counter()
                if left <= 0 or (self.p.poll() is not None and not self.reader.is_alive()):
                    raise RuntimeError(f"{' '.join(self.cmd)}: no line matching {pattern!r} "
                                       f"within {timeout}s: {self.stderr()[-800:]}")
                self.cond.wait(min(left, 0.05))

    def stderr(self):
        with self.cond:
            return "\n".join(l for _, l in self.lines)

    def _reap(self, timeout):
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.status, self.rusage = status, ru
                self.wall = time.perf_counter() - self.t0
                self.p.returncode = os.waitstatus_to_exitcode(status)
                return True
            time.sleep(0.02)
        return False

    def _status_kib(self, key):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return None

    def cpu_ns_now(self):
        """CPU time the process's main thread has had so far (ns, /proc/PID/schedstat)."""
        try:
            with open(f"/proc/{self.p.pid}/schedstat") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, sig=signal.SIGINT, timeout=20):
        """End the process with `sig` (SIGKILL after `timeout`); return its exit code."""
        if self.rusage is None:
            # Peak RSS of the tool's own image: VmHWM starts anew at exec, while
            # ru_maxrss also counts the forked harness before the exec.
            self.hwm_kib = self._status_kib("VmHWM") or self.hwm_kib
            try:
                os.kill(self.p.pid, sig)
            except ProcessLookupError:
                pass
            if not self._reap(timeout):
                os.kill(self.p.pid, signal.SIGKILL)
                self._reap(10)
        self.reader.join(5)
        if self in _children:
            _children.remove(self)
        return self.p.returncode

    def wait(self, timeout):
        """Wait for the process to end by itself (SIGKILL after `timeout`)."""
        if self.rusage is None and not self._reap(timeout):
            return self.stop(signal.SIGKILL, 10)
        return self.stop()

    def kill(self):
        if self.rusage is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)  # the group we made it lead
            except (ProcessLookupError, PermissionError):
                pass
            self._reap(5)
        if self in _children:
            _children.remove(self)

    @property
    def cpu(self):
        """(user seconds, system seconds) of the process and the children it reaped."""
        return (self.rusage.ru_utime, self.rusage.ru_stime) if self.rusage else (0.0, 0.0)

    @property
    def maxrss_kib(self):
        """Peak RSS read just before the stop signal (the drain after it is not seen)."""
        return self.hwm_kib or 0


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def ensure_tracefs():
    """bpftrace needs tracefs for tracepoints; some hosts do not mount it."""
    if not os.path.isdir("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
                       capture_output=True)
