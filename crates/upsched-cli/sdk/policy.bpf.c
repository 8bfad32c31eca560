// SPDX-License-Identifier: GPL-2.0-only
/*
 * policy - a template tenant policy written by `upsched sdk export`.
 *
 * Each hook decides, the host carries out: here every waking task is ordered by the time it
 * became runnable (first come, first served) and gets the longest slice the tenant allows.
 * The fields of the context and what the host does with each output are documented in
 * include/upsched.h; the hook macros and helpers in include/upsched_sdk.h.
 *
 * Build and check:  make && upsched check policy.bpf.o
 * Try a hook:       upsched call policy.bpf.o enqueue --ctx now_ns=5000000,runnable_ns=1000
 * Simulate:         upsched sim SCENARIO.toml --policy ./policy.bpf.o
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("policy");

UPSCHED_ENQUEUE(ctx)
{
	ctx->key = ctx->now_ns - ctx->runnable_ns;
	ctx->slice_ns = ctx->slice_max_ns;
}
