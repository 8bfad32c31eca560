// SPDX-License-Identifier: GPL-2.0-only
/*
 * host.bpf.c - the upsched host scheduler: one sched_ext scheduler that owns all mechanism.
 *
 * Classes: a default class (weighted virtual-time fairness) for tasks of no tenant, and
 * UPSCHED_NR_SLOTS tenant slots. A tenant is a policy attached (freplace) onto the slot's hook
 * stubs, bound to a cgroup subtree, placed at a chain level with a weight. The host fills a
 * struct upsched_ctx, calls the slot's stub, and validates and clamps what comes back. Each stub
 * is called from exactly one struct_ops program, because a global subprogram exists once per
 * calling program and freplace targets one of those copies.
 *
 * The exact semantics are in docs/mechanism.md; keep the two in step.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "upsched.h"
#include "host_intf.h"

char _license[] SEC("license") = "GPL";

#define NSEC_PER_USEC 1000ULL
#define NICE_0_WEIGHT 100
#define MAX_TASK_SLOTS UPSCHED_MAX_TASKS
/* The timer's look for a releasable parked task stops after this many tasks (verifier bound and
 * cost bound; see park_release_due() for why the park bound still holds for every task). */
#define PARK_SCAN_LIMIT 512
/* pick_class(): the task ending its slice keeps the CPU. */
#define KEEP_PREV (-2)
/* Deepest cgroup nesting searched for a tenant's cgroup. */
#define MAX_CGROUP_DEPTH 16
/* Arrays indexed by class or level are sized to a power of two and indexed through a mask:
 * clang may reload a bounds-checked index from the stack, and the verifier then sees it
 * unbounded. */
#define CLASS_ARRAY 16
#define CLS_IDX(c) masked_index((c), CLASS_ARRAY - 1)
#define LVL_IDX(l) masked_index((l), UPSCHED_NR_LEVELS - 1)

/* The empty asm hides the value's known range from clang, so the mask survives optimisation. */
static __always_inline u32 masked_index(u32 index, u32 mask)
{
	barrier_var(index);
	return index & mask;
}

/* ---- maps shared with user space ------------------------------------------------------------ */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct upsched_host_config);
} host_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UPSCHED_NR_SLOTS);
	__type(key, u32);
	__type(value, struct upsched_tenant_config);
} tenant_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UPSCHED_NR_SLOTS);
	__type(key, u32);
	__type(value, struct upsched_tenant_status);
} tenant_status SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UPSCHED_NR_CLASSES);
	__type(key, u32);
	__type(value, struct upsched_class_stats);
} class_stats SEC(".maps");

/* The hint words of one tenant, by task slot. Each tenant gets a map of its own, made by the
 * loader at attach and put into hint_maps at the tenant's slot, because a mapping of it is the
 * capability the broker hands to the tenant's runtimes: it must reach that tenant's words and
 * nobody else's, also after the slot passes to another tenant. The loader's maps must match
 * this template exactly (the kernel compares type, sizes and flags). */
struct hint_words_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TASK_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	/* By sizes: clang's BTF holds a struct reached only through the pointers of an inner map
	 * definition as a forward declaration, whose size libbpf cannot tell; and a map has BTF
	 * for both key and value or for neither. */
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(struct upsched_hint_words));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, UPSCHED_NR_SLOTS);
	__type(key, u32);
	__array(values, struct hint_words_map);
} hint_maps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UPSCHED_NR_SLOTS * MAX_TASK_SLOTS);
	__type(key, u32);
	__type(value, struct upsched_task_where);
} task_lookup SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct upsched_exit_record);
} exit_record SEC(".maps");

/* ---- host-private state ---------------------------------------------------------------------- */

/* Per-tenant pool of task slots: a stack of returned slots plus a high-water mark of slots never
 * handed out, so that no initialisation loop over 4096 entries is needed. */
struct slot_pool {
	struct bpf_spin_lock lock;
	u32 nr_free;
	u32 next_fresh;
	u16 free[MAX_TASK_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UPSCHED_NR_SLOTS);
	__type(key, u32);
	__type(value, struct slot_pool);
} slot_pools SEC(".maps");

/* A tenant's enqueue decision after validation (decide_enqueue()). */
struct decision {
	u64 key;
	u64 slice;   /* clamped into [slice_min, slice_max] */
	u64 until;   /* PARK: the park deadline, bounded, on the policies' clock */
	u32 verdict; /* RUN, PREEMPT or PARK */
};

struct task_ctx {
	s32 tenant;          /* slot the task belongs to, -1: default class */
	u32 tenant_gen;      /* incarnation of that slot when the task joined */
	u32 seen_classify_gen; /* host_config.classify_gen at the last classification */
	u32 seen_ejections;  /* nr_ejections at the last classification */
	u32 task_slot;
	s32 cls;             /* class the task is queued or running under (accounting) */
	s32 runnable_slot;   /* slot whose nr_runnable counts this task, -1: none */
	u32 parked;
	/* Times in host_now()'s clock. */
	u64 runnable_at;     /* became runnable (0: not runnable) */
	u64 waiting_since;   /* runnable and not running since (0: running or asleep) */
	u64 run_start_sum;   /* se.sum_exec_runtime when the current run started */
	u64 last_runtime_ns;
	u64 vtime;           /* default-class virtual time */
	u64 park_deadline;   /* a parked task is re-evaluated at this time at the latest */
	u32 last_flags;      /* UPSCHED_F_* bits for the next enqueue (preempted, yield...) */
	u32 decided;         /* `decision` holds this wake-up's, taken by ops.select_cpu */
	u32 on_cpu;          /* between ops.running and ops.stopping (run_start_sum is valid) */
	u64 cgroup_id;       /* cgroup2 id at the last classification */
	u64 last_key;        /* DSQ order key given at the last tenant enqueue */
	u32 wait_listed;     /* on its tenant's wait list (see wait_list_append()) */
	struct decision decision; /* the last enqueue decision (decide_enqueue()) */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

struct host_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct host_timer);
} host_timer SEC(".maps");

/*
 * The watchdog's view of a tenant: per slot, the tenant's waiting tasks in the order their
 * waits began, linked through their task slots, so that the longest wait is the head's, read
 * in O(1) however many tasks wait. Links are task slot + 1 (0: none). An entry is on the list
 * while its gen equals the list's: a list belongs to one incarnation of its slot, the first
 * append of a newer incarnation empties it, and members of an earlier incarnation (whose task
 * slots the new tenant hands out again) can neither unlink nor read entries of the current one.
 */
struct wait_entry {
	u64 since; /* host_now() when the wait began, raised to the previous entry's (see append) */
	u32 gen;   /* incarnation of the slot the entry is linked in, 0: not linked */
	u32 pid;
	u16 prev;
	u16 next;
};

struct wait_list {
	struct bpf_spin_lock lock;
	u32 gen;
	u16 head;
	u16 tail;
	struct wait_entry entries[MAX_TASK_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UPSCHED_NR_SLOTS);
	__type(key, u32);
	__type(value, struct wait_list);
} wait_lists SEC(".maps");

/* Virtual time of each class within its level (weighted CPU time). */
u64 class_vtime[CLASS_ARRAY];
/* Largest class vtime picked so far per level: a class that was idle restarts near it. */
u64 level_vnow[UPSCHED_NR_LEVELS];
/* The starvation guard's window on one CPU: its start and the CPU time each level got on
 * this CPU since. Per CPU, so that a level with work that can run only on some CPUs (pinned
 * tasks) gets its share of those CPUs, not of the others. */
struct cpu_guard {
	u64 window_start;
	u64 level_runtime[UPSCHED_NR_LEVELS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct cpu_guard);
} cpu_guards SEC(".maps");
/* Default-class virtual time of the task that last started running. */
u64 default_vnow;
/* scx_bpf_nr_cpu_ids(), read once by host_init: it does not change while the kernel runs, and
 * a kfunc call per hook call costs more than a global's load. */
u32 nr_cpus = 1;
/* Bumped by every ejection, so tasks reclassify themselves. */
u32 nr_ejections;
/* Bit per class whose DSQ may hold tasks, so that dispatch, tick and the fast paths ask only
 * the queues of set bits. Every enqueue into a class sets its bit; only the timer clears it
 * (clear_idle_classes()). A clear bit must mean "empty", and ops.enqueue cannot keep that true
 * on its own: its insertion takes effect after ops.enqueue returns, so a bit cleared on seeing
 * the DSQ empty can be the bit of a task still being inserted, which then waits unseen. */
u32 queued_classes;
/* Enqueues per class (plain increments: a lost one still changes the count), and the count the
 * timer saw at its last run: the timer clears a bit only after a whole period without an
 * enqueue into the class, long after any insertion of an earlier enqueue took effect. */
u32 class_enqs[CLASS_ARRAY];
u32 class_enqs_seen[CLASS_ARRAY];
/* Counter for the timer's park scan loop, in a global because the verifier rejects it in a register
 * inside the DSQ iterator loop ("sequence of 8193 jumps is too complex"). */
u32 scan_count;
/* The same for the notify programs' scans (they may run while the timer runs). */
u32 notify_scan_count;
u32 timer_runs;
/* Per slot and task slot, 1 + the CPU a member of a live tenant runs on (0: not running), for
 * the notify programs: set at ops.running, cleared at ops.stopping. */
u32 running_cpu[UPSCHED_NR_SLOTS * MAX_TASK_SLOTS];

static __always_inline u32 *running_cpu_of(s32 slot, u32 task_slot)
{
	u32 index = masked_index((u32)slot * MAX_TASK_SLOTS + task_slot,
				 UPSCHED_NR_SLOTS * MAX_TASK_SLOTS - 1);

	return &running_cpu[index];
}

/* ---- tenant hook stubs ----------------------------------------------------------------------- */

/*
 * Two global stubs per slot and hook, set A (`upsched_s<slot>_<hook>`) and set B
 * (`upsched_s<slot>b_<hook>`): the tenant config's `stubs` says which set the host calls, so that
 * a replace attaches the new policy onto the idle set and flips it, with no moment at which a
 * hook of the policy is left to the default (the kernel refuses both a second freplace on a
 * replaced stub and retargeting a freplace link). A stub's body is the documented default: the
 * outputs are pre-filled with the default decision, so doing nothing is the default. The host
 * calls a stub only for a hook the live set's policy replaces, so a body that runs means a call
 * reached no policy: it is counted in the slot's `default_calls`, which a swap must not move.
 * The empty asm with a memory clobber stops clang from assuming the call leaves *ctx unchanged
 * (it will be replaced).
 */
static __always_inline struct upsched_tenant_status *tenant_stat(s32 slot);

#define DEFINE_STUB(name, slot)                                                            \
	__attribute__((noinline)) void name(struct upsched_ctx *ctx)                       \
	{                                                                                  \
		struct upsched_tenant_status *st = tenant_stat(slot);                      \
                                                                                           \
		if (st)                                                                    \
			__sync_fetch_and_add(&st->default_calls, 1);                       \
		if (ctx)                                                                   \
			asm volatile("" ::"r"(ctx) : "memory");                            \
	}
#define DEFINE_STUB_A(slot, hook) DEFINE_STUB(upsched_s##slot##_##hook, slot)
#define DEFINE_STUB_B(slot, hook) DEFINE_STUB(upsched_s##slot##b_##hook, slot)

/* UPSCHED_HOOKS, every hook of abi.toml, is generated by the build (force-included). */
#define DEFINE_SLOT_STUBS(slot) UPSCHED_HOOKS(DEFINE_STUB_A, slot) UPSCHED_HOOKS(DEFINE_STUB_B, slot)

DEFINE_SLOT_STUBS(0)
DEFINE_SLOT_STUBS(1)
DEFINE_SLOT_STUBS(2)
DEFINE_SLOT_STUBS(3)
DEFINE_SLOT_STUBS(4)
DEFINE_SLOT_STUBS(5)
DEFINE_SLOT_STUBS(6)
DEFINE_SLOT_STUBS(7)

#define CALL_SET_STUB(hook, sfx, slot, ctx)                                                \
	do {                                                                               \
		switch (slot) {                                                            \
		case 0: upsched_s0##sfx##_##hook(ctx); break;                              \
		case 1: upsched_s1##sfx##_##hook(ctx); break;                              \
		case 2: upsched_s2##sfx##_##hook(ctx); break;                              \
		case 3: upsched_s3##sfx##_##hook(ctx); break;                              \
		case 4: upsched_s4##sfx##_##hook(ctx); break;                              \
		case 5: upsched_s5##sfx##_##hook(ctx); break;                              \
		case 6: upsched_s6##sfx##_##hook(ctx); break;                              \
		case 7: upsched_s7##sfx##_##hook(ctx); break;                              \
		}                                                                          \
	} while (0)

/* `set` is the one hook_set() returned for this call (see there). */
#define CALL_STUB(hook, set, slot, ctx)                                                    \
	do {                                                                               \
		if (set)                                                                   \
			CALL_SET_STUB(hook, b, slot, ctx);                                 \
		else                                                                       \
			CALL_SET_STUB(hook, , slot, ctx);                                  \
	} while (0)

/* ---- small helpers ------------------------------------------------------------------------- */

static __always_inline struct upsched_host_config *host_cfg(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&host_config, &zero);
}

static __always_inline struct upsched_class_stats *stats_of(s32 cls)
{
	u32 key = (u32)cls;

	return bpf_map_lookup_elem(&class_stats, &key);
}

static __always_inline struct upsched_tenant_config *tenant_cfg(s32 slot)
{
	u32 key = (u32)slot;

	if (slot < 0 || slot >= UPSCHED_NR_SLOTS)
		return NULL;
	return bpf_map_lookup_elem(&tenant_config, &key);
}

static __always_inline struct upsched_tenant_status *tenant_stat(s32 slot)
{
	u32 key = (u32)slot;

	if (slot < 0 || slot >= UPSCHED_NR_SLOTS)
		return NULL;
	return bpf_map_lookup_elem(&tenant_status, &key);
}

static __always_inline struct task_ctx *task_ctx_of(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, NULL, 0);
}

/*
 * The clock of the host's own durations (waits, the watchdog, the guard window): the runqueue
 * clock the kernel already read for this scheduling event, where there is one, instead of a
 * clocksource read per callback. Times that policies see (now_ns, park deadlines) stay
 * bpf_ktime_get_ns(), the ABI's CLOCK_MONOTONIC; the two are never mixed in one comparison.
 */
static __always_inline u64 host_now(void)
{
	return bpf_ksym_exists(scx_bpf_now) ? scx_bpf_now() : bpf_ktime_get_ns();
}

static __always_inline u64 default_slice(void)
{
	struct upsched_host_config *cfg = host_cfg();

	return cfg && cfg->default_slice_ns ? cfg->default_slice_ns : SCX_SLICE_DFL;
}

static __always_inline u64 default_slice_floor(void)
{
	struct upsched_host_config *cfg = host_cfg();
	u64 slice = default_slice();

	return cfg && cfg->default_slice_floor_ns && cfg->default_slice_floor_ns < slice ?
		       cfg->default_slice_floor_ns : slice;
}

/* The default class's slice at its load now: default_slice * nr_cpus / queued (the task
 * itself included), not below the floor, so that a round of every queued task takes about one
 * default slice and the class's longest wait stays bounded (docs/mechanism.md). */
static __always_inline u64 default_slice_now(void)
{
	u64 slice = default_slice(), floor, n;
	s32 queued;

	/* A clear queued bit means an empty DSQ: the wake-up fast paths skip the kfunc. */
	if (!(queued_classes & (1U << UPSCHED_DEFAULT_CLASS)))
		return slice;
	queued = scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(UPSCHED_DEFAULT_CLASS));
	floor = default_slice_floor();
	n = queued > 0 ? (u64)queued + 1 : 1;
	if (n <= nr_cpus)
		return slice;
	slice = slice * nr_cpus / n;
	return slice > floor ? slice : floor;
}

static __always_inline struct cpu_guard *cpu_guard(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&cpu_guards, &zero);
}

/* The tenant config of a task if the task belongs to a live (attached, not ejected) tenant. */
static __always_inline struct upsched_tenant_config *live_tenant(struct task_ctx *tctx)
{
	struct upsched_tenant_config *cfg = tenant_cfg(tctx->tenant);

	if (!cfg || cfg->state != UPSCHED_SLOT_ACTIVE || cfg->gen != tctx->tenant_gen)
		return NULL;
	return cfg;
}

static __always_inline u64 tenant_slice_dfl(struct upsched_tenant_config *cfg)
{
	return cfg->slice_dfl_ns ? cfg->slice_dfl_ns : default_slice();
}

/*
 * The stub set (0: A, 1: B) whose `hook` stub to call, or -1 when the live set's policy did
 * not replace it: an unreplaced stub returns the pre-filled defaults, so the host skips filling
 * the context and calling it. The set is read once per call and the same value picks the hooks,
 * the fills and the stub, so a flip between two reads cannot send a call to a set whose policy
 * lacks the hook.
 */
static __always_inline s32 hook_set(struct upsched_tenant_config *cfg, u32 hook)
{
	u32 set = *(volatile u32 *)&cfg->stubs & 1;
	u32 hooks = set ? cfg->hooks_b : cfg->hooks;

	return hooks & (1U << hook) ? (s32)set : -1;
}

static __always_inline void mark_queued(s32 cls)
{
	class_enqs[CLS_IDX(cls)]++;
	if (!(queued_classes & (1U << CLS_IDX(cls))))
		__sync_fetch_and_or(&queued_classes, 1U << CLS_IDX(cls));
}

/* Whether class `cls` has tasks in its DSQ (a set bit may be stale, a clear one is not). */
static __always_inline bool class_has_queued(s32 cls)
{
	return (queued_classes & (1U << CLS_IDX(cls))) &&
	       scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(cls)) > 0;
}

/* Whether any class in `mask` has queued tasks. */
static __always_inline bool any_queued(u32 mask)
{
	s32 cls;

	if (!(queued_classes & mask))
		return false;
	for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++)
		if ((mask & (1U << cls)) && class_has_queued(cls))
			return true;
	return false;
}

static __always_inline u32 class_level(s32 cls)
{
	struct upsched_tenant_config *cfg;
	struct upsched_host_config *hcfg;
	u32 level = 0;

	if (cls == UPSCHED_DEFAULT_CLASS) {
		hcfg = host_cfg();
		if (hcfg)
			level = hcfg->default_level;
	} else {
		cfg = tenant_cfg(cls);
		if (cfg)
			level = cfg->level;
	}
	return level < UPSCHED_NR_LEVELS ? level : UPSCHED_NR_LEVELS - 1;
}

static __always_inline u32 class_weight(s32 cls)
{
	struct upsched_tenant_config *cfg;
	struct upsched_host_config *hcfg;
	u32 weight = NICE_0_WEIGHT;

	if (cls == UPSCHED_DEFAULT_CLASS) {
		hcfg = host_cfg();
		if (hcfg && hcfg->default_weight)
			weight = hcfg->default_weight;
	} else {
		cfg = tenant_cfg(cls);
		if (cfg && cfg->weight)
			weight = cfg->weight;
	}
	return weight;
}

/* Signed-difference ordering of the kernel's vtime DSQs would invert keys 2^63 apart; halving
 * the key makes every pair of keys order as unsigned numbers (ties for keys differing in bit 0). */
static __always_inline u64 key_to_dsq_vtime(u64 key)
{
	return key >> 1;
}

/* `ran` in virtual time at `weight` (100 = nice 0). The common weight skips the division, which
 * is a slow instruction under emulation. */
static __always_inline u64 weighted(u64 ran, u32 weight)
{
	if (weight == NICE_0_WEIGHT)
		return ran;
	return ran * NICE_0_WEIGHT / (weight ? weight : 1);
}

static __always_inline u32 wait_bucket(u64 wait_ns)
{
	u64 us = wait_ns / NSEC_PER_USEC;
	u32 bucket = 0;

	/* floor(log2(us)), bounded: bucket 0 holds < 2 us. */
	if (us >= (1ULL << 16)) { us >>= 16; bucket += 16; }
	if (us >= (1ULL << 8)) { us >>= 8; bucket += 8; }
	if (us >= (1ULL << 4)) { us >>= 4; bucket += 4; }
	if (us >= (1ULL << 2)) { us >>= 2; bucket += 2; }
	if (us >= (1ULL << 1)) { bucket += 1; }
	if (wait_ns >= (1ULL << 32) * NSEC_PER_USEC)
		bucket = UPSCHED_WAIT_BUCKETS - 1;
	return bucket < UPSCHED_WAIT_BUCKETS ? bucket : UPSCHED_WAIT_BUCKETS - 1;
}

/* ---- task slots ---------------------------------------------------------------------------- */

static s32 alloc_task_slot(s32 slot)
{
	u32 key = (u32)slot;
	struct slot_pool *pool = bpf_map_lookup_elem(&slot_pools, &key);
	s32 got = -1;

	if (!pool)
		return -1;
	bpf_spin_lock(&pool->lock);
	if (pool->nr_free > 0 && pool->nr_free <= MAX_TASK_SLOTS) {
		pool->nr_free--;
		got = pool->free[pool->nr_free & (MAX_TASK_SLOTS - 1)];
	} else if (pool->next_fresh < MAX_TASK_SLOTS) {
		got = pool->next_fresh++;
	}
	bpf_spin_unlock(&pool->lock);
	return got;
}

static void free_task_slot(s32 slot, u32 task_slot)
{
	u32 key = (u32)slot;
	struct slot_pool *pool = bpf_map_lookup_elem(&slot_pools, &key);

	if (!pool)
		return;
	bpf_spin_lock(&pool->lock);
	if (pool->nr_free < MAX_TASK_SLOTS) {
		pool->free[pool->nr_free & (MAX_TASK_SLOTS - 1)] = task_slot;
		pool->nr_free++;
	}
	bpf_spin_unlock(&pool->lock);
}

/* NULL while the slot has no hint map (no tenant was attached to it yet, or its tenant is gone;
 * the loader gives a tenant its map before the slot becomes ACTIVE). */
static __always_inline struct upsched_hint_words *hint_words(s32 slot, u32 task_slot)
{
	u32 key = task_slot & (MAX_TASK_SLOTS - 1);
	u32 outer_key = (u32)slot;
	void *words_map;

	if (slot < 0 || slot >= UPSCHED_NR_SLOTS)
		return NULL;
	words_map = bpf_map_lookup_elem(&hint_maps, &outer_key);
	if (!words_map)
		return NULL;
	return bpf_map_lookup_elem(words_map, &key);
}

static __always_inline void clear_hints(s32 slot, u32 task_slot)
{
	struct upsched_hint_words *words = hint_words(slot, task_slot);

	if (words)
		__builtin_memset(words, 0, sizeof(*words));
}

/* ---- the watchdog's wait lists ------------------------------------------------------------ */

static __always_inline u32 wait_index(u32 link)
{
	return masked_index(link - 1, MAX_TASK_SLOTS - 1);
}

/*
 * Appends task slot `task_slot` of incarnation `gen` of `slot` at the tail of the slot's wait
 * list, unless it is on it already; returns whether it is on the list now. The wait start is
 * read before the lock, so an append may come after one whose start is later (another CPU, its
 * clock); the start is then raised to the previous entry's, which keeps the list ordered by
 * start: a start recorded late by at most the time between that clock read and the append
 * (this lock's hold times) plus the clock difference between the two CPUs.
 */
static bool wait_list_append(s32 slot, u32 gen, u32 task_slot, u32 pid, u64 since)
{
	u32 key = (u32)slot, index = masked_index(task_slot, MAX_TASK_SLOTS - 1);
	struct wait_list *list = bpf_map_lookup_elem(&wait_lists, &key);
	struct wait_entry *entry, *last;
	bool listed;

	if (!list)
		return false;
	bpf_spin_lock(&list->lock);
	if ((s32)(gen - list->gen) > 0) {
		list->gen = gen;
		list->head = 0;
		list->tail = 0;
	}
	entry = &list->entries[index];
	listed = list->gen == gen;
	if (listed && entry->gen != gen) {
		if (list->tail) {
			last = &list->entries[wait_index(list->tail)];
			if (since < last->since)
				since = last->since;
			last->next = index + 1;
		} else {
			list->head = index + 1;
		}
		entry->since = since;
		entry->gen = gen;
		entry->pid = pid;
		entry->prev = list->tail;
		entry->next = 0;
		list->tail = index + 1;
	}
	bpf_spin_unlock(&list->lock);
	return listed;
}

static void wait_list_remove(s32 slot, u32 gen, u32 task_slot)
{
	u32 key = (u32)slot, index = masked_index(task_slot, MAX_TASK_SLOTS - 1);
	struct wait_list *list = bpf_map_lookup_elem(&wait_lists, &key);
	struct wait_entry *entry;

	if (!list)
		return;
	bpf_spin_lock(&list->lock);
	entry = &list->entries[index];
	if (list->gen == gen && entry->gen == gen) {
		if (entry->prev)
			list->entries[wait_index(entry->prev)].next = entry->next;
		else
			list->head = entry->next;
		if (entry->next)
			list->entries[wait_index(entry->next)].prev = entry->prev;
		else
			list->tail = entry->prev;
		entry->gen = 0;
	}
	bpf_spin_unlock(&list->lock);
}

/* The longest wait (at host time `now`) among the waiting tasks of incarnation `gen` of
 * `slot`, and its task's pid. */
static u64 wait_list_longest(s32 slot, u32 gen, u64 now, u32 *pid)
{
	u32 key = (u32)slot;
	struct wait_list *list = bpf_map_lookup_elem(&wait_lists, &key);
	struct wait_entry *entry;
	u64 since = now;

	if (!list)
		return 0;
	bpf_spin_lock(&list->lock);
	if (list->gen == gen && list->head) {
		entry = &list->entries[wait_index(list->head)];
		since = entry->since;
		*pid = entry->pid;
	}
	bpf_spin_unlock(&list->lock);
	return now > since ? now - since : 0;
}

/* The task's wait ends (it runs, or leaves its tenant): off its tenant's wait list. */
static __always_inline void wait_end(struct task_ctx *tctx)
{
	if (!tctx->wait_listed)
		return;
	tctx->wait_listed = 0;
	wait_list_remove(tctx->tenant, tctx->tenant_gen, tctx->task_slot);
}

/* ---- runnable accounting per tenant -------------------------------------------------------- */

/* The task's wait (if it waits) ends at `now` in the statistics of `stats`' class. */
static __always_inline void end_wait(struct upsched_class_stats *stats, struct task_ctx *tctx,
				     u64 now)
{
	u64 wait;
	u32 bucket;

	if (!tctx->waiting_since || now <= tctx->waiting_since)
		return;
	wait = now - tctx->waiting_since;
	stats->wait_sum_ns += wait;
	if (wait > stats->wait_max_ns)
		stats->wait_max_ns = wait;
	bucket = wait_bucket(wait);
	if (bucket < UPSCHED_WAIT_BUCKETS)
		stats->wait_hist[bucket]++;
}

static __always_inline void runnable_count(s32 slot, int delta)
{
	struct upsched_tenant_status *st = tenant_stat(slot);

	if (st)
		__sync_fetch_and_add(&st->nr_runnable, delta);
}

static __always_inline void member_count(s32 slot, int delta)
{
	struct upsched_tenant_status *st = tenant_stat(slot);

	if (st)
		__sync_fetch_and_add(&st->nr_tasks, delta);
}

/*
 * The task becomes runnable, seen at the first callback of its wake-up that the host gets:
 * ops.select_cpu when it inserts the task itself, else ops.enqueue (or ops.running for the
 * few wake-ups the kernel queues without asking, e.g. of exiting tasks). The host has no
 * ops.runnable: that would be one more BPF call per wake-up for what these do anyway.
 */
static __always_inline void mark_runnable(struct task_ctx *tctx, u64 now)
{
	if (tctx->runnable_at)
		return;
	tctx->runnable_at = now;
	tctx->waiting_since = now;
	if (tctx->tenant >= 0 && tctx->runnable_slot < 0) {
		runnable_count(tctx->tenant, 1);
		tctx->runnable_slot = tctx->tenant;
	}
}

/* The task stops being runnable: it sleeps or exits, which it does only while running, so
 * ops.stopping(runnable = false) sees it (no ops.quiescent, see mark_runnable()). */
static __always_inline void mark_not_runnable(struct task_ctx *tctx)
{
	tctx->runnable_at = 0;
	tctx->waiting_since = 0;
	tctx->parked = 0;
	if (tctx->runnable_slot >= 0) {
		runnable_count(tctx->runnable_slot, -1);
		tctx->runnable_slot = -1;
	}
}

/* ---- context filling ------------------------------------------------------------------------- */

/*
 * `runnable_ns`: how long the task has been runnable (enqueue only; 0 elsewhere). The fields of
 * a fill class that no hook of the policy reads (the live set's fills, from admission's analysis) stay 0:
 * their kfunc call and map lookups are skipped.
 */
static __always_inline void fill_ctx(struct upsched_ctx *ctx, struct task_struct *p,
				     struct task_ctx *tctx, struct upsched_tenant_config *cfg,
				     s32 set, u32 hook, u32 flags, u64 now, u64 runnable_ns)
{
	u32 fills = set ? cfg->fills_b : cfg->fills;
	struct upsched_tenant_status *st =
		fills & UPSCHED_FILL_TENANT_RUNNABLE ? tenant_stat(tctx->tenant) : NULL;
	struct upsched_hint_words *words =
		fills & UPSCHED_FILL_HINTS ? hint_words(tctx->tenant, tctx->task_slot) : NULL;
	u64 slice_dfl = tenant_slice_dfl(cfg);

	__builtin_memset(ctx, 0, sizeof(*ctx));
	ctx->abi_version = UPSCHED_ABI_VERSION;
	ctx->ctx_size = sizeof(*ctx);
	ctx->now_ns = now;
	ctx->hook = hook;
	ctx->cpu = bpf_get_smp_processor_id();
	ctx->nr_cpus = nr_cpus;
	ctx->flags = flags;
	ctx->pid = p->pid;
	ctx->tgid = p->tgid;
	ctx->task_slot = tctx->task_slot & (MAX_TASK_SLOTS - 1);
	ctx->weight = p->scx.weight;
	ctx->nice = p->static_prio - 120;
	if (fills & UPSCHED_FILL_PREV_CPU)
		ctx->prev_cpu = scx_bpf_task_cpu(p);
	ctx->sum_runtime_ns = p->se.sum_exec_runtime;
	ctx->last_runtime_ns = tctx->last_runtime_ns;
	ctx->runnable_ns = runnable_ns;
	ctx->nr_voluntary_switches = p->nvcsw;
	ctx->nr_involuntary_switches = p->nivcsw;
	if (words) {
		ctx->hints[0] = words->words[0];
		ctx->hints[1] = words->words[1];
		ctx->hints[2] = words->words[2];
		ctx->hints[3] = words->words[3];
		ctx->hints[4] = words->words[4];
		ctx->hints[5] = words->words[5];
		ctx->hints[6] = words->words[6];
		ctx->hints[7] = words->words[7];
	}
	ctx->tenant_id = tctx->tenant;
	ctx->tenant_level = cfg->level;
	ctx->tenant_weight = cfg->weight;
	ctx->tenant_nr_runnable = st && st->nr_runnable > 0 ? st->nr_runnable : 0;
	ctx->slice_min_ns = cfg->slice_min_ns;
	ctx->slice_max_ns = cfg->slice_max_ns;
	ctx->park_max_ns = cfg->park_max_ns;
	/* Default decision. */
	ctx->key = now;
	ctx->slice_ns = slice_dfl;
	ctx->park_until_ns = 0;
	ctx->target_cpu = UPSCHED_CPU_ANY;
	ctx->verdict = UPSCHED_VERDICT_RUN;
}

/* ---- classification: which class a task belongs to -------------------------------------------- */

/*
 * The task's cgroup on the cgroup2 hierarchy (css_set->dfl_cgrp), read directly rather than
 * with scx_bpf_task_cgroup(): that kfunc answers with the task's cgroup of the cpu controller,
 * which is the root unless the cpu controller is enabled down to the task's cgroup, and
 * ops.cgroup_move only fires for cpu-controller moves. Tenants bind plain cgroup2 subtrees.
 */
static __always_inline struct cgroup *task_dfl_cgroup(struct task_struct *p)
{
	struct css_set *cset = p->cgroups;

	return cset ? cset->dfl_cgrp : NULL;
}

static __always_inline u64 task_cgroup_id(struct task_struct *p)
{
	struct cgroup *cgrp = task_dfl_cgroup(p);

	return cgrp && cgrp->kn ? cgrp->kn->id : 0;
}

/* The active tenant bound to the task's cgroup or its nearest ancestor that has one, or -1. */
static s32 tenant_of_task(struct task_struct *p)
{
	struct upsched_tenant_config *cfg;
	struct cgroup_subsys_state *parent;
	struct cgroup *cgrp = task_dfl_cgroup(p);
	u64 id;
	int depth, slot;

	for (depth = 0; depth < MAX_CGROUP_DEPTH && cgrp; depth++) {
		id = cgrp->kn ? cgrp->kn->id : 0;
		for (slot = 0; slot < UPSCHED_NR_SLOTS; slot++) {
			cfg = tenant_cfg(slot);
			if (cfg && cfg->state == UPSCHED_SLOT_ACTIVE && cfg->cgroup_id == id)
				return slot;
		}
		parent = cgrp->self.parent;
		cgrp = parent ? parent->cgroup : NULL;
	}
	return -1;
}

/* The context of task_init and task_exit calls, per CPU: they run below ops.enqueue's own
 * context on the stack, and a BPF call chain has 512 bytes of stack in all. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct upsched_ctx);
} membership_ctxs SEC(".maps");

static __always_inline struct upsched_ctx *membership_ctx(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&membership_ctxs, &zero);
}

/* Whether the task's last classification still holds: no tenant change (attach, detach,
 * ejection) and no cgroup move since. */
static __always_inline bool classification_current(struct task_struct *p, struct task_ctx *tctx,
						   u64 cgroup_id)
{
	struct upsched_host_config *hcfg = host_cfg();
	u32 classify_gen = hcfg ? hcfg->classify_gen : 0;

	return tctx->seen_classify_gen == classify_gen && tctx->seen_ejections == nr_ejections &&
	       tctx->cgroup_id == cgroup_id;
}

/*
 * The task leaves its tenant (moved, tenant detached or ejected, task exiting). While the slot
 * still holds the incarnation the task joined and is not FREE, the policy's programs are
 * attached: its task_exit is called and the task's slot and membership are returned. A FREE
 * slot (user space stopped waiting for the members) or a newer incarnation no longer knows the
 * task: nothing is called or returned there (the next attach starts the slot's pool anew).
 */
static void leave_tenant(struct task_struct *p, struct task_ctx *tctx)
{
	struct upsched_task_where where = { .tenant = -1, .task_slot = 0 };
	struct upsched_tenant_config *cfg = tenant_cfg(tctx->tenant);
	struct upsched_ctx *ctx = membership_ctx();
	u32 pid = p->pid;

	if (tctx->tenant < 0)
		return;
	wait_end(tctx);
	if (cfg && cfg->gen == tctx->tenant_gen && cfg->state != UPSCHED_SLOT_FREE) {
		s32 set = hook_set(cfg, UPSCHED_HOOK_TASK_EXIT);

		if (ctx && set >= 0) {
			fill_ctx(ctx, p, tctx, cfg, set, UPSCHED_HOOK_TASK_EXIT, 0, bpf_ktime_get_ns(),
				 0);
			CALL_STUB(task_exit, set, tctx->tenant, ctx);
		}
		clear_hints(tctx->tenant, tctx->task_slot);
		free_task_slot(tctx->tenant, tctx->task_slot);
		member_count(tctx->tenant, -1);
	}
	tctx->tenant = -1;
	tctx->tenant_gen = 0;
	bpf_map_update_elem(&task_lookup, &pid, &where, BPF_ANY);
}

/* Called from ops.enqueue only (it is the one caller of the task_init stubs). */
static void classify(struct task_struct *p, struct task_ctx *tctx)
{
	struct upsched_host_config *hcfg = host_cfg();
	struct upsched_tenant_config *cfg;
	struct upsched_task_where where;
	struct upsched_ctx *ctx;
	u64 cgroup_id = task_cgroup_id(p);
	u32 pid = p->pid;
	s32 new_tenant, task_slot, set;

	if (classification_current(p, tctx, cgroup_id))
		return;
	tctx->cgroup_id = cgroup_id;
	tctx->seen_classify_gen = hcfg ? hcfg->classify_gen : 0;
	tctx->seen_ejections = nr_ejections;

	new_tenant = tenant_of_task(p);
	cfg = tenant_cfg(new_tenant);
	if (new_tenant == tctx->tenant && cfg && cfg->gen == tctx->tenant_gen)
		return;

	/* The runnable count follows the task to its new class. */
	if (tctx->runnable_slot >= 0) {
		runnable_count(tctx->runnable_slot, -1);
		tctx->runnable_slot = -1;
	}
	leave_tenant(p, tctx);
	if (!cfg)
		return;
	task_slot = alloc_task_slot(new_tenant);
	if (task_slot < 0)
		return; /* tenant full: the task stays in the default class */
	tctx->tenant = new_tenant;
	tctx->tenant_gen = cfg->gen;
	tctx->task_slot = task_slot;
	tctx->vtime = 0;
	member_count(new_tenant, 1);
	clear_hints(new_tenant, task_slot);
	where.tenant = new_tenant;
	where.task_slot = task_slot;
	bpf_map_update_elem(&task_lookup, &pid, &where, BPF_ANY);
	if (tctx->runnable_at) {
		runnable_count(new_tenant, 1);
		tctx->runnable_slot = new_tenant;
	}
	ctx = membership_ctx();
	set = hook_set(cfg, UPSCHED_HOOK_TASK_INIT);
	if (!ctx || set < 0)
		return;
	fill_ctx(ctx, p, tctx, cfg, set, UPSCHED_HOOK_TASK_INIT, 0, bpf_ktime_get_ns(), 0);
	CALL_STUB(task_init, set, new_tenant, ctx);
}

/* ---- ejection ----------------------------------------------------------------------------- */

static void eject_tenant(s32 slot, u32 pid, u64 waited, u64 now)
{
	struct upsched_tenant_config *cfg = tenant_cfg(slot);
	struct upsched_tenant_status *st = tenant_stat(slot);
	struct upsched_class_stats *stats = stats_of(slot);

	if (!cfg || !st || cfg->state != UPSCHED_SLOT_ACTIVE)
		return;
	cfg->state = UPSCHED_SLOT_EJECTED;
	st->ejected_gen = cfg->gen;
	st->eject_reason = UPSCHED_EJECT_WATCHDOG;
	st->eject_pid = pid;
	st->eject_waited_ns = waited;
	st->eject_at_ns = now;
	__sync_fetch_and_add(&nr_ejections, 1);
	if (stats)
		stats->ejections++;
	/* Parked tasks go back through ops.enqueue, which now puts them in the default class. */
	if (bpf_ksym_exists(scx_bpf_dsq_reenq))
		scx_bpf_dsq_reenq(UPSCHED_PARK_DSQ(slot), 0);
}

/* ---- default class --------------------------------------------------------------------------- */

/* Counts a default-class enqueue and places the task's virtual time: an arriving task (a
 * wake-up, or a task that joins the class from a tenant) starts no earlier than the class's
 * virtual now, so it banks no credit and a flood of arrivals cannot run ahead of the queue for
 * long; a task whose slice ended keeps what it lags behind, so that weights hold. No task is
 * queued further past the virtual now than one floor slice at its weight, at most
 * UPSCHED_LEAD_FLOOR_SLICES floor slices (upsched_abi::mechanism::LEAD_FLOOR_SLICES): a task of
 * a low weight (a nice 19 kernel thread) would otherwise wait for that many runs of every
 * other task. Returns the slice at the class's load. */
static __always_inline u64 admit_default(struct task_struct *p, struct task_ctx *tctx,
					 bool arriving)
{
	struct upsched_class_stats *stats = stats_of(UPSCHED_DEFAULT_CLASS);
	u64 floor = default_slice_floor(), lead = weighted(floor, p->scx.weight);

	if (stats)
		stats->enqueues++;
	if ((arriving || tctx->cls != UPSCHED_DEFAULT_CLASS) && tctx->vtime < default_vnow)
		tctx->vtime = default_vnow;
	if (lead > UPSCHED_LEAD_FLOOR_SLICES * floor)
		lead = UPSCHED_LEAD_FLOOR_SLICES * floor;
	if (tctx->vtime > default_vnow + lead)
		tctx->vtime = default_vnow + lead;
	tctx->parked = 0;
	tctx->cls = UPSCHED_DEFAULT_CLASS;
	return default_slice_now();
}

static __always_inline void enqueue_default(struct task_struct *p, struct task_ctx *tctx,
					    u64 enq_flags)
{
	u64 slice = admit_default(p, tctx, enq_flags & SCX_ENQ_WAKEUP);

	scx_bpf_dsq_insert_vtime(p, UPSCHED_CLASS_DSQ(UPSCHED_DEFAULT_CLASS), slice, tctx->vtime,
				 enq_flags);
	mark_queued(UPSCHED_DEFAULT_CLASS);
}

/* A default-class task that runs next on the CPU whose local queue it goes to. */
static __always_inline void insert_default_local(struct task_struct *p, struct task_ctx *tctx,
						 bool arriving, u64 enq_flags)
{
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, admit_default(p, tctx, arriving), enq_flags);
}

/* A class that had nothing queued restarts near its level's virtual now. */
static __always_inline void catch_up_class(s32 cls)
{
	u32 level = class_level(cls);
	u64 vnow, floor;

	if (cls < 0 || cls >= UPSCHED_NR_CLASSES || level >= UPSCHED_NR_LEVELS)
		return;
	if (class_has_queued(cls))
		return;
	vnow = level_vnow[LVL_IDX(level)];
	floor = vnow > default_slice() ? vnow - default_slice() : 0;
	if (class_vtime[CLS_IDX(cls)] < floor)
		class_vtime[CLS_IDX(cls)] = floor;
}

/* A class runs while alone at its level: its level's virtual now follows it, so that a class
 * that wakes up later cannot claim the time it was idle as credit. */
static __always_inline void note_level_vnow(s32 cls)
{
	u32 level = class_level(cls);

	if (class_vtime[CLS_IDX(cls)] > level_vnow[LVL_IDX(level)])
		level_vnow[LVL_IDX(level)] = class_vtime[CLS_IDX(cls)];
}

/* Wake an idle CPU the task may run on, so queued work never waits while a CPU idles. */
static __always_inline void kick_for(struct task_struct *p)
{
	s32 cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);

	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
}

/*
 * The enqueue decision for tenant task `p` (`slot` its live tenant, `now` the policies' clock,
 * `runnable_for` how long it has been runnable): the policy's enqueue if it replaced the stub,
 * else the stub's default, validated and clamped into `d`. The one place a tenant's enqueue is
 * decided, for ops.enqueue and for the wake-ups ops.select_cpu decides, so that a wake-up asks
 * the policy once. `ctx` is the caller's scratch context.
 */
static __always_inline void decide_enqueue(struct task_struct *p, struct task_ctx *tctx,
					   struct upsched_tenant_config *cfg,
					   struct upsched_class_stats *stats, u32 flags, u64 now,
					   u64 runnable_for, u64 waited_for, struct upsched_ctx *ctx,
					   struct decision *d)
{
	s32 set = hook_set(cfg, UPSCHED_HOOK_ENQUEUE);
	u64 slice, park_bound;

	if (set >= 0) {
		fill_ctx(ctx, p, tctx, cfg, set, UPSCHED_HOOK_ENQUEUE, flags, now, runnable_for);
		CALL_STUB(enqueue, set, tctx->tenant, ctx);
		stats->policy_calls++;
		d->key = ctx->key;
		slice = ctx->slice_ns;
		d->verdict = ctx->verdict;
		d->until = ctx->park_until_ns;
	} else {
		/* The stub's default decision, as fill_ctx would pre-fill it. */
		d->key = now;
		slice = tenant_slice_dfl(cfg);
		d->verdict = UPSCHED_VERDICT_RUN;
		d->until = 0;
	}

	if (slice == 0 || slice < cfg->slice_min_ns) {
		slice = cfg->slice_min_ns;
		stats->clamp_slice++;
	} else if (slice > cfg->slice_max_ns) {
		slice = cfg->slice_max_ns;
		stats->clamp_slice++;
	}
	d->slice = slice ? slice : default_slice();
	if (d->verdict > UPSCHED_VERDICT_PREEMPT) {
		d->verdict = UPSCHED_VERDICT_RUN;
		stats->clamp_verdict++;
	}
	if (d->verdict != UPSCHED_VERDICT_PARK)
		return;
	/* The bound counts from the start of the current wait (the task last ran or became
	 * runnable then): never off the CPU longer than park_max_ns at a time, and parkable again
	 * once it ran after a release. A released task runs first whatever the clocks say (the
	 * runqueue clock of a timer's re-enqueue may lag). */
	if ((flags & UPSCHED_F_RELEASED) || waited_for >= cfg->park_max_ns ||
	    (p->signal->flags & SIGNAL_GROUP_EXIT)) {
		d->verdict = UPSCHED_VERDICT_RUN;
		stats->clamp_park++;
		return;
	}
	/* wait start + park_max_ns, on the policies' clock. */
	park_bound = now + cfg->park_max_ns - (waited_for < now ? waited_for : now);
	if (d->until == 0 || d->until > park_bound) {
		if (d->until)
			stats->clamp_park++;
		d->until = park_bound;
	}
}

/* ---- struct_ops callbacks ------------------------------------------------------------------- */

/*
 * The tenant's select_cpu, if it replaced the stub: its validated target_cpu, else `cpu` (the
 * host's choice). Clears *is_idle when the target is another CPU than the one the host claimed.
 */
static __always_inline s32 tenant_select_cpu(struct task_struct *p, struct task_ctx *tctx,
					     struct upsched_tenant_config *cfg,
					     struct upsched_class_stats *stats, s32 prev_cpu,
					     u64 wake_flags, s32 cpu, bool *is_idle,
					     struct upsched_ctx *ctx)
{
	s32 set = hook_set(cfg, UPSCHED_HOOK_SELECT_CPU);
	u32 flags = UPSCHED_F_WAKEUP;
	s32 target;

	if (set < 0)
		return cpu;
	if (wake_flags & SCX_WAKE_SYNC)
		flags |= UPSCHED_F_WAKE_SYNC;
	if (wake_flags & SCX_WAKE_FORK)
		flags |= UPSCHED_F_FORK;
	fill_ctx(ctx, p, tctx, cfg, set, UPSCHED_HOOK_SELECT_CPU, flags, bpf_ktime_get_ns(), 0);
	ctx->prev_cpu = prev_cpu;
	CALL_STUB(select_cpu, set, tctx->tenant, ctx);
	stats->policy_calls++;
	target = ctx->target_cpu;
	if (target == UPSCHED_CPU_ANY || target == cpu)
		return cpu;
	if (target >= 0 && (u32)target < nr_cpus && bpf_cpumask_test_cpu(target, p->cpus_ptr)) {
		*is_idle = false;
		return target;
	}
	stats->clamp_cpu++;
	return cpu;
}

/* A tenant task that runs next on the CPU whose local queue it goes to (its class's virtual
 * time and its level's virtual now advance as a dispatch of it would move them). */
static __always_inline void insert_tenant_local(struct task_struct *p, struct task_ctx *tctx,
						u64 enq_flags)
{
	note_level_vnow(tctx->tenant);
	scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, tctx->decision.slice, enq_flags);
}

SEC("struct_ops/host_select_cpu")
s32 BPF_PROG(host_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	struct upsched_tenant_config *cfg;
	struct upsched_class_stats *stats;
	struct task_ctx *tctx;
	struct upsched_ctx uctx;
	bool is_idle = false, current;
	u32 flags;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	tctx = task_ctx_of(p);
	if (!tctx)
		return cpu;
	tctx->decided = 0;
	cfg = live_tenant(tctx);
	current = classification_current(p, tctx, task_cgroup_id(p));
	if (!cfg) {
		/* A default-class task waking onto an idle CPU goes straight to that CPU's local
		 * queue (as scx_simple does), skipping ops.enqueue and a dispatch, when nothing can
		 * change that choice: its class is current and no tenant has queued work. */
		if (is_idle && tctx->tenant < 0 && current &&
		    !any_queued(~(1U << UPSCHED_DEFAULT_CLASS))) {
			mark_runnable(tctx, host_now());
			insert_default_local(p, tctx, true, 0);
		}
		return cpu;
	}
	stats = stats_of(tctx->tenant);
	if (!stats)
		return cpu;
	cpu = tenant_select_cpu(p, tctx, cfg, stats, prev_cpu, wake_flags, cpu, &is_idle, &uctx);
	/* A stale classification is settled in ops.enqueue (it calls task_init and task_exit),
	 * which then decides the wake-up itself. */
	if (!current)
		return cpu;
	/* The wake-up's enqueue decision, taken here: ops.enqueue, which the kernel calls next
	 * for this wake-up unless the task is inserted here, applies it without asking again. */
	mark_runnable(tctx, host_now());
	flags = tctx->last_flags | UPSCHED_F_WAKEUP;
	tctx->last_flags = 0;
	decide_enqueue(p, tctx, cfg, stats, flags, bpf_ktime_get_ns(), 0, 0, &uctx,
		       &tctx->decision);
	/* RUN onto the idle CPU the host claimed while no class has queued tasks: that CPU's
	 * dispatch would take exactly this task, so it goes to the CPU's local queue now, saving
	 * ops.enqueue and the dispatch. It runs next whatever the policy does, so it is not put
	 * on the watchdog's wait list. */
	if (is_idle && tctx->decision.verdict == UPSCHED_VERDICT_RUN && !any_queued(~0U)) {
		stats->enqueues++;
		catch_up_class(tctx->tenant);
		tctx->cls = tctx->tenant;
		tctx->last_key = key_to_dsq_vtime(tctx->decision.key);
		insert_tenant_local(p, tctx, 0);
		return cpu;
	}
	tctx->decided = 1;
	return cpu;
}

SEC("struct_ops/host_enqueue")
void BPF_PROG(host_enqueue, struct task_struct *p, u64 enq_flags)
{
	struct upsched_tenant_config *cfg;
	struct upsched_class_stats *stats;
	struct upsched_hint_words *words;
	struct task_ctx *tctx;
	struct upsched_ctx uctx;
	u64 host_time = host_now(), now, runnable_for = 0, waited_for = 0;
	u32 flags, prev_gen;
	s32 slot, prev_tenant;
	bool released = false, decided;

	tctx = task_ctx_of(p);
	if (!tctx) {
		scx_bpf_dsq_insert_vtime(p, UPSCHED_CLASS_DSQ(UPSCHED_DEFAULT_CLASS),
					 default_slice_now(), default_vnow, enq_flags);
		mark_queued(UPSCHED_DEFAULT_CLASS);
		return;
	}
	/* ops.select_cpu decides a wake-up just before this enqueue of it; any other enqueue
	 * finds the flag clear. */
	decided = tctx->decided;
	tctx->decided = 0;
	/* Before classify(): a task joining a tenant brings its runnable count along. */
	mark_runnable(tctx, host_time);
	prev_tenant = tctx->tenant;
	prev_gen = tctx->tenant_gen;
	classify(p, tctx);
	/* A waiting task that left its tenant (moved, detached, ejected) ends the wait there,
	 * counted in the tenant's statistics, and starts a new one in its new class. */
	if (tctx->tenant != prev_tenant && tctx->cls == prev_tenant && tctx->waiting_since) {
		cfg = tenant_cfg(prev_tenant);
		stats = stats_of(prev_tenant);
		if (cfg && stats && cfg->gen == prev_gen)
			end_wait(stats, tctx, host_time);
		tctx->waiting_since = host_time;
	}
	if (!tctx->waiting_since)
		tctx->waiting_since = host_time;

	cfg = live_tenant(tctx);
	if (!cfg) {
		if (enq_flags & SCX_ENQ_LAST) {
			insert_default_local(p, tctx, false, enq_flags);
			return;
		}
		enqueue_default(p, tctx, enq_flags);
		kick_for(p);
		return;
	}
	slot = tctx->tenant;
	/* A waiting member of a live tenant is on its wait list (parked ones too) until it runs. */
	if (!tctx->wait_listed)
		tctx->wait_listed = wait_list_append(slot, tctx->tenant_gen, tctx->task_slot, p->pid,
						     tctx->waiting_since);
	now = bpf_ktime_get_ns();
	if (host_time > tctx->runnable_at)
		runnable_for = host_time - tctx->runnable_at;
	if (host_time > tctx->waiting_since)
		waited_for = host_time - tctx->waiting_since;

	/* A parked task comes back here when scx_bpf_dsq_reenq() re-enqueues its park queue:
	 * it stays parked, without asking the policy again, until a release condition holds. */
	if (tctx->parked) {
		words = hint_words(slot, tctx->task_slot);
		released = now >= tctx->park_deadline ||
			   (p->signal->flags & SIGNAL_GROUP_EXIT) ||
			   (words && (words->words[UPSCHED_HINT_PENDING] != 0 ||
				      !(words->words[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_SLEEPY)));
		if (!released) {
			scx_bpf_dsq_insert_vtime(p, UPSCHED_PARK_DSQ(slot), SCX_SLICE_DFL,
						 tctx->park_deadline, enq_flags & ~SCX_ENQ_HEAD);
			return;
		}
		tctx->parked = 0;
	}

	stats = stats_of(slot);
	if (!stats)
		return;
	/* The decision of ops.select_cpu holds while the task is still in the tenant it took it
	 * for (classify() above changed nothing). */
	if (!decided || slot != prev_tenant || tctx->tenant_gen != prev_gen) {
		flags = tctx->last_flags;
		tctx->last_flags = 0;
		if (enq_flags & SCX_ENQ_WAKEUP)
			flags |= UPSCHED_F_WAKEUP;
		if (released)
			flags |= UPSCHED_F_RELEASED;
		decide_enqueue(p, tctx, cfg, stats, flags, now, runnable_for, waited_for, &uctx,
			       &tctx->decision);
	}
	stats->enqueues++;
	if (released)
		stats->releases++;

	if (tctx->decision.verdict == UPSCHED_VERDICT_PARK) {
		tctx->parked = 1;
		tctx->park_deadline = tctx->decision.until;
		tctx->cls = slot;
		stats->parks++;
		scx_bpf_dsq_insert_vtime(p, UPSCHED_PARK_DSQ(slot), tctx->decision.slice,
					 tctx->decision.until, enq_flags & ~SCX_ENQ_HEAD);
		return;
	}

	catch_up_class(slot);
	tctx->cls = slot;
	tctx->last_key = key_to_dsq_vtime(tctx->decision.key);
	/* Nothing else wants this CPU (dispatch found no better class): run on. */
	if (enq_flags & SCX_ENQ_LAST) {
		insert_tenant_local(p, tctx, enq_flags);
		return;
	}
	scx_bpf_dsq_insert_vtime(p, UPSCHED_CLASS_DSQ(slot), tctx->decision.slice,
				 tctx->last_key, enq_flags & ~SCX_ENQ_HEAD);
	mark_queued(slot);
	if (tctx->decision.verdict == UPSCHED_VERDICT_PREEMPT) {
		stats->preempt_kicks++;
		scx_bpf_kick_cpu(scx_bpf_task_cpu(p), SCX_KICK_PREEMPT);
	} else {
		kick_for(p);
	}
}

/*
 * Scratch state of pick_class(), per CPU. Keeping it in a map value rather than in registers
 * makes every value unknown to the verifier, so its loops do not multiply verifier states
 * (with register state, the 9x9x8 iterations exceeded the verifier's 1M instruction budget).
 */
struct pick_scratch {
	u32 work_levels;   /* bit per level that has queued work */
	u32 work_classes;  /* bit per class that has queued work (or is prev's) */
	u8 levels[CLASS_ARRAY]; /* level of each class with work, from the first pass */
	u32 top_level;
	u32 chosen_level;
	s32 best;
	u64 best_vtime;
	u64 best_deficit;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct pick_scratch);
} pick_scratch SEC(".maps");

/*
 * The highest-priority class with queued work, taking the starvation guard into account.
 * `prev_cls` is the class of the task that ends its slice and would stay runnable (-1: none):
 * it competes too, although its DSQ may be empty, so that a class holding all its tasks on
 * CPUs is not passed over. Returns KEEP_PREV when that class wins and has nothing queued.
 * Global (not static) so that the verifier checks it once, not once per call site.
 */
__attribute__((noinline)) s32 pick_class(u64 now, u32 tried, s32 prev_cls)
{
	struct upsched_host_config *hcfg = host_cfg();
	struct cpu_guard *guard = cpu_guard();
	struct pick_scratch *sc;
	u64 elapsed, owed, deficit, runtime;
	u32 level, zero = 0;
	s32 cls;

	sc = bpf_map_lookup_elem(&pick_scratch, &zero);
	if (!sc)
		return -1;
	sc->work_levels = 0;
	sc->work_classes = 0;
	sc->top_level = 0;
	sc->best = -1;
	sc->best_vtime = 0;
	sc->best_deficit = 0;

	for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++) {
		if (tried & (1U << cls))
			continue;
		if (cls != prev_cls && !class_has_queued(cls))
			continue;
		level = class_level(cls);
		sc->work_levels |= 1U << LVL_IDX(level);
		sc->work_classes |= 1U << cls;
		sc->levels[CLS_IDX(cls)] = level;
		if (level > sc->top_level)
			sc->top_level = level;
	}
	if (!sc->work_levels)
		return -1;
	sc->chosen_level = sc->top_level;

	/* Fast path: one class with work (the host alone, or one busy tenant). */
	if (!(sc->work_classes & (sc->work_classes - 1))) {
		for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++)
			if (sc->work_classes == (1U << cls))
				break;
		if (cls >= UPSCHED_NR_CLASSES)
			return -1;
		note_level_vnow(cls);
		if (cls == prev_cls && scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(cls)) <= 0)
			return KEEP_PREV;
		return cls;
	}

	/* Starvation guard: a lower level with work that got less than its minimum share of this
	 * CPU's time elapsed in this CPU's window runs first; the most short-changed one wins. */
	if (hcfg && hcfg->guard_min_permille && guard && guard->window_start &&
	    now > guard->window_start && (sc->work_levels & (sc->work_levels - 1))) {
		elapsed = now - guard->window_start;
		owed = elapsed / 1000 * hcfg->guard_min_permille;
		for (level = 0; level < UPSCHED_NR_LEVELS; level++) {
			if (level >= sc->top_level || !(sc->work_levels & (1U << level)))
				continue;
			runtime = guard->level_runtime[LVL_IDX(level)];
			if (runtime >= owed)
				continue;
			deficit = owed - runtime;
			if (deficit > sc->best_deficit) {
				sc->best_deficit = deficit;
				sc->chosen_level = level;
			}
		}
	}

	/* Within the level: the class with the least virtual time (classes and levels as seen
	 * by the first pass). */
	for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++) {
		if (!(sc->work_classes & (1U << cls)))
			continue;
		if (sc->levels[CLS_IDX(cls)] != sc->chosen_level)
			continue;
		if (sc->best < 0 || class_vtime[CLS_IDX(cls)] < sc->best_vtime) {
			sc->best = cls;
			sc->best_vtime = class_vtime[CLS_IDX(cls)];
		}
	}
	if (sc->best >= 0 && sc->best_vtime > level_vnow[LVL_IDX(sc->chosen_level)])
		level_vnow[LVL_IDX(sc->chosen_level)] = sc->best_vtime;
	if (sc->best >= 0 && sc->best == prev_cls &&
	    scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(prev_cls)) <= 0)
		return KEEP_PREV;
	return sc->best;
}

/* This CPU's guard window: a new one starts when the last has elapsed. */
static __always_inline void roll_guard_window(u64 now)
{
	struct upsched_host_config *hcfg = host_cfg();
	struct cpu_guard *guard = cpu_guard();
	u64 window;
	int level;

	if (!guard)
		return;
	window = hcfg && hcfg->guard_window_ns ? hcfg->guard_window_ns : 100000000ULL;
	if (guard->window_start && now - guard->window_start < window)
		return;
	guard->window_start = now;
	for (level = 0; level < UPSCHED_NR_LEVELS; level++)
		guard->level_runtime[LVL_IDX(level)] = 0;
}

SEC("struct_ops/host_dispatch")
void BPF_PROG(host_dispatch, s32 cpu, struct task_struct *prev)
{
	struct task_struct *head;
	struct task_ctx *tctx;
	u64 now, prev_key = 0;
	u32 tried = 0;
	s32 cls, prev_cls = -1;
	int attempt;

	if (prev && (prev->scx.flags & SCX_TASK_QUEUED)) {
		tctx = task_ctx_of(prev);
		if (tctx && !tctx->parked) {
			prev_cls = tctx->cls;
			prev_key = tctx->last_key;
		}
	}
	/* Nothing queued and nothing to keep running: the CPU goes idle (or prev runs on). */
	if (!queued_classes && prev_cls < 0)
		return;
	now = host_now();
	roll_guard_window(now);
	for (attempt = 0; attempt < UPSCHED_NR_CLASSES; attempt++) {
		cls = pick_class(now, tried, prev_cls);
		/* Nothing, or the ending task's class wins: dispatch nothing. The kernel then calls
		 * ops.enqueue(prev, SCX_ENQ_LAST) (SCX_OPS_ENQ_LAST), so the policy still sees the
		 * slice end, and the host puts prev back on this CPU. */
		if (cls < 0 || cls >= UPSCHED_NR_CLASSES)
			return;
		/* Within a tenant the policy's keys decide: the ending task runs on if its key
		 * (from its last enqueue) is below every queued one. The default class rotates. */
		if (cls == prev_cls && cls != UPSCHED_DEFAULT_CLASS &&
		    bpf_ksym_exists(scx_bpf_dsq_peek)) {
			head = scx_bpf_dsq_peek(UPSCHED_CLASS_DSQ(cls));
			if (head && prev_key < head->scx.dsq_vtime)
				return;
		}
		if (scx_bpf_dsq_move_to_local(UPSCHED_CLASS_DSQ(cls)))
			return;
		/* Another CPU took the last task meanwhile: try the next class. */
		tried |= 1U << cls;
	}
}

SEC("struct_ops/host_running")
void BPF_PROG(host_running, struct task_struct *p)
{
	struct upsched_tenant_config *cfg;
	s32 set;
	struct upsched_class_stats *stats;
	struct task_ctx *tctx = task_ctx_of(p);
	struct upsched_ctx uctx;
	u64 now = host_now();

	if (!tctx)
		return;
	mark_runnable(tctx, now);
	tctx->run_start_sum = p->se.sum_exec_runtime;
	tctx->on_cpu = 1;
	if (tctx->cls == UPSCHED_DEFAULT_CLASS && tctx->vtime > default_vnow)
		default_vnow = tctx->vtime;
	stats = stats_of(tctx->cls);
	if (stats) {
		stats->dispatches++;
		end_wait(stats, tctx, now);
	}
	tctx->waiting_since = 0;
	wait_end(tctx);
	cfg = live_tenant(tctx);
	if (cfg)
		*running_cpu_of(tctx->tenant, tctx->task_slot) = scx_bpf_task_cpu(p) + 1;
	set = cfg ? hook_set(cfg, UPSCHED_HOOK_RUNNING) : -1;
	if (set < 0)
		return;
	fill_ctx(&uctx, p, tctx, cfg, set, UPSCHED_HOOK_RUNNING, 0, bpf_ktime_get_ns(), 0);
	CALL_STUB(running, set, tctx->tenant, &uctx);
}

SEC("struct_ops/host_stopping")
void BPF_PROG(host_stopping, struct task_struct *p, bool runnable)
{
	struct upsched_tenant_config *cfg;
	s32 set;
	struct upsched_class_stats *stats;
	struct task_ctx *tctx = task_ctx_of(p);
	struct upsched_ctx uctx;
	struct cpu_guard *guard;
	u64 sum = p->se.sum_exec_runtime, ran = 0;
	u32 level, weight, zero = 0;
	s32 cls;

	if (!tctx)
		return;
	/* The kernel brought the task's CPU time up to date just before ops.stopping: its growth
	 * over this run is the run's length, with no clock read here. */
	if (tctx->on_cpu && sum > tctx->run_start_sum)
		ran = sum - tctx->run_start_sum;
	tctx->on_cpu = 0;
	if (tctx->tenant >= 0 && tctx->tenant < UPSCHED_NR_SLOTS)
		*running_cpu_of(tctx->tenant, tctx->task_slot) = 0;
	tctx->last_runtime_ns = ran;
	cls = tctx->cls;
	if (cls >= 0 && cls < UPSCHED_NR_CLASSES) {
		weight = class_weight(cls);
		level = class_level(cls);
		__sync_fetch_and_add(&class_vtime[CLS_IDX(cls)], weighted(ran, weight));
		/* The guard's account of the CPU the task ran on (ops.stopping may run elsewhere,
		 * e.g. for an affinity change of a running task). */
		guard = bpf_map_lookup_percpu_elem(&cpu_guards, &zero, scx_bpf_task_cpu(p));
		if (guard && level < UPSCHED_NR_LEVELS)
			__sync_fetch_and_add(&guard->level_runtime[LVL_IDX(level)], ran);
		stats = stats_of(cls);
		if (stats)
			stats->cpu_time_ns += ran;
	}
	/* At most one floor slice of virtual time per run: the class is fair in turns of one
	 * slice, and no task gets further ahead of the virtual now than one floor slice at its
	 * weight, whatever slice it ran at low load (so a flood of arrivals queued behind the
	 * virtual now cannot run ahead of it for long). */
	if (cls == UPSCHED_DEFAULT_CLASS)
		tctx->vtime += weighted(ran < default_slice_floor() ? ran : default_slice_floor(),
					p->scx.weight);
	if (runnable) {
		tctx->waiting_since = host_now();
		if (p->scx.slice > 0)
			tctx->last_flags |= UPSCHED_F_PREEMPTED;
	} else {
		mark_not_runnable(tctx);
	}
	cfg = live_tenant(tctx);
	set = cfg ? hook_set(cfg, UPSCHED_HOOK_STOPPING) : -1;
	if (set < 0)
		return;
	fill_ctx(&uctx, p, tctx, cfg, set, UPSCHED_HOOK_STOPPING, runnable ? UPSCHED_F_RUNNABLE : 0,
		 bpf_ktime_get_ns(), 0);
	CALL_STUB(stopping, set, tctx->tenant, &uctx);
}

SEC("struct_ops/host_tick")
void BPF_PROG(host_tick, struct task_struct *p)
{
	struct upsched_tenant_config *cfg;
	s32 set;
	struct upsched_class_stats *stats;
	struct task_ctx *tctx = task_ctx_of(p);
	struct upsched_ctx uctx;
	u64 slice;
	u32 level, cls;

	if (!tctx)
		return;
	/* Moved to another cgroup, or tenants changed: end the slice so that ops.enqueue
	 * classifies the task now rather than at its next sleep. */
	if (tctx->cgroup_id != task_cgroup_id(p) ||
	    (tctx->tenant >= 0 && !live_tenant(tctx))) {
		p->scx.slice = 0;
		return;
	}
	/* The default class's load grew (a flood of wake-ups, an ejection): a running task's
	 * slice shrinks to the slice at that load, so that the class's wait bound holds. */
	if (tctx->cls == UPSCHED_DEFAULT_CLASS &&
	    (queued_classes & (1U << UPSCHED_DEFAULT_CLASS))) {
		slice = default_slice_now();
		if (p->scx.slice > slice)
			p->scx.slice = slice;
	}
	/* A higher level with queued work takes the CPU at the next tick, like a higher
	 * scheduling class would. */
	if (queued_classes & ~(1U << CLS_IDX(tctx->cls))) {
		level = class_level(tctx->cls);
		for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++) {
			if (class_level(cls) > level && class_has_queued(cls)) {
				p->scx.slice = 0;
				return;
			}
		}
	}
	cfg = live_tenant(tctx);
	set = cfg ? hook_set(cfg, UPSCHED_HOOK_TICK) : -1;
	if (set < 0)
		return;
	fill_ctx(&uctx, p, tctx, cfg, set, UPSCHED_HOOK_TICK, 0, bpf_ktime_get_ns(), 0);
	CALL_STUB(tick, set, tctx->tenant, &uctx);
	if (uctx.verdict == UPSCHED_VERDICT_PREEMPT) {
		p->scx.slice = 0;
	} else if (uctx.verdict != UPSCHED_VERDICT_RUN) {
		stats = stats_of(tctx->tenant);
		if (stats)
			stats->clamp_verdict++;
	}
}

SEC("struct_ops/host_init_task")
s32 BPF_PROG(host_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	struct task_ctx *tctx;

	tctx = bpf_task_storage_get(&task_ctxs, p, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!tctx)
		return -12; /* -ENOMEM */
	tctx->tenant = -1;
	tctx->runnable_slot = -1;
	tctx->cls = UPSCHED_DEFAULT_CLASS;
	/* Stale on purpose: the first enqueue classifies the task. */
	tctx->seen_classify_gen = (u32)-1;
	return 0;
}

SEC("struct_ops/host_exit_task")
void BPF_PROG(host_exit_task, struct task_struct *p, struct scx_exit_task_args *args)
{
	struct task_ctx *tctx = task_ctx_of(p);
	u32 pid = p->pid;

	if (!tctx)
		return;
	if (tctx->runnable_slot >= 0) {
		runnable_count(tctx->runnable_slot, -1);
		tctx->runnable_slot = -1;
	}
	leave_tenant(p, tctx);
	bpf_map_delete_elem(&task_lookup, &pid);
}

SEC("struct_ops/host_enable")
void BPF_PROG(host_enable, struct task_struct *p)
{
	struct task_ctx *tctx = task_ctx_of(p);

	if (tctx)
		tctx->vtime = default_vnow;
}

SEC("struct_ops/host_cgroup_move")
void BPF_PROG(host_cgroup_move, struct task_struct *p, struct cgroup *from, struct cgroup *to)
{
	struct task_ctx *tctx = task_ctx_of(p);

	/* Reclassified at its next enqueue. */
	if (tctx)
		tctx->seen_classify_gen = (u32)-1;
}

/* ---- timer: park release and the per-tenant watchdog ----------------------------------------- */

static __always_inline bool should_release(struct task_struct *p, struct task_ctx *tctx, u64 now)
{
	struct upsched_hint_words *words = hint_words(tctx->tenant, tctx->task_slot);

	if (now >= tctx->park_deadline)
		return true;
	if (p->signal->flags & SIGNAL_GROUP_EXIT)
		return true;
	if (words && (words->words[UPSCHED_HINT_PENDING] != 0 ||
		      !(words->words[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_SLEEPY)))
		return true;
	return false;
}

/*
 * Whether a parked task of park queue `dsq` may go (at policy time `policy_now`). Only the first
 * PARK_SCAN_LIMIT tasks are looked at, in deadline order, and that bound costs no task its park
 * bound: the earliest deadline is always among them, every deadline is at most its task's
 * bound, and a release re-enqueues the whole queue. A task beyond the limit only learns of a
 * hint release at the next release of the queue, at the latest at its own deadline.
 */
static bool park_release_due(u64 dsq, u64 policy_now, u32 *count)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	struct task_ctx *tctx;
	bool due = false;

	*count = 0;
	if (bpf_iter_scx_dsq_new(&it, dsq, 0) == 0) {
		while ((p = bpf_iter_scx_dsq_next(&it))) {
			if (++*count > PARK_SCAN_LIMIT)
				break;
			tctx = task_ctx_of(p);
			if (tctx && tctx->parked && should_release(p, tctx, policy_now)) {
				due = true;
				break;
			}
		}
	}
	bpf_iter_scx_dsq_destroy(&it);
	return due;
}

/*
 * The timer's upkeep of queued_classes: a class with an empty DSQ and no enqueue for a whole
 * timer period loses its bit. Should an insertion still have been under way (a vCPU stopped
 * in the middle of ops.enqueue for a period), the next run finds the task with its bit clear,
 * sets the bit and wakes an idle CPU for it: such a task waits one period, never for good.
 */
static __always_inline void clear_idle_classes(void)
{
	struct bpf_iter_scx_dsq it;
	struct task_struct *p;
	u32 bit, enqs;
	s32 cls;

	for (cls = 0; cls < UPSCHED_NR_CLASSES; cls++) {
		bit = 1U << cls;
		enqs = class_enqs[CLS_IDX(cls)];
		if (scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(cls)) > 0) {
			if (!(queued_classes & bit)) {
				__sync_fetch_and_or(&queued_classes, bit);
				if (bpf_iter_scx_dsq_new(&it, UPSCHED_CLASS_DSQ(cls), 0) == 0 &&
				    (p = bpf_iter_scx_dsq_next(&it)))
					kick_for(p);
				bpf_iter_scx_dsq_destroy(&it);
			}
		} else if ((queued_classes & bit) && enqs == class_enqs_seen[CLS_IDX(cls)]) {
			__sync_fetch_and_and(&queued_classes, ~bit);
		}
		class_enqs_seen[CLS_IDX(cls)] = enqs;
	}
}

static int host_timer_fn(void *map, int *key, struct bpf_timer *timer)
{
	struct upsched_host_config *hcfg = host_cfg();
	struct upsched_tenant_config *cfg;
	u64 now = host_now(), policy_now = bpf_ktime_get_ns(), waited;
	u64 period = hcfg && hcfg->timer_period_ns ? hcfg->timer_period_ns : 2000000ULL;
	bool release;
	u32 pid;
	int slot;

	timer_runs++;
	bpf_rcu_read_lock();
	clear_idle_classes();
	for (slot = 0; slot < UPSCHED_NR_SLOTS; slot++) {
		cfg = tenant_cfg(slot);
		if (!cfg)
			continue;
		if (scx_bpf_dsq_nr_queued(UPSCHED_PARK_DSQ(slot)) > 0) {
			/* Not live any more: every parked task goes back (to the default class). */
			release = cfg->state != UPSCHED_SLOT_ACTIVE ||
				  park_release_due(UPSCHED_PARK_DSQ(slot), policy_now, &scan_count);
			if (release && bpf_ksym_exists(scx_bpf_dsq_reenq))
				scx_bpf_dsq_reenq(UPSCHED_PARK_DSQ(slot), 0);
		}
		/* Not live: queued members go back through ops.enqueue now (where they leave the
		 * tenant) rather than waiting for their turn at the slot's level. */
		if (cfg->state != UPSCHED_SLOT_ACTIVE &&
		    scx_bpf_dsq_nr_queued(UPSCHED_CLASS_DSQ(slot)) > 0 &&
		    bpf_ksym_exists(scx_bpf_dsq_reenq))
			scx_bpf_dsq_reenq(UPSCHED_CLASS_DSQ(slot), 0);
		if (cfg->state != UPSCHED_SLOT_ACTIVE || !cfg->watchdog_ns)
			continue;
		pid = 0;
		waited = wait_list_longest(slot, cfg->gen, now, &pid);
		if (waited > cfg->watchdog_ns)
			eject_tenant(slot, pid, waited, policy_now);
	}
	bpf_rcu_read_unlock();
	bpf_timer_start(timer, period, 0);
	return 0;
}

#ifndef EINVAL
#define EINVAL 22
#endif
#ifndef ESTALE
#define ESTALE 116
#endif

/* ---- notify: a tenant's prompt release and preemption ----------------------------------------- */

/*
 * The notify program of slot `slot` (docs/mechanism.md, "Notify"), run by whoever raised a
 * parked task's `pending` with BPF_PROG_TEST_RUN: the tenant's park queue is re-examined as the
 * timer does, and the given task, if it runs SLEEPY with nothing pending, has its CPU kicked so
 * that its enqueue may park it. The slot is fixed per program (its fd reaches that slot only),
 * the tenant's notify key per attach (a former tenant's holder reaches no one).
 */
static __always_inline int notify_tenant(s32 slot, struct upsched_notify_args *args)
{
	struct upsched_tenant_config *cfg = tenant_cfg(slot);
	struct upsched_class_stats *stats;
	struct upsched_hint_words *words;
	u32 task_slot = args->task_slot, cpu;
	bool release;

	if (!cfg || cfg->state != UPSCHED_SLOT_ACTIVE || !cfg->notify_key ||
	    args->key != cfg->notify_key)
		return -ESTALE;
	if (task_slot >= MAX_TASK_SLOTS)
		return -EINVAL;
	stats = stats_of(slot);
	if (stats)
		stats->notifies++;
	bpf_rcu_read_lock();
	release = scx_bpf_dsq_nr_queued(UPSCHED_PARK_DSQ(slot)) > 0 &&
		  park_release_due(UPSCHED_PARK_DSQ(slot), bpf_ktime_get_ns(), &notify_scan_count);
	if (release && bpf_ksym_exists(scx_bpf_dsq_reenq)) {
		scx_bpf_dsq_reenq(UPSCHED_PARK_DSQ(slot), 0);
		if (stats)
			stats->notify_releases++;
	}
	bpf_rcu_read_unlock();
	cpu = *running_cpu_of(slot, task_slot);
	words = hint_words(slot, task_slot);
	if (cpu && words && (words->words[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_SLEEPY) &&
	    !words->words[UPSCHED_HINT_PENDING]) {
		scx_bpf_kick_cpu(cpu - 1, SCX_KICK_PREEMPT);
		if (stats)
			stats->notify_kicks++;
	}
	return 0;
}

#define NOTIFY_PROG(s)                                                                       \
	SEC("syscall")                                                                       \
	int upsched_notify_s##s(struct upsched_notify_args *args)                            \
	{                                                                                    \
		return notify_tenant(s, args);                                               \
	}
NOTIFY_PROG(0)
NOTIFY_PROG(1)
NOTIFY_PROG(2)
NOTIFY_PROG(3)
NOTIFY_PROG(4)
NOTIFY_PROG(5)
NOTIFY_PROG(6)
NOTIFY_PROG(7)
_Static_assert(UPSCHED_NR_SLOTS == 8, "one notify program per slot");

/* ---- init / exit ------------------------------------------------------------------------------ */

SEC("struct_ops.s/host_init")
s32 BPF_PROG(host_init)
{
	struct host_timer *t;
	u32 zero = 0;
	s32 err;
	int i;

	nr_cpus = scx_bpf_nr_cpu_ids();
	for (i = 0; i < UPSCHED_NR_CLASSES; i++) {
		err = scx_bpf_create_dsq(UPSCHED_CLASS_DSQ(i), NUMA_NO_NODE);
		if (err)
			return err;
	}
	for (i = 0; i < UPSCHED_NR_SLOTS; i++) {
		err = scx_bpf_create_dsq(UPSCHED_PARK_DSQ(i), NUMA_NO_NODE);
		if (err)
			return err;
	}
	t = bpf_map_lookup_elem(&host_timer, &zero);
	if (!t)
		return -2; /* -ENOENT */
	bpf_timer_init(&t->timer, &host_timer, CLOCK_MONOTONIC);
	bpf_timer_set_callback(&t->timer, host_timer_fn);
	bpf_timer_start(&t->timer, 2000000ULL, 0);
	return 0;
}

SEC("struct_ops/host_exit")
void BPF_PROG(host_exit, struct scx_exit_info *info)
{
	struct upsched_exit_record *rec;
	u32 zero = 0;

	rec = bpf_map_lookup_elem(&exit_record, &zero);
	if (!rec)
		return;
	rec->kind = info->kind;
	rec->exit_code = info->exit_code;
	bpf_probe_read_kernel_str(rec->reason, sizeof(rec->reason), info->reason);
	bpf_probe_read_kernel_str(rec->msg, sizeof(rec->msg), info->msg);
}

SEC(".struct_ops.link")
struct sched_ext_ops upsched_host = {
	.select_cpu = (void *)host_select_cpu,
	.enqueue = (void *)host_enqueue,
	.dispatch = (void *)host_dispatch,
	.tick = (void *)host_tick,
	.running = (void *)host_running,
	.stopping = (void *)host_stopping,
	.init_task = (void *)host_init_task,
	.exit_task = (void *)host_exit_task,
	.enable = (void *)host_enable,
	.cgroup_move = (void *)host_cgroup_move,
	.init = (void *)host_init,
	.exit = (void *)host_exit,
	/* ops.enqueue also for a task that would run on alone: classification and the policy's
	 * decisions happen at every slice end. */
	.flags = SCX_OPS_ENQ_LAST,
	/* From upsched_abi::mechanism::SCX_TIMEOUT_NS (build.rs), which the bounds derive from. */
	.timeout_ms = UPSCHED_SCX_TIMEOUT_MS,
	.name = "upsched_host",
};
