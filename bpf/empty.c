//go:build ignore

// An empty uprobe program: the floor of what a uprobe costs, against which
// ctxwatch's own probes are measured (see bench/main.go).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual MIT/GPL";

SEC("uprobe/empty")
int empty(void *ctx)
{
	return 0;
}
