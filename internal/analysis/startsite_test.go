package analysis_test

import (
	"reflect"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// TestStartSites: the probes' Start site counters become lines as a
// stale-parent break's site is found (the innermost user frame at the
// return address into Start's caller): return addresses of one line are
// summed, a caller that is no user code is left out, a stale count above
// its started one is taken as all stale, and the most stale come first.
// Each reading replaces the last.
func TestStartSites(t *testing.T) {
	fLoop := analysis.Frame{Function: "main.items", File: "/src/app/main.go", Line: 84}
	fFixed := analysis.Frame{Function: "main.itemsFixed", File: "/src/app/main.go", Line: 74}
	fStep := analysis.Frame{Function: "main.step", File: "/src/app/step.go", Line: 12}
	fGlobal := analysis.Frame{Function: "go.opentelemetry.io/otel/internal/global.(*tracer).Start", File: "/mod/otel/internal/global/trace.go", Line: 180}
	r := fakeResolver{
		0x5000: {fLoop},
		0x5004: {fLoop}, // the same line, another instruction
		0x5100: {fFixed},
		0x5200: {fStep, {Function: "main.handle", File: "/src/app/main.go", Line: 90}}, // a helper inlined into its caller
		0x5300: {fGlobal},
	}
	a := analysis.New(pid, analysis.Options{Resolver: r, IsUser: isUser})
	if s := a.Snapshot(); s.StartSites != nil {
		t.Fatalf("start sites before any count: %+v", s.StartSites)
	}
	a.SetStartCounts([]analysis.StartCount{
		{PC: 0x5100, Started: 50},
		{PC: 0x5000, Started: 30, Stale: 24},
		{PC: 0x5004, Started: 20, Stale: 16},
		{PC: 0x5200, Started: 3, Stale: 9},
		{PC: 0x5300, Started: 7, Stale: 7},
	})
	want := []analysis.StartSite{
		{Site: fLoop, Started: 50, Kept: 10, Stale: 40},
		{Site: fStep, Started: 3, Kept: 0, Stale: 3},
		{Site: fFixed, Started: 50, Kept: 50},
	}
	got := a.Snapshot().StartSites
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("start sites %+v, want %+v", got, want)
	}
	for i, r := range []float64{0.2, 0, 1} {
		if got[i].Retention() != r {
			t.Errorf("%s: retention %v, want %v", got[i].Site.Function, got[i].Retention(), r)
		}
	}
	if r := (&analysis.StartSite{}).Retention(); r != -1 {
		t.Errorf("retention of a site with nothing started %v, want -1", r)
	}
	a.SetStartCounts([]analysis.StartCount{{PC: 0x5100, Started: 60}})
	if got := a.Snapshot().StartSites; !reflect.DeepEqual(got, []analysis.StartSite{{Site: fFixed, Started: 60, Kept: 60}}) {
		t.Errorf("after a second reading: %+v", got)
	}
}
