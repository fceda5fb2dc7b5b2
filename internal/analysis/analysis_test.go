package analysis_test

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// fakeResolver resolves return addresses from a table, like the pcln
// resolver does for a real binary.
type fakeResolver map[uint64][]analysis.Frame

func (r fakeResolver) FramesForReturn(ret uint64) []analysis.Frame {
	fs, ok := r[ret]
	if !ok {
		return []analysis.Frame{{Function: "?unknown"}}
	}
	return fs
}

func isUser(fn string) bool { return strings.HasPrefix(fn, "main.") }

const pid = 4242

// Return addresses of the recorded target.
const (
	retNewproc    = 0x1000 // in runtime.newproc, after systemstack(newproc1)
	retGoHandle   = 0x2000 // main.handle's go statement (line 21)
	retServe      = 0x2100 // main.serve calling main.handle (line 33)
	retGoexit     = 0x2200 // runtime.goexit
	retGoWorker   = 0x2300 // main.startWorkers's go statement (line 50)
	retGoAudit    = 0x2400 // main.audit's go statement (line 60)
	retSQLConn    = 0x3000 // database/sql.(*DB).conn calling context.WithTimeout
	retAuditFunc  = 0x3100 // main.handle.func1 calling db.Exec (line 24)
	retWorkerFunc = 0x3200 // main.startWorkers.func1 (line 52)
	retWithValue  = 0x3300 // main.tag calling context.WithValue (line 70), inlined into main.handle (line 30)
	retTracerSt   = 0x3400 // otel tracer Start called from main.handle (line 28)
)

var (
	fNewproc      = analysis.Frame{Function: "runtime.newproc", File: "/go/src/runtime/proc.go", Line: 5000}
	fGoHandle     = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 21}
	fServe        = analysis.Frame{Function: "main.serve", File: "/src/app/main.go", Line: 33}
	fGoexit       = analysis.Frame{Function: "runtime.goexit", File: "/go/src/runtime/asm_amd64.s", Line: 1700}
	fGoWorker     = analysis.Frame{Function: "main.startWorkers", File: "/src/app/worker.go", Line: 50}
	fGoAudit      = analysis.Frame{Function: "main.audit", File: "/src/app/audit.go", Line: 60}
	fSQLConn      = analysis.Frame{Function: "database/sql.(*DB).conn", File: "/go/src/database/sql/sql.go", Line: 1300}
	fAuditFunc    = analysis.Frame{Function: "main.handle.func1", File: "/src/app/main.go", Line: 24}
	fWorkerFunc   = analysis.Frame{Function: "main.startWorkers.func1", File: "/src/app/worker.go", Line: 52}
	fTagInlined   = analysis.Frame{Function: "main.tag", File: "/src/app/tag.go", Line: 70}
	fHandleTag    = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 30}
	fOtelStart    = analysis.Frame{Function: "go.opentelemetry.io/otel/sdk/trace.(*tracer).Start", File: "/mod/otel/sdk/trace/tracer.go", Line: 40}
	fHandleTracer = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 28}
)

func resolver() fakeResolver {
	return fakeResolver{
		retNewproc:    {fNewproc},
		retGoHandle:   {fGoHandle},
		retServe:      {fServe},
		retGoexit:     {fGoexit},
		retGoWorker:   {fGoWorker},
		retGoAudit:    {fGoAudit},
		retSQLConn:    {fSQLConn},
		retAuditFunc:  {fAuditFunc},
		retWorkerFunc: {fWorkerFunc},
		retWithValue:  {fTagInlined, fHandleTag},
		retTracerSt:   {fOtelStart, fHandleTracer},
	}
}

func newAnalyzer(maxPending int) *analysis.Analyzer {
	return analysis.New(pid, analysis.Options{Resolver: resolver(), IsUser: isUser, MaxPending: maxPending})
}

func otelTrace(hexID string) event.Trace {
	var t event.Trace
	b, err := hex.DecodeString(hexID)
	if err != nil {
		panic(err)
	}
	t.Len = uint8(copy(t.ID[:], b))
	t.Span = [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	return t
}

var (
	traceA = otelTrace("4bf92f3577b34da6a3ce929d0e0e4736")
	traceB = otelTrace("0af7651916cd43dd8448eb211c80319c")
)

func withStack(e event.Event, pcs ...uint64) *event.Event {
	e.NStack = copy(e.Stack[:], pcs)
	return &e
}

// spawn is the record of goroutine child started by parent at a go statement
// whose return address is goStmt.
func spawn(t uint64, child, parent uint64, goStmt ...uint64) *event.Event {
	pcs := append([]uint64{retNewproc}, goStmt...)
	pcs = append(pcs, retGoexit)
	return withStack(event.Event{Time: t, Kind: event.Spawn, Goroutine: child, Parent: parent, PID: pid, Trace: traceA}, pcs...)
}

func firstCheck(t uint64, g uint64, o event.Outcome, stack ...uint64) *event.Event {
	return withStack(event.Event{Time: t, Kind: event.FirstCheck, Outcome: o, Goroutine: g, PID: pid, Trace: traceA}, stack...)
}

// spawnedAt sets the spawn time that the probes send with a first check.
func spawnedAt(e *event.Event, t uint64) *event.Event {
	e.SpawnTime = t
	return e
}

func mustNoBreak(t *testing.T, a *analysis.Analyzer, e *event.Event) {
	t.Helper()
	if b, ok := a.Handle(e); ok {
		t.Fatalf("Handle(%v of g%d) reported a break: %+v", e.Kind, e.Goroutine, b)
	}
}

func mustBreak(t *testing.T, a *analysis.Analyzer, e *event.Event) analysis.Break {
	t.Helper()
	b, ok := a.Handle(e)
	if !ok {
		t.Fatalf("Handle(%v of g%d, outcome %d) reported no break", e.Kind, e.Goroutine, e.Outcome)
	}
	return b
}

func site(t *testing.T, s analysis.Snapshot, f analysis.Frame) analysis.SpawnSite {
	t.Helper()
	for _, ss := range s.SpawnSites {
		if ss.Site == f {
			return ss
		}
	}
	t.Fatalf("no spawn site %v in %+v", f, s.SpawnSites)
	return analysis.SpawnSite{}
}

func TestPropagated(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(100, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, firstCheck(200, 10, event.Propagated, retSQLConn, retAuditFunc))

	s := a.Snapshot()
	if s.PID != pid || s.Events != 2 || s.Unmatched != 0 {
		t.Errorf("Snapshot PID/Events/Unmatched = %d/%d/%d, want %d/2/0", s.PID, s.Events, s.Unmatched, pid)
	}
	if len(s.Breaks) != 0 {
		t.Errorf("Breaks = %+v, want none", s.Breaks)
	}
	want := []analysis.SpawnSite{{Site: fGoHandle, TracedSpawns: 1, Propagated: 1}}
	if !reflect.DeepEqual(s.SpawnSites, want) {
		t.Errorf("SpawnSites = %+v, want %+v", s.SpawnSites, want)
	}
	if r := s.SpawnSites[0].Retention(); r != 1 {
		t.Errorf("Retention() = %v, want 1", r)
	}
}

func TestLostAtSpawn(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(100, 10, 1, retGoHandle, retServe))
	b := mustBreak(t, a, spawnedAt(firstCheck(250, 10, event.Lost, retSQLConn, retAuditFunc), 100))

	if b.Kind != analysis.LostAtSpawn {
		t.Errorf("Kind = %q, want %q", b.Kind, analysis.LostAtSpawn)
	}
	if b.Site != fAuditFunc {
		t.Errorf("Site = %v, want the innermost user frame %v", b.Site, fAuditFunc)
	}
	if want := []analysis.Frame{fGoHandle, fServe}; !reflect.DeepEqual(b.Spawn, want) {
		t.Errorf("Spawn = %v, want %v (go statement first, runtime frames trimmed)", b.Spawn, want)
	}
	if b.PID != pid || b.Goroutine != 10 || b.ParentGoroutine != 1 {
		t.Errorf("PID/Goroutine/ParentGoroutine = %d/%d/%d, want %d/10/1", b.PID, b.Goroutine, b.ParentGoroutine, pid)
	}
	if b.SpawnTime != 100 || b.Time != 250 {
		t.Errorf("SpawnTime/Time = %d/%d, want 100/250", b.SpawnTime, b.Time)
	}
	if b.Trace != traceA {
		t.Errorf("Trace = %+v, want the inherited trace", b.Trace)
	}
	if !b.First || b.Count != 1 {
		t.Errorf("First/Count = %v/%d, want true/1", b.First, b.Count)
	}

	// The same break again, from another request's goroutine.
	mustNoBreak(t, a, spawn(300, 11, 2, retGoHandle, retServe))
	b2 := mustBreak(t, a, spawnedAt(firstCheck(400, 11, event.Lost, retSQLConn, retAuditFunc), 300))
	if b2.First || b2.Count != 2 {
		t.Errorf("second occurrence: First/Count = %v/%d, want false/2", b2.First, b2.Count)
	}
	if b2.Site != fAuditFunc || b2.Goroutine != 11 || b2.ParentGoroutine != 2 || b2.SpawnTime != 300 {
		t.Errorf("second occurrence: %+v", b2)
	}

	s := a.Snapshot()
	if len(s.Breaks) != 1 {
		t.Fatalf("Breaks = %+v, want one distinct break", s.Breaks)
	}
	want := analysis.BreakCount{
		Kind:    analysis.LostAtSpawn,
		Site:    fAuditFunc,
		Stack:   []analysis.Frame{fAuditFunc},
		Spawn:   []analysis.Frame{fGoHandle, fServe},
		Count:   2,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	if !reflect.DeepEqual(s.Breaks[0], want) {
		t.Errorf("Breaks[0] = %+v, want %+v", s.Breaks[0], want)
	}
	ss := site(t, s, fGoHandle)
	if ss.TracedSpawns != 2 || ss.Lost != 2 || ss.Propagated != 0 || ss.NewRoot != 0 {
		t.Errorf("spawn site = %+v, want 2 traced, 2 lost", ss)
	}
	if r := ss.Retention(); r != 0 {
		t.Errorf("Retention() = %v, want 0", r)
	}
}

// The same check site reached from two different go statements is two
// distinct breaks.
func TestLostAtSpawnDistinctSpawnSites(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(1, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawn(2, 11, 1, retGoAudit, retServe))
	b1 := mustBreak(t, a, firstCheck(3, 10, event.Lost, retSQLConn, retAuditFunc))
	b2 := mustBreak(t, a, firstCheck(4, 11, event.Lost, retSQLConn, retAuditFunc))
	if !b1.First || !b2.First || b2.Count != 1 {
		t.Errorf("First/Count = %v,%v/%d, want true,true/1", b1.First, b2.First, b2.Count)
	}
	if len(a.Snapshot().Breaks) != 2 {
		t.Errorf("Breaks = %+v, want 2", a.Snapshot().Breaks)
	}
}

// Two check sites reached from one go statement are two distinct breaks.
func TestLostAtSpawnDistinctCheckSites(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(1, 10, 1, retGoWorker, retServe))
	mustNoBreak(t, a, spawn(2, 11, 1, retGoWorker, retServe))
	b1 := mustBreak(t, a, firstCheck(3, 10, event.Lost, retSQLConn, retAuditFunc))
	b2 := mustBreak(t, a, firstCheck(4, 11, event.Lost, retWorkerFunc))
	if b1.Site != fAuditFunc || b2.Site != fWorkerFunc {
		t.Errorf("Sites = %v, %v; want %v, %v", b1.Site, b2.Site, fAuditFunc, fWorkerFunc)
	}
	if !b1.First || !b2.First || b2.Count != 1 {
		t.Errorf("First/Count = %v,%v/%d, want true,true/1", b1.First, b2.First, b2.Count)
	}
	if n := len(a.Snapshot().Breaks); n != 2 {
		t.Errorf("%d distinct breaks, want 2", n)
	}
}

func TestNewRoot(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(100, 10, 1, retGoHandle, retServe))
	e := firstCheck(200, 10, event.NewRoot, retTracerSt)
	e.Other = traceB
	e.Other.Root = true
	b := mustBreak(t, a, e)
	if b.Kind != analysis.NewRoot {
		t.Errorf("Kind = %q, want %q", b.Kind, analysis.NewRoot)
	}
	if b.Site != fHandleTracer {
		t.Errorf("Site = %v, want %v", b.Site, fHandleTracer)
	}
	if b.Trace != traceA || b.Other.TraceID() != traceB.TraceID() {
		t.Errorf("Trace/Other = %s/%s, want %s/%s", b.Trace.Label(), b.Other.Label(), traceA.Label(), traceB.Label())
	}
	if want := []analysis.Frame{fGoHandle, fServe}; !reflect.DeepEqual(b.Spawn, want) {
		t.Errorf("Spawn = %v, want %v", b.Spawn, want)
	}
	if !b.First || b.Count != 1 {
		t.Errorf("First/Count = %v/%d, want true/1", b.First, b.Count)
	}
	ss := site(t, a.Snapshot(), fGoHandle)
	if ss.NewRoot != 1 || ss.Lost != 0 || ss.Propagated != 0 || ss.TracedSpawns != 1 {
		t.Errorf("spawn site = %+v, want 1 new root", ss)
	}
	if r := ss.Retention(); r != 0 {
		t.Errorf("Retention() = %v, want 0", r)
	}
	if bs := a.Snapshot().Breaks; len(bs) != 1 || bs[0].Kind != analysis.NewRoot {
		t.Errorf("Breaks = %+v, want one new-root", bs)
	}
}

func TestDroppedAndOverwritten(t *testing.T) {
	a := newAnalyzer(0)
	d := withStack(event.Event{Time: 10, Kind: event.Dropped, Goroutine: 7, PID: pid, Trace: traceA, Other: traceB}, retTracerSt, retServe)
	b := mustBreak(t, a, d)
	if b.Kind != analysis.Dropped || b.Site != fHandleTracer {
		t.Errorf("dropped: Kind/Site = %q/%v, want %q/%v", b.Kind, b.Site, analysis.Dropped, fHandleTracer)
	}
	if b.Spawn != nil || b.ParentGoroutine != 0 || b.SpawnTime != 0 {
		t.Errorf("dropped: Spawn/Parent/SpawnTime = %v/%d/%d, want none", b.Spawn, b.ParentGoroutine, b.SpawnTime)
	}
	if b.Goroutine != 7 || b.Time != 10 || b.Trace != traceA || b.Other != traceB || !b.First || b.Count != 1 {
		t.Errorf("dropped: %+v", b)
	}

	userKey := func(v string) event.Trace {
		var tr event.Trace
		tr.Key = 1
		tr.Len = uint8(copy(tr.ID[:], v))
		return tr
	}
	o := withStack(event.Event{Time: 20, Kind: event.Overwritten, Goroutine: 8, PID: pid, Trace: userKey("req-1"), Other: userKey("req-2")}, retWithValue, retServe)
	b = mustBreak(t, a, o)
	// main.tag is inlined into main.handle: the innermost user frame is the inlined one.
	if b.Kind != analysis.Overwritten || b.Site != fTagInlined {
		t.Errorf("overwritten: Kind/Site = %q/%v, want %q/%v", b.Kind, b.Site, analysis.Overwritten, fTagInlined)
	}
	if b.Spawn != nil || b.ParentGoroutine != 0 {
		t.Errorf("overwritten: Spawn/Parent = %v/%d, want none", b.Spawn, b.ParentGoroutine)
	}
	if b.Other.Label() != "req-2" || b.Trace.Label() != "req-1" {
		t.Errorf("overwritten: Trace/Other = %q/%q, want req-1/req-2", b.Trace.Label(), b.Other.Label())
	}
	b = mustBreak(t, a, o)
	if b.First || b.Count != 2 {
		t.Errorf("overwritten again: First/Count = %v/%d, want false/2", b.First, b.Count)
	}

	s := a.Snapshot()
	if len(s.SpawnSites) != 0 {
		t.Errorf("SpawnSites = %+v, want none", s.SpawnSites)
	}
	want := []analysis.BreakCount{
		// The stack: the user frames of the check, innermost first, the
		// frames a call was inlined into expanded.
		{Kind: analysis.Dropped, Site: fHandleTracer, Stack: []analysis.Frame{fHandleTracer, fServe}, Count: 1, TraceID: traceA.Label()},
		{Kind: analysis.Overwritten, Site: fTagInlined, Stack: []analysis.Frame{fTagInlined, fHandleTag, fServe}, Count: 2, TraceID: "req-1"},
	}
	if !reflect.DeepEqual(s.Breaks, want) {
		t.Errorf("Breaks = %+v, want %+v", s.Breaks, want)
	}
}

func TestFirstCheckWithoutSpawn(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(1, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, firstCheck(2, 99, event.Lost, retSQLConn, retAuditFunc))
	s := a.Snapshot()
	if s.Unmatched != 1 {
		t.Errorf("Unmatched = %d, want 1", s.Unmatched)
	}
	if len(s.Breaks) != 0 {
		t.Errorf("Breaks = %+v, want none", s.Breaks)
	}
	if ss := site(t, s, fGoHandle); ss.Lost != 0 || ss.Propagated != 0 || ss.Retention() != -1 {
		t.Errorf("spawn site = %+v, retention %v; want nothing judged", ss, ss.Retention())
	}
	// A goroutine is judged once: a second first check is unmatched.
	mustNoBreak(t, a, firstCheck(3, 10, event.Propagated, retSQLConn, retAuditFunc))
	mustNoBreak(t, a, firstCheck(4, 10, event.Lost, retSQLConn, retAuditFunc))
	s = a.Snapshot()
	if s.Unmatched != 2 || len(s.Breaks) != 0 {
		t.Errorf("after a repeated first check: Unmatched/Breaks = %d/%+v, want 2/none", s.Unmatched, s.Breaks)
	}
	if ss := site(t, s, fGoHandle); ss.Propagated != 1 || ss.Lost != 0 {
		t.Errorf("spawn site = %+v, want 1 propagated", ss)
	}
}

func TestMaxPendingEviction(t *testing.T) {
	a := newAnalyzer(2)
	mustNoBreak(t, a, spawn(1, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawn(2, 11, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawn(3, 12, 1, retGoHandle, retServe))
	// g10, the oldest, was forgotten.
	mustNoBreak(t, a, firstCheck(4, 10, event.Lost, retSQLConn, retAuditFunc))
	if u := a.Snapshot().Unmatched; u != 1 {
		t.Errorf("Unmatched = %d, want 1 (the oldest spawn forgotten)", u)
	}
	b := mustBreak(t, a, spawnedAt(firstCheck(5, 11, event.Lost, retSQLConn, retAuditFunc), 2))
	if b.Goroutine != 11 || b.SpawnTime != 2 || b.ParentGoroutine != 1 {
		t.Errorf("g11: %+v", b)
	}
	mustNoBreak(t, a, firstCheck(6, 12, event.Propagated, retSQLConn, retAuditFunc))
	s := a.Snapshot()
	if s.Unmatched != 1 || s.Events != 6 {
		t.Errorf("Unmatched/Events = %d/%d, want 1/6", s.Unmatched, s.Events)
	}
	if ss := site(t, s, fGoHandle); ss.TracedSpawns != 3 || ss.Lost != 1 || ss.Propagated != 1 {
		t.Errorf("spawn site = %+v, want 3 traced, 1 lost, 1 propagated", ss)
	}
}

// Eviction keeps working over many spawns whose goroutines were judged, and
// never forgets one of the MaxPending newest.
func TestMaxPendingLongRun(t *testing.T) {
	const max = 4
	a := newAnalyzer(max)
	g := uint64(100)
	for i := range 5000 {
		g++
		mustNoBreak(t, a, spawn(uint64(i), g, 1, retGoHandle, retServe))
		if i%3 == 0 {
			mustNoBreak(t, a, firstCheck(uint64(i), g, event.Propagated, retSQLConn, retAuditFunc))
		}
	}
	// The newest max goroutines not yet judged are still remembered.
	if u := a.Snapshot().Unmatched; u != 0 {
		t.Fatalf("Unmatched = %d during the run, want 0", u)
	}
	var left []uint64
	for x := g; x > 100 && len(left) < max; x-- {
		if (x-101)%3 != 0 {
			left = append(left, x)
		}
	}
	for _, x := range left {
		mustNoBreak(t, a, firstCheck(9999, x, event.Propagated, retSQLConn, retAuditFunc))
	}
	if u := a.Snapshot().Unmatched; u != 0 {
		t.Errorf("Unmatched = %d for the %d newest pending goroutines, want 0", u, max)
	}
}

func TestSnapshotSortsSpawnSites(t *testing.T) {
	a := newAnalyzer(0)
	g := uint64(10)
	run := func(goStmt uint64, o event.Outcome) {
		g++
		mustNoBreak(t, a, spawn(g, g, 1, goStmt, retServe))
		e := firstCheck(g, g, o, retSQLConn, retAuditFunc)
		if o == event.Propagated {
			mustNoBreak(t, a, e)
		} else {
			mustBreak(t, a, e)
		}
	}
	// Seen first: many propagated, no break.
	for range 5 {
		run(retGoHandle, event.Propagated)
	}
	// Then: one lost.
	run(retGoAudit, event.Lost)
	run(retGoAudit, event.Propagated)
	// Last: one lost and two new roots, 3 breaks.
	run(retGoWorker, event.Lost)
	run(retGoWorker, event.NewRoot)
	run(retGoWorker, event.NewRoot)

	s := a.Snapshot()
	var got []analysis.Frame
	for _, ss := range s.SpawnSites {
		got = append(got, ss.Site)
	}
	if want := []analysis.Frame{fGoWorker, fGoAudit, fGoHandle}; !reflect.DeepEqual(got, want) {
		t.Errorf("spawn sites in order %v, want %v", got, want)
	}
	want := []float64{0, 0.5, 1}
	for i, ss := range s.SpawnSites {
		if r := ss.Retention(); i < len(want) && r != want[i] {
			t.Errorf("Retention() of %v = %v, want %v", ss.Site.Function, r, want[i])
		}
	}
	// A snapshot is a copy: later events do not change it.
	run(retGoHandle, event.Lost)
	if s.SpawnSites[2].Lost != 0 {
		t.Errorf("earlier Snapshot changed by later events: %+v", s.SpawnSites[2])
	}
}

func TestRetention(t *testing.T) {
	for _, c := range []struct {
		s    analysis.SpawnSite
		want float64
	}{
		{analysis.SpawnSite{}, -1},
		{analysis.SpawnSite{TracedSpawns: 7}, -1},
		{analysis.SpawnSite{TracedSpawns: 4, Propagated: 4}, 1},
		{analysis.SpawnSite{TracedSpawns: 4, Lost: 4}, 0},
		{analysis.SpawnSite{TracedSpawns: 4, NewRoot: 4}, 0},
		{analysis.SpawnSite{TracedSpawns: 4, Propagated: 3, Lost: 1}, 0.75},
		{analysis.SpawnSite{TracedSpawns: 5, Propagated: 2, Lost: 1, NewRoot: 1}, 0.5},
		{analysis.SpawnSite{TracedSpawns: 40000, Propagated: 32000, Lost: 8000}, 0.8},
	} {
		if got := c.s.Retention(); got != c.want {
			t.Errorf("Retention() of %+v = %v, want %v", c.s, got, c.want)
		}
	}
	// Through the analyzer: spawned but never judged.
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(1, 10, 1, retGoWorker))
	ss := site(t, a.Snapshot(), fGoWorker)
	if r := ss.Retention(); r != -1 {
		t.Errorf("Retention() with nothing judged = %v, want -1", r)
	}
}

// The spawn stack starts at the go statement whatever runtime frames of
// goroutine creation precede it, and goexit is dropped.
func TestSpawnStackTrimsRuntimeFrames(t *testing.T) {
	r := resolver()
	const retSystemstack, retNewprocFunc1 = 0x1100, 0x1200
	r[retSystemstack] = []analysis.Frame{{Function: "runtime.systemstack", File: "/go/src/runtime/asm_amd64.s", Line: 500}}
	r[retNewprocFunc1] = []analysis.Frame{{Function: "runtime.newproc.func1", File: "/go/src/runtime/proc.go", Line: 4990}}
	a := analysis.New(pid, analysis.Options{Resolver: r, IsUser: isUser})
	e := withStack(event.Event{Time: 1, Kind: event.Spawn, Goroutine: 10, Parent: 1, PID: pid, Trace: traceA},
		retNewprocFunc1, retSystemstack, retNewproc, retGoWorker, retServe, retGoexit)
	mustNoBreak(t, a, e)
	b := mustBreak(t, a, firstCheck(2, 10, event.Lost, retWorkerFunc))
	if want := []analysis.Frame{fGoWorker, fServe}; !reflect.DeepEqual(b.Spawn, want) {
		t.Errorf("Spawn = %v, want %v", b.Spawn, want)
	}
	if b.Site != fWorkerFunc {
		t.Errorf("Site = %v, want %v", b.Site, fWorkerFunc)
	}
	if s := a.Snapshot().SpawnSites; len(s) != 1 || s[0].Site != fGoWorker {
		t.Errorf("SpawnSites = %+v, want the go statement %v", s, fGoWorker)
	}
}

// TestRuntimeSpawnsNotTraced: goroutines the runtime starts itself (a GC
// mark worker started while a traced goroutine allocates) are not counted
// at the user's line, and a check by one is unmatched, not a break.
func TestRuntimeSpawnsNotTraced(t *testing.T) {
	res := resolver()
	const retGCStart = 0x5000
	res[retGCStart] = []analysis.Frame{{Function: "runtime.gcBgMarkStartWorkers", File: "/go/src/runtime/mgc.go", Line: 1300}}
	a := analysis.New(pid, analysis.Options{Resolver: res, IsUser: isUser})
	mustNoBreak(t, a, spawn(100, 10, 1, retGCStart, retServe))
	mustNoBreak(t, a, firstCheck(200, 10, event.Lost, retAuditFunc))
	s := a.Snapshot()
	if len(s.SpawnSites) != 0 || len(s.Breaks) != 0 || s.Unmatched != 1 {
		t.Errorf("runtime spawn counted: sites %+v, breaks %+v, unmatched %d", s.SpawnSites, s.Breaks, s.Unmatched)
	}
}

// TestJudgeTheWork: an inheriting goroutine's traceless incidental check
// (a timeout on Background to wait for a semaphore) is no verdict; its
// work decides. Work in the trace: propagated, no break. No work at all
// until the end: lost at the incidental check, with its stack.
func TestJudgeTheWork(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(100, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawnedAt(firstCheck(200, 10, event.Traceless, retSQLConn, retAuditFunc), 100))
	mustNoBreak(t, a, spawnedAt(firstCheck(300, 10, event.Propagated, retAuditFunc), 100))

	mustNoBreak(t, a, spawn(400, 11, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawnedAt(firstCheck(500, 11, event.Traceless, retSQLConn, retAuditFunc), 400))
	// A second incidental check is not sent by the probes; were it
	// received, it would not replace the first.
	mustNoBreak(t, a, spawnedAt(firstCheck(600, 11, event.Traceless, retWorkerFunc), 400))
	if s := a.Snapshot(); site(t, s, fGoHandle).Lost != 0 || len(s.Breaks) != 0 {
		t.Fatalf("before the end: %+v", s)
	}
	bs := a.Finish()
	if len(bs) != 1 {
		t.Fatalf("Finish: %d breaks, want 1: %+v", len(bs), bs)
	}
	b := bs[0]
	if b.Kind != analysis.LostAtSpawn || b.Site != fAuditFunc || b.Goroutine != 11 || !b.First || b.After() != 100 {
		t.Errorf("Finish: %+v (after %d ns), want lost-at-spawn of g11 at %v, 100 ns after its spawn", b, b.After(), fAuditFunc)
	}
	if !reflect.DeepEqual(b.Spawn, []analysis.Frame{fGoHandle, fServe}) {
		t.Errorf("spawn stack %v", b.Spawn)
	}
	ss := site(t, a.Snapshot(), fGoHandle)
	if ss.TracedSpawns != 2 || ss.Propagated != 1 || ss.Lost != 1 || ss.NeverJudged != 0 {
		t.Errorf("spawn site %+v, want 2 traced, 1 kept, 1 lost, none unjudged", ss)
	}
	if again := a.Finish(); len(again) != 0 {
		t.Errorf("a second Finish judged again: %+v", again)
	}
}

// TestLazySingleton: a goroutine started under sync.Once is no traced
// spawn and gets no verdict, whatever its first check shows.
func TestLazySingleton(t *testing.T) {
	const retOnce = 0x4000
	r := resolver()
	r[retOnce] = []analysis.Frame{{Function: "sync.(*Once).doSlow", File: "/go/src/sync/once.go", Line: 78}}
	a := analysis.New(pid, analysis.Options{Resolver: r, IsUser: isUser})
	mustNoBreak(t, a, spawn(100, 10, 1, retGoWorker, retOnce, retServe))
	mustNoBreak(t, a, spawnedAt(firstCheck(900, 10, event.Lost, retWorkerFunc), 100))
	s := a.Snapshot()
	if len(s.SpawnSites) != 0 || len(s.Breaks) != 0 || s.Unmatched != 0 {
		t.Errorf("snapshot %+v, want no site, no break, nothing unmatched", s)
	}
}

// TestNeverJudged: traced spawns without a verdict are counted per site.
func TestNeverJudged(t *testing.T) {
	a := newAnalyzer(0)
	for g := uint64(10); g < 14; g++ {
		mustNoBreak(t, a, spawn(100, g, 1, retGoHandle, retServe))
	}
	mustNoBreak(t, a, firstCheck(200, 10, event.Propagated, retAuditFunc))
	mustNoBreak(t, a, firstCheck(200, 11, event.Other, retAuditFunc)) // another trace: not judged
	s := a.Snapshot()
	if ss := site(t, s, fGoHandle); ss.NeverJudged != 3 || s.NeverJudged != 3 {
		t.Errorf("spawn site %+v, total %d: want 3 never judged", ss, s.NeverJudged)
	}
}

// TestStaleParent: the probes' stale-parent record (a span started on a
// context whose span the same goroutine started and ended) is a break at
// the Start line, the SDK's frames skipped, with the ended parent as its
// trace and the new span as the other; it is no spawn's verdict, so a
// pending goroutine stays pending and its spawn site's counts do not move.
func TestStaleParent(t *testing.T) {
	a := newAnalyzer(0)
	mustNoBreak(t, a, spawn(1, 9, 7, retGoHandle, retServe))
	parent, child := traceA, traceA
	parent.Span = [8]byte{0xaa, 1, 2, 3, 4, 5, 6, 7}
	child.Span = [8]byte{0xbb, 1, 2, 3, 4, 5, 6, 7}
	stale := func(tm uint64) *event.Event {
		return withStack(event.Event{Time: tm, Kind: event.StaleParent, Goroutine: 7, PID: pid, Trace: parent, Other: child}, retTracerSt, retServe)
	}
	for i := range 3 {
		b := mustBreak(t, a, stale(uint64(10+i)))
		if b.Kind != analysis.StaleParent || b.Site != fHandleTracer {
			t.Fatalf("Kind/Site = %q/%v, want %q/%v", b.Kind, b.Site, analysis.StaleParent, fHandleTracer)
		}
		if b.Trace.Span != parent.Span || b.Other.Span != child.Span || b.Trace.Label() != traceA.Label() {
			t.Errorf("Trace/Other = %s span %x / span %x, want %s span %x / span %x",
				b.Trace.Label(), b.Trace.Span, b.Other.Span, traceA.Label(), parent.Span, child.Span)
		}
		if b.Spawn != nil || b.ParentGoroutine != 0 || b.SpawnTime != 0 || b.After() != 0 {
			t.Errorf("Spawn/Parent/SpawnTime = %v/%d/%d, want none", b.Spawn, b.ParentGoroutine, b.SpawnTime)
		}
		if b.First != (i == 0) || b.Count != uint64(i+1) {
			t.Errorf("occurrence %d: First/Count = %v/%d", i+1, b.First, b.Count)
		}
	}
	s := a.Snapshot()
	want := []analysis.BreakCount{
		{Kind: analysis.StaleParent, Site: fHandleTracer, Stack: []analysis.Frame{fHandleTracer, fServe}, Count: 3, TraceID: traceA.Label()},
	}
	if !reflect.DeepEqual(s.Breaks, want) {
		t.Errorf("Breaks = %+v, want %+v", s.Breaks, want)
	}
	ss := site(t, s, fGoHandle)
	if ss.TracedSpawns != 1 || ss.Propagated+ss.Lost+ss.NewRoot != 0 || ss.NeverJudged != 1 {
		t.Errorf("spawn site = %+v, want 1 traced spawn, not judged", ss)
	}
	// The pending goroutine is judged at its own first check still.
	mustNoBreak(t, a, firstCheck(20, 9, event.Propagated, retAuditFunc))
	if ss := site(t, a.Snapshot(), fGoHandle); ss.Propagated != 1 {
		t.Errorf("spawn site after the first check = %+v, want 1 propagated", ss)
	}
}
