package export

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/findings"
)

// TestPrometheus scrapes --metrics-addr as Prometheus would.
func TestPrometheus(t *testing.T) {
	ctx := context.Background()
	m, err := newMetrics(ctx, Config{MetricsAddr: "127.0.0.1:0", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close(ctx)
	proc := findings.Process{PID: 42, Executable: "svc"}
	b := analysis.Break{Kind: analysis.LostAtSpawn, Site: analysis.Frame{Function: "main.audit", File: "main.go", Line: 24}}
	m.addBreak(proc, b)
	m.addBreak(proc, b)
	m.update(findings.Summary{Process: proc, Snapshot: analysis.Snapshot{SpawnSites: []analysis.SpawnSite{
		{Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 21}, TracedSpawns: 10, Propagated: 8, Lost: 2},
	}}})
	resp, err := http.Get("http://" + m.addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []struct{ metric, label, value string }{
		{"ctxwatch_breaks_total{", `code_function_name="main.audit"`, "} 2"},
		{"ctxwatch_breaks_total{", `ctxwatch_break_kind="lost-at-spawn"`, "} 2"},
		{"ctxwatch_spawns_traced_total{", `code_line_number="21"`, "} 10"},
		{"ctxwatch_spawns_propagated_total{", `code_function_name="main.handle"`, "} 8"},
		{"ctxwatch_spawns_lost_total{", `process_pid="42"`, "} 2"},
	} {
		found := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, want.metric) && strings.Contains(line, want.label) && strings.HasSuffix(line, want.value) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s...%s...%s line in /metrics:\n%s", want.metric, want.label, want.value, text)
		}
	}
}
