// SPDX-License-Identifier: GPL-2.0-only
// Rejected by the engine verifier inside a subprogram (linked from .text): the index into the
// global array is masked one bit too wide. The rejection names the subprogram's source line.
#include "upsched_sdk.h"

UPSCHED_POLICY("subprog_oob");

u64 weights[64];

__attribute__((noinline)) u64 weight_of(u32 index)
{
	return weights[index & 127];
}

UPSCHED_ENQUEUE(ctx)
{
	ctx->key = weight_of(ctx->task_slot);
}
