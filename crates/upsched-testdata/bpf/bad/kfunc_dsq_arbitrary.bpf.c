// An id no DSQ has: the kernel answers -ENOENT.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_arbitrary", 0x12345)
