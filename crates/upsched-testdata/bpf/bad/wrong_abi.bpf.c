// Declares ABI version 99.
#include "upsched_sdk.h"
const struct upsched_policy_info upsched_policy_info SEC(".upsched") = {
	.abi_version = 99, .ctx_size = sizeof(struct upsched_ctx), .name = "wrong_abi" };
char _license[] SEC("license") = "GPL";
UPSCHED_ENQUEUE(ctx) { ctx->key = 1; }
