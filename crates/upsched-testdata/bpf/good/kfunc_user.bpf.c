// Uses the allowed kfunc scx_bpf_dsq_nr_queued on the calling CPU's local DSQ: accepted, needs
// kfunc.dsq_query.
#include "upsched_sdk.h"
UPSCHED_POLICY("kfunc_user");
UPSCHED_ENQUEUE(ctx)
{
	ctx->slice_ns = scx_bpf_dsq_nr_queued(SCX_DSQ_LOCAL) > 4 ? ctx->slice_min_ns : ctx->slice_max_ns;
}
