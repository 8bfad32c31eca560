// A non-GPL license.
#include "upsched_sdk.h"
const struct upsched_policy_info upsched_policy_info SEC(".upsched") = {
	.abi_version = UPSCHED_ABI_VERSION, .ctx_size = sizeof(struct upsched_ctx),
	.name = "license_mit" };
char _license[] SEC("license") = "MIT";
UPSCHED_ENQUEUE(ctx) { ctx->key = 1; }
