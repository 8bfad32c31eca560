// A valid policy whose BTF the build then corrupts: its typedef `upsched_loop_t` is made to
// refer to itself. The kernel refuses such BTF (-EEXIST: a type loop), so libbpf cannot load
// the object.
#include "upsched_sdk.h"
UPSCHED_POLICY("btf_typedef_loop");

typedef u64 upsched_loop_t;
upsched_loop_t loop_marker;

UPSCHED_ENQUEUE(ctx)
{
	if (ctx)
		ctx->key = loop_marker;
}
