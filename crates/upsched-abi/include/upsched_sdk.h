/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upsched_sdk.h - the kit for writing a tenant policy.
 *
 *	#include "upsched_sdk.h"
 *
 *	UPSCHED_POLICY("fifo");
 *
 *	UPSCHED_ENQUEUE(ctx)
 *	{
 *		ctx->key = ctx->now_ns;
 *	}
 *
 * Each UPSCHED_<HOOK>(ctx) macro defines the freplace program for that hook: a global
 * `void upsched_<hook>(struct upsched_ctx *)` in section "freplace/upsched_<hook>" whose body
 * runs only when ctx is not NULL. The loader attaches it onto the hook's stub in a free tenant
 * slot of the running host scheduler; the simulator runs the same object unchanged.
 *
 * Policies may not call BPF helpers (the kernel refuses them for this program type): everything
 * a policy may read is in the context. Per-task state lives in the policy's own global arrays,
 * declared with UPSCHED_TASK_STATE() and reached with upsched_task_state().
 *
 * Build: clang-19 -O2 -g -target bpf -I<this directory> -c policy.bpf.c -o policy.bpf.o
 * (the project's build does this for every policy under crates/upsched-policies/bpf/).
 */
#ifndef UPSCHED_SDK_H
#define UPSCHED_SDK_H

#include "upsched.h"

typedef upsched_u64 u64;
typedef upsched_u32 u32;
typedef upsched_s32 s32;
typedef long long s64;

#ifndef SEC
#define SEC(name) __attribute__((section(name), used))
#endif

#define upsched_always_inline inline __attribute__((always_inline))

/*
 * Declares the policy: its name (at most UPSCHED_POLICY_NAME_LEN - 1 characters), the ABI
 * version and context size it was compiled against, and the GPL license the kernel requires
 * for sched_ext programs. Use it exactly once per policy, at file scope.
 */
#define UPSCHED_POLICY(policy_name)                                                        \
	_Static_assert(sizeof(policy_name) <= UPSCHED_POLICY_NAME_LEN,                     \
		       "policy name too long");                                            \
	const struct upsched_policy_info upsched_policy_info SEC(".upsched") = {           \
		.abi_version = UPSCHED_ABI_VERSION,                                        \
		.ctx_size = sizeof(struct upsched_ctx),                                    \
		.name = policy_name,                                                       \
	};                                                                                 \
	char _license[] SEC("license") = "GPL"

/* Defines hook `hook`; the block that follows the macro is its body, with `ctx` non-NULL. */
#define UPSCHED_HOOK(hook, ctx)                                                            \
	static upsched_always_inline void upsched_body_##hook(struct upsched_ctx *ctx);     \
	SEC("freplace/upsched_" #hook) void upsched_##hook(struct upsched_ctx *ctx)         \
	{                                                                                  \
		if (ctx)                                                                   \
			upsched_body_##hook(ctx);                                          \
	}                                                                                  \
	static upsched_always_inline void upsched_body_##hook(struct upsched_ctx *ctx)

#define UPSCHED_SELECT_CPU(ctx) UPSCHED_HOOK(select_cpu, ctx)
#define UPSCHED_ENQUEUE(ctx) UPSCHED_HOOK(enqueue, ctx)
#define UPSCHED_RUNNING(ctx) UPSCHED_HOOK(running, ctx)
#define UPSCHED_STOPPING(ctx) UPSCHED_HOOK(stopping, ctx)
#define UPSCHED_TICK(ctx) UPSCHED_HOOK(tick, ctx)
#define UPSCHED_TASK_INIT(ctx) UPSCHED_HOOK(task_init, ctx)
#define UPSCHED_TASK_EXIT(ctx) UPSCHED_HOOK(task_exit, ctx)

_Static_assert((UPSCHED_MAX_TASKS & (UPSCHED_MAX_TASKS - 1)) == 0,
	       "UPSCHED_MAX_TASKS must be a power of two");

/*
 * Per-task state: `UPSCHED_TASK_STATE(struct my_state, state);` declares one element per task
 * slot in the policy's .bss; `upsched_task_state(state, ctx)` returns the calling task's
 * element. The mask keeps the index provably in bounds for the kernel verifier (and is a no-op
 * for valid slots).
 */
#define UPSCHED_TASK_STATE(type, name) type name[UPSCHED_MAX_TASKS]
#define upsched_task_state(name, ctx) (&(name)[(ctx)->task_slot & (UPSCHED_MAX_TASKS - 1)])

/* Hint accessors. Indices are constants, so these compile to fixed-offset context loads. */
static upsched_always_inline u64 upsched_hint(const struct upsched_ctx *ctx, unsigned int word)
{
	return ctx->hints[word & (UPSCHED_NR_HINTS - 1)];
}

static upsched_always_inline int upsched_is_sleepy(const struct upsched_ctx *ctx)
{
	return (ctx->hints[UPSCHED_HINT_FLAGS] & UPSCHED_HINTF_SLEEPY) != 0;
}

static upsched_always_inline u64 upsched_pending(const struct upsched_ctx *ctx)
{
	return ctx->hints[UPSCHED_HINT_PENDING];
}

/*
 * Kfuncs a policy may call (each needs a capability; see abi.toml). Admission proves that
 * every argument is inside its domain at every call site, so pass the constants below.
 *
 * scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL): how many tasks wait in the local dispatch queue of the
 * CPU the hook runs on (dispatched there already, of any class). It is the only DSQ id allowed:
 * another CPU's local queue (SCX_DSQ_LOCAL_ON | cpu) disables the whole scheduler when the CPU
 * does not exist, and the other queues belong to the host and to the other tenants. The
 * tenant's own number of runnable tasks is ctx->tenant_nr_runnable.
 */
#define SCX_DSQ_LOCAL (1ULL << 63 | 2)
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __attribute__((section(".ksyms")));

#endif /* UPSCHED_SDK_H */
