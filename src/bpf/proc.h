/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Process filters (-p, --comm, --cgroup) shared by the tracing programs. */
#ifndef WIRESCOPE_PROC_H
#define WIRESCOPE_PROC_H

#include "common.h"

struct proc_filter {
	__u32 pid;           /* tgid; 0 = any */
	__u8 use_comm;       /* 1: comm must equal `comm` */
	__u8 use_cgroup;     /* 1: the task must be in the cgroup of map `cgroup_filter` (or below) */
	__u8 pad[2];
	char comm[COMM_LEN];
};

#endif
