// SPDX-License-Identifier: GPL-2.0-only
// Rejected by the engine verifier: the hook uses the context without checking it against NULL
// (the SDK macros do that check; this hook is written without them).
#include "upsched_sdk.h"

UPSCHED_POLICY("no_null_check");

SEC("freplace/upsched_enqueue") void upsched_enqueue(struct upsched_ctx *ctx)
{
	ctx->key = ctx->now_ns;
}
