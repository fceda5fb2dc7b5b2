package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prometheusBin is Debian's Prometheus (apt-get install prometheus).
const prometheusBin = "/usr/bin/prometheus"

// dashboardPath is the Grafana dashboard deploy/ ships.
const dashboardPath = "../deploy/grafana/ctxwatch-dashboard.json"

// TestPrometheus runs every query of the Grafana dashboard against a real
// Prometheus scraping a real ctxwatch, as Grafana would send them, and
// checks that each draws something and that what it says agrees with
// ctxwatch's own JSON summary of the same run.
//
// ctxwatch runs in node mode (as the DaemonSet does) over
// testdata/otelunits, placed in a kubelet-shaped pod cgroup, so that the
// series carry the node, pod and container the dashboard's variables
// select by. The target is driven over several scrapes: a counter whose
// whole count came before its first scrape has no rate, and a dashboard
// of rates drawn from such counters would show nothing.
func TestPrometheus(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat(prometheusBin); err != nil {
		t.Fatalf("Prometheus is needed to test the Grafana dashboard and is missing (%v): apt-get install -y prometheus", err)
	}
	dash := readGrafanaDashboard(t)

	const node = "node-prom"
	p := pod{uid: "0000000d-0000-4000-8000-00000000000d", container: strings.Repeat("d", 64)}
	p.dir = mkCgroup(t, cgroup2Root(t), "kubepods.slice", "kubepods-burstable.slice",
		"kubepods-burstable-pod"+strings.ReplaceAll(p.uid, "-", "_")+".slice", "cri-containerd-"+p.container+".scope")
	// A name of this run's own, so that --match leaves every other Go
	// program of the machine alone, other tests' included.
	exe := filepath.Join(t.TempDir(), fmt.Sprintf("promunits-%d", os.Getpid()))
	if err := copyFile(filepath.Join(bin, "otelunits"), exe); err != nil {
		t.Fatal(err)
	}

	ports := freePorts(t, 2)
	metrics := ports[0]
	out := filepath.Join(t.TempDir(), "report.json")
	cw := exec.Command(filepath.Join(bin, "ctxwatch"), "node", "--match", filepath.Base(exe), "--verbose",
		"--output", out, "--metrics-addr", metrics)
	cw.Env = append(os.Environ(), "NODE_NAME="+node)
	stderr := &syncBuffer{}
	cw.Stderr = stderr
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	cwDone := make(chan error, 1)
	go func() { cwDone <- cw.Wait() }()
	t.Cleanup(func() {
		cw.Process.Kill()
		<-cwDone
	})
	waitFor(t, "the node scan", 60*time.Second, func() bool {
		return strings.Contains(stderr.String(), "processes watched after the scan")
	})

	prom := startPrometheus(t, metrics, ports[1])
	waitForOr(t, "Prometheus to scrape ctxwatch", 60*time.Second, func() bool {
		up, _ := prom.target(t)
		return up
	}, prom.log)

	target, stdin, ready := startInPod(t, p, exe, false)
	pid := target.Process.Pid
	waitForOr(t, fmt.Sprintf("pid %d to be watched", pid), 10*time.Second, func() bool {
		return watchedRE(pid).MatchString(stderr.String())
	}, stderr.String)
	select {
	case l := <-ready:
		if l != "ready" {
			t.Fatalf("target said %q, want ready", l)
		}
	case <-time.After(slowed(30 * time.Second)):
		t.Fatal("target not ready")
	}

	// Units spread over some five scrapes and refreshes (ctxwatch updates
	// the spawn counters once a second).
	start := time.Now()
	const units = 12
	for range units {
		fmt.Fprintln(stdin, "go")
		time.Sleep(400 * time.Millisecond)
	}
	stdin.Close()
	if err := target.Wait(); err != nil {
		t.Fatalf("target: %v", err)
	}
	// Its summary is written once its last counts are in the metrics: a
	// scrape that starts after it reads the final counts.
	var sum *promSummary
	waitForOr(t, "the target's summary", 10*time.Second, func() bool {
		sum = readPromSummary(t, out, pid)
		return sum != nil
	}, stderr.String)
	// Scrapes for three seconds more: the range queries' last steps (one
	// a second, up to end) then fall after the first scrape of the final
	// counts.
	final := time.Now().Add(3 * time.Second)
	waitForOr(t, "scrapes after the summary", 30*time.Second, func() bool {
		_, last := prom.target(t)
		return last.After(final)
	}, prom.log)
	end := time.Now()

	vars := map[string]string{
		"node":       node,
		"pod":        p.uid,
		"executable": filepath.Base(exe),
		// Grafana's own: $__rate_interval is at least four scrape
		// intervals; $__range is the whole run.
		"__rate_interval": "10s",
		"__range":         fmt.Sprintf("%ds", int(math.Ceil(end.Sub(start).Seconds()))+5),
	}
	checkDashboardVariables(t, prom, dash, vars)

	// Every target draws something: a range target at least one point,
	// an instant target at least one series with a value.
	results := map[string][]promSeries{} // by "panel title/refId", at end
	n := 0
	for _, pn := range dash.panels() {
		for _, tg := range pn.Targets {
			n++
			what := fmt.Sprintf("panel %q target %s", pn.Title, tg.RefID)
			q := substituteVars(t, what, tg.Expr, vars)
			if tg.Instant {
				if s := prom.query(t, q, end); !promAnyFinite(s) {
					t.Errorf("%s: no series with a value at the end of the run: %s", what, q)
				}
			} else if s := prom.queryRange(t, q, start.Add(-5*time.Second), end, time.Second); !promAnyFinite(s) {
				t.Errorf("%s: nothing to draw over the run: %s", what, q)
			}
			results[pn.Title+"/"+tg.RefID] = prom.query(t, q, end)
		}
	}
	if n == 0 {
		t.Fatal("no query in the dashboard")
	}
	t.Logf("%d queries of the dashboard answered over %v of scrapes", n, end.Sub(start).Round(time.Second))
	result := func(panel, ref string) []promSeries {
		t.Helper()
		r, ok := results[panel+"/"+ref]
		if !ok {
			t.Fatalf("the dashboard has no panel %q with a target %s, which this test checks", panel, ref)
		}
		return r
	}

	// What agrees with the summary directly.
	kinds := map[string]float64{}
	breakSites := map[string]float64{}
	for _, b := range sum.Breaks {
		kinds[b.Kind] += float64(b.Count)
		breakSites[b.Kind+" "+promSiteKey(b.Site.Function, b.Site.File, b.Site.Line)] += float64(b.Count)
	}
	if len(kinds) < 3 {
		t.Errorf("summary has breaks of kinds %v, want lost-at-spawn, new-root and dropped", kinds)
	}
	expectPromValues(t, "breaks by kind", result("Breaks by kind", "A"), kinds, func(l map[string]string) string {
		return l["ctxwatch_break_kind"]
	})
	bySite := func(l map[string]string) string {
		return promSiteKey(l["code_function_name"], l["code_file_path"], l["code_line_number"])
	}
	expectPromValues(t, "breaks by site since watch start", result("Break sites", "B"), breakSites, func(l map[string]string) string {
		return l["ctxwatch_break_kind"] + " " + bySite(l)
	})
	traced, propagated, lost, retention := map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, s := range sum.SpawnSites {
		k := promSiteKey(s.Site.Function, s.Site.File, s.Site.Line)
		traced[k], propagated[k], lost[k] = float64(s.TracedSpawns), float64(s.Propagated), float64(s.Lost+s.NewRoot)
		retention[k] = math.NaN() // null: none judged
		if s.Retention != nil {
			retention[k] = *s.Retention
		}
	}
	if len(traced) < 2 {
		t.Errorf("summary has spawn sites %v, want two", traced)
	}
	expectPromValues(t, "traced spawns per site", result("Spawn sites", "A"), traced, bySite)
	expectPromValues(t, "propagated per site", result("Spawn sites", "B"), propagated, bySite)
	expectPromValues(t, "lost per site", result("Spawn sites", "C"), lost, bySite)
	expectPromValues(t, "retention per site", result("Spawn sites", "D"), retention, bySite)
	lostProcs := 0.0
	if sum.EventsLost > 0 {
		lostProcs = 1
	}
	expectPromValues(t, "processes with events lost", result("Processes with events lost", "A"), map[string]float64{"": lostProcs}, nil)
	byPID := func(l map[string]string) string { return l["process_pid"] }
	self := strconv.Itoa(pid)
	expectPromValues(t, "sampled fraction", result("Probes attached (sampled fraction)", "A"), map[string]float64{self: sum.Sampled}, byPID)
	if sum.Budget == nil {
		t.Fatal("summary has no budget: node mode has one by default")
	}
	expectPromValues(t, "estimated overhead", result("Probe overhead", "A"), map[string]float64{self: sum.Budget.Overhead}, byPID)
	expectPromValues(t, "overhead budget", result("Probe overhead", "B"), map[string]float64{"": sum.Budget.Budget},
		func(map[string]string) string { return "" })
	expectPromValues(t, "overhead budget used", result("Overhead budget used", "A"),
		map[string]float64{self: sum.Budget.Overhead / sum.Budget.Budget}, byPID)
	// The labels that place the process, on the series the panels show.
	for _, s := range result("Probes attached (sampled fraction)", "A") {
		if s.Metric["k8s_node_name"] != node || s.Metric["k8s_pod_uid"] != p.uid || s.Metric["process_executable_name"] != filepath.Base(exe) {
			t.Errorf("sampled fraction series %v: want node %s, pod %s, executable %s", s.Metric, node, p.uid, filepath.Base(exe))
		}
	}

	// The rates rose while the target worked: the counters grew across
	// scrapes, as a long-running service's do. Not lost-at-spawn: its
	// goroutine made only an incidental check (WithCancel) under an OTel
	// trace, which is judged when the process ends (docs/design.md, "Judge
	// the work"), so its count comes all at once.
	for _, kind := range []string{"new-root", "dropped"} {
		q := substituteVars(t, "breaks per second", `sum by (ctxwatch_break_kind) (rate(ctxwatch_breaks_total{ctxwatch_break_kind="`+kind+`"}[$__rate_interval]))`, vars)
		if m := promMax(prom.queryRange(t, q, start, end, time.Second)); !(m > 0) {
			t.Errorf("%s breaks: rate never above 0 over the run (max %v)", kind, m)
		}
	}
	// Retention over time stays a share, and is drawn for every site
	// whose goroutines were judged.
	retained := prom.queryRange(t, substituteVars(t, "retention", dashboardExpr(t, dash, "Retention per spawn site", "A"), vars), start, end, time.Second)
	drawn := map[string]bool{}
	for _, s := range retained {
		for _, v := range s.Values {
			if math.IsNaN(v) {
				continue
			}
			if v < 0 || v > 1 {
				t.Errorf("retention %v of %v: not a share", v, s.Metric)
			}
			drawn[bySite(s.Metric)] = true
		}
	}
	for k, r := range retention {
		if !math.IsNaN(r) && !drawn[k] {
			t.Errorf("retention of site %s (%v in the summary) never drawn over the run", k, r)
		}
	}

	// Clean stops: ctxwatch summarises and exits 0 on SIGTERM, as on a
	// rollout; Prometheus too.
	cw.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-cwDone:
		cwDone <- err // for the cleanup
		if err != nil {
			t.Errorf("ctxwatch node after SIGTERM: %v\n%s", err, stderr)
		}
	case <-time.After(slowed(30 * time.Second)):
		t.Errorf("ctxwatch did not stop within 30s of SIGTERM:\n%s", stderr)
	}
	if err := prom.stop(); err != nil {
		t.Errorf("Prometheus after SIGTERM: %v\n%s", err, prom.log())
	}
}

// promSummary is the part of a summary line this test compares.
type promSummary struct {
	Type       string       `json:"type"`
	PID        int          `json:"pid"`
	EventsLost uint64       `json:"events_lost"`
	Sampled    float64      `json:"sampled_fraction"`
	SpawnSites []spawnSite  `json:"spawn_sites"`
	Breaks     []breakCount `json:"breaks"`
	Budget     *struct {
		Budget   float64 `json:"overhead_budget"`
		Overhead float64 `json:"estimated_overhead"`
	} `json:"budget"`
}

// readPromSummary returns pid's summary in the JSON lines at path, or nil.
func readPromSummary(t *testing.T, path string, pid int) *promSummary {
	t.Helper()
	data, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.HasSuffix(l, "}") {
			continue // empty, or being written
		}
		var s promSummary
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("report line is not JSON: %v: %s", err, l)
		}
		if s.Type == "summary" && s.PID == pid {
			return &s
		}
	}
	return nil
}

func promSiteKey(function, file string, line any) string {
	return fmt.Sprintf("%s %s:%v", function, file, line)
}

// expectPromValues compares the series of an instant query, keyed by key
// (nil: a single series), with want. NaN matches NaN.
func expectPromValues(t *testing.T, what string, got []promSeries, want map[string]float64, key func(map[string]string) string) {
	t.Helper()
	have := map[string]float64{}
	for _, s := range got {
		k := ""
		if key != nil {
			k = key(s.Metric)
		}
		if _, dup := have[k]; dup {
			t.Errorf("%s: two series for %q", what, k)
		}
		have[k] = s.Value
	}
	same := len(have) == len(want)
	for k, w := range want {
		h, ok := have[k]
		same = same && ok && (h == w || math.IsNaN(h) && math.IsNaN(w) || math.Abs(h-w) <= 1e-12*math.Abs(w))
	}
	if !same {
		t.Errorf("%s: Prometheus says %v, ctxwatch's summary %v", what, have, want)
	}
}

// grafanaDashboard is the part of the dashboard JSON the test queries.
type grafanaDashboard struct {
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"` // of a collapsed row
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
	} `json:"targets"`
}

func readGrafanaDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// panels lists every panel, those of collapsed rows included.
func (d grafanaDashboard) panels() []grafanaPanel {
	var all []grafanaPanel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	return all
}

func dashboardExpr(t *testing.T, d grafanaDashboard, panel, ref string) string {
	t.Helper()
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			if p.Title == panel && tg.RefID == ref {
				return tg.Expr
			}
		}
	}
	t.Fatalf("the dashboard has no panel %q with a target %s, which this test checks", panel, ref)
	return ""
}

var grafanaVarRE = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substituteVars replaces the dashboard's variables as Grafana does before
// it sends a query. The values used here need no regexp escaping.
func substituteVars(t *testing.T, what, q string, vars map[string]string) string {
	t.Helper()
	return grafanaVarRE.ReplaceAllStringFunc(q, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		v, ok := vars[sub[1]+sub[2]]
		if !ok {
			t.Fatalf("%s: no value for variable %s in %s", what, m, q)
		}
		return v
	})
}

// checkDashboardVariables asks Prometheus what Grafana asks to list each query
// variable's values (label_values(SELECTOR, LABEL): the label values API),
// and checks the run's own value is offered.
func checkDashboardVariables(t *testing.T, prom *prometheus, d grafanaDashboard, vars map[string]string) {
	t.Helper()
	lv := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
	n := 0
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		n++
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
		}
		m := lv.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
		}
		sel := substituteVars(t, "variable "+v.Name, m[1], vars)
		var values []string
		prom.get(t, "/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {sel}}, &values)
		if !slices.Contains(values, vars[v.Name]) {
			t.Errorf("variable %s (%s): Prometheus offers %q, want %q among them", v.Name, q, values, vars[v.Name])
		}
	}
	if n == 0 {
		t.Error("the dashboard has no query variable")
	}
}

// prometheus is a Prometheus server of the test's own, scraping one
// ctxwatch every second.
type prometheus struct {
	addr    string
	cmd     *exec.Cmd
	done    chan error
	logFile string
}

func startPrometheus(t *testing.T, metrics, addr string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ctxwatch
    static_configs:
      - targets: [%q]
`, metrics)
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &prometheus{addr: addr, done: make(chan error, 1), logFile: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(prometheusBin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	go func() { p.done <- p.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		if t.Failed() {
			t.Logf("Prometheus's log:\n%s", p.log())
		}
	})
	waitForOr(t, "Prometheus to be ready", 60*time.Second, func() bool {
		select {
		case err := <-p.done:
			t.Fatalf("Prometheus exited at start: %v\n%s", err, p.log())
		default:
		}
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, p.log)
	return p
}

func (p *prometheus) log() string {
	data, _ := os.ReadFile(p.logFile)
	return string(data)
}

// stop ends Prometheus as its service manager would, with SIGTERM.
func (p *prometheus) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(slowed(30 * time.Second)):
		return fmt.Errorf("still running 30s after SIGTERM")
	}
}

// get calls Prometheus's HTTP API and decodes the data of its answer.
func (p *prometheus) get(t *testing.T, path string, args url.Values, data any) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + path + "?" + args.Encode())
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("GET %s %v: %s: %v", path, args, resp.Status, err)
	}
	if r.Status != "success" {
		t.Fatalf("GET %s %v: %s: %s", path, args, resp.Status, r.Error)
	}
	if err := json.Unmarshal(r.Data, data); err != nil {
		t.Fatalf("GET %s %v: %v", path, args, err)
	}
}

// target reports whether the scrape of ctxwatch is up, and when it last
// started.
func (p *prometheus) target(t *testing.T) (bool, time.Time) {
	t.Helper()
	var d struct {
		ActiveTargets []struct {
			Health     string    `json:"health"`
			LastScrape time.Time `json:"lastScrape"`
		} `json:"activeTargets"`
	}
	p.get(t, "/api/v1/targets", url.Values{"state": {"active"}}, &d)
	if len(d.ActiveTargets) != 1 {
		return false, time.Time{}
	}
	return d.ActiveTargets[0].Health == "up", d.ActiveTargets[0].LastScrape
}

// promSeries is one series of a query's result: its value at the time of
// an instant query, its values over a range query.
type promSeries struct {
	Metric map[string]string
	Value  float64
	Values []float64
}

// promSample is a [time, "value"] pair of Prometheus's API.
type promSample [2]any

func (s promSample) value(t *testing.T) float64 {
	t.Helper()
	str, _ := s[1].(string)
	v, err := strconv.ParseFloat(str, 64) // "NaN" and "+Inf" included
	if err != nil {
		t.Fatalf("promSample value %v: %v", s[1], err)
	}
	return v
}

func (p *prometheus) query(t *testing.T, q string, at time.Time) []promSeries {
	t.Helper()
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  promSample        `json:"value"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query", url.Values{"query": {q}, "time": {promTime(at)}}, &d)
	if d.ResultType != "vector" {
		t.Fatalf("query %s: result of type %s, want a vector", q, d.ResultType)
	}
	var out []promSeries
	for _, r := range d.Result {
		out = append(out, promSeries{Metric: r.Metric, Value: r.Value.value(t)})
	}
	return out
}

func (p *prometheus) queryRange(t *testing.T, q string, start, end time.Time, step time.Duration) []promSeries {
	t.Helper()
	var d struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values []promSample      `json:"values"`
		} `json:"result"`
	}
	p.get(t, "/api/v1/query_range", url.Values{"query": {q}, "start": {promTime(start)}, "end": {promTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}, &d)
	var out []promSeries
	for _, r := range d.Result {
		s := promSeries{Metric: r.Metric}
		for _, v := range r.Values {
			s.Values = append(s.Values, v.value(t))
		}
		out = append(out, s)
	}
	return out
}

func promTime(at time.Time) string {
	return strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)
}

// promAnyFinite reports whether any series holds a finite value.
func promAnyFinite(ss []promSeries) bool {
	for _, s := range ss {
		vals := s.Values
		if vals == nil { // of an instant query
			vals = []float64{s.Value}
		}
		for _, v := range vals {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				return true
			}
		}
	}
	return false
}

// promMax is the largest value of a range query's series, NaN if none.
func promMax(ss []promSeries) float64 {
	m := math.NaN()
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsNaN(v) && (math.IsNaN(m) || v > m) {
				m = v
			}
		}
	}
	return m
}
