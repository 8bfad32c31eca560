// SPDX-License-Identifier: GPL-2.0-only
/*
 * edf - earliest deadline first.
 *
 * Each runnable task has a deadline and the earliest deadline runs first. The deadline is, in
 * order of preference:
 *   1. the absolute deadline its runtime posted in hint UPSCHED_HINT_DEADLINE;
 *   2. the time it became runnable plus the latency target posted in UPSCHED_HINT_LATENCY_NS;
 *   3. the time it became runnable plus a per-task relative deadline, set when the task joins
 *      the tenant from its weight: DEFAULT_REL_DEADLINE_NS at nice 0, shorter for heavier tasks.
 * A waking task whose deadline falls within its slice asks to preempt a later-deadline task.
 *
 * Use it for request/response services with latency targets, where the runtime knows each
 * request's deadline better than any heuristic.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("edf");

#define DEFAULT_REL_DEADLINE_NS (20ULL * 1000 * 1000)
#define NICE_0_WEIGHT 100

struct edf_task {
	u64 rel_deadline_ns;
};

UPSCHED_TASK_STATE(struct edf_task, tasks);

UPSCHED_TASK_INIT(ctx)
{
	u32 weight = ctx->weight ? ctx->weight : 1;

	upsched_task_state(tasks, ctx)->rel_deadline_ns =
		DEFAULT_REL_DEADLINE_NS * NICE_0_WEIGHT / weight;
}

UPSCHED_ENQUEUE(ctx)
{
	u64 runnable_since = ctx->now_ns - ctx->runnable_ns;
	u64 deadline = ctx->hints[UPSCHED_HINT_DEADLINE];

	if (!deadline) {
		u64 relative = ctx->hints[UPSCHED_HINT_LATENCY_NS];

		if (!relative)
			relative = upsched_task_state(tasks, ctx)->rel_deadline_ns;
		deadline = runnable_since + relative;
	}
	ctx->key = deadline;
	if ((ctx->flags & UPSCHED_F_WAKEUP) && deadline <= ctx->now_ns + ctx->slice_ns)
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
}
