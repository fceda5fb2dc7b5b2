package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFailOnBreak: --fail-on-break turns a break into exit status 3, and
// without a break the command's own status is kept.
func TestFailOnBreak(t *testing.T) {
	requireRoot(t)
	key := []string{"--fail-on-break", "--trace-key", "type=main.traceKey", "--"}
	if r := ctxwatch(t, append(key, filepath.Join(bin, "background"))...); r.code != 3 {
		t.Errorf("background with --fail-on-break: exit %d, want 3; stderr:\n%s", r.code, r.stderr)
	}
	if r := ctxwatch(t, append(key, filepath.Join(bin, "closure"))...); r.code != 0 {
		t.Errorf("closure with --fail-on-break: exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
	// A failing command's status comes through, Go or not.
	if r := ctxwatch(t, append(key, filepath.Join(bin, "storm"), "-n", "7", "-lose", "2")...); r.code != 2 {
		t.Errorf("storm with bad flags: exit %d, want its own 2; stderr:\n%s", r.code, r.stderr)
	}
	if r := ctxwatch(t, "--", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("sh -c 'exit 7': exit %d, want 7; stderr:\n%s", r.code, r.stderr)
	}
}

// TestGoTestExec: ctxwatch as the -exec of go test fails the test run of a
// package that loses a trace, naming the line.
func TestGoTestExec(t *testing.T) {
	requireRoot(t)
	out := filepath.Join(t.TempDir(), "report.json")
	exe := fmt.Sprintf("%s --fail-on-break --format json --output %s --trace-key type=github.com/ctxwatch/ctxwatch/examples/gotest.traceKey --",
		filepath.Join(bin, "ctxwatch"), out)
	cmd := exec.Command("go", "test", "-count=1", "-exec", exe, "../examples/gotest")
	output, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("go test under ctxwatch --fail-on-break: %v, want it to fail; output:\n%s", err, output)
	}
	breaks, _ := readReport(t, out)
	src, _ := filepath.Abs("../examples/gotest/audit.go")
	markers := sourceMarkers(t, src)
	if len(breaks) != 1 {
		t.Fatalf("want 1 break, got %+v; go test output:\n%s", breaks, output)
	}
	b := breaks[0]
	if b.Kind != "lost-at-spawn" || b.Site.File != src || markers[b.Site.Line] != (marker{"site", "lost-at-spawn"}) {
		t.Errorf("break %+v is not at the marked site", b)
	}
	if b.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %q, want the test's", b.TraceID)
	}
}

// TestGoRun: ctxwatch -- go run follows the go command to the program it
// builds, probes it before its main runs, and leaves the toolchain alone.
func TestGoRun(t *testing.T) {
	requireRoot(t)
	r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", "go", "run", "../examples/background")
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	if len(r.summaries) != 1 || r.summaries[0].Executable != "background" {
		t.Fatalf("want one summary, of the example; got %+v", r.summaries)
	}
	want, _ := selfCount(r.stdout, "lost")
	got := r.summaries[0].Breaks
	if want == 0 || len(got) != 1 || got[0].Kind != "lost-at-spawn" || got[0].Count != want {
		t.Errorf("breaks %+v, want %d lost-at-spawn (program said %q)", got, want, r.stdout)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watchPID starts ctxwatch --pid on a waiter (JSON to a file) and returns
// once it has attached.
func watchPID(t *testing.T, pid int, extra ...string) (cw *exec.Cmd, out string, stderr *syncBuffer) {
	t.Helper()
	out = filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"--verbose", "--format", "json", "--output", out, "--trace-key", "type=main.traceKey"}, extra...)
	cw = exec.Command(filepath.Join(bin, "ctxwatch"), append(args, "--pid", fmt.Sprint(pid))...)
	stderr = &syncBuffer{}
	cw.Stderr = stderr
	if err := cw.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ctxwatch to attach", 30*time.Second, func() bool {
		return strings.Contains(stderr.String(), "watching pid")
	})
	return cw, out, stderr
}

// TestAttachPID: --pid attaches to a process already running, reports what
// happens after, and ends with it.
func TestAttachPID(t *testing.T) {
	requireRoot(t)
	target, stdin, lines := startWaiter(t, filepath.Join(bin, "waiter"))
	go func() {
		for lines.Scan() {
		}
	}()
	cw, out, stderr := watchPID(t, target.Process.Pid)
	runWaiter(t, target, cw, stdin, out, stderr, 5)
}

// TestDetachOnSignal: Ctrl-C (SIGINT) or SIGTERM detaches ctxwatch from a
// running process, which goes on unharmed and unwatched; what was seen
// until then is reported.
func TestDetachOnSignal(t *testing.T) {
	requireRoot(t)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			target, stdin, lines := startWaiter(t, filepath.Join(bin, "waiter"))
			cw, out, stderr := watchPID(t, target.Process.Pid)
			const units = 3
			for i := range units {
				fmt.Fprintln(stdin, "go")
				if !lines.Scan() || lines.Text() != fmt.Sprint("done ", i+1) {
					t.Fatalf("waiter: %q", lines.Text())
				}
			}
			cw.Process.Signal(sig)
			if err := cw.Wait(); err != nil {
				t.Fatalf("ctxwatch after %v: %v; stderr:\n%s", sig, err, stderr.String())
			}
			checkWaiter(t, out, units)
			// The target goes on, unwatched.
			fmt.Fprintln(stdin, "go")
			if !lines.Scan() || lines.Text() != fmt.Sprint("done ", units+1) {
				t.Fatalf("waiter after detach: %q", lines.Text())
			}
			stdin.Close()
			if err := target.Wait(); err != nil {
				t.Errorf("waiter after detach: %v", err)
			}
		})
	}
}

// startWaiter starts the waiter program at exe (or a command that executes
// it, with args) and waits for its "ready": what the test types goes to
// stdin, what it answers comes in lines.
func startWaiter(t *testing.T, exe string, args ...string) (target *exec.Cmd, stdin io.WriteCloser, lines *bufio.Scanner) {
	t.Helper()
	target = exec.Command(exe, args...)
	stdin, err := target.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := target.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill() })
	lines = bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("waiter did not start: %q", lines.Text())
	}
	return target, stdin, lines
}

// runWaiter has the watched waiter do units traced units of work, lets
// it exit, and checks ctxwatch's report of them.
func runWaiter(t *testing.T, target, cw *exec.Cmd, stdin io.WriteCloser, out string, stderr *syncBuffer, units uint64) {
	t.Helper()
	for range units {
		fmt.Fprintln(stdin, "go")
	}
	stdin.Close()
	if err := target.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Wait(); err != nil {
		t.Fatalf("ctxwatch: %v; stderr:\n%s", err, stderr.String())
	}
	checkWaiter(t, out, units)
}

func checkWaiter(t *testing.T, out string, units uint64) {
	t.Helper()
	_, sums := readReport(t, out)
	if len(sums) != 1 || len(sums[0].SpawnSites) != 1 {
		t.Fatalf("want one summary with one spawn site, got %+v", sums)
	}
	s := sums[0].SpawnSites[0]
	src, _ := filepath.Abs("testdata/waiter/main.go")
	if s.Site.File != src || sourceMarkers(t, src)[s.Site.Line] != (marker{"spawn", "lost-at-spawn"}) ||
		s.TracedSpawns != units || s.Lost != units {
		t.Errorf("spawn site %+v, want %d lost at the marked line", s, units)
	}
}

func init() {
	// The go command run by the tests must not pick another toolchain.
	os.Setenv("GOTOOLCHAIN", "local")
}
