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
		if err := p.objs.Goroutines.Put(GoroutineKey(uint32(os.Getpid()), goid), &st); err != nil {
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

// TestSharedProcesses: a program shared by the processes of one executable
// (node mode) watches those added, and forgetting one process, or
// resetting, leaves the states of others alone, in a map that other
// programs share too.
func TestSharedProcesses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
	m, err := NewGoroutineMap()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := Load(Config{}, Maps{Goroutines: m})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, pid := range []int{101, 102} {
		if err := p.AddProcess(pid); err != nil {
			t.Fatal(err)
		}
	}
	var st bpf.CtxwatchGstate
	for _, pid := range []uint32{101, 102, 999} { // 999: another program's process
		for goid := uint64(1); goid <= 10; goid++ {
			if err := m.Put(GoroutineKey(pid, goid), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func() map[uint32]int {
		n := map[uint32]int{}
		var k uint64
		var v bpf.CtxwatchGstate
		it := m.Iterate()
		for it.Next(&k, &v) {
			n[uint32(k>>gkeyGoidBits)]++
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := p.RemoveProcess(101); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[101] != 0 || got[102] != 10 || got[999] != 10 {
		t.Errorf("after RemoveProcess(101): states per pid %v, want 101 gone, 102 and 999 kept", got)
	}
	if err := p.ResetGoroutines(); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[102] != 0 || got[999] != 10 {
		t.Errorf("after ResetGoroutines: states per pid %v, want 102 gone, 999 kept", got)
	}
	one, err := Load(Config{PID: 7}, Maps{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.AddProcess(8); !errors.Is(err, ErrNotShared) {
		t.Errorf("AddProcess on a program for one process: %v, want ErrNotShared", err)
	}
}
