/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types and limits shared by sendlat.bpf.c and src/sendlat.rs. */
#ifndef WIRESCOPE_SENDLAT_H
#define WIRESCOPE_SENDLAT_H

#include "common.h"
#include "proc.h"

/*
 * The program's own counters, after the common four. Their relation:
 *   seen = filtered + delivered + lost + in_hist + hist_full + start_full
 *          + no_return (+ calls still in progress at the end)
 * where seen counts the calls that began while tracing, and filtered
 * includes under_min.
 */
enum sendlat_counter {
	COUNTER_UNDER_MIN = COUNTER_FIRST_OWN, /* faster than --min-us (part of filtered) */
	COUNTER_UNPAIRED,     /* returns whose start was not seen (begun before tracing, or
			       * by a path the method does not hook) */
	COUNTER_OTHER_SOCKET, /* tracepoint method: sends on sockets that are not TCP, skipped */
	COUNTER_IN_HIST,      /* calls added to a histogram (--hist) */
	COUNTER_HIST_FULL,    /* calls not added: no room for another histogram key */
	COUNTER_START_FULL,   /* calls not timed: no room to remember their start */
	COUNTER_NO_RETURN,    /* calls whose return never came (learnt when the thread
			       * began its next call): fentry: the trampoline was rebuilt
			       * meanwhile; kretprobe: too many calls in progress at once;
			       * tracepoints: the syscall failed before the socket */
};

enum sendlat_limits {
	MAX_SENDLAT_PORTS = 8,
	/* log2 buckets of microseconds: slot 0 is [0, 1) us, slot i is
	 * [2^(i-1), 2^i) us, the last one is open-ended */
	HIST_SLOTS = 32,
	/* distinct histograms (--per pid|comm) */
	MAX_HIST_KEYS = 10240,
	/* calls in progress at once (one per thread) */
	MAX_IN_FLIGHT = 16384,
	/* tracepoint method: iovecs summed to learn the requested size */
	MAX_IOV_SUM = 64,
};

/* sendlat_config.per */
enum hist_per {
	PER_NONE = 0,
	PER_PID = 1,
	PER_COMM = 2,
};

/* sendlat_event.flags */
enum sendlat_flags {
	FLAG_SIZE_KNOWN = 1, /* `size` is the requested byte count */
};

/*
 * One completed tcp_sendmsg call (or, with the tracepoint method, one send
 * on a TCP socket). Ports are in HOST order (converted once, in
 * sock.bpf.h); addresses are network-order bytes.
 */
struct sendlat_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC, when the call returned */
	__u64 latency_ns; /* return time minus start time */
	__u64 size;       /* bytes requested (FLAG_SIZE_KNOWN) */
	__s64 ret;        /* return value: bytes sent, or -errno */
	__u32 pid;        /* tgid */
	__u16 lport;
	__u16 rport;
	__u8 family;      /* enum family */
	__u8 flags;       /* enum sendlat_flags */
	__u8 pad[6];
	char comm[COMM_LEN];
	__u8 laddr[ADDR_LEN];
	__u8 raddr[ADDR_LEN];
};

/* Key of the `hists` map: all zero (PER_NONE), or the pid, or the comm. */
struct hist_key {
	__u32 pid;
	char comm[COMM_LEN];
};

struct hist_value {
	__u64 slots[HIST_SLOTS];
	__u64 sum_ns;          /* total latency, for an exact mean */
	char comm[COMM_LEN];   /* PER_PID: the process name when the key was made */
};

struct sendlat_config {
	struct proc_filter proc;
	__u64 min_ns;                  /* --min-us, in nanoseconds; 0 = every call */
	__u16 ports[MAX_SENDLAT_PORTS]; /* host order; local or remote port matches */
	__u8 n_ports;
	__u8 family;                   /* enum family; FAMILY_OTHER = any */
	__u8 hist;                     /* 1: aggregate into `hists`, no events */
	__u8 per;                      /* enum hist_per */
};

#endif
