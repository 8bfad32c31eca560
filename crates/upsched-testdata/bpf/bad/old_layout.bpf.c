// Built against a different struct upsched_ctx of the right size (fields reordered), while
// claiming the current ABI: only the BTF comparison can tell.
#define SEC(name) __attribute__((section(name), used))
struct upsched_ctx {
	unsigned int ctx_size;
	unsigned int abi_version;
	unsigned long long rest[28];
};
struct upsched_policy_info { unsigned int abi_version, ctx_size; char name[32]; };
const struct upsched_policy_info upsched_policy_info SEC(".upsched") = { 1, 232, "old_layout" };
char _license[] SEC("license") = "GPL";
SEC("freplace/upsched_enqueue") void upsched_enqueue(struct upsched_ctx *ctx)
{
	if (ctx)
		ctx->rest[0] = 1;
}
