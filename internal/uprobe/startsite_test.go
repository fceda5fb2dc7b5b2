package uprobe

import (
	"cmp"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/testkit"
)

// TestVerifiedInstructions loads every program with a layout that watches
// OTel spans, stale-parent, channels, user keys and a real service's
// number of user code ranges (Jaeger v2 has 75), and holds the verifier's
// work to a bound: it is most of the time an attach takes. Inlining the
// context walk, its steps or the user-code search again fails it.
func TestVerifiedInstructions(t *testing.T) {
	testkit.RequireBPF(t, "loading eBPF programs", nil)
	var ranges []Range
	for i := range uint64(75) {
		ranges = append(ranges, Range{Start: 0x500000 + i*0x10000, End: 0x508000 + i*0x10000})
	}
	cfg := Config{PID: os.Getpid(), Layout: Layout{
		GGoid: 152, GM: 48, GSchedBP: 104, MCurg: 192, GSchedCtxt: 80, GParentGoid: 280,
		ValueCtxItab: 0x3000, CancelCtxItab: 0x3100,
		ValueCtx: 0x1000, CancelCtx: 0x1100, TimerCtx: 0x1200, AfterFuncCtx: 0x1300,
		WithoutCancelCtx: 0x1400, StopCtx: 0x1500, BackgroundCtx: 0x1600, TodoCtx: 0x1700,
		CancelErr: 32, String: 0x1800, Bytes: 0x1900,
		SpanKey: 0x2000, RecordingSpan: 0x2100, NonRecordingSpan: 0x2200,
		RecordingSpanSC: 8, RecordingSpanParent: 40, RecordEnd: 96, NonRecordingSpanSC: 0,
		SDKNonRecordingSpan: 0x2300, SDKNonRecordingSpanSC: 8,
		TracerStart: 0x400000, TracerStartEnd: 0x400800, ContextWithSpan: 0x401000, ContextWithSpanEnd: 0x401100,
		ChanDataqsiz: 8, ChanBuf: 16, ChanElemsize: 24, ChanClosed: 28, ChanSendx: 40, ChanRecvx: 48,
		ChanRecvq: 56, ChanSendq: 72, SudogElem: 40, SudogIsSelect: 80, GSelectDone: 200,
		ChanRecvText: 0x402000, ChanRecvTextEnd: 0x403000, SelectText: 0x404000, SelectTextEnd: 0x405000,
	}, UserText: ranges, Keys: []Key{{Kind: KeyType, Type: 0x6000}, {Kind: KeyString, Text: "trace-id"}}}
	p, err := Load(cfg, Maps{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer p.Close()
	progs := reflect.ValueOf(p.objs.CtxwatchPrograms)
	total := 0
	for i := range progs.NumField() {
		prog, _ := progs.Field(i).Interface().(*ebpf.Program)
		if prog == nil {
			continue
		}
		info, err := prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.VerifiedInstructions()
		if !ok {
			t.Skip("the kernel does not say how many instructions it verified (before 5.16)")
		}
		name := progs.Type().Field(i).Tag.Get("ebpf")
		t.Logf("%-24s %7d instructions verified", name, n)
		total += int(n)
		// with_value, the largest: 17,264 on 6.18; 20,600 with same_trace
		// a branch per byte, 38,575 with its overwritten test branches on
		// the walk's carry too.
		const wvBound = 19_000
		if name == "with_value" && n > wvBound {
			t.Errorf("with_value: the verifier checked %d instructions, over %d: paths of a branch kept apart (see its overwritten test)", n, wvBound)
		}
	}
	t.Logf("%-24s %7d", "all", total)
	// 6.18 verified 83,414 here; with the walk, its steps and the search
	// inlined, 1,182,905.
	const bound = 250_000
	if total > bound {
		t.Errorf("the verifier checked %d instructions in all, over %d: an attach takes longer (see bpf/walk.h, find_value)", total, bound)
	}
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
