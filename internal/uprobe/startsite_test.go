package uprobe

import (
	"cmp"
	"os"
	"slices"
	"testing"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// TestVerifiedInstructions logs how many instructions the verifier
// checked for with_value, with a layout that watches OTel spans and
// stale-parent (every text range and offset set), so that a change to it
// can be weighed.
func TestVerifiedInstructions(t *testing.T) {
	testkit.RequireBPF(t, "loading eBPF programs", nil)
	cfg := Config{PID: os.Getpid(), Layout: Layout{
		GGoid: 152, GM: 48, GSchedBP: 104, MCurg: 192,
		ValueCtx: 0x1000, CancelCtx: 0x1100, TimerCtx: 0x1200, AfterFuncCtx: 0x1300,
		WithoutCancelCtx: 0x1400, StopCtx: 0x1500, BackgroundCtx: 0x1600, TodoCtx: 0x1700,
		CancelErr: 32, String: 0x1800, Bytes: 0x1900,
		SpanKey: 0x2000, RecordingSpan: 0x2100, NonRecordingSpan: 0x2200,
		RecordingSpanSC: 8, RecordingSpanParent: 40, RecordEnd: 96, NonRecordingSpanSC: 0,
		SDKNonRecordingSpan: 0x2300, SDKNonRecordingSpanSC: 8,
		TracerStart: 0x400000, TracerStartEnd: 0x400800, ContextWithSpan: 0x401000, ContextWithSpanEnd: 0x401100,
	}, UserText: []Range{{Start: 0x500000, End: 0x510000}}}
	p, err := Load(cfg, Maps{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close()
	info, err := p.objs.WithValue.Info()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := info.VerifiedInstructions()
	if !ok {
		t.Skip("the kernel does not say how many instructions it verified")
	}
	t.Logf("with_value: %d instructions verified", n)
}

// TestStartSitesPerProcess: a shared program's Start site counters are
// read per process, and RemoveProcess deletes the removed process's only.
func TestStartSitesPerProcess(t *testing.T) {
	testkit.RequireBPF(t, "loading eBPF programs", nil)
	p, err := Load(Config{}, Maps{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close()
	for _, e := range []struct {
		pid     uint32
		pc      uint64
		started uint64
		stale   uint64
	}{{100, 0x401000, 5, 4}, {100, 0x402000, 3, 0}, {200, 0x401000, 7, 1}} {
		k := bpf.CtxwatchStartKey{Tgid: e.pid, Pc: e.pc}
		if err := p.objs.StartSites.Put(k, bpf.CtxwatchStartCount{Started: e.started, Stale: e.stale}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range []int{100, 200} {
		if err := p.AddProcess(pid); err != nil {
			t.Fatal(err)
		}
	}
	got, err := p.StartCounts(100)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b StartCount) int { return cmp.Compare(a.PC, b.PC) })
	if want := []StartCount{{0x401000, 5, 4}, {0x402000, 3, 0}}; !slices.Equal(got, want) {
		t.Errorf("StartCounts(100) = %+v, want %+v", got, want)
	}
	if err := p.RemoveProcess(100); err != nil {
		t.Fatal(err)
	}
	if got, err := p.StartCounts(100); err != nil || len(got) != 0 {
		t.Errorf("StartCounts(100) after RemoveProcess = %+v, %v; want none", got, err)
	}
	if got, err := p.StartCounts(200); err != nil || !slices.Equal(got, []StartCount{{0x401000, 7, 1}}) {
		t.Errorf("StartCounts(200) after RemoveProcess(100) = %+v, %v", got, err)
	}
}
