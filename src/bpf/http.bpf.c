// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * wirescope http: TCP segments whose payload starts an HTTP/1.x request or
 * response, at XDP (ingress) and TC (egress), with the first HTTP_WINDOW
 * bytes of their payload. The kernel only tells HTTP from everything else by
 * the first HTTP_PREFIX bytes and applies the per-flow filters; the user side
 * reads the request and status lines and headers, and pairs responses with
 * requests.
 * An observer: every path returns XDP_PASS / TC_ACT_UNSPEC, whatever the packet.
 */
#include "common.bpf.h"
#include "http.h"
#include "parse.bpf.h"
#include "filter.bpf.h"
#include "copy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

_Static_assert(HTTP_WINDOW % COPY_CHUNK == 0, "copy_pkt copies whole chunks");

/* Filters; the user side fills this before load. */
const volatile struct http_config cfg = {};

/* Keep these types in BTF so the Rust side uses the generated definitions. */
struct http_event _http_event_btf = {};
enum counter _counter_btf = COUNTER_SEEN;
enum http_counter _http_counter_btf = HTTP_COUNTER_MALFORMED;
enum http_limits _http_limits_btf = HTTP_WINDOW;
enum http_kind _http_kind_btf = HTTP_REQUEST;
enum http_direction _http_direction_btf = HTTP_DIR_INGRESS;
enum family _family_btf = FAMILY_OTHER;

/* Staging area: the event and the payload window (variable size). */
struct http_scratch {
	struct http_event ev;
	__u8 data[HTTP_WINDOW];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http_scratch);
} scratch SEC(".maps");

/*
 * Copy `want` payload bytes from `off` into the scratch window, at XDP. A
 * global function: the verifier checks it once, on its own, with any offset,
 * instead of once for every header layout the parser can end in (which cost
 * a quarter of a million verified instructions).
 */
__noinline int xdp_copy_window(struct xdp_md *ctx, __u32 off, __u32 want)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct http_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	return copy_pkt(data, data_end, off, s->data, want, HTTP_WINDOW);
}

/* What a payload's first bytes are, beyond enum http_kind. */
enum {
	CLASS_NOT_HTTP = 0,
	CLASS_TLS = 3,
	CLASS_HTTP2 = 4,
};

/*
 * Whether the payload starts with the n (1..8) characters of the string
 * literal s. `head` holds the first 8 payload bytes as read from memory; the
 * literal is read the same way, so byte order does not matter, and the
 * compiler folds it into a constant.
 */
static __always_inline int starts(__u64 head, const char *s, const int n)
{
	char lit[8] = {};
	__u64 want, mask = ~0ULL;

	__builtin_memcpy(lit, s, n);
	__builtin_memcpy(&want, lit, 8);
	if (n < 8) {
		char ones[8] = {};

		__builtin_memset(ones, 0xff, n);
		__builtin_memcpy(&mask, ones, 8);
	}
	return (head & mask) == want;
}

/*
 * Classify the first HTTP_PREFIX payload bytes. Methods are case-sensitive
 * (RFC 9110, 9.1): "get / HTTP/1.1" is not a request.
 */
static __always_inline int classify(const __u8 *b)
{
	__u64 h;

	__builtin_memcpy(&h, b, HTTP_PREFIX);
	switch (b[0]) {
	case 'G':
		return starts(h, "GET ", 4) ? HTTP_REQUEST : CLASS_NOT_HTTP;
	case 'H':
		if (starts(h, "HEAD ", 5))
			return HTTP_REQUEST;
		if (starts(h, "HTTP/1.0", 8) || starts(h, "HTTP/1.1", 8))
			return HTTP_RESPONSE;
		return CLASS_NOT_HTTP;
	case 'P':
		if (starts(h, "POST ", 5) || starts(h, "PUT ", 4) || starts(h, "PATCH ", 6))
			return HTTP_REQUEST;
		return starts(h, "PRI * HT", 8) ? CLASS_HTTP2 : CLASS_NOT_HTTP;
	case 'D':
		return starts(h, "DELETE ", 7) ? HTTP_REQUEST : CLASS_NOT_HTTP;
	case 'O':
		return starts(h, "OPTIONS ", 8) ? HTTP_REQUEST : CLASS_NOT_HTTP;
	case 'C':
		return starts(h, "CONNECT ", 8) ? HTTP_REQUEST : CLASS_NOT_HTTP;
	case 'T':
		return starts(h, "TRACE ", 6) ? HTTP_REQUEST : CLASS_NOT_HTTP;
	}
	/* TLS record: content type 20..23 (change_cipher_spec, alert, handshake,
	 * application_data), then version 3.0 to 3.4 */
	if (b[0] >= 20 && b[0] <= 23 && b[1] == 3 && b[2] <= 4)
		return CLASS_TLS;
	return CLASS_NOT_HTTP;
}

/* Whether the flow of this segment passes the filters (see struct http_config). */
static __always_inline int wanted(const struct parsed *p, int kind)
{
	int req = kind == HTTP_REQUEST;
	const __u8 *client = req ? p->saddr : p->daddr;
	const __u8 *server = req ? p->daddr : p->saddr;
	__u16 server_port = req ? p->dport : p->sport;

	if (cfg.family && p->family != cfg.family)
		return 0;
	if (cfg.n_ports) {
		int found = 0;

#pragma unroll
		for (int i = 0; i < HTTP_MAX_PORTS; i++) {
			if (i >= cfg.n_ports)
				break;
			if (server_port == cfg.ports[i])
				found = 1;
		}
		if (!found)
			return 0;
	}
	if (cfg.client.family && !cidr_match(&cfg.client, p->family, client))
		return 0;
	if (cfg.server.family && !cidr_match(&cfg.server, p->family, server))
		return 0;
	return 1;
}

/*
 * Parse, classify, filter and emit one packet. `tc` is a constant: 0 at XDP
 * (bytes read directly from the packet), 1 at TC (bytes read with
 * bpf_skb_load_bytes, so that paged data counts). `len` is the length of the
 * whole packet (of a GSO packet at TC).
 */
static __always_inline void inspect(const int tc, struct __sk_buff *skb, struct xdp_md *xdp,
				    void *data, void *data_end, __u32 ifindex, __u32 len, __u8 dir,
				    int hw_tagged, __u16 hw_tci)
{
	struct parsed p = {};
	struct http_scratch *s;
	__u8 head[HTTP_PREFIX];
	__u32 zero = 0;
	__u64 off, payload_len, want, got = 0;
	int status, kind;

	count(COUNTER_SEEN);
	status = parse_packet(data, data_end, hw_tagged, hw_tci, &p);
	if (status == PARSE_MALFORMED) {
		count(HTTP_COUNTER_MALFORMED);
		return;
	}
	if (status != PARSE_OK || !p.has_l4 || p.proto != IPPROTO_TCP_) {
		count(HTTP_COUNTER_NO_PAYLOAD);
		return;
	}
	off = p.payload_off;
	if (off >= len) {
		count(HTTP_COUNTER_NO_PAYLOAD);
		return;
	}
	payload_len = len - off;
	if (payload_len < HTTP_PREFIX) {
		count(HTTP_COUNTER_NOT_HTTP);
		return;
	}
	/* Headers this long do not happen in practice; the bound keeps every
	 * packet offset below the verifier's limit. */
	if (off > COPY_MAX_START) {
		count(HTTP_COUNTER_MALFORMED);
		return;
	}

	if (tc) {
		if (bpf_skb_load_bytes(skb, off, head, HTTP_PREFIX)) {
			count(HTTP_COUNTER_MALFORMED);
			return;
		}
	} else {
		if (data + off + HTTP_PREFIX > data_end) {
			count(HTTP_COUNTER_MALFORMED);
			return;
		}
		__builtin_memcpy(head, data + off, HTTP_PREFIX);
	}

	kind = classify(head);
	if (kind == CLASS_TLS) {
		count(HTTP_COUNTER_TLS);
		return;
	}
	if (kind == CLASS_HTTP2) {
		count(HTTP_COUNTER_HTTP2);
		return;
	}
	if (kind != HTTP_REQUEST && kind != HTTP_RESPONSE) {
		count(HTTP_COUNTER_NOT_HTTP);
		return;
	}
	if (!wanted(&p, kind)) {
		count(COUNTER_FILTERED);
		return;
	}

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return;
	want = payload_len < HTTP_WINDOW ? payload_len : HTTP_WINDOW;
	if (tc) {
		/* one 64-bit register, checked right before the call */
		barrier_var(want);
		if (want >= 1 && want <= HTTP_WINDOW && bpf_skb_load_bytes(skb, off, s->data, want) == 0)
			got = want;
	} else {
		got = xdp_copy_window(xdp, off, want);
		/* the compiler knows the bound, the verifier does not: keep the check */
		barrier_var(got);
	}
	if (got < HTTP_PREFIX || got > HTTP_WINDOW) {
		count(HTTP_COUNTER_MALFORMED);
		return;
	}

	s->ev.ts_ns = bpf_ktime_get_ns();
	s->ev.seq = p.tcp_seq;
	s->ev.ack = p.tcp_ack;
	s->ev.payload_len = payload_len;
	s->ev.ifindex = ifindex;
	s->ev.sport = p.sport;
	s->ev.dport = p.dport;
	s->ev.cap_len = got;
	s->ev.kind = kind;
	s->ev.family = p.family;
	s->ev.direction = dir;
	__builtin_memcpy(s->ev.saddr, p.saddr, ADDR_LEN);
	__builtin_memcpy(s->ev.daddr, p.daddr, ADDR_LEN);
	output(s, sizeof(s->ev) + got);
}

SEC("xdp")
int http_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	inspect(0, NULL, ctx, data, data_end, ctx->ingress_ifindex, (__u32)(data_end - data),
		HTTP_DIR_INGRESS, 0, 0);
	return XDP_PASS;
}

SEC("tc")
int http_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* headers in paged data: make them linear */
	tc_linear_headers(skb, &data, &data_end);
	inspect(1, skb, NULL, data, data_end, skb->ifindex, skb->len, HTTP_DIR_EGRESS,
		skb->vlan_present, skb->vlan_tci);
	return TC_ACT_UNSPEC_;
}
