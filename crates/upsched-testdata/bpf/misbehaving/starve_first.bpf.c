// SPDX-License-Identifier: GPL-2.0-only
/*
 * starve_first - a misbehaving test policy: the tenant's first task (task slot 0) always gets
 * the largest key, every other task the default key (its enqueue time: first in, first out).
 * While more tasks than CPUs are runnable the first one never runs, however long the queue:
 * the host's per-tenant watchdog must see it and eject the tenant.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("starve_first");

UPSCHED_ENQUEUE(ctx)
{
	if (ctx->task_slot == 0)
		ctx->key = ~0ULL;
}
