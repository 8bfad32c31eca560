// A hook that calls the function of another hook's section: libbpf links subprograms from
// .text only and refuses the object ("bad call relo").
#include "upsched_sdk.h"
UPSCHED_POLICY("cross_section_call");

SEC("freplace/upsched_running") __attribute__((noinline)) void upsched_running(struct upsched_ctx *ctx)
{
	if (ctx)
		ctx->key = 1;
}

UPSCHED_ENQUEUE(ctx)
{
	upsched_running(ctx);
}
