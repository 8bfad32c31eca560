// A hook without UPSCHED_POLICY(): no ABI declaration.
#include "upsched_sdk.h"
char _license[] SEC("license") = "GPL";
UPSCHED_ENQUEUE(ctx) { ctx->key = 1; }
