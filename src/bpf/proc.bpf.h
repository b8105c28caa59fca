/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Process filters, evaluated in process context only (never in softirq,
 * where "current" is whatever task was interrupted). */
#ifndef WIRESCOPE_PROC_BPF_H
#define WIRESCOPE_PROC_BPF_H

#include "common.bpf.h"
#include "proc.h"

/* Slot 0 holds the cgroup of --cgroup (set by the user side before attach). */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroup_filter SEC(".maps");

static __always_inline int proc_filter_active(const volatile struct proc_filter *f)
{
	return f->pid || f->use_comm || f->use_cgroup;
}

/* Does the current task pass -p/--comm/--cgroup? */
static __always_inline int proc_match(const volatile struct proc_filter *f)
{
	if (f->pid && (__u32)(bpf_get_current_pid_tgid() >> 32) != f->pid)
		return 0;
	if (f->use_comm) {
		char comm[COMM_LEN];

		bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
		for (int i = 0; i < COMM_LEN; i++) {
			if (comm[i] != f->comm[i])
				return 0;
			if (comm[i] == 0)
				break;
		}
	}
	/* 1: in the cgroup or below it */
	if (f->use_cgroup && bpf_current_task_under_cgroup(&cgroup_filter, 0) != 1)
		return 0;
	return 1;
}

#endif
