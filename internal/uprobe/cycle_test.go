package uprobe

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// TestResetGoroutines: Reattach starts from an empty goroutine map, since
// the states went stale while the probes were out.
func TestResetGoroutines(t *testing.T) {
	testkit.RequireBPF(t, "loading eBPF programs", nil)
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
	testkit.RequireBPF(t, "attaching uprobes", nil)
	for _, multi := range []bool{false, true} {
		if multi && !MultiLinks() {
			t.Log("no uprobe_multi links on this kernel (Linux 6.6 and later): their cycle cost not measured")
			continue
		}
		hc, err := MeasureHitCost(multi)
		if err != nil {
			t.Fatal(err)
		}
		if hc.Emulated <= 0 || hc.Stepped <= 0 || hc.Attach <= 0 || hc.Detach <= 0 {
			t.Errorf("hit cost %+v (multi %v), want positive durations", hc, multi)
		}
		t.Logf("multi %v: hit cost %s emulated, %s single-stepped; per probe attach %s, detach %s", multi, hc.Emulated, hc.Stepped, hc.Attach, hc.Detach)
	}
}

// TestSharedProcesses: a program shared by the processes of one executable
// (node mode) watches those added, and forgetting one process, or
// resetting, leaves the states of others alone, in a map that other
// programs share too.
func TestSharedProcesses(t *testing.T) {
	m, p := sharedProgram(t)
	for _, pid := range []int{101, 102} {
		if err := p.AddProcess(pid); err != nil {
			t.Fatal(err)
		}
	}
	var st bpf.CtxwatchGstate
	// 101 has more states than one batch of the listing and deletion.
	perPID := map[uint32]uint64{101: 2*stateBatch + 100, 102: 10, 999: 10} // 999: another program's process
	for pid, n := range perPID {
		for goid := uint64(1); goid <= n; goid++ {
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
	if p.forgotten != perPID[101] {
		t.Errorf("forgot %d states of pid 101, want %d", p.forgotten, perPID[101])
	}
	if got := count(); got[101] != 0 || got[102] != 10 || got[999] != 10 {
		t.Errorf("after RemoveProcess(101): states per pid %v, want 101 gone, 102 and 999 kept", got)
	}
	// A state that goes between the listing and the deletion (the program
	// or the LRU deleted it) is stepped over, the rest deleted.
	for goid := uint64(1); goid <= perPID[101]; goid++ {
		if err := m.Put(GoroutineKey(101, goid), &st); err != nil {
			t.Fatal(err)
		}
	}
	before := p.forgotten
	if err := p.forget(func(pid uint32) bool {
		m.Delete(GoroutineKey(101, stateBatch+7)) // once listed; ErrKeyNotExist after the first
		return pid == 101
	}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[101] != 0 || got[102] != 10 {
		t.Errorf("after a state went meanwhile: states per pid %v, want 101 gone, 102 kept", got)
	}
	if n := p.forgotten - before; n != perPID[101]-1 {
		t.Errorf("forgot %d states, want %d (one had gone)", n, perPID[101]-1)
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

// sharedProgram loads a program shared by processes (Config.PID 0) over a
// goroutine map of its own, both closed at the end of tb.
func sharedProgram(tb testing.TB) (*ebpf.Map, *Probes) {
	tb.Helper()
	testkit.RequireBPF(tb, "loading eBPF programs", nil)
	m, err := NewGoroutineMap()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	p, err := Load(Config{}, Maps{Goroutines: m})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return m, p
}

// BenchmarkRemoveProcess: what a node agent pays when a watched process
// exits, in a goroutine map as full as it gets (2^17 states of many
// processes, 1000 of the one that exited): batched, and a syscall per key
// as on kernels before 5.6.
func BenchmarkRemoveProcess(b *testing.B) {
	m, p := sharedProgram(b)
	var st bpf.CtxwatchGstate
	fill := func(pid uint32, n uint64) {
		for goid := uint64(1); goid <= n; goid++ {
			if err := m.Put(GoroutineKey(pid, goid), &st); err != nil {
				b.Fatal(err)
			}
		}
	}
	full := uint64(m.MaxEntries())
	for pid := uint32(1000); pid < 1000+uint32(full/1000)-1; pid++ {
		fill(pid, 1000)
	}
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"batched", func() error { return p.RemoveProcess(7) }},
		{"per-key", func() error {
			keys, err := p.goroutineKeysEach()
			if err != nil {
				return err
			}
			var mine []uint64
			for _, k := range keys {
				if k>>gkeyGoidBits == 7 {
					mine = append(mine, k)
				}
			}
			return p.forgetEach(mine)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				fill(7, 1000)
				b.StartTimer()
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
