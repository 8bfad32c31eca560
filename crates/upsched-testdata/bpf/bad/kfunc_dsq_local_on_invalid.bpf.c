// CPU 0xffffffff (-1): the kernel disables the scheduler ("invalid CPU -1"), issue 9.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_local_on_invalid", SCX_DSQ_LOCAL_ON | 0xffffffff)
