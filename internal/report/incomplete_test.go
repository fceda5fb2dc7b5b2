package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// TestIncomplete: a summary with lost events or unmatched first checks
// says its verdicts are incomplete, in the table (live and final) and in
// JSON; one without says nothing of the kind.
func TestIncomplete(t *testing.T) {
	site := analysis.Frame{Function: "main.main", File: "/src/main.go", Line: 9}
	base := findings.Summary{
		Process:  findings.Process{PID: 7, Executable: "storm"},
		Snapshot: analysis.Snapshot{Events: 40, SpawnSites: []analysis.SpawnSite{{Site: site, TracedSpawns: 20, Lost: 20}}},
	}
	for _, c := range []struct {
		lost, unmatched uint64
		want            string // "" for complete
	}{
		{0, 0, ""},
		{12, 0, "verdicts incomplete: 12 events lost"},
		{12, 3, "verdicts incomplete: 12 events lost, 3 first checks without their spawn"},
		{0, 3, "verdicts incomplete: 3 first checks without their spawn"},
	} {
		s := base
		s.EventsLost, s.Unmatched = c.lost, c.unmatched

		var live, final bytes.Buffer
		if err := NewTable(&live, true).Refresh([]findings.Summary{s}); err != nil {
			t.Fatal(err)
		}
		if err := NewTable(&final, false).Summary(s); err != nil {
			t.Fatal(err)
		}
		for what, out := range map[string]string{"live table": live.String(), "final table": final.String()} {
			if c.want == "" && strings.Contains(out, "incomplete") {
				t.Errorf("%d lost, %d unmatched: %s says incomplete:\n%s", c.lost, c.unmatched, what, out)
			}
			if c.want != "" && !strings.Contains(out, c.want+"\n") {
				t.Errorf("%d lost, %d unmatched: %s lacks %q:\n%s", c.lost, c.unmatched, what, c.want, out)
			}
		}

		var buf bytes.Buffer
		if err := NewJSON(&buf).Summary(s); err != nil {
			t.Fatal(err)
		}
		var j struct {
			Incomplete *bool    `json:"incomplete"`
			Notes      []string `json:"notes"`
		}
		if err := json.Unmarshal(buf.Bytes(), &j); err != nil {
			t.Fatal(err)
		}
		if j.Incomplete == nil || *j.Incomplete != (c.want != "") {
			t.Errorf("%d lost, %d unmatched: JSON incomplete = %v, want %v", c.lost, c.unmatched, j.Incomplete, c.want != "")
		}
		if c.want != "" && (len(j.Notes) == 0 || j.Notes[len(j.Notes)-1] != c.want) {
			t.Errorf("%d lost, %d unmatched: JSON notes %q, want %q last", c.lost, c.unmatched, j.Notes, c.want)
		}
	}
}
