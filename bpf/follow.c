//go:build ignore

// Reports execs to the agent, in three ways:
//
//   - followed processes and their descendants are stopped right after each
//     exec, before their first user instruction, so that the agent can
//     attach uprobes before a Go program's main runs (ctxwatch -- go run
//     ./app, go test -exec); the agent resumes them with SIGCONT;
//   - watched processes (ctxwatch --pid) are only reported, not stopped,
//     and their children are not watched: the agent learns that the program
//     it probes was replaced;
//   - with all_execs, every other exec on the host is reported too, nothing
//     stopped (node mode discovers new programs as they start).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define SIGSTOP 19

// Set by the agent before loading.
volatile const __u8 all_execs = 0;

// Only the fields read here; CO-RE relocates them against the running
// kernel's BTF.
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct exec_event {
	__u32 tgid;
	__u32 stopped; // 0 when not followed, or the signal could not be sent
	// CLOCK_MONOTONIC at the exec: the agent may read the new program
	// before this event reaches it, and must not take the event then for
	// a later exec.
	__u64 time_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u32);  // tgid
	__type(value, __u8);
} followed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 10);
	__type(key, __u32);  // tgid
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} execs SEC(".maps");

// Exec events the ring buffer had no room for.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

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
	struct exec_event ev = {.tgid = tgid, .time_ns = bpf_ktime_get_ns()};
	if (bpf_map_lookup_elem(&followed, &tgid))
		ev.stopped = bpf_send_signal(SIGSTOP) == 0;
	else if (!all_execs && !bpf_map_lookup_elem(&watched, &tgid))
		return 0;
	if (bpf_ringbuf_output(&execs, &ev, sizeof(ev), 0)) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
