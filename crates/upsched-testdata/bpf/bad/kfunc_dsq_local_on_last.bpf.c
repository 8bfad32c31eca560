// The local DSQ of the last CPU, computed from ctx->nr_cpus: valid, but not a constant.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_local_on_last", SCX_DSQ_LOCAL_ON | (ctx->nr_cpus - 1))
