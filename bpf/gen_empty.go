package bpf

// The empty uprobe program, the floor bench/ measures ctxwatch against.

//go:generate go tool bpf2go -tags linux -go-package bpf -output-stem empty -target amd64,arm64 Empty empty.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror

// The steps of a probe's work, one per program, timed by bench/ on the
// running kernel.

//go:generate go tool bpf2go -tags linux -go-package bpf -output-stem costs -target amd64,arm64 Costs costs.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
