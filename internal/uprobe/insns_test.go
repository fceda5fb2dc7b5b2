package uprobe

import (
	"os"
	"testing"

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
