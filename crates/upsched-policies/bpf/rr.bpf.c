// SPDX-License-Identifier: GPL-2.0-only
/*
 * rr - round-robin with a fixed slice.
 *
 * Every task gets the same slice, RR_SLICE_NS (clamped by the host to the tenant's bounds), and
 * goes to the back of the queue when it ends; waking tasks join at the back too. Weights and
 * nice values are ignored on purpose.
 *
 * Use it for a set of equal interactive tasks where bounded, predictable waiting (at most
 * (n - 1) slices for n runnable tasks per CPU) matters more than weights.
 */
#include "upsched_sdk.h"

#define RR_SLICE_NS (5ULL * 1000 * 1000)

UPSCHED_POLICY("rr");

UPSCHED_ENQUEUE(ctx)
{
	ctx->key = ctx->now_ns;
	ctx->slice_ns = RR_SLICE_NS;
}
