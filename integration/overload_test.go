package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stormFlags run testdata/spawnstorm so that every event the probes send is
// accounted for by the program itself: no garbage collection during the
// storm, so the runtime starts no GC worker inside the trace, and no silent
// goroutine, so each spawn is one spawn event and one first check. After
// each burst of 1000 the storm calms: 4 goroutines one at a time, each
// after a pause. How much of a burst a one-page ring loses depends on the
// machine's trap cost (on a machine with cheap traps, nearly all of it);
// the calm goroutines' events get through on any machine, since the agent
// reads an idle ring at least 16 times a second and the pause is 200 ms
// (stretched under emulation), so some verdicts must come out.
func stormFlags() []string {
	return []string{"-n", "5000", "-lose", "4", "-par", "64", "-gc=false",
		"-burst", "1000", "-calm", "4", "-pause", slowed(200 * time.Millisecond).String()}
}

// TestOverloadCounted: with a ring buffer of one page and a spawn storm,
// events are dropped, and every one is counted: what the summary received
// plus events_lost is exactly what the program made the probes send. The
// summary says its verdicts are incomplete, and the breaks whose events
// got through are reported at their lines. With the default ring buffer
// nothing is lost and the summary is complete.
func TestOverloadCounted(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs("testdata/spawnstorm/main.go")
	if err != nil {
		t.Fatal(err)
	}
	markers := sourceMarkers(t, src)
	storm := append([]string{"--trace-key", "type=main.traceKey", "--", filepath.Join(bin, "spawnstorm")}, stormFlags()...)

	r := ctxwatch(t, append([]string{"--ring-size", "4096"}, storm...)...)
	if r.code != 0 || len(r.summaries) != 1 {
		t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
	}
	sum := r.summaries[0]
	sent, ok := selfCount(r.stdout, "events")
	if !ok {
		t.Fatalf("the program did not say how many events it made: %q", r.stdout)
	}
	if sum.EventsLost == nil {
		t.Fatal("summary has no events_lost")
	}
	lost := *sum.EventsLost
	t.Logf("program: %s; summary: %d events received, %d lost, %d first checks unmatched",
		strings.TrimSpace(r.stdout), sum.Events, lost, sum.Unmatched)
	if lost == 0 {
		t.Errorf("nothing lost through a ring buffer of one page: the test does not overload it")
	}
	if sum.Events+lost != sent {
		t.Errorf("%d events received + %d lost = %d, the program made %d", sum.Events, lost, sum.Events+lost, sent)
	}
	// What was received is what the summary counts: a traced spawn per
	// spawn event, a verdict or an unmatched check per first check.
	var traced, judged, lostJudged uint64
	for _, s := range sum.SpawnSites {
		traced += s.TracedSpawns
		judged += s.Propagated + s.Lost + s.NewRoot
		lostJudged += s.Lost
	}
	if traced+judged+sum.Unmatched != sum.Events {
		t.Errorf("%d traced spawns + %d verdicts + %d unmatched checks != %d events received",
			traced, judged, sum.Unmatched, sum.Events)
	}
	if !sum.Incomplete {
		t.Errorf("incomplete = false with %d events lost", lost)
	}
	if want := fmt.Sprintf("verdicts incomplete: %d events lost", lost); !hasPrefixIn(sum.Notes, want) {
		t.Errorf("notes %q, want one starting %q", sum.Notes, want)
	}

	// The breaks seen are reported: every lost-at-spawn verdict, at the
	// marked lines, and a break line for it.
	var breaks uint64
	for _, b := range sum.Breaks {
		where := fmt.Sprintf("%s at %s:%d", b.Kind, filepath.Base(b.Site.File), b.Site.Line)
		if b.Kind != "lost-at-spawn" || b.Site.File != src || markers[b.Site.Line] != (marker{"site", "lost-at-spawn"}) {
			t.Errorf("%s: not a marked lost-at-spawn site", where)
			continue
		}
		if sp, ok := userFrame(b.Spawn, src); !ok || markers[sp.Line] != (marker{"spawn", "lost-at-spawn"}) {
			t.Errorf("%s: spawn stack %v not at the marked go statement", where, b.Spawn)
		}
		breaks += b.Count
	}
	if breaks != lostJudged {
		t.Errorf("%d lost-at-spawn breaks for %d goroutines judged lost, want as many", breaks, lostJudged)
	}
	// The lost goroutines of the calm stretches were judged whatever the
	// bursts lost.
	if calm, ok := selfCount(r.stdout, "calm-lost"); !ok || calm == 0 || lostJudged < calm {
		t.Errorf("%d goroutines judged lost; the program started %d lost ones in calm stretches, each alone with an empty ring", lostJudged, calm)
	}
	if want, _ := selfCount(r.stdout, "lost"); lostJudged > want {
		t.Errorf("%d judged lost, the program lost only %d", lostJudged, want)
	}
	if len(r.breaks) != 1 || r.breaks[0].Kind != "lost-at-spawn" {
		t.Errorf("break lines %+v, want the lost-at-spawn one", r.breaks)
	}

	// The same storm with the default ring buffer: nothing lost, nothing
	// incomplete, every goroutine judged.
	r = ctxwatch(t, storm...)
	if r.code != 0 || len(r.summaries) != 1 {
		t.Fatalf("default ring: exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
	}
	checkExample(t, src, r)
	sum = r.summaries[0]
	if sum.Incomplete || hasPrefixIn(sum.Notes, "verdicts incomplete") {
		t.Errorf("default ring: incomplete %v, notes %q; want complete", sum.Incomplete, sum.Notes)
	}
	if sum.Events != sent {
		t.Errorf("default ring: %d events received, the program made %d", sum.Events, sent)
	}
}

func hasPrefixIn(notes []string, prefix string) bool {
	for _, n := range notes {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

var incompleteRE = regexp.MustCompile(`verdicts incomplete: (\d+) events lost`)

// TestOverloadLiveTable: the live table and the final one say that the
// verdicts are incomplete, and how many events were lost, while breaks
// that got through are still shown. The terminal is a tmux pane.
func TestOverloadLiveTable(t *testing.T) {
	requireRoot(t)
	// The storm, then the program waits for the end of its input, so the
	// live table has a second to show it. Should ctxwatch end early, the
	// pane says how (a SIGKILL leaves the table's last frame on screen).
	tmux, session := inTmux(t, fmt.Sprintf("%s --ring-size 4096 --trace-key type=main.traceKey -- %s %s -wait; echo ctxwatch exited $?; sleep 30",
		filepath.Join(bin, "ctxwatch"), filepath.Join(bin, "spawnstorm"), strings.Join(stormFlags(), " ")))
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

	waitFor(t, "the live table to say the verdicts are incomplete", 60*time.Second, func() bool {
		s := screen()
		return strings.Contains(s, "ctxwatch watching") && incompleteRE.MatchString(s) && strings.Contains(s, "lost-at-spawn")
	})
	tmux("send-keys", "-t", session, "C-d")
	waitFor(t, "the summary", 30*time.Second, func() bool { return strings.Contains(screen(), "ctxwatch summary") })
	sum := last[strings.Index(last, "ctxwatch summary"):]
	m := incompleteRE.FindStringSubmatch(sum)
	if m == nil {
		t.Fatalf("the summary does not say the verdicts are incomplete")
	}
	if n, _ := strconv.ParseUint(m[1], 10, 64); n == 0 {
		t.Errorf("summary: %q", m[0])
	}
	if !strings.Contains(sum, "lost-at-spawn") {
		t.Errorf("the summary shows no break")
	}
}

// TestAgentMemory: ctxwatch's resident memory stays under 64 MB through a
// million short-lived goroutines spawned inside a trace: a tenth lose it,
// half never use a context (they stay pending until forgotten, as the
// probes see no goroutine exit), the rest keep it. ctxwatch attaches with
// --pid, so that the peak the kernel reports for it is its own: run as
// `ctxwatch -- CMD`, its rusage would include the program's, whose peak
// (how many of its goroutines are alive at once) is the scheduler's
// business, not ctxwatch's.
func TestAgentMemory(t *testing.T) {
	requireRoot(t)
	const limit = 64 << 20
	storm := exec.Command(filepath.Join(bin, "spawnstorm"), "-start", "-n", "1000000", "-lose", "10", "-silent", "2", "-par", "64")
	stormIn, err := storm.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stormOut syncBuffer
	storm.Stdout = &stormOut
	if err := storm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storm.Process.Kill() })

	// No overhead budget (--pid has one by default): its duty cycle would
	// leave spawns unseen, and this test is about what ctxwatch keeps when
	// it sees them all.
	cmd, out, stderr := watchPID(t, storm.Process.Pid, "--overhead-budget", "0")
	t.Cleanup(func() { cmd.Process.Kill() })
	fmt.Fprintln(stormIn, "go")
	stormIn.Close()

	// Its peak resident set as the kernel keeps it (VmHWM), read until it
	// exits. Not its rusage: exec sets a process's maxrss to at least the
	// peak of the memory it replaced, which for a child of this test is
	// this test's own (Go starts children with CLONE_VM): 72 MB after the
	// rest of the suite had run, where ctxwatch's own peak was 50 MB.
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var hwm uint64
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-time.After(10 * time.Millisecond):
			if kb, ok := vmHWM(status); ok {
				hwm = kb << 10
			}
		}
	}
	if err != nil {
		t.Fatalf("ctxwatch: %v; stderr:\n%s", err, stderr.String())
	}
	if err := storm.Wait(); err != nil {
		t.Fatalf("spawnstorm: %v", err)
	}
	_, sums := readReport(t, out)
	if len(sums) != 1 {
		t.Fatalf("%d summaries; stderr:\n%s", len(sums), stderr.String())
	}
	sum := sums[0]
	if sum.EventsLost == nil {
		t.Fatal("summary has no events_lost")
	}
	var traced uint64
	for _, s := range sum.SpawnSites {
		traced += s.TracedSpawns
	}
	t.Logf("program: %s; %d traced spawns, %d events, %v lost, %d pending forgotten, %d states evicted; ctxwatch peak RSS %.1f MB (VmHWM)",
		strings.TrimSpace(stormOut.String()), traced, sum.Events, *sum.EventsLost, sum.Forgotten, sum.Evicted, float64(hwm)/(1<<20))
	// The analysis must have had the goroutines to keep: nearly all
	// spawns seen, and more pending than it keeps.
	if traced < 900000 {
		t.Errorf("%d traced spawns seen of 1,000,000", traced)
	}
	if sum.Forgotten == 0 {
		t.Errorf("no pending goroutine forgotten: the analysis was not filled to its bound")
	}
	// A million states through a map of 131,072: the kernel evicted most,
	// and says so.
	if sum.Evicted < 500000 || sum.Evicted > 1000001 {
		t.Errorf("states_evicted %d for a million goroutine states through the kernel's map", sum.Evicted)
	}
	if hwm == 0 || hwm >= limit {
		t.Errorf("ctxwatch's peak RSS (VmHWM) %d bytes, want under %d", hwm, limit)
	}
}

// vmHWM reads the peak resident set size, in kB, from a /proc status file.
func vmHWM(status string) (uint64, bool) {
	f, err := os.Open(status)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// TestBurstAfterQuiet: a spawn storm that starts while the agent waits in
// its idle read (up to 64 ms) goes through a ring of half the default
// without a loss: the probes wake the agent each time the unread data
// passes a sixteenth of the ring. Without that wake-up this ring loses
// most of the storm (its 40,000 events are 12 MB; about 70% lost here). A
// quarter of the default held it while each event cost the storm a
// wake-up; without those, the storm runs twice as fast, and on a loaded
// host a 1 MiB ring lost up to 4% of it. It counts on the agent getting a
// CPU as on hardware, so vmtest leaves it out under TCG emulation.
func TestBurstAfterQuiet(t *testing.T) {
	requireRoot(t)
	src, err := filepath.Abs(filepath.Join("..", "examples", "storm", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	r := ctxwatch(t, append(sourceFlags(t, src), "--ring-size", fmt.Sprint(2<<20), "--", filepath.Join(bin, "storm"))...)
	if r.code != 0 || len(r.summaries) != 1 {
		t.Fatalf("exit %d, %d summaries; stderr:\n%s", r.code, len(r.summaries), r.stderr)
	}
	sum := r.summaries[0]
	if sum.EventsLost == nil {
		t.Fatal("summary has no events_lost")
	}
	if lost := *sum.EventsLost; lost != 0 || sum.Incomplete {
		t.Errorf("events_lost %d, incomplete %v (%d events received): want nothing lost", lost, sum.Incomplete, sum.Events)
	}
	spawned, ok := selfCount(r.stdout, "spawned")
	if !ok {
		t.Fatalf("the storm did not say how many goroutines it spawned: %q", r.stdout)
	}
	var traced uint64
	for _, s := range sum.SpawnSites {
		traced += s.TracedSpawns
	}
	if traced != spawned {
		t.Errorf("%d traced spawns counted, the storm spawned %d", traced, spawned)
	}
}
