// SPDX-License-Identifier: GPL-2.0-only
// Accepted: bounds proven by comparisons instead of masks (index < 64, nice in [-20, 20)),
// a loop with an input bound and a constant cap.
#include "upsched_sdk.h"
UPSCHED_POLICY("checks");
u64 counts[64];
struct hist { u64 v[8]; };
UPSCHED_TASK_STATE(struct hist, h);

UPSCHED_ENQUEUE(ctx)
{
	u64 idx = ctx->hints[6];
	u32 w = ctx->weight;
	if (idx < 64)
		counts[idx]++;
	if (w < 64)
		ctx->key = counts[w] + idx;
	struct hist *t = upsched_task_state(h, ctx);
	u32 n = ctx->tenant_nr_runnable;
	u64 sum = 0;
	for (u32 i = 0; i < n && i < 8; i++)
		sum += t->v[i];
	s32 s = ctx->nice;
	if (s >= -20 && s < 20)
		sum += counts[s + 20];
	ctx->slice_ns = sum;
}
