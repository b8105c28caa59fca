"""An event source for the pipeline benchmark: run an already loaded XDP
program in the kernel with BPF_PROG_TEST_RUN on a small UDP frame, `repeat`
times per call. Every run is one packet event through the program's ring
buffer, with no network stack around it, so the source is as fast as the
kernel side of wirescope itself."""

import ctypes
import os
import struct
import time

BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
SYS_BPF = 321  # x86_64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _TestRun(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


def _bpf(cmd, attr):
    r = _libc.syscall(SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return r


def prog_fd_by_id(prog_id):
    attr = (ctypes.c_uint32 * 4)(prog_id, 0, 0, 0)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def udp_frame():
    """A 60-byte Ethernet/IPv4/UDP frame, 10.200.0.1:40000 -> 10.200.0.2:9 (never sent)."""
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    payload = b"wirescope-bench!"[:18].ljust(18, b"\0")
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes([10, 200, 0, 1]), bytes([10, 200, 0, 2]))
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    return eth + ip + udp


class Source:
    def __init__(self, prog_id):
        self.fd = prog_fd_by_id(prog_id)
        self.frame = ctypes.create_string_buffer(udp_frame())
        self.out = ctypes.create_string_buffer(256)

    def close(self):
        os.close(self.fd)

    def run(self, repeat):
        a = _TestRun()
        a.prog_fd = self.fd
        a.data_in = ctypes.addressof(self.frame)
        a.data_size_in = len(self.frame.raw) - 1
        a.data_out = ctypes.addressof(self.out)
        a.data_size_out = len(self.out)
        a.repeat = repeat
        _bpf(BPF_PROG_TEST_RUN, a)
        return a.duration  # mean ns per run, as the kernel measured it

    def emit(self, total, rate=None, batch=20000, max_seconds=60.0):
        """Emit `total` events, paced at `rate` events/s (None: as fast as
        possible), in batches. Returns (events emitted, seconds taken)."""
        start = time.perf_counter()
        done = 0
        while done < total and time.perf_counter() - start < max_seconds:
            n = min(batch, total - done)
            self.run(n)
            done += n
            if rate:
                ahead = done / rate - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
        return done, time.perf_counter() - start
