// A fully unrolled loop of well over 4096 instructions.
#include "upsched_sdk.h"
UPSCHED_POLICY("too_many_insns");
UPSCHED_ENQUEUE(ctx)
{
	u64 key = ctx->now_ns;
#pragma clang loop unroll(full)
	for (int i = 0; i < 2000; i++)
		key = key * 31 + (key >> (i & 7));
	ctx->key = key;
}
