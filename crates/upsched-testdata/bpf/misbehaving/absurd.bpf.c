// SPDX-License-Identifier: GPL-2.0-only
/*
 * absurd - a misbehaving test policy: CPUs that do not exist, unknown verdicts, zero slices and
 * keys from the far ends of the range. The host must replace each with a valid decision.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("absurd");

UPSCHED_SELECT_CPU(ctx)
{
	ctx->target_cpu = 4093;
}

UPSCHED_ENQUEUE(ctx)
{
	ctx->key = (ctx->pid & 1) ? ~0ULL : 0;
	ctx->slice_ns = 0;
	ctx->verdict = 77;
}

UPSCHED_TICK(ctx)
{
	ctx->verdict = 1234;
}
