// SPDX-License-Identifier: GPL-2.0-only
// Accepted: what clang-19 -O2 emits for bounded loops over per-task arrays, a stack buffer,
// a variable bound capped by a constant, and .data/.rodata tables.
#include "upsched_sdk.h"

UPSCHED_POLICY("loops");

#define HISTORY 16

struct task_history {
	u64 runtimes[HISTORY];
	u32 next;
};

UPSCHED_TASK_STATE(struct task_history, history);

/* .rodata: weights of the history entries, newest first. */
static const u32 decay[HISTORY] = { 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };
/* .data: a tunable the simulator may change. */
u64 slice_per_unit = 1000;
u64 nr_calls;

UPSCHED_STOPPING(ctx)
{
	struct task_history *h = upsched_task_state(history, ctx);

	h->runtimes[h->next & (HISTORY - 1)] = ctx->last_runtime_ns;
	h->next++;
}

UPSCHED_ENQUEUE(ctx)
{
	struct task_history *h = upsched_task_state(history, ctx);
	u64 weighted = 0, buf[HISTORY];
	u32 i, n;

#pragma clang loop unroll(disable)
	for (i = 0; i < HISTORY; i++)
		buf[i] = h->runtimes[(h->next - 1 - i) & (HISTORY - 1)];
#pragma clang loop unroll(disable)
	for (i = 0; i < HISTORY; i++)
		weighted += buf[i] * decay[i];

	/* A bound that depends on the input, capped by a constant. */
	n = ctx->tenant_nr_runnable;
#pragma clang loop unroll(disable)
	for (i = 0; i < n && i < 64; i++)
		weighted += i;

	ctx->key = ctx->now_ns + weighted / 136;
	ctx->slice_ns = slice_per_unit * (ctx->hints[UPSCHED_HINT_FIRST_FREE] & 0xff);
	__sync_fetch_and_add(&nr_calls, 1);
}
