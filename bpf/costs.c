//go:build ignore

// What the work inside ctxwatch's probes costs on the running kernel, one
// kind of step per program, for the bench (bench/costs.go): each program
// runs once per call of a function of the bench itself, and the kernel's
// run-time statistics give its time per run. Reads are of src, an address
// in the bench's own memory, so nothing here depends on the architecture.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

volatile const __u64 src; // 512 readable bytes of the bench's memory

// Like ctxwatch's goroutine state (bpf/wire.h's struct gstate, 120 bytes)
// and map (an LRU hash of 2^17).
struct value {
	__u64 w[15];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 17);
	__type(key, __u64);
	__type(value, struct value);
} states SEC(".maps");

// Per-CPU: a destination in map memory, as ctxwatch's context walk reads
// into (bpf/walk.h's struct found), and a counter of new keys.
struct scratch {
	__u64 next;
	__u64 buf[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} ring SEC(".maps");

SEC("uprobe/cost_empty")
int cost_empty(void *ctx)
{
	return 0;
}

SEC("uprobe/cost_read_stack")
int cost_read_stack(void *ctx)
{
	__u64 b[2];
	bpf_probe_read_user(b, sizeof(b), (void *)src);
	return b[0] == 1;
}

SEC("uprobe/cost_read_stack_256")
int cost_read_stack_256(void *ctx)
{
	__u64 b[32];
	bpf_probe_read_user(b, sizeof(b), (void *)src);
	return b[0] == 1;
}

SEC("uprobe/cost_read_map")
int cost_read_map(void *ctx)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	bpf_probe_read_user(s->buf, 16, (void *)src);
	return s->buf[0] == 1;
}

// The lookup cost_read_map makes, alone.
SEC("uprobe/cost_lookup_scratch")
int cost_lookup_scratch(void *ctx)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	return s && s->buf[0] == 1;
}

// A new key per run, as a spawn's state: its element has not been
// touched since the map was made.
SEC("uprobe/cost_insert_new")
int cost_insert_new(void *ctx)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	__u64 key = s->next++ | (__u64)bpf_get_smp_processor_id() << 48;
	struct value v = {};
	bpf_map_update_elem(&states, &key, &v, BPF_ANY);
	return 0;
}

// One of 64 keys, again and again: elements the cache holds.
SEC("uprobe/cost_update_warm")
int cost_update_warm(void *ctx)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	__u64 key = (s->next++ & 63) | 1ULL << 63;
	struct value v = {};
	bpf_map_update_elem(&states, &key, &v, BPF_ANY);
	return 0;
}

SEC("uprobe/cost_lookup_state")
int cost_lookup_state(void *ctx)
{
	__u64 key = 1ULL << 63; // made by cost_update_warm
	return bpf_map_lookup_elem(&states, &key) != 0;
}

// An event's reservation (ctxwatch's is 264 bytes), given back: nobody
// reads this ring.
SEC("uprobe/cost_ringbuf")
int cost_ringbuf(void *ctx)
{
	__u64 *e = bpf_ringbuf_reserve(&ring, 264, 0);
	if (!e)
		return 0;
	e[0] = 1;
	bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("uprobe/cost_ktime")
int cost_ktime(void *ctx)
{
	return bpf_ktime_get_ns() == 1;
}
