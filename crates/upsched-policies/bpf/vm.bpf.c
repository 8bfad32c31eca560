// SPDX-License-Identifier: GPL-2.0-only
/*
 * vm - vCPU threads scheduled by what their guest reports (docs/guest-host.md).
 *
 * The tenant holds a host's VMM processes (and whatever else runs beside them). A host agent
 * (`upsched vm-agent`) writes, for each vCPU thread, what the guest's own scheduler knows:
 *   UPSCHED_HINT_FLAGS    SLEEPY | IDLE_LOOP while the guest has no work on the vCPU (it spins
 *                         in its idle loop or halt-polls), LATENCY_SENSITIVE while
 *                         latency-sensitive guest work is runnable;
 *   UPSCHED_HINT_PENDING  guest work waiting on the vCPU (its run-queue length);
 *   VM_HINT_HALT_POLL_NS  the guest's halt-poll window (0: DEFAULT_HALT_POLL_NS);
 *   VM_HINT_IDLE_EPOCH    how many times the vCPU went idle;
 *   VM_HINT_PARK_NS       how long an idle vCPU is parked between two polls (0: DEFAULT_PARK_NS).
 * This policy
 *   - never parks or throttles a vCPU whose guest went idle less than the halt-poll window ago
 *     (as first seen by the policy in that idle period), so a guest that gets work back within
 *     its window pays nothing;
 *   - ends the slice of an idle vCPU past its window at the next tick and parks it for the park
 *     time; released at the park deadline it polls for one minimal slice, ahead of the queue (a
 *     guest that got an interrupt meanwhile sees it then), and is parked again;
 *   - releases it at once when the guest reports work (the host frees a parked task once
 *     PENDING is non-zero or SLEEPY clear), and runs a vCPU with guest work ahead of ordinary
 *     tasks by a lead in virtual time, twice that and preempting for latency-sensitive work;
 *   - shares the CPU by virtual time (as wfq) otherwise; an idle vCPU that can no longer be
 *     parked (the host parks a task at most park_max_ns after it became runnable, and a vCPU
 *     that spins never sleeps) is throttled instead: its CPU time counts IDLE_CHARGE times (but
 *     puts it at most one park time ahead of the tenant's virtual time, so it still polls about
 *     once per park time) and it runs minimal slices.
 * Threads without hints (the VMM's other threads, colocated work) are ordinary tasks.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("vm");

#define VM_HINT_HALT_POLL_NS UPSCHED_HINT_FIRST_FREE
#define VM_HINT_IDLE_EPOCH (UPSCHED_HINT_FIRST_FREE + 1)
#define VM_HINT_PARK_NS (UPSCHED_HINT_FIRST_FREE + 2)

#define DEFAULT_HALT_POLL_NS 200000ULL
#define DEFAULT_PARK_NS 20000000ULL
#define IDLE_CHARGE 32
#define NICE_0_WEIGHT 100
#define SLEEP_CREDIT_NS (5ULL * 1000 * 1000)
#define WORK_LEAD_NS (5ULL * 1000 * 1000)

struct vm_task {
	u64 vtime;
	u64 idle_epoch;
	u64 idle_seen_ns; /* when the policy first saw this idle period; 0: not idle */
};

UPSCHED_TASK_STATE(struct vm_task, tasks);

/* Largest virtual time of a task with work that started running (see wfq.bpf.c). */
u64 vtime_now;

/* Verdicts given, for tests and the curious (in the policy's .bss). */
u64 nr_parked;
u64 nr_throttled;

static upsched_always_inline int guest_idles(const struct upsched_ctx *ctx)
{
	return (ctx->hints[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_IDLE_LOOP) != 0;
}

static upsched_always_inline u64 hint_or(const struct upsched_ctx *ctx, unsigned int word,
					 u64 fallback)
{
	u64 value = upsched_hint(ctx, word);

	return value ? value : fallback;
}

/* Whether the guest has idled on this vCPU for at least its halt-poll window. */
static upsched_always_inline int idle_past_window(struct vm_task *task,
						  const struct upsched_ctx *ctx)
{
	u64 epoch = ctx->hints[VM_HINT_IDLE_EPOCH];

	if (!guest_idles(ctx)) {
		task->idle_seen_ns = 0;
		return 0;
	}
	if (!task->idle_seen_ns || task->idle_epoch != epoch) {
		task->idle_epoch = epoch;
		task->idle_seen_ns = ctx->now_ns;
	}
	return ctx->now_ns - task->idle_seen_ns >=
	       hint_or(ctx, VM_HINT_HALT_POLL_NS, DEFAULT_HALT_POLL_NS);
}

static upsched_always_inline u64 ahead(u64 vtime, u64 lead)
{
	return vtime > lead ? vtime - lead : 0;
}

UPSCHED_TASK_INIT(ctx)
{
	struct vm_task *task = upsched_task_state(tasks, ctx);

	task->vtime = vtime_now;
	task->idle_seen_ns = 0;
}

UPSCHED_ENQUEUE(ctx)
{
	struct vm_task *task = upsched_task_state(tasks, ctx);
	u64 floor = ahead(vtime_now, SLEEP_CREDIT_NS);
	u64 park_ns = hint_or(ctx, VM_HINT_PARK_NS, DEFAULT_PARK_NS);

	if (task->vtime < floor)
		task->vtime = floor;
	ctx->key = task->vtime;
	if (idle_past_window(task, ctx)) {
		/* The shortest slice: a poll, then the next decision. */
		ctx->slice_ns = ctx->slice_min_ns;
		if (ctx->flags & UPSCHED_F_RELEASED) {
			ctx->key = floor;
			return;
		}
		if (ctx->runnable_ns + park_ns <= ctx->park_max_ns) {
			ctx->verdict = UPSCHED_VERDICT_PARK;
			ctx->park_until_ns = ctx->now_ns + park_ns;
			nr_parked++;
			return;
		}
		nr_throttled++;
		return;
	}
	if (upsched_pending(ctx)) {
		ctx->key = ahead(task->vtime, WORK_LEAD_NS);
		if (ctx->hints[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_LATENCY_SENSITIVE) {
			ctx->key = ahead(task->vtime, 2 * WORK_LEAD_NS);
			if (ctx->flags & (UPSCHED_F_WAKEUP | UPSCHED_F_RELEASED))
				ctx->verdict = UPSCHED_VERDICT_PREEMPT;
		}
	}
}

UPSCHED_TICK(ctx)
{
	if (idle_past_window(upsched_task_state(tasks, ctx), ctx))
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
}

UPSCHED_RUNNING(ctx)
{
	struct vm_task *task = upsched_task_state(tasks, ctx);

	/* An idle vCPU runs ahead of everyone by design: it must not drag the tenant's virtual
	 * time (and with it the floor of every other task) along. */
	if (!guest_idles(ctx) && task->vtime > vtime_now)
		vtime_now = task->vtime;
}

UPSCHED_STOPPING(ctx)
{
	struct vm_task *task = upsched_task_state(tasks, ctx);
	u32 weight = ctx->weight ? ctx->weight : 1;
	u64 charge = ctx->last_runtime_ns * NICE_0_WEIGHT / weight;

	u64 lead_cap = vtime_now + hint_or(ctx, VM_HINT_PARK_NS, DEFAULT_PARK_NS);

	if (!guest_idles(ctx)) {
		task->vtime += charge;
		return;
	}
	/* Idle polling costs IDLE_CHARGE times its CPU time, but puts the vCPU at most one park
	 * time ahead of the tenant: a throttled vCPU still polls about once per park time. */
	task->vtime += charge * IDLE_CHARGE;
	if (task->vtime > lead_cap)
		task->vtime = lead_cap;
}
