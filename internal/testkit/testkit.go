// Package testkit holds what ctxwatch's tests share: the check that a
// test may load eBPF programs, and (fuzzseed) the seeds of the fuzz tests.
// Only tests import it.
package testkit

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// TB is the part of testing.TB the checks use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// RequireBPF fails t unless it runs as root on a kernel with BPF ring
// buffers, and skips it when the kernel lacks feature: a test that loads
// eBPF programs or attaches uprobes needs root, and CI runs as root, so
// such a test is never skipped for want of it (make unit runs the tests
// that need no root). feature, when not nil, probes for what the test
// needs beyond ring buffers: it returns an error wrapping
// ebpf.ErrNotSupported where the kernel lacks it; any other error fails
// t, so that a kernel that has the feature never skips.
func RequireBPF(t TB, what string, feature func() error) {
	t.Helper()
	requireBPF(t, what, os.Geteuid(), HaveRingBuf, feature)
}

// RequireRoot fails t unless it runs as root, for a test that must run
// on any kernel, such as one that checks how ctxwatch refuses a kernel
// without ring buffers.
func RequireRoot(t TB, what string) {
	t.Helper()
	requireBPF(t, what, os.Geteuid())
}

func requireBPF(t TB, what string, euid int, probes ...func() error) {
	t.Helper()
	if euid != 0 {
		t.Fatalf("%s needs root: run the tests as root (sudo make test), or make unit for those that need none", what)
		return
	}
	for _, f := range probes {
		if f == nil {
			continue
		}
		err := f()
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("%s: this kernel lacks it: %v", what, err)
			return
		}
		if err != nil {
			t.Fatalf("%s: probe the kernel: %v", what, err)
			return
		}
	}
}

// HaveRingBuf reports whether the kernel has BPF ring buffers (5.8).
func HaveRingBuf() error { return features.HaveMapType(ebpf.RingBuf) }

// HaveBTF reports whether the kernel publishes its BTF, which tp_btf
// programs (internal/follow) need.
func HaveBTF() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel BTF: %w (%w)", ebpf.ErrNotSupported, err)
	}
	return nil
}
