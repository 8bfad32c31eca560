// The local DSQ of CPU nr_cpus, one past the last: the kernel would disable the scheduler.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_local_on_nr_cpus", SCX_DSQ_LOCAL_ON | ctx->nr_cpus)
