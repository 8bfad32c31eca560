// Another CPU's local DSQ, CPU 0: exists on every machine, but no constant CPU is allowed.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_local_on_0", SCX_DSQ_LOCAL_ON | 0)
