// SPDX-License-Identifier: GPL-2.0-only
// Rejected by the engine verifier: a loop bounded only by an input (a hint word), which the
// verifier cannot bound.
#include "upsched_sdk.h"

UPSCHED_POLICY("unbounded_loop");

u64 counters[8];

UPSCHED_ENQUEUE(ctx)
{
	u64 i;

	for (i = 0; i < ctx->hints[UPSCHED_HINT_FIRST_FREE]; i++)
		counters[i & 7] += i;
}
