// SPDX-License-Identifier: GPL-2.0-only
/*
 * wfq - weighted virtual-time fairness.
 *
 * Each task accumulates virtual time: CPU time divided by its weight (nice 0 = 100). The task
 * with the least virtual time runs next, so CPU time is shared in proportion to weights. A task
 * that slept is placed at most one slice behind the tenant's current virtual time: it gets a
 * quick turn after waking, but cannot bank credit by sleeping.
 *
 * Use it as a tenant's general-purpose policy, the way CFS/EEVDF serve most Linux tasks.
 *
 * vtime_now is read and written from several CPUs without a lock: a lost update only moves it
 * slightly back, which bounds sleeper credit a little less tightly; it never breaks ordering.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("wfq");

#define NICE_0_WEIGHT 100
#define SLEEP_CREDIT_NS (5ULL * 1000 * 1000)

struct wfq_task {
	u64 vtime;
};

UPSCHED_TASK_STATE(struct wfq_task, tasks);

/* Largest virtual time of a task that started running: the tenant's "now" in virtual time. */
u64 vtime_now;

UPSCHED_TASK_INIT(ctx)
{
	upsched_task_state(tasks, ctx)->vtime = vtime_now;
}

UPSCHED_ENQUEUE(ctx)
{
	struct wfq_task *task = upsched_task_state(tasks, ctx);
	u64 floor = vtime_now > SLEEP_CREDIT_NS ? vtime_now - SLEEP_CREDIT_NS : 0;

	if (task->vtime < floor)
		task->vtime = floor;
	ctx->key = task->vtime;
}

UPSCHED_RUNNING(ctx)
{
	struct wfq_task *task = upsched_task_state(tasks, ctx);

	if (task->vtime > vtime_now)
		vtime_now = task->vtime;
}

UPSCHED_STOPPING(ctx)
{
	struct wfq_task *task = upsched_task_state(tasks, ctx);
	u32 weight = ctx->weight ? ctx->weight : 1;

	task->vtime += ctx->last_runtime_ns * NICE_0_WEIGHT / weight;
}
