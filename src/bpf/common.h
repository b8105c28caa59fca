/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Limits and counter slots shared by every kernel program and the Rust side. */
#ifndef WIRESCOPE_COMMON_H
#define WIRESCOPE_COMMON_H

/*
 * Per-CPU counters, one slot each, in the map `counters` of every program.
 * The first four mean the same in every program; each program numbers its own
 * extra counters from COUNTER_FIRST_OWN on.
 *   seen:      everything the hook looked at
 *   filtered:  dropped by a filter or by sampling (never sent to user space)
 *   delivered: records committed to the ring buffer
 *   lost:      records that found the ring buffer full
 */
enum counter {
	COUNTER_SEEN = 0,
	COUNTER_FILTERED = 1,
	COUNTER_DELIVERED = 2,
	COUNTER_LOST = 3,
	COUNTER_FIRST_OWN = 4,
	COUNTER_SLOTS = 16,
};

/* Enums rather than #defines so that the values reach BTF and the Rust side. */
enum common_limits {
	COMM_LEN = 16,
	/* Address of either family: IPv4 uses the first 4 bytes, the rest are
	 * zero. Bytes are in network order, as on the wire. */
	ADDR_LEN = 16,
};

/* `family` fields. */
enum family {
	FAMILY_OTHER = 0,
	FAMILY_IPV4 = 4,
	FAMILY_IPV6 = 6,
};

/* A CIDR filter; family 0 means "no filter". */
struct cidr {
	__u8 family;          /* FAMILY_IPV4 / FAMILY_IPV6 */
	__u8 prefix_len;
	__u8 addr[ADDR_LEN];  /* network order, host bits zero */
};

#endif
