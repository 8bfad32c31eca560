// A tracepoint program next to a valid hook.
#include "upsched_sdk.h"
UPSCHED_POLICY("not_a_hook");
UPSCHED_ENQUEUE(ctx) { ctx->key = 1; }
SEC("tp/sched/sched_switch") int on_switch(void *ctx) { return 0; }
