// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * wirescope sendlat: time spent sending on TCP sockets, one event per call,
 * or log2 histograms aggregated here (no per-call events).
 *
 * Three sets of programs; user space loads exactly one of them (by name):
 *   fe_*  fentry/fexit tcp_sendmsg
 *   kp_*  kprobe/kretprobe tcp_sendmsg
 *   tp_*  the entry tracepoints of the syscalls that send on a socket, ended by
 *         sock:sock_send_length when the socket layer returns (Linux >= 6.3)
 * A start is remembered per thread (bpf_get_current_pid_tgid()) and the return
 * on the same thread ends it: kprobe programs may not call
 * bpf_get_socket_cookie(), and a thread is in at most one send at a time.
 */
#include "common.bpf.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "sendlat.h"
#include "proc.bpf.h"
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct sendlat_config cfg = {};

struct sendlat_event _sendlat_event_btf = {};
struct hist_key _hist_key_btf = {};
struct hist_value _hist_value_btf = {};
enum sendlat_counter _sendlat_counter_btf = COUNTER_UNDER_MIN;
enum sendlat_limits _sendlat_limits_btf = HIST_SLOTS;
enum hist_per _hist_per_btf = PER_NONE;
enum sendlat_flags _sendlat_flags_btf = FLAG_SIZE_KNOWN;
enum family _family_btf = FAMILY_OTHER;

#define IPPROTO_TCP_ 6
#define SOCK_STREAM_ 1
#define S_IFMT_ 0170000
#define S_IFSOCK_ 0140000
#define EEXIST_ 17

/* How the requested size is learnt (tracepoint method). */
enum call_kind {
	CALL_SIZED = 0, /* given at the start (tcp_sendmsg, write, send, sendto) */
	CALL_IOV = 1,   /* writev: sum of an iovec array */
	CALL_MSG = 2,   /* sendmsg: the iovecs of a user_msghdr */
	CALL_MMSG = 3,  /* sendmmsg: the iovecs of message `idx` of an mmsghdr array */
};

/* A call in progress, by thread. */
struct start {
	__u64 ts;
	__u64 sk;    /* the socket (kprobe: unknown at the return; tracepoints: checked) */
	__u64 size;  /* CALL_SIZED: bytes requested */
	__u64 uptr;  /* CALL_IOV/MSG/MMSG: the user memory to read the size from */
	__u32 n;     /* CALL_IOV: iovec count; CALL_MMSG: message count */
	__u32 idx;   /* CALL_MMSG: the message being sent */
	__u8 kind;   /* enum call_kind */
	__u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_IN_FLIGHT);
	__type(key, __u64); /* bpf_get_current_pid_tgid() */
	__type(value, struct start);
} starts SEC(".maps");

/* User space sizes it: 1 key without --per, MAX_HIST_KEYS with it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_HIST_KEYS);
	__type(key, struct hist_key);
	__type(value, struct hist_value);
} hists SEC(".maps");

/* A call began on this thread: remember when, unless a process filter says no. */
static __always_inline void begin(struct start *s)
{
	__u64 tid = bpf_get_current_pid_tgid();
	/* int, not long: older kernels call a map update straight through the
	 * map's ops, whose int result leaves the register's upper half zero
	 * (5.10 returns -EEXIST as 0xffffffef): compare the lower 32 bits */
	int err;

	count(COUNTER_SEEN);
	if (proc_filter_active(&cfg.proc) && !proc_match(&cfg.proc)) {
		count(COUNTER_FILTERED);
		return;
	}
	s->ts = bpf_ktime_get_ns();
	err = bpf_map_update_elem(&starts, &tid, s, BPF_NOEXIST);
	if (err == -EEXIST_) {
		/* this thread's previous call never returned as far as we saw */
		count(COUNTER_NO_RETURN);
		err = bpf_map_update_elem(&starts, &tid, s, BPF_ANY);
	}
	if (err)
		count(COUNTER_START_FULL);
}

/* A return without a start: filtered when it began (counted then), or unpaired. */
static __always_inline void no_start(void)
{
	if (proc_filter_active(&cfg.proc) && !proc_match(&cfg.proc))
		return;
	count(COUNTER_UNPAIRED);
}

static __always_inline int port_wanted(const struct sock_tuple *t)
{
	if (!cfg.n_ports)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_SENDLAT_PORTS; i++) {
		if (i >= cfg.n_ports)
			break;
		if (t->lport == cfg.ports[i] || t->rport == cfg.ports[i])
			return 1;
	}
	return 0;
}

/* Number of significant bits: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ... */
static __always_inline __u32 bit_len(__u64 v)
{
	__u32 n = 0;

	if (v >> 32) {
		v >>= 32;
		n += 32;
	}
	if (v >> 16) {
		v >>= 16;
		n += 16;
	}
	if (v >> 8) {
		v >>= 8;
		n += 8;
	}
	if (v >> 4) {
		v >>= 4;
		n += 4;
	}
	if (v >> 2) {
		v >>= 2;
		n += 2;
	}
	if (v >> 1) {
		v >>= 1;
		n += 1;
	}
	return n + (__u32)v;
}

static __always_inline void hist_add(__u64 latency_ns)
{
	struct hist_key key = {};
	struct hist_value *h;
	__u32 slot;

	if (cfg.per == PER_PID)
		key.pid = bpf_get_current_pid_tgid() >> 32;
	else if (cfg.per == PER_COMM)
		bpf_get_current_comm(key.comm, sizeof(key.comm));
	h = bpf_map_lookup_elem(&hists, &key);
	if (!h) {
		struct hist_value fresh = {};

		if (cfg.per == PER_PID)
			bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
		/* NOEXIST: another CPU may have made it meanwhile, and keeps it */
		bpf_map_update_elem(&hists, &key, &fresh, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &key);
		if (!h) {
			count(COUNTER_HIST_FULL);
			return;
		}
	}
	slot = bit_len(latency_ns / 1000);
	if (slot >= HIST_SLOTS)
		slot = HIST_SLOTS - 1;
	/* clang may compare one copy of slot and index with another: bound the
	 * one it indexes with in a way the verifier sees (HIST_SLOTS is 2^n) */
	barrier_var(slot);
	slot &= HIST_SLOTS - 1;
	/* the results are unused: plain atomic adds, which Linux 5.10 has */
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, latency_ns);
	count(COUNTER_IN_HIST);
}

/* A call that began at `start_ns` returned `ret` now: filter, then count or emit. */
static __always_inline void end(const struct sock *sk, __u64 start_ns, __s64 ret, __u64 size,
				__u8 size_known)
{
	__u64 latency = bpf_ktime_get_ns() - start_ns;
	struct sock_tuple t = {};
	struct sendlat_event *e;

	if (cfg.family || cfg.n_ports) {
		if (sock_tuple(sk, &t) || (cfg.family && t.family != cfg.family) ||
		    !port_wanted(&t)) {
			count(COUNTER_FILTERED);
			return;
		}
	}
	if (latency < cfg.min_ns) {
		count(COUNTER_FILTERED);
		count(COUNTER_UNDER_MIN);
		return;
	}
	if (cfg.hist) {
		hist_add(latency);
		return;
	}
	if (!cfg.family && !cfg.n_ports && sock_tuple(sk, &t)) {
		/* not IPv4/IPv6: cannot happen for TCP; keep the counts adding up */
		count(COUNTER_FILTERED);
		return;
	}
	e = reserve(sizeof(*e));
	if (!e)
		return;
	e->ts_ns = start_ns + latency;
	e->latency_ns = latency;
	e->size = size;
	e->ret = ret;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->lport = t.lport;
	e->rport = t.rport;
	e->family = t.family;
	e->flags = size_known ? FLAG_SIZE_KNOWN : 0;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->laddr, t.laddr, ADDR_LEN);
	__builtin_memcpy(e->raddr, t.raddr, ADDR_LEN);
	submit(e);
}

/* --- fentry/fexit: exactly the time inside tcp_sendmsg --- */

SEC("fentry/tcp_sendmsg")
int BPF_PROG(fe_send, struct sock *sk, struct msghdr *msg, size_t size)
{
	struct start s = {};

	begin(&s);
	return 0;
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fe_send_ret, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	__u64 start_ns;

	if (!s) {
		no_start();
		return 0;
	}
	start_ns = s->ts;
	bpf_map_delete_elem(&starts, &tid);
	end(sk, start_ns, ret, size, 1);
	return 0;
}

/* --- kprobe/kretprobe: the same span, plus the probes' own cost --- */

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kp_send, struct sock *sk, struct msghdr *msg, size_t size)
{
	struct start s = {};

	s.sk = (__u64)sk;
	s.size = size;
	begin(&s);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kp_send_ret, int ret)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	__u64 start_ns, sk, size;

	if (!s) {
		no_start();
		return 0;
	}
	start_ns = s->ts;
	sk = s->sk;
	size = s->size;
	bpf_map_delete_elem(&starts, &tid);
	end((const struct sock *)sk, start_ns, ret, size, 1);
	return 0;
}

/*
 * --- tracepoints only: from the syscall's entry to sock:sock_send_length ---
 *
 * The entry of write, writev, send, sendto, sendmsg and sendmmsg on a TCP
 * socket starts a call; sock:sock_send_length, which the socket layer fires
 * after the protocol's sendmsg returned, ends it if it is the same socket.
 * Sends that do not come through these syscalls (io_uring, sendfile/splice,
 * kernel sockets, 32-bit processes) have no start: counted as unpaired.
 */

/* The TCP socket open as `fd`, or NULL; other sockets are counted. */
static __always_inline struct sock *tcp_sock_of_fd(long fd)
{
	struct file *file = file_of_fd(fd);
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if (!file)
		return NULL;
	/* a regular file, pipe, tty...: a write, not a send */
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT_) != S_IFSOCK_)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_ ||
	    BPF_CORE_READ(sk, sk_type) != SOCK_STREAM_ ||
	    (family != AF_INET_ && family != AF_INET6_)) {
		count(COUNTER_OTHER_SOCKET);
		return NULL;
	}
	return sk;
}

static __always_inline void syscall_begin(long fd, __u8 kind, __u64 size, __u64 uptr, __u64 n)
{
	struct sock *sk = tcp_sock_of_fd(fd);
	struct start s = {};

	if (!sk)
		return;
	s.sk = (__u64)sk;
	s.kind = kind;
	s.size = size;
	s.uptr = uptr;
	s.n = n > 0xffffffff ? 0xffffffff : (__u32)n;
	begin(&s);
}

/* Sum of the lengths of `n` iovecs in user memory; 0 when unknown. */
static __always_inline int iov_sum(__u64 uiov, __u64 n, __u64 *sum)
{
	struct iovec v;

	*sum = 0;
	if (n > MAX_IOV_SUM)
		return 0;
	for (__u32 i = 0; i < MAX_IOV_SUM; i++) {
		if (i >= n)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), (const void *)(uiov + i * sizeof(v))))
			return 0;
		*sum += v.iov_len;
	}
	return 1;
}

/* The bytes the caller asked to send; returns 0 when they cannot be known. */
static __always_inline int requested_size(const struct start *s, __u64 *size)
{
	struct user_msghdr m;
	__u64 at;

	switch (s->kind) {
	case CALL_SIZED:
		*size = s->size;
		return 1;
	case CALL_IOV:
		return iov_sum(s->uptr, s->n, size);
	case CALL_MSG:
	case CALL_MMSG:
		/* the kernel has just copied this memory: it is resident */
		at = s->uptr;
		if (s->kind == CALL_MMSG)
			at += (__u64)s->idx * sizeof(struct mmsghdr);
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)at))
			return 0;
		return iov_sum((__u64)m.msg_iov, m.msg_iovlen, size);
	}
	return 0;
}

SEC("tracepoint/sock/sock_send_length")
int tp_send_length(struct trace_event_raw_sock_msg_length *ctx)
{
	const struct sock *sk = ctx->sk;
	__u64 tid, start_ns, size = 0;
	struct start *s;
	int known;
	__s64 ret;

	if (ctx->protocol != IPPROTO_TCP_)
		return 0;
	tid = bpf_get_current_pid_tgid();
	s = bpf_map_lookup_elem(&starts, &tid);
	if (!s || s->sk != (__u64)sk) {
		if (BPF_CORE_READ(sk, sk_type) == SOCK_STREAM_)
			no_start();
		return 0;
	}
	start_ns = s->ts;
	ret = ctx->ret;
	known = requested_size(s, &size);
	if (s->kind == CALL_MMSG && s->idx + 1 < s->n && ret >= 0 && (!known || ret == size)) {
		/* sendmmsg goes on with its next message, which starts now */
		s->idx += 1;
		s->ts = bpf_ktime_get_ns();
		count(COUNTER_SEEN);
	} else {
		bpf_map_delete_elem(&starts, &tid);
	}
	end(sk, start_ns, ret, size, known);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_SIZED, ctx->args[2], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int tp_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_IOV, 0, ctx->args[1], ctx->args[2]);
	return 0;
}

/* Only where send(2) is a syscall of its own (not x86-64: there libc's
 * send() is sendto); user space skips it where the tracepoint is missing. */
SEC("tracepoint/syscalls/sys_enter_send")
int tp_enter_send(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_SIZED, ctx->args[2], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int tp_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_SIZED, ctx->args[2], 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tp_enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_MSG, 0, ctx->args[1], 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int tp_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx)
{
	syscall_begin(ctx->args[0], CALL_MMSG, 0, ctx->args[1], ctx->args[2]);
	return 0;
}
