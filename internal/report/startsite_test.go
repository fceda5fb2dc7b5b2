package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// TestStartSites: the table lists each Start line's spans started on a
// parent of their own goroutine, kept and stale, with the retention; the
// JSON summary has them under start_sites (an empty list when there are
// none); a run without any shows no Start section.
func TestStartSites(t *testing.T) {
	s, _ := sampleSummary()
	loop := analysis.Frame{Function: "main.itemsStale", File: "/src/app/main.go", Line: 84}
	fixed := analysis.Frame{Function: "main.itemsFixed", File: "/src/app/main.go", Line: 74}
	s.StartSites = []analysis.StartSite{{Site: loop, Started: 50, Kept: 10, Stale: 40}, {Site: fixed, Started: 50, Kept: 50}}

	var b bytes.Buffer
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "main.items") {
			rows = append(rows, strings.Join(strings.Fields(l), " "))
		}
	}
	want := []string{"main.itemsStale main.go:84 50 10 40 20.0%", "main.itemsFixed main.go:74 50 50 0 100.0%"}
	if !strings.Contains(b.String(), "START SITE") || !strings.Contains(b.String(), "ON OWN PARENT") || !reflect.DeepEqual(rows, want) {
		t.Errorf("table's start site rows %q, want %q:\n%s", rows, want, b.String())
	}

	b.Reset()
	if err := NewJSON(&b).Summary(s); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		StartSites []map[string]any `json:"start_sites"`
	}
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.StartSites) != 2 {
		t.Fatalf("start_sites %v", raw.StartSites)
	}
	for k, want := range map[string]any{"started": 50.0, "kept": 10.0, "stale": 40.0, "retention": 0.2} {
		if got := raw.StartSites[0][k]; got != want {
			t.Errorf("start_sites[0].%s = %v, want %v in %s", k, got, want, b.Bytes())
		}
	}
	if site, _ := raw.StartSites[0]["site"].(map[string]any); site["function"] != "main.itemsStale" || site["line"] != 84.0 {
		t.Errorf("start_sites[0].site = %v", raw.StartSites[0]["site"])
	}

	s.StartSites = nil
	b.Reset()
	if err := NewJSON(&b).Summary(s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"start_sites":[]`) {
		t.Errorf("no empty start_sites: %s", b.String())
	}
	b.Reset()
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "START SITE") {
		t.Errorf("a run without spans on own parents shows a Start section:\n%s", b.String())
	}
}
