package analysis_test

import (
	"reflect"
	"testing"

	"github.com/ctxwatch/ctxwatch/internal/analysis"
	"github.com/ctxwatch/ctxwatch/internal/event"
)

// Return addresses of log records in the recorded target.
const (
	retSlogInfo   = 0x5000 // log/slog.Info calling (*Logger).log
	retHandleLog  = 0x5100 // main.handle calling slog.Info (line 40)
	retHandleCtx  = 0x5200 // main.handle calling slog.InfoContext (line 41)
	retLogfInner  = 0x5300 // main.logf calling (*Logger).InfoContext (line 90), main.logf's own code
	retHandleLogf = 0x5400 // main.handle calling main.logf (line 42)
	retInlined    = 0x5500 // main.logf's slog call (line 90) inlined into main.handle (line 43)
)

var (
	fSlogInfo     = analysis.Frame{Function: "log/slog.Info", File: "/go/src/log/slog/logger.go", Line: 303}
	fHandleLog    = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 40}
	fHandleCtx    = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 41}
	fLogfInner    = analysis.Frame{Function: "main.logf", File: "/src/app/log.go", Line: 90}
	fHandleLogf   = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 42}
	fHandleInline = analysis.Frame{Function: "main.handle", File: "/src/app/main.go", Line: 43}
)

func logResolver() fakeResolver {
	r := resolver()
	r[retSlogInfo] = []analysis.Frame{fSlogInfo}
	r[retHandleLog] = []analysis.Frame{fHandleLog}
	r[retHandleCtx] = []analysis.Frame{fHandleCtx}
	r[retLogfInner] = []analysis.Frame{fLogfInner}
	r[retHandleLogf] = []analysis.Frame{fHandleLogf}
	r[retInlined] = []analysis.Frame{fLogfInner, fHandleInline}
	return r
}

// logRecord is a record written by goroutine g whose context carried what
// o says: the trace in scope (Propagated), none (Lost), or Other (another
// trace in other, or an unknown context when other is invalid).
func logRecord(t uint64, g uint64, o event.Outcome, other event.Trace, stack ...uint64) *event.Event {
	return withStack(event.Event{Time: t, Kind: event.Log, Outcome: o, Goroutine: g, PID: pid, Trace: traceA, Other: other}, stack...)
}

func logSite(t *testing.T, s analysis.Snapshot, f analysis.Frame) analysis.LogSite {
	t.Helper()
	for _, ls := range s.LogSites {
		if ls.Site == f {
			return ls
		}
	}
	t.Fatalf("no log site %v in %+v", f, s.LogSites)
	return analysis.LogSite{}
}

// TestLogWithoutTrace: an owner's records are counted per line, with the
// trace or without; each without is a log-without-trace break at the
// user's line, not in log/slog, with no spawn stack.
func TestLogWithoutTrace(t *testing.T) {
	a := analysis.New(pid, analysis.Options{Resolver: logResolver(), IsUser: isUser})
	for i := range uint64(3) {
		b := mustBreak(t, a, logRecord(100+i, 1, event.Lost, event.Trace{}, retSlogInfo, retHandleLog, retServe))
		if b.Kind != analysis.LogWithoutTrace || b.Site != fHandleLog || b.Spawn != nil || b.Count != i+1 || b.First != (i == 0) {
			t.Errorf("record %d: %+v, want log-without-trace at %v, no spawn, count %d", i, b, fHandleLog, i+1)
		}
		if !reflect.DeepEqual(b.Stack, []analysis.Frame{fHandleLog, fServe}) {
			t.Errorf("stack %v", b.Stack)
		}
		mustNoBreak(t, a, logRecord(110+i, 1, event.Propagated, traceA, retHandleCtx, retServe))
	}
	// Another trace, or a context that cannot be walked: inside a trace,
	// neither with it nor without.
	mustNoBreak(t, a, logRecord(200, 1, event.Other, traceB, retHandleCtx, retServe))
	mustNoBreak(t, a, logRecord(201, 1, event.Other, event.Trace{}, retHandleCtx, retServe))
	s := a.Snapshot()
	if got, want := logSite(t, s, fHandleLog), (analysis.LogSite{Site: fHandleLog, InsideTrace: 3, WithoutTrace: 3}); got != want {
		t.Errorf("log site %+v, want %+v", got, want)
	}
	if got, want := logSite(t, s, fHandleCtx), (analysis.LogSite{Site: fHandleCtx, InsideTrace: 5, WithTrace: 3}); got != want {
		t.Errorf("log site %+v, want %+v", got, want)
	}
	if s.LogSites[0].Site != fHandleLog {
		t.Errorf("log sites %+v: the one without the trace is not first", s.LogSites)
	}
	if len(s.Breaks) != 1 || s.Breaks[0].Count != 3 || s.Breaks[0].Kind != analysis.LogWithoutTrace {
		t.Errorf("breaks %+v, want one log-without-trace counted 3 times", s.Breaks)
	}
}

// TestLogJudgesInheritance: a record is trace-bearing work. The first
// record of a goroutine that inherited the trace is its verdict: with the
// trace, propagated; without, lost at the spawn site and reported as
// log-without-trace with the spawn stack; its held traceless incidental
// check is then no lost-at-spawn at the end. A record on a context that
// cannot be walked judges nothing.
func TestLogJudgesInheritance(t *testing.T) {
	a := analysis.New(pid, analysis.Options{Resolver: logResolver(), IsUser: isUser})
	mustNoBreak(t, a, spawn(100, 10, 1, retGoHandle, retServe))
	mustNoBreak(t, a, spawnedAt(firstCheck(150, 10, event.Traceless, retSQLConn, retAuditFunc), 100))
	mustNoBreak(t, a, logRecord(200, 10, event.Propagated, traceA, retHandleCtx))

	mustNoBreak(t, a, spawn(300, 11, 1, retGoHandle, retServe))
	mustNoBreak(t, a, logRecord(350, 11, event.Other, event.Trace{}, retHandleCtx)) // unknown: still pending
	b := mustBreak(t, a, spawnedAt(logRecord(400, 11, event.Lost, event.Trace{}, retSlogInfo, retHandleLog), 300))
	if b.Kind != analysis.LogWithoutTrace || b.Site != fHandleLog || b.ParentGoroutine != 1 || b.After() != 100 {
		t.Errorf("break %+v, want log-without-trace at %v from g1, 100 ns after the spawn", b, fHandleLog)
	}
	if !reflect.DeepEqual(b.Spawn, []analysis.Frame{fGoHandle, fServe}) {
		t.Errorf("spawn stack %v", b.Spawn)
	}
	if bs := a.Finish(); len(bs) != 0 {
		t.Errorf("Finish: %+v, want nothing left to judge", bs)
	}
	s := a.Snapshot()
	if ss := site(t, s, fGoHandle); ss.TracedSpawns != 2 || ss.Propagated != 1 || ss.Lost != 1 || ss.NeverJudged != 0 {
		t.Errorf("spawn site %+v, want 2 traced, 1 kept, 1 lost", ss)
	}
	if ls := logSite(t, s, fHandleCtx); ls.InsideTrace != 2 || ls.WithTrace != 1 {
		t.Errorf("log site %+v, want 2 inside, 1 with", ls)
	}
	// The goroutine's later records are counted without its spawn.
	b = mustBreak(t, a, logRecord(500, 11, event.Lost, event.Trace{}, retSlogInfo, retHandleLog))
	if b.Spawn != nil || b.Count != 1 || !b.First {
		t.Errorf("a later record: %+v, want a first break of its own, without spawn", b)
	}
}

// TestLogFuncs: a --log-func helper's call is the record, at the caller's
// line; the slog record written inside it (its code on the stack) is not
// counted again; where the helper was inlined, its record is reported at
// the caller's line.
func TestLogFuncs(t *testing.T) {
	a := analysis.New(pid, analysis.Options{Resolver: logResolver(), IsUser: isUser, LogFuncs: []string{"main.logf"}})
	b := mustBreak(t, a, logRecord(100, 1, event.Lost, event.Trace{}, retHandleLogf, retServe)) // the helper's entry probe
	if b.Site != fHandleLogf {
		t.Errorf("helper's call reported at %v, want %v", b.Site, fHandleLogf)
	}
	mustNoBreak(t, a, logRecord(101, 1, event.Lost, event.Trace{}, retLogfInner, retHandleLogf, retServe))
	b = mustBreak(t, a, logRecord(102, 1, event.Lost, event.Trace{}, retInlined, retServe))
	if b.Site != fHandleInline {
		t.Errorf("inlined helper's record reported at %v, want %v", b.Site, fHandleInline)
	}
	s := a.Snapshot()
	if len(s.LogSites) != 2 {
		t.Errorf("log sites %+v, want the two calls of the helper", s.LogSites)
	}

	// Without --log-func, the record inside the helper is its own line.
	a = analysis.New(pid, analysis.Options{Resolver: logResolver(), IsUser: isUser})
	b = mustBreak(t, a, logRecord(101, 1, event.Lost, event.Trace{}, retLogfInner, retHandleLogf, retServe))
	if b.Site != fLogfInner {
		t.Errorf("without --log-func: reported at %v, want %v", b.Site, fLogfInner)
	}
}

// TestLogLazySingleton: a goroutine started under sync.Once inherits
// nothing: neither its first record nor its later ones, which the probes
// still send while the request that started it is in scope, are judged
// or counted.
func TestLogLazySingleton(t *testing.T) {
	const retOnce = 0x4000
	r := logResolver()
	r[retOnce] = []analysis.Frame{{Function: "sync.(*Once).doSlow", File: "/go/src/sync/once.go", Line: 78}}
	a := analysis.New(pid, analysis.Options{Resolver: r, IsUser: isUser})
	mustNoBreak(t, a, spawn(100, 10, 1, retGoWorker, retOnce, retServe))
	mustNoBreak(t, a, logRecord(200, 10, event.Lost, event.Trace{}, retSlogInfo, retHandleLog))
	mustNoBreak(t, a, logRecord(300, 10, event.Lost, event.Trace{}, retSlogInfo, retHandleLog))
	s := a.Snapshot()
	if len(s.SpawnSites) != 0 || len(s.LogSites) != 0 || len(s.Breaks) != 0 {
		t.Errorf("snapshot %+v, want no site, no log site, no break", s)
	}
}
