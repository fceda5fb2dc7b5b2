package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// TestCheckKernel: the ring buffer probe passes on a kernel that has ring
// buffers (5.8 and later) and refuses, naming the version needed, on one
// that has not. vmtest runs it on 5.10, 6.1 and 6.12.
func TestCheckKernel(t *testing.T) {
	testkit.RequireRoot(t, "probing the kernel (it loads a BPF map)")
	code, err := features.LinuxVersionCode()
	if err != nil {
		t.Fatal(err)
	}
	k := hostKernel()
	err = checkKernel(k, false)
	if code >= 5<<16|8<<8 {
		if err != nil {
			t.Errorf("kernel %s (5.8 or later): %v", k.release, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "needs Linux 5.8 or later") {
		t.Errorf("kernel %s (before 5.8): %v, want a refusal naming 5.8", k.release, err)
	}
	// -- CMD needs BTF too: the running kernel's answer must match what
	// it publishes.
	_, statErr := os.Stat("/" + btfPath)
	if err := checkKernel(k, true); (err == nil) != (statErr == nil) {
		t.Errorf("kernel %s: checkKernel(follow) = %v, but %s: %v", k.release, err, btfPath, statErr)
	}
}

// TestCheckKernelMissing: kernels that this machine's is not. A kernel
// without BTF or without ring buffers cannot be made here for real: the
// checks run on a fake root lacking sys/kernel/btf/vmlinux and on a ring
// buffer probe that answers as cilium/ebpf does on Linux 5.7.
func TestCheckKernelMissing(t *testing.T) {
	withBTF := t.TempDir()
	if err := os.MkdirAll(filepath.Join(withBTF, filepath.Dir(btfPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(withBTF, btfPath), []byte("BTF"), 0o444); err != nil {
		t.Fatal(err)
	}
	noBTF := t.TempDir()
	haveRing := func() error { return nil }
	noRing := func() error {
		return fmt.Errorf("detect support for RingBuf: %w", ebpf.ErrNotSupported)
	}
	broken := func() error { return errors.New("operation not permitted") }
	for _, c := range []struct {
		name   string
		k      kernel
		follow bool
		say    []string // "" for no error
	}{
		{"complete", kernel{"6.1.0", withBTF, haveRing}, true, nil},
		{"no BTF, --pid", kernel{"6.1.0", noBTF, haveRing}, false, nil},
		{"no BTF, -- CMD", kernel{"6.1.0", noBTF, haveRing}, true, []string{"kernel 6.1.0 has no BTF", btfPath, "CONFIG_DEBUG_INFO_BTF"}},
		{"no ring buffer", kernel{"5.4.0", withBTF, noRing}, false, []string{"kernel 5.4.0 has no BPF ring buffer", "Linux 5.8 or later"}},
		{"no ring buffer nor BTF", kernel{"5.4.0", noBTF, noRing}, true, []string{"no BPF ring buffer"}},
		{"probe fails", kernel{"6.1.0", withBTF, broken}, false, []string{"probe the kernel for BPF ring buffers: operation not permitted"}},
	} {
		err := checkKernel(c.k, c.follow)
		if len(c.say) == 0 {
			if err != nil {
				t.Errorf("%s: %v, want none", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want one saying %q", c.name, c.say)
			continue
		}
		for _, s := range c.say {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not say %q", c.name, err, s)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q is more than one line", c.name, err)
		}
	}
}
