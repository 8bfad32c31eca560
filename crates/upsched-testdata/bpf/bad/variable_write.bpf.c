// Writes the context at an offset that depends on an input.
#include "upsched_sdk.h"
UPSCHED_POLICY("variable_write");
UPSCHED_ENQUEUE(ctx) { ctx->hints[ctx->flags & 7] = 1; }
