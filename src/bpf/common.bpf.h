/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel-side helpers every program shares: counters and ring-buffer output. */
#ifndef WIRESCOPE_COMMON_BPF_H
#define WIRESCOPE_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* The user side sets the size with --ringbuf-size before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (v)
		*v += 1;
}

/* Reserve a fixed-size record; a full ring buffer is counted, never silent. */
static __always_inline void *reserve(__u64 size)
{
	void *rec = bpf_ringbuf_reserve(&events, size, 0);

	if (!rec)
		count(COUNTER_LOST);
	return rec;
}

static __always_inline void submit(void *rec)
{
	bpf_ringbuf_submit(rec, 0);
	count(COUNTER_DELIVERED);
}

/* Copy a record of bounded, variable size into the ring buffer. */
static __always_inline void output(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, 0))
		count(COUNTER_LOST);
	else
		count(COUNTER_DELIVERED);
}

#endif
