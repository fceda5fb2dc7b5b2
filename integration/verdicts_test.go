package integration

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
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
