package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// logMarkers reads testdata/slogsite's markers: "// want:log with" and
// "// want:log without" on each line that writes a record inside a trace,
// "// want:spawn KIND" on its go statements, "// want:inner KIND" on the
// line inside its logging helper.
func logMarkers(t *testing.T, path string) map[int]marker {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`// want:(log|spawn|inner) ([a-z-]+)`)
	ms := map[int]marker{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			ms[i+1] = marker{what: m[1], kind: m[2]}
		}
	}
	return ms
}

// TestLogWithoutTrace: testdata/slogsite's handler, on a keep-alive
// connection, with its trace an OTel span (otel) or a request id under a
// key of its own (key), logs with log/slog in every way ctxwatch tells apart. Each
// line marked "want:log without" is a log-without-trace break written once
// per request, at that line (slog.Info, a With logger's InfoContext on
// Background, the --log-func helper on Background, LogAttrs in a spawned
// goroutine, which is also its lost verdict, with its spawn stack); each
// line marked "want:log with" counts its records with the trace; the
// disabled Debug, the untraced requests between them on the same
// connection and main's records outside any trace are not counted at all.
func TestLogWithoutTrace(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/slogsite/main.go")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, "slogsite")
	markers := logMarkers(t, src)

	t.Run("otel", func(t *testing.T) {
		checkLogVerdicts(t, ctxwatch(t, "--log-func", "main.logf", "--", exe), src, markers)
	})
	t.Run("key", func(t *testing.T) {
		checkLogVerdicts(t, ctxwatch(t, "--trace-key", "type=main.traceKey", "--log-func", "main.logf", "--", exe, "-key"), src, markers)
	})

	// Without --log-func, the helper's records are slog's, at the line
	// inside it: with the trace for one call, without for the other.
	r := ctxwatch(t, "--", exe)
	requests := checkLogRun(t, r, src)
	var inner []string
	for _, b := range r.summaries[0].Breaks {
		if markers[b.Site.Line].what == "inner" {
			inner = append(inner, fmt.Sprintf("%s %d", b.Kind, b.Count))
		}
	}
	for _, ls := range r.summaries[0].LogSites {
		if markers[ls.Site.Line].what == "inner" {
			inner = append(inner, fmt.Sprintf("%d/%d/%d", ls.InsideTrace, ls.WithTrace, ls.WithoutTrace))
		}
	}
	if want := []string{fmt.Sprintf("log-without-trace %d", requests), fmt.Sprintf("%d/%d/%d", 2*requests, requests, requests)}; strings.Join(inner, ", ") != strings.Join(want, ", ") {
		t.Errorf("without --log-func, the helper's inner line: %q, want %q", inner, want)
	}

	// A program without log/slog is watched all the same; --verbose says
	// that no record is.
	r = ctxwatch(t, "--verbose", "--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "background"))
	if r.code != 0 || !strings.Contains(r.stderr, "log records through log/slog.(*Logger).log not watched") {
		t.Errorf("a program without log/slog: exit %d; stderr does not say records are not watched:\n%s", r.code, r.stderr)
	}
	if len(r.summaries) != 1 || len(r.summaries[0].Breaks) == 0 {
		t.Errorf("a program without log/slog was not watched: %+v", r.summaries)
	}

	// A helper the binary lacks is named, and the rest is watched.
	r = ctxwatch(t, "--log-func", "main.nosuch", "--", exe)
	if !strings.Contains(r.stderr, "--log-func main.nosuch not watched") {
		t.Errorf("unknown --log-func not named; stderr:\n%s", r.stderr)
	}
	if len(r.summaries) != 1 || len(r.summaries[0].Breaks) == 0 {
		t.Errorf("unknown --log-func: the program was not watched: %+v", r.summaries)
	}
}

// TestLogAfterChildSpans: testdata/childspans' handler starts six step
// spans on the request's context one after the other, each ended before
// the next, more than the four spans a goroutine's state keeps, then
// logs. The request's span is open: each record is inside its trace, with
// it or without it, once per request, and the untraced requests between
// them on the same connection are inside none. The steps used to push the
// request's span out of the state; every span left there had ended, so
// the trace was out of scope and the records were not judged at all.
func TestLogAfterChildSpans(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/childspans/main.go")
	if err != nil {
		t.Fatal(err)
	}
	checkLogVerdicts(t, ctxwatch(t, "--", filepath.Join(bin, "childspans")), src, logMarkers(t, src))
}

// checkLogVerdicts checks a run of testdata/slogsite with --log-func
// main.logf: the log sites and breaks its markers say, per request.
func checkLogVerdicts(t *testing.T, r result, src string, markers map[int]marker) {
	t.Helper()
	requests := checkLogRun(t, r, src)
	sum := r.summaries[0]
	logged := map[int]logSite{}
	for _, ls := range sum.LogSites {
		where := fmt.Sprintf("log site %s:%d (%d in a trace, %d with, %d without)",
			filepath.Base(ls.Site.File), ls.Site.Line, ls.InsideTrace, ls.WithTrace, ls.WithoutTrace)
		m := markers[ls.Site.Line]
		if ls.Site.File != src || m.what != "log" {
			t.Errorf("%s: not a line marked want:log", where)
			continue
		}
		logged[ls.Site.Line] = ls
		want := logSite{Site: ls.Site, InsideTrace: requests, WithTrace: requests}
		if m.kind == "without" {
			want.WithTrace, want.WithoutTrace = 0, requests
		}
		if ls != want {
			t.Errorf("%s: want %d in a trace, all %s it", where, requests, m.kind)
		}
	}
	breaks := map[int]breakCount{}
	for _, b := range sum.Breaks {
		where := fmt.Sprintf("%s at %s:%d (%d times)", b.Kind, filepath.Base(b.Site.File), b.Site.Line, b.Count)
		if b.Kind != "log-without-trace" || b.Site.File != src || markers[b.Site.Line] != (marker{"log", "without"}) {
			t.Errorf("%s: want log-without-trace at a line marked want:log without", where)
			continue
		}
		breaks[b.Site.Line] = b
		if b.Count != requests {
			t.Errorf("%s: want once per request, %d", where, requests)
		}
		if len(b.Stack) == 0 || b.Stack[0] != b.Site {
			t.Errorf("%s: stack %v does not start at the site", where, b.Stack)
		}
		if len(b.Spawn) > 0 {
			sp, ok := userFrame(b.Spawn, src)
			if !ok || markers[sp.Line] != (marker{"spawn", "log-without-trace"}) {
				t.Errorf("%s: spawned at %v, want the go statement marked want:spawn log-without-trace", where, b.Spawn)
			}
		}
	}
	spawned := 0
	for line, m := range markers {
		switch {
		case m.what == "log":
			if _, ok := logged[line]; !ok {
				t.Errorf("line %d marked want:log %s: no log site", line, m.kind)
			}
			if _, ok := breaks[line]; ok != (m.kind == "without") {
				t.Errorf("line %d marked want:log %s: reported %v", line, m.kind, ok)
			}
		case m.what == "spawn":
			spawned++
		}
	}
	// The goroutines' first records are their verdicts.
	for _, s := range sum.SpawnSites {
		m := markers[s.Site.Line]
		where := fmt.Sprintf("spawn site %s:%d (%d traced, %d kept, %d lost)", filepath.Base(s.Site.File), s.Site.Line, s.TracedSpawns, s.Propagated, s.Lost)
		switch {
		case s.Site.File != src:
			if s.Propagated+s.Lost+s.NewRoot != 0 {
				t.Errorf("%s: a library's spawn judged", where)
			}
		case m == marker{"spawn", "propagated"}:
			if s.TracedSpawns != requests || s.Propagated != requests {
				t.Errorf("%s: want %d, all kept", where, requests)
			}
			spawned--
		case m == marker{"spawn", "log-without-trace"}:
			if s.TracedSpawns != requests || s.Lost != requests || s.Propagated+s.NewRoot != 0 {
				t.Errorf("%s: want %d, all lost", where, requests)
			}
			spawned--
		default:
			t.Errorf("%s: not a marked go statement", where)
		}
	}
	if spawned != 0 {
		t.Errorf("%d marked go statements have no spawn site: %+v", spawned, sum.SpawnSites)
	}
	for _, b := range r.breaks {
		if b.Kind == "log-without-trace" && len(b.Spawn) > 0 && b.ParentGoroutine == 0 {
			t.Errorf("break line of a spawned goroutine without its parent: %+v", b)
		}
	}
}

// checkLogRun checks what every run of testdata/slogsite must show: a
// clean exit, the program's own account, nothing lost, and a break line
// per distinct break. It returns the number of traced requests.
func checkLogRun(t *testing.T, r result, src string) uint64 {
	t.Helper()
	if r.code != 0 || len(r.summaries) != 1 {
		t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
	}
	requests, ok := selfCount(r.stdout, "requests")
	if health, _ := selfCount(r.stdout, "health"); !ok || requests == 0 || health != requests {
		t.Fatalf("the program's account is not in its output: %q", r.stdout)
	}
	sum := r.summaries[0]
	if sum.EventsLost == nil || *sum.EventsLost != 0 || sum.Unmatched != 0 {
		t.Errorf("events_lost %v, unmatched_checks %d; want 0", sum.EventsLost, sum.Unmatched)
	}
	if len(r.breaks) != len(sum.Breaks) {
		t.Errorf("%d break lines for %d distinct breaks", len(r.breaks), len(sum.Breaks))
	}
	for _, b := range r.breaks {
		if b.TraceID == "" || b.Goroutine == 0 || len(b.Stack) == 0 || b.Site.File != src {
			t.Errorf("break line lacks a trace, goroutine, stack or site in the program: %+v", b)
		}
	}
	return requests
}

// TestExportLogWithoutTrace: each log-without-trace of testdata/slogsite
// becomes a break span inside the request's trace in Jaeger, child of the
// request's server span (the service exports its own spans to the same
// Jaeger), at the log line, with the stack: one per marked line and
// request, and no other break span.
func TestExportLogWithoutTrace(t *testing.T) {
	requireRoot(t)
	j := startJaeger(t)
	src, err := filepath.Abs("testdata/slogsite/main.go")
	if err != nil {
		t.Fatal(err)
	}
	markers := logMarkers(t, src)
	service := fmt.Sprintf("slogsite-%d", time.Now().UnixNano())
	target := []string{"env", "OTEL_SERVICE_NAME=" + service, "OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.http,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", filepath.Join(bin, "slogsite")}
	r := ctxwatchWithEnv(t, []string{"OTEL_METRICS_EXPORTER=none"}, append([]string{"--otlp-rate", "1000",
		"--otlp-endpoint", "http://" + j.http, "--otlp-protocol", "http/protobuf", "--log-func", "main.logf", "--"}, target...)...)
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	requests, _ := selfCount(r.stdout, "requests")
	without := 0
	for _, m := range markers {
		if m == (marker{"log", "without"}) {
			without++
		}
	}
	want := int(requests) * without
	if requests == 0 || r.export == nil || r.export.Sent != uint64(want) || r.export.Dropped != 0 {
		t.Fatalf("%d requests, summary export %+v; want %d sent, 0 dropped; stderr:\n%s", requests, r.export, want, r.stderr)
	}

	traces := waitBreakSpans(t, j, service, "log-without-trace", int(requests), want, r.stderr)
	for _, tr := range traces {
		work := tr.named("work")
		if len(work) != 1 {
			continue // the test's count above says why
		}
		lines := map[int]int{}
		for _, s := range tr.Spans {
			if !strings.HasPrefix(s.OperationName, "trace break:") {
				continue
			}
			line, _ := strconv.Atoi(fmt.Sprint(s.tag("code.line.number")))
			lines[line]++
			where := fmt.Sprintf("break span %s %q at line %d", s.SpanID, s.OperationName, line)
			if s.OperationName != "trace break: log-without-trace" || markers[line] != (marker{"log", "without"}) {
				t.Errorf("%s: want log-without-trace at a line marked want:log without", where)
			}
			if p := s.ref("CHILD_OF"); p == nil || p.SpanID != work[0].SpanID {
				t.Errorf("%s: parent %+v, want the request's server span %s", where, p, work[0].SpanID)
			}
			if fmt.Sprint(s.tag("code.file.path")) != src || !strings.Contains(fmt.Sprint(s.tag("ctxwatch.stack")), fmt.Sprintf("main.go:%d", line)) {
				t.Errorf("%s: file %v, stack %v", where, s.tag("code.file.path"), s.tag("ctxwatch.stack"))
			}
		}
		for line, m := range markers {
			if m == (marker{"log", "without"}) && lines[line] != 1 {
				t.Errorf("trace %s: %d break spans at line %d, want 1", tr.TraceID, lines[line], line)
			}
		}
	}
}

// logToolchains are the releases TestLogToolchains builds
// testdata/slogcompat with: the first with log/slog, and compatCI's later
// ones.
var logToolchains = []string{"go1.21.13", "go1.24.13", "go1.27.4"}

// TestLogToolchains: the log record probe, placed by decoding log/slog's
// (*Logger).log and logAttrs, judges the same records in a program built by
// each release from the first with log/slog to the newest (toolchains
// fetched by the go command, as TestCompat's are).
func TestLogToolchains(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/slogcompat/main.go")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	markers := logMarkers(t, src)
	for _, tc := range logToolchains {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range map[string]string{"go.mod": "module example.com/slogcompat\n\ngo 1.21\n", "main.go": string(code)} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exe := filepath.Join(dir, "slogcompat")
			build := exec.Command("go", "build", "-o", exe, ".")
			build.Dir = dir
			build.Env = compatEnv(tc, false)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build with %s: %v\n%s", tc, err, out)
			}
			r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", exe)
			if r.code != 0 || len(r.summaries) != 1 {
				t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
			}
			units, ok := selfCount(r.stdout, "requests")
			if !ok || units == 0 {
				t.Fatalf("the program's account is not in its output: %q", r.stdout)
			}
			sum := r.summaries[0]
			var got, want []string
			for _, ls := range sum.LogSites {
				got = append(got, fmt.Sprintf("%d: %d/%d/%d", ls.Site.Line, ls.InsideTrace, ls.WithTrace, ls.WithoutTrace))
			}
			for _, b := range sum.Breaks {
				got = append(got, fmt.Sprintf("%d: %s %d", b.Site.Line, b.Kind, b.Count))
			}
			for line, m := range markers {
				if m.kind == "with" {
					want = append(want, fmt.Sprintf("%d: %d/%d/0", line, units, units))
				} else {
					want = append(want, fmt.Sprintf("%d: %d/0/%d", line, units, units), fmt.Sprintf("%d: log-without-trace %d", line, units))
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) || sum.EventsLost == nil || *sum.EventsLost != 0 {
				t.Errorf("built with %s: log sites and breaks %q, want %q (events lost %v)", tc, got, want, sum.EventsLost)
			}
		})
	}
}
