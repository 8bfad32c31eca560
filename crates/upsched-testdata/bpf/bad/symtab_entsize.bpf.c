// A valid policy whose ELF the build then corrupts: the `.symtab` section header's sh_entsize
// is set to 0. libbpf refuses the object (a symbol table must have 24-byte entries).
#include "upsched_sdk.h"
UPSCHED_POLICY("symtab_entsize");

UPSCHED_ENQUEUE(ctx)
{
	if (ctx)
		ctx->key = 1;
}
