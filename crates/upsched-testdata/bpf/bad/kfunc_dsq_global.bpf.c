// The global DSQ: not a user DSQ, the kernel answers -ENOENT.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_global", SCX_DSQ_GLOBAL)
