// SPDX-License-Identifier: GPL-2.0-only
/*
 * fifo - first in, first out.
 *
 * Tasks run in the order they became runnable and keep the CPU for as long as the tenant's
 * slice bound allows (the longest slice the host grants), like SCHED_FIFO without priorities.
 * A task that used up its slice goes to the back of the queue.
 *
 * Use it for batch work where throughput matters and nobody waits on a latency, and as the
 * baseline when measuring the cost of running a tenant policy at all.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("fifo");

UPSCHED_ENQUEUE(ctx)
{
	/* Time of becoming runnable: a released or re-queued task keeps its place in line. */
	ctx->key = ctx->now_ns - ctx->runnable_ns;
	ctx->slice_ns = ctx->slice_max_ns;
}
