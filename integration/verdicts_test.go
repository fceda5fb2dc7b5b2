package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestGin: gin's *gin.Context is a context ctxwatch cannot walk; the span
// the OTel SDK makes from it decides. testdata/gin serves an otelgin
// engine without ContextWithFallback, where tracer.Start(c, ...) is a new
// root while the server span is open (dropped), and one with it, where the
// same call makes a child (nothing).
func TestGin(t *testing.T) {
	frameworkExample(t, "gin")
}

// TestFiber: fiber's c.Context(), a *fasthttp.RequestCtx, is a context
// ctxwatch cannot walk, and it never holds the span otelfiber put into
// c.UserContext(). testdata/fiber serves an otelfiber app where
// tracer.Start(c.Context(), ...) is a new root while the server span is
// open (dropped), and tracer.Start(c.UserContext(), ...) a child
// (nothing).
func TestFiber(t *testing.T) {
	frameworkExample(t, "fiber")
}

// frameworkExample builds testdata/name (a module of its own, so that the
// framework stays out of ctxwatch's go.mod), runs it under ctxwatch, and
// checks the program's own account, "name: requests N dropped N/2
// children N/2", and the breaks against its markers.
func frameworkExample(t *testing.T, name string) {
	t.Helper()
	requireRoot(t)
	dir, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(bin, name)
	// -mod=mod: go.sum may be completed from the module proxy.
	build := exec.Command("go", "build", "-mod=mod", "-o", exe, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/%s: %v\n%s", name, err, out)
	}
	r := ctxwatch(t, "--", exe)
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	// The program's own account: each handler did what this test is about
	// (a framework release that changed where the span is found would show
	// here).
	out := strings.TrimSpace(r.stdout)
	if !strings.Contains(out, name+": requests ") {
		t.Fatalf("the program's summary line is not in its output: %q", out)
	}
	requests, _ := selfCount(out, "requests")
	dropped, _ := selfCount(out, "dropped")
	children, _ := selfCount(out, "children")
	if requests == 0 || dropped != requests/2 || children != requests/2 {
		t.Fatalf("the program: %q; want half its requests dropped, half children", out)
	}
	checkExample(t, filepath.Join(dir, "main.go"), r)
}

// TestKeyValueSecret: a named key type with several values is a trace key
// only with the value named (--trace-key type=main.ctxKey,value=trace_id):
// examples/keyvalue keeps user ids under the same type, value "user", and
// they must be in nothing ctxwatch writes (table, JSON lines, --verbose
// logs, on standard output and error), while the trace id that the
// program overwrites under "trace_id" is reported as overwritten. The
// control, with value=user named instead, shows the user ids: the test
// would see them if they leaked.
func TestKeyValueSecret(t *testing.T) {
	requireRoot(t)
	exe := filepath.Join(bin, "keyvalue")
	users := []string{"user-secret-4242", "user-secret-9090", "user-secret-1313"}
	key := []string{"--trace-key", "type=main.ctxKey,value=trace_id"}
	runs := []struct {
		name string
		args []string
		want []string // in standard output
	}{
		{"json", []string{"--format", "json"}, []string{`"kind":"overwritten"`, `"kind":"lost-at-spawn"`}},
		{"json verbose", []string{"--format", "json", "--verbose"}, []string{`"kind":"overwritten"`}},
		{"table", []string{"--format", "table"}, []string{"overwritten", "lost-at-spawn"}},
		{"table verbose", []string{"--format", "table", "--verbose"}, []string{"overwritten"}},
	}
	for _, run := range runs {
		stdout, stderr := runCtxwatch(t, append(append(append([]string{}, key...), run.args...), "--", exe)...)
		if !strings.Contains(stdout, "keyvalue: requests ") {
			t.Errorf("%s: the program's summary line is not in the output:\n%s", run.name, stdout)
		}
		for _, w := range run.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: %q not reported:\n%s", run.name, w, stdout)
			}
		}
		for _, u := range users {
			leaks := leakFinder(u)
			for what, text := range map[string]string{"stdout": stdout, "stderr": stderr} {
				if found := leaks(text); found != "" {
					t.Errorf("%s: a user id (as %q) is in ctxwatch's %s:\n%s", run.name, found, what, text)
				}
			}
		}
	}
	// With the user key named, its values are trace values, reported.
	stdout, _ := runCtxwatch(t, "--trace-key", "type=main.ctxKey,value=user", "--format", "json", "--", exe)
	if leakFinder(users[0])(stdout) == "" && leakFinder(users[1])(stdout) == "" {
		t.Errorf("with value=user the user ids are not reported: the test would not see a leak:\n%s", stdout)
	}
	// The same type with no value names no key that this test can rely
	// on: it is refused or it reads no user id.
	stdout, stderr, code := runCtxwatchCode(t, "--trace-key", "type=main.ctxKey", "--format", "json", "--", exe)
	for _, u := range users {
		if found := leakFinder(u)(stdout + stderr); found != "" {
			t.Errorf("--trace-key type=main.ctxKey (exit %d): a user id (as %q) is in the output:\n%s\n%s", code, found, stdout, stderr)
		}
	}
}

// runCtxwatch runs ctxwatch with args, which must succeed, and returns
// what it wrote to standard output (the target's output and the report)
// and standard error.
func runCtxwatch(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, code := runCtxwatchCode(t, args...)
	if code != 0 {
		t.Fatalf("ctxwatch %v exited %d; stderr:\n%s", args, code, stderr)
	}
	return stdout, stderr
}

// runCtxwatchCode is runCtxwatch for a run that may fail: it returns the
// exit code too.
func runCtxwatchCode(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "ctxwatch"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ctxwatch: %v", err)
	}
	return out.String(), errOut.String(), code
}

// TestStaleParent: examples/staleparent, as a user reads it in each
// output. Per request, the buggy loop (`ctx, span = tracer.Start(ctx,
// "item")`, items spans each ended in its iteration) starts items-1 spans
// on an ended item, the first on the open request span; the audit starts
// one on its own ended span. So, exactly: requests*(items-1) stale-parent
// at the loop's Start line and requests at the audit-log line, nothing
// else: the fixed loop, and the goroutines that start spans on the ended
// request span (one after re-attaching it to Background), are silent. The
// JSON line names the ended parent and the new span of one trace, with
// the stack from the Start line up; the table and --verbose stacks show
// the same.
func TestStaleParent(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs(filepath.Join("..", "examples", "staleparent", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var loopLine, auditLine int
	for line, m := range sourceMarkers(t, src) {
		if m != (marker{"site", "stale-parent"}) {
			continue
		}
		switch text := sourceLine(t, src, line); {
		case strings.Contains(text, `"item"`):
			loopLine = line
		case strings.Contains(text, `"audit-log"`):
			auditLine = line
		}
	}
	if loopLine == 0 || auditLine == 0 {
		t.Fatalf("markers not found in %s: loop %d, audit %d", src, loopLine, auditLine)
	}
	exe := filepath.Join(bin, "staleparent")
	r := ctxwatch(t, "--", exe)
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	requests, _ := selfCount(r.stdout, "requests")
	items, _ := selfCount(r.stdout, "items")
	if requests == 0 || items < 2 {
		t.Fatalf("the program: %q; want requests of several items", r.stdout)
	}
	if len(r.summaries) != 1 {
		t.Fatalf("%d summaries; stderr:\n%s", len(r.summaries), r.stderr)
	}
	want := map[int]uint64{loopLine: requests * (items - 1), auditLine: requests}
	got := map[int]uint64{}
	for _, b := range r.summaries[0].Breaks {
		if b.Kind != "stale-parent" || b.Site.File != src {
			t.Errorf("break %s at %s:%d, want only stale-parent in the example", b.Kind, b.Site.File, b.Site.Line)
			continue
		}
		got[b.Site.Line] += b.Count
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stale-parent per line %v, want %v (loop at %d, audit at %d)", got, want, loopLine, auditLine)
	}
	// Each Start line's retention: the spans started on a parent span of
	// their own goroutine, kept (open parent) and stale. The request span
	// (on Background) and the two goroutines' spans (on the request span,
	// which another goroutine started) are never counted.
	fixedLine := lineOf(t, src, `itemCtx, span := tracer.Start(ctx, "item")`)
	auditOpenLine := lineOf(t, src, `ctx, span := tracer.Start(ctx, "audit")`)
	wantStarts := map[int]startSite{
		fixedLine:     {Started: requests * items, Kept: requests * items},
		loopLine:      {Started: requests * items, Kept: requests, Stale: requests * (items - 1)},
		auditOpenLine: {Started: requests, Kept: requests},
		auditLine:     {Started: requests, Stale: requests},
	}
	gotStarts := map[int]startSite{}
	for _, ss := range r.summaries[0].StartSites {
		if ss.Site.File != src {
			t.Errorf("start site %s:%d (%s), want only the example's", ss.Site.File, ss.Site.Line, ss.Site.Function)
			continue
		}
		line := ss.Site.Line
		if _, dup := gotStarts[line]; dup {
			t.Errorf("start site main.go:%d listed twice", line)
		}
		if w := wantStarts[line]; ss.Retention == nil || *ss.Retention != float64(w.Kept)/float64(w.Started) {
			t.Errorf("start site main.go:%d: retention %v, want %d/%d", line, ss.Retention, w.Kept, w.Started)
		}
		ss.Site, ss.Retention = frame{}, nil
		gotStarts[line] = ss
	}
	if !reflect.DeepEqual(gotStarts, wantStarts) {
		t.Errorf("start sites %+v, want %+v (fixed loop %d, loop %d, audit %d, audit-log %d)",
			gotStarts, wantStarts, fixedLine, loopLine, auditOpenLine, auditLine)
	}

	if len(r.breaks) != 2 {
		t.Fatalf("%d break lines, want 2: %+v", len(r.breaks), r.breaks)
	}
	hexID := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, b := range r.breaks {
		where := fmt.Sprintf("break line at %d", b.Site.Line)
		if !hexID.MatchString(b.ParentSpanID) || !hexID.MatchString(b.SpanID) || b.ParentSpanID == b.SpanID {
			t.Errorf("%s: parent_span_id %q, span_id %q: want two span ids", where, b.ParentSpanID, b.SpanID)
		}
		if len(b.TraceID) != 32 || b.OtherTraceID != "" || len(b.Spawn) != 0 || b.ParentGoroutine != 0 {
			t.Errorf("%s: %+v, want one trace, no other, no spawn", where, b)
		}
		if len(b.Stack) < 3 || b.Stack[0] != b.Site || b.Stack[1].Function != "main.handle" || b.Stack[2].Function != "main.main" {
			t.Errorf("%s: stack %+v, want the Start line, main.handle, main.main", where, b.Stack)
		}
	}

	// The table, with --verbose stacks: one row per line, the same counts.
	stdout, _ := runCtxwatch(t, "--format", "table", "--verbose", "--", exe)
	for line, n := range want {
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^stale-parent\s+%d\s+\S+ main\.go:%d\s+-$`, n, line))
		if !row.MatchString(stdout) {
			t.Errorf("table: no row stale-parent %d at main.go:%d:\n%s", n, line, stdout)
		}
	}
	if !strings.Contains(stdout, "stack of stale-parent at ") {
		t.Errorf("table --verbose: no stale-parent stack:\n%s", stdout)
	}
	// The Start sites, one row each.
	for line, w := range wantStarts {
		ret := fmt.Sprintf("%.1f%%", 100*float64(w.Kept)/float64(w.Started))
		row := regexp.MustCompile(fmt.Sprintf(`(?m)^\S+ main\.go:%d\s+%d\s+%d\s+%d\s+%s$`, line, w.Started, w.Kept, w.Stale, regexp.QuoteMeta(ret)))
		if !row.MatchString(stdout) {
			t.Errorf("table: no start site row %d %d %d %s at main.go:%d:\n%s", w.Started, w.Kept, w.Stale, ret, line, stdout)
		}
	}
}

// lineOf returns the number (from 1) of the one line of file path that
// contains text.
func lineOf(t *testing.T, path, text string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, text) {
			if n != 0 {
				t.Fatalf("%s: %q on lines %d and %d", path, text, n, i+1)
			}
			n = i + 1
		}
	}
	if n == 0 {
		t.Fatalf("%s: no line with %q", path, text)
	}
	return n
}

// sourceLine returns line n (from 1) of file path.
func sourceLine(t *testing.T, path string, n int) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		t.Fatalf("%s has no line %d", path, n)
	}
	return lines[n-1]
}

// TestStartSiteHelpers: a Start site is counted at the line a stale-parent
// break is reported at when Start is called through a user helper, out of
// line or inlined, and through the otel package's global delegate tracer
// (a library frame between the user's line and the SDK's Start, climbed
// by the probes).
func TestStartSiteHelpers(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs(filepath.Join("testdata", "startsites", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	r := ctxwatch(t, "--", filepath.Join(bin, "startsites"))
	if r.code != 0 {
		t.Fatalf("ctxwatch exited %d; stderr:\n%s", r.code, r.stderr)
	}
	requests, _ := selfCount(r.stdout, "requests")
	steps, _ := selfCount(r.stdout, "steps")
	if requests == 0 || steps < 2 || len(r.summaries) != 1 {
		t.Fatalf("the program: %q, %d summaries; stderr:\n%s", r.stdout, len(r.summaries), r.stderr)
	}
	helper := lineOf(t, src, "// want:start helper")
	inlined := lineOf(t, src, "// want:start inlined")
	delegate := lineOf(t, src, "// want:start delegate")
	stale := startSite{Started: requests * steps, Kept: requests, Stale: requests * (steps - 1)}
	want := map[int]startSite{helper: stale, inlined: {Started: requests * steps, Kept: requests * steps}, delegate: stale}
	got := map[int]startSite{}
	for _, ss := range r.summaries[0].StartSites {
		if ss.Site.File != src {
			t.Errorf("start site %s:%d (%s), want only the program's", ss.Site.File, ss.Site.Line, ss.Site.Function)
			continue
		}
		line := ss.Site.Line
		ss.Site, ss.Retention = frame{}, nil
		got[line] = ss
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("start sites %+v, want %+v (helper %d, inlined %d, delegate %d)", got, want, helper, inlined, delegate)
	}
	breaks := map[int]uint64{}
	for _, b := range r.summaries[0].Breaks {
		if b.Kind == "stale-parent" && b.Site.File == src {
			breaks[b.Site.Line] += b.Count
		}
	}
	if wantBreaks := map[int]uint64{helper: stale.Stale, delegate: stale.Stale}; !reflect.DeepEqual(breaks, wantBreaks) {
		t.Errorf("stale-parent breaks per line %v, want %v: the Start sites' lines", breaks, wantBreaks)
	}
}
