// 2 MiB of per-task state: over the 1 MiB limit.
#include "upsched_sdk.h"
UPSCHED_POLICY("big_globals");
struct big { u64 words[64]; };
UPSCHED_TASK_STATE(struct big, state);
UPSCHED_ENQUEUE(ctx) { ctx->key = upsched_task_state(state, ctx)->words[0]++; }
