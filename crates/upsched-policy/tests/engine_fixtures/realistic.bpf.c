// SPDX-License-Identifier: GPL-2.0-only
// Accepted: a policy in ordinary clang-19 -O2 style: per-task structs, per-class global tables,
// a noinline subprogram with a loop, data-dependent loop exits, a capped input bound.
#include "upsched_sdk.h"
UPSCHED_POLICY("realistic");

#define NR_CLASSES 8
struct task { u64 vtime; u64 history[4]; u32 class; u32 pad; };
UPSCHED_TASK_STATE(struct task, tasks);
u64 class_load[NR_CLASSES];
u64 class_weight[NR_CLASSES] = { 100, 90, 80, 70, 60, 50, 40, 30 };

static __attribute__((noinline)) u64 avg_history(struct task *t)
{
	u64 sum = 0;
	for (int i = 0; i < 4; i++)
		sum += t->history[i];
	return sum / 4;
}

UPSCHED_TASK_INIT(ctx)
{
	struct task *t = upsched_task_state(tasks, ctx);
	t->class = ctx->hints[5] % NR_CLASSES;
	t->vtime = 0;
}

UPSCHED_STOPPING(ctx)
{
	struct task *t = upsched_task_state(tasks, ctx);
	u32 c = t->class;
	if (c >= NR_CLASSES)
		return;
	for (int i = 3; i > 0; i--)
		t->history[i] = t->history[i - 1];
	t->history[0] = ctx->last_runtime_ns;
	class_load[c] += ctx->last_runtime_ns;
	t->vtime += ctx->last_runtime_ns * 100 / class_weight[c];
}

UPSCHED_ENQUEUE(ctx)
{
	struct task *t = upsched_task_state(tasks, ctx);
	u64 least = ~0ULL;
	u32 best = 0;
	for (u32 c = 0; c < NR_CLASSES; c++) {
		if (class_load[c] < least) {
			least = class_load[c];
			best = c;
		}
	}
	u64 avg = avg_history(t);
	ctx->key = t->vtime + (t->class == best ? 0 : avg);
	ctx->slice_ns = avg > ctx->slice_min_ns ? avg : ctx->slice_min_ns;
	u32 n = ctx->tenant_nr_runnable;
	if (n > 16)
		n = 16;
	u64 scaled = 0;
	for (u32 i = 0; i < n; i++)
		scaled += class_weight[i % NR_CLASSES] * i;
	if (scaled > 1000 && (ctx->flags & UPSCHED_F_WAKEUP))
		ctx->verdict = UPSCHED_VERDICT_PREEMPT;
}

UPSCHED_SELECT_CPU(ctx)
{
	s32 cpu = ctx->prev_cpu;
	if (cpu >= 0 && (u32)cpu < ctx->nr_cpus && (ctx->hints[0] & UPSCHED_HINTF_LATENCY_SENSITIVE))
		ctx->target_cpu = cpu;
	else
		ctx->target_cpu = (ctx->pid + ctx->tgid) % (ctx->nr_cpus ? ctx->nr_cpus : 1);
}
