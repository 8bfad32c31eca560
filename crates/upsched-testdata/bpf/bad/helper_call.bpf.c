// Calls the helper bpf_ktime_get_ns (#5).
#include "upsched_sdk.h"
UPSCHED_POLICY("helper_call");
static u64 (*bpf_ktime_get_ns)(void) = (void *)5;
UPSCHED_ENQUEUE(ctx) { ctx->key = bpf_ktime_get_ns(); }
