// SPDX-License-Identifier: GPL-2.0-only
// Passes `upsched check` but not the kernel: a jump over an instruction that nothing reaches.
// Our checks and the engine verifier judge what can run and accept dead code; the kernel's
// verifier first walks the control-flow graph and refuses any instruction it cannot reach
// ("unreachable insn N"), before it explores a single path (docs/verifier.md, "What the kernel
// refuses that it accepts").
#include "upsched_sdk.h"
UPSCHED_POLICY("unreachable_insn");
UPSCHED_ENQUEUE(ctx)
{
	ctx->key = ctx->now_ns;
	asm volatile("goto +1\n\tr0 = 0\n\t" ::: "r0");
	ctx->slice_ns = ctx->slice_max_ns;
}
