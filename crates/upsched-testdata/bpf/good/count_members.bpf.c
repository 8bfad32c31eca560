// SPDX-License-Identifier: GPL-2.0-only
/*
 * count_members - a test policy that counts the tasks joining (task_init) and leaving
 * (task_exit) its tenant, so that user space can read from the policy's .bss that every task
 * that joined also left, whether it exited, moved to another cgroup or the tenant detached.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("count_members");

/* One struct, so that the layout user space reads is fixed: inits at 0, exits at 8. */
struct {
	u64 inits;
	u64 exits;
} counts;

UPSCHED_TASK_INIT(ctx)
{
	__sync_fetch_and_add(&counts.inits, 1);
}

UPSCHED_TASK_EXIT(ctx)
{
	__sync_fetch_and_add(&counts.exits, 1);
}
