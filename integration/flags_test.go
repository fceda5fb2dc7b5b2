package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckFunc: a function of the user's own that takes a context is a
// check once named with --check-func, and is not without it.
func TestCheckFunc(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/checkfunc/main.go")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(bin, "checkfunc")
	r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--check-func", "main.process", "--", target)
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", r.code, r.stderr)
	}
	checkExample(t, src, r)

	r = ctxwatch(t, "--trace-key", "type=main.traceKey", "--", target)
	if len(r.summaries) != 1 {
		t.Fatalf("want one summary, got %d; stderr:\n%s", len(r.summaries), r.stderr)
	}
	s := r.summaries[0]
	for _, site := range s.SpawnSites {
		if site.Propagated+site.Lost+site.NewRoot != 0 {
			t.Errorf("without --check-func, %+v was judged", site)
		}
	}
	if len(s.Breaks) != 0 {
		t.Errorf("without --check-func: breaks %+v", s.Breaks)
	}

	// Not in this binary: said, and the rest is watched all the same.
	r = ctxwatch(t, "--check-func", "main.nosuch", "--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "background"))
	if r.code != 0 || !strings.Contains(r.stderr, "--check-func main.nosuch not watched") {
		t.Errorf("unknown --check-func: exit %d, stderr %q; want it named", r.code, r.stderr)
	}
	if len(r.summaries) != 1 || len(r.summaries[0].Breaks) != 1 {
		t.Errorf("unknown --check-func: the program was not watched: %+v", r.summaries)
	}
}

// TestDuration: --duration stops watching a process that goes on running,
// and reports what was seen.
func TestDuration(t *testing.T) {
	requireRoot(t)
	target, stdin, lines := startWaiter(t, filepath.Join(bin, "waiter"))
	start := time.Now()
	cw, out, stderr := watchPID(t, target.Process.Pid, "--duration", "2s")
	fmt.Fprintln(stdin, "go")
	lines.Scan()
	if err := cw.Wait(); err != nil {
		t.Fatalf("ctxwatch: %v; stderr:\n%s", err, stderr.String())
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("ctxwatch --duration 2s returned after %v", d)
	}
	checkWaiter(t, out, 1)
	fmt.Fprintln(stdin, "go")
	if !lines.Scan() || lines.Text() != "done 2" {
		t.Errorf("waiter after ctxwatch's --duration: %q", lines.Text())
	}
}

// TestLiveTable: on a terminal the table is redrawn while the program runs,
// and the summary is printed when it exits. The terminal is a tmux pane.
func TestLiveTable(t *testing.T) {
	requireRoot(t)
	tmux, session := inTmux(t, fmt.Sprintf("%s --trace-key type=main.traceKey -- %s; sleep 30",
		filepath.Join(bin, "ctxwatch"), filepath.Join(bin, "waiter")))
	var last string
	screen := func() string {
		last = tmux("capture-pane", "-p", "-t", session)
		return last
	}
	defer func() {
		if t.Failed() {
			t.Logf("the terminal last showed:\n%s", last)
		}
	}()

	// Not the waiter's "ready": the table's redraw clears the screen each
	// second and may wipe it before a capture sees it. With -- CMD the
	// probes are in before the waiter runs, and what is typed waits in its
	// terminal until it reads it.
	waitFor(t, "the live table", 30*time.Second, func() bool { return strings.Contains(screen(), "ctxwatch watching") })
	tmux("send-keys", "-t", session, "go", "Enter")
	waitFor(t, "the live table to show the spawn site", 30*time.Second, func() bool {
		s := screen()
		return strings.Contains(s, "ctxwatch watching") && strings.Contains(s, "main.handle main.go:") && strings.Contains(s, "lost-at-spawn")
	})
	tmux("send-keys", "-t", session, "C-d")
	waitFor(t, "the summary", 30*time.Second, func() bool { return strings.Contains(screen(), "ctxwatch summary") })
}

// TestQuietOutsideChecks: context calls that show nothing new (outside any
// trace, or inside one that they carry on) are probe hits that send no
// event to the agent.
func TestQuietOutsideChecks(t *testing.T) {
	requireRoot(t)
	const n = 100000
	for _, op := range []string{"withvalue", "withvalue-traced"} {
		r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "target"), "-op", op, "-n", fmt.Sprint(n))
		if r.code != 0 || len(r.summaries) != 1 {
			t.Fatalf("%s: exit %d, %d summaries; stderr:\n%s", op, r.code, len(r.summaries), r.stderr)
		}
		// The only events allowed are spawns of the runtime's GC workers
		// while the traced goroutine allocates (a few per GC cycle, dropped
		// by the analysis): none per call.
		s := r.summaries[0]
		if s.ProbeHits < n || s.Events > 16 || len(s.Breaks) != 0 || len(s.SpawnSites) != 0 {
			t.Errorf("%s: %d probe hits, %d events, breaks %+v, spawn sites %+v; want >= %d hits, no event per call",
				op, s.ProbeHits, s.Events, s.Breaks, s.SpawnSites, n)
		}
	}
}

// inTmux runs the shell command cmd in a new detached tmux session, a
// 160x40 terminal killed when the test ends, and returns a runner of tmux
// commands and the session's name.
func inTmux(t *testing.T, cmd string) (tmux func(args ...string) string, session string) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed to give ctxwatch a terminal: apt-get install tmux")
	}
	session = fmt.Sprintf("ctxwatch-test-%d", time.Now().UnixNano())
	// A server of the test's own (-S: its own socket, in the test's
	// temporary directory), not the default one: a session killed at the
	// end of one test makes a shared server exit while the next test's
	// new-session may already be talking to it ("server exited
	// unexpectedly", seen under TCG, where that window is wide).
	socket := filepath.Join(t.TempDir(), "tmux")
	tmux = func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd)
	t.Cleanup(func() { exec.Command("tmux", "-S", socket, "kill-server").Run() })
	return tmux, session
}

// TestVerboseStacks: with --verbose the table shows, under a break, the
// user frames of its check: for a Start inside a shared helper, the line
// three calls up where the handler took context.Background().
func TestVerboseStacks(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs(filepath.Join("..", "examples", "deepstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var site, took int
	for line, m := range sourceMarkers(t, src) {
		switch m {
		case marker{"site", "dropped"}:
			site = line
		case marker{"stack", "dropped"}:
			took = line
		}
	}
	if site == 0 || took == 0 {
		t.Fatalf("deepstart lacks its markers (site %d, stack %d)", site, took)
	}
	out := filepath.Join(t.TempDir(), "table.txt")
	cmd := exec.Command(filepath.Join(bin, "ctxwatch"), append(sourceFlags(t, src), "--verbose", "--output", out, "--", filepath.Join(bin, "deepstart"))...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctxwatch: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	table := string(data)
	head := fmt.Sprintf("stack of dropped at main.query main.go:%d\n", site)
	i := strings.Index(table, head)
	if i < 0 {
		t.Fatalf("no stack section %q in the table:\n%s", head, table)
	}
	section := table[i+len(head):]
	if j := strings.Index(section, "\n\n"); j >= 0 {
		section = section[:j]
	}
	want := []string{
		fmt.Sprintf("    main.query main.go:%d", site),
		fmt.Sprintf("    main.handler main.go:%d", took),
	}
	lines := strings.Split(section, "\n")
	k := 0
	for _, l := range lines {
		if k < len(want) && l == want[k] {
			k++
		}
	}
	if k != len(want) {
		t.Errorf("stack under %q lacks, in order, %q:\n%s", head, want, section)
	}
}
