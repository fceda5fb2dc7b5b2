package main

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/features"
)

// TestCheckKernel: the ring buffer probe passes on a kernel that has ring
// buffers (5.8 and later) and refuses, naming the version needed, on one
// that has not. vmtest runs it on 5.10, 6.1 and 6.12.
func TestCheckKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("probing the kernel loads a BPF map: needs root")
	}
	code, err := features.LinuxVersionCode()
	if err != nil {
		t.Fatal(err)
	}
	err = checkKernel()
	if code >= 5<<16|8<<8 {
		if err != nil {
			t.Errorf("kernel %s (5.8 or later): %v", kernelRelease(), err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "needs Linux 5.8 or later") {
		t.Errorf("kernel %s (before 5.8): %v, want a refusal naming 5.8", kernelRelease(), err)
	}
}
