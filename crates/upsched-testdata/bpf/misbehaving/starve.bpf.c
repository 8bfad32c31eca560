// SPDX-License-Identifier: GPL-2.0-only
/*
 * starve - a misbehaving test policy: orders tasks by pid, so with more runnable tasks than
 * CPUs + 2 the highest pids never run. The host's per-tenant watchdog must eject the tenant.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("starve");

UPSCHED_ENQUEUE(ctx)
{
	/* Shifted: the host orders keys at a resolution of 2 (it halves them). */
	ctx->key = (u64)ctx->pid << 8;
}
