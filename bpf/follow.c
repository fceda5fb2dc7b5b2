//go:build ignore

// Stops the descendants of a followed process right after each exec, before
// their first user instruction, so that the agent can attach uprobes before
// a Go program's main runs (ctxwatch -- go run ./app, go test -exec). The
// agent resumes them with SIGCONT.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define SIGSTOP 19

// Only the fields read here; CO-RE relocates them against the running
// kernel's BTF.
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct exec_event {
	__u32 tgid;
	__u32 stopped; // 0 when the signal could not be sent
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);  // tgid
	__type(value, __u8);
} followed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} execs SEC(".maps");

// Referenced so that bpf2go emits the type for the agent.
const struct exec_event *unused_exec_event __attribute__((unused));

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	if (ptgid == ctgid || !bpf_map_lookup_elem(&followed, &ptgid))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&followed, &ctgid, &one, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bpf_map_lookup_elem(&followed, &tgid))
		return 0;
	struct exec_event ev = {.tgid = tgid};
	ev.stopped = bpf_send_signal(SIGSTOP) == 0;
	bpf_ringbuf_output(&execs, &ev, sizeof(ev), 0);
	return 0;
}
