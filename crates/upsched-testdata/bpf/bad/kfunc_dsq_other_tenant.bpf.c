// Tenant slot 1's class DSQ: another tenant's queue length.
#include "kfunc_dsq.h"
KFUNC_DSQ_POLICY("kfunc_dsq_other_tenant", CLASS_DSQ(1))
