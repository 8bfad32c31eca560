// An id from a hint word: any value, including invalid CPUs.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_variable", ctx->hints[0])
