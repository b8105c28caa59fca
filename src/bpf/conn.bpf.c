// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * wirescope conn: TCP connection lifecycle with process, bytes and duration.
 *
 * The lifecycle (open, established, how it ended, bytes) comes from the
 * sock/inet_sock_set_state and tcp_receive_reset tracepoints on every kernel
 * (lbtf_* or ltp_*, see below). Which process owns a socket can only be
 * learnt in process context; three sets of programs do that, and user space
 * enables exactly one of them (by program name):
 *   fe_*  fentry/fexit on tcp_v4_connect, tcp_v6_connect, inet_csk_accept, tcp_close
 *   kp_*  kprobe/kretprobe on the same functions
 *   tp_*  syscall tracepoints (accept/accept4 exit) when neither is available
 */
#include "common.bpf.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "conn.h"
#include "proc.bpf.h"
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct conn_config cfg = {};
/* Set by user space: 1 when the tracepoint method is in use (connect events
 * are then emitted at SYN_SENT, before the local port is chosen). */
const volatile __u8 tracepoint_method = 0;
/* Tests only (hidden --inject-missed-closes N): ignore about one TCP_CLOSE
 * state change in N, as if the kernel had skipped the program. */
const volatile __u32 inject_skip_close = 0;

struct conn_event _conn_event_btf = {};
enum conn_counter _conn_counter_btf = COUNTER_MAP_FULL;
enum conn_limits _conn_limits_btf = MAX_CONNS;
enum conn_kind _conn_kind_btf = CONN_CONNECT;
enum conn_end _conn_end_btf = END_NONE;
enum conn_side _conn_side_btf = SIDE_UNKNOWN;
enum conn_flags _conn_flags_btf = FLAG_PROC_KNOWN;
enum family _family_btf = FAMILY_OTHER;

/* TCP states (include/net/tcp_states.h) */
enum {
	TCP_ESTABLISHED_ = 1,
	TCP_SYN_SENT_ = 2,
	TCP_SYN_RECV_ = 3,
	TCP_FIN_WAIT1_ = 4,
	TCP_FIN_WAIT2_ = 5,
	TCP_TIME_WAIT_ = 6,
	TCP_CLOSE_ = 7,
	TCP_CLOSE_WAIT_ = 8,
	TCP_LAST_ACK_ = 9,
	TCP_LISTEN_ = 10,
	TCP_CLOSING_ = 11,
};

#define IPPROTO_TCP_ 6

/* What we know about a live connection, keyed by its struct sock address. */
struct conn_state {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 pid;
	__u8 side;
	__u8 flags;     /* enum conn_flags */
	__u8 closed_by; /* END_LOCAL_CLOSE / END_REMOTE_CLOSE, first FIN */
	__u8 reset_rx;  /* a reset arrived */
	__u8 last;      /* the last state change seen into (TCP_*) */
	char comm[COMM_LEN];
	/* The addresses, kept for a close that has to be recovered (sweep_conns):
	 * by then the socket may serve another connection. */
	struct sock_tuple tuple;
	__u32 netns;
	/* When a sweep first found this socket closed (0: it did not), and the
	 * final byte counts it read then (with FLAG_FINAL_BYTES). */
	__u64 suspect_ns;
	__u64 tx_final;
	__u64 rx_final;
};

/* conn_state.flags only, next to enum conn_flags */
#define FLAG_FINAL_BYTES 0x80

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CONNS);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

/* kprobe method: the socket of a tcp_v{4,6}_connect in flight, by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} connecting SEC(".maps");

static __always_inline void recover(const struct conn_state *st);

static __always_inline struct conn_state *track(const struct sock *sk, __u8 side, __u8 state)
{
	__u64 key = (__u64)sk;
	struct conn_state fresh = {};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);

	/*
	 * Every tracked connection leaves the map at its TCP_CLOSE, and a socket
	 * opens again only after reaching TCP_CLOSE. So an entry still here means
	 * the kernel skipped our program at that close: report it now (with bytes
	 * only if a sweep read them before: the socket now serves the new
	 * connection). Whoever deletes the entry reports it (see sweep_conns).
	 */
	if (st) {
		struct conn_state gone = *st;

		if (!bpf_map_delete_elem(&conns, &key))
			recover(&gone);
	}
	fresh.start_ns = bpf_ktime_get_ns();
	fresh.side = side;
	fresh.last = state;
	fresh.flags = FLAG_START_KNOWN;
	if (bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY)) {
		count(COUNTER_MAP_FULL);
		return NULL;
	}
	st = bpf_map_lookup_elem(&conns, &key);
	return st;
}

static __always_inline struct conn_state *lookup(const struct sock *sk)
{
	__u64 key = (__u64)sk;

	return bpf_map_lookup_elem(&conns, &key);
}

/* Called in process context only: the current task owns the socket. */
static __always_inline void set_owner(struct conn_state *st)
{
	if (!st || (st->flags & FLAG_PROC_KNOWN))
		return;
	st->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(st->comm, sizeof(st->comm));
	st->cgroup_id = bpf_get_current_cgroup_id();
	st->flags |= FLAG_PROC_KNOWN;
	if (proc_match(&cfg.proc))
		st->flags |= FLAG_PROC_MATCH;
}

static __always_inline int port_wanted(const struct sock_tuple *t)
{
	if (!cfg.n_ports)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_CONN_PORTS; i++) {
		if (i >= cfg.n_ports)
			break;
		if (t->lport == cfg.ports[i] || t->rport == cfg.ports[i])
			return 1;
	}
	return 0;
}

/*
 * Payload bytes, from the kernel's own counters. bytes_sent counts every
 * transmission of data (not SYN or FIN), bytes_retrans the repeated ones, so
 * their difference is the data this side sent once. bytes_received counts the
 * advance of rcv_nxt, which includes the peer's FIN: tcp_fin() marks that with
 * SOCK_DONE, and the FIN's one sequence number is taken off again.
 */
static __always_inline __u64 payload_sent(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 sent = BPF_CORE_READ(tp, bytes_sent);
	__u64 retrans = BPF_CORE_READ(tp, bytes_retrans);

	return sent > retrans ? sent - retrans : 0;
}

static __always_inline __u64 payload_received(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	unsigned long flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	__u32 done_bit = bpf_core_enum_value(enum sock_flags, SOCK_DONE);

	if (done_bit < 64 && (flags >> done_bit) & 1 && received > 0)
		received -= 1;
	return received;
}

/*
 * One event for the connection `t`. `bytes_of`: the socket to read the byte
 * counters from (close events); NULL for a recovered close, whose counts are
 * in `st` if a sweep read them, else unknown.
 */
static __always_inline void emit_tuple(const struct sock_tuple *t, __u32 netns,
				       const struct sock *bytes_of, const struct conn_state *st,
				       __u8 kind, __u8 end, __u8 flags)
{
	struct conn_event *e;

	count(COUNTER_SEEN);
	if ((cfg.family && t->family != cfg.family) || !port_wanted(t) ||
	    (proc_filter_active(&cfg.proc) &&
	     (!st || !(st->flags & FLAG_PROC_KNOWN) || !(st->flags & FLAG_PROC_MATCH)))) {
		count(COUNTER_FILTERED);
		return;
	}
	if (flags & FLAG_RECOVERED)
		count(COUNTER_RECOVERED_CLOSE);
	e = reserve(sizeof(*e));
	if (!e)
		return;
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->end = end;
	e->family = t->family;
	e->lport = t->lport;
	e->rport = t->rport;
	__builtin_memcpy(e->laddr, t->laddr, ADDR_LEN);
	__builtin_memcpy(e->raddr, t->raddr, ADDR_LEN);
	e->netns = netns;
	if (kind == CONN_CLOSE && bytes_of) {
		e->tx_bytes = payload_sent(bytes_of);
		e->rx_bytes = payload_received(bytes_of);
	} else if (kind == CONN_CLOSE && st && (st->flags & FLAG_FINAL_BYTES)) {
		e->tx_bytes = st->tx_final;
		e->rx_bytes = st->rx_final;
	} else {
		e->tx_bytes = 0;
		e->rx_bytes = 0;
		if (kind == CONN_CLOSE)
			flags |= FLAG_NO_BYTES;
	}
	if (st) {
		e->start_ns = st->start_ns;
		e->pid = st->pid;
		e->cgroup_id = st->cgroup_id;
		e->side = st->side;
		e->flags = flags | (st->flags & (FLAG_PROC_KNOWN | FLAG_START_KNOWN));
		__builtin_memcpy(e->comm, st->comm, COMM_LEN);
	} else {
		e->start_ns = 0;
		e->pid = 0;
		e->cgroup_id = 0;
		e->side = SIDE_UNKNOWN;
		e->flags = flags;
		__builtin_memset(e->comm, 0, COMM_LEN);
	}
	submit(e);
}

/* An event for a socket as it is now. */
static __always_inline void emit(const struct sock *sk, const struct conn_state *st, __u8 kind,
				 __u8 end)
{
	struct sock_tuple t = {};

	if (sock_tuple(sk, &t))
		return;
	emit_tuple(&t, sock_netns(sk), kind == CONN_CLOSE ? sk : NULL, st, kind, end, 0);
}

/* The close of a connection whose TCP_CLOSE we did not see, from what we
 * kept (its bytes only if a sweep read them before the socket was reused). */
static __always_inline void recover(const struct conn_state *st)
{
	__u8 end = st->reset_rx ? END_RESET_RECEIVED : st->closed_by ? st->closed_by : END_UNKNOWN;

	emit_tuple(&st->tuple, st->netns, NULL, st, CONN_CLOSE, end, FLAG_RECOVERED);
}

/* Keep the connection's addresses (complete from ESTABLISHED on; an active
 * open has no local port yet at SYN_SENT with the tracepoint method). */
static __always_inline void remember(const struct sock *sk, struct conn_state *st, __u8 state)
{
	if (!st)
		return;
	st->last = state;
	if (!sock_tuple(sk, &st->tuple))
		st->netns = sock_netns(sk);
}

/* How a connection that reached TCP_CLOSE from `old` ended. */
static __always_inline __u8 end_reason(int old, const struct conn_state *st)
{
	int reset_rx = st && st->reset_rx;

	if (old == TCP_SYN_SENT_)
		return reset_rx ? END_REFUSED : END_CONNECT_FAILED;
	if (reset_rx)
		return END_RESET_RECEIVED;
	switch (old) {
	case TCP_LAST_ACK_:
	case TCP_FIN_WAIT2_:
	case TCP_CLOSING_:
	case TCP_TIME_WAIT_:
		return st && st->closed_by ? st->closed_by : END_UNKNOWN;
	default:
		/* from ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, SYN_RECV without a FIN
		 * exchange and without a reset from the peer: aborted here */
		return END_RESET_SENT;
	}
}

/* A TCP socket moved from `old` to `new` (any context). */
static __always_inline void on_state(const struct sock *sk, int old, int new)
{
	struct conn_state *st;

	switch (new) {
	case TCP_SYN_SENT_:
		/* connect(): process context */
		st = track(sk, SIDE_ACTIVE, new);
		remember(sk, st, new);
		set_owner(st);
		if (tracepoint_method && cfg.events && st)
			emit(sk, st, CONN_CONNECT, END_NONE);
		return;
	case TCP_SYN_RECV_:
		/* the child socket of a listener: softirq, owner unknown until accept */
		if (old == TCP_LISTEN_ || old == TCP_CLOSE_)
			remember(sk, track(sk, SIDE_PASSIVE, new), new);
		return;
	case TCP_ESTABLISHED_:
		st = lookup(sk);
		remember(sk, st, new);
		if (cfg.events)
			emit(sk, st, CONN_ESTABLISHED, END_NONE);
		return;
	case TCP_FIN_WAIT1_:
		/* close() or shutdown() here: process context */
		st = lookup(sk);
		if (st && !st->closed_by)
			st->closed_by = END_LOCAL_CLOSE;
		if (st)
			st->last = new;
		set_owner(st);
		return;
	case TCP_CLOSE_WAIT_:
		st = lookup(sk);
		if (st && !st->closed_by)
			st->closed_by = END_REMOTE_CLOSE;
		if (st)
			st->last = new;
		return;
	case TCP_LAST_ACK_:
		/* the passive closer's close(): process context */
		st = lookup(sk);
		if (st)
			st->last = new;
		set_owner(st);
		return;
	case TCP_CLOSE_:
		if (old == TCP_LISTEN_)
			return;
		if (inject_skip_close && bpf_get_prandom_u32() % inject_skip_close == 0) {
			count(COUNTER_INJECTED_SKIP);
			return;
		}
		st = lookup(sk);
		if (!st)
			count(COUNTER_UNTRACKED_CLOSE);
		emit(sk, st, CONN_CLOSE, end_reason(old, st));
		if (st) {
			__u64 key = (__u64)sk;

			bpf_map_delete_elem(&conns, &key);
		}
		return;
	}
}

static __always_inline void on_reset_received(const struct sock *sk)
{
	struct conn_state *st = lookup(sk);

	if (st)
		st->reset_rx = 1;
}

/*
 * The lifecycle hooks come in two flavours; user space loads one (which
 * first depends on the kernel: see tp_flavours() in src/tracing.rs):
 *   lbtf_*  BTF tracepoints (tp_btf)
 *   ltp_*   classic tracepoints
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(lbtf_set_state, const struct sock *sk, int old, int new)
{
	if (BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP_)
		on_state(sk, old, new);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(lbtf_receive_reset, struct sock *sk)
{
	on_reset_received(sk);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int ltp_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol == IPPROTO_TCP_)
		on_state(ctx->skaddr, ctx->oldstate, ctx->newstate);
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int ltp_receive_reset(struct trace_event_raw_tcp_event_sk *ctx)
{
	on_reset_received(ctx->skaddr);
	return 0;
}

/*
 * The sweep: finds connections whose TCP_CLOSE our lifecycle program did not
 * see (the kernel skips a tracing program that is already running on that
 * CPU, sometimes without counting it), so that every connection still gets
 * its close line. User space runs it about once a second and twice before it
 * detaches, through a BPF iterator over `conns`.
 *
 * A socket is gone when it is in TCP_CLOSE or TCP_LISTEN (sockets are
 * type-stable memory, so reading a freed one is harmless and shows its last
 * state), or when it now has other ports than the connection we kept (reused
 * for a connection whose opening we did not see either). A state change in
 * flight looks the same for a moment (our program runs just before the
 * kernel stores the new state): an entry is reported only when a sweep at
 * least SWEEP_HOLD_NS earlier found it gone too, or SWEEP_FRESH_HOLD_NS for a
 * connection whose last state seen was its opening. For each entry it leaves
 * waiting for that, it writes one byte to the iterator's output, so that user
 * space sweeps again soon instead of after its usual pause.
 */
#define SWEEP_HOLD_NS 10000000ULL        /* 10 ms */
#define SWEEP_FRESH_HOLD_NS 1000000000ULL /* 1 s */

SEC("iter/bpf_map_elem")
int sweep_conns(struct bpf_iter__bpf_map_elem *ctx)
{
	__u64 *keyp = ctx->key;
	struct conn_state *st = ctx->value;
	struct seq_file *seq = ctx->meta->seq;
	struct sock_tuple now_tuple = {};
	char again = 1;
	struct conn_state gone;
	const struct sock *sk;
	__u64 key, now, hold;
	int state, same, closed;

	if (!keyp || !st)
		return 0;
	key = *keyp;
	sk = (const struct sock *)key;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	same = !sock_tuple(sk, &now_tuple) && now_tuple.family == st->tuple.family &&
	       now_tuple.rport == st->tuple.rport &&
	       (!st->tuple.lport || now_tuple.lport == st->tuple.lport);
	closed = state == TCP_CLOSE_ || state == TCP_LISTEN_;
	if (!closed && same) {
		st->suspect_ns = 0;
		return 0;
	}
	if (closed && same) {
		/* still this connection's socket: its counts are final */
		st->tx_final = payload_sent(sk);
		st->rx_final = payload_received(sk);
		st->flags |= FLAG_FINAL_BYTES;
	}
	now = bpf_ktime_get_ns();
	hold = st->last == TCP_SYN_SENT_ || st->last == TCP_SYN_RECV_ ? SWEEP_FRESH_HOLD_NS
								     : SWEEP_HOLD_NS;
	if (!st->suspect_ns)
		st->suspect_ns = now;
	if (now - st->suspect_ns < hold) {
		bpf_seq_write(seq, &again, 1);
		return 0;
	}
	/* Copy before deleting: a deleted element's memory is reused at once. */
	__builtin_memcpy(&gone, st, sizeof(gone));
	if (bpf_map_delete_elem(&conns, &key))
		return 0; /* its close or a new opening on the socket came first */
	recover(&gone);
	return 0;
}

/* --- shared by the process-context hooks of every method --- */

static __always_inline void on_connect(const struct sock *sk, int ret)
{
	struct conn_state *st;

	if (ret != 0 && ret != -115 /* -EINPROGRESS */)
		return;
	st = lookup(sk);
	set_owner(st);
	if (cfg.events && st)
		emit(sk, st, CONN_CONNECT, END_NONE);
}

static __always_inline void on_accept(const struct sock *sk)
{
	struct conn_state *st;

	if (!sk)
		return;
	st = lookup(sk);
	if (!st)
		return;
	set_owner(st);
	if (cfg.events)
		emit(sk, st, CONN_ACCEPT, END_NONE);
}

static __always_inline void on_close_call(const struct sock *sk)
{
	set_owner(lookup(sk));
}

/* --- fentry/fexit --- */

SEC("fexit/tcp_v4_connect")
int BPF_PROG(fe_v4_connect, struct sock *sk, struct sockaddr *uaddr, int addr_len, int ret)
{
	on_connect(sk, ret);
	return 0;
}

SEC("fexit/tcp_v6_connect")
int BPF_PROG(fe_v6_connect, struct sock *sk, struct sockaddr *uaddr, int addr_len, int ret)
{
	on_connect(sk, ret);
	return 0;
}

/* inet_csk_accept(sk, flags, err, kern) before Linux 6.10 */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fe_accept4, struct sock *sk, int flags, int *err, bool kern, struct sock *ret)
{
	on_accept(ret);
	return 0;
}

/* inet_csk_accept(sk, arg) since Linux 6.10 */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fe_accept2, struct sock *sk, void *arg, struct sock *ret)
{
	on_accept(ret);
	return 0;
}

SEC("fentry/tcp_close")
int BPF_PROG(fe_close, struct sock *sk, long timeout)
{
	on_close_call(sk);
	return 0;
}

/* --- kprobe/kretprobe --- */

static __always_inline void stash_connect(const struct sock *sk)
{
	__u64 tid = bpf_get_current_pid_tgid();
	__u64 v = (__u64)sk;

	bpf_map_update_elem(&connecting, &tid, &v, BPF_ANY);
}

static __always_inline void connect_returned(int ret)
{
	__u64 tid = bpf_get_current_pid_tgid();
	__u64 *sk = bpf_map_lookup_elem(&connecting, &tid);

	if (!sk)
		return;
	on_connect((const struct sock *)*sk, ret);
	bpf_map_delete_elem(&connecting, &tid);
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(kp_v4_connect, struct sock *sk)
{
	stash_connect(sk);
	return 0;
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(kp_v4_connect_ret, int ret)
{
	connect_returned(ret);
	return 0;
}

SEC("kprobe/tcp_v6_connect")
int BPF_KPROBE(kp_v6_connect, struct sock *sk)
{
	stash_connect(sk);
	return 0;
}

SEC("kretprobe/tcp_v6_connect")
int BPF_KRETPROBE(kp_v6_connect_ret, int ret)
{
	connect_returned(ret);
	return 0;
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kp_accept_ret, struct sock *newsk)
{
	on_accept(newsk);
	return 0;
}

SEC("kprobe/tcp_close")
int BPF_KPROBE(kp_close, struct sock *sk)
{
	on_close_call(sk);
	return 0;
}

/* --- tracepoints only: accept() learnt from the returned file descriptor --- */

static __always_inline const struct sock *sock_of_fd(long fd)
{
	struct file *file = file_of_fd(fd);
	struct socket *sock;

	if (!file)
		return NULL;
	/* accept() returns socket files: private_data is the struct socket */
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret >= 0)
		on_accept(sock_of_fd(ctx->ret));
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret >= 0)
		on_accept(sock_of_fd(ctx->ret));
	return 0;
}
