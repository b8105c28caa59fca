/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types and limits shared by http.bpf.c and src/http.rs. */
#ifndef WIRESCOPE_HTTP_H
#define WIRESCOPE_HTTP_H

#include "common.h"

/*
 * Counters of this program, after the common ones. Every packet the hooks see
 * lands in exactly one of: malformed, no_payload, not_http, tls, http2,
 * filtered, delivered, lost.
 */
enum http_counter {
	HTTP_COUNTER_MALFORMED = COUNTER_FIRST_OWN, /* truncated or impossible headers */
	HTTP_COUNTER_NO_PAYLOAD,  /* not TCP, or a TCP segment without payload (SYN, ACK, FIN) */
	HTTP_COUNTER_NOT_HTTP,    /* TCP payload that starts no request or status line */
	HTTP_COUNTER_TLS,         /* TCP payload that starts with a TLS record header */
	HTTP_COUNTER_HTTP2,       /* the HTTP/2 connection preface in clear text (h2c) */
};

enum http_limits {
	/* Payload bytes copied from the start of a segment (a multiple of COPY_CHUNK). */
	HTTP_WINDOW = 2048,
	/* Payload bytes the kernel looks at to tell HTTP from anything else. */
	HTTP_PREFIX = 8,
	/* Server ports a filter can list. */
	HTTP_MAX_PORTS = 8,
};

/* What the first bytes of a segment's payload start. */
enum http_kind {
	HTTP_REQUEST = 1,  /* a method and a space: GET POST ... */
	HTTP_RESPONSE = 2, /* "HTTP/1.0" or "HTTP/1.1" */
};

/* Direction of the segment at the interface (same values as packets). */
enum http_direction {
	HTTP_DIR_INGRESS = 0,
	HTTP_DIR_EGRESS = 1,
};

/*
 * One TCP segment whose payload starts an HTTP/1.x request or response; the
 * first `cap_len` bytes of the payload follow the struct. Byte order: ports,
 * seq and ack are in HOST order (converted once, in parse.bpf.h); addresses
 * are raw network-order bytes. Source and destination are the segment's.
 */
struct http_event {
	__u64 ts_ns;          /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 seq;            /* TCP sequence number of the first payload byte */
	__u32 ack;            /* TCP acknowledgment number */
	__u32 payload_len;    /* TCP payload bytes in the segment (or GSO packet) */
	__u32 ifindex;
	__u16 sport;
	__u16 dport;
	__u16 cap_len;        /* payload bytes after this struct (<= HTTP_WINDOW) */
	__u8 kind;            /* enum http_kind */
	__u8 family;          /* enum family */
	__u8 direction;       /* enum http_direction */
	__u8 saddr[ADDR_LEN];
	__u8 daddr[ADDR_LEN];
};

/*
 * Filters, written by the user side before load. They select whole flows
 * (both directions of a connection), so that a kept request always keeps its
 * response: the client is the source of a request and the destination of a
 * response, the server the other end.
 */
struct http_config {
	__u8 family;                   /* enum family; FAMILY_OTHER = any */
	__u8 n_ports;                  /* entries used in ports[]; 0 = any */
	__u16 ports[HTTP_MAX_PORTS];   /* server ports, host order */
	struct cidr client;            /* --src */
	struct cidr server;            /* --dst */
};

#endif
