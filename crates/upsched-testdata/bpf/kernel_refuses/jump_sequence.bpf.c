// SPDX-License-Identifier: GPL-2.0-only
// Passes `upsched check` but not the kernel: a loop of 9,000 iterations whose every iteration
// may return early on a global's value. Exploring the loop, a verifier keeps one branch
// waiting per iteration; the engine verifier allows 32,768 waiting paths (each ends at once,
// at the return), the kernel's 8,192 ("The sequence of 8193 jumps is too complex"), after a
// verifier log of megabytes (docs/verifier.md, "What the kernel refuses that it accepts").
#include "upsched_sdk.h"
UPSCHED_POLICY("jump_sequence");
volatile unsigned long long table[64];
UPSCHED_ENQUEUE(ctx)
{
	unsigned int i;
#pragma clang loop unroll(disable)
	for (i = 0; i < 9000; i++)
		if (table[i & 63] == 7)
			return;
	ctx->key = ctx->now_ns;
}
