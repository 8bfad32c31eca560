/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * upsched_hints.h - the hint map of an upsched tenant, for runtimes written in C.
 *
 * A runtime tells the scheduler about its threads through hint words: a few 64-bit words per
 * thread that the host scheduler reads at every scheduling decision and copies into the
 * tenant policy's context (ctx->hints[]). The fast path is a mapping of the tenant's hint map:
 *
 *   1. ask upschedd (docs/protocol.md) for `hint_map {tenant}`: the answer carries the map's
 *      fd (SCM_RIGHTS) and its layout, which must equal the UPSCHED_HINTS_* values below;
 *   2. mmap(NULL, UPSCHED_HINTS_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
 *      (MAP_PRIVATE and read-only mappings are refused by the kernel);
 *   3. ask `hint_slot {tenant, tid}` for each thread (its task slot, valid while the thread
 *      stays in the tenant; a thread joins at its first scheduling inside the cgroup);
 *   4. store words into entry `task_slot` with plain (relaxed atomic) stores: no syscall.
 *
 * The mapping is the capability: it reaches this tenant's words, and nothing once the tenant
 * is gone. The host zeroes a thread's words when it joins or leaves the tenant. Word meanings
 * are those of upsched.h (the same names and values; crates/upsched-hints' build checks them
 * against abi.toml): see docs/hints.md.
 */
#ifndef UPSCHED_HINTS_H
#define UPSCHED_HINTS_H

#include <stdint.h>

/* Words per thread, and the words with standard meanings (the rest are the policy's own). */
#define UPSCHED_NR_HINTS 8
#define UPSCHED_HINT_FLAGS 0       /* UPSCHED_HINTF_* bits */
#define UPSCHED_HINT_WAIT_EVENT 1  /* id of the event the thread waits for (0: none) */
#define UPSCHED_HINT_PENDING 2     /* number of pending events/requests for the thread */
#define UPSCHED_HINT_DEADLINE 3    /* absolute deadline, ns CLOCK_MONOTONIC (0: none) */
#define UPSCHED_HINT_LATENCY_NS 4  /* relative deadline / latency target in ns (0: none) */
#define UPSCHED_HINT_FIRST_FREE 5

/* Bits of word UPSCHED_HINT_FLAGS. */
#define UPSCHED_HINTF_SLEEPY 1            /* the thread only polls until an event arrives */
#define UPSCHED_HINTF_LATENCY_SENSITIVE 2 /* the thread prefers short waits to throughput */
#define UPSCHED_HINTF_IDLE_LOOP 4         /* a vCPU thread whose guest runs only its idle loop */

/* The layout of a mapped hint map: UPSCHED_HINTS_ENTRIES entries (one per task slot),
 * UPSCHED_HINTS_STRIDE bytes apart from offset 0 (the kernel spaces the elements of a mapped
 * array round_up(value size, 8) bytes apart). */
#define UPSCHED_MAX_TASKS 4096
#define UPSCHED_HINTS_ENTRIES UPSCHED_MAX_TASKS
#define UPSCHED_HINTS_STRIDE 64
#define UPSCHED_HINTS_MAP_BYTES (UPSCHED_HINTS_ENTRIES * UPSCHED_HINTS_STRIDE)

/* One thread's entry. */
struct upsched_hint_entry {
	uint64_t words[UPSCHED_NR_HINTS];
};

_Static_assert(sizeof(struct upsched_hint_entry) == UPSCHED_HINTS_STRIDE,
	       "an entry fills its stride");

/* The entry of task slot `task_slot` in a map mapped at `base`. */
static inline volatile struct upsched_hint_entry *upsched_hint_entry(void *base, uint32_t task_slot)
{
	return (volatile struct upsched_hint_entry *)((char *)base +
						       (uint64_t)task_slot * UPSCHED_HINTS_STRIDE);
}

/* The thread polls until event `event` (non-zero) arrives: the scheduler may park it. The
 * event id first, so that the host never sees SLEEPY with a stale id. */
static inline void upsched_hint_sleepy(volatile struct upsched_hint_entry *e, uint64_t event)
{
	__atomic_store_n(&e->words[UPSCHED_HINT_WAIT_EVENT], event, __ATOMIC_RELAXED);
	__atomic_fetch_or(&e->words[UPSCHED_HINT_FLAGS], UPSCHED_HINTF_SLEEPY, __ATOMIC_RELEASE);
}

/* `n` events or requests wait for the thread (n > 0 releases a parked thread). */
static inline void upsched_hint_pending(volatile struct upsched_hint_entry *e, uint64_t n)
{
	__atomic_store_n(&e->words[UPSCHED_HINT_PENDING], n, __ATOMIC_RELEASE);
}

/* No hints: every word 0, the flags first, so that the thread stops being sleepy at once. */
static inline void upsched_hint_clear(volatile struct upsched_hint_entry *e)
{
	for (int i = 0; i < UPSCHED_NR_HINTS; i++)
		__atomic_store_n(&e->words[i], 0, __ATOMIC_RELEASE);
}

/*
 * The argument of a tenant's notify program (the fd and the key come with upschedd's
 * `notify_program` answer): run it with bpf(BPF_PROG_TEST_RUN, { .prog_fd = fd, .ctx_in =
 * &args, .ctx_size_in = sizeof(args) }) after a store that should take effect now. retval 0:
 * done; -ESTALE: the tenant is gone; -EINVAL: task_slot out of range. docs/hints.md.
 */
struct upsched_notify_args {
	uint32_t task_slot;
	uint32_t pad;
	uint64_t key;
};

#endif /* UPSCHED_HINTS_H */
