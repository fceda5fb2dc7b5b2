package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// checkKernel refuses, in one line, a kernel that lacks what the probes
// need, rather than let a load fail deep inside: events go through a BPF
// ring buffer (Linux 5.8), and there is no perf-buffer fallback.
func checkKernel() error {
	err := features.HaveMapType(ebpf.RingBuf)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("kernel %s has no BPF ring buffer: ctxwatch needs Linux 5.8 or later: %w", kernelRelease(), err)
	}
	if err != nil {
		return fmt.Errorf("probe the kernel for BPF ring buffers: %w", err)
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(u.Release[:])
}
