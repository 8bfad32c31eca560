// SPDX-License-Identifier: GPL-2.0-only
/*
 * floor.bpf.c - the least a sched_ext scheduler can do, for the kernel benchmark only: a
 * waking task goes to the idle CPU the kernel's default selection finds, anything else to the
 * global FIFO queue. Its cost over the kernel's own scheduler is what sched_ext itself costs
 * (struct_ops calls, queue handling, cross-CPU kicks), a bound no cut in the host can go below.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char _license[] SEC("license") = "GPL";

SEC("struct_ops/floor_select_cpu")
s32 BPF_PROG(floor_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);

	if (is_idle)
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	return cpu;
}

SEC("struct_ops/floor_enqueue")
void BPF_PROG(floor_enqueue, struct task_struct *p, u64 enq_flags)
{
	scx_bpf_dsq_insert(p, SCX_DSQ_GLOBAL, SCX_SLICE_DFL, enq_flags);
}

SEC(".struct_ops.link")
struct sched_ext_ops upsched_floor = {
	.select_cpu = (void *)floor_select_cpu,
	.enqueue = (void *)floor_enqueue,
	.name = "upsched_floor",
};
