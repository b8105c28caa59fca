/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Packet parsing shared by the XDP and TC programs (xdp_trace, http).
 * Works on direct packet pointers [data, data_end); every read is preceded by
 * a bounds check, every loop has a constant bound. Network to host byte order
 * conversion of ports, TCP sequence numbers, ethertype and VLAN ids happens
 * here and nowhere else.
 */
#ifndef WIRESCOPE_PARSE_BPF_H
#define WIRESCOPE_PARSE_BPF_H

#include "common.bpf.h"

#define ETH_HLEN_ 14
#define ETH_P_IP_ 0x0800
#define ETH_P_IPV6_ 0x86DD
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_QINQ1_ 0x9100

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_NONE_ 59
#define IPPROTO_DSTOPTS_ 60

#define MAX_VLAN_TAGS 2
/* IPv6 extension headers skipped before giving up on finding L4. */
#define MAX_IPV6_EXT 6

enum parse_status {
	PARSE_OK = 0,        /* IPv4 or IPv6, L4 fields filled if present */
	PARSE_NON_IP = 1,    /* an ethertype we do not look into */
	PARSE_MALFORMED = 2, /* truncated, or a header field that cannot be */
};

struct parsed {
	__u16 ethertype;
	__u16 vlan;
	__u16 inner_vlan;
	__u16 sport;
	__u16 dport;
	__u8 vlans;
	__u8 family;
	__u8 proto;
	__u8 has_l4;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 l4_off;        /* offset of the transport header from data */
	__u16 payload_off;   /* TCP/UDP payload offset from data (has_l4 only) */
	__u32 tcp_seq;       /* TCP sequence and acknowledgment numbers (TCP only) */
	__u32 tcp_ack;
	__u8 saddr[ADDR_LEN];
	__u8 daddr[ADDR_LEN];
};

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

struct ipv6_opt_hdr_ {
	__u8 nexthdr;
	__u8 hdrlen;
};

/*
 * Offsets are kept as bounded scalars and turned into pointers (data + off)
 * right before each bounds check, so the verifier always knows their range.
 */
static __always_inline int parse_l4(void *data, void *data_end, __u32 off, struct parsed *p)
{
	void *l4 = data + off;

	p->l4_off = off;
	if (p->proto == IPPROTO_TCP_) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return PARSE_MALFORMED;
		if (th->doff < 5)
			return PARSE_MALFORMED;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		/* byte 13 of the TCP header holds the eight flag bits */
		p->tcp_flags = ((__u8 *)th)[13];
		p->tcp_seq = bpf_ntohl(th->seq);
		p->tcp_ack = bpf_ntohl(th->ack_seq);
		p->payload_off = off + th->doff * 4;
		p->has_l4 = 1;
	} else if (p->proto == IPPROTO_UDP_) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return PARSE_MALFORMED;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		p->payload_off = off + sizeof(*uh);
		p->has_l4 = 1;
	} else if (p->proto == IPPROTO_ICMP_ || p->proto == IPPROTO_ICMPV6_) {
		/* type, code, checksum */
		if (l4 + 4 > data_end)
			return PARSE_MALFORMED;
		p->icmp_type = ((__u8 *)l4)[0];
		p->icmp_code = ((__u8 *)l4)[1];
		p->has_l4 = 1;
	}
	return PARSE_OK;
}

static __always_inline int parse_ipv4(void *data, void *data_end, __u32 off, struct parsed *p)
{
	struct iphdr *iph = data + off;
	__u32 ihl;

	if ((void *)(iph + 1) > data_end)
		return PARSE_MALFORMED;
	if (iph->version != 4)
		return PARSE_MALFORMED;
	ihl = iph->ihl * 4;
	if (ihl < sizeof(*iph) || bpf_ntohs(iph->tot_len) < ihl)
		return PARSE_MALFORMED;
	/* options included */
	if (data + off + ihl > data_end)
		return PARSE_MALFORMED;
	p->family = FAMILY_IPV4;
	p->proto = iph->protocol;
	__builtin_memcpy(p->saddr, &iph->saddr, 4);
	__builtin_memcpy(p->daddr, &iph->daddr, 4);
	/* a non-first fragment carries no transport header */
	if (bpf_ntohs(iph->frag_off) & 0x1fff)
		return PARSE_OK;
	return parse_l4(data, data_end, off + ihl, p);
}

static __always_inline int is_ipv6_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS_ || next == IPPROTO_ROUTING_ || next == IPPROTO_DSTOPTS_ ||
	       next == IPPROTO_FRAGMENT_ || next == IPPROTO_AH_;
}

static __always_inline int parse_ipv6(void *data, void *data_end, __u32 off, struct parsed *p)
{
	struct ipv6hdr *ip6h = data + off;
	__u8 next;

	if ((void *)(ip6h + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip6h->version != 6)
		return PARSE_MALFORMED;
	p->family = FAMILY_IPV6;
	__builtin_memcpy(p->saddr, &ip6h->saddr, ADDR_LEN);
	__builtin_memcpy(p->daddr, &ip6h->daddr, ADDR_LEN);
	next = ip6h->nexthdr;
	off += sizeof(*ip6h);

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT; i++) {
		struct ipv6_opt_hdr_ *eh = data + off;

		if (!is_ipv6_ext(next))
			break;
		/* a fragment header is 8 bytes; the others are at least 8 too */
		if (data + off + 8 > data_end)
			return PARSE_MALFORMED;
		if (next == IPPROTO_FRAGMENT_) {
			/* nexthdr, reserved, be16 offset|flags, id */
			__u16 frag = bpf_ntohs(*(__be16 *)(data + off + 2));

			next = eh->nexthdr;
			off += 8;
			if (frag & 0xfff8) {
				/* non-first fragment: no transport header here */
				p->proto = next;
				return PARSE_OK;
			}
		} else if (next == IPPROTO_AH_) {
			next = eh->nexthdr;
			off += ((__u32)eh->hdrlen + 2) * 4;
		} else {
			next = eh->nexthdr;
			off += ((__u32)eh->hdrlen + 1) * 8;
		}
	}
	p->proto = next;
	/* more extension headers than we skip, or no next header: no L4 fields */
	if (is_ipv6_ext(next) || next == IPPROTO_NONE_)
		return PARSE_OK;
	return parse_l4(data, data_end, off, p);
}

/*
 * Parse Ethernet, up to two VLAN tags, IPv4/IPv6 and TCP/UDP/ICMP/ICMPv6.
 * `hw_tagged`/`hw_tci`: a tag the driver already took out of the frame
 * (TC only), so it counts as the outer tag.
 */
static __always_inline int parse_packet(void *data, void *data_end, int hw_tagged, __u16 hw_tci,
					 struct parsed *p)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	proto = bpf_ntohs(eth->h_proto);
	if (hw_tagged) {
		p->vlan = hw_tci & 0x0fff;
		p->vlans = 1;
	}

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr_ *vh = data + off;

		if (proto != ETH_P_8021Q_ && proto != ETH_P_8021AD_ && proto != ETH_P_QINQ1_)
			break;
		if ((void *)(vh + 1) > data_end)
			return PARSE_MALFORMED;
		if (p->vlans == 0)
			p->vlan = bpf_ntohs(vh->tci) & 0x0fff;
		else if (p->vlans == 1)
			p->inner_vlan = bpf_ntohs(vh->tci) & 0x0fff;
		p->vlans++;
		proto = bpf_ntohs(vh->proto);
		off += sizeof(*vh);
	}
	p->ethertype = proto;

	if (proto == ETH_P_IP_)
		return parse_ipv4(data, data_end, off, p);
	if (proto == ETH_P_IPV6_)
		return parse_ipv6(data, data_end, off, p);
	return PARSE_NON_IP;
}

/* TC verdict of an observer: "no opinion", the next filter or tcx program decides. */
#define TC_ACT_UNSPEC_ (-1)

/* Bytes of headers wanted in the linear area of an skb before parsing at TC. */
#define TC_PARSE_LEN 128

/*
 * Make the first TC_PARSE_LEN bytes of an skb linear when they are in paged
 * data (the content is unchanged); *data and *data_end are then read again.
 */
static __always_inline void tc_linear_headers(struct __sk_buff *skb, void **data, void **data_end)
{
	__u32 want = skb->len < TC_PARSE_LEN ? skb->len : TC_PARSE_LEN;

	if (*data + want > *data_end) {
		bpf_skb_pull_data(skb, want);
		*data = (void *)(long)skb->data;
		*data_end = (void *)(long)skb->data_end;
	}
}

#endif
