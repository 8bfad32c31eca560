// A call chain whose combined stack exceeds the kernel's 512 bytes (each frame fits alone):
// the kernel refuses it ("combined stack size of 3 calls is ... Too large").
#include "upsched_sdk.h"
UPSCHED_POLICY("stack_chain");

static __attribute__((noinline)) u64 innermost(struct upsched_ctx *ctx)
{
	volatile u64 scratch[40];

	for (int i = 0; i < 40; i++)
		scratch[i] = ctx->now_ns + i;
	return scratch[39];
}

static __attribute__((noinline)) u64 middle(struct upsched_ctx *ctx)
{
	volatile u64 scratch[24];

	for (int i = 0; i < 24; i++)
		scratch[i] = ctx->pid + i;
	return scratch[23] + innermost(ctx);
}

UPSCHED_ENQUEUE(ctx)
{
	volatile u64 scratch[8];

	if (!ctx)
		return;
	for (int i = 0; i < 8; i++)
		scratch[i] = i;
	ctx->key = scratch[7] + middle(ctx);
}
