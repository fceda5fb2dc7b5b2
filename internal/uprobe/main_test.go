package uprobe

import (
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf/rlimit"
)

// TestMain lifts the locked-memory limit as ctxwatch does before it loads
// anything: kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (8 MB by
// default, less than one 16 MB ring buffer). vmtest found it on 5.10.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if err := rlimit.RemoveMemlock(); err != nil {
			fmt.Fprintln(os.Stderr, "remove the memlock limit:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}
