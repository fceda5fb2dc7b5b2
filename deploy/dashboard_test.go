package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardFile = "grafana/ctxwatch-dashboard.json"

// exported is every series ctxwatch serves on --metrics-addr, with the
// labels it may carry (internal/export/metrics.go, as the OTel Prometheus
// exporter names them), plus those Prometheus adds. A name the dashboard
// uses and ctxwatch does not serve would draw nothing; the integration
// test (integration/prometheus_test.go) checks the same queries against a
// real Prometheus scraping a real ctxwatch.
var exported = func() map[string][]string {
	process := []string{"process_pid", "process_executable_name", "container_id", "k8s_pod_uid", "k8s_node_name",
		"otel_scope_name", "otel_scope_version", "otel_scope_schema_url", "job", "instance"}
	site := append([]string{"code_function_name", "code_file_path", "code_line_number"}, process...)
	return map[string][]string{
		"ctxwatch_breaks_total":             append([]string{"ctxwatch_break_kind"}, site...),
		"ctxwatch_spawns_traced_total":      site,
		"ctxwatch_spawns_propagated_total":  site,
		"ctxwatch_spawns_lost_total":        site,
		"ctxwatch_events_lost_total":        process,
		"ctxwatch_sampled_ratio":            process,
		"ctxwatch_overhead_estimated_ratio": process,
		"ctxwatch_overhead_budget_ratio":    process,
	}
}()

// grafanaBuiltins are the variables Grafana itself sets in a query, with a
// value to parse them with.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "1h",
}

// varRE matches $name and ${name} (and ${name:format}) in a query.
var varRE = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// dashboardModel is the part of the dashboard JSON the checks walk.
type dashboardModel struct {
	SchemaVersion int          `json:"schemaVersion"`
	Panels        []panelModel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
			AllValue   string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type panelModel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) ([]byte, dashboardModel) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardModel
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return data, d
}

// TestDashboardSchema decodes the dashboard strictly into the types of
// Grafana's dashboard schema (its foundation SDK, with the panel and
// Prometheus query types): a field Grafana does not know, misspelt or of
// the wrong type, fails here rather than being ignored at import.
func TestDashboardSchema(t *testing.T) {
	data, d := readDashboard(t)
	plugins.RegisterDefaultPlugins()
	var strict dashboard.Dashboard
	err := strict.UnmarshalJSONStrict(data)
	// The SDK returns its list of errors as an error even when empty.
	if errs := (cog.BuildErrors)(nil); errors.As(err, &errs) && len(errs) == 0 {
		err = nil
	}
	if err != nil {
		t.Fatalf("%s does not decode strictly as a Grafana dashboard: %v", dashboardFile, err)
	}
	// 36 made data sources references ({type, uid}), which the panels use.
	if d.SchemaVersion < 36 || d.SchemaVersion > 42 {
		t.Errorf("schemaVersion %d, want 36 to 42", d.SchemaVersion)
	}
}

// TestDashboard checks what the schema cannot: every panel asks the
// Prometheus the user picks, every query parses as PromQL and names only
// series and labels ctxwatch serves, every variable used is defined, and
// no two panels overlap.
func TestDashboard(t *testing.T) {
	_, d := readDashboard(t)
	vars := map[string]bool{}
	dsVar := ""
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil || q != "prometheus" {
				t.Errorf("data source variable %s: query %s, want \"prometheus\"", v.Name, v.Query)
			}
			dsVar = v.Name
		case "query":
			var q string
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Errorf("variable %s: query %s is not a string: %v", v.Name, v.Query, err)
				continue
			}
			checkLabelValues(t, v.Name, q, vars)
			// Series without the label (a process outside Kubernetes
			// has no k8s_node_name) must match "All": ".*" matches
			// the empty value, ".+" or Grafana's own list would not.
			if v.AllValue != ".*" {
				t.Errorf("variable %s: allValue %q, want \".*\"", v.Name, v.AllValue)
			}
			if v.Datasource == nil || v.Datasource.UID != "${"+dsVar+"}" {
				t.Errorf("variable %s: datasource %+v, want the data source variable", v.Name, v.Datasource)
			}
		}
		vars[v.Name] = true // after its own query: a variable may use only those before it
	}
	if dsVar == "" {
		t.Fatal("no data source variable")
	}
	want := datasourceRef{Type: "prometheus", UID: "${" + dsVar + "}"}

	p := parser.NewParser(parser.Options{})
	exprs := 0
	var placed []panelModel
	for _, pn := range d.Panels {
		for _, other := range placed {
			if overlap(pn, other) {
				t.Errorf("panels %q and %q overlap: %+v, %+v", pn.Title, other.Title, pn.GridPos, other.GridPos)
			}
		}
		placed = append(placed, pn)
		if g := pn.GridPos; g.X < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", pn.Title, g)
		}
		if pn.Type == "row" {
			continue
		}
		if pn.Title == "" {
			t.Errorf("panel %d has no title", pn.ID)
		}
		if pn.Datasource == nil || *pn.Datasource != want {
			t.Errorf("panel %q: datasource %+v, want %+v", pn.Title, pn.Datasource, want)
		}
		if len(pn.Targets) == 0 {
			t.Errorf("panel %q has no target", pn.Title)
		}
		refs := map[string]bool{}
		for _, tg := range pn.Targets {
			what := fmt.Sprintf("panel %q target %s", pn.Title, tg.RefID)
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId empty or repeated", what)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || *tg.Datasource != want {
				t.Errorf("%s: datasource %+v, want %+v", what, tg.Datasource, want)
			}
			checkExpr(t, p, what, tg.Expr, vars)
			exprs++
		}
	}
	if exprs == 0 {
		t.Fatal("no query in the dashboard")
	}
}

// substitute replaces Grafana's variables in q as Grafana would before
// sending it: the built-ins by a duration, the dashboard's own by ".*"
// (they are only ever used in regular-expression matchers). It reports
// the names it does not know.
func substitute(q string, vars map[string]bool) (string, []string) {
	var unknown []string
	out := varRE.ReplaceAllStringFunc(q, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if !vars[name] {
			unknown = append(unknown, name)
		}
		return ".*"
	})
	return out, unknown
}

func checkExpr(t *testing.T, p parser.Parser, what, expr string, vars map[string]bool) {
	t.Helper()
	q, unknown := substitute(expr, vars)
	if len(unknown) > 0 {
		t.Errorf("%s: undefined variables %v in %s", what, unknown, expr)
	}
	e, err := p.ParseExpr(q)
	if err != nil {
		t.Errorf("%s: %v\n%s", what, err, q)
		return
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			known, ok := exported[n.Name]
			if !ok {
				t.Errorf("%s: ctxwatch serves no series %q", what, n.Name)
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !slices.Contains(known, m.Name) {
					t.Errorf("%s: %s has no label %q", what, n.Name, m.Name)
				}
			}
		case *parser.AggregateExpr:
			// Grouping labels are checked against every series
			// ctxwatch serves; the selectors below check the pairing.
			for _, l := range n.Grouping {
				if !anyHasLabel(l) {
					t.Errorf("%s: no ctxwatch series has the label %q it groups by", what, l)
				}
			}
		}
		return nil
	})
}

// checkLabelValues checks a variable's label_values(SELECTOR, LABEL) query.
func checkLabelValues(t *testing.T, name, q string, vars map[string]bool) {
	t.Helper()
	inner, ok := strings.CutPrefix(q, "label_values(")
	inner, ok2 := strings.CutSuffix(inner, ")")
	i := strings.LastIndex(inner, ",")
	if !ok || !ok2 || i < 0 {
		t.Errorf("variable %s: query %q, want label_values(SELECTOR, LABEL)", name, q)
		return
	}
	sel, label := strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:])
	s, unknown := substitute(sel, vars)
	if len(unknown) > 0 {
		t.Errorf("variable %s: undefined variables %v (a variable may use only those before it)", name, unknown)
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
	if err != nil {
		t.Errorf("variable %s: selector %q: %v", name, sel, err)
		return
	}
	metric := ""
	for _, m := range ms {
		if m.Name == labels.MetricName {
			metric = m.Value
		}
	}
	if !slices.Contains(exported[metric], label) {
		t.Errorf("variable %s: %q has no label %q", name, metric, label)
	}
}

func anyHasLabel(l string) bool {
	for _, ls := range exported {
		if slices.Contains(ls, l) {
			return true
		}
	}
	return false
}

func overlap(a, b panelModel) bool {
	g, h := a.GridPos, b.GridPos
	return g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H
}
