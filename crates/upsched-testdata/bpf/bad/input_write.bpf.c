// Writes an input field.
#include "upsched_sdk.h"
UPSCHED_POLICY("input_write");
UPSCHED_ENQUEUE(ctx) { ctx->pid = 0; }
