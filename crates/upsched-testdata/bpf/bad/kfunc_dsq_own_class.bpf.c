// The tenant's own class DSQ: a host queue; its length is ctx->tenant_nr_runnable.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_own_class", CLASS_DSQ(ctx->tenant_id))
