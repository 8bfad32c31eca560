// Keeps the context pointer in a global.
#include "upsched_sdk.h"
UPSCHED_POLICY("ctx_escape");
struct upsched_ctx *saved;
UPSCHED_ENQUEUE(ctx) { saved = ctx; }
