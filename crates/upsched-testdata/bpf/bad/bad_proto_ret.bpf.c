// A hook that returns a value (the kernel oopses on such freplace targets).
#include "upsched_sdk.h"
UPSCHED_POLICY("bad_proto_ret");
SEC("freplace/upsched_enqueue") int upsched_enqueue(struct upsched_ctx *ctx)
{
	if (ctx)
		ctx->key = 1;
	return 0;
}
