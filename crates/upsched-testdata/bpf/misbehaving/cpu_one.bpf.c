// SPDX-License-Identifier: GPL-2.0-only
/*
 * cpu_one - a test policy that sends every waking task to CPU 1, whether or not the task may
 * run there. The host must honour the choice for a task allowed on CPU 1 and replace it (and
 * count a CPU clamp) for a task that is not.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("cpu_one");

UPSCHED_SELECT_CPU(ctx)
{
	ctx->target_cpu = 1;
}
