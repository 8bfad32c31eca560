// A hook that calls a global subprogram with the context: linking and analysis follow it.
#include "upsched_sdk.h"
UPSCHED_POLICY("subprog");
__attribute__((noinline)) void order_by_deadline(struct upsched_ctx *ctx)
{
	if (ctx)
		ctx->key = ctx->hints[UPSCHED_HINT_DEADLINE];
}
UPSCHED_ENQUEUE(ctx) { order_by_deadline(ctx); }
