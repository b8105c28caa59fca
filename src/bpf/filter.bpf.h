/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Address filters shared by the packet programs (xdp_trace, http). */
#ifndef WIRESCOPE_FILTER_BPF_H
#define WIRESCOPE_FILTER_BPF_H

#include "common.bpf.h"

/* Whether `addr` (network order, of `family`) lies in the CIDR `c`. */
static __always_inline int cidr_match(const volatile struct cidr *c, __u8 family,
				      const __u8 *addr)
{
	__u32 full = c->prefix_len / 8;
	__u32 rem = c->prefix_len % 8;

	if (family != c->family)
		return 0;
#pragma unroll
	for (int i = 0; i < ADDR_LEN; i++) {
		if (i < full) {
			if (addr[i] != c->addr[i])
				return 0;
		} else if (i == full && rem) {
			__u8 mask = (__u8)(0xff << (8 - rem));

			if ((addr[i] & mask) != c->addr[i])
				return 0;
		}
	}
	return 1;
}

#endif
