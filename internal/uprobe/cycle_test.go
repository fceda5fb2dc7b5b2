package uprobe

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ctxwatch/ctxwatch/bpf"
)

// TestResetGoroutines: Reattach starts from an empty goroutine map, since
// the states went stale while the probes were out.
func TestResetGoroutines(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
	p, err := Load(Config{PID: os.Getpid()}, Maps{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Reattach(); !errors.Is(err, ErrNotAttached) {
		t.Errorf("Reattach before Attach: %v, want ErrNotAttached", err)
	}
	var st bpf.CtxwatchGstate
	for goid := uint64(1); goid <= 3000; goid++ {
		st.Flags = uint32(goid)
		if err := p.objs.Goroutines.Put(goid, &st); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.ResetGoroutines(); err != nil {
		t.Fatal(err)
	}
	var key uint64
	if err := p.objs.Goroutines.NextKey(nil, &key); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("goroutine %d still in the map after reset (%v)", key, err)
	}
}

// TestMeasureHitCost only checks that the measurement runs and gives
// usable numbers; what they are on this machine is for the benchmark.
func TestMeasureHitCost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("uprobes need root")
	}
	hc, err := MeasureHitCost()
	if err != nil {
		t.Fatal(err)
	}
	if hc.Emulated <= 0 || hc.Stepped <= 0 {
		t.Errorf("hit cost %+v, want positive durations", hc)
	}
	t.Logf("hit cost: %s emulated, %s single-stepped", hc.Emulated, hc.Stepped)
}
