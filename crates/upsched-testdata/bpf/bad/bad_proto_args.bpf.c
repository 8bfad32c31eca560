// A hook with two parameters.
#include "upsched_sdk.h"
UPSCHED_POLICY("bad_proto_args");
SEC("freplace/upsched_enqueue") void upsched_enqueue(struct upsched_ctx *ctx, u64 extra)
{
	if (ctx)
		ctx->key = extra;
}
