// Tenant slot 0's park DSQ: a host queue.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_park", PARK_DSQ(0))
