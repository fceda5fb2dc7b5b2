package testkit

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
)

// recorder is a TB that records what a check did to it.
type recorder struct{ fatal, skip string }

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

// TestRequireBPF: the check skips only where the kernel lacks the
// feature, and fails, never skips, without root or when the probe itself
// fails. It runs on any machine, as any user: the user id and the
// kernel's answers are given.
func TestRequireBPF(t *testing.T) {
	lacks := func() error { return fmt.Errorf("no such map type: %w", ebpf.ErrNotSupported) }
	broken := func() error { return errors.New("permission denied") }
	has := func() error { return nil }
	for _, c := range []struct {
		name       string
		euid       int
		feature    func() error
		fail, skip bool
	}{
		{"not root", 1000, has, true, false},
		{"root, feature present", 0, has, false, false},
		{"root, feature absent", 0, lacks, false, true},
		{"root, probe failed", 0, broken, true, false},
	} {
		var r recorder
		requireBPF(&r, "test", c.euid, has, c.feature)
		if (r.fatal != "") != c.fail || (r.skip != "") != c.skip {
			t.Errorf("%s: fatal %q, skip %q; want fail %v, skip %v", c.name, r.fatal, r.skip, c.fail, c.skip)
		}
	}
}
