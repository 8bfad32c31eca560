/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kernel.h - the few kernel types and kfuncs the host scheduler uses, written by hand.
 *
 * Why not vmlinux.h: building the host must not need a downloaded kernel. Every struct below
 * carries only the members the host reads and is marked preserve_access_index, so clang emits
 * CO-RE relocations and libbpf fixes the offsets against the running kernel's BTF at load time.
 * `struct sched_ext_ops` is matched member by member by name against the kernel's, so it too
 * lists only what the host sets. UAPI types (bpf_spin_lock, bpf_timer) have a fixed layout.
 */
#ifndef UPSCHED_KERNEL_H
#define UPSCHED_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
	BPF_F_MMAPABLE = 1024,
};

/* CLOCK_MONOTONIC for bpf_timer_init. */
#define CLOCK_MONOTONIC 1

struct bpf_spin_lock {
	__u32 val;
};

struct bpf_timer {
	__u64 __opaque[2];
} __attribute__((aligned(8)));

#define __kptr_ctx __attribute__((preserve_access_index))

/* A complete struct (not a forward declaration): libbpf's kfunc prototype check compares
 * the kind of pointed-to types, and a FWD does not match the kernel's STRUCT. */
struct cpumask {
	unsigned long bits[1];
} __kptr_ctx;

struct sched_ext_entity {
	u32 flags;
	u32 weight;
	u64 slice;
	u64 dsq_vtime;
} __kptr_ctx;

struct sched_entity {
	u64 sum_exec_runtime;
} __kptr_ctx;

struct css_set;

struct signal_struct {
	unsigned int flags;
} __kptr_ctx;

struct task_struct {
	int pid;
	int tgid;
	int static_prio;
	int nr_cpus_allowed;
	unsigned long nvcsw;
	unsigned long nivcsw;
	const struct cpumask *cpus_ptr;
	struct signal_struct *signal;
	struct css_set *cgroups;
	struct sched_entity se;
	struct sched_ext_entity scx;
} __kptr_ctx;

struct kernfs_node {
	u64 id;
} __kptr_ctx;

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} __kptr_ctx;

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	int level;
} __kptr_ctx;

struct css_set {
	struct cgroup *dfl_cgrp;
} __kptr_ctx;

struct scx_init_task_args {
	bool fork;
	struct cgroup *cgroup;
} __kptr_ctx;

struct scx_exit_task_args {
	bool cancelled;
} __kptr_ctx;

enum scx_exit_kind {
	SCX_EXIT_NONE = 0,
};

struct scx_exit_info {
	enum scx_exit_kind kind;
	s64 exit_code;
	const char *reason;
	char *msg;
} __kptr_ctx;

/* Only the members the host sets; libbpf matches them by name with the kernel's. */
struct sched_ext_ops {
	s32 (*select_cpu)(struct task_struct *p, s32 prev_cpu, u64 wake_flags);
	void (*enqueue)(struct task_struct *p, u64 enq_flags);
	void (*dispatch)(s32 cpu, struct task_struct *prev);
	void (*tick)(struct task_struct *p);
	void (*running)(struct task_struct *p);
	void (*stopping)(struct task_struct *p, bool runnable);
	s32 (*init_task)(struct task_struct *p, struct scx_init_task_args *args);
	void (*exit_task)(struct task_struct *p, struct scx_exit_task_args *args);
	void (*enable)(struct task_struct *p);
	void (*cgroup_move)(struct task_struct *p, struct cgroup *from, struct cgroup *to);
	s32 (*init)(void);
	void (*exit)(struct scx_exit_info *info);
	u64 flags;
	u32 timeout_ms;
	char name[128];
};

/* Constants of the sched_ext UAPI-like enums (stable since 6.12). */
#define SCX_DSQ_FLAG_BUILTIN (1ULL << 63)
#define SCX_DSQ_GLOBAL (SCX_DSQ_FLAG_BUILTIN | 1)
#define SCX_DSQ_LOCAL (SCX_DSQ_FLAG_BUILTIN | 2)
#define SCX_DSQ_LOCAL_ON (SCX_DSQ_FLAG_BUILTIN | (1ULL << 62))
#define SCX_ENQ_WAKEUP (1ULL << 0)
#define SCX_ENQ_HEAD (1ULL << 16)
#define SCX_ENQ_PREEMPT (1ULL << 32)
#define SCX_ENQ_REENQ (1ULL << 40)
#define SCX_ENQ_LAST (1ULL << 41)
#define SCX_WAKE_FORK 0x04
#define SCX_WAKE_TTWU 0x08
#define SCX_WAKE_SYNC 0x10
#define SCX_KICK_IDLE 1
#define SCX_KICK_PREEMPT 2
#define SCX_TASK_QUEUED 1
#define SCX_OPS_ENQ_LAST (1ULL << 1)
#define SCX_OPS_ENQ_EXITING (1ULL << 2)
#define SCX_OPS_SWITCH_PARTIAL (1ULL << 3)
#define SCX_SLICE_DFL (20ULL * 1000 * 1000)
#define SIGNAL_GROUP_EXIT 0x00000004
#define NUMA_NO_NODE (-1)

#define __ksym __attribute__((section(".ksyms")))
#define __weak __attribute__((weak))

/* sched_ext kfuncs (6.13+ names; the 7.x kernels add hidden arguments the BPF side never sees). */
extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym;
extern void scx_bpf_dsq_insert_vtime(struct task_struct *p, u64 dsq_id, u64 slice, u64 vtime,
				     u64 enq_flags) __ksym;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags,
				  bool *is_idle) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern u32 scx_bpf_nr_cpu_ids(void) __ksym;
extern u64 scx_bpf_now(void) __ksym __weak;
extern struct cgroup *scx_bpf_task_cgroup(struct task_struct *p) __ksym;
extern struct task_struct *scx_bpf_dsq_peek(u64 dsq_id) __ksym __weak;
extern void scx_bpf_dsq_reenq(u64 dsq_id, u64 reenq_flags) __ksym __weak;
extern void scx_bpf_error_bstr(char *fmt, unsigned long long *data, u32 data__sz) __ksym;
extern bool bpf_cpumask_test_cpu(u32 cpu, const struct cpumask *cpumask) __ksym;
extern struct cgroup *bpf_cgroup_ancestor(struct cgroup *cgrp, int level) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

struct bpf_iter_scx_dsq {
	u64 __opaque[6];
} __attribute__((aligned(8)));
extern int bpf_iter_scx_dsq_new(struct bpf_iter_scx_dsq *it, u64 dsq_id, u64 flags) __ksym;
extern struct task_struct *bpf_iter_scx_dsq_next(struct bpf_iter_scx_dsq *it) __ksym;
extern void bpf_iter_scx_dsq_destroy(struct bpf_iter_scx_dsq *it) __ksym;

#endif /* UPSCHED_KERNEL_H */
