/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * host_intf.h - what the host scheduler (BPF) shares with its loader (Rust): the constants and
 * map value layouts of upsched_mechanism.h, generated from crates/upsched-abi/mechanism.toml
 * (the Rust side is upsched_abi::mechanism, generated from the same file; both assert every
 * offset and size), and the DSQ ids built from them.
 */
#ifndef UPSCHED_HOST_INTF_H
#define UPSCHED_HOST_INTF_H

#include "upsched_mechanism.h"

/* DSQ ids: one vtime-ordered queue per class, one park queue per slot. */
#define UPSCHED_CLASS_DSQ(cls) (UPSCHED_CLASS_DSQ_BASE + (cls))
#define UPSCHED_PARK_DSQ(slot) (UPSCHED_PARK_DSQ_BASE + (slot))

#endif /* UPSCHED_HOST_INTF_H */
