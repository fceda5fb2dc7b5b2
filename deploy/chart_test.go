package deploy

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

const (
	chartDir         = "helm/ctxwatch"
	releaseName      = "ctxwatch"
	releaseNamespace = "observability"
)

// renderChart renders the chart as helm install would, with vals over the
// chart's values.yaml, and returns the manifests (NOTES.txt left out)
// joined into one YAML stream. Values are checked against
// values.schema.json, and the engine is strict: a template that reads a
// value the chart does not define is an error.
func renderChart(vals map[string]any) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	top, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name:      releaseName,
		Namespace: releaseNamespace,
		Revision:  1,
		IsInstall: true,
	}, nil)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, top)
	if err != nil {
		return "", fmt.Errorf("render: %w", err)
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, files[name])
	}
	return b.String(), nil
}

func renderManifest(t *testing.T, vals map[string]any) manifest {
	t.Helper()
	out, err := renderChart(vals)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest([]byte(out))
	if err != nil {
		t.Fatalf("decode the rendered chart: %v\n%s", err, out)
	}
	return m
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func parseValues(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChartDefault renders the chart with its default values and checks
// that it keeps every rule, sets the defaults, and deploys the very pod of
// daemonset.yaml: helm install and kubectl apply run the same agent.
func TestChartDefault(t *testing.T) {
	m := renderManifest(t, nil)
	if p := agentProblems(m); len(p) > 0 {
		reportProblems(t, "chart", p)
		return
	}
	want := defaults
	want.namespace = releaseNamespace
	reportProblems(t, "chart", configProblems(m, want))

	plain := readManifest(t, "daemonset.yaml")
	if got, want := m.serviceAccounts[0].AutomountServiceAccountToken, plain.serviceAccounts[0].AutomountServiceAccountToken; !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceAccount automountServiceAccountToken: chart %v, daemonset.yaml %v", got, want)
	}
	ds, plainDS := m.daemonSets[0], plain.daemonSets[0]
	if ds.Name != plainDS.Name || m.serviceAccounts[0].Name != plain.serviceAccounts[0].Name {
		t.Errorf("names: chart %s and %s, daemonset.yaml %s and %s", ds.Name, m.serviceAccounts[0].Name, plainDS.Name, plain.serviceAccounts[0].Name)
	}
	// Object labels differ (helm adds its own); the selector, the update
	// strategy and the pod template, labels included, must not.
	for _, d := range []struct {
		what        string
		chart, yaml any
	}{
		{"selector", ds.Spec.Selector, plainDS.Spec.Selector},
		{"updateStrategy", ds.Spec.UpdateStrategy, plainDS.Spec.UpdateStrategy},
		{"pod template", ds.Spec.Template, plainDS.Spec.Template},
	} {
		if !equality.Semantic.DeepEqual(d.chart, d.yaml) {
			t.Errorf("%s differs between the chart and daemonset.yaml:\n%s", d.what, lineDiff(t, d.chart, d.yaml))
		}
	}
}

// lineDiff shows the lines of a's YAML that b's lacks (-) and the reverse (+).
func lineDiff(t *testing.T, a, b any) string {
	t.Helper()
	ya, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	yb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	la, lb := strings.Split(string(ya), "\n"), strings.Split(string(yb), "\n")
	var d strings.Builder
	for _, l := range la {
		if !slices.Contains(lb, l) {
			fmt.Fprintf(&d, "- chart:        %s\n", l)
		}
	}
	for _, l := range lb {
		if !slices.Contains(la, l) {
			fmt.Fprintf(&d, "+ daemonset.yaml: %s\n", l)
		}
	}
	return d.String()
}

// TestChartAllValues renders the chart with testdata/all-values.yaml, which
// sets every value of values.yaml to something else, and checks that each
// reaches the objects while the rules still hold.
func TestChartAllValues(t *testing.T) {
	vals := readValues(t, "testdata/all-values.yaml")
	defaults := readValues(t, chartDir+"/values.yaml")
	for _, path := range leafPaths(defaults, "") {
		got, ok := lookup(vals, path)
		if !ok {
			t.Errorf("testdata/all-values.yaml does not set %s", path)
			continue
		}
		def, _ := lookup(defaults, path)
		if reflect.DeepEqual(got, def) {
			t.Errorf("testdata/all-values.yaml sets %s to its default %v: it proves nothing", path, def)
		}
	}

	m := renderManifest(t, vals)
	if p := agentProblems(m); len(p) > 0 {
		reportProblems(t, "chart with all values", p)
		return
	}
	reportProblems(t, "chart with all values", configProblems(m, config{
		namespace:  releaseNamespace,
		image:      "registry.example.com/obs/ctxwatch:v0.1.0",
		pullPolicy: corev1.PullAlways,
		args: []string{
			"node",
			"--metrics-addr=:9555",
			"--max-procs=16",
			"--overhead-budget=2.5",
			"--match=api-*",
			"--match=checkout",
			"--exclude=kubelet",
			"--trace-key=type=example.com/shop/trace.key",
			"--trace-key=string=trace_id",
			"--user-code=example.com/shop/",
			"--check-func=main.process",
		},
		otlp: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		},
		// scrapeAnnotations is false: only podAnnotations.
		annotations: map[string]string{"example.com/team": "observability"},
		// The os and arch are always there.
		nodeSelector: map[string]string{"example.com/pool": "apps", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
		tolerations: []corev1.Toleration{{
			Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "apps", Effect: corev1.TaintEffectNoSchedule,
		}},
		requests: map[corev1.ResourceName]string{corev1.ResourceCPU: "100m", corev1.ResourceMemory: "128Mi"},
		limits:   map[corev1.ResourceName]string{corev1.ResourceCPU: "1", corev1.ResourceMemory: "512Mi"},
	}))
}

// freeForm values are maps whose keys are the user's (annotations, labels,
// resource names): a leaf as a whole.
var freeForm = map[string]bool{"podAnnotations": true, "resources": true, "nodeSelector": true}

func leafPaths(v map[string]any, prefix string) []string {
	var paths []string
	for k, x := range v {
		path := prefix + k
		if sub, ok := x.(map[string]any); ok && !freeForm[path] {
			paths = append(paths, leafPaths(sub, path+".")...)
			continue
		}
		paths = append(paths, path)
	}
	slices.Sort(paths)
	return paths
}

func lookup(v map[string]any, path string) (any, bool) {
	var x any = v
	for k := range strings.SplitSeq(path, ".") {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, false
		}
		if x, ok = m[k]; !ok {
			return nil, false
		}
	}
	return x, true
}

// TestChartWithoutOTLP: an empty endpoint sends nothing, so neither OTLP
// variable is set (ctxwatch exports when either is).
func TestChartWithoutOTLP(t *testing.T) {
	m := renderManifest(t, parseValues(t, "otlp:\n  endpoint: \"\"\n"))
	if p := agentProblems(m); len(p) > 0 {
		reportProblems(t, "chart without OTLP", p)
		return
	}
	want := defaults
	want.namespace = releaseNamespace
	want.otlp = map[string]string{}
	reportProblems(t, "chart without OTLP", configProblems(m, want))
}

// TestChartRejectsBadValues: a misspelt or mistyped value fails the install
// (values.schema.json) instead of being ignored.
func TestChartRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"misspelt key", "maxProc: 3\n", "maxProc"},
		{"misspelt nested key", "otlp:\n  endpont: http://x:4318\n", "endpont"},
		{"string for a number", "maxProcs: many\n", "maxProcs"},
		{"budget over 100", "overheadBudget: 150\n", "overheadBudget"},
		{"unknown protocol", "otlp:\n  protocol: http/json\n", "protocol"},
		{"trace key without its form", "traceKeys: [main.traceKey]\n", "traceKeys"},
		{"port out of range", "metrics:\n  port: 70000\n", "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(parseValues(t, tc.values))
			if err == nil {
				t.Fatalf("rendered with %q", tc.values)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %s: %v", tc.want, err)
			}
		})
	}
}

// TestChartNotes: the text helm prints after an install renders, and names
// the command that shows the breaks.
func TestChartNotes(t *testing.T) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := chartutil.ToRenderValues(chrt, nil, chartutil.ReleaseOptions{Name: releaseName, Namespace: releaseNamespace, IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Engine{Strict: true}.Render(chrt, top)
	if err != nil {
		t.Fatal(err)
	}
	notes := files["ctxwatch/templates/NOTES.txt"]
	if want := "kubectl logs -n observability ds/ctxwatch"; !strings.Contains(notes, want) {
		t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
	}
}
