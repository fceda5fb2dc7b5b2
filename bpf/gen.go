// Package bpf holds ctxwatch's eBPF programs and the Go bindings bpf2go
// generates for them. The objects are committed: building ctxwatch needs no
// clang. Regenerate with `go generate ./bpf` (Debian: clang, libbpf-dev).
package bpf

//go:generate go tool bpf2go -tags linux -go-package bpf -output-stem ctxwatch -target amd64,arm64 -type event -type stat -type event_type -type outcome -type key_kind -type gflags Ctxwatch ctxwatch.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
//go:generate go tool bpf2go -tags linux -go-package bpf -output-stem follow -target amd64,arm64 -type exec_event Follow follow.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
