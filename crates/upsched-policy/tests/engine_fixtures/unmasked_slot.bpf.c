// SPDX-License-Identifier: GPL-2.0-only
// Rejected by the engine verifier: indexes a per-task array with task_slot without the mask
// of upsched_task_state(), so nothing bounds the access (the static checks cannot see this).
#include "upsched_sdk.h"

UPSCHED_POLICY("unmasked_slot");

u64 vtime[UPSCHED_MAX_TASKS];

UPSCHED_ENQUEUE(ctx)
{
	ctx->key = vtime[ctx->task_slot];
}
