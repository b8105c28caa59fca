/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types and limits shared by conn.bpf.c and src/conn.rs. */
#ifndef WIRESCOPE_CONN_H
#define WIRESCOPE_CONN_H

#include "common.h"
#include "proc.h"

enum conn_counter {
	COUNTER_MAP_FULL = COUNTER_FIRST_OWN, /* connections not tracked: map full */
	COUNTER_UNTRACKED_CLOSE,              /* closes of connections opened before tracing */
	COUNTER_RECOVERED_CLOSE,              /* close lines of connections whose close the programs
	                                         * did not see, found later (passed the filters) */
	COUNTER_INJECTED_SKIP,                /* tests only: closes ignored on purpose */
};

enum conn_limits {
	/* Live connections tracked at once. */
	MAX_CONNS = 65536,
	MAX_CONN_PORTS = 8,
};

enum conn_kind {
	CONN_CONNECT = 1,     /* active open: connect() called */
	CONN_ACCEPT = 2,      /* passive open: accept() returned it */
	CONN_ESTABLISHED = 3, /* handshake completed (either side) */
	CONN_CLOSE = 4,       /* reached TCP_CLOSE */
};

/* How a connection ended (close events). */
enum conn_end {
	END_NONE = 0,
	END_LOCAL_CLOSE = 1,  /* this side sent FIN first */
	END_REMOTE_CLOSE = 2, /* the peer sent FIN first */
	END_RESET_RECEIVED = 3,
	END_RESET_SENT = 4,   /* aborted here (close with unread data, linger 0...) */
	END_REFUSED = 5,      /* connect answered with a reset */
	END_CONNECT_FAILED = 6, /* connect gave up (timeout, unreachable) */
	END_UNKNOWN = 7,
};

enum conn_side {
	SIDE_UNKNOWN = 0,
	SIDE_ACTIVE = 1,  /* we connected */
	SIDE_PASSIVE = 2, /* we accepted */
};

/* conn_event.flags */
enum conn_flags {
	FLAG_PROC_KNOWN = 1,   /* pid/comm/cgroup_id were seen in process context */
	FLAG_START_KNOWN = 2,  /* the opening was seen: start_ns and duration are valid */
	FLAG_PROC_MATCH = 4,   /* (kernel only) the process passed -p/--comm/--cgroup */
	FLAG_RECOVERED = 8,    /* a close the programs did not see, found afterwards */
	FLAG_NO_BYTES = 16,    /* tx_bytes/rx_bytes unknown (recovered after the socket was reused) */
};

/*
 * One connection event. Ports are in HOST order (converted once, in
 * sock.bpf.h); addresses are network-order bytes.
 */
struct conn_event {
	__u64 ts_ns;        /* CLOCK_MONOTONIC */
	__u64 start_ns;     /* when the opening was seen (FLAG_START_KNOWN) */
	__u64 tx_bytes;     /* tcp_sock.bytes_acked at close */
	__u64 rx_bytes;     /* tcp_sock.bytes_received at close */
	__u64 cgroup_id;    /* cgroup v2 id of the owning process */
	__u32 netns;        /* network namespace inode number */
	__u32 pid;          /* owning process (tgid); valid with FLAG_PROC_KNOWN */
	__u16 lport;
	__u16 rport;
	__u8 family;        /* enum family */
	__u8 kind;          /* enum conn_kind */
	__u8 end;           /* enum conn_end (close events) */
	__u8 side;          /* enum conn_side */
	__u8 flags;         /* enum conn_flags */
	__u8 pad[3];
	char comm[COMM_LEN];
	__u8 laddr[ADDR_LEN];
	__u8 raddr[ADDR_LEN];
};

struct conn_config {
	struct proc_filter proc;
	__u16 ports[MAX_CONN_PORTS]; /* host order; local or remote port matches */
	__u8 n_ports;
	__u8 family;                 /* enum family; FAMILY_OTHER = any */
	__u8 events;                 /* 1: stream connect/accept/established too */
};

#endif
