package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
	"github.com/ctxwatch/ctxwatch/internal/pcln"
	"github.com/ctxwatch/ctxwatch/internal/report"
	"github.com/ctxwatch/ctxwatch/internal/target"
	"github.com/ctxwatch/ctxwatch/internal/uprobe"
)

// errSkipped means a process is deliberately not watched (the Go
// toolchain's own commands under go run or go test).
var errSkipped = errors.New("not watched")

// session is one watched process.
type session struct {
	proc    report.Process
	probes  *uprobe.Probes
	bin     *target.Binary // its line table symbolizes the events
	an      *analysis.Analyzer
	started time.Time
	notes   []string
	cycle   *dutyCycle // nil without --overhead-budget
}

// watcher owns the shared ring buffer, the sessions and the reporting.
// Events are analysed by a single goroutine (loop); sessions are added from
// others, under mu.
type watcher struct {
	opts   uprobe.Options
	log    *log.Logger // --verbose
	warn   *log.Logger // always shown
	sink   report.Sink
	live   report.Live
	ring   *ebpf.Map
	breaks int             // read after loop returns
	budget *overheadBudget // nil: probes stay attached

	mu       sync.Mutex
	sessions map[uint32]*session
	retired  []*session // sessions whose process exited or exec'd, to summarise
}

func newWatcher(opts uprobe.Options, ringSize int, sink report.Sink, live report.Live, logger, warn *log.Logger) (*watcher, error) {
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Name: "events", Type: ebpf.RingBuf, MaxEntries: uint32(ringSize)})
	if err != nil {
		return nil, fmt.Errorf("create ring buffer of %d bytes: %w", ringSize, err)
	}
	return &watcher{
		opts:     opts,
		log:      logger,
		warn:     warn,
		sink:     sink,
		live:     live,
		ring:     ring,
		sessions: map[uint32]*session{},
	}, nil
}

// resolver symbolizes a process's return addresses with its pclntab.
type resolver struct {
	table *pcln.Table
	bias  uint64
}

func (r resolver) FramesForReturn(ret uint64) []analysis.Frame {
	frames, err := r.table.FramesForReturn(ret - r.bias)
	if err != nil || len(frames) == 0 {
		return []analysis.Frame{{Function: fmt.Sprintf("?%#x", ret)}}
	}
	out := make([]analysis.Frame, len(frames))
	for i, f := range frames {
		out[i] = analysis.Frame{Function: f.Function, File: f.File, Line: f.Line}
	}
	return out
}

// attach inspects process pid's executable and attaches the probes. The
// process should be stopped (just exec'd) or it runs unwatched meanwhile.
func (w *watcher) attach(pid int) error {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	// The goroutine map does not depend on the target: it is made (tens of
	// milliseconds to preallocate) while the binary is inspected.
	type made struct {
		m   *ebpf.Map
		err error
	}
	gmap := make(chan made, 1)
	go func() {
		m, err := uprobe.NewGoroutineMap()
		gmap <- made{m, err}
	}()
	defer func() {
		if g, ok := <-gmap; ok && g.m != nil {
			g.m.Close() // the program holds its own reference
		}
	}()
	bin, err := target.Open(exe)
	if err != nil {
		return err
	}
	kept := false // by the session, which closes it when it ends
	defer func() {
		if !kept {
			bin.Close()
		}
	}()
	name, _ := os.Readlink(exe)
	if bin.Arch != "amd64" {
		// arm64 binaries are inspected, but the probes run on amd64 only.
		return fmt.Errorf("%s is %s (%s): %w: ctxwatch attaches to amd64 programs only", name, bin.Arch, bin.GoVersion, target.ErrArch)
	}
	if bin.MainModule == "" && strings.HasPrefix(bin.MainPackage, "cmd/") {
		return fmt.Errorf("%s is part of the Go toolchain: %w", name, errSkipped)
	}
	plan, err := uprobe.NewPlan(bin, w.opts)
	if err != nil {
		return fmt.Errorf("plan probes for %s: %w", name, err)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		return fmt.Errorf("read ELF of %s: %w", name, err)
	}
	defer ef.Close()
	bias, err := uprobe.LoadBias(pid, ef)
	if err != nil {
		return fmt.Errorf("find load address of %s: %w", name, err)
	}
	table := bin.LineTable()
	cfg, points, err := plan.ForProcess(pid, bias, bin.FileOffset)
	if err != nil {
		return err
	}
	g := <-gmap
	close(gmap)
	if g.err != nil {
		return g.err
	}
	probes, err := uprobe.Load(cfg, uprobe.Maps{Events: w.ring, Goroutines: g.m})
	g.m.Close() // the program holds its own reference
	if err != nil {
		return err
	}
	mainModule, prefixes := bin.MainModule, w.opts.UserPrefixes
	s := &session{
		proc: report.Process{PID: uint32(pid), Executable: filepath.Base(name), GoVersion: bin.GoVersion,
			ServiceName: environValue(pid, "OTEL_SERVICE_NAME")},
		probes:  probes,
		bin:     bin,
		started: time.Now(),
		notes:   plan.Notes,
		an: analysis.New(uint32(pid), analysis.Options{
			Resolver: resolver{table: table, bias: bias},
			IsUser:   func(fn string) bool { return target.IsUserFunc(fn, mainModule, prefixes) },
		}),
	}
	// Register before attaching: events may come as soon as a probe is in.
	w.mu.Lock()
	if old := w.sessions[uint32(pid)]; old != nil {
		w.retired = append(w.retired, old) // the process exec'd again
	}
	w.sessions[uint32(pid)] = s
	w.mu.Unlock()
	if err := probes.Attach(exe, points); err != nil {
		w.mu.Lock()
		delete(w.sessions, uint32(pid))
		w.mu.Unlock()
		probes.Close()
		return err
	}
	attached := time.Now()
	kept = true
	w.log.Printf("watching pid %d (%s, %s, main module %s): %d probes", pid, name, bin.GoVersion, bin.MainModule, len(points))
	for _, n := range plan.Notes {
		w.log.Printf("  pid %d: %s", pid, n)
	}
	for _, n := range plan.Warnings {
		w.warn.Printf("pid %d (%s): %s", pid, filepath.Base(name), n)
	}
	if w.budget != nil {
		cycle, err := startDutyCycle(w.budget, pid, probes, points, attached, func(err error) {
			w.warn.Printf("pid %d: overhead budget: %v", pid, err)
		})
		if err != nil {
			w.warn.Printf("pid %d: overhead budget not applied: %v", pid, err)
		}
		w.mu.Lock()
		s.cycle = cycle
		w.mu.Unlock()
		if cycle != nil {
			w.log.Printf("pid %d: overhead budget charges %s per probe hit", pid, cycle.cost)
		}
	}
	go w.awaitExit(pid, s)
	return nil
}

// awaitExit retires a session when its process exits.
func (w *watcher) awaitExit(pid int, s *session) {
	waitExit(pid)
	// The session stays in sessions until finish: its last events may
	// still be in the ring buffer.
	w.mu.Lock()
	if w.sessions[uint32(pid)] == s {
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
// The event loop drains the ring buffer every ringPoll, at once again when
// a drain found ringBatch records or more (it is falling behind). At 16 MiB
// the ring holds about 60,000 records: over a second of the fastest spawn
// storm measured, against a few milliseconds between drains.
const (
	ringPoll  = 2 * time.Millisecond
	ringBatch = 256
)

func (w *watcher) loop(stop <-chan struct{}) error {
	rd, err := ringbuf.NewReader(w.ring)
	if err != nil {
		return fmt.Errorf("read ring buffer: %w", err)
	}
	defer rd.Close()
	var (
		rec         ringbuf.Record
		ev          event.Event
		lastRefresh time.Time
	)
	for {
		retired := w.takeRetired()
		stopping := false
		select {
		case <-stop:
			stopping = true
		default:
		}
		// Drain what the ring holds without blocking, then sleep a little
		// (below): blocking in the reader wakes the agent for every record
		// when it keeps up, and a wake-up costs more than the record. Before
		// summarising, wait for 50 ms of quiet as well.
		quiet := stopping || len(retired) > 0
		deadline := func() time.Time {
			if quiet {
				return time.Now().Add(50 * time.Millisecond)
			}
			return time.Now()
		}
		rd.SetDeadline(deadline())
		read := 0
		for {
			err := rd.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return fmt.Errorf("read ring buffer: %w", err)
			}
			if err := event.Decode(rec.RawSample, &ev); err != nil {
				return err
			}
			w.handle(&ev)
			read++
			if quiet {
				rd.SetDeadline(deadline())
			}
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
		if read < ringBatch {
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

func (w *watcher) summary(s *session) report.Summary {
	sum := report.Summary{
		Process:   s.proc,
		Snapshot:  s.an.Snapshot(),
		DurationS: time.Since(s.started).Seconds(),
	}
	st, err := s.probes.Stats()
	if err != nil {
		sum.Notes = append(sum.Notes, fmt.Sprintf("probe counters unreadable: %v", err))
	}
	sum.EventsLost = st.EventsLost + st.StateFull
	s.cycle.account(&sum)
	sum.ProbeHits = st.Hits
	if st.StateFull > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d goroutine states not stored (map full)", st.StateFull))
	}
	if st.ReadFaults > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d reads of the target's memory failed (page not present)", st.ReadFaults))
	}
	if st.WalkDeep > 0 {
		sum.Notes = append(sum.Notes, fmt.Sprintf("%d context chains too long to follow", st.WalkDeep))
	}
	return sum
}

func (w *watcher) finish(s *session) {
	w.mu.Lock()
	if w.sessions[s.proc.PID] == s {
		delete(w.sessions, s.proc.PID)
	}
	cycle := s.cycle
	w.mu.Unlock()
	cycle.halt()
	sum := w.summary(s)
	if err := s.probes.Close(); err != nil {
		w.log.Printf("detach from pid %d: %v", s.proc.PID, err)
	}
	if err := w.sink.Summary(sum); err != nil {
		w.log.Printf("report summary: %v", err)
	}
	s.bin.Close()
}

func (w *watcher) refresh() {
	w.mu.Lock()
	var sums []report.Summary
	for _, s := range w.sessions {
		sums = append(sums, w.summary(s))
	}
	w.mu.Unlock()
	if err := w.live.Refresh(sums); err != nil {
		w.log.Printf("refresh: %v", err)
	}
}

func (w *watcher) close() error { return w.ring.Close() }
