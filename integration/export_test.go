package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jaegerVersion is the Jaeger v2 that `make jaeger` builds.
const jaegerVersion = "v1.76.0"

// TestExportJaeger runs examples/otelservice, which exports its own spans
// over OTLP, under ctxwatch exporting break spans to the same Jaeger v2
// process, over OTLP/gRPC (flags) and over OTLP/HTTP (variables). From
// what Jaeger's query API returns, as a user would see it:
//   - every orphaned root (the span a /lost goroutine started on
//     Background) is matched by exactly one break span, in the trace of
//     the request that lost it, child of that request's server span, with
//     a link to the orphan's root span;
//   - the traces of /kept requests hold no break span, and there is no
//     other break span at all;
//   - the break spans name the site and the target's own service;
//   - ctxwatch's summary says every span was sent and none dropped.
func TestExportJaeger(t *testing.T) {
	requireRoot(t)
	j := startJaeger(t)
	src, err := filepath.Abs(filepath.Join("..", "examples", "otelservice", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var siteLine, spawnLine int
	for line, m := range sourceMarkers(t, src) {
		switch m {
		case marker{"site", "new-root"}:
			siteLine = line
		case marker{"spawn", "new-root"}:
			spawnLine = line
		}
	}
	for _, c := range []struct {
		name, proto, endpoint string
		viaEnv                bool
	}{
		{"grpc", "grpc", j.grpc, false},
		{"http", "http/protobuf", j.http, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			service := fmt.Sprintf("otelservice-%s-%d", c.name, time.Now().UnixNano())
			// The service's name is only in the target's environment:
			// ctxwatch must read it from there.
			target := []string{"env", "OTEL_SERVICE_NAME=" + service,
				"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + c.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=" + c.proto,
				filepath.Join(bin, "otelservice")}
			// Jaeger takes traces only; a high rate so that every
			// occurrence is a span (the limit is unit-tested).
			env := []string{"OTEL_METRICS_EXPORTER=none"}
			args := []string{"--otlp-rate", "1000"}
			if c.viaEnv {
				env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+c.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL="+c.proto)
			} else {
				args = append(args, "--otlp-endpoint", "http://"+c.endpoint, "--otlp-protocol", c.proto)
			}
			start := time.Now()
			r := ctxwatchWithEnv(t, env, append(args, append([]string{"--"}, target...)...)...)
			if r.code != 0 {
				t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
			}
			t.Logf("ctxwatch and the service ran %v", time.Since(start).Round(time.Millisecond))
			reqs := serviceRequests(t, r.stdout)
			var lost []serviceRequest
			for _, q := range reqs {
				if q.Path == "/lost" {
					lost = append(lost, q)
				}
			}
			if len(reqs) != 16 || len(lost) != 8 {
				t.Fatalf("service made %d requests, %d /lost; want 16 and 8:\n%s", len(reqs), len(lost), r.stdout)
			}
			if r.export == nil || r.export.Sent != uint64(len(lost)) || r.export.Dropped != 0 {
				t.Fatalf("summary export %+v, want %d sent, 0 dropped; stderr:\n%s", r.export, len(lost), r.stderr)
			}

			// Jaeger batches before storing: wait until the service's
			// own spans and ctxwatch's are all queryable.
			var traces map[string]jaegerTrace
			waitFor(t, "Jaeger to store every trace", 30*time.Second, func() bool {
				traces = j.traces(t, service)
				breaks := 0
				for _, q := range reqs {
					tr, ok := traces[q.TraceID]
					if !ok || tr.span(q.ServerSpan) == nil || traces[q.WorkTrace].span(q.WorkSpan) == nil {
						return false
					}
					breaks += len(tr.named("trace break: new-root"))
				}
				return breaks >= len(lost)
			})

			// Every orphaned root in Jaeger has exactly one break span
			// linking to it, inside the request's trace, under its
			// server span.
			serverOf := map[string]serviceRequest{}
			for _, q := range reqs {
				serverOf[q.TraceID] = q
			}
			orphans, breakSpans := 0, 0
			for _, tr := range traces {
				for _, s := range tr.Spans {
					if strings.HasPrefix(s.OperationName, "trace break:") {
						breakSpans++
					}
				}
				for _, s := range tr.named("orphan") {
					if s.ref("CHILD_OF") != nil {
						t.Errorf("orphan span %s has a parent: not an orphaned root", s.SpanID)
						continue
					}
					orphans++
					var matches []string
					for _, other := range traces {
						for _, b := range other.named("trace break: new-root") {
							if l := b.ref("FOLLOWS_FROM"); l != nil && normID(l.TraceID) == s.TraceID && l.SpanID == s.SpanID {
								matches = append(matches, other.TraceID)
								q, ok := serverOf[other.TraceID]
								if !ok {
									t.Errorf("break span %s is in trace %s, which no request had", b.SpanID, other.TraceID)
									continue
								}
								if p := b.ref("CHILD_OF"); p == nil || p.SpanID != q.ServerSpan {
									t.Errorf("break span %s: parent %+v, want the server span %s", b.SpanID, p, q.ServerSpan)
								}
								if q.Path != "/lost" || q.WorkTrace != s.TraceID {
									t.Errorf("break span %s for orphan %s is in the trace of %+v", b.SpanID, s.TraceID, q)
								}
								checkBreakSpan(t, other, b, service, r.pid, src, siteLine, spawnLine)
							}
						}
					}
					if len(matches) != 1 {
						t.Errorf("orphaned root %s (trace %s): %d break spans link to it, want 1", s.SpanID, s.TraceID, len(matches))
					}
				}
			}
			if orphans != len(lost) {
				t.Errorf("Jaeger holds %d orphaned roots, want one per /lost request: %d", orphans, len(lost))
			}
			if breakSpans != len(lost) {
				t.Errorf("Jaeger holds %d break spans, want %d (one per lost goroutine)", breakSpans, len(lost))
			}
			for _, q := range reqs {
				if q.Path != "/kept" {
					continue
				}
				tr := traces[q.TraceID]
				if s := tr.span(q.WorkSpan); s == nil || s.ref("CHILD_OF") == nil || s.ref("CHILD_OF").SpanID != q.ServerSpan {
					t.Errorf("kept request %s: its goroutine's span is not a child of the server span", q.TraceID)
				}
				for _, s := range tr.Spans {
					if strings.HasPrefix(s.OperationName, "trace break:") {
						t.Errorf("kept request %s (traceparent %v): break span %s %q", q.TraceID, q.Traceparent, s.SpanID, s.OperationName)
					}
				}
			}
		})
	}
}

// checkBreakSpan checks what a user reads on a break span in Jaeger.
func checkBreakSpan(t *testing.T, tr jaegerTrace, b *jaegerSpan, service string, pid int, src string, siteLine, spawnLine int) {
	t.Helper()
	p := tr.Processes[b.ProcessID]
	if p.ServiceName != service {
		t.Errorf("break span %s: service %q, want the target's OTEL_SERVICE_NAME %q", b.SpanID, p.ServiceName, service)
	}
	if got := fmt.Sprint(p.tag("process.pid")); got != fmt.Sprint(pid) {
		t.Errorf("break span %s: process.pid %s, want %d", b.SpanID, got, pid)
	}
	if v, _ := p.tag("process.runtime.version").(string); !strings.HasPrefix(v, "go1.") {
		t.Errorf("break span %s: process.runtime.version %q", b.SpanID, v)
	}
	for k, want := range map[string]string{
		"ctxwatch.break.kind": "new-root",
		"code.function.name":  "main.orphan",
		"code.file.path":      src,
		"code.line.number":    fmt.Sprint(siteLine),
		"ctxwatch.spawn.line": fmt.Sprint(spawnLine),
		"ctxwatch.spawn.file": src,
	} {
		if got := fmt.Sprint(b.tag(k)); got != want {
			t.Errorf("break span %s: %s = %s, want %s", b.SpanID, k, got, want)
		}
	}
	if b.Duration <= 0 {
		t.Errorf("break span %s: duration %dµs, want spawn to break > 0", b.SpanID, b.Duration)
	}
}

type serviceRequest struct {
	Path        string `json:"path"`
	Traceparent bool   `json:"traceparent"`
	TraceID     string `json:"trace_id"`
	ServerSpan  string `json:"server_span"`
	WorkTrace   string `json:"work_trace"`
	WorkSpan    string `json:"work_span"`
}

func serviceRequests(t *testing.T, out string) []serviceRequest {
	t.Helper()
	var reqs []serviceRequest
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var q serviceRequest
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("service output line is not JSON: %v: %s", err, sc.Text())
		}
		reqs = append(reqs, q)
	}
	return reqs
}

type exportStats struct {
	Sent    uint64 `json:"spans_sent"`
	Dropped uint64 `json:"spans_dropped"`
}

type exportResult struct {
	code           int
	pid            int
	stdout, stderr string
	export         *exportStats
	report         string // the JSON lines file
}

// ctxwatchWithEnv runs ctxwatch with extra environment variables and
// reads its one summary.
func ctxwatchWithEnv(t *testing.T, env []string, args ...string) exportResult {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(filepath.Join(bin, "ctxwatch"), append([]string{"--format", "json", "--output", out}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := exportResult{stdout: stdout.String(), stderr: stderr.String(), report: out}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ctxwatch: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("read report: %v; stderr:\n%s", err, r.stderr)
	}
	n := 0
	for _, l := range bytes.Split(data, []byte("\n")) {
		var s struct {
			Type   string       `json:"type"`
			PID    int          `json:"pid"`
			Export *exportStats `json:"export"`
		}
		if json.Unmarshal(l, &s) == nil && s.Type == "summary" {
			n++
			r.pid, r.export = s.PID, s.Export
		}
	}
	if n != 1 {
		t.Fatalf("want 1 summary, got %d; stderr:\n%s", n, r.stderr)
	}
	return r
}

// jaeger is a Jaeger v2 process of the test's own, on free loopback ports.
type jaeger struct {
	grpc, http, query string // host:port
}

func jaegerPath() string {
	cache := os.Getenv("CTXWATCH_CACHE")
	if cache == "" {
		cache = "/var/cache/ctxwatch"
	}
	return filepath.Join(cache, "jaeger-"+jaegerVersion, "jaeger")
}

// startJaeger runs Jaeger's all-in-one pipeline (OTLP receivers, memory
// storage, query API) bound to 127.0.0.1, with nothing else listening.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	path := jaegerPath()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("Jaeger %s is needed to test the export and is missing (%v): run `make jaeger` (it builds it once into $CTXWATCH_CACHE, default /var/cache/ctxwatch)", jaegerVersion, err)
	}
	ports := freePorts(t, 4)
	j := &jaeger{grpc: ports[0], http: ports[1], query: ports[2]}
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
      http:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, j.query, ports[3], j.grpc, j.http)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Jaeger: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logf.Name())
			t.Logf("Jaeger's log:\n%s", log)
		}
	})
	up := func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("Jaeger exited at start:\n%s", log)
		default:
		}
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		for _, a := range []string{j.grpc, j.http} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false
			}
			c.Close()
		}
		return resp.StatusCode == http.StatusOK
	}
	waitFor(t, "Jaeger to listen", 60*time.Second, up)
	return j
}

// freePorts returns n loopback addresses free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// The JSON of Jaeger's query API (/api/traces), as its UI reads it.
type jaegerTrace struct {
	TraceID   string                   `json:"traceID"`
	Spans     []jaegerSpan             `json:"spans"`
	Processes map[string]jaegerProcess `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	Duration      int64       `json:"duration"` // µs
	Tags          []jaegerTag `json:"tags"`
	ProcessID     string      `json:"processID"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

type jaegerProcess struct {
	ServiceName string      `json:"serviceName"`
	Tags        []jaegerTag `json:"tags"`
}

func tagOf(tags []jaegerTag, key string) any {
	for _, g := range tags {
		if g.Key == key {
			return g.Value
		}
	}
	return nil
}

func (p jaegerProcess) tag(key string) any { return tagOf(p.Tags, key) }
func (s *jaegerSpan) tag(key string) any   { return tagOf(s.Tags, key) }

func (s *jaegerSpan) ref(kind string) *jaegerRef {
	for i := range s.References {
		if s.References[i].RefType == kind {
			return &s.References[i]
		}
	}
	return nil
}

func (tr jaegerTrace) span(id string) *jaegerSpan {
	for i := range tr.Spans {
		if tr.Spans[i].SpanID == id {
			return &tr.Spans[i]
		}
	}
	return nil
}

func (tr jaegerTrace) named(name string) []*jaegerSpan {
	var out []*jaegerSpan
	for i := range tr.Spans {
		if tr.Spans[i].OperationName == name {
			out = append(out, &tr.Spans[i])
		}
	}
	return out
}

// normID pads a trace id that Jaeger printed without its leading zeros.
func normID(id string) string {
	if len(id) < 32 {
		return strings.Repeat("0", 32-len(id)) + id
	}
	return id
}

// traces returns the traces Jaeger holds for service, by trace id.
func (j *jaeger) traces(t *testing.T, service string) map[string]jaegerTrace {
	t.Helper()
	resp, err := http.Get("http://" + j.query + "/api/traces?limit=10000&lookback=1h&service=" + service)
	if err != nil {
		t.Fatalf("query Jaeger: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode Jaeger's traces: %v", err)
	}
	out := map[string]jaegerTrace{}
	for _, tr := range body.Data {
		tr.TraceID = normID(tr.TraceID)
		for i := range tr.Spans {
			tr.Spans[i].TraceID = normID(tr.Spans[i].TraceID)
		}
		out[tr.TraceID] = tr
	}
	return out
}

// TestExportStaleParent: each stale-parent break of examples/staleparent
// is a break span in Jaeger, in the trace that broke, child of the ended
// parent span (the JSON line's parent_span_id), linking the span started
// on it (span_id), named at the Start line with the stack from there up;
// the first occurrence of each, printed as a JSON line, is found by its
// ids. The example exports none of its own spans: the ids tie them.
func TestExportStaleParent(t *testing.T) {
	requireRoot(t)
	j := startJaeger(t)
	src, err := filepath.Abs(filepath.Join("..", "examples", "staleparent", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	sites := map[int]bool{}
	for line, m := range sourceMarkers(t, src) {
		if m == (marker{"site", "stale-parent"}) {
			sites[line] = true
		}
	}
	service := fmt.Sprintf("staleparent-%d", time.Now().UnixNano())
	r := ctxwatchWithEnv(t, []string{"OTEL_METRICS_EXPORTER=none"}, "--otlp-rate", "1000",
		"--otlp-endpoint", "http://"+j.grpc, "--otlp-protocol", "grpc",
		"--", "env", "OTEL_SERVICE_NAME="+service, filepath.Join(bin, "staleparent"))
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	want, ok := selfCount(r.stdout, "stale-parent")
	if !ok || want == 0 {
		t.Fatalf("the program's count is not in its output: %q", r.stdout)
	}
	if r.export == nil || r.export.Sent != want || r.export.Dropped != 0 {
		t.Fatalf("summary export %+v, want %d sent, 0 dropped; stderr:\n%s", r.export, want, r.stderr)
	}
	var spans []*jaegerSpan
	var traces map[string]jaegerTrace
	waitFor(t, "Jaeger to store every break span", 30*time.Second, func() bool {
		traces = j.traces(t, service)
		spans = nil
		for _, tr := range traces {
			spans = append(spans, tr.named("trace break: stale-parent")...)
		}
		return uint64(len(spans)) >= want
	})
	if uint64(len(spans)) != want {
		t.Errorf("Jaeger holds %d stale-parent break spans, want %d", len(spans), want)
	}
	for _, s := range spans {
		parent, link := s.ref("CHILD_OF"), s.ref("FOLLOWS_FROM")
		if parent == nil || link == nil || normID(parent.TraceID) != s.TraceID || normID(link.TraceID) != s.TraceID || parent.SpanID == link.SpanID {
			t.Errorf("break span %s: parent %+v, link %+v: want the ended parent and the new span, in its trace %s", s.SpanID, parent, link, s.TraceID)
		}
		line, _ := strconv.Atoi(fmt.Sprint(s.tag("code.line.number")))
		if !sites[line] || fmt.Sprint(s.tag("code.file.path")) != src || fmt.Sprint(s.tag("ctxwatch.break.kind")) != "stale-parent" {
			t.Errorf("break span %s: at %v:%v, kind %v; want a marked stale-parent line of %s", s.SpanID,
				s.tag("code.file.path"), s.tag("code.line.number"), s.tag("ctxwatch.break.kind"), src)
		}
		if st := fmt.Sprint(s.tag("ctxwatch.stack")); !strings.Contains(st, fmt.Sprintf("main.go:%d", line)) || !strings.Contains(st, "main.handle") {
			t.Errorf("break span %s: ctxwatch.stack %s, want the Start line and main.handle", s.SpanID, st)
		}
	}
	lines, _ := readReport(t, r.report)
	if len(lines) != len(sites) {
		t.Fatalf("%d break lines, want %d", len(lines), len(sites))
	}
	for _, b := range lines {
		found := false
		for _, s := range spans {
			parent, link := s.ref("CHILD_OF"), s.ref("FOLLOWS_FROM")
			found = found || s.TraceID == b.TraceID && parent != nil && link != nil &&
				strings.TrimLeft(parent.SpanID, "0") == strings.TrimLeft(b.ParentSpanID, "0") &&
				strings.TrimLeft(link.SpanID, "0") == strings.TrimLeft(b.SpanID, "0")
		}
		if !found {
			t.Errorf("break line at %d (trace %s, parent %s, span %s): no such break span in Jaeger", b.Site.Line, b.TraceID, b.ParentSpanID, b.SpanID)
		}
	}
}

// waitBreakSpans waits until Jaeger holds service's traces: one server span
// ("work") per request and want break spans of kind, and fails the test
// when it holds other counts. It returns the traces.
func waitBreakSpans(t *testing.T, j *jaeger, service, kind string, requests, want int, stderr string) map[string]jaegerTrace {
	t.Helper()
	var traces map[string]jaegerTrace
	count := func() (servers, breaks int) {
		for _, tr := range traces {
			servers += len(tr.named("work"))
			breaks += len(tr.named("trace break: " + kind))
		}
		return
	}
	waitForOr(t, "Jaeger to store every trace", 30*time.Second, func() bool {
		traces = j.traces(t, service)
		servers, breaks := count()
		return servers >= requests && breaks >= want
	}, func() string {
		servers, breaks := count()
		return fmt.Sprintf("%d traces, %d server spans, %d break spans; stderr:\n%s", len(traces), servers, breaks, stderr)
	})
	if servers, breaks := count(); servers != requests || breaks != want {
		t.Errorf("Jaeger holds %d server spans and %d break spans, want %d and %d", servers, breaks, requests, want)
	}
	return traces
}
