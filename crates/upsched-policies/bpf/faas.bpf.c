// SPDX-License-Identifier: GPL-2.0-only
/*
 * faas - event-aware scheduling for function runtimes ("tell me when you are sleepy and what
 * may wake you up").
 *
 * A FaaS runtime thread that has no request to serve often still spins: it polls for the next
 * event. Its runtime says so through the hint words: UPSCHED_HINTF_SLEEPY in
 * UPSCHED_HINT_FLAGS, the awaited event in UPSCHED_HINT_WAIT_EVENT, and the number of pending
 * events in UPSCHED_HINT_PENDING. This policy
 *   - parks a task that is sleepy and has nothing pending: it stays off the CPUs until the
 *     host sees an event arrive (pending > 0 or sleepy cleared; whoever posts it notifies the
 *     host, else its timer sees it) or the park bound expires. A runtime yields once after it
 *     posts SLEEPY, and the host preempts a running task that a notify finds sleepy, so the
 *     park happens at once. Should the host refuse the park (the task reached its park bound:
 *     it must run once), the task queues behind all ordinary work, its tick ends its run,
 *     and it is parked again at its next enqueue;
 *   - ends the slice of a running task at the next tick once it turns sleepy with nothing
 *     pending (for writers that do not notify);
 *   - runs a task first when an event arrives for it (release from park, or pending work at
 *     wake-up), preempting ordinary work, so the chain's next function starts at once;
 *   - orders all other tasks first in, first out.
 *
 * Use it for tenants whose runtimes post hints (the FaaS tools of this project do); tasks that
 * post none are scheduled FIFO.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("faas");

/* Ordinary tasks sort after every event-ready task. */
#define ORDINARY_BAND (1ULL << 63)

/* Number of park verdicts given, for tests and the curious (lives in the policy's .bss). */
u64 nr_parked;

static upsched_always_inline int idle_poller(const struct upsched_ctx *ctx)
{
	return upsched_is_sleepy(ctx) && upsched_pending(ctx) == 0;
}

UPSCHED_ENQUEUE(ctx)
{
	u64 runnable_since = ctx->now_ns - ctx->runnable_ns;

	if (idle_poller(ctx)) {
		ctx->verdict = UPSCHED_VERDICT_PARK;
		/* Used only if the host runs it instead (park bound reached). */
		ctx->key = runnable_since | ORDINARY_BAND;
		nr_parked++;
		return;
	}
	if ((ctx->flags & UPSCHED_F_RELEASED) || upsched_pending(ctx)) {
		ctx->key = runnable_since & ~ORDINARY_BAND;
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
		return;
	}
	ctx->key = runnable_since | ORDINARY_BAND;
}

UPSCHED_TICK(ctx)
{
	if (idle_poller(ctx))
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
}
