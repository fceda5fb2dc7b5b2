package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// kernel is what checkKernel looks at. hostKernel is the running one;
// tests describe kernels this machine is not (no BTF, no ring buffers).
type kernel struct {
	release string
	// root is where sys/kernel/btf/vmlinux is looked for: "/" for the
	// running kernel.
	root string
	// ringBuf probes for BPF ring buffers, as features.HaveMapType does:
	// an error wrapping ebpf.ErrNotSupported when there are none.
	ringBuf func() error
}

func hostKernel() kernel {
	return kernel{
		release: kernelRelease(),
		root:    "/",
		ringBuf: func() error { return features.HaveMapType(ebpf.RingBuf) },
	}
}

// btfPath is where the kernel publishes its own BTF.
const btfPath = "sys/kernel/btf/vmlinux"

// checkKernel refuses, in one line naming what is missing, a kernel that
// lacks what the probes need, rather than let a load fail deep inside:
// events go through a BPF ring buffer (Linux 5.8), with no perf-buffer
// fallback; following a command's execs (follow, for -- CMD) attaches
// tp_btf programs, which need the kernel's BTF.
func checkKernel(k kernel, follow bool) error {
	err := k.ringBuf()
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("kernel %s has no BPF ring buffer: ctxwatch needs Linux 5.8 or later: %w", k.release, err)
	}
	if err != nil {
		return fmt.Errorf("probe the kernel for BPF ring buffers: %w", err)
	}
	if follow {
		path := filepath.Join(k.root, btfPath)
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("kernel %s has no BTF (%s: %w): ctxwatch -- CMD follows execs with BTF tracepoints and needs a kernel built with CONFIG_DEBUG_INFO_BTF=y",
				k.release, path, errors.Unwrap(err))
		}
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
