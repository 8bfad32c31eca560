// Defines a BPF map.
#include "upsched_sdk.h"
UPSCHED_POLICY("maps");
struct { int (*type)[2]; int (*max_entries)[1]; } counters SEC(".maps");
UPSCHED_ENQUEUE(ctx) { ctx->key = 1; }
