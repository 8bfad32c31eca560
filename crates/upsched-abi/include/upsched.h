/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upsched.h - the contract between the upsched host scheduler and tenant policies.
 *
 * A tenant policy is a set of hook functions. At every scheduling event of a task that belongs
 * to the tenant, the host fills a `struct upsched_ctx`, calls the tenant's hook with a pointer to
 * it, then reads the decision back from the output fields, validates it and clamps it. Policies
 * never move tasks themselves: they only decide.
 *
 * Rules of the contract:
 * - Every hook is `void hook(struct upsched_ctx *ctx)`. The pointer may be NULL for the kernel
 *   verifier, so a hook must check it (the SDK's UPSCHED_<HOOK>() macros do).
 * - Input fields ("in") are written by the host before each call. A policy must not write them;
 *   `upsched check` rejects an object that does.
 * - Output fields ("out") are pre-filled by the host with the default decision, so a policy
 *   writes only what it wants to change. Which outputs each hook honours is listed below.
 * - The layout is frozen per ABI version. It is asserted at build time against
 *   crates/upsched-abi/abi.toml, from which the Rust mirror is checked too.
 *
 * Units: times are nanoseconds of CLOCK_MONOTONIC (the kernel's bpf_ktime_get_ns()); durations
 * are nanoseconds; CPUs are kernel CPU ids.
 */
#ifndef UPSCHED_H
#define UPSCHED_H

/* Plain C types with project-specific names, so that this header can be included next to
 * vmlinux.h (host scheduler) or on its own (policies) without typedef clashes. */
typedef unsigned long long upsched_u64;
typedef unsigned int upsched_u32;
typedef int upsched_s32;

/* Bumped on any incompatible change of the context layout or semantics. The host refuses a
 * policy whose declared ABI version or context size differs from its own. */
#define UPSCHED_ABI_VERSION 1

/* Number of 64-bit hint words per task (see "Hints" below). */
#define UPSCHED_NR_HINTS 8

/* Upper bound (exclusive) of ctx->task_slot; a power of two so that `slot & (MAX - 1)` is a
 * bounds proof the kernel verifier accepts. */
#define UPSCHED_MAX_TASKS 4096

/* Length of the policy name declared with UPSCHED_POLICY(), including the NUL byte. */
#define UPSCHED_POLICY_NAME_LEN 32

/* ctx->target_cpu: let the host choose (idle CPU, SMT/LLC aware). */
#define UPSCHED_CPU_ANY (-1)

/* ctx->verdict values. */
#define UPSCHED_VERDICT_RUN 0     /* queue the task to run (enqueue), keep running (tick) */
#define UPSCHED_VERDICT_PARK 1    /* enqueue only: hold the task off the CPUs until an event */
#define UPSCHED_VERDICT_PREEMPT 2 /* enqueue: run and preempt a lower-priority task;
				   * tick: end the running task's slice now */

/* ctx->flags bits: why the hook is called. */
#define UPSCHED_F_WAKEUP 1     /* select_cpu/enqueue: the task is waking up */
#define UPSCHED_F_WAKE_SYNC 2  /* the waker is about to sleep (synchronous wake-up) */
#define UPSCHED_F_FORK 4       /* select_cpu/task_init: the task is new (fork/clone) */
#define UPSCHED_F_PREEMPTED 8  /* enqueue: the task lost its CPU before its slice ended */
#define UPSCHED_F_YIELD 16     /* enqueue/stopping: the task yielded */
#define UPSCHED_F_RUNNABLE 32  /* stopping: the task is still runnable (slice end, preemption) */
#define UPSCHED_F_RELEASED 64  /* enqueue: a parked task is re-evaluated (event or bound) */

/*
 * Hints: words a task's runtime (or an agent on its behalf) posts for the scheduler, read by
 * the host and copied into ctx->hints[] at every call. Words 0-4 have standard meanings that
 * the host and the example policies rely on; words from UPSCHED_HINT_FIRST_FREE on are free for
 * a policy's own protocol with its runtimes.
 */
#define UPSCHED_HINT_FLAGS 0       /* UPSCHED_HINTF_* bits */
#define UPSCHED_HINT_WAIT_EVENT 1  /* id of the event the task waits for (0: none) */
#define UPSCHED_HINT_PENDING 2     /* number of pending events/requests for the task */
#define UPSCHED_HINT_DEADLINE 3    /* absolute deadline, ns CLOCK_MONOTONIC (0: none) */
#define UPSCHED_HINT_LATENCY_NS 4  /* relative deadline / latency target in ns (0: none) */
#define UPSCHED_HINT_FIRST_FREE 5

#define UPSCHED_HINTF_SLEEPY 1            /* the task only polls until an event arrives */
#define UPSCHED_HINTF_LATENCY_SENSITIVE 2 /* the task prefers short waits to throughput */
#define UPSCHED_HINTF_IDLE_LOOP 4         /* a vCPU thread whose guest runs only its idle loop */

/*
 * Hooks (ids are ctx->hook values) and the outputs the host honours after each:
 *
 *   0 select_cpu  a task wakes up; pick its CPU.            outputs: target_cpu
 *   1 enqueue     a task becomes runnable (wake-up, slice    outputs: key, slice_ns, verdict,
 *                 end, preemption, yield, park release).              park_until_ns
 *   2 running     the task starts running on ctx->cpu.      outputs: none
 *   3 stopping    the task stops running (sleep, slice end). outputs: none
 *   4 tick        scheduler tick while the task runs.       outputs: verdict (PREEMPT = yield now)
 *   5 task_init   the task joins the tenant (fork or cgroup  outputs: none
 *                 move); initialise per-task state.
 *   6 task_exit   the task leaves the tenant (exit or move). outputs: none
 *
 * A policy implements any subset; for a missing hook the host does its documented default.
 */
enum upsched_hook {
	UPSCHED_HOOK_SELECT_CPU = 0,
	UPSCHED_HOOK_ENQUEUE = 1,
	UPSCHED_HOOK_RUNNING = 2,
	UPSCHED_HOOK_STOPPING = 3,
	UPSCHED_HOOK_TICK = 4,
	UPSCHED_HOOK_TASK_INIT = 5,
	UPSCHED_HOOK_TASK_EXIT = 6,
};

struct upsched_ctx {
	/* ---- call ---------------------------------------------------------------- in ---- */
	upsched_u32 abi_version; /* UPSCHED_ABI_VERSION of the host */
	upsched_u32 ctx_size;    /* sizeof(struct upsched_ctx) of the host */
	upsched_u64 now_ns;      /* current time, ns CLOCK_MONOTONIC */
	upsched_u32 hook;        /* enum upsched_hook of this call */
	upsched_u32 cpu;         /* CPU the hook runs on */
	upsched_u32 nr_cpus;     /* number of possible CPUs; valid CPU ids are 0..nr_cpus-1 */
	upsched_u32 flags;       /* UPSCHED_F_* bits */

	/* ---- task ---------------------------------------------------------------- in ---- */
	upsched_u32 pid;         /* kernel task id (thread id) */
	upsched_u32 tgid;        /* thread-group id (process id) */
	upsched_u32 task_slot;   /* per-tenant slot, 0..UPSCHED_MAX_TASKS-1, stable while the task
				  * belongs to the tenant; index for per-task state arrays */
	upsched_u32 weight;      /* scheduling weight, 1..10000, 100 = nice 0 (sched_ext scale) */
	upsched_s32 nice;        /* nice value, -20..19 */
	upsched_s32 prev_cpu;    /* CPU the task last ran on */
	upsched_u64 sum_runtime_ns;          /* total CPU time the task consumed */
	upsched_u64 last_runtime_ns;         /* CPU time consumed in its last slice */
	upsched_u64 runnable_ns;             /* time since it last became runnable (includes time
					      * parked); 0 in running/stopping/task_* hooks */
	upsched_u64 nr_voluntary_switches;   /* times it gave up the CPU to sleep or yield */
	upsched_u64 nr_involuntary_switches; /* times it was preempted or its slice ended */
	upsched_u64 hints[UPSCHED_NR_HINTS]; /* hint words (UPSCHED_HINT_*), snapshot at call time */

	/* ---- tenant -------------------------------------------------------------- in ---- */
	upsched_u32 tenant_id;          /* tenant slot of the host this policy is attached to */
	upsched_u32 tenant_level;       /* level in the chain; higher levels run first */
	upsched_u32 tenant_weight;      /* weight of the tenant among tenants of its level */
	upsched_u32 tenant_nr_runnable; /* tenant tasks runnable now (queued, parked or running) */
	upsched_u64 slice_min_ns;       /* slice_ns is clamped to [slice_min_ns, slice_max_ns] */
	upsched_u64 slice_max_ns;
	upsched_u64 park_max_ns;        /* a task stays parked at most this long after it became
					 * runnable; later PARK verdicts are clamped to RUN */

	/* ---- decision ------------------------------------------------------------ out --- */
	upsched_u64 key;           /* ordering key among the tenant's queued tasks, lower runs
				    * first; default: now_ns (FIFO); any value is valid */
	upsched_u64 slice_ns;      /* time slice; default: the tenant's default slice; clamped
				    * to [slice_min_ns, slice_max_ns] (0 becomes slice_min_ns) */
	upsched_u64 park_until_ns; /* PARK only: absolute time at which to re-evaluate the task
				    * even without an event; 0 or later than the bound means
				    * "at the bound" (runnable since + park_max_ns) */
	upsched_s32 target_cpu;    /* select_cpu: CPU to wake the task on, or UPSCHED_CPU_ANY
				    * (default); an id outside the task's allowed CPUs is
				    * replaced by the host's own choice */
	upsched_u32 verdict;       /* UPSCHED_VERDICT_*; default RUN; unknown values mean RUN */
};

/*
 * Parking. An enqueue verdict PARK keeps the task runnable but off the CPUs. The host releases
 * it and calls enqueue again with UPSCHED_F_RELEASED as soon as one of these holds:
 *   - hints[UPSCHED_HINT_PENDING] != 0 (an event arrived), or
 *   - hints[UPSCHED_HINT_FLAGS] no longer has UPSCHED_HINTF_SLEEPY, or
 *   - now >= park_until_ns, or the park bound passed: park_max_ns after its current wait began
 *     (when it last ran or became runnable), so that no task waits longer than that at a time.
 * A PARK verdict for a task past its park bound, or for a released task (it runs before it may
 * be parked again), is clamped to RUN. The holder of the tenant's notify program may make the
 * host look at once instead of at its next timer run (docs/hints.md, "Notify").
 */

/* Declared by UPSCHED_POLICY() in section ".upsched" of the object; read by `upsched check`
 * and the loaders to identify the policy and refuse an ABI mismatch before loading. */
struct upsched_policy_info {
	upsched_u32 abi_version;
	upsched_u32 ctx_size;
	char name[UPSCHED_POLICY_NAME_LEN];
};

#endif /* UPSCHED_H */
