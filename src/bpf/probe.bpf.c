// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * wirescope probe: one tiny program per attach family. User space loads and
 * attaches them one at a time to learn what this kernel really allows.
 */
#include "common.bpf.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Not on a function the commands trace: attaching or detaching any fentry/
 * fexit program rebuilds that function's trampoline, and a call in progress
 * then returns without running the fexit programs (sendlat would lose the
 * sends blocked in tcp_sendmsg whenever a command starts). This function runs
 * only under BPF_PROG_TEST_RUN. */
SEC("fentry/bpf_fentry_test1")
int BPF_PROG(probe_fentry, int a)
{
	count(COUNTER_SEEN);
	return 0;
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(probe_kprobe, struct sock *sk)
{
	count(COUNTER_SEEN);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int probe_tracepoint(void *ctx)
{
	count(COUNTER_SEEN);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(probe_tp_btf, const struct sock *sk, int oldstate, int newstate)
{
	count(COUNTER_SEEN);
	return 0;
}

SEC("xdp")
int probe_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int probe_tc(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC: no opinion */
}
