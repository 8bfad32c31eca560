/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * host_intf.h - the layout shared by the host scheduler (BPF) and its loader (Rust,
 * crates/upsched-kernel/src/intf.rs). Every struct has a _Static_assert on its size here and a
 * const assert on the same size in Rust, so a change on one side only fails the build.
 */
#ifndef UPSCHED_HOST_INTF_H
#define UPSCHED_HOST_INTF_H

/* Tenant slots; class index UPSCHED_DEFAULT_CLASS is the host's default class. */
#define UPSCHED_NR_SLOTS 8
#define UPSCHED_DEFAULT_CLASS UPSCHED_NR_SLOTS
#define UPSCHED_NR_CLASSES (UPSCHED_NR_SLOTS + 1)
/* Chain levels 0..UPSCHED_NR_LEVELS-1; higher runs first. */
#define UPSCHED_NR_LEVELS 8
/* Wait-time histogram: bucket 0 < 2 us, bucket i in [2^i, 2^(i+1)) us, last bucket the rest. */
#define UPSCHED_WAIT_BUCKETS 20

/* DSQ ids: one vtime-ordered queue per class, one park queue per slot. */
#define UPSCHED_CLASS_DSQ(cls) (0x100ULL + (cls))
#define UPSCHED_PARK_DSQ(slot) (0x200ULL + (slot))

enum upsched_slot_state {
	UPSCHED_SLOT_FREE = 0,
	UPSCHED_SLOT_ACTIVE = 1,
	UPSCHED_SLOT_EJECTED = 2,
	/* Detached by user space, whose links still hold the policy: members leave, calling
	 * task_exit, until user space frees the slot. */
	UPSCHED_SLOT_DRAINING = 3,
};

enum upsched_eject_reason {
	UPSCHED_EJECT_NONE = 0,
	UPSCHED_EJECT_WATCHDOG = 1,
};

/* Written by user space before attach (index 0 of map host_config). */
struct upsched_host_config {
	unsigned long long default_slice_ns;  /* slice of default-class tasks */
	unsigned long long guard_window_ns;   /* starvation guard accounting window */
	unsigned long long timer_period_ns;   /* park release / watchdog scan period */
	unsigned long long default_slice_floor_ns; /* shortest default-class slice under load */
	unsigned int guard_min_permille;      /* share of each CPU guaranteed to each lower level with work */
	unsigned int default_level;           /* chain level of the default class */
	unsigned int default_weight;          /* weight of the default class within its level */
	unsigned int classify_gen;            /* bumped by user space on every tenant change */
};
_Static_assert(sizeof(struct upsched_host_config) == 48, "host_config layout");

/* One per slot (map tenant_config), written by user space. */
struct upsched_tenant_config {
	unsigned int state;         /* enum upsched_slot_state; the host sets EJECTED itself */
	unsigned int gen;           /* incarnation: bumped at every attach of the slot */
	unsigned long long cgroup_id;  /* cgroup2 inode number of the bound subtree's root */
	unsigned int cgroup_level;  /* depth of that cgroup below the cgroup2 root */
	unsigned int level;         /* chain level, < UPSCHED_NR_LEVELS */
	unsigned int weight;        /* weight among the classes of its level, >= 1 */
	unsigned int hooks;         /* bit 1 << UPSCHED_HOOK_x per hook the policy replaces */
	unsigned long long slice_min_ns;
	unsigned long long slice_max_ns;
	unsigned long long slice_dfl_ns;
	unsigned long long park_max_ns;
	unsigned long long watchdog_ns; /* a task waiting longer than this ejects the tenant */
};
_Static_assert(sizeof(struct upsched_tenant_config) == 72, "tenant_config layout");

/* One per slot (map tenant_status), written by the host. */
struct upsched_tenant_status {
	unsigned int ejected_gen;   /* gen of the incarnation that was ejected (0: none) */
	unsigned int eject_reason;  /* enum upsched_eject_reason */
	unsigned int eject_pid;     /* the task that waited too long */
	int nr_runnable;            /* tenant tasks runnable now */
	unsigned long long eject_waited_ns;
	unsigned long long eject_at_ns;
	int nr_tasks;               /* tasks holding a task slot of this tenant */
	unsigned int pad;
};
_Static_assert(sizeof(struct upsched_tenant_status) == 40, "tenant_status layout");

/* Per class and per CPU (map class_stats); user space sums the CPUs (max for wait_max_ns). */
struct upsched_class_stats {
	unsigned long long enqueues;
	unsigned long long dispatches;    /* times a task of the class started running */
	unsigned long long cpu_time_ns;
	unsigned long long wait_max_ns;   /* longest runnable-to-running wait */
	unsigned long long wait_sum_ns;
	unsigned long long parks;
	unsigned long long releases;
	unsigned long long clamp_slice;
	unsigned long long clamp_cpu;
	unsigned long long clamp_verdict;
	unsigned long long clamp_park;
	unsigned long long ejections;
	unsigned long long preempt_kicks;
	unsigned long long policy_calls;
	unsigned long long wait_hist[UPSCHED_WAIT_BUCKETS];
};
_Static_assert(sizeof(struct upsched_class_stats) == 8 * (14 + UPSCHED_WAIT_BUCKETS),
	       "class_stats layout");

/* Hint words of one task slot of one tenant (map hints, index slot * MAX_TASKS + task_slot). */
struct upsched_hint_words {
	unsigned long long words[8];
};

/* Why the scheduler stopped (map host_exit), copied from the kernel's scx_exit_info. */
struct upsched_exit_record {
	int kind;
	int pad;
	long long exit_code;
	char reason[128];
	char msg[1024];
};
_Static_assert(sizeof(struct upsched_exit_record) == 16 + 128 + 1024, "exit record layout");

/* Where a task is (map task_lookup keyed by pid), so tools can find a task's hint words. */
struct upsched_task_where {
	int tenant;          /* slot, or -1 for the default class */
	unsigned int task_slot;
};

#endif /* UPSCHED_HOST_INTF_H */
