package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// budgetSummary is the part of a summary line that --overhead-budget adds.
type budgetSummary struct {
	Type            string  `json:"type"`
	SampledFraction float64 `json:"sampled_fraction"`
	Budget          *struct {
		Budget    float64 `json:"overhead_budget"`
		HitCostNS float64 `json:"hit_cost_ns"`
		Detaches  int     `json:"detaches"`
	} `json:"budget"`
}

// TestOverheadBudget runs a hot loop of units of work (bench/target -op
// units: each sets a new trace, spawns a goroutine that keeps it and then
// makes many checks on contexts of its own) under a 2% budget. The probes
// must be duty-cycled, and what a user reads must stay true: no event
// lost, no break (none happens in the program, however the probes are
// sampled; stale goroutine states after a re-attach would invent
// lost-at-spawn breaks), and the spawns seen all propagated. The budget
// (2%) and length are chosen so that the probes come back and go out
// again at least once.
func TestOverheadBudget(t *testing.T) {
	requireRoot(t)
	r := ctxwatch(t, "--overhead-budget", "2", "--trace-key", "type=main.traceKey", "--",
		filepath.Join(bin, "target"), "-op", "units", "-n", "100000000", "-for", "5s")
	if r.code != 0 {
		t.Fatalf("exit status %d\n%s", r.code, r.stderr)
	}
	units, ok := selfCount(r.stdout, "units")
	if !ok || units == 0 {
		t.Fatalf("target did not run its units: %q", r.stdout)
	}
	if len(r.summaries) != 1 {
		t.Fatalf("%d summaries, want 1\n%s", len(r.summaries), r.stderr)
	}
	s := r.summaries[0]
	if s.EventsLost == nil || *s.EventsLost != 0 {
		t.Errorf("events_lost %v, want 0", s.EventsLost)
	}
	for _, b := range r.breaks {
		t.Errorf("false break %s at %s:%d (spawn %v)", b.Kind, b.Site.Function, b.Site.Line, b.Spawn)
	}
	var sampled, lost, propagated uint64
	for _, site := range s.SpawnSites {
		sampled += site.TracedSpawns
		lost += site.Lost + site.NewRoot
		propagated += site.Propagated
	}
	if lost != 0 || propagated == 0 {
		t.Errorf("spawn sites %+v: want only propagated spawns, some", s.SpawnSites)
	}

	b := readBudget(t, r)
	if b.Budget == nil {
		t.Fatalf("summary has no budget account")
	}
	if b.Budget.Budget != 0.02 || b.Budget.HitCostNS <= 0 {
		t.Errorf("budget %+v, want 0.02 and a measured hit cost", *b.Budget)
	}
	if !(b.SampledFraction > 0 && b.SampledFraction < 1) || b.Budget.Detaches < 2 {
		t.Errorf("sampled_fraction %g after %d detaches: the probes were not duty-cycled", b.SampledFraction, b.Budget.Detaches)
	}
	// Fewer spawns seen than made: the probes were out part of the time.
	if sampled >= units {
		t.Errorf("%d traced spawns seen of %d: want fewer under a 2%% budget", sampled, units)
	}
	t.Logf("sampled fraction %.3f, %d detaches, %d traced spawns seen of %d, hit cost %.0f ns",
		b.SampledFraction, b.Budget.Detaches, sampled, units, b.Budget.HitCostNS)
}

// TestNoBudgetByDefault: with -- CMD the probes stay in (sampled fraction 1).
func TestNoBudgetByDefault(t *testing.T) {
	requireRoot(t)
	r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "target"), "-op", "units", "-n", "200")
	if r.code != 0 {
		t.Fatalf("exit status %d\n%s", r.code, r.stderr)
	}
	b := readBudget(t, r)
	if b.SampledFraction != 1 || b.Budget != nil {
		t.Errorf("sampled_fraction %g, budget %v: want 1 and none", b.SampledFraction, b.Budget)
	}
	var propagated uint64
	for _, s := range r.summaries {
		for _, site := range s.SpawnSites {
			propagated += site.Propagated
		}
	}
	// 200 units, and a slow goroutine every 10th.
	if len(r.summaries) != 1 || propagated != 220 || len(r.breaks) > 0 {
		t.Errorf("summaries %+v, %d breaks: want 220 propagated spawns, no break", r.summaries, len(r.breaks))
	}
}

// readBudget decodes the budget fields of the run's only summary line.
func readBudget(t *testing.T, r result) budgetSummary {
	t.Helper()
	data, err := os.ReadFile(r.report)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		var s budgetSummary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		if s.Type == "summary" {
			return s
		}
	}
	t.Fatal("no summary line")
	return budgetSummary{}
}
