/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Reading a socket's addresses with CO-RE, for the tracing programs.
 * Ports come out in HOST order (the one conversion, here); addresses are
 * copied as network-order bytes.
 */
#ifndef WIRESCOPE_SOCK_BPF_H
#define WIRESCOPE_SOCK_BPF_H

#include "common.bpf.h"
#include <bpf/bpf_core_read.h>

#define AF_INET_ 2
#define AF_INET6_ 10

struct sock_tuple {
	__u8 family; /* enum family */
	__u16 lport;
	__u16 rport;
	__u8 laddr[ADDR_LEN];
	__u8 raddr[ADDR_LEN];
};

/* Returns 0 for an IPv4/IPv6 socket, -1 otherwise. */
static __always_inline int sock_tuple(const struct sock *sk, struct sock_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == AF_INET_) {
		t->family = FAMILY_IPV4;
		bpf_core_read(t->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(t->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6_) {
		t->family = FAMILY_IPV6;
		bpf_core_read(t->laddr, ADDR_LEN, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->raddr, ADDR_LEN, &sk->__sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	/* inet_sport, not skc_num: the kernel zeroes skc_num when it releases the
	 * port, before the socket reports TCP_CLOSE. Both are network order. */
	t->lport = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return 0;
}

/* The current task's open file `fd`, or NULL (process context only). */
static __always_inline struct file *file_of_fd(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file;
}

/* Inode number of the socket's network namespace. */
static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

#endif
