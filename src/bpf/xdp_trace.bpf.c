// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * wirescope packets: one event per packet at XDP (ingress) and TC (egress).
 * An observer: every path returns XDP_PASS / TC_ACT_UNSPEC, whatever the packet.
 */
#include "common.bpf.h"
#include "xdp_trace.h"
#include "parse.bpf.h"
#include "filter.bpf.h"
#include "copy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

_Static_assert(MAX_SNAPLEN % COPY_CHUNK == 0, "copy_pkt copies whole chunks");

/* Filters and options; the user side fills this before load. */
const volatile struct xdp_config cfg = {};

/* Keep these types in BTF so the Rust side uses the generated definitions. */
struct pkt_event _pkt_event_btf = {};
enum counter _counter_btf = COUNTER_SEEN;
enum xdp_trace_counter _xdp_trace_counter_btf = COUNTER_MALFORMED;
enum xdp_trace_limits _xdp_trace_limits_btf = MAX_PORTS;
enum family _family_btf = FAMILY_OTHER;
enum direction _direction_btf = DIR_INGRESS;

/* Staging area for records that carry packet bytes (variable size). */
struct pkt_scratch {
	struct pkt_event ev;
	__u8 data[MAX_SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt_scratch);
} scratch SEC(".maps");

/* Matching packets seen on this CPU, for --sample. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sample_seq SEC(".maps");

static __always_inline int port_match(const struct parsed *p)
{
	if (!p->has_l4 || (p->proto != IPPROTO_TCP_ && p->proto != IPPROTO_UDP_))
		return 0;
#pragma unroll
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= cfg.n_ports)
			break;
		if (p->sport == cfg.ports[i] || p->dport == cfg.ports[i])
			return 1;
	}
	return 0;
}

static __always_inline int wanted(const struct parsed *p)
{
	if (cfg.family && p->family != cfg.family)
		return 0;
	if (cfg.proto == PROTO_ANY_ICMP) {
		if (p->family == FAMILY_OTHER ||
		    (p->proto != IPPROTO_ICMP_ && p->proto != IPPROTO_ICMPV6_))
			return 0;
	} else if (cfg.proto && (p->family == FAMILY_OTHER || p->proto != cfg.proto)) {
		return 0;
	}
	if (cfg.n_ports && !port_match(p))
		return 0;
	if (cfg.src.family && !cidr_match(&cfg.src, p->family, p->saddr))
		return 0;
	if (cfg.dst.family && !cidr_match(&cfg.dst, p->family, p->daddr))
		return 0;
	return 1;
}

/* 1 in cfg.sample matching packets, counted per CPU (the first one is kept). */
static __always_inline int sampled_in(void)
{
	__u32 zero = 0;
	__u64 *seq;
	__u64 n;

	if (cfg.sample <= 1)
		return 1;
	seq = bpf_map_lookup_elem(&sample_seq, &zero);
	if (!seq)
		return 1;
	n = *seq;
	*seq = n + 1;
	return n % cfg.sample == 0;
}

static __always_inline void fill(struct pkt_event *e, const struct parsed *p, __u32 ifindex,
				 __u32 len, __u8 dir)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->ifindex = ifindex;
	e->len = len;
	e->cap_len = 0;
	e->ethertype = p->ethertype;
	e->vlan = p->vlan;
	e->inner_vlan = p->inner_vlan;
	e->sport = p->sport;
	e->dport = p->dport;
	e->vlans = p->vlans;
	e->direction = dir;
	e->family = p->family;
	e->proto = p->proto;
	e->has_l4 = p->has_l4;
	e->tcp_flags = p->tcp_flags;
	e->icmp_type = p->icmp_type;
	e->icmp_code = p->icmp_code;
	__builtin_memcpy(e->saddr, p->saddr, ADDR_LEN);
	__builtin_memcpy(e->daddr, p->daddr, ADDR_LEN);
}

/*
 * Parse, count, filter and emit one packet. `skb` is NULL at XDP; at TC the
 * captured bytes are read with bpf_skb_load_bytes so that paged data counts.
 */
static __always_inline void trace(struct __sk_buff *skb, void *data, void *data_end,
				  __u32 ifindex, __u32 len, __u8 dir, int hw_tagged, __u16 hw_tci)
{
	struct parsed p = {};
	struct pkt_event *e;
	int status;

	count(COUNTER_SEEN);
	status = parse_packet(data, data_end, hw_tagged, hw_tci, &p);
	if (status == PARSE_MALFORMED) {
		count(COUNTER_MALFORMED);
		return;
	}
	if (status == PARSE_NON_IP)
		count(COUNTER_NON_IP);
	if (!wanted(&p)) {
		count(COUNTER_FILTERED);
		return;
	}
	if (!sampled_in()) {
		count(COUNTER_SAMPLED_OUT);
		return;
	}

	if (cfg.snaplen) {
		__u32 zero = 0;
		struct pkt_scratch *s = bpf_map_lookup_elem(&scratch, &zero);
		__u32 want = len < cfg.snaplen ? len : cfg.snaplen;
		__u32 got;

		if (!s)
			return;
		if (want > MAX_SNAPLEN)
			want = MAX_SNAPLEN;
		fill(&s->ev, &p, ifindex, len, dir);
		if (skb) {
			/* one 64-bit register, checked right before the call */
			__u64 n = want;

			got = 0;
			/*
			 * The helper needs 1 <= n <= MAX_SNAPLEN in the verifier's eyes.
			 * Written as `n >= 1 && n <= MAX`, clang folds it into one unsigned
			 * compare of n - 1 (or tests n != 0), and verifiers before Linux
			 * 6.11 learn no lower bound of n from either, so 5.10 and 6.1
			 * rejected the call ("R3 min value is outside of the allowed memory
			 * range"). A signed test against 0, kept apart from the upper
			 * bound by barrier_var, gives n a minimum of 1 on every kernel.
			 */
			barrier_var(n);
			if ((__s64)n > 0) {
				barrier_var(n);
				if (n <= MAX_SNAPLEN && bpf_skb_load_bytes(skb, 0, s->data, n) == 0)
					got = n;
			}
		} else {
			got = copy_pkt(data, data_end, 0, s->data, want, MAX_SNAPLEN);
		}
		if (got > MAX_SNAPLEN)
			return;
		s->ev.cap_len = got;
		output(s, sizeof(s->ev) + got);
		return;
	}

	e = reserve(sizeof(*e));
	if (!e)
		return;
	fill(e, &p, ifindex, len, dir);
	submit(e);
}

SEC("xdp")
int xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	trace(NULL, data, data_end, ctx->ingress_ifindex, (__u32)(data_end - data), DIR_INGRESS,
	      0, 0);
	return XDP_PASS;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* headers in paged data: make them linear */
	tc_linear_headers(skb, &data, &data_end);
	trace(skb, data, data_end, skb->ifindex, skb->len, DIR_EGRESS, skb->vlan_present,
	      skb->vlan_tci);
	return TC_ACT_UNSPEC_;
}
