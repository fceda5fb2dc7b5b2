package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
)

// TestHandoffSites: the table, the page and the JSON summary list each
// send line's hand-offs as the summary counts them, a lost-at-handoff
// shows where its element was sent, and ctxwatch report reads them back;
// a run without any shows no send section and an empty handoff_sites.
func TestHandoffSites(t *testing.T) {
	s, lines := sampleSummary()
	send := analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 45}
	worker := analysis.Frame{Function: "main.worker", File: "/src/app/worker.go", Line: 80}
	s.HandoffSites = []analysis.HandoffSite{{Site: send, Handed: 9, Propagated: 2, NewRoot: 6, NeverJudged: 1}}
	s.Breaks = append(s.Breaks, analysis.BreakCount{Kind: analysis.LostAtHandoff, Site: worker, Stack: []analysis.Frame{worker},
		Handoff: []analysis.Frame{send}, Count: 6, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"})

	var b bytes.Buffer
	tab := NewTable(&b, false)
	tab.Stacks = true
	if err := tab.Summary(s); err != nil {
		t.Fatal(err)
	}
	row, brk := "", ""
	for _, l := range strings.Split(b.String(), "\n") {
		f := strings.Join(strings.Fields(l), " ")
		if row == "" && strings.HasPrefix(f, "main.handle main.go:45") {
			row = f
		}
		if strings.HasPrefix(f, "lost-at-handoff") {
			brk = f
		}
	}
	if !strings.Contains(b.String(), "SEND SITE") || row != "main.handle main.go:45 9 2 0 6 1 25.0%" {
		t.Errorf("table's send site row %q:\n%s", row, b.String())
	}
	if brk != "lost-at-handoff 6 main.worker worker.go:80 sent at main.handle main.go:45" ||
		!strings.Contains(b.String(), "handed off at\n    main.handle main.go:45") {
		t.Errorf("table's break row %q, or no handoff stack:\n%s", brk, b.String())
	}

	doc := parsePage(t, writePage(t, HTMLOptions{}, lines, s))
	var rows []string
	walk(doc, func(n *html.Node) {
		if hasClass(n, "sendsite") {
			var v []string
			for _, a := range []string{"data-site", "data-handed", "data-kept", "data-lost", "data-newroot", "data-notjudged"} {
				x, _ := attr(n, a)
				v = append(v, x)
			}
			rows = append(rows, strings.Join(v, " "))
		}
	})
	if len(rows) != 1 || rows[0] != "/src/app/main.go:45 9 2 0 6 1" {
		t.Errorf("page's send sites %q", rows)
	}

	b.Reset()
	if err := NewJSON(&b).Summary(s); err != nil {
		t.Fatal(err)
	}
	var sum struct {
		HandoffSites []struct {
			Handed    uint64   `json:"handed"`
			NewRoot   uint64   `json:"new_root"`
			Retention *float64 `json:"retention"`
		} `json:"handoff_sites"`
	}
	if err := json.Unmarshal(b.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.HandoffSites) != 1 || sum.HandoffSites[0].Handed != 9 || sum.HandoffSites[0].NewRoot != 6 ||
		sum.HandoffSites[0].Retention == nil || *sum.HandoffSites[0].Retention != 0.25 {
		t.Errorf("JSON summary's handoff_sites: %s", b.String())
	}
	read, err := ReadJSON(&b)
	if err != nil || len(read) != 1 || read[0].Summary == nil {
		t.Fatalf("read back: %v, %+v", err, read)
	}
	if got := read[0].Summary; !reflect.DeepEqual(got.HandoffSites, s.HandoffSites) ||
		!reflect.DeepEqual(got.Breaks[len(got.Breaks)-1].Handoff, []analysis.Frame{send}) {
		t.Errorf("read back %+v, want the send sites and the handoff stack", got)
	}

	s.HandoffSites = nil
	s.Breaks = s.Breaks[:len(s.Breaks)-1]
	b.Reset()
	if err := NewTable(&b, false).Summary(s); err != nil {
		t.Fatal(err)
	}
	page := writePage(t, HTMLOptions{}, lines, s)
	if strings.Contains(b.String(), "SEND SITE") || strings.Contains(page, "Send sites") {
		t.Errorf("a run without hand-offs shows a send section")
	}
	b.Reset()
	if err := NewJSON(&b).Summary(s); err != nil || !strings.Contains(b.String(), `"handoff_sites":[]`) {
		t.Errorf("JSON summary without hand-offs: %v %s", err, b.String())
	}
}
