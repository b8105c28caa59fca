/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Copying packet bytes at XDP, where no helper before Linux 5.18 copies a
 * variable range (bpf_xdp_load_bytes is newer than the kernels we support).
 * Used by xdp_trace (--snaplen) and http (the payload window).
 */
#ifndef WIRESCOPE_COPY_BPF_H
#define WIRESCOPE_COPY_BPF_H

#include "common.bpf.h"

/* Unit of the bulk copy; every buffer given to copy_pkt holds a multiple of it. */
#define COPY_CHUNK 64
/* Highest start offset copy_pkt accepts: keeps every packet pointer the
 * verifier sees below its 64 KiB limit. */
#define COPY_MAX_START 4096

/* Copy n (8, 16, 32 or 64) bytes, 8 at a time. */
#define COPY_U64S(dst, src, n)                                                   \
	do {                                                                     \
		_Pragma("unroll") for (int k_ = 0; k_ < (n) / 8; k_++)           \
			((__u64 *)(dst))[k_] = ((__u64 *)(src))[k_];             \
	} while (0)

/* Copy n (1, 2 or 4) bytes in one access. */
#define COPY_ONE(dst, src, n)                                                    \
	do {                                                                     \
		if ((n) == 4)                                                    \
			*(__u32 *)(dst) = *(__u32 *)(src);                       \
		else if ((n) == 2)                                               \
			*(__u16 *)(dst) = *(__u16 *)(src);                       \
		else                                                             \
			*(__u8 *)(dst) = *(__u8 *)(src);                         \
	} while (0)

/*
 * Copy up to `want` bytes of a packet, from `start` bytes after `data`, into
 * `dst`, which holds `cap` bytes. Returns how many were copied: fewer than
 * `want` when the packet ends first, 0 when nothing could be copied.
 *
 * `cap` must be a constant multiple of COPY_CHUNK at every call (the function
 * is always inlined), so that the verifier sees constant loop bounds and
 * destination offsets. Shaped for the verifier: whole chunks at offsets it
 * can bound, then one copy that ends exactly at the last byte (overlapping
 * what is already there), so no loop runs per byte.
 */
static __always_inline __u32 copy_pkt(void *data, void *data_end, __u64 start, __u8 *dst,
				      __u64 want, const __u64 cap)
{
	void *src;
	__u64 avail, len, off;

	if (start > COPY_MAX_START)
		return 0;
	src = data + start;
	if (src > data_end)
		return 0;
	/* 64-bit lengths: a 32-bit subtraction would be zero-extended and lose
	 * its bounds in the verifier's eyes. */
	avail = data_end - src;
	/* Hide how avail relates to the packet, or the compiler proves the
	 * bounds checks below redundant and drops them; the verifier needs them. */
	barrier_var(avail);
	len = want < avail ? want : avail;
	if (len > cap)
		len = cap;

#pragma clang loop unroll(disable)
	for (__u64 i = 0; i < cap / COPY_CHUNK; i++) {
		off = i * COPY_CHUNK;
		if (off + COPY_CHUNK > len)
			break;
		if (src + off + COPY_CHUNK > data_end)
			return 0;
		COPY_U64S(dst + off, src + off, COPY_CHUNK);
	}

/* The head and the tail of a range shorter than 2n and at least n bytes long. */
#define COPY_ENDS(n, copy)                                                       \
	if (len >= (n)) {                                                        \
		off = len - (n);                                                 \
		/* keep the check the compiler could prove redundant */          \
		barrier_var(off);                                                \
		if (off > cap - (n) || src + off + (n) > data_end ||             \
		    src + (n) > data_end)                                        \
			return 0;                                                \
		copy(dst, src, n);                                               \
		copy(dst + off, src + off, n);                                   \
		return len;                                                      \
	}

	COPY_ENDS(COPY_CHUNK, COPY_U64S)
	COPY_ENDS(32, COPY_U64S)
	COPY_ENDS(16, COPY_U64S)
	COPY_ENDS(8, COPY_U64S)
	COPY_ENDS(4, COPY_ONE)
	COPY_ENDS(2, COPY_ONE)
	COPY_ENDS(1, COPY_ONE)
	return 0;
#undef COPY_ENDS
}

#endif
