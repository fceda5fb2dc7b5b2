package agent

import (
	"testing"

	"github.com/ctxwatch/ctxwatch/bpf"
	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// TestPendingBound: the analysis remembers as many goroutines awaiting
// their first check as the probes' goroutine map holds states. Fewer would
// miss first checks the probes still send; more cannot be matched, since a
// goroutine whose state the map dropped never sends one, and costs the
// agent memory.
func TestPendingBound(t *testing.T) {
	spec, err := bpf.LoadCtxwatch()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := spec.Maps[bpf.CtxwatchMapGoroutines]
	if !ok {
		t.Fatalf("no map %q in the eBPF object", bpf.CtxwatchMapGoroutines)
	}
	if int(m.MaxEntries) != analysis.DefaultMaxPending {
		t.Errorf("goroutine map holds %d states, the analysis remembers %d pending goroutines: make them equal",
			m.MaxEntries, analysis.DefaultMaxPending)
	}
}
