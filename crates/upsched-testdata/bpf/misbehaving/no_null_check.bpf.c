// SPDX-License-Identifier: GPL-2.0-only
/*
 * no_null_check - a test policy the kernel verifier rejects: the hook writes through ctx
 * without checking it for NULL, which the kernel requires for a global function's pointer
 * argument. `upsched check` refuses it too, so the test attaches it with
 * Host::attach_unchecked() to reach the kernel verifier and check that its message comes
 * back to the caller while the running scheduler stays untouched.
 */
#include "upsched_sdk.h"

UPSCHED_POLICY("no_null_check");

SEC("freplace/upsched_enqueue") void upsched_enqueue(struct upsched_ctx *ctx)
{
	ctx->key = 1;
}
