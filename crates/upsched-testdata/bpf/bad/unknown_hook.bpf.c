// A freplace section for a hook the ABI does not have.
#include "upsched_sdk.h"
UPSCHED_POLICY("unknown_hook");
UPSCHED_HOOK(dispatch, ctx) { ctx->key = 1; }
