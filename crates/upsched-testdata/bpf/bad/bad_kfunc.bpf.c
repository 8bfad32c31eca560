// Calls a kfunc that moves tasks, which only the host may do.
#include "upsched_sdk.h"
UPSCHED_POLICY("bad_kfunc");
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __attribute__((section(".ksyms")));
UPSCHED_ENQUEUE(ctx) { scx_bpf_kick_cpu(0, 0); }
