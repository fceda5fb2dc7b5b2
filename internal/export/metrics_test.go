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
	stale := analysis.Break{Kind: analysis.StaleParent, Site: analysis.Frame{Function: "main.items", File: "main.go", Line: 85}}
	for range 3 {
		m.addBreak(proc, stale)
	}
	handoff := analysis.Break{Kind: analysis.LostAtHandoff, Site: analysis.Frame{Function: "main.worker", File: "main.go", Line: 90},
		Handoff: []analysis.Frame{{Function: "main.handle", File: "main.go", Line: 45}}}
	for range 4 {
		m.addBreak(proc, handoff)
	}
	m.update(findings.Summary{Process: proc, Snapshot: analysis.Snapshot{SpawnSites: []analysis.SpawnSite{
		{Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 21}, TracedSpawns: 10, Propagated: 8, Lost: 2},
	}, HandoffSites: []analysis.HandoffSite{
		{Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 45}, Handed: 9, Propagated: 2, Lost: 1, NewRoot: 4},
	}, LogSites: []analysis.LogSite{
		{Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 30}, InsideTrace: 7, WithTrace: 3, WithoutTrace: 4},
	}, StartSites: []analysis.StartSite{
		{Site: analysis.Frame{Function: "main.items", File: "main.go", Line: 85}, Started: 5, Kept: 2, Stale: 3},
	}}})
	m.addBreak(proc, analysis.Break{Kind: analysis.LogWithoutTrace, Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 30}})
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
		{"ctxwatch_breaks_total{", `ctxwatch_break_kind="stale-parent"`, "} 3"},
		{"ctxwatch_breaks_total{", `ctxwatch_break_kind="lost-at-handoff"`, "} 4"},
		{"ctxwatch_spawns_traced_total{", `code_line_number="21"`, "} 10"},
		{"ctxwatch_spawns_propagated_total{", `code_function_name="main.handle"`, "} 8"},
		{"ctxwatch_spawns_lost_total{", `process_pid="42"`, "} 2"},
		{"ctxwatch_breaks_total{", `ctxwatch_break_kind="log-without-trace"`, "} 1"},
		{"ctxwatch_logs_in_trace_total{", `code_line_number="30"`, "} 7"},
		{"ctxwatch_logs_with_trace_total{", `code_line_number="30"`, "} 3"},
		{"ctxwatch_handoffs_handed_total{", `code_line_number="45"`, "} 9"},
		{"ctxwatch_handoffs_propagated_total{", `code_line_number="45"`, "} 2"},
		{"ctxwatch_handoffs_lost_total{", `code_line_number="45"`, "} 5"},
		{"ctxwatch_starts_own_parent_total{", `code_line_number="85"`, "} 5"},
		{"ctxwatch_starts_kept_total{", `code_line_number="85"`, "} 2"},
		{"ctxwatch_starts_stale_total{", `code_line_number="85"`, "} 3"},
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

// TestPrometheusProcess scrapes what the metrics say about the watch of a
// process on a Kubernetes node: the labels that place it (node, pod,
// container) on every series, and the state of the watch (events lost,
// probes sampled under an overhead budget).
func TestPrometheusProcess(t *testing.T) {
	ctx := context.Background()
	m, err := newMetrics(ctx, Config{MetricsAddr: "127.0.0.1:0", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close(ctx)
	proc := findings.Process{PID: 7, Executable: "api", ContainerID: "c0ffee", PodUID: "0000000a-0000-4000-8000-00000000000a", NodeName: "node-3"}
	m.addBreak(proc, analysis.Break{Kind: analysis.NewRoot, Site: analysis.Frame{Function: "main.orphan", File: "main.go", Line: 9}})
	budget := &findings.BudgetStats{Budget: 0.05, Overhead: 0.0125}
	m.update(findings.Summary{Process: proc, EventsLost: 3, SampledFraction: 0.75, Budget: budget,
		Snapshot: analysis.Snapshot{SpawnSites: []analysis.SpawnSite{{Site: analysis.Frame{Function: "main.handle", File: "main.go", Line: 8}, TracedSpawns: 4, Propagated: 4}}}})
	// A second process without a budget reports no overhead series; a
	// process outside any pod carries no Kubernetes label.
	m.update(findings.Summary{Process: findings.Process{PID: 8, Executable: "cli"}, SampledFraction: 1})
	budget.Overhead = 1 // the summary's owner may change it afterwards

	text := scrape(t, m)
	place := `k8s_node_name="node-3"`
	for _, want := range []struct{ metric, value string }{
		{"ctxwatch_breaks_total{", "} 1"},
		{"ctxwatch_spawns_traced_total{", "} 4"},
		{"ctxwatch_events_lost_total{", "} 3"},
		{"ctxwatch_sampled_ratio{", "} 0.75"},
		{"ctxwatch_overhead_estimated_ratio{", "} 0.0125"},
		{"ctxwatch_overhead_budget_ratio{", "} 0.05"},
	} {
		if !hasLine(text, want.metric, want.value, place, `k8s_pod_uid="`+proc.PodUID+`"`, `container_id="c0ffee"`, `process_pid="7"`) {
			t.Errorf("no %s...%s...%s line with the process's pod, container and pid in /metrics:\n%s", want.metric, place, want.value, text)
		}
	}
	if !hasLine(text, "ctxwatch_sampled_ratio{", "} 1", `process_pid="8"`) {
		t.Errorf("no sampled line for pid 8:\n%s", text)
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, `process_pid="8"`) && (strings.HasPrefix(l, "ctxwatch_overhead") || strings.Contains(l, "k8s_")) {
			t.Errorf("pid 8 (no budget, no pod): %s", l)
		}
	}
}

func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	resp, err := http.Get("http://" + m.addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// hasLine reports whether text has a sample line of metric (its name and
// "{") ending in value and holding every label.
func hasLine(text, metric, value string, labels ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, metric) || !strings.HasSuffix(line, value) {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if all {
			return true
		}
	}
	return false
}
