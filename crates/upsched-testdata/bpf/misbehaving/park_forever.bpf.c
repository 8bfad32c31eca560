// SPDX-License-Identifier: GPL-2.0-only
/*
 * park_forever - a misbehaving test policy: parks every task it sees, for ever (park_until far
 * beyond any bound), and asks for an absurd slice. The host must clamp both: tasks run again
 * when the tenant's park bound passes, with a slice within the tenant's bounds.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("park_forever");

UPSCHED_ENQUEUE(ctx)
{
	ctx->verdict = UPSCHED_VERDICT_PARK;
	ctx->park_until_ns = ~0ULL;
	ctx->slice_ns = ~0ULL;
}
