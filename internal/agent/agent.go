package agent

import (
	"debug/elf"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/container"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/findings"
	"github.com/ctxwatch/ctxwatch/internal/follow"
	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// errSkipped means a process is deliberately not watched (the Go
// toolchain's own commands under go run or go test).
var errSkipped = errors.New("not watched")

// session is one watched process.
type session struct {
	proc    findings.Process
	probes  *uprobe.Probes
	bin     *target.Binary // its line table symbolizes the events
	an      *analysis.Analyzer
	started time.Time
	since   uint64 // follow.Now before /proc/PID/exe was read: see execd
	notes   []string
	cycle   *dutyCycle // nil without --overhead-budget
	group   *group     // node mode: the probes shared with other processes of its executable
	ended   bool       // put in retired once (under watcher.mu): summarised once
	// released: its pid left its group's map already (it executed
	// something), so finish need not list the goroutine map again.
	released bool
}

// watcher owns the shared ring buffer, the sessions and the reporting.
// Events are analysed by a single goroutine (loop); sessions are added from
// others, under mu.
type watcher struct {
	opts   uprobe.Options
	log    *log.Logger // --verbose
	warn   *log.Logger // always shown
	sink   findings.Sink
	live   findings.Live
	ring   *uprobe.Ring
	breaks int             // read after loop returns
	budget *overheadBudget // nil: probes stay attached
	// requireCheckFuncs refuses a process that lacks a --check-func or
	// --log-func (--pid); with -- CMD a warning says so and the rest is
	// watched.
	requireCheckFuncs bool
	// node is set in node mode: processes are tagged with their container,
	// pod and node, and those of one executable share probes.
	node *nodeIdentity
	// goroutines, in node mode, is the goroutine state map of every
	// program (its keys hold the pid): its memory, some 20 MB preallocated,
	// does not grow with the executables watched.
	goroutines *ebpf.Map

	mu       sync.Mutex
	sessions map[uint32]*session
	retired  []*session      // sessions whose process exited or exec'd, to summarise
	drains   []chan struct{} // closed by loop once it has read what the ring held
	groups   map[exeKey]*group
}

// nodeIdentity tags processes in node mode.
type nodeIdentity struct {
	nodeName string
	procfs   string
}

// process describes pid for the reports.
func (w *watcher) process(pid int, name, goVersion string) findings.Process {
	// The kernel marks an executable deleted since exec: the name is still
	// the program's.
	p := findings.Process{PID: uint32(pid), Executable: filepath.Base(strings.TrimSuffix(name, " (deleted)")), GoVersion: goVersion,
		ServiceName: environValue(pid, "OTEL_SERVICE_NAME")}
	if w.node != nil {
		p.NodeName = w.node.nodeName
		id, err := container.Of(w.node.procfs, pid)
		if err != nil {
			w.log.Printf("pid %d: no container identity: %v", pid, err)
		}
		p.ContainerID, p.PodUID = id.ContainerID, id.PodUID
	}
	return p
}

func newWatcher(cfg Config) (*watcher, error) {
	ring, err := uprobe.NewRing(cfg.RingSize)
	if err != nil {
		return nil, err
	}
	return &watcher{
		opts:     cfg.Probes,
		log:      cfg.Log,
		warn:     cfg.Warn,
		sink:     cfg.Sink,
		live:     cfg.Live,
		ring:     ring,
		sessions: map[uint32]*session{},
		groups:   map[exeKey]*group{},
	}, nil
}

// attach inspects process pid's executable and attaches the probes. The
// process should be stopped (just exec'd) or it runs unwatched meanwhile.
func (w *watcher) attach(pid int) error { return w.attachAfter(pid, nil, nil) }

// attachAfter is attach, with ready (if not nil) called once the binary is
// inspected and before any probe goes in: what must be in place before
// the probes can be made meanwhile; and attached (if not nil) called as
// soon as the probes are in, before anything says so: the moment at which
// a running process must still be there to count as watched.
func (w *watcher) attachAfter(pid int, ready, attached func()) error {
	phases := startPhases()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	since := follow.Now()
	var key exeKey
	if w.node != nil {
		var err error
		if key, err = exeKeyOf(pid); err != nil {
			return err
		}
		if joined, err := w.join(pid, key, since); joined || err != nil {
			return err
		}
	}
	// The eBPF object and the goroutine map do not depend on the target:
	// they are parsed and made (tens of milliseconds, the map's
	// preallocation most) while the binary is inspected.
	type made struct {
		spec *uprobe.Spec
		m    *ebpf.Map
		err  error
	}
	gmap := make(chan made, 1)
	go func() {
		spec, err := uprobe.ParseSpec()
		if err == nil {
			err = spec.MakeMaps()
		}
		if err != nil {
			gmap <- made{err: err}
			return
		}
		var m *ebpf.Map
		if w.goroutines != nil {
			m, err = w.goroutines.Clone()
		} else {
			m, err = spec.NewGoroutineMap()
		}
		gmap <- made{spec, m, err}
	}()
	defer func() {
		if g, ok := <-gmap; ok {
			if g.m != nil {
				g.m.Close() // the program holds its own reference
			}
			if g.spec != nil {
				g.spec.Close()
			}
		}
	}()
	// What the binary is or lacks is bad input (exit status 2 with --pid).
	name, _ := os.Readlink(exe)
	bin, err := target.Open(exe)
	if err != nil {
		return badInput(fmt.Errorf("%s: %w", name, err))
	}
	phases.mark("inspect")
	kept := false // by the session, which closes it when it ends
	defer func() {
		if !kept {
			bin.Close()
		}
	}()
	if bin.Arch != runtime.GOARCH {
		// The eBPF programs read this machine's registers (bpf2go builds
		// them per architecture): a program of another one runs only
		// under an emulator, where uprobes see the emulator.
		return badInput(fmt.Errorf("%s is %s (%s): %w: ctxwatch for %s attaches to %s programs only", name, bin.Arch, bin.GoVersion, target.ErrArch, runtime.GOARCH, runtime.GOARCH))
	}
	if bin.MainModule == "" && strings.HasPrefix(bin.MainPackage, "cmd/") {
		return badInput(fmt.Errorf("%s is part of the Go toolchain: %w", name, errSkipped))
	}
	if w.requireCheckFuncs {
		for _, fn := range w.opts.CheckFuncs {
			if _, err := bin.Func(fn); err != nil {
				return badInput(fmt.Errorf("--check-func %s (in %s): %w", fn, name, bin.MissingFunc(fn)))
			}
		}
		for _, fn := range w.opts.LogFuncs {
			if _, err := bin.Func(fn); err != nil {
				return badInput(fmt.Errorf("--log-func %s (in %s): %w", fn, name, bin.MissingFunc(fn)))
			}
		}
	}
	plan, err := uprobe.NewPlan(bin, w.opts)
	if err != nil {
		return badInput(fmt.Errorf("plan probes for %s: %w", name, err))
	}
	phases.mark("plan")
	// From here on, the file inspected, not /proc/PID/exe: the process
	// may execute another program meanwhile, and the offsets planned for
	// this file must never go into another.
	ef, err := elf.Open(bin.OpenedPath())
	if err != nil {
		return fmt.Errorf("read ELF of %s: %w", name, err)
	}
	defer ef.Close()
	bias, err := uprobe.LoadBias(pid, ef)
	if err != nil {
		return fmt.Errorf("find load address of %s: %w", name, err)
	}
	cfg, points, err := plan.ForProcess(pid, bias, bin.FileOffset)
	if err != nil {
		return err
	}
	// In node mode the processes of a non-PIE executable share the probes.
	var g *group // nil: probes of its own
	if w.node != nil && !bin.PIE {
		cfg.PID = 0
		g = &group{key: key, bin: bin, name: name, notes: plan.Notes, points: points,
			members: map[*session]bool{}, first: pid}
	}
	phases.mark("place")
	gm := <-gmap
	close(gmap)
	if gm.err != nil {
		if gm.spec != nil {
			gm.spec.Close()
		}
		return gm.err
	}
	phases.mark("maps")
	cfg.Spec = gm.spec
	probes, err := uprobe.Load(cfg, uprobe.Maps{Events: w.ring.Map(), Goroutines: gm.m})
	gm.m.Close() // the program holds its own reference
	if err != nil {
		return err
	}
	phases.mark("load")
	s := &session{
		proc:    w.process(pid, name, bin.GoVersion),
		probes:  probes,
		bin:     bin,
		started: time.Now(),
		since:   since,
		notes:   plan.Notes,
		an:      w.analyzer(pid, bin, bias),
	}
	if ready != nil {
		ready()
	}
	// Register before attaching: events may come as soon as a probe is in.
	w.mu.Lock()
	if old := w.sessions[uint32(pid)]; old != nil && !old.ended {
		old.ended = true
		w.retired = append(w.retired, old) // the process exec'd again
	}
	w.sessions[uint32(pid)] = s
	if g != nil {
		g.probes = probes
		g.members[s] = true
		s.group = g
		w.groups[key] = g
	}
	w.mu.Unlock()
	var aerr error
	if g != nil {
		aerr = probes.AddProcess(pid)
	}
	if aerr == nil {
		aerr = probes.Attach(bin.OpenedPath(), points)
	}
	if aerr != nil {
		w.mu.Lock()
		delete(w.sessions, uint32(pid))
		if g != nil {
			delete(w.groups, key)
		}
		w.mu.Unlock()
		probes.Close()
		if errors.Is(aerr, os.ErrPermission) {
			return badInput(aerr) // a capability the kernel wants
		}
		return aerr
	}
	if attached != nil {
		attached()
	}
	phases.mark("attach")
	attachedAt := time.Now()
	kept = true
	if err := bin.Trim(); err != nil {
		w.log.Print(err)
	}
	w.log.Printf("watching pid %d (%s, %s, main module %s): %d probes", pid, name, bin.GoVersion, bin.MainModule, len(points))
	w.log.Printf("  pid %d: probes in after %s", pid, phases)
	for _, n := range plan.Notes {
		w.log.Printf("  pid %d: %s", pid, n)
	}
	for _, n := range plan.Warnings {
		w.warn.Printf("pid %d (%s): %s", pid, filepath.Base(name), n)
	}
	if w.budget != nil {
		w.budget.tellRunTime(w.warn.Printf)
		cycle, err := startDutyCycle(w.budget, pid, probes, points, attachedAt, func(err error) {
			w.warn.Printf("pid %d: overhead budget: %v", pid, err)
		})
		if err != nil {
			w.warn.Printf("pid %d: overhead budget not applied: %v", pid, err)
		}
		w.mu.Lock()
		s.cycle = cycle
		if g != nil {
			g.cycle = cycle
		}
		w.mu.Unlock()
		if cycle != nil {
			w.log.Printf("pid %d: overhead budget charges %s per probe hit, %s per duty cycle (%d probes out and back in; window %s)",
				pid, cycle.cost, cycle.cycle, len(points), cycle.ctl.Window())
		}
	}
	go w.awaitExit(pid, s)
	return nil
}

// analyzer makes the analysis of process pid, running bin loaded at bias.
func (w *watcher) analyzer(pid int, bin *target.Binary, bias uint64) *analysis.Analyzer {
	mainModule, prefixes := bin.MainModule, w.opts.UserPrefixes
	return analysis.New(uint32(pid), analysis.Options{
		Resolver: bin.Resolver(bias),
		IsUser:   func(fn string) bool { return target.IsUserFunc(fn, mainModule, prefixes) },
		LogFuncs: w.opts.LogFuncs,
	})
}

// join has process pid share the probes already placed in its executable
// (node mode), and reports whether there were any: a replica costs a map
// entry, not an inspection and a set of uprobes.
func (w *watcher) join(pid int, key exeKey, since uint64) (bool, error) {
	w.mu.Lock()
	g := w.groups[key]
	if g == nil {
		w.mu.Unlock()
		return false, nil
	}
	s := &session{
		proc:    w.process(pid, g.name, g.bin.GoVersion),
		probes:  g.probes,
		bin:     g.bin,
		started: time.Now(),
		since:   since,
		notes:   g.notes,
		cycle:   g.cycle,
		group:   g,
		an:      w.analyzer(pid, g.bin, 0),
	}
	if old := w.sessions[uint32(pid)]; old != nil && !old.ended {
		old.ended = true
		w.retired = append(w.retired, old)
	}
	w.sessions[uint32(pid)] = s
	g.members[s] = true
	w.mu.Unlock()
	if err := g.probes.AddProcess(pid); err != nil {
		w.mu.Lock()
		delete(w.sessions, uint32(pid))
		last := g.leave(s)
		if last {
			delete(w.groups, key)
		}
		w.mu.Unlock()
		if last {
			g.close()
		}
		return true, err
	}
	w.log.Printf("watching pid %d (%s): shares the probes of pid %d", pid, g.name, g.first)
	go w.awaitExit(pid, s)
	return true, nil
}

// awaitExit retires a session when its process exits.
func (w *watcher) awaitExit(pid int, s *session) {
	waitExit(pid)
	// The session stays in sessions until finish: its last events may
	// still be in the ring buffer.
	w.mu.Lock()
	if w.sessions[uint32(pid)] == s && !s.ended {
		s.ended = true
		w.retired = append(w.retired, s)
	}
	w.mu.Unlock()
}

// detachAll removes every probe; what was seen is still summarised.
func (w *watcher) detachAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sessions {
		s.cycle.halt()
		if err := s.probes.Detach(); err != nil {
			w.log.Printf("detach from pid %d: %v", s.proc.PID, err)
		}
	}
}

// execd retires the session of process pid, which executed a program at
// time at (follow.Now's clock): goroutine ids restart, and probes of its
// own no longer match what runs. A session whose program was read after
// that exec is the new program's, and stays: exec events are read late,
// by seconds on a busy node; execd reports whether the session stays.
// It returns once the old program's events have been handled, so that a
// session attached next for the same pid gets none of them.
func (w *watcher) execd(pid int, at uint64) (kept bool) {
	w.mu.Lock()
	s := w.sessions[uint32(pid)]
	w.mu.Unlock()
	if s == nil {
		return false
	}
	if s.since > at {
		return true
	}
	if s.group == nil {
		// Probes of its own come out now: if the new program is the same
		// file, they would fire in it with the old one's load address and
		// goroutine states.
		s.cycle.halt()
		if err := s.probes.Detach(); err != nil {
			w.log.Printf("detach from pid %d: %v", pid, err)
		}
	} else {
		// Before the new program joins, if it runs the same file. The
		// Start site counters go with it: read them first.
		if err := readStartCounts(s); err != nil {
			w.log.Printf("pid %d: %v", pid, err)
		}
		if err := s.group.probes.RemoveProcess(pid); err != nil {
			w.log.Printf("release pid %d: %v", pid, err)
		}
		w.mu.Lock()
		s.released = true
		w.mu.Unlock()
	}
	// The old program's last events, in the ring buffer before the exec
	// was reported, are its session's: handled before it goes.
	w.drain()
	w.mu.Lock()
	if w.sessions[uint32(pid)] == s {
		delete(w.sessions, uint32(pid))
	}
	if !s.ended {
		s.ended = true
		w.retired = append(w.retired, s)
	}
	w.mu.Unlock()
	return false
}

// drain returns once loop has read every record the ring buffer held when
// drain was called, or after a second (the loop has ended, or cannot keep
// up).
func (w *watcher) drain() {
	done := make(chan struct{})
	w.mu.Lock()
	w.drains = append(w.drains, done)
	w.mu.Unlock()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// takeDrains returns the drain requests made so far.
func (w *watcher) takeDrains() []chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.drains
	w.drains = nil
	return d
}

// count returns the number of processes watched.
func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sessions)
}

func (w *watcher) session(pid uint32) *session {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sessions[pid]
}

// takeRetired returns the sessions retired so far.
func (w *watcher) takeRetired() []*session {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.retired
	w.retired = nil
	return r
}

// loop reads and analyses events until stop is closed and the ring buffer
// is drained, then summarises every session. A session retired by its
// process's exit is summarised once the ring buffer has been seen empty
// after the exit, so no event of it is left behind.
// The event loop drains the ring buffer every ringPoll while events come,
// at once again when a drain found ringBatch records or more (it is
// falling behind). At 4 MiB (the default) the ring holds about 13,000
// records: tens of milliseconds of the fastest spawn storm measured,
// against a few milliseconds between drains (TestBurstAfterQuiet runs a
// 20,000-goroutine storm through 2 MiB). The margin is for an agent that
// does not get a CPU at once. It is not
// larger because its pages count twice in the agent's resident memory
// (the kernel maps the data twice, for wrap-around).
const (
	ringPoll  = 2 * time.Millisecond
	ringBatch = 256
	// Once a drain finds nothing, the loop blocks in the reader for up to
	// ringIdleWait (retirements, drains and stop are looked at between
	// waits). The probes wake it sooner only each time the unread data
	// passes a sixteenth of the ring (uprobe.RingWakeFraction): a trickle
	// of events, such as idle
	// services under ctxwatch node make, is read 16 times a second, not a
	// wake-up per event, and a burst after quiet at once, not up to 64 ms
	// later.
	ringIdleWait = 64 * time.Millisecond
)

func (w *watcher) loop(stop <-chan struct{}) error {
	var (
		lastRefresh time.Time
		idle        bool // the last drain found nothing
	)
	for {
		retired := w.takeRetired()
		drains := w.takeDrains()
		stopping := false
		select {
		case <-stop:
			stopping = true
		default:
		}
		// Drain what the ring holds without blocking, then sleep a little
		// (below), so that each wake-up reads a batch. When idle, wait in
		// the reader (see ringIdleWait). Before summarising, wait for 50 ms
		// of quiet as well.
		var quiet time.Duration
		if stopping || len(retired) > 0 {
			quiet = 50 * time.Millisecond
		}
		if idle && quiet == 0 && len(drains) == 0 {
			w.ring.Wait(ringIdleWait)
		}
		read, err := w.ring.Read(quiet, w.handle)
		if err != nil {
			return err
		}
		for _, d := range drains {
			close(d)
		}
		for _, s := range retired {
			w.finish(s)
		}
		if stopping {
			w.mu.Lock()
			var rest []*session
			for _, s := range w.sessions {
				rest = append(rest, s)
			}
			w.retired = nil
			w.mu.Unlock()
			for _, s := range rest {
				w.finish(s)
			}
			return nil
		}
		if w.live != nil && time.Since(lastRefresh) > time.Second {
			lastRefresh = time.Now()
			w.refresh()
		}
		idle = read == 0
		if read > 0 && read < ringBatch {
			time.Sleep(ringPoll)
		}
	}
}

func (w *watcher) handle(ev *event.Event) {
	s := w.session(ev.PID)
	if s == nil {
		return // a process that was already summarised
	}
	b, ok := s.an.Handle(ev)
	if !ok {
		return
	}
	w.breaks++
	if err := w.sink.Break(s.proc, b); err != nil {
		w.log.Printf("report break: %v", err)
	}
}

func (w *watcher) summary(s *session) findings.Summary {
	// The Start sites' counters live in the kernel, not in events: read
	// them for this summary (and for the metrics served from it). A
	// session released from a shared program (its process executed
	// another file) had them read before they were deleted.
	var startErr error
	if !s.released {
		startErr = readStartCounts(s)
	}
	sum := findings.Summary{
		Process:   s.proc,
		Snapshot:  s.an.Snapshot(),
		DurationS: time.Since(s.started).Seconds(),
	}
	st, err := s.probes.Stats()
	if err != nil {
		sum.Notes = append(sum.Notes, fmt.Sprintf("probe counters unreadable: %v", err))
	}
	if startErr != nil {
		sum.Notes = append(sum.Notes, fmt.Sprintf("start site counters unreadable: %v", startErr))
	}
	sum.EventsLost = st.EventsLost + st.StateFull
	s.cycle.account(&sum)
	sum.ProbeHits = st.Hits
	if st.EventsLost > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d events found the ring buffer full (--ring-size %d)", st.EventsLost, w.ring.Size()))
	}
	if st.StateFull > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d goroutine states not stored (map full)", st.StateFull))
	}
	if sum.Forgotten > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d goroutines spawned in a trace were forgotten before they used a context (at most %d are remembered)",
			sum.Forgotten, analysis.DefaultMaxPending))
	}
	if sum.NeverJudged > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d goroutines spawned in a trace were never judged: no use of a context from user code, another trace, or their state lost",
			sum.NeverJudged))
	}
	if st.ReadFaults > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d reads of the target's memory failed (page not present)", st.ReadFaults))
	}
	if st.WalkDeep > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d context chains too long to follow", st.WalkDeep))
	}
	return sum
}

// readStartCounts hands the analysis of s the probes' Start site counters
// of its process.
func readStartCounts(s *session) error {
	starts, err := s.probes.StartCounts(int(s.proc.PID))
	counts := make([]analysis.StartCount, len(starts))
	for i, c := range starts {
		counts[i] = analysis.StartCount{PC: c.PC, Started: c.Started, Stale: c.Stale}
	}
	s.an.SetStartCounts(counts)
	return err
}

func (w *watcher) finish(s *session) {
	pid := s.proc.PID
	w.mu.Lock()
	if w.sessions[pid] == s {
		delete(w.sessions, pid)
	}
	g, last := s.group, false
	if g != nil {
		if last = g.leave(s); last {
			delete(w.groups, g.key)
		}
	}
	// Nothing to release when execd did it already, or when the pid is
	// back in the same group (it executed the same file again): then it
	// stays in the program's pid map.
	again := g != nil && (s.released || w.sessions[pid] != nil && w.sessions[pid].group == g)
	cycle := s.cycle
	w.mu.Unlock()
	if g == nil {
		cycle.halt()
	}
	// What only the end decides: goroutines whose one use of a context
	// was incidental and traceless, and that did no work with the trace.
	for _, b := range s.an.Finish() {
		w.breaks++
		if err := w.sink.Break(s.proc, b); err != nil {
			w.log.Printf("report break: %v", err)
		}
	}
	sum := w.summary(s)
	// Listed once, at the end: it walks the goroutine map.
	if n, err := s.probes.StatesEvicted(); err != nil {
		sum.Notes = append(sum.Notes, fmt.Sprintf("goroutine states evicted: %v", err))
	} else if n > 0 {
		sum.StatesEvicted = n
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d goroutine states evicted to make room, mostly of goroutines that had exited (a live one's verdict is missed)", n))
	}
	if g != nil {
		sum.Notes = append(sum.Notes, "probe counters are shared by the processes of this executable")
	}
	switch {
	case g == nil:
		if err := s.probes.Close(); err != nil {
			w.log.Printf("detach from pid %d: %v", pid, err)
		}
		s.bin.Close()
	case last:
		if err := g.close(); err != nil {
			w.log.Printf("detach from %s: %v", g.name, err)
		}
	case !again:
		if err := g.probes.RemoveProcess(int(pid)); err != nil {
			w.log.Printf("release pid %d: %v", pid, err)
		}
	}
	if err := w.sink.Summary(sum); err != nil {
		w.log.Printf("report summary: %v", err)
	}
}

func (w *watcher) refresh() {
	w.mu.Lock()
	var sums []findings.Summary
	for _, s := range w.sessions {
		sums = append(sums, w.summary(s))
	}
	w.mu.Unlock()
	if err := w.live.Refresh(sums); err != nil {
		w.log.Printf("refresh: %v", err)
	}
}

func (w *watcher) close() error {
	if w.goroutines != nil {
		w.goroutines.Close()
	}
	return w.ring.Close()
}

// attachPhases times an attach's steps, for --verbose: where the time
// from "attach" to "probes in" went on this machine and binary.
type attachPhases struct {
	start, last time.Time
	steps       []string
}

func startPhases() *attachPhases {
	now := time.Now()
	return &attachPhases{start: now, last: now}
}

// mark ends the step named what, begun where the last one ended.
func (a *attachPhases) mark(what string) {
	now := time.Now()
	a.steps = append(a.steps, fmt.Sprintf("%s %d ms", what, now.Sub(a.last).Milliseconds()))
	a.last = now
}

func (a *attachPhases) String() string {
	return fmt.Sprintf("%d ms (%s)", a.last.Sub(a.start).Milliseconds(), strings.Join(a.steps, ", "))
}
