package integration

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// The target is never harmed, and the agent's faults end in one clear
// line: the soak target under ctxwatch and under repeated attach and
// detach, kill -9 of ctxwatch, a target that exits while ctxwatch
// attaches, a pid reused by another process, a target that executes
// another program.

// soakCalls is how many probed calls TestSoak's target makes (make soak:
// the same test with CTXWATCH_SOAK_CALLS set).
const soakCalls = 10_000_000

// soakResult is the soak target's own closing line.
var soakRE = regexp.MustCompile(`soak: calls (\d+) units (\d+) kept (\d+) lost (\d+) traced-kept (\d+) traced-lost (\d+) panics (\d+) preempt-loops (\d+) ok`)

// TestSoak runs the soak target under ctxwatch: 64 goroutines at a time,
// replaced as they exit, make soakCalls probed calls from deep recursion
// (stacks copied while probes read frames), under GC pressure, with tight
// loops that are preempted asynchronously and panics recovered across
// probed calls. The target checks its own results and must exit 0; no
// event may be lost; every call must have hit a probe; and what ctxwatch
// reports must match what the target counted: the traced spawns it kept
// propagated, those it started on Background lost at the marked line.
func TestSoak(t *testing.T) {
	requireRoot(t)
	calls := uint64(soakCalls)
	if s := os.Getenv("CTXWATCH_SOAK_CALLS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CTXWATCH_SOAK_CALLS=%q: %v", s, err)
		}
		calls = n
	}
	start := time.Now()
	r := ctxwatch(t, "--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "soak"), "-calls", fmt.Sprint(calls))
	t.Logf("%d probed calls under ctxwatch in %s", calls, time.Since(start).Round(time.Second))
	if r.code != 0 {
		t.Fatalf("soak under ctxwatch: exit %d\nstdout: %s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	m := soakRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("soak did not report success: %q", r.stdout)
	}
	t.Log(m[0])
	n := func(i int) uint64 { v, _ := strconv.ParseUint(m[i], 10, 64); return v }
	made, tracedKept, tracedLost := n(1), n(5), n(6)
	if made < calls {
		t.Errorf("soak made %d probed calls, want at least %d", made, calls)
	}
	if len(r.summaries) != 1 {
		t.Fatalf("%d summaries, want 1\n%s", len(r.summaries), r.stderr)
	}
	s := r.summaries[0]
	if s.EventsLost == nil || *s.EventsLost != 0 {
		t.Errorf("events_lost %v, want 0 (present, and nothing lost)", s.EventsLost)
	}
	if s.ProbeHits < made {
		t.Errorf("probe hits %d, fewer than the %d probed calls the soak made", s.ProbeHits, made)
	}
	src, _ := filepath.Abs("testdata/soak/main.go")
	markers := sourceMarkers(t, src)
	var kept, lost spawnSite
	for _, site := range s.SpawnSites {
		switch markers[site.Site.Line] {
		case marker{"spawn", "propagated"}:
			kept = site
		case marker{"spawn", "lost-at-spawn"}:
			lost = site
		default:
			t.Errorf("spawn site %+v is not a marked line of the soak", site)
		}
	}
	if kept.TracedSpawns != tracedKept || kept.Propagated != tracedKept || kept.Lost+kept.NewRoot != 0 {
		t.Errorf("kept spawn site %+v, want %d traced spawns, all propagated", kept, tracedKept)
	}
	if lost.TracedSpawns != tracedLost || lost.Lost != tracedLost {
		t.Errorf("lost spawn site %+v, want %d traced spawns, all lost", lost, tracedLost)
	}
	if len(s.Breaks) != 1 || s.Breaks[0].Kind != "lost-at-spawn" || s.Breaks[0].Count != tracedLost ||
		markers[s.Breaks[0].Site.Line] != (marker{"site", "lost-at-spawn"}) {
		t.Errorf("breaks %+v, want %d lost-at-spawn at the marked site", s.Breaks, tracedLost)
	}
}

// startSoak starts the soak target running until its standard input is
// closed.
func startSoak(t *testing.T) (cmd *exec.Cmd, stdin io.WriteCloser, stdout *syncBuffer) {
	t.Helper()
	cmd = exec.Command(filepath.Join(bin, "soak"), "-until-eof")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, "the soak to start", 30*time.Second, func() bool { return strings.Contains(stdout.String(), "ready") })
	return cmd, stdin, stdout
}

// TestSoakAttachDetach attaches ctxwatch --pid to the running soak target
// and detaches it (SIGINT) 50 times. Each time ctxwatch must say it is
// watching, see probe hits, and exit 0 when interrupted; the soak must
// then finish its work and its own checks with exit status 0, and no
// breakpoint may be left in its code.
func TestSoakAttachDetach(t *testing.T) {
	requireRoot(t)
	const cycles = 50
	soak, stdin, out := startSoak(t)
	pid := soak.Process.Pid
	addrs := probeAddrs(t, pid)
	start := time.Now()
	for i := range cycles {
		cw, report, stderr := watchPID(t, pid, "--overhead-budget", "0")
		time.Sleep(100 * time.Millisecond)
		cw.Process.Signal(os.Interrupt)
		if err := waitCmd(cw, time.Minute); err != nil {
			t.Fatalf("cycle %d: ctxwatch after SIGINT: %v; stderr:\n%s", i, err, stderr.String())
		}
		_, sums := readReport(t, report)
		if len(sums) != 1 || sums[0].ProbeHits == 0 {
			t.Fatalf("cycle %d: summaries %+v, want one with probe hits", i, sums)
		}
		if soak.ProcessState != nil {
			t.Fatalf("cycle %d: the soak exited: %s", i, out.String())
		}
	}
	t.Logf("%d attach/detach cycles in %s", cycles, time.Since(start).Round(time.Second))
	if n := int3s(t, pid, addrs); n != 0 {
		t.Errorf("%d breakpoints left in the soak after the last detach", n)
	}
	stdin.Close()
	if err := waitCmd(soak, 2*time.Minute); err != nil {
		t.Fatalf("soak after %d attach/detach cycles: %v\n%s", cycles, err, out.String())
	}
	if !soakRE.MatchString(out.String()) {
		t.Errorf("soak did not report success: %q", out.String())
	}
}

// waitCmd waits for cmd to exit, killing it after d: a hang is an error,
// not a stuck test. $CTXWATCH_TEST_SLOW multiplies d, as for waitFor.
func waitCmd(cmd *exec.Cmd, d time.Duration) error {
	d = slowed(d)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("still running after %v: killed", d)
	}
}

// probeAddrs plans ctxwatch's probes for process pid as the agent does
// and returns their run-time addresses, each with the bytes the executable
// file has there (as many as a breakpoint takes).
func probeAddrs(t *testing.T, pid int) map[uint64]string {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	bin, err := target.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	plan, err := uprobe.NewPlan(bin, uprobe.Options{TraceKeys: []uprobe.TraceKey{{Kind: uprobe.KeyType, Name: "main.traceKey"}}})
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	bias, err := uprobe.LoadBias(pid, ef)
	if err != nil {
		t.Fatal(err)
	}
	_, points, err := plan.ForProcess(pid, bias, bin.FileOffset)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	addrs := map[uint64]string{}
	for _, pt := range points {
		b := make([]byte, len(uprobeBreakpoint()))
		if _, err := f.ReadAt(b, int64(pt.FileOffset)); err != nil {
			t.Fatal(err)
		}
		if string(b) == uprobeBreakpoint() {
			t.Fatalf("%s at %#x is a breakpoint in the file itself", pt.Func, pt.Address)
		}
		addrs[pt.Address] = string(b)
	}
	if len(addrs) == 0 {
		t.Fatal("no probe planned")
	}
	return addrs
}

// uprobeBreakpoint is the instruction the kernel writes where a uprobe
// is (UPROBE_SWBP_INSN): int3 on amd64, BRK #0x5 on arm64.
func uprobeBreakpoint() string {
	if runtime.GOARCH == "arm64" {
		return "\xa0\x00\x20\xd4" // 0xd42000a0, little-endian
	}
	return "\xcc"
}

// int3s counts the addresses where process pid's memory holds a uprobe's
// breakpoint (uprobeBreakpoint: an int3 on amd64) in place of the file's
// bytes.
func int3s(t *testing.T, pid int, addrs map[uint64]string) int {
	t.Helper()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	n := 0
	for a, want := range addrs {
		b := make([]byte, len(want))
		if _, err := mem.ReadAt(b, int64(a)); err != nil {
			t.Fatalf("read pid %d's memory at %#x: %v", pid, a, err)
		}
		switch string(b) {
		case want:
		case uprobeBreakpoint():
			n++
		default:
			t.Errorf("pid %d has % x at %#x, the file % x", pid, b, a, want)
		}
	}
	return n
}

// bpfObjects returns the ids of the BPF programs and links that process
// pid holds (from its fdinfo).
func bpfObjects(t *testing.T, pid int) (progs map[ebpf.ProgramID]bool, links map[link.ID]bool) {
	t.Helper()
	progs, links = map[ebpf.ProgramID]bool{}, map[link.ID]bool{}
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if !ok || err != nil {
				continue
			}
			switch k {
			case "prog_id":
				progs[ebpf.ProgramID(id)] = true
			case "link_id":
				links[link.ID(id)] = true
			}
		}
	}
	return progs, links
}

// uprobeLinks returns the kernel's perf-event links (a uprobe attached
// through a BPF link) and uprobe_multi links whose program is one of progs.
func uprobeLinks(t *testing.T, progs map[ebpf.ProgramID]bool) []link.ID {
	t.Helper()
	var it link.Iterator
	defer it.Close()
	var ids []link.ID
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // gone meanwhile
		}
		if (info.Type == link.PerfEventType || info.Type == link.UprobeMultiType) && progs[info.Program] {
			ids = append(ids, it.ID)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// kernelAtLeast reports whether the running kernel is major.minor or later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var maj, min int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release, err)
	}
	return maj > major || maj == major && min >= minor
}

// TestKill9 kills ctxwatch with SIGKILL while it watches a process: no
// cleanup of its own runs, and the kernel must take everything out with
// its file descriptors. The target goes on working; no breakpoint is left
// in its code (there was one at every probe address before); the
// ctxwatch programs are unloaded and the kernel's link list holds none of
// their uprobe links (it did before, on kernels that make perf-event links,
// 5.15 and later; or uprobe_multi links, 6.6 and later).
func TestKill9(t *testing.T) {
	requireRoot(t)
	target, stdin, lines := startWaiter(t, filepath.Join(bin, "waiter"))
	pid := target.Process.Pid
	addrs := probeAddrs(t, pid)
	cw, _, stderr := watchPID(t, pid, "--overhead-budget", "0")
	fmt.Fprintln(stdin, "go")
	if !lines.Scan() || lines.Text() != "done 1" {
		t.Fatalf("waiter: %q", lines.Text())
	}
	if n := int3s(t, pid, addrs); n != len(addrs) {
		t.Fatalf("%d of %d probe addresses hold a breakpoint while ctxwatch is attached, want all", n, len(addrs))
	}
	progs, links := bpfObjects(t, cw.Process.Pid)
	if len(progs) == 0 {
		t.Fatal("ctxwatch holds no BPF program")
	}
	// One link per probe, or with uprobe_multi links (Linux 6.6) one per
	// program used: at least one.
	before := uprobeLinks(t, progs)
	switch {
	case uprobe.MultiLinks() && len(before) == 0:
		t.Fatalf("no uprobe_multi link of ctxwatch's programs in the kernel, for %d probes", len(addrs))
	case !uprobe.MultiLinks() && kernelAtLeast(t, 5, 15) && len(before) < len(addrs):
		t.Fatalf("%d uprobe links of ctxwatch's programs in the kernel, want one per probe (%d)", len(before), len(addrs))
	}

	if err := cw.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cw.Wait()
	// The kernel frees the programs after an RCU grace period: give it a
	// few seconds.
	waitFor(t, "the probes to go", 10*time.Second, func() bool {
		if int3s(t, pid, addrs) != 0 || len(uprobeLinks(t, progs)) != 0 {
			return false
		}
		for id := range progs {
			if p, err := ebpf.NewProgramFromID(id); err == nil {
				p.Close()
				return false
			}
		}
		for id := range links {
			if l, err := link.NewFromID(id); err == nil {
				l.Close()
				return false
			}
		}
		return true
	})
	for i := 2; i <= 4; i++ {
		fmt.Fprintln(stdin, "go")
		if !lines.Scan() || lines.Text() != fmt.Sprint("done ", i) {
			t.Fatalf("waiter after kill -9 of ctxwatch: %q; ctxwatch said:\n%s", lines.Text(), stderr.String())
		}
	}
	stdin.Close()
	if err := waitCmd(target, 30*time.Second); err != nil {
		t.Errorf("waiter after kill -9 of ctxwatch: %v", err)
	}
}

// stderrLines are the lines ctxwatch wrote to standard error.
func stderrLines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestExitDuringAttach kills the target (and its parent reaps it) at
// several moments after ctxwatch --pid starts: before it looks, while it
// inspects the binary and attaches, after. Each run must end within a
// bounded time in one clear line about the pid's exit, and exit 2 (the
// target was gone or went while attaching) or 0 (it was watched, then
// exited).
func TestExitDuringAttach(t *testing.T) {
	requireRoot(t)
	clear := []string{
		`^ctxwatch: no process with pid %d \(it exited, or never existed\)$`,
		`^ctxwatch: pid %d has exited \(its parent has not reaped it yet\)`,
		`^ctxwatch: pid %d has no executable to watch: a kernel thread, or a process that is exiting$`,
		`^ctxwatch: pid %d exited while ctxwatch was attaching: not watched$`,
		`^ctxwatch: pid %d exited$`,
	}
	seen := map[int]int{}
	for _, delay := range []time.Duration{0, 10, 30, 60, 100, 150, 200, 300, 500, 1000} {
		delay *= time.Millisecond
		target, _, _ := startWaiter(t, filepath.Join(bin, "waiter"))
		pid := target.Process.Pid
		cw := exec.Command(filepath.Join(bin, "ctxwatch"), "--format", "json", "--output", filepath.Join(t.TempDir(), "r.json"),
			"--trace-key", "type=main.traceKey", "--pid", fmt.Sprint(pid))
		stderr := &syncBuffer{}
		cw.Stderr = stderr
		if err := cw.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		target.Process.Kill()
		target.Wait()
		start := time.Now()
		err := waitCmd(cw, 30*time.Second)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("kill after %v: ctxwatch: %v; stderr:\n%s", delay, err, stderr.String())
		}
		lines := stderrLines(stderr.String())
		which := -1
		if len(lines) == 1 {
			for i, re := range clear {
				if regexp.MustCompile(fmt.Sprintf(re, pid)).MatchString(lines[0]) {
					which = i
				}
			}
		}
		if which < 0 || (which == len(clear)-1) != (code == 0) || code != 0 && code != 2 {
			t.Errorf("target killed %v after ctxwatch started: exit %d, stderr:\n%s\nwant one clear line about pid %d's exit, exit 0 only when it was watched, else 2",
				delay, code, stderr.String(), pid)
			continue
		}
		seen[which]++
		t.Logf("killed after %v: exit %d in %v after the kill: %s", delay, code, time.Since(start).Round(time.Millisecond), lines[0])
	}
	t.Logf("outcomes by line: %v", seen)
}

// reusePID starts exe with the pid given, by setting the kernel's last
// allocated pid just below it (/proc/sys/kernel/ns_last_pid) before the
// fork. Other processes fork too, so it tries several times.
func reusePID(t *testing.T, pid int, exe string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	t.Helper()
	for range 200 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(fmt.Sprint(pid-1)), 0); err != nil {
			t.Fatalf("set the last pid: %v", err)
		}
		cmd := exec.Command(exe)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { cmd.Process.Kill() })
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || lines.Text() != "ready" {
				t.Fatalf("waiter did not start: %q", lines.Text())
			}
			return cmd, stdin, lines
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Fatalf("could not start a process with pid %d: others took it first", pid)
	return nil, nil, nil
}

// TestPIDReuse: the watched process exits and, at once, another process
// (the same program) takes its pid. ctxwatch must say that the pid exited
// and end, and never place or leave a breakpoint in the newcomer.
func TestPIDReuse(t *testing.T) {
	requireRoot(t)
	first, _, _ := startWaiter(t, filepath.Join(bin, "waiter"))
	pid := first.Process.Pid
	addrs := probeAddrs(t, pid)
	// The default overhead budget: its duty cycle re-attaches by pid.
	cw, out, stderr := watchPID(t, pid)
	// Attached, and the duty cycle started: the end of the attach.
	waitFor(t, "the overhead budget to start", 30*time.Second, func() bool {
		return strings.Contains(stderr.String(), "overhead budget charges")
	})
	first.Process.Kill()
	first.Wait()
	second, stdin, lines := reusePID(t, pid, filepath.Join(bin, "waiter"))
	if n := int3s(t, pid, addrs); n != 0 {
		t.Errorf("%d breakpoints in the process that took pid %d", n, pid)
	}
	if err := waitCmd(cw, 30*time.Second); err != nil {
		t.Fatalf("ctxwatch after its target exited: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("ctxwatch: pid %d exited\n", pid)) {
		t.Errorf("ctxwatch did not say the target exited; stderr:\n%s", stderr.String())
	}
	if _, sums := readReport(t, out); len(sums) != 1 || sums[0].PID != pid {
		t.Errorf("summaries %+v, want one, of pid %d", sums, pid)
	}
	if n := int3s(t, pid, addrs); n != 0 {
		t.Errorf("%d breakpoints in the process that took pid %d, after ctxwatch ended", n, pid)
	}
	fmt.Fprintln(stdin, "go")
	if !lines.Scan() || lines.Text() != "done 1" {
		t.Fatalf("the process that took pid %d: %q", pid, lines.Text())
	}
	stdin.Close()
	if err := waitCmd(second, 30*time.Second); err != nil {
		t.Errorf("the process that took pid %d: %v", pid, err)
	}
}

// TestExecMidRun: a watched process executes a program in its place (same
// pid). When that program is Go (the waiter again), ctxwatch says so and
// watches it afresh: the new program's units are counted from zero, in a
// summary of their own, with no state of the old program mixed in. When
// it is not Go, ctxwatch says it stopped watching and exits 0, leaving
// the program running (not stopped).
func TestExecMidRun(t *testing.T) {
	requireRoot(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	waiter := filepath.Join(bin, "waiter")
	target, stdin, lines := startWaiter(t, waiter)
	pid := target.Process.Pid
	cw, out, stderr := watchPID(t, pid)
	unit := func(i int) {
		t.Helper()
		fmt.Fprintln(stdin, "go")
		if !lines.Scan() || lines.Text() != fmt.Sprint("done ", i) {
			t.Fatalf("waiter: %q", lines.Text())
		}
	}
	unit(1)
	unit(2)
	fmt.Fprintln(stdin, "exec", waiter)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("waiter after exec: %q", lines.Text())
	}
	said := fmt.Sprintf("ctxwatch: pid %d executed %s: watching the new program", pid, waiter)
	waitFor(t, "ctxwatch to watch the new program", 30*time.Second, func() bool { return strings.Contains(stderr.String(), said) })
	for i := 1; i <= 3; i++ {
		unit(i)
	}
	fmt.Fprintln(stdin, "exec", sleep, "30")
	if err := waitCmd(cw, 30*time.Second); err != nil {
		t.Fatalf("ctxwatch after its target executed %s: %v; stderr:\n%s", sleep, err, stderr.String())
	}
	real, _ := filepath.EvalSymlinks(sleep)
	stopped := regexp.MustCompile(fmt.Sprintf(`(?m)^ctxwatch: pid %d executed (%s|%s): stopped watching \(not a Go program to watch\)$`,
		pid, regexp.QuoteMeta(sleep), regexp.QuoteMeta(real)))
	if !stopped.MatchString(stderr.String()) {
		t.Errorf("ctxwatch did not say it stopped watching; stderr:\n%s", stderr.String())
	}
	if s := procState(t, pid); s == 'T' || s == 'Z' {
		t.Errorf("%s in pid %d: state %c, want it running on", sleep, pid, s)
	}
	_, sums := readReport(t, out)
	if len(sums) != 2 {
		t.Fatalf("%d summaries, want 2 (the waiter before and after its exec): %+v", len(sums), sums)
	}
	for i, units := range []uint64{2, 3} {
		s := sums[i]
		if s.PID != pid || len(s.SpawnSites) != 1 || s.SpawnSites[0].TracedSpawns != units || s.SpawnSites[0].Lost != units {
			t.Errorf("summary %d: %+v, want pid %d with %d units lost", i+1, s, pid, units)
		}
		if len(s.Breaks) != 1 || s.Breaks[0].Count != units {
			t.Errorf("summary %d: breaks %+v, want %d lost-at-spawn", i+1, s.Breaks, units)
		}
	}
}

// procState is the one-letter state of process pid.
func procState(t *testing.T, pid int) byte {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(stat)
	return s[strings.LastIndexByte(s, ')')+2]
}
