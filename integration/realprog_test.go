//go:build realprograms

package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real programs: OpenTelemetry-instrumented Go services that this team did
// not write, built from the Go module proxy at pinned versions, driven with
// real requests, exporting their own spans and ctxwatch's break spans to a
// real Jaeger. Jaeger is the referee, both ways:
//   - every trace that split off a request (a root span of the service that
//     is no entry point: not a SERVER span, and not one of the driver's
//     requests) is named by a ctxwatch break whose other trace it is;
//   - every ctxwatch break that starts a root names a trace that Jaeger
//     shows split off.
//
// Each service runs twice, each time into a Jaeger of its own: without
// ctxwatch first, which is its truth (written down in docs/realprograms.md
// and checked by its test), then under ctxwatch.
//
// Run with `make realprograms`. Binaries are built once into
// $CTXWATCH_CACHE/realprog/NAME-VERSION/.

// realProgram is a service from the module proxy.
type realProgram struct {
	name, version string
	pkg           string // the main package, in the module at version
	prebuilt      string // the same build elsewhere, if any, to copy
	// module, when set, is the module of pkg, built in a copy of its own
	// directory instead of from a scratch module: its go.mod has replace
	// lines, which go get ignores in a dependency (the build would not be
	// the release's).
	module string
}

// binary returns the service's executable, building it once: a scratch
// module requires the service's module at its version (go get -tool), so
// the versions are those of the service's own go.mod, and the main module
// in the binary's build info is the service's, whose code ctxwatch judges.
func (p realProgram) binary(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("CTXWATCH_CACHE")
	if cache == "" {
		cache = "/var/cache/ctxwatch"
	}
	dir := filepath.Join(cache, "realprog", p.name+"-"+p.version)
	exe := filepath.Join(dir, p.name)
	if _, err := os.Stat(exe); err == nil {
		return exe
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The same build that make jaeger made (the same module, version and
	// go command): copied, not built again for ten minutes.
	if p.prebuilt != "" {
		if _, err := os.Stat(p.prebuilt); err == nil {
			if err := copyFile(p.prebuilt, exe+".tmp"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(exe+".tmp", exe); err != nil {
				t.Fatal(err)
			}
			return exe
		}
	}
	if p.module != "" {
		p.buildInModule(t, exe)
		return exe
	}
	mod := t.TempDir()
	for _, args := range [][]string{
		{"mod", "init", "realprog"},
		{"get", "-tool", p.pkg + "@" + p.version},
		{"build", "-o", exe + ".tmp", p.pkg},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s %s: go %s: %v\n%s", p.name, p.version, strings.Join(args, " "), err, out)
		}
	}
	if err := os.Rename(exe+".tmp", exe); err != nil {
		t.Fatal(err)
	}
	return exe
}

// buildInModule builds p into exe the way its maintainers do: go mod
// download gives the module's directory at version, a writable copy of it
// is the main module (its go.mod and go.sum, its replace lines), and go
// build builds pkg there.
func (p realProgram) buildInModule(t *testing.T, exe string) {
	t.Helper()
	dl := exec.Command("go", "mod", "download", "-json", p.module+"@"+p.version)
	dl.Dir = t.TempDir() // outside any module
	out, err := dl.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Error != "" || mod.Dir == "" {
		t.Fatalf("build %s %s: go mod download %s@%s: %v %v %s\n%s", p.name, p.version, p.module, p.version, err, jerr, mod.Error, out)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := copyTree(mod.Dir, src); err != nil {
		t.Fatalf("build %s %s: copy %s: %v", p.name, p.version, mod.Dir, err)
	}
	pkg := "./" + strings.TrimPrefix(strings.TrimPrefix(p.pkg, p.module), "/")
	build := exec.Command("go", "build", "-o", exe+".tmp", pkg)
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s %s: go build %s in %s: %v\n%s", p.name, p.version, pkg, src, err, out)
	}
	if err := os.Rename(exe+".tmp", exe); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files under from to to, writable (the module
// cache's are read-only).
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}

// driven is one request of the driver, with the trace it carried in its
// traceparent: the driver's own client root, never sent to Jaeger.
type driven struct {
	what    string
	traceID string
}

// traceparent returns a W3C traceparent with a fresh trace id.
func traceparent(t *testing.T) (header, traceID string) {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	traceID = hex.EncodeToString(b[:16])
	return "00-" + traceID + "-" + hex.EncodeToString(b[16:]) + "-01", traceID
}

// getTraced sends GET url with a traceparent of its own.
func getTraced(t *testing.T, url string) driven {
	t.Helper()
	return sendTraced(t, http.MethodGet, url, "", nil)
}

// sendTraced sends a request with a traceparent of its own, and fails the
// test unless the answer is 200.
func sendTraced(t *testing.T, method, url, contentType string, body []byte) driven {
	t.Helper()
	return sendTracedStatus(t, method, url, contentType, body, http.StatusOK)
}

// sendTracedStatus sends a request with a traceparent of its own, and
// fails the test unless the answer has status want.
func sendTracedStatus(t *testing.T, method, url, contentType string, body []byte, want int) driven {
	t.Helper()
	tp, id := traceparent(t)
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", tp)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d: %s", method, url, resp.Status, want, answer)
	}
	return driven{what: method + " " + url, traceID: id}
}

// allTraces returns every trace Jaeger holds, of every service, by id.
func (j *jaeger) allTraces(t *testing.T) map[string]jaegerTrace {
	t.Helper()
	all := map[string]jaegerTrace{}
	for _, s := range j.services(t) {
		for id, tr := range j.traces(t, s) {
			all[id] = tr
		}
	}
	return all
}

func spanCount(traces map[string]jaegerTrace) int {
	n := 0
	for _, tr := range traces {
		n += len(tr.Spans)
	}
	return n
}

// settled waits until every driven request's trace is in Jaeger and the
// number of spans has stopped growing for quiet, and returns the traces.
func (j *jaeger) settled(t *testing.T, reqs []driven, quiet time.Duration) map[string]jaegerTrace {
	t.Helper()
	var traces map[string]jaegerTrace
	last, since := -1, time.Now()
	waitForOr(t, "Jaeger to store every trace", 120*time.Second, func() bool {
		traces = j.allTraces(t)
		for _, q := range reqs {
			if _, ok := traces[q.traceID]; !ok {
				return false
			}
		}
		if n := spanCount(traces); n != last {
			last, since = n, time.Now()
			return false
		}
		return time.Since(since) >= quiet
	}, func() string {
		return fmt.Sprintf("%d traces, %d spans", len(traces), spanCount(traces))
	})
	return traces
}

// spansByService counts spans per service name, for the log.
func spansByService(traces map[string]jaegerTrace) map[string]int {
	n := map[string]int{}
	for _, tr := range traces {
		for _, s := range tr.Spans {
			n[tr.Processes[s.ProcessID].ServiceName]++
		}
	}
	return n
}

// orphan is a root span that split off: in a trace no request carried,
// neither a SERVER span nor a break span of ctxwatch.
type orphan struct {
	traceID, spanID, name, service string
}

func (o orphan) String() string {
	return fmt.Sprintf("%s %q (trace %s, span %s)", o.service, o.name, o.traceID, o.spanID)
}

// orphans returns the roots that split off the driven requests.
func orphans(traces map[string]jaegerTrace, reqs []driven) []orphan {
	driver := map[string]bool{}
	for _, q := range reqs {
		driver[q.traceID] = true
	}
	var out []orphan
	for id, tr := range traces {
		if driver[id] {
			continue
		}
		for i := range tr.Spans {
			s := &tr.Spans[i]
			if s.ref("CHILD_OF") != nil || s.tag("span.kind") == "server" || strings.HasPrefix(s.OperationName, "trace break:") {
				continue
			}
			out = append(out, orphan{traceID: id, spanID: s.SpanID, name: s.OperationName, service: tr.Processes[s.ProcessID].ServiceName})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].traceID+out[a].spanID < out[b].traceID+out[b].spanID })
	return out
}

// outsideRequests counts the traces of no driven request and the spans in
// them, orphans or not (a SERVER root is an entry point of its own).
func outsideRequests(traces map[string]jaegerTrace, reqs []driven) (nTraces, nSpans int) {
	driver := map[string]bool{}
	for _, q := range reqs {
		driver[q.traceID] = true
	}
	for id, tr := range traces {
		if !driver[id] {
			nTraces++
			nSpans += len(tr.Spans)
		}
	}
	return nTraces, nSpans
}

// breakLine is a break line of the report, with what the shared breakLine
// leaves out.

// service is a running service, with or without ctxwatch in front.
type service struct {
	cmd    *exec.Cmd
	log    *syncBuffer // the service's (and ctxwatch's) output
	report string      // ctxwatch's JSON lines, "" without ctxwatch
	exited chan struct{}
	err    error
}

// startService runs exe with args and env, under ctxwatch exporting break
// spans to j when watched.
func startService(t *testing.T, j *jaeger, watched bool, env []string, exe string, args ...string) *service {
	t.Helper()
	s := &service{log: &syncBuffer{}, exited: make(chan struct{})}
	argv := append([]string{exe}, args...)
	if watched {
		s.report = filepath.Join(t.TempDir(), "report.json")
		argv = append([]string{filepath.Join(bin, "ctxwatch"), "--format", "json", "--output", s.report,
			"--otlp-endpoint", "http://" + j.http, "--otlp-protocol", "http/protobuf", "--otlp-rate", "1000", "--"}, argv...)
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = append(append(os.Environ(), "OTEL_METRICS_EXPORTER=none"), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(argv, " "), s.log.String())
		}
	})
	return s
}

// stop ends the service with SIGTERM (ctxwatch passes it on) and waits.
func (s *service) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(slowed(60 * time.Second)):
		t.Fatalf("%s did not exit on SIGTERM", s.cmd.Path)
	}
}

// listening waits until every address accepts a connection.
func (s *service) listening(t *testing.T, addrs ...string) {
	t.Helper()
	waitForOr(t, "the service to listen", 60*time.Second, func() bool {
		select {
		case <-s.exited:
			t.Fatalf("%s exited at start: %v", s.cmd.Path, s.err)
		default:
		}
		for _, a := range addrs {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	}, nil)
}

// knownMiss is an orphan, by operation name, that ctxwatch cannot name by
// design, and why (docs/realprograms.md).
type knownMiss map[string]string

// runName names a subtest by whether ctxwatch watched the service.
func runName(watched bool) string {
	if watched {
		return "with-ctxwatch"
	}
	return "without-ctxwatch"
}

// realRun is what one run of a service left in Jaeger and in ctxwatch's
// report.
type realRun struct {
	reqs    []driven
	traces  map[string]jaegerTrace
	orphans []orphan
	breaks  []breakLine
	summary *summaryLine
}

// finish waits for the service's spans in j (until none came for quiet),
// stops the service, reads ctxwatch's report when it was watched and
// waits for its break spans (those decided at exit are sent then), and
// finds the orphans.
func (r *realRun) finish(t *testing.T, j *jaeger, s *service, quiet time.Duration) {
	t.Helper()
	r.traces = j.settled(t, r.reqs, quiet)
	s.stop(t)
	if s.report != "" {
		breaks, sums := readReport(t, s.report)
		if len(sums) != 1 {
			t.Fatalf("want 1 summary, got %d", len(sums))
		}
		r.breaks, r.summary = breaks, &sums[0]
		if e := r.summary.Export; e != nil && e.Sent > 0 {
			waitForOr(t, "Jaeger to store every break span", 60*time.Second, func() bool {
				r.traces = j.allTraces(t)
				return countBreakSpans(r.traces) >= int(e.Sent)
			}, nil)
		}
	}
	r.orphans = orphans(r.traces, r.reqs)
}

func countBreakSpans(traces map[string]jaegerTrace) int {
	n := 0
	for _, tr := range traces {
		for _, s := range tr.Spans {
			if strings.HasPrefix(s.OperationName, "trace break:") {
				n++
			}
		}
	}
	return n
}

// agree checks the two directions between Jaeger's orphans and
// ctxwatch's breaks that start a root, and logs every break.
func (r *realRun) agree(t *testing.T, known knownMiss) {
	t.Helper()
	isOrphan := map[string]bool{}
	for _, o := range r.orphans {
		isOrphan[o.traceID] = true
	}
	// What ctxwatch names as split off: the link of each break span that
	// started a root (new-root, dropped at a tracer Start: one per
	// occurrence), and the other trace of each such break line.
	named := map[string]string{}
	breakSpans := 0
	for _, tr := range r.traces {
		for i := range tr.Spans {
			s := &tr.Spans[i]
			if !strings.HasPrefix(s.OperationName, "trace break:") {
				continue
			}
			breakSpans++
			t.Logf("break span %q in trace %s at %v:%v (spawn %v:%v)", s.OperationName, tr.TraceID,
				s.tag("code.file.path"), s.tag("code.line.number"), s.tag("ctxwatch.spawn.file"), s.tag("ctxwatch.spawn.line"))
			if l := s.ref("FOLLOWS_FROM"); l != nil && (s.OperationName == "trace break: new-root" || s.OperationName == "trace break: dropped") {
				named[normID(l.TraceID)] = fmt.Sprintf("%s span %s in trace %s", s.OperationName, s.SpanID, tr.TraceID)
			}
		}
	}
	for _, b := range r.breaks {
		t.Logf("break %s in trace %s at %s:%d (%s), other trace %q, spawn %v, stack %v",
			b.Kind, b.TraceID, b.Site.File, b.Site.Line, b.Site.Function, b.OtherTraceID, b.Spawn, b.Stack)
		if (b.Kind == "new-root" || b.Kind == "dropped") && b.OtherTraceID != "" {
			named[b.OtherTraceID] = fmt.Sprintf("%s break line at %s:%d", b.Kind, b.Site.File, b.Site.Line)
		}
	}
	// (a) every orphan is named.
	for _, o := range r.orphans {
		if _, ok := named[o.traceID]; ok {
			continue
		}
		if why, ok := known[o.name]; ok {
			t.Logf("missed by design (%s): %s", why, o)
		} else {
			t.Errorf("missed: Jaeger shows %s split off, and no ctxwatch break names its trace", o)
		}
	}
	// (b) every trace named is an orphan in Jaeger.
	for id, by := range named {
		if !isOrphan[id] {
			t.Errorf("false: %s names trace %s, which Jaeger does not show split off (in Jaeger: %v)", by, id, r.traces[id].TraceID != "")
		}
	}
	if r.summary != nil {
		s := r.summary
		if s.EventsLost == nil || *s.EventsLost != 0 || s.Incomplete {
			t.Errorf("ctxwatch's verdicts are incomplete: events_lost %v, incomplete %v, notes %v", s.EventsLost, s.Incomplete, s.Notes)
		}
		if s.Export == nil || s.Export.Dropped != 0 || int(s.Export.Sent) != breakSpans {
			t.Errorf("ctxwatch's export %+v, and Jaeger holds %d break spans", s.Export, breakSpans)
		}
		for _, b := range s.Breaks {
			t.Logf("summary: %d × %s at %s:%d (%s)", b.Count, b.Kind, b.Site.File, b.Site.Line, b.Site.Function)
		}
		for _, sp := range s.SpawnSites {
			t.Logf("spawn site %s:%d: traced %d, propagated %d, lost %d, new roots %d",
				sp.Site.File, sp.Site.Line, sp.TracedSpawns, sp.Propagated, sp.Lost, sp.NewRoot)
		}
	}
}

// hotrod is Jaeger's own demo application: four services (frontend,
// customer, driver over gRPC, route) and two simulated datastores (mysql,
// redis-manual), each with its own tracer provider, all in one process
// with `hotrod all`.
var hotrod = realProgram{name: "hotrod", version: "v1.76.0", pkg: "github.com/jaegertracing/jaeger/examples/hotrod"}

// hotrodRounds of GET /dispatch for each customer of HotROD's database.
const hotrodRounds = 3

var hotrodCustomers = []int{123, 392, 731, 567}

// TestRealHotROD: HotROD's truth, established without ctxwatch and written
// in docs/realprograms.md, is that it is whole: every span of a dispatch
// is in the request's trace, and Jaeger holds no other trace. Under
// ctxwatch Jaeger must show the same, and ctxwatch must name no new root.
func TestRealHotROD(t *testing.T) {
	requireRoot(t)
	exe := hotrod.binary(t)
	const wantOrphans = 0
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runHotROD(t, exe, watched)
			nt, ns := outsideRequests(r.traces, r.reqs)
			t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
				len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
			t.Logf("spans by service: %v", spansByService(r.traces))
			for _, o := range r.orphans {
				t.Logf("orphan: %s", o)
			}
			if len(r.orphans) != wantOrphans {
				t.Errorf("Jaeger shows %d orphan roots, HotROD's truth is %d", len(r.orphans), wantOrphans)
			}
			checkHotRODTraces(t, r)
			if watched {
				r.agree(t, nil)
				r.whole(t)
			}
		})
	}
}

// checkHotRODTraces checks that each dispatch's trace holds the spans of
// every service it went through: the instrumentation was exported.
func checkHotRODTraces(t *testing.T, r *realRun) {
	t.Helper()
	for _, q := range r.reqs {
		tr := r.traces[q.traceID]
		seen := map[string]bool{}
		for _, s := range tr.Spans {
			seen[tr.Processes[s.ProcessID].ServiceName] = true
		}
		for _, svc := range []string{"frontend", "customer", "mysql", "driver", "redis-manual", "route"} {
			if !seen[svc] {
				t.Errorf("%s: trace %s has no span of %s (it has %v)", q.what, q.traceID, svc, seen)
			}
		}
	}
}

func runHotROD(t *testing.T, exe string, watched bool) *realRun {
	t.Helper()
	j := startJaeger(t)
	ports := freePorts(t, 4)
	var args []string
	for i, svc := range []string{"frontend", "customer", "driver", "route"} {
		host, port, _ := net.SplitHostPort(ports[i])
		args = append(args, "--"+svc+"-service-hostname", host, "--"+svc+"-service-port", port)
	}
	s := startService(t, j, watched, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.http},
		exe, append([]string{"all"}, args...)...)
	s.listening(t, ports...)

	r := &realRun{}
	for range hotrodRounds {
		for _, c := range hotrodCustomers {
			r.reqs = append(r.reqs, getTraced(t, fmt.Sprintf("http://%s/dispatch?customer=%d", ports[0], c)))
		}
	}
	// HotROD batches for a second and does not flush at SIGTERM: wait
	// for its spans before stopping it.
	r.finish(t, j, s, 3*time.Second)
	return r
}

// jaegerSUT is Jaeger v2 itself as the service under test: an
// OpenTelemetry Collector distribution whose own telemetry (the OTLP
// receiver's server spans, the receiver's and the exporter's spans) goes
// to the referee Jaeger over OTLP, W3C trace context taken from incoming
// requests. It runs the pipeline that startJaeger runs, with the batch
// processor and without it.
var jaegerSUT = realProgram{name: "jaeger", version: "v1.76.0", pkg: "github.com/jaegertracing/jaeger/cmd/jaeger", prebuilt: jaegerPrebuilt("v1.76.0")}

// jaegerPrebuilt is the Jaeger that make jaeger built, if it is version.
func jaegerPrebuilt(version string) string {
	if version != jaegerVersion {
		return ""
	}
	return jaegerPath()
}

// jaegerPosts is how many OTLP/HTTP exports the driver sends, one span
// each.
const jaegerPosts = 8

// jaegerExportSpan is the span exporterhelper starts around each export.
const jaegerExportSpan = "exporter/jaeger_storage_exporter/traces"

// TestRealJaeger: Jaeger's truth, established without ctxwatch and
// written in docs/realprograms.md:
//   - direct (receiver to exporter): whole. Each export request's trace
//     holds its server span, the receiver's span and the exporter's span.
//   - batch (the batch processor between them): the exporter's span of
//     each batch is the root of a trace of its own, split off the requests
//     whose data it carries, by design of the batch processor, whose
//     goroutine takes the data from a channel.
//
// The batch processor and exporterhelper are collector library code on
// both sides of that channel: ctxwatch judges only the main module's code
// (DESIGN.md §2), so it is a miss by design, logged and not failed.
func TestRealJaeger(t *testing.T) {
	requireRoot(t)
	exe := jaegerSUT.binary(t)
	known := knownMiss{jaegerExportSpan: "the batch processor's channel: collector code on both sides, no user frame"}
	for _, batch := range []bool{false, true} {
		pipeline := "direct"
		if batch {
			pipeline = "batch"
		}
		t.Run(pipeline, func(t *testing.T) {
			for _, watched := range []bool{false, true} {
				t.Run(runName(watched), func(t *testing.T) {
					r := runJaegerSUT(t, exe, batch, watched)
					nt, ns := outsideRequests(r.traces, r.reqs)
					t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
						len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
					t.Logf("spans by service: %v", spansByService(r.traces))
					for _, o := range r.orphans {
						t.Logf("orphan: %s", o)
					}
					checkJaegerTruth(t, r, batch)
					if watched {
						r.agree(t, known)
						r.whole(t)
					}
				})
			}
		})
	}
}

// checkJaegerTruth checks a run against Jaeger's truth.
func checkJaegerTruth(t *testing.T, r *realRun, batch bool) {
	t.Helper()
	if !batch && len(r.orphans) != 0 {
		t.Errorf("direct pipeline: Jaeger shows %d orphan roots, the truth is 0", len(r.orphans))
	}
	if batch && (len(r.orphans) == 0 || len(r.orphans) > jaegerPosts) {
		t.Errorf("batch pipeline: Jaeger shows %d orphan roots, the truth is one per batch: 1 to %d", len(r.orphans), jaegerPosts)
	}
	for _, o := range r.orphans {
		if o.name != jaegerExportSpan {
			t.Errorf("orphan %s: the truth has only %q", o, jaegerExportSpan)
		}
	}
	for _, q := range r.reqs {
		tr := r.traces[q.traceID]
		want := []string{"POST /v1/traces", "receiver/otlp/TraceDataReceived"}
		if !batch {
			want = append(want, jaegerExportSpan)
		}
		for _, name := range want {
			if len(tr.named(name)) != 1 {
				t.Errorf("%s: trace %s has %d spans %q, want 1", q.what, q.traceID, len(tr.named(name)), name)
			}
		}
	}
}

func runJaegerSUT(t *testing.T, exe string, batch, watched bool) *realRun {
	t.Helper()
	j := startJaeger(t)
	ports := freePorts(t, 4) // OTLP gRPC and HTTP, query HTTP and gRPC
	processors := "[]"
	if batch {
		processors = "[batch]"
	}
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: %s
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger-under-test
    metrics:
      level: none
    logs:
      level: warn
    traces:
      propagators: [tracecontext]
      processors:
        - batch:
            schedule_delay: 100
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: http://%s/v1/traces
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
          max_traces: 1000
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
`, processors, j.http, ports[2], ports[3], ports[0], ports[1])
	cfg := filepath.Join(t.TempDir(), "jaeger-under-test.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startService(t, j, watched, nil, exe, "--config", cfg)
	s.listening(t, ports...)

	r := &realRun{}
	for range jaegerPosts {
		_, id := traceparent(t) // the exported span's own trace, stored by the service under test
		payload := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"driver"}}]},`+
			`"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"%s","name":"work","kind":2,`+
			`"startTimeUnixNano":"%d","endTimeUnixNano":"%d"}]}]}]}`,
			id, id[:16], time.Now().Add(-time.Second).UnixNano(), time.Now().UnixNano())
		r.reqs = append(r.reqs, sendTraced(t, http.MethodPost, "http://"+ports[1]+"/v1/traces", "application/json", []byte(payload)))
	}
	r.finish(t, j, s, 2*time.Second)
	return r
}

// caddyProgram is the Caddy web server, whose tracing handler wraps a
// route in otelhttp and exports over OTLP (autoexport: the standard
// variables), injecting the trace context into the request it passes on.
var caddyProgram = realProgram{name: "caddy", version: "v2.11.9", pkg: "github.com/caddyserver/caddy/v2/cmd/caddy"}

// caddyRequests is how many GETs the driver sends through the front site.
const caddyRequests = 12

// TestRealCaddy: two traced sites of one Caddy, the front one reverse
// proxying to the back one. Caddy's truth, established without ctxwatch
// and written in docs/realprograms.md, is that it is whole: each
// request's trace holds the front site's SERVER span, child of the
// driver's, and the back site's, child of the front one's; Jaeger holds
// no other trace.
func TestRealCaddy(t *testing.T) {
	requireRoot(t)
	exe := caddyProgram.binary(t)
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runCaddy(t, exe, watched)
			nt, ns := outsideRequests(r.traces, r.reqs)
			t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
				len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
			t.Logf("spans by service: %v", spansByService(r.traces))
			for _, o := range r.orphans {
				t.Logf("orphan: %s", o)
			}
			if len(r.orphans) != 0 || nt != 0 {
				t.Errorf("Jaeger shows %d orphan roots and %d traces outside the requests', Caddy's truth is 0 and 0", len(r.orphans), nt)
			}
			for _, q := range r.reqs {
				tr := r.traces[q.traceID]
				front, back := tr.named("front"), tr.named("back")
				if len(front) != 1 || len(back) != 1 {
					t.Errorf("%s: trace %s has %d front and %d back spans, want 1 and 1", q.what, q.traceID, len(front), len(back))
					continue
				}
				if p := back[0].ref("CHILD_OF"); p == nil || p.SpanID != front[0].SpanID {
					t.Errorf("%s: the back span's parent is %+v, want the front span %s", q.what, p, front[0].SpanID)
				}
			}
			if watched {
				r.agree(t, nil)
				r.whole(t)
			}
		})
	}
}

func runCaddy(t *testing.T, exe string, watched bool) *realRun {
	t.Helper()
	j := startJaeger(t)
	ports := freePorts(t, 2)
	config := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}

http://%s {
	bind 127.0.0.1
	tracing {
		span front
	}
	reverse_proxy %s
}

http://%s {
	bind 127.0.0.1
	tracing {
		span back
	}
	respond "ok" 200
}
`, ports[0], ports[1], ports[1])
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir,
		"OTEL_SERVICE_NAME=caddy", "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.http, "OTEL_BSP_SCHEDULE_DELAY=200"}
	s := startService(t, j, watched, env, exe, "run", "--config", cfg, "--adapter", "caddyfile")
	s.listening(t, ports...)

	r := &realRun{}
	for range caddyRequests {
		r.reqs = append(r.reqs, getTraced(t, "http://"+ports[0]+"/"))
	}
	r.finish(t, j, s, 2*time.Second)
	return r
}

// centrifugoProgram is the Centrifugo real-time messaging server (memory
// engine), whose HTTP API is wrapped in otelhttp when OpenTelemetry is on,
// exporting over OTLP by the standard variables. Its broadcast and its
// parallel batch spawn one goroutine per channel or command, in the
// request's trace: real spawn sites of its own code for ctxwatch to judge.
var centrifugoProgram = realProgram{name: "centrifugo", version: "v6.9.1", pkg: "github.com/centrifugal/centrifugo/v6"}

// centrifugoRounds of one broadcast to 4 channels and one parallel batch
// of 4 publications.
const centrifugoRounds = 6

// TestRealCentrifugo: Centrifugo's truth, established without ctxwatch and
// written in docs/realprograms.md, is that it is whole: each API request's
// trace holds its SERVER span, child of the driver's, and Jaeger holds no
// other trace (the goroutines of a broadcast or a batch start no span).
// Under ctxwatch the same, with no break at its spawn sites.
func TestRealCentrifugo(t *testing.T) {
	requireRoot(t)
	exe := centrifugoProgram.binary(t)
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runCentrifugo(t, exe, watched)
			nt, ns := outsideRequests(r.traces, r.reqs)
			t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
				len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
			t.Logf("spans by service: %v", spansByService(r.traces))
			for _, o := range r.orphans {
				t.Logf("orphan: %s", o)
			}
			if len(r.orphans) != 0 || nt != 0 {
				t.Errorf("Jaeger shows %d orphan roots and %d traces outside the requests', Centrifugo's truth is 0 and 0", len(r.orphans), nt)
			}
			for _, q := range r.reqs {
				tr := r.traces[q.traceID]
				n := 0
				for i := range tr.Spans {
					if tr.Spans[i].tag("span.kind") == "server" {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%s: trace %s has %d SERVER spans, want 1", q.what, q.traceID, n)
				}
			}
			if watched {
				r.agree(t, nil)
				r.whole(t)
			}
		})
	}
}

func runCentrifugo(t *testing.T, exe string, watched bool) *realRun {
	t.Helper()
	j := startJaeger(t)
	addr := freePorts(t, 1)[0]
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	config := fmt.Sprintf(`{
  "http_server": {"address": %q, "port": %s},
  "http_api": {"insecure": true},
  "opentelemetry": {"enabled": true, "api": true},
  "log": {"level": "warn"}
}
`, host, port)
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"OTEL_SERVICE_NAME=centrifugo", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.http, "OTEL_BSP_SCHEDULE_DELAY=200"}
	s := startService(t, j, watched, env, exe, "--config", cfg)
	s.listening(t, addr)

	r := &realRun{}
	for i := range centrifugoRounds {
		broadcast := fmt.Sprintf(`{"channels":["a","b","c","d"],"data":{"n":%d}}`, i)
		r.reqs = append(r.reqs, sendTraced(t, http.MethodPost, "http://"+addr+"/api/broadcast", "application/json", []byte(broadcast)))
		var cmds []string
		for _, ch := range []string{"a", "b", "c", "d"} {
			cmds = append(cmds, fmt.Sprintf(`{"publish":{"channel":%q,"data":{"n":%d}}}`, ch, i))
		}
		batch := `{"parallel":true,"commands":[` + strings.Join(cmds, ",") + `]}`
		r.reqs = append(r.reqs, sendTraced(t, http.MethodPost, "http://"+addr+"/api/batch", "application/json", []byte(batch)))
	}
	r.finish(t, j, s, 2*time.Second)
	return r
}

// SpiceDB, the Zanzibar-style permissions database (memory datastore),
// with its HTTP gateway in front of its gRPC API, both traced (otelhttp,
// then otelgrpc on the gateway's client and on the server), exporting over
// OTLP/gRPC with a parent-based sampler. Built in its own module: its
// go.mod has replace lines.
//
// In v1.49.1 ReadSchema loses its trace in SpiceDB's own code:
// internal/services/v1/schema.go:97 calls schemaReader.SchemaText(), which
// takes no context, and LegacySchemaReaderAdapter.SchemaText
// (internal/datastore/schema/schema.go:36) reads the namespaces and the
// caveats on context.Background(), through the tracing datastore proxy
// (internal/datastore/proxy/observable.go, observe): two root spans,
// ListAllNamespaces and ListAllCaveats, per read, while the request's
// server span is open. Fixed by authzed/spicedb#2947 (v1.50.0:
// sr.SchemaText(ctx)); v1.56.2 is the fixed release the module proxy
// serves (v1.50.0's zip is refused).
var (
	spicedbBroken = realProgram{name: "spicedb", version: "v1.49.1", pkg: "github.com/authzed/spicedb/cmd/spicedb", module: "github.com/authzed/spicedb"}
	spicedbFixed  = realProgram{name: "spicedb", version: "v1.56.2", pkg: "github.com/authzed/spicedb/cmd/spicedb", module: "github.com/authzed/spicedb"}
)

const (
	spicedbKey    = "ctxwatch-realprog" // the gRPC preshared key, a bearer token at the gateway
	spicedbReads  = 6                   // POST /v1/schema/read, after one write
	spicedbSchema = "definition user {}\ndefinition doc {\n relation viewer: user\n permission view = viewer\n}"
)

// The orphans of a read in v1.49.1, by operation name (the names observe
// gives its spans).
var spicedbSplitNames = []string{"ListAllNamespaces", "ListAllCaveats"}

// spicedbStartup are the roots SpiceDB starts at startup, before any
// request, on the server's own context: the datastore's Features
// (pkg/cmd/server/server.go), Statistics (the telemetry collector) and
// ReadyState (the health manager). Orphans by the definition, split off
// nothing: ctxwatch has no trace to name them by, by design.
var spicedbStartup = map[string]bool{"Features": true, "Statistics": true, "ReadyState": true}

// spicedbKnown are the orphans of every SpiceDB run that ctxwatch cannot
// name by design: its startup roots.
func spicedbKnown() knownMiss {
	known := knownMiss{}
	for n := range spicedbStartup {
		known[n] = "startup work before any request: no trace to lose"
	}
	return known
}

func spicedbStartupNames() []string {
	var out []string
	for n := range spicedbStartup {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// spicedbRun is a run of SpiceDB: the write, then the reads.
type spicedbRun struct {
	realRun
	write driven
	reads []driven
	times map[string]spanTime // of every span in Jaeger, by trace and span id
}

// TestRealSpiceDB: SpiceDB v1.49.1's truth, established without ctxwatch
// and written in docs/realprograms.md: each request's trace holds the
// gateway's spans and the gRPC server's, and each read splits two traces
// off, ListAllNamespaces and ListAllCaveats, roots started while the
// read's gRPC server span is open. Under ctxwatch the same in Jaeger, and
// ctxwatch reports each split as `dropped` at the tracing proxy's Start
// (observe), its stack up to SchemaText, where the context was dropped,
// and ReadSchema.
//
// Each dropped break span, in the broken read's trace, links the orphan it
// split off, so agree names every one by trace id; checkSpiceDBBreaks also
// places each in the read whose server span was open when it started.
func TestRealSpiceDB(t *testing.T) {
	requireRoot(t)
	exe := spicedbBroken.binary(t)
	known := spicedbKnown()
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runSpiceDB(t, exe, watched)
			splits := r.logSpiceDB(t)
			checkSpiceDBTruth(t, r, splits, true)
			if watched {
				r.agree(t, known)
				checkSpiceDBBreaks(t, r, splits)
			}
		})
	}
}

// whole checks that ctxwatch reported no break of any kind on a service
// whose truth in Jaeger is whole: a break there would be a false one.
func (r *realRun) whole(t *testing.T) {
	t.Helper()
	if len(r.breaks) != 0 || len(r.summary.Breaks) != 0 {
		for _, b := range r.breaks {
			t.Logf("break: %s at %s:%d", b.Kind, b.Site.File, b.Site.Line)
		}
		t.Errorf("ctxwatch reported %d break lines and %d breaks in its summary on a whole service, want none", len(r.breaks), len(r.summary.Breaks))
	}
}

// TestRealSpiceDBFixed: the negative twin, v1.56.2, with the fix. Its
// truth, established without ctxwatch: each request's trace holds all of
// its spans, the reads' ListAllNamespaces and ListAllCaveats too; no
// orphan. Under ctxwatch the same, and no break.
func TestRealSpiceDBFixed(t *testing.T) {
	requireRoot(t)
	exe := spicedbFixed.binary(t)
	for _, watched := range []bool{false, true} {
		t.Run(runName(watched), func(t *testing.T) {
			r := runSpiceDB(t, exe, watched)
			splits := r.logSpiceDB(t)
			checkSpiceDBTruth(t, r, splits, false)
			if watched {
				r.agree(t, spicedbKnown())
				r.whole(t)
			}
		})
	}
}

func runSpiceDB(t *testing.T, exe string, watched bool) *spicedbRun {
	t.Helper()
	j := startJaeger(t)
	ports := freePorts(t, 2) // gRPC, HTTP gateway
	s := startService(t, j, watched, []string{"OTEL_BSP_SCHEDULE_DELAY=200"}, exe, "serve",
		"--grpc-preshared-key", spicedbKey, "--datastore-engine", "memory",
		"--grpc-addr", ports[0], "--http-enabled", "--http-addr", ports[1],
		"--metrics-enabled=false", "--telemetry-endpoint=", "--skip-release-check", "--log-level", "warn",
		"--otel-provider", "otlpgrpc", "--otel-endpoint", j.grpc, "--otel-insecure", "--otel-sample-ratio", "1")
	s.listening(t, ports...)
	base := "http://" + ports[1]
	// The gateway answers /healthz from the gRPC health service, untraced
	// on both sides: ready once it says 200.
	waitFor(t, "SpiceDB to be healthy", 60*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	r := &spicedbRun{}
	body, _ := json.Marshal(map[string]string{"schema": spicedbSchema})
	r.write = sendSpiceDB(t, base+"/v1/schema/write", body)
	for range spicedbReads {
		r.reads = append(r.reads, sendSpiceDB(t, base+"/v1/schema/read", []byte("{}")))
	}
	r.reqs = append([]driven{r.write}, r.reads...)
	r.finish(t, j, s, 2*time.Second)
	r.times = j.spanTimes(t)
	return r
}

// sendSpiceDB posts body to the gateway with the preshared key as bearer
// token and a traceparent of its own.
func sendSpiceDB(t *testing.T, url string, body []byte) driven {
	t.Helper()
	tp, id := traceparent(t)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", tp)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+spicedbKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, answer)
	}
	return driven{what: "POST " + url, traceID: id}
}

// spanTime is when a span ran, in µs since the epoch, as Jaeger holds it.
type spanTime struct{ start, end int64 }

func (s spanTime) holds(at int64) bool { return s.start <= at && at <= s.end }

// spanTimes returns when every span Jaeger holds ran, by trace and span id
// (jaegerSpan leaves the start out).
func (j *jaeger) spanTimes(t *testing.T) map[string]spanTime {
	t.Helper()
	out := map[string]spanTime{}
	for _, svc := range j.services(t) {
		resp, err := http.Get("http://" + j.query + "/api/traces?limit=10000&lookback=1h&service=" + svc)
		if err != nil {
			t.Fatalf("query Jaeger: %v", err)
		}
		var body struct {
			Data []struct {
				Spans []struct {
					TraceID   string `json:"traceID"`
					SpanID    string `json:"spanID"`
					StartTime int64  `json:"startTime"`
					Duration  int64  `json:"duration"`
				} `json:"spans"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("decode Jaeger's traces: %v", err)
		}
		for _, tr := range body.Data {
			for _, s := range tr.Spans {
				out[normID(s.TraceID)+"/"+s.SpanID] = spanTime{s.StartTime, s.StartTime + s.Duration}
			}
		}
	}
	return out
}

// services returns the service names Jaeger holds spans of.
func (j *jaeger) services(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get("http://" + j.query + "/api/services")
	if err != nil {
		t.Fatalf("query Jaeger: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode Jaeger's services: %v", err)
	}
	return body.Data
}

// spanNames lists a trace's operation names, sorted, with their counts.
func spanNames(tr jaegerTrace) string {
	n := map[string]int{}
	for _, s := range tr.Spans {
		kind, _ := s.tag("span.kind").(string)
		if kind != "" {
			kind = " [" + kind + "]"
		}
		n[s.OperationName+kind]++
	}
	var out []string
	for name, c := range n {
		out = append(out, fmt.Sprintf("%d × %s", c, name))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// spanParents lists each span of a trace with its parent ("-" for a
// parent outside the trace, the driver's), by name and kind.
func spanParents(tr jaegerTrace) string {
	named := func(s *jaegerSpan) string { return fmt.Sprintf("%s [%v]", s.OperationName, s.tag("span.kind")) }
	var out []string
	for i := range tr.Spans {
		s := &tr.Spans[i]
		parent := "-"
		if ref := s.ref("CHILD_OF"); ref != nil {
			if p := tr.span(ref.SpanID); p != nil {
				parent = named(p)
			}
		}
		out = append(out, named(s)+" ← "+parent)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// logSpiceDB logs the run and returns its orphans by the request whose
// gRPC server span (of SchemaService: ReadSchema, or WriteSchema) was open when each
// started; orphans outside every request are under "".
func (r *spicedbRun) logSpiceDB(t *testing.T) map[string][]orphan {
	t.Helper()
	nt, ns := outsideRequests(r.traces, r.reqs)
	t.Logf("%d requests, %d traces, %d spans; outside the requests' traces: %d traces, %d spans; %d orphans",
		len(r.reqs), len(r.traces), spanCount(r.traces), nt, ns, len(r.orphans))
	t.Logf("spans by service: %v", spansByService(r.traces))
	for i, q := range r.reqs {
		t.Logf("%s: trace %s: %s", q.what, q.traceID, spanNames(r.traces[q.traceID]))
		if i < 2 { // the write and the first read, span by span
			t.Logf("  parents: %s", spanParents(r.traces[q.traceID]))
		}
	}
	driver := map[string]bool{}
	for _, q := range r.reqs {
		driver[q.traceID] = true
	}
	for id, tr := range r.traces {
		if !driver[id] {
			t.Logf("outside the requests: trace %s: %s", id, spanNames(tr))
		}
	}
	splits := map[string][]orphan{}
	for _, o := range r.orphans {
		at, ok := r.times[o.traceID+"/"+o.spanID]
		owner := ""
		for _, q := range r.reqs {
			if s, ok2 := r.serverSpan(q); ok && ok2 && s.holds(at.start) {
				owner = q.traceID
			}
		}
		splits[owner] = append(splits[owner], o)
		t.Logf("orphan: %s, started in the request of trace %q", o, owner)
	}
	return splits
}

// serverSpan returns when the gRPC server span of request q ran.
func (r *spicedbRun) serverSpan(q driven) (spanTime, bool) {
	tr := r.traces[q.traceID]
	for i := range tr.Spans {
		s := &tr.Spans[i]
		if s.tag("span.kind") == "server" && strings.HasPrefix(s.OperationName, "authzed.api.v1.SchemaService/") {
			st, ok := r.times[q.traceID+"/"+s.SpanID]
			return st, ok
		}
	}
	return spanTime{}, false
}

// checkSpiceDBTruth checks a run against SpiceDB's truth: broken (v1.49.1)
// or fixed (v1.56.2).
func checkSpiceDBTruth(t *testing.T, r *spicedbRun, splits map[string][]orphan, broken bool) {
	t.Helper()
	for _, q := range r.reqs {
		tr := r.traces[q.traceID]
		if _, ok := r.serverSpan(q); !ok {
			t.Errorf("%s: trace %s holds no gRPC server span of SchemaService: the gateway did not carry the trace (%s)", q.what, q.traceID, spanNames(tr))
		}
	}
	for _, q := range r.reads {
		tr := r.traces[q.traceID]
		for _, name := range spicedbSplitNames {
			in, split := len(tr.named(name)), 0
			for _, o := range splits[q.traceID] {
				if o.name == name {
					split++
				}
			}
			want := [2]int{1, 0} // in the request's trace, split off
			if broken {
				want = [2]int{0, 1}
			}
			if [2]int{in, split} != want {
				t.Errorf("%s: %d spans %q in trace %s and %d split off while it ran; the truth is %d and %d", q.what, in, name, q.traceID, split, want[0], want[1])
			}
		}
	}
	want := 0
	if broken {
		want = len(spicedbSplitNames) * spicedbReads
	}
	if n := len(r.orphans) - len(splits[""]); n != want {
		t.Errorf("Jaeger shows %d orphan roots started in a request, the truth is %d", n, want)
	}
	// SpiceDB's own startup work, each once, before any request: roots of
	// their own, split off nothing.
	first, ok := r.serverSpan(r.write)
	seen := map[string]int{}
	for _, o := range splits[""] {
		seen[o.name]++
		at := r.times[o.traceID+"/"+o.spanID]
		if !spicedbStartup[o.name] || seen[o.name] > 1 || !ok || at.start >= first.start {
			t.Errorf("orphan %s started outside every request, and is not startup work of SpiceDB (%v, once, before the first request)", o, spicedbStartupNames())
		}
	}
	for _, o := range splits[r.write.traceID] {
		t.Errorf("orphan %s split off the write; the truth has none", o)
	}
}

// checkSpiceDBBreaks checks ctxwatch's report on v1.49.1: one break line,
// dropped at observe's tracer.Start, whose stack holds SchemaText (the line
// to fix) and ReadSchema's call of it; as many occurrences as orphans; and
// in each read's trace as many dropped break spans as orphans split off
// while it ran.
func checkSpiceDBBreaks(t *testing.T, r *spicedbRun, splits map[string][]orphan) {
	t.Helper()
	const (
		siteFile   = "internal/datastore/proxy/observable.go"
		siteFunc   = "github.com/authzed/spicedb/internal/datastore/proxy.observe"
		schemaFile = "internal/datastore/schema/schema.go"
		schemaFunc = "github.com/authzed/spicedb/internal/datastore/schema.(*LegacySchemaReaderAdapter).SchemaText"
		readFile   = "internal/services/v1/schema.go"
		readFunc   = "github.com/authzed/spicedb/internal/services/v1.(*schemaServer).ReadSchema"
	)
	hasFrame := func(stack []frame, fn, file string, lo, hi int) bool {
		for _, f := range stack {
			if f.Function == fn && strings.HasSuffix(f.File, file) && lo <= f.Line && f.Line <= hi {
				return true
			}
		}
		return false
	}
	checkStack := func(what string, stack []frame) {
		if !hasFrame(stack, schemaFunc, schemaFile, 36, 51) {
			t.Errorf("%s: stack %v has no frame of SchemaText at %s:36-51, where context.Background() was taken", what, stack, schemaFile)
		}
		if !hasFrame(stack, readFunc, readFile, 97, 97) {
			t.Errorf("%s: stack %v has no frame of ReadSchema at %s:97", what, stack, readFile)
		}
	}
	if len(r.breaks) != 1 {
		t.Errorf("ctxwatch wrote %d break lines, want 1 (dropped at %s)", len(r.breaks), siteFile)
	}
	for _, b := range r.breaks {
		if b.Kind != "dropped" || b.Site.Function != siteFunc || !strings.HasSuffix(b.Site.File, siteFile) {
			t.Errorf("break %s at %s:%d (%s), want dropped at %s (observe)", b.Kind, b.Site.File, b.Site.Line, b.Site.Function, siteFile)
			continue
		}
		checkStack("break line", b.Stack)
		if b.OtherTraceID == "" {
			t.Errorf("the dropped break line names no other trace")
		}
		// The other trace it names split off the very read it is in.
		split := false
		for _, o := range splits[b.TraceID] {
			split = split || o.traceID == b.OtherTraceID
		}
		if !split {
			t.Errorf("the dropped break in trace %s names trace %s, which Jaeger does not show split off that request", b.TraceID, b.OtherTraceID)
		}
	}
	var occurrences uint64
	for _, b := range r.summary.Breaks {
		if b.Kind != "dropped" || b.Site.Function != siteFunc {
			t.Errorf("summary: %d × %s at %s:%d (%s), want only dropped at %s (observe)", b.Count, b.Kind, b.Site.File, b.Site.Line, b.Site.Function, siteFile)
			continue
		}
		occurrences += b.Count
		checkStack("summary", b.Stack)
	}
	if split := len(r.orphans) - len(splits[""]); occurrences != uint64(split) {
		t.Errorf("ctxwatch counted %d dropped breaks at %s, and Jaeger shows %d orphans split off the requests", occurrences, siteFile, split)
	}
	stacks := map[string]bool{}
	for _, q := range r.reqs {
		tr := r.traces[q.traceID]
		n := 0
		for _, s := range tr.named("trace break: dropped") {
			n++
			if st := fmt.Sprint(s.tag("ctxwatch.stack")); !stacks[st] {
				stacks[st] = true
				t.Logf("break span stack: %s", st)
			}
			if f, _ := s.tag("code.file.path").(string); !strings.HasSuffix(f, siteFile) {
				t.Errorf("%s: dropped break span at %v, want %s", q.what, f, siteFile)
			}
			if st := fmt.Sprint(s.tag("ctxwatch.stack")); !strings.Contains(st, schemaFunc) {
				t.Errorf("%s: dropped break span's stack %s has no SchemaText", q.what, st)
			}
		}
		if n != len(splits[q.traceID]) {
			t.Errorf("%s: trace %s holds %d dropped break spans, and %d orphans split off while it ran", q.what, q.traceID, n, len(splits[q.traceID]))
		}
	}
}
