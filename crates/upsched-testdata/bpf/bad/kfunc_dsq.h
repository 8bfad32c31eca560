/*
 * The objects kfunc_dsq_*.bpf.c each call scx_bpf_dsq_nr_queued from enqueue with one kind of
 * DSQ id outside its domain (SCX_DSQ_LOCAL only), and keep the answer in `answer` (whoever runs
 * one unchecked can read what the kernel or the simulator said).
 */
#include "upsched_sdk.h"

#define SCX_DSQ_FLAG_BUILTIN (1ULL << 63)
#define SCX_DSQ_GLOBAL (SCX_DSQ_FLAG_BUILTIN | 1)
#define SCX_DSQ_LOCAL_ON (SCX_DSQ_FLAG_BUILTIN | (1ULL << 62))
/* The host's user DSQs (mechanism.toml). */
#include "upsched_mechanism.h"
#define CLASS_DSQ(cls) (UPSCHED_CLASS_DSQ_BASE + (cls))
#define PARK_DSQ(slot) (UPSCHED_PARK_DSQ_BASE + (slot))

#define KFUNC_DSQ_POLICY(policy_name, dsq_id)                                            \
	UPSCHED_POLICY(policy_name);                                                       \
	s64 answer;                                                                        \
	UPSCHED_ENQUEUE(ctx)                                                               \
	{                                                                                  \
		answer = scx_bpf_dsq_nr_queued(dsq_id);                                    \
	}
