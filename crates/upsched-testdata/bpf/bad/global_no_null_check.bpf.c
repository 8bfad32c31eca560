// A global subprogram that writes through its pointer argument without a NULL check. The
// caller checked, but the kernel verifies a global function on its own, with its pointer
// argument possibly NULL ("R1 invalid mem access 'mem_or_null'").
#include "upsched_sdk.h"
UPSCHED_POLICY("global_no_null_check");

__attribute__((noinline)) void set_key(struct upsched_ctx *ctx)
{
	ctx->key = ctx->now_ns;
}

UPSCHED_ENQUEUE(ctx)
{
	if (ctx)
		set_key(ctx);
}
