// SPDX-License-Identifier: GPL-2.0-only
/*
 * prio - static priority from nice.
 *
 * A task with a lower nice value always runs before one with a higher nice value; tasks of the
 * same nice value run first in, first out. A waking task asks the host to preempt a running
 * task of the tenant that has a lower priority, so priority holds on every CPU, not only at
 * slice ends. Low-priority tasks can starve within the tenant: that is the point of the policy
 * (the host's park and wait bounds still protect the system).
 *
 * Use it when a tenant's tasks have a strict importance order, e.g. a request handler over its
 * own background compaction.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("prio");

/* The priority band occupies the key's top byte (nice -20..19 -> 0..39); the time of becoming
 * runnable fills the rest, which gives FIFO order within a band for 2^56 ns (2.3 years). */
#define PRIO_SHIFT 56
#define TIME_MASK ((1ULL << PRIO_SHIFT) - 1)

UPSCHED_ENQUEUE(ctx)
{
	u64 band = (u64)(ctx->nice + 20) & 0x3f;

	ctx->key = (band << PRIO_SHIFT) | ((ctx->now_ns - ctx->runnable_ns) & TIME_MASK);
	if (ctx->flags & UPSCHED_F_WAKEUP)
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
}
