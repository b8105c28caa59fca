/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types and limits shared by xdp_trace.bpf.c and src/packets.rs. */
#ifndef WIRESCOPE_XDP_TRACE_H
#define WIRESCOPE_XDP_TRACE_H

#include "common.h"

/* Counters of this program, after the common ones. */
enum xdp_trace_counter {
	COUNTER_MALFORMED = COUNTER_FIRST_OWN, /* truncated or impossible headers */
	COUNTER_NON_IP,                        /* ethertypes other than IPv4/IPv6 (also emitted) */
	COUNTER_SAMPLED_OUT,                   /* matched, but not the 1 in N of --sample */
};

enum xdp_trace_limits {
	MAX_PORTS = 8,
	/* Most bytes of a packet that --snaplen may capture. */
	MAX_SNAPLEN = 1536, /* a multiple of COPY_CHUNK (copy.bpf.h) */
	/* Values of xdp_config.proto beyond IP protocol numbers. */
	PROTO_ANY_ICMP = 1, /* ICMP or ICMPv6 */
};

enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

/*
 * One packet. Byte order: ports, ethertype and VLAN ids are in HOST order
 * (converted once, in the parser); addresses are raw network-order bytes.
 * With --snaplen, `cap_len` bytes of the frame follow the struct.
 */
struct pkt_event {
	__u64 ts_ns;          /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 ifindex;
	__u32 len;            /* frame length at the hook, Ethernet header included */
	__u16 cap_len;        /* bytes captured after this struct */
	__u16 ethertype;      /* innermost ethertype after VLAN tags */
	__u16 vlan;           /* outer VLAN id, valid when vlans >= 1 */
	__u16 inner_vlan;     /* inner VLAN id, valid when vlans == 2 */
	__u16 sport;          /* 0 when the protocol has no ports */
	__u16 dport;
	__u8 vlans;           /* number of VLAN tags (0..2) */
	__u8 direction;       /* enum direction */
	__u8 family;          /* enum family */
	__u8 proto;           /* IP protocol of the transport header, 0 if none */
	__u8 has_l4;          /* a transport header was parsed (ports/type valid) */
	__u8 tcp_flags;       /* FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80 */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 saddr[ADDR_LEN];
	__u8 daddr[ADDR_LEN];
};

/* Filters and options, written by the user side before load. */
struct xdp_config {
	__u32 sample;          /* keep 1 in `sample` matching packets (per CPU); 0 or 1 = all */
	__u16 snaplen;         /* bytes of each packet to capture; 0 = none */
	__u8 proto;            /* IPPROTO_TCP/UDP, or PROTO_ANY_ICMP; 0 = any */
	__u8 family;           /* enum family; FAMILY_OTHER = any */
	__u8 n_ports;          /* entries used in ports[] */
	__u16 ports[MAX_PORTS]; /* host order; a packet matches if either port is listed */
	struct cidr src;
	struct cidr dst;
};

#endif
